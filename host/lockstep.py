"""`unidit serve` under torchrun: rank 0 (the leader) serves, the other ranks (the followers) execute in lockstep.

The leader runs the HTTP server, the queue and the worker as a single process does. Before its executor runs a
prompt, forgets its cached outputs or unloads the models, and when its worker stops, it broadcasts that to the
followers (``parallel.broadcast_from_leader``, over the gloo control group). Each follower does the same with its
own executor and model store, so every rank executes the same nodes in the same order and the collectives inside
them match. The executors agree on interrupts and node failures (``executor.py``); a follower's files go to a
scratch folder that is deleted when it stops, so only the leader's outputs reach the output folder.
"""
from __future__ import annotations

import logging
import signal
import tempfile
from pathlib import Path
from typing import Optional

from ..runtime import comfy_bridge, parallel
from ..runtime.store import STORE
from .executor import ExecutionResult, Executor
from .run import standalone_nodes

log = logging.getLogger("unidit.server")


class LeaderExecutor(Executor):
    """Rank 0's executor: whatever it does to its prompts, cache and models, the followers are told to do first."""

    def execute(self, prompt: dict, prompt_id: str, outputs: list, extra_data: Optional[dict] = None,
                emit=None) -> ExecutionResult:
        parallel.broadcast_from_leader(("execute", prompt, prompt_id, outputs, extra_data))
        return super().execute(prompt, prompt_id, outputs, extra_data, emit)

    def reset(self) -> None:
        parallel.broadcast_from_leader(("reset",))
        super().reset()

    def unload_models(self) -> None:
        parallel.broadcast_from_leader(("unload",))
        log.info("unloaded %d model(s) on every rank", STORE.unload())

    def stop_followers(self) -> None:
        try:
            parallel.broadcast_from_leader(("stop",))
        except RuntimeError:  # they are gone already (torchrun sent them SIGTERM)
            log.info("the other ranks had stopped already")


def follow_leader(input_directory: Path, models_directories: list,
                  compute: comfy_bridge.ComputeOptions = comfy_bridge.ComputeOptions()) -> None:
    """The loop of every rank but 0: execute what the leader broadcasts, until it stops. Inputs are read from the
    leader's input folder (the ranks share a file system); outputs and previews go to a scratch folder. Ctrl+C
    reaches every rank of a torchrun: a follower ignores it and stops when the leader, stopping, tells it to."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    rank = parallel.context().rank
    with tempfile.TemporaryDirectory(prefix=f"unidit-rank{rank}-") as scratch:
        services = comfy_bridge.HostServices(Path(scratch), Path(input_directory).resolve(), Path(scratch),
                                             [Path(folder).resolve() for folder in models_directories], compute)
        executor = Executor(standalone_nodes(), services)
        while True:
            message = parallel.broadcast_from_leader()
            kind = message[0]
            if kind == "execute":
                try:
                    result = executor.execute(*message[1:])
                except Exception:  # outside any node, as on the leader (worker.py): log it, keep following
                    log.exception("rank %d: prompt %s failed outside of a node", rank, message[2])
                    continue
                if result.status == "error":
                    log.error("rank %d: prompt %s failed in node %s: %s", rank, message[2],
                              result.error["node_id"], result.error["exception_message"])
            elif kind == "reset":
                executor.reset()
            elif kind == "unload":
                STORE.unload()
            elif kind == "stop":
                return

"""The graph executor: runs validated API-format prompts with ComfyUI's semantics, without ComfyUI.

- Validation (ComfyUI's rules and ``node_errors`` shapes) lives in :mod:`.validation`; :func:`validate_prompt`
  is re-exported here for the callers that run what they validate.
- Caching follows ComfyUI's default: a node's outputs are kept under its id with the signature of its inputs
  (widget values, ``IS_CHANGED``, and recursively the signatures of the nodes it links to); when a prompt is
  queued again with one value changed, only the nodes whose signature changed run again. Entries of nodes absent
  from the next prompt are dropped.
- Events, in ComfyUI's order: execution_start, execution_cached, then per node executing / progress /
  executed, then execution_success, execution_error or execution_interrupted. Progress and interrupt reach the
  nodes through ``comfy_bridge`` (the same calls they make inside ComfyUI).

- Under torchrun (``runtime/parallel.py``) every rank executes the same prompts in lockstep, so the collectives
  inside the nodes match. The ranks agree on every interrupt check and on every node's failure
  (``parallel.any_rank``): all of them stop at the same node, or none does.

The executor knows nothing about any particular node: it sees classes with ComfyUI's V1 attributes.
"""
from __future__ import annotations

import inspect
import time
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Optional

from ..runtime import comfy_bridge, parallel
from ..runtime.sampling.sampler import SamplingInterrupted
from .validation import Declarations, Validation, input_spec, is_link, node_inputs, numeric_order, validate_prompt

__all__ = ["Executor", "ExecutionResult", "FailedOnAnotherRank", "Validation", "validate_prompt", "node_inputs",
           "input_spec"]  # the last four re-exported from .validation for the callers that run what they validate

Emit = Callable[[str, dict], None]


# ---- execution ---------------------------------------------------------------------------------------------------

@dataclass
class ExecutionResult:
    status: str                                     # "success" | "error" | "interrupted"
    outputs: dict = field(default_factory=dict)     # node id -> ui dict
    messages: list = field(default_factory=list)    # [event, data] as ComfyUI's history keeps them
    error: Optional[dict] = None


@dataclass
class _CacheEntry:
    signature: Any
    outputs: tuple
    ui: Optional[dict]


class FailedOnAnotherRank(RuntimeError):
    """This node ran here but failed on another rank of a parallel run (that rank's log says why)."""


class ExecutionFailed(Exception):
    def __init__(self, node_id: str, exception: BaseException):
        super().__init__(str(exception))
        self.node_id, self.exception = node_id, exception


class Executor:
    """Runs prompts against ``nodes`` (class_type -> class), caching outputs between prompts."""

    def __init__(self, nodes: dict, services: Optional[comfy_bridge.HostServices] = None):
        self.nodes = nodes
        self.services = services or comfy_bridge.HostServices()
        self._cache: dict = {}
        self._instances: dict = {}
        self.interrupt_flag = False

    def reset(self) -> None:
        """Forget cached outputs and node instances (``/free`` with free_memory)."""
        self._cache.clear()
        self._instances.clear()

    def interrupt(self) -> None:
        self.interrupt_flag = True

    def interrupted(self) -> bool:
        """Whether to stop; under torchrun, whether any rank was asked to (every rank asks at the same points)."""
        return parallel.any_rank(self.interrupt_flag)

    def execute(self, prompt: dict, prompt_id: str, outputs: list, extra_data: Optional[dict] = None,
                emit: Optional[Emit] = None) -> ExecutionResult:
        """Run the validated ``prompt`` (from :func:`validate_prompt`) for the output nodes ``outputs``."""
        extra_data = extra_data or {}
        result = ExecutionResult("success")

        def send(event: str, data: dict, keep: bool = True) -> None:
            data = {**data, "prompt_id": prompt_id}
            if keep:
                result.messages.append([event, {**data, "timestamp": int(time.time() * 1000)}])
            if emit is not None:
                emit(event, result.messages[-1][1] if keep else data)

        self.interrupt_flag = False
        signatures: dict = {}
        declarations = Declarations(self.nodes)
        order = self._execution_order(prompt, outputs)
        for node_id in order:
            signatures[node_id] = self._signature(node_id, prompt, signatures, declarations)
        for node_id in [k for k in self._cache if k not in prompt]:
            del self._cache[node_id]
        cached = [node_id for node_id in order if node_id in self._cache
                  and self._cache[node_id].signature == signatures[node_id]]
        send("execution_start", {})
        send("execution_cached", {"nodes": cached})

        def progress(node_id, value, total, preview):
            send("progress", {"value": value, "max": total, "node": node_id}, keep=False)
            if preview is not None and emit is not None:
                emit("preview", {"node": node_id, "image": preview, "prompt_id": prompt_id})

        services = replace(self.services, progress=progress, interrupt_requested=self.interrupted)
        token = comfy_bridge.use_host(services)
        executed: list = []
        try:
            for node_id in order:
                entry = self._cache.get(node_id)
                if entry is not None and entry.signature == signatures[node_id]:
                    if entry.ui is not None:
                        result.outputs[node_id] = entry.ui
                        send("executed", {"node": node_id, "display_node": node_id, "output": entry.ui},
                             keep=False)
                    continue
                if self.interrupted():
                    raise comfy_bridge.Interrupted("interrupted")
                send("executing", {"node": node_id, "display_node": node_id}, keep=False)
                node_token = comfy_bridge.current_node.set(node_id)
                failure = None
                try:
                    values, ui = self._run_node(node_id, prompt, extra_data, prompt_id, declarations)
                except (Exception, *comfy_bridge.interruption_types()) as exception:
                    failure = exception
                finally:
                    comfy_bridge.current_node.reset(node_token)
                if parallel.any_rank(failure is not None) and failure is None:
                    failure = FailedOnAnotherRank(f"node {node_id} failed on another rank of this parallel run")
                if failure is not None:
                    raise ExecutionFailed(node_id, failure) from failure
                self._cache[node_id] = _CacheEntry(signatures[node_id], values, ui)
                executed.append(node_id)
                if ui is not None:
                    result.outputs[node_id] = ui
                    send("executed", {"node": node_id, "display_node": node_id, "output": ui}, keep=False)
            send("execution_success", {})
        except ExecutionFailed as failure:
            node_type = prompt[failure.node_id]["class_type"]
            if isinstance(failure.exception, (SamplingInterrupted, *comfy_bridge.interruption_types())):
                result.status = "interrupted"
                send("execution_interrupted", {"node_id": failure.node_id, "node_type": node_type,
                                               "executed": executed})
            else:
                result.status = "error"
                result.error = {"node_id": failure.node_id, "node_type": node_type, "executed": executed,
                                "exception_message": _client_safe(str(failure.exception)),
                                "exception_type": type(failure.exception).__name__,
                                "traceback": _client_traceback(failure.exception),
                                "current_inputs": {}, "current_outputs": []}
                send("execution_error", result.error)
        except comfy_bridge.Interrupted:
            result.status = "interrupted"
            send("execution_interrupted", {"node_id": None, "node_type": None, "executed": executed})
        finally:
            comfy_bridge.release_host(token)
        return result

    @staticmethod
    def _execution_order(prompt: dict, outputs: list) -> list:
        """Every node the outputs need, each after the nodes it links to (depth first, iteratively: a validated
        prompt has no cycles)."""
        order: list = []
        placed: set = set()
        for output in sorted(outputs, key=numeric_order):
            stack = [(output, iter(prompt[output]["inputs"].values()))]
            placed.add(output)
            while stack:
                node_id, pending = stack[-1]
                for value in pending:
                    if is_link(value) and value[0] not in placed:
                        placed.add(value[0])
                        stack.append((value[0], iter(prompt[value[0]]["inputs"].values())))
                        break
                else:
                    stack.pop()
                    order.append(node_id)
        return order

    def _signature(self, node_id: str, prompt: dict, known: dict, declarations: Declarations):
        node = prompt[node_id]
        cls = self.nodes[node["class_type"]]
        declared = declarations.inputs(node["class_type"])
        parts = [node["class_type"]]
        if hasattr(cls, "IS_CHANGED"):
            widgets = {k: (None if is_link(v) else v) for k, v in node["inputs"].items()}
            parts.append(_hashable(cls.IS_CHANGED(**_only_parameters(cls.IS_CHANGED, widgets))))
        if getattr(cls, "NOT_IDEMPOTENT", False) or "UNIQUE_ID" in declared["hidden"].values():
            parts.append(("node", node_id))
        inputs = []
        for name in sorted(node["inputs"]):
            value = node["inputs"][name]
            if is_link(value):
                inputs.append((name, ("link", known[value[0]], value[1])))
            else:
                inputs.append((name, _hashable(value)))
        parts.append(tuple(inputs))
        return tuple(parts)

    def _run_node(self, node_id: str, prompt: dict, extra_data: dict, prompt_id: str, declarations: Declarations):
        node = prompt[node_id]
        cls = self.nodes[node["class_type"]]
        instance = self._instances.get(node_id)
        if instance is None or type(instance) is not cls:
            instance = self._instances[node_id] = cls()
        declared = declarations.inputs(node["class_type"])
        arguments = {}
        for name, value in node["inputs"].items():
            if name not in declared["required"] and name not in declared["optional"]:
                continue
            arguments[name] = self._cache[value[0]].outputs[value[1]] if is_link(value) else value
        hidden_values = {"PROMPT": prompt, "EXTRA_PNGINFO": extra_data.get("extra_pnginfo"), "UNIQUE_ID": node_id,
                         "DYNPROMPT": None, "PROMPT_ID": prompt_id}
        for name, kind in declared["hidden"].items():
            arguments[name] = hidden_values.get(kind)
        returned = getattr(instance, cls.FUNCTION)(**arguments)
        ui = None
        if isinstance(returned, dict):
            ui = returned.get("ui")
            returned = returned.get("result", ())
        values = tuple(returned) if returned is not None else ()
        expected = len(getattr(cls, "RETURN_TYPES", ()))
        if len(values) != expected:
            raise RuntimeError(f"{node['class_type']} returned {len(values)} values for {expected} outputs")
        return values, ui


def _only_parameters(function, values: dict) -> dict:
    parameters = inspect.signature(function).parameters
    if any(p.kind == p.VAR_KEYWORD for p in parameters.values()):
        return values
    return {k: v for k, v in values.items() if k in parameters}


def _hashable(value):
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_hashable(v) for v in value)
    return value


def _client_safe(text: str) -> str:
    """An error message without the server's absolute paths (file names stay)."""
    words = []
    for word in text.split(" "):
        stripped = word.strip("'\"(),:")
        if stripped.startswith("/") and len(stripped) > 1:
            word = word.replace(stripped, Path(stripped).name)
        words.append(word)
    return " ".join(words)


def _client_traceback(exception: BaseException) -> list:
    """The traceback's frames as 'file.py:line in function' (no absolute paths), then the message."""
    frames = traceback.extract_tb(exception.__traceback__)
    lines = [f"{Path(frame.filename).name}:{frame.lineno} in {frame.name}" for frame in frames[-8:]]
    return lines + [f"{type(exception).__name__}: {_client_safe(str(exception))}"]

"""Weights stay resident between runs; a changed seed re-runs only the sampler and what depends on it; an
interrupt stops sampling within one solver step and the next run succeeds."""
import threading
from pathlib import Path

from unidit.runtime import comfy_bridge
from unidit.host.executor import Executor, validate_prompt
from unidit.host.run import standalone_nodes
from unidit.host.workflow import apply_overrides, load_workflow
from unidit.runtime.store import STORE

ROOT = Path(__file__).resolve().parents[2]


def executor_for(tmp_path) -> Executor:
    return Executor(standalone_nodes(), comfy_bridge.HostServices(output_directory=tmp_path / "out",
                                                                  input_directory=tmp_path / "in"))


def run(executor: Executor, overrides: list, extra_nodes: dict | None = None):
    """Run the API text -> image workflow; returns the result and the ids of the nodes that executed."""
    prompt = apply_overrides(load_workflow(ROOT / "workflows" / "api" / "Text to image.json"), overrides, executor.nodes)
    prompt.update(extra_nodes or {})
    validation = validate_prompt(prompt, executor.nodes)
    assert validation.ok, validation.node_errors
    executed = []

    def record(event, data):
        if event == "executing":
            executed.append(data["node"])

    return executor.execute(validation.prompt, "p", validation.outputs, emit=record), executed


def test_changing_only_the_seed_loads_no_weights_and_reruns_only_the_sampler_onwards(tmp_path):
    executor = executor_for(tmp_path)
    first, executed = run(executor, [])
    assert first.status == "success" and executed == ["1", "2", "3", "4", "5", "6", "7"]
    loads = STORE.loads
    second, executed = run(executor, ["5.seed=77"])
    assert second.status == "success"
    assert STORE.loads == loads  # zero weight loads
    assert executed == ["5", "6", "7"]  # sampler, decode, save
    assert second.outputs["7"] != first.outputs["7"]  # a new file


def test_unload_node_frees_the_store_and_the_next_run_loads_again(tmp_path):
    executor = executor_for(tmp_path)
    result, _ = run(executor, [], {"9": {"class_type": "UniDiTUnloadModels", "inputs": {"after": ["6", 0]}}})
    assert result.status == "success" and result.outputs["9"]["text"][0].startswith("unloaded")
    assert len(STORE) == 0
    loads = STORE.loads
    again, _ = run(executor_for(tmp_path), ["5.seed=5"])
    assert again.status == "success" and STORE.loads == loads + 1


def test_interrupt_stops_within_one_solver_step_and_the_next_run_succeeds(tmp_path):
    executor = executor_for(tmp_path)
    progress_after_interrupt = []
    interrupted_at = []
    statuses = []

    def watch(event, data):
        if event == "progress":
            if interrupted_at:
                progress_after_interrupt.append(data["value"])
            elif data["value"] == 3:
                interrupted_at.append(3)
                executor.interrupt()

    prompt = apply_overrides(load_workflow(ROOT / "workflows" / "api" / "Text to image.json"), ["5.steps=200"],
                             executor.nodes)
    validation = validate_prompt(prompt, executor.nodes)
    thread = threading.Thread(target=lambda: statuses.append(
        executor.execute(validation.prompt, "long", validation.outputs, emit=watch).status))
    thread.start()
    thread.join(timeout=300)
    assert statuses == ["interrupted"]
    assert progress_after_interrupt == []  # the sampler checks before every step: no further step ran
    again, _ = run(executor, ["5.seed=9"])
    assert again.status == "success"

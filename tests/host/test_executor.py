import pytest
import torch

from unidit.runtime import comfy_bridge
from unidit.host.executor import Executor, validate_prompt
from fake_nodes import CALLS, NODES


def graph(**changes):
    prompt = {
        "1": {"class_type": "Number", "inputs": {"value": 2}},
        "2": {"class_type": "Number", "inputs": {"value": 3}},
        "3": {"class_type": "Add", "inputs": {"a": ["1", 0], "b": ["2", 0]}},
        "4": {"class_type": "Show", "inputs": {"value": ["3", 0]}},
    }
    for key, value in changes.items():
        node, name = key.split("_", 1)
        prompt[node]["inputs"][name] = value
    return prompt


def run(executor, prompt, events=None):
    validation = validate_prompt(prompt, NODES)
    assert validation.ok, validation
    CALLS.clear()
    log = events if events is not None else []
    result = executor.execute(validation.prompt, "p1", validation.outputs, {}, lambda e, d: log.append((e, d)))
    return result


def test_a_valid_prompt_runs_and_reports_in_comfyui_order():
    events = []
    result = run(Executor(NODES), graph(), events)
    assert result.status == "success"
    assert result.outputs == {"4": {"text": ["5"], "node": ["4"]}}
    names = [e for e, _ in events]
    assert names == ["execution_start", "execution_cached", "executing", "executing", "executing", "executing",
                     "executed", "execution_success"]
    assert [d["node"] for e, d in events if e == "executing"] == ["1", "2", "3", "4"]
    assert all(d["prompt_id"] == "p1" for _, d in events)
    assert [m[0] for m in result.messages] == ["execution_start", "execution_cached", "execution_success"]


def test_requeue_with_one_changed_value_reruns_only_what_depends_on_it():
    executor = Executor(NODES)
    run(executor, graph())
    events = []
    result = run(executor, graph(**{"2_value": 4}), events)
    assert CALLS == [("Number", 4), ("Add", 2, 4), ("Show", 6)]
    assert dict(events)["execution_cached"]["nodes"] == ["1"]
    assert result.outputs["4"]["text"] == ["6"]
    # the identical prompt again: everything cached, the output node's ui re-sent
    events = []
    run(executor, graph(**{"2_value": 4}), events)
    assert CALLS == []
    assert dict(events)["execution_cached"]["nodes"] == ["1", "2", "3", "4"]
    assert ("executed", {"node": "4", "display_node": "4", "output": {"text": ["6"], "node": ["4"]},
                         "prompt_id": "p1"}) in events


def test_values_are_coerced_like_comfyui():
    validation = validate_prompt(graph(**{"1_value": "7", "3_scale": "2"}), NODES)
    assert validation.ok
    assert validation.prompt["1"]["inputs"]["value"] == 7 and validation.prompt["3"]["inputs"]["scale"] == 2.0


@pytest.mark.parametrize("changes, node, kind, details", [
    ({"1_value": 101}, "1", "value_bigger_than_max", "value"),
    ({"1_value": -1}, "1", "value_smaller_than_min", "value"),
    ({"1_value": "seven"}, "1", "invalid_input_type", "value, 'seven'"),
    ({"1_value": 2.5}, "1", "invalid_input_type", "value, 2.5"),
    ({"3_a": ["9", 0]}, "3", "bad_linked_input", "a"),
    ({"3_a": ["1", 3]}, "3", "bad_linked_input", "a"),
])
def test_bad_values_and_links_give_comfyui_node_errors(changes, node, kind, details):
    validation = validate_prompt(graph(**changes), NODES)
    assert not validation.ok
    assert validation.error["type"] == "prompt_outputs_failed_validation"
    entry = validation.node_errors[node]
    assert entry["dependent_outputs"] == ["4"] and entry["class_type"] == validation.prompt[node]["class_type"]
    problem = entry["errors"][0]
    assert problem["type"] == kind and problem["details"].startswith(details)
    assert set(problem) == {"type", "message", "details", "extra_info"}


def test_type_mismatch_missing_input_combo_and_custom_validation():
    prompt = graph()
    prompt["5"] = {"class_type": "Text", "inputs": {"mode": "sideways", "text": "a"}}
    prompt["3"]["inputs"]["b"] = ["5", 0]
    del prompt["1"]["inputs"]["value"]
    prompt["6"] = {"class_type": "Checked", "inputs": {"even": 3}}
    prompt["7"] = {"class_type": "Show", "inputs": {"value": ["6", 0]}}
    validation = validate_prompt(prompt, NODES)
    kinds = {node: [e["type"] for e in entry["errors"]] for node, entry in validation.node_errors.items()}
    assert kinds == {"1": ["required_input_missing"], "3": ["return_type_mismatch"],
                     "6": ["custom_validation_failed"]}
    assert validation.node_errors["3"]["errors"][0]["extra_info"]["received_type"] == "STRING"
    assert validation.node_errors["6"]["errors"][0]["details"] == "3 is odd"


def test_a_prompt_runs_when_at_least_one_output_validates():
    prompt = graph()
    prompt["5"] = {"class_type": "Number", "inputs": {"value": 500}}
    prompt["6"] = {"class_type": "Show", "inputs": {"value": ["5", 0]}}
    validation = validate_prompt(prompt, NODES)
    assert validation.ok and validation.outputs == ["4"]
    assert validation.node_errors["5"]["dependent_outputs"] == ["6"]


def test_prompt_level_errors():
    assert validate_prompt({}, NODES).error["type"] == "invalid_prompt"
    missing = validate_prompt({"1": {"class_type": "Nope", "inputs": {}}}, NODES).error
    assert missing["type"] == "missing_node_type" and missing["extra_info"]["class_type"] == "Nope"
    assert validate_prompt({"1": {"class_type": "Number", "inputs": {"value": 1}}}, NODES).error["type"] == \
        "prompt_no_outputs"
    assert validate_prompt({"1": "not a node"}, NODES).error["type"] == "invalid_prompt"


def test_cycles_are_reported_not_followed():
    prompt = {"1": {"class_type": "Add", "inputs": {"a": ["2", 0], "b": 1}},
              "2": {"class_type": "Add", "inputs": {"a": ["1", 0], "b": 1}},
              "3": {"class_type": "Show", "inputs": {"value": ["2", 0]}}}
    validation = validate_prompt(prompt, NODES)
    assert not validation.ok
    assert any(e["type"] == "dependency_cycle" for entry in validation.node_errors.values() for e in entry["errors"])


def test_errors_are_reported_without_server_paths_and_the_next_prompt_runs():
    executor = Executor(NODES)
    prompt = graph()
    prompt["5"] = {"class_type": "Fail", "inputs": {"value": ["1", 0]}}
    prompt["6"] = {"class_type": "Show", "inputs": {"value": ["5", 0]}}
    events = []
    result = run(executor, prompt, events)
    assert result.status == "error"
    error = result.error
    assert error["node_id"] == "5" and error["exception_type"] == "ValueError"
    assert "/home" not in error["exception_message"] and "model.safetensors" in error["exception_message"]
    assert not any("/" in line.split(":")[0] for line in error["traceback"])
    assert events[-1][0] == "execution_error"
    assert run(executor, graph()).status == "success"


def test_interrupt_stops_between_nodes_and_progress_reaches_the_host():
    class Slow:
        RETURN_TYPES = ("INT",)
        FUNCTION = "run"

        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"value": ("INT",)}}

        def run(self, value):
            progress = comfy_bridge.Progress(3)
            for step in range(3):
                progress.update(step + 1)
                if step == 1:
                    executor.interrupt()
                comfy_bridge.check_interrupt()
            return (value,)

    nodes = {**NODES, "Slow": Slow}
    executor = Executor(nodes)
    prompt = graph()
    prompt["3"] = {"class_type": "Slow", "inputs": {"value": ["1", 0]}}
    validation = validate_prompt(prompt, nodes)
    events = []
    result = executor.execute(validation.prompt, "p2", validation.outputs, {}, lambda e, d: events.append((e, d)))
    assert result.status == "interrupted"
    assert [d["value"] for e, d in events if e == "progress"] == [1, 2]
    assert events[-1][0] == "execution_interrupted" and events[-1][1]["node_id"] == "3"
    assert run(executor, graph()).status == "success"  # the flag does not outlive the interrupted prompt


def test_ranks_of_a_parallel_run_stop_at_the_node_that_failed_on_one_of_them(tmp_path):
    """Rank 1 fails where rank 0 succeeds; rank 0 must not go on to a node that waits for rank 1."""
    from parallel_testing import ranks_execute
    from unidit.runtime.bench.parallel import run_on_local_ranks

    run_on_local_ranks(ranks_execute, 2, (str(tmp_path),), timeout=60)
    leader, follower = (torch.load(tmp_path / f"rank{rank}.pt") for rank in (0, 1))
    assert leader["status"] == follower["status"] == "error"
    assert leader["error"]["node_id"] == follower["error"]["node_id"] == "1"
    assert leader["error"]["exception_type"] == "FailedOnAnotherRank"
    assert follower["error"]["exception_message"] == "out of memory on rank 1"

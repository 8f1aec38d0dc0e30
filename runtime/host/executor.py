"""The graph executor: runs API-format prompts with ComfyUI's semantics, without ComfyUI.

- Validation follows ComfyUI's rules and error shapes (``node_errors``: per node, its errors, the outputs that
  depend on it, its class): missing classes, required inputs, links (to existing nodes and slots, with
  matching types), value coercion (int, float, str, bool), min / max, combo lists, ``VALIDATE_INPUTS``. A prompt
  runs when at least one of its output nodes validates. Cycles are reported, not followed.
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
import math
import time
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Optional

from .. import comfy_bridge, parallel
from ..sampling.sampler import SamplingInterrupted

Emit = Callable[[str, dict], None]
PRIMITIVES = ("INT", "FLOAT", "STRING", "BOOLEAN")


def node_inputs(cls) -> dict:
    """``INPUT_TYPES()`` with the three sections always present."""
    declared = cls.INPUT_TYPES()
    return {section: dict(declared.get(section) or {}) for section in ("required", "optional", "hidden")}


def input_spec(spec) -> tuple[Any, dict]:
    """(type, options) of an input declaration: a list type is a combo."""
    kind = spec[0]
    options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    return kind, options


def is_link(value) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], int) \
        and not isinstance(value[1], bool)


def types_match(received: str, expected) -> bool:
    """ComfyUI's rule: "*" matches anything; comma-separated unions match when they overlap."""
    if isinstance(expected, list):
        expected = "COMBO"
    if received == "*" or expected == "*":
        return True
    return bool(set(str(received).split(",")) & set(str(expected).split(",")))


def error(kind: str, message: str, details: str = "", **extra) -> dict:
    return {"type": kind, "message": message, "details": details, "extra_info": extra}


# ---- validation --------------------------------------------------------------------------------------------------

@dataclass
class Validation:
    ok: bool
    error: Optional[dict]
    node_errors: dict
    outputs: list          # ids of the output nodes that validated
    prompt: dict           # the prompt with values coerced


def validate_prompt(prompt: Any, nodes: dict, partial_targets: Optional[list] = None) -> Validation:
    if not isinstance(prompt, dict) or not prompt:
        return Validation(False, error("invalid_prompt", "Prompt must be a non-empty object of nodes"), {}, [],
                          {})
    coerced: dict = {}
    for node_id, node in prompt.items():
        if not isinstance(node, dict) or not isinstance(node.get("inputs", {}), dict):
            return Validation(False, error("invalid_prompt", f"Node '{node_id}' must be an object with "
                                                             f"'class_type' and 'inputs'", f"Node ID '#{node_id}'"),
                              {}, [], {})
        class_type = node.get("class_type")
        if not isinstance(class_type, str) or class_type not in nodes:
            title = (node.get("_meta") or {}).get("title", class_type) if isinstance(node.get("_meta"), dict) \
                else class_type
            return Validation(False, error("missing_node_type",
                                           f"Node '{class_type}' not found. The custom node may not be installed.",
                                           f"Node ID '#{node_id}'", node_id=str(node_id), class_type=class_type,
                                           node_title=title), {}, [], {})
        coerced[str(node_id)] = {"class_type": class_type, "inputs": dict(node.get("inputs", {}))}
    outputs = [node_id for node_id, node in coerced.items() if getattr(nodes[node["class_type"]], "OUTPUT_NODE", False)]
    if partial_targets is not None:
        outputs = [node_id for node_id in outputs if node_id in {str(t) for t in partial_targets}]
    if not outputs:
        return Validation(False, error("prompt_no_outputs", "Prompt has no outputs"), {}, [], coerced)

    results: dict = {}  # node id -> list of its own errors ([] when valid)
    valid: dict = {}    # node id -> whether it and everything upstream is valid
    for output in sorted(outputs, key=_numeric_order):
        _validate_node(output, coerced, nodes, results, valid, [])
    good = [output for output in outputs if valid.get(output)]
    node_errors: dict = {}
    for output in outputs:
        if valid.get(output):
            continue
        for node_id in _upstream(output, coerced):
            if results.get(node_id):
                entry = node_errors.setdefault(node_id, {"errors": results[node_id], "dependent_outputs": [],
                                                         "class_type": coerced[node_id]["class_type"]})
                if output not in entry["dependent_outputs"]:
                    entry["dependent_outputs"].append(output)
    if not good:
        details = "\n".join(f"{e['message']}: {e['details']}" for output in outputs for e in results.get(output, []))
        return Validation(False, error("prompt_outputs_failed_validation", "Prompt outputs failed validation",
                                       details), node_errors, [], coerced)
    return Validation(True, None, node_errors, good, coerced)


def _numeric_order(node_id: str):
    return (0, int(node_id), "") if node_id.isdigit() else (1, 0, node_id)


def _upstream(node_id: str, prompt: dict) -> list:
    seen, stack = [], [node_id]
    while stack:
        current = stack.pop()
        if current in seen or current not in prompt:
            continue
        seen.append(current)
        stack += [value[0] for value in prompt[current]["inputs"].values() if is_link(value)]
    return seen


def _validate_node(node_id: str, prompt: dict, nodes: dict, results: dict, valid: dict, path: list) -> bool:
    if node_id in valid:
        return valid[node_id]
    node = prompt[node_id]
    cls = nodes[node["class_type"]]
    errors: list = []
    upstream_ok = True
    declared = node_inputs(cls)
    checked_by_node = set(inspect.signature(cls.VALIDATE_INPUTS).parameters) if hasattr(cls, "VALIDATE_INPUTS") \
        else set()
    for section in ("required", "optional"):
        for name, spec in declared[section].items():
            kind, options = input_spec(spec)
            if name not in node["inputs"]:
                if section == "required":
                    errors.append(error("required_input_missing", "Required input is missing", name,
                                        input_name=name))
                continue
            value = node["inputs"][name]
            if is_link(value):
                source_id, slot = value
                if source_id not in prompt:
                    errors.append(error("bad_linked_input", f"Input '{name}' links to node '{source_id}', which is "
                                                            f"not in the prompt", name, input_name=name,
                                        received_value=value))
                    continue
                source = nodes[prompt[source_id]["class_type"]]
                returns = tuple(getattr(source, "RETURN_TYPES", ()))
                if not 0 <= slot < len(returns):
                    errors.append(error("bad_linked_input", f"Input '{name}' links to output {slot} of node "
                                                            f"'{source_id}', which has {len(returns)} outputs",
                                        name, input_name=name, received_value=value))
                    continue
                if not types_match(returns[slot], kind):
                    errors.append(error("return_type_mismatch", "Return type mismatch between linked nodes",
                                        f"{name}, received_type({returns[slot]}) mismatch input_type({kind})",
                                        input_name=name, input_config=[kind, options],
                                        received_type=returns[slot], linked_node=value))
                    continue
                if source_id in path or source_id == node_id:
                    errors.append(error("dependency_cycle", "Dependency cycle detected",
                                        f"{name} -> node '{source_id}' -> ... -> node '{node_id}'", input_name=name))
                    continue
                if not _validate_node(source_id, prompt, nodes, results, valid, path + [node_id]):
                    upstream_ok = False
                continue
            problem = _check_value(name, value, kind, options, name in checked_by_node)
            if isinstance(problem, dict):
                errors.append(problem)
            else:
                node["inputs"][name] = problem
    if not errors and hasattr(cls, "VALIDATE_INPUTS"):
        arguments = {k: v for k, v in node["inputs"].items() if k in checked_by_node and not is_link(v)}
        try:
            verdict = cls.VALIDATE_INPUTS(**arguments)
        except Exception as exception:  # a node's own check failing is reported, not raised
            verdict = f"{type(exception).__name__}: {exception}"
        if verdict is not True:
            errors.append(error("custom_validation_failed", "Custom validation failed for node",
                                str(verdict), input_name=""))
    results[node_id] = errors
    valid[node_id] = upstream_ok and not errors
    return valid[node_id]


def _check_value(name: str, value, kind, options: dict, custom_check: bool):
    """The coerced value, or an error dict. Inputs the node validates itself skip the range/list checks."""
    config = [kind, options]
    if isinstance(value, dict) and "__value__" in value:
        value = value["__value__"]
    if isinstance(value, (list, dict)) and kind in PRIMITIVES:
        return error("invalid_input_type", f"Failed to convert an input value to a {kind} value",
                     f"{name}, {value!r}", input_name=name, input_config=config, received_value=value)
    try:
        if kind == "INT":
            value = _as_int(value)
        elif kind == "FLOAT":
            value = float(value)
            if not math.isfinite(value):
                raise ValueError("not a finite number")
        elif kind == "STRING":
            value = str(value)
        elif kind == "BOOLEAN":
            value = _as_bool(value)
    except (TypeError, ValueError) as exception:
        return error("invalid_input_type", f"Failed to convert an input value to a {kind} value",
                     f"{name}, {value!r}, {exception}", input_name=name, input_config=config, received_value=value)
    if custom_check:
        return value
    if kind in ("INT", "FLOAT"):
        if "min" in options and value < options["min"]:
            return error("value_smaller_than_min", f"Value {value} smaller than min of {options['min']}", name,
                         input_name=name, input_config=config, received_value=value)
        if "max" in options and value > options["max"]:
            return error("value_bigger_than_max", f"Value {value} bigger than max of {options['max']}", name,
                         input_name=name, input_config=config, received_value=value)
    if isinstance(kind, list) and value not in kind:
        shown = kind if len(kind) <= 20 else kind[:20] + ["..."]
        return error("value_not_in_list", "Value not in list", f"{name}: '{value}' not in {shown}",
                     input_name=name, input_config=[shown, options], received_value=value)
    return value


def _as_int(value) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError(f"{value} is not a whole number")
        return int(value)
    return int(str(value).strip())


def _as_bool(value) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return bool(value)
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no", ""):
        return False
    raise ValueError(f"{value!r} is not a boolean")


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
        order = self._execution_order(prompt, outputs)
        for node_id in order:
            signatures[node_id] = self._signature(node_id, prompt, signatures)
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
                    values, ui = self._run_node(node_id, prompt, extra_data, prompt_id)
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

    def _execution_order(self, prompt: dict, outputs: list) -> list:
        """Every node the outputs need, each after the nodes it links to."""
        order: list = []

        def visit(node_id: str) -> None:
            if node_id in order:
                return
            for value in prompt[node_id]["inputs"].values():
                if is_link(value):
                    visit(value[0])
            order.append(node_id)

        for output in sorted(outputs, key=_numeric_order):
            visit(output)
        return order

    def _signature(self, node_id: str, prompt: dict, known: dict):
        node = prompt[node_id]
        cls = self.nodes[node["class_type"]]
        declared = node_inputs(cls)
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

    def _run_node(self, node_id: str, prompt: dict, extra_data: dict, prompt_id: str):
        node = prompt[node_id]
        cls = self.nodes[node["class_type"]]
        instance = self._instances.get(node_id)
        if instance is None or type(instance) is not cls:
            instance = self._instances[node_id] = cls()
        declared = node_inputs(cls)
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

"""Prompt validation with ComfyUI's rules and error shapes, in time linear in the size of the prompt.

- Prompt-level errors (400 ``{"error": {...}}``): not an object of nodes, more than ``max_nodes`` nodes, a node
  that is not ``{"class_type", "inputs"}``, a class that is not installed, no output node.
- Per node, as ComfyUI's ``validate_inputs``: required inputs present; a list value is a link and must be
  ``[node_id, output_index]`` (an id of the prompt, an integer index within that node's outputs) of a matching
  type; values coerced to INT / FLOAT / STRING / BOOLEAN; min / max; combo lists; the node's ``VALIDATE_INPUTS``
  (inputs it names skip the built-in range and list checks). Cycles are reported (``dependency_cycle``), not
  followed.
- A prompt runs when at least one of its output nodes validates with everything upstream of it. ``node_errors``
  lists, for each node upstream of a failing output that has errors of its own, those errors, the failing
  outputs that depend on it (at most :data:`MAX_DEPENDENT_OUTPUTS`, in id order) and its class.

Every node is checked once and every link followed once: a node's class declarations (``INPUT_TYPES``, which may
list files) are read once per class, the walk upstream is iterative (no recursion limit on long chains), and the
outputs that depend on each node are gathered as bit sets in one pass.
"""
from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Any, Optional

PRIMITIVES = ("INT", "FLOAT", "STRING", "BOOLEAN")
MAX_PROMPT_NODES = 10_000        # a hand-made workflow has tens of nodes; generated ones hundreds
MAX_DEPENDENT_OUTPUTS = 100      # listed per node in node_errors


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
    """A well-formed link ``[node_id, output_index]`` (any other list value is a malformed one)."""
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


class Declarations:
    """Each class's input declarations, read once (``INPUT_TYPES`` may scan folders for its combo lists)."""

    def __init__(self, nodes: dict):
        self.nodes = nodes
        self._inputs: dict = {}
        self._checked: dict = {}

    def inputs(self, class_type: str) -> dict:
        if class_type not in self._inputs:
            self._inputs[class_type] = node_inputs(self.nodes[class_type])
        return self._inputs[class_type]

    def checked_by_node(self, class_type: str) -> set:
        """The inputs the class's ``VALIDATE_INPUTS`` takes (they skip the built-in checks)."""
        if class_type not in self._checked:
            cls = self.nodes[class_type]
            self._checked[class_type] = set(inspect.signature(cls.VALIDATE_INPUTS).parameters) \
                if hasattr(cls, "VALIDATE_INPUTS") else set()
        return self._checked[class_type]


@dataclass
class Validation:
    ok: bool
    error: Optional[dict]
    node_errors: dict
    outputs: list          # ids of the output nodes that validated
    prompt: dict           # the prompt with values coerced


def _rejected(kind: str, message: str, details: str = "", prompt: Optional[dict] = None, **extra) -> Validation:
    return Validation(False, error(kind, message, details, **extra), {}, [], prompt or {})


def validate_prompt(prompt: Any, nodes: dict, partial_targets: Optional[list] = None,
                    max_nodes: int = MAX_PROMPT_NODES) -> Validation:
    """Validate an API prompt against ``nodes`` (class type -> class); see the module docstring."""
    if not isinstance(prompt, dict) or not prompt:
        return _rejected("invalid_prompt", "Prompt must be a non-empty object of nodes")
    if len(prompt) > max_nodes:
        return _rejected("prompt_too_large", f"The prompt has {len(prompt)} nodes; at most {max_nodes} are accepted",
                         "split the workflow into smaller ones")
    coerced: dict = {}
    for node_id, node in prompt.items():
        if not isinstance(node, dict) or not isinstance(node.get("inputs", {}), dict):
            return _rejected("invalid_prompt", f"Node '{node_id}' must be an object with 'class_type' and 'inputs'",
                             f"Node ID '#{node_id}'")
        class_type = node.get("class_type")
        if not isinstance(class_type, str) or class_type not in nodes:
            meta = node.get("_meta")
            title = meta.get("title", class_type) if isinstance(meta, dict) else class_type
            return _rejected("missing_node_type", f"Node '{class_type}' not found. The custom node may not be "
                             f"installed.", f"Node ID '#{node_id}'", node_id=str(node_id), class_type=class_type,
                             node_title=title)
        coerced[str(node_id)] = {"class_type": class_type, "inputs": dict(node.get("inputs", {}))}
    outputs = [node_id for node_id, node in coerced.items() if getattr(nodes[node["class_type"]], "OUTPUT_NODE", False)]
    if partial_targets is not None:
        wanted = {str(target) for target in partial_targets}
        outputs = [node_id for node_id in outputs if node_id in wanted]
    if not outputs:
        return _rejected("prompt_no_outputs", "Prompt has no outputs", prompt=coerced)
    outputs.sort(key=numeric_order)

    walk = _Walk(coerced, Declarations(nodes))
    for output in outputs:
        walk.validate_upstream(output)
    good = [output for output in outputs if walk.valid[output]]
    node_errors = walk.node_errors([output for output in outputs if not walk.valid[output]])
    if not good:
        details = "\n".join(f"{e['message']}: {e['details']}" for output in outputs for e in walk.errors[output])
        return Validation(False, error("prompt_outputs_failed_validation", "Prompt outputs failed validation",
                                       details), node_errors, [], coerced)
    return Validation(True, None, node_errors, good, coerced)


def numeric_order(node_id: str):
    return (0, int(node_id), "") if node_id.isdigit() else (1, 0, node_id)


class _Walk:
    """One validation: each node's own errors, then whether it and everything upstream is valid."""

    def __init__(self, prompt: dict, declarations: Declarations):
        self.prompt, self.declarations = prompt, declarations
        self.errors: dict = {}     # node id -> its own errors
        self.sources: dict = {}    # node id -> [(input name, source id)] of its well-formed, well-typed links
        self.valid: dict = {}      # node id -> it and everything upstream valid (set once the node is finished)

    def validate_upstream(self, start: str) -> None:
        """Check ``start`` and every node it depends on (depth first, iteratively); a link back to a node whose
        check is still open is a cycle."""
        if start in self.valid:
            return
        open_nodes = {start}
        self._check(start)
        stack = [(start, iter(self.sources[start]))]
        while stack:
            node_id, pending = stack[-1]
            for name, source in pending:
                if source in open_nodes:
                    self.errors[node_id].append(error(
                        "dependency_cycle", "Dependency cycle detected",
                        f"{name} -> node '{source}' -> ... -> node '{node_id}'", input_name=name))
                elif source not in self.valid:
                    open_nodes.add(source)
                    self._check(source)
                    stack.append((source, iter(self.sources[source])))
                    break
            else:
                stack.pop()
                open_nodes.discard(node_id)
                self.valid[node_id] = not self.errors[node_id] and all(
                    self.valid.get(source, False) for _, source in self.sources[node_id])

    def _check(self, node_id: str) -> None:
        """The node's own errors and links (values are coerced in place)."""
        node = self.prompt[node_id]
        class_type = node["class_type"]
        cls = self.declarations.nodes[class_type]
        declared = self.declarations.inputs(class_type)
        checked_by_node = self.declarations.checked_by_node(class_type)
        errors, sources = [], []
        for section in ("required", "optional"):
            for name, spec in declared[section].items():
                kind, options = input_spec(spec)
                if name not in node["inputs"]:
                    if section == "required":
                        errors.append(error("required_input_missing", "Required input is missing", name,
                                            input_name=name))
                    continue
                value = node["inputs"][name]
                if isinstance(value, list):
                    problem = self._check_link(name, value, kind, options)
                    if problem is None:
                        sources.append((name, value[0]))
                    else:
                        errors.append(problem)
                    continue
                checked = check_value(name, value, kind, options, name in checked_by_node)
                if isinstance(checked, dict):
                    errors.append(checked)
                else:
                    node["inputs"][name] = checked
        if not errors and hasattr(cls, "VALIDATE_INPUTS"):
            arguments = {k: v for k, v in node["inputs"].items() if k in checked_by_node and not isinstance(v, list)}
            try:
                verdict = cls.VALIDATE_INPUTS(**arguments)
            except Exception as exception:  # a node's own check failing is reported, not raised
                verdict = f"{type(exception).__name__}: {exception}"
            if verdict is not True:
                errors.append(error("custom_validation_failed", "Custom validation failed for node", str(verdict),
                                    input_name=""))
        self.errors[node_id], self.sources[node_id] = errors, sources

    def _check_link(self, name: str, value: list, kind, options: dict) -> Optional[dict]:
        """None for a well-formed link to an existing output of a matching type, else the error."""
        if not is_link(value):
            return error("bad_linked_input", "Bad linked input, must be a length-2 list of [node_id, slot_index]",
                         f"{name}: {str(value)[:200]} (a node id as text and an integer output index, e.g. "
                         f"[\"4\", 0]; a list widget value is written {{\"__value__\": [...]}})",
                         input_name=name, received_value=value)
        source_id, slot = value
        if source_id not in self.prompt:
            return error("bad_linked_input", f"Input '{name}' links to node '{source_id}', which is not in the "
                                             f"prompt", name, input_name=name, received_value=value)
        returns = tuple(getattr(self.declarations.nodes[self.prompt[source_id]["class_type"]], "RETURN_TYPES", ()))
        if not 0 <= slot < len(returns):
            return error("bad_linked_input", f"Input '{name}' links to output {slot} of node '{source_id}', which "
                                             f"has {len(returns)} outputs", name, input_name=name,
                         received_value=value)
        if not types_match(returns[slot], kind):
            return error("return_type_mismatch", "Return type mismatch between linked nodes",
                         f"{name}, received_type({returns[slot]}) mismatch input_type({kind})", input_name=name,
                         input_config=[kind, options], received_type=returns[slot], linked_node=value)
        return None

    def node_errors(self, failing: list) -> dict:
        """ComfyUI's ``node_errors`` for the ``failing`` outputs: every node upstream of them (through any link
        to a node of the prompt) with errors of its own."""
        if not failing:
            return {}
        # Depth-first post-order over the links from the failing outputs: a node comes after all it links to.
        order, finished, opened = [], set(), set()
        for output in failing:
            if output in finished:
                continue
            opened.add(output)
            stack = [(output, iter(self._linked(output)))]
            while stack:
                node_id, pending = stack[-1]
                for source in pending:
                    if source not in opened:
                        opened.add(source)
                        stack.append((source, iter(self._linked(source))))
                        break
                else:
                    stack.pop()
                    finished.add(node_id)
                    order.append(node_id)
        # The failing outputs each node feeds, as a bit set (bit i: failing[i]), consumers before their sources.
        # A link back to a node finished later closes a cycle; it adds nothing a cycle's other links do not.
        position = {node_id: index for index, node_id in enumerate(order)}
        feeds = dict.fromkeys(order, 0)
        for bit, output in enumerate(failing):
            feeds[output] |= 1 << bit
        for node_id in reversed(order):
            for source in self._linked(node_id):
                if position[source] < position[node_id]:
                    feeds[source] |= feeds[node_id]
        entries = {}
        for node_id in sorted(order, key=numeric_order):
            if self.errors.get(node_id):
                entries[node_id] = {"errors": self.errors[node_id],
                                    "dependent_outputs": _first_bits(feeds[node_id], failing, MAX_DEPENDENT_OUTPUTS),
                                    "class_type": self.prompt[node_id]["class_type"]}
        return entries

    def _linked(self, node_id: str) -> list:
        return [value[0] for value in self.prompt[node_id]["inputs"].values()
                if isinstance(value, list) and value and isinstance(value[0], str) and value[0] in self.prompt]


def _first_bits(bits: int, names: list, limit: int) -> list:
    """``names[i]`` for the lowest ``limit`` set bits i of ``bits``."""
    found = []
    while bits and len(found) < limit:
        lowest = bits & -bits
        found.append(names[lowest.bit_length() - 1])
        bits ^= lowest
    return found


def check_value(name: str, value, kind, options: dict, custom_check: bool):
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
    except (TypeError, ValueError, OverflowError) as exception:
        return error("invalid_input_type", f"Failed to convert an input value to a {kind} value",
                     f"{name}, {value!r:.200}, {exception}", input_name=name, input_config=config,
                     received_value=value)
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

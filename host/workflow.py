"""Workflow files: the editor's UI format and the API ("prompt") format, and UI -> API conversion.

The API format is what servers execute: ``{id: {"class_type", "inputs": {name: value | [source_id, slot]}}}``.
The UI format (LiteGraph, version 0.4) stores nodes with positional ``widgets_values`` and a link table; the
editor converts it with knowledge of each node's widgets, and so does :func:`ui_to_api`, from each node's input
declarations: a node class's ``INPUT_TYPES``, or the ``/object_info`` entry of any ComfyUI-compatible server
(so ``unidit submit`` converts for the server it talks to):

- widgets are the inputs of type INT, FLOAT, STRING, BOOLEAN or a combo list (not ``forceInput``), in declared
  order (required, then optional); an INT with ``control_after_generate`` is followed by its control value
  ("fixed", "randomize", ...), and a combo with ``image_upload`` by its upload widget's value;
- a widget input that has a link takes the link (its stored value is skipped);
- Note / MarkdownNote nodes are dropped, Reroute nodes are followed to their source, muted nodes (mode 2) are
  dropped and bypassed ones (mode 4) pass their first input of the same type through.

A file that is not a workflow (a folder, unreadable, not UTF-8 JSON, nested deeper than :data:`MAX_JSON_DEPTH`,
nodes or links of the wrong shape) and a ``--set`` that names no input of its node raise :class:`WorkflowError`
with the reason, never a traceback.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .validation import PRIMITIVES, input_spec, node_inputs

MAX_JSON_DEPTH = 64      # levels of arrays and objects in a workflow or a prompt (a workflow has about 8)
VIRTUAL_NODES = ("Note", "MarkdownNote", "Reroute", "PrimitiveNode")
MUTED, BYPASSED = 2, 4


class WorkflowError(ValueError):
    """A workflow file that cannot be read or converted."""


def load_workflow(path: Path | str) -> dict:
    path = Path(path)
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise WorkflowError(f"no workflow file {path}") from None
    except IsADirectoryError:
        raise WorkflowError(f"{path} is a folder; give a workflow .json file") from None
    except OSError as problem:
        raise WorkflowError(f"cannot read {path}: {problem.strerror or problem}") from None
    except RecursionError:
        raise WorkflowError(f"{path.name} is nested too deeply (at most {MAX_JSON_DEPTH} levels of arrays and "
                            f"objects)") from None
    except (ValueError, UnicodeDecodeError) as exception:
        raise WorkflowError(f"{path.name} is not JSON: {exception}") from None
    if not isinstance(data, dict):
        raise WorkflowError(f"{path.name} is not a workflow (expected a JSON object)")
    if nesting_exceeds(data, MAX_JSON_DEPTH):
        raise WorkflowError(f"{path.name} is nested too deeply (at most {MAX_JSON_DEPTH} levels of arrays and "
                            f"objects)")
    return data


def nesting_exceeds(value: Any, limit: int) -> bool:
    """Whether ``value`` (parsed JSON) nests arrays and objects deeper than ``limit`` levels."""
    stack = [(value, 1)]
    while stack:
        current, depth = stack.pop()
        if isinstance(current, (dict, list)):
            if depth > limit:
                return True
            children = current.values() if isinstance(current, dict) else current
            stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def is_ui_workflow(data: dict) -> bool:
    return isinstance(data.get("nodes"), list) and "links" in data


def declared_inputs(definition) -> dict:
    """The input declarations of a node: from its class (``INPUT_TYPES``) or from its ``/object_info`` entry
    (sections that are not objects, as a broken server may send, count as empty)."""
    if isinstance(definition, dict):
        declared = definition.get("input")
        declared = declared if isinstance(declared, dict) else {}
        return {section: dict(declared[section]) if isinstance(declared.get(section), dict) else {}
                for section in ("required", "optional", "hidden")}
    return node_inputs(definition)


def widget_slots(definition) -> list:
    """The input name stored at each position of a node's ``widgets_values`` (None for the values of the
    editor's extra widgets: seed controls, upload buttons). ``definition``: a node class or its object_info entry."""
    slots = []
    declared = declared_inputs(definition)
    for section in ("required", "optional"):
        for name, spec in declared[section].items():
            if not isinstance(spec, (list, tuple)) or not spec:
                continue  # not a declaration this host can read: not a widget
            kind, options = input_spec(spec)
            if options.get("forceInput") or not (isinstance(kind, list) or kind in PRIMITIVES or kind == "COMBO"):
                continue
            slots.append(name)
            if options.get("control_after_generate") or (kind == "INT" and name in ("seed", "noise_seed")):
                slots.append(None)
            if options.get("image_upload"):
                slots.append(None)
    return slots


def ui_to_api(workflow: dict, nodes: dict, display_names: dict | None = None) -> dict:
    """Convert a UI-format workflow to an API prompt (see the module docstring). ``nodes`` maps class types to
    node classes or to their object_info entries. Untitled nodes are titled by ``display_names`` (class type ->
    display name), as the editor does."""
    display_names = display_names or {}
    by_id = {}
    for node in workflow["nodes"]:
        _check_ui_node(node)
        by_id[node["id"]] = node
    if not isinstance(workflow.get("links") or [], list):
        raise WorkflowError("'links' of a UI workflow must be a list")
    links = {}
    for link in workflow.get("links") or []:
        link = _ui_link(link)
        links[link[0]] = link

    def source_of(link_id):
        """(node id, slot) that a link ultimately comes from, through reroutes and bypassed nodes."""
        seen = set()
        while link_id is not None and link_id not in seen:
            seen.add(link_id)
            link = links.get(link_id)
            if link is None:
                return None
            origin = by_id.get(link[1])
            if origin is None:
                return None
            if origin["type"] == "Reroute":
                link_id = (origin.get("inputs") or [{}])[0].get("link")
                continue
            if origin.get("mode") == BYPASSED:
                wanted = link[5]
                link_id = next((i.get("link") for i in origin.get("inputs") or []
                                if i.get("link") is not None and i.get("type") == wanted), None)
                continue
            if origin.get("mode") == MUTED:
                return None
            return str(origin["id"]), int(link[2])
        return None

    prompt = {}
    for node in workflow["nodes"]:
        if node["type"] in VIRTUAL_NODES or node.get("mode") in (MUTED, BYPASSED):
            continue
        if node["type"] not in nodes:
            raise WorkflowError(f"node {node['id']} is a '{node['type']}', which is not installed")
        inputs: dict[str, Any] = {}
        values = list(node.get("widgets_values") or [])
        if isinstance(node.get("widgets_values"), dict):
            raise WorkflowError(f"node {node['id']} stores widget values by name; re-save the workflow with the "
                                f"ComfyUI editor")
        for name, value in zip(widget_slots(nodes[node["type"]]), values):
            if name is not None:
                inputs[name] = value
        for socket in node.get("inputs") or []:
            if socket.get("link") is None:
                continue
            source = source_of(socket["link"])
            if source is not None:
                inputs[socket["name"]] = [source[0], source[1]]
            else:
                inputs.pop(socket["name"], None)
        prompt[str(node["id"])] = {"class_type": node["type"], "inputs": inputs,
                                   "_meta": {"title": node.get("title") or display_names.get(node["type"],
                                                                                             node["type"])}}
    return prompt


def _check_ui_node(node) -> None:
    """Refuse a UI node of the wrong shape (by the fields the conversion reads) with the reason."""
    if not isinstance(node, dict) or not isinstance(node.get("id"), (int, str)) or isinstance(node.get("id"), bool) \
            or not isinstance(node.get("type"), str):
        raise WorkflowError(f"every node of a UI workflow needs an 'id' (a number) and a 'type' (a class name); "
                            f"found {str(node)[:120]}")
    sockets = node.get("inputs") or []
    if not isinstance(sockets, list) or not all(
            isinstance(socket, dict) and isinstance(socket.get("name"), str)
            and _is_id(socket.get("link"), none=True) for socket in sockets):
        raise WorkflowError(f"node {node['id']}: 'inputs' must be a list of {{\"name\", \"link\"}} objects")
    if not isinstance(node.get("widgets_values") or [], (list, dict)):
        raise WorkflowError(f"node {node['id']}: 'widgets_values' must be a list")


def _ui_link(link) -> list:
    """A link of the UI format as ``[id, origin_id, origin_slot, target_id, target_slot, type]``; workflow
    version 1 stores links as objects."""
    if isinstance(link, dict):
        try:
            link = [link["id"], link["origin_id"], link["origin_slot"], link["target_id"], link["target_slot"],
                    link.get("type")]
        except KeyError as missing:
            raise WorkflowError(f"a link of the workflow has no {missing}") from None
    if not isinstance(link, list) or len(link) < 6 or not all(_is_id(part) for part in link[:4]) \
            or isinstance(link[2], str):
        raise WorkflowError(f"a link of a UI workflow is [id, origin_id, origin_slot, target_id, target_slot, "
                            f"type] with whole-number ids and slots; found {str(link)[:120]}")
    return link


def _is_id(value, none: bool = False) -> bool:
    return (none and value is None) or (isinstance(value, (int, str)) and not isinstance(value, bool))


def to_api_prompt(data: dict, nodes: dict, display_names: dict | None = None) -> dict:
    """An API prompt from either format."""
    return ui_to_api(data, nodes, display_names) if is_ui_workflow(data) else data


def apply_overrides(prompt: dict, overrides: list, nodes: dict) -> dict:
    """Set inputs from ``NODE.INPUT=VALUE`` strings. NODE is a node id, a node title or a class type that occurs
    once; INPUT one of that node's declared inputs (``nodes``: class types to node classes or object_info entries);
    VALUE is read as JSON when it parses (numbers, true/false, lists) and as text otherwise."""
    for override in overrides:
        target, separator, raw = override.partition("=")
        node_ref, dot, input_name = target.rpartition(".")
        if not separator or not dot or not node_ref or not input_name:
            raise WorkflowError(f"--set {override!r}: expected NODE.INPUT=VALUE, e.g. 5.seed=42 or "
                                f"UniDiTSampler.steps=12")
        matches = [node_id for node_id, node in prompt.items() if isinstance(node, dict) and isinstance(
            node.get("inputs"), dict) and node_ref in (node_id, _title(node), node.get("class_type"))]
        if len(matches) != 1:
            found = "no node" if not matches else f"{len(matches)} nodes ({', '.join(matches)})"
            raise WorkflowError(f"--set {override!r}: {found} match '{node_ref}'; use the node id")
        class_type = prompt[matches[0]].get("class_type")
        if not isinstance(class_type, str) or class_type not in nodes:
            raise WorkflowError(f"--set {override!r}: node {matches[0]} is a '{class_type}', which is not installed")
        declared = declared_inputs(nodes[class_type])
        if input_name not in {**declared["required"], **declared["optional"]}:
            names = ", ".join([*declared["required"], *declared["optional"]]) or "none"
            raise WorkflowError(f"--set {override!r}: node {matches[0]} ({class_type}) has no input "
                                f"'{input_name}'; its inputs are: {names}")
        try:
            value = json.loads(raw)
        except (json.JSONDecodeError, RecursionError):
            value = raw
        prompt[matches[0]]["inputs"][input_name] = value
    return prompt


def _title(node: dict):
    meta = node.get("_meta")
    return meta.get("title") if isinstance(meta, dict) else None

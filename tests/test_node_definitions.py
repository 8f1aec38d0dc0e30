"""Node definitions are a public contract: shared workflows store node class names and widget values by position.

The committed snapshot (tests/snapshots/node_definitions.json) records every node's inputs in order, their types,
combo options and outputs. A change fails here when it would break saved workflows: a node removed or renamed,
an input removed, retyped or moved, a new required input, a combo option removed, an output removed or retyped.
Appending optional inputs, outputs or combo options is compatible; after such a change, or on purpose, update the
snapshot with:  UNIDIT_UPDATE_SNAPSHOT=1 pytest tests/test_node_definitions.py
"""
import json
import os
from pathlib import Path

from unidit import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
from unidit.host.executor import input_spec, node_inputs

SNAPSHOT = Path(__file__).parent / "snapshots" / "node_definitions.json"
# options come from the files on disk, or the devices of this machine
DYNAMIC_COMBOS = {("UniDiTLoader", "bundle"), ("UniDiTLoader", "device"), ("UniDiTPartsLoader", "device")}


def definition(name, cls) -> dict:
    declared = node_inputs(cls)
    inputs = {}
    for section in ("required", "optional"):
        inputs[section] = []
        for input_name, spec in declared[section].items():
            kind, options = input_spec(spec)
            entry = {"name": input_name, "type": "COMBO" if isinstance(kind, list) else kind}
            if isinstance(kind, list) and (name, input_name) not in DYNAMIC_COMBOS:
                entry["options"] = list(kind)
            inputs[section].append(entry)
    return {"display_name": NODE_DISPLAY_NAME_MAPPINGS[name], "category": cls.CATEGORY,
            "output_node": bool(getattr(cls, "OUTPUT_NODE", False)), "inputs": inputs,
            "outputs": [list(pair) for pair in zip(cls.RETURN_TYPES, getattr(cls, "RETURN_NAMES", cls.RETURN_TYPES))]}


def current() -> dict:
    return {name: definition(name, cls) for name, cls in sorted(NODE_CLASS_MAPPINGS.items())}


def incompatibilities(old: dict, new: dict) -> list:
    problems = []
    for name, before in old.items():
        after = new.get(name)
        if after is None:
            problems.append(f"{name}: node removed or renamed")
            continue
        old_inputs = before["inputs"]["required"] + before["inputs"]["optional"]
        new_inputs = after["inputs"]["required"] + after["inputs"]["optional"]
        if [i["name"] for i in new_inputs[:len(old_inputs)]] != [i["name"] for i in old_inputs]:
            problems.append(f"{name}: inputs reordered, renamed or removed "
                            f"({[i['name'] for i in old_inputs]} -> {[i['name'] for i in new_inputs]})")
            continue
        for was, now in zip(old_inputs, new_inputs):
            if was["type"] != now["type"]:
                problems.append(f"{name}.{was['name']}: type {was['type']} -> {now['type']}")
            missing = set(was.get("options", [])) - set(now.get("options", was.get("options", [])))
            if missing:
                problems.append(f"{name}.{was['name']}: combo options removed: {sorted(missing)}")
        added_required = [i["name"] for i in after["inputs"]["required"]
                          if i["name"] not in {x["name"] for x in old_inputs}]
        if added_required:
            problems.append(f"{name}: new required inputs {added_required} (make them optional)")
        if after["outputs"][:len(before["outputs"])] != before["outputs"]:
            problems.append(f"{name}: outputs changed {before['outputs']} -> {after['outputs']}")
    return problems


def test_node_definitions_stay_compatible_with_the_snapshot():
    definitions = current()
    if os.environ.get("UNIDIT_UPDATE_SNAPSHOT"):
        SNAPSHOT.write_text(json.dumps(definitions, indent=2) + "\n")
    snapshot = json.loads(SNAPSHOT.read_text())
    assert incompatibilities(snapshot, definitions) == []
    assert definitions == snapshot, "compatible change: update the snapshot (see this module's docstring)"


def test_the_compatibility_rules_catch_breaking_changes():
    base = current()
    sampler = json.loads(json.dumps(base))
    sampler["UniDiTSampler"]["inputs"]["required"].insert(3, {"name": "cfg", "type": "FLOAT"})
    assert any("reordered" in p for p in incompatibilities(base, sampler))
    retyped = json.loads(json.dumps(base))
    retyped["UniDiTSaveVideo"]["inputs"]["required"][2]["options"] = ["mp4"]
    assert any("options removed" in p for p in incompatibilities(base, retyped))
    removed = {k: v for k, v in base.items() if k != "UniDiTDecode"}
    assert incompatibilities(base, removed) == ["UniDiTDecode: node removed or renamed"]
    extended = json.loads(json.dumps(base))
    extended["UniDiTDecode"]["inputs"]["optional"].append({"name": "tile", "type": "BOOLEAN"})
    assert incompatibilities(base, extended) == []


def test_every_node_explains_itself():
    for name, cls in NODE_CLASS_MAPPINGS.items():
        assert name.startswith("UniDiT") and len(cls.DESCRIPTION) > 30, name
        assert cls.CATEGORY.startswith("UniDiT"), name
        declared = node_inputs(cls)
        for section in ("required", "optional"):
            for input_name, spec in declared[section].items():
                assert len(input_spec(spec)[1].get("tooltip", "")) > 10, f"{name}.{input_name} has no tooltip"


def comfyui_validate_node_input(received_type, input_type, strict=False) -> bool:
    """ComfyUI 0.3.64's comfy_execution/validation.py: validate_node_input, word for word: the check every link
    passes there (0.3.64 has no other special case for "*")."""
    if not received_type != input_type:
        return True
    if not isinstance(received_type, str) or not isinstance(input_type, str):
        return False
    received_types = set(t.strip() for t in received_type.split(","))
    input_types = set(t.strip() for t in input_type.split(","))
    if strict:
        return received_types.issubset(input_types)
    return len(received_types.intersection(input_types)) > 0


def test_unload_models_takes_a_link_from_any_output_in_comfyui_and_in_this_host():
    from unidit.host.validation import validate_prompt

    after = NODE_CLASS_MAPPINGS["UniDiTUnloadModels"].INPUT_TYPES()["optional"]["after"][0]
    outputs = {kind for cls in NODE_CLASS_MAPPINGS.values() for kind in cls.RETURN_TYPES} | {"IMAGE", "LATENT"}
    assert all(comfyui_validate_node_input(kind, after) for kind in outputs)
    assert not comfyui_validate_node_input("IMAGE", "*")  # why a plain "*" cannot be connected in 0.3.64
    assert json.dumps(after) == '"*"' and after == "*"    # the editor sees the wildcard it knows
    prompt = {"1": {"class_type": "UniDiTLoader", "inputs": {"bundle": "unidit-toyworld.safetensors",
                                                             "device": "cpu", "dtype": "auto", "attention": "sdpa"}},
              "2": {"class_type": "UniDiTUnloadModels", "inputs": {"after": ["1", 0]}}}
    validation = validate_prompt(prompt, NODE_CLASS_MAPPINGS)
    assert validation.ok and validation.outputs == ["2"], validation.node_errors


def test_the_loaders_offer_only_the_devices_this_machine_has(monkeypatch):
    import torch

    for cuda in (False, True):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
        for name in ("UniDiTLoader", "UniDiTPartsLoader"):
            choices = NODE_CLASS_MAPPINGS[name].INPUT_TYPES()["required"]["device"][0]
            assert choices[:2] == ["auto", "cpu"] and ("cuda" in choices) == cuda, (name, choices)

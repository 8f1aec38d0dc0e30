import importlib.util
import json
import sys
from pathlib import Path

import pytest

from unidit.host.node_info import node_info
from unidit.host.run import standalone_display_names, standalone_nodes
from unidit.host.workflow import WorkflowError, apply_overrides, ui_to_api, widget_slots
from fake_nodes import NODES

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((ROOT / "workflows").glob("*.json"))


def builder():
    spec = importlib.util.spec_from_file_location("build_workflows", ROOT / "tools" / "build_workflows.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_there_is_a_workflow_for_every_pipeline_with_an_api_twin():
    names = {path.stem for path in WORKFLOWS}
    assert names == {"Text to image", "Text to video", "Text to 3D", "Image to video", "Image to 3D",
                     "One prompt, three modalities", "Wan 2.1 text to video", "Wan 2.1 text to image",
                     "Wan 2.2 image to video", "Image to image",
                     "Video extension", "First and last frame to video", "LoRA", "Text to 3D refined",
                     "Turntable frames to mesh", "Depth control"}
    assert {path.stem for path in (ROOT / "workflows" / "api").glob("*.json")} == names


def test_template_titles_are_the_file_names_and_read_as_titles():
    """ComfyUI lists a pack's templates by file name, and the editor titles their cards with it."""
    for path in WORKFLOWS:
        assert path.stem[0].isupper() and "_" not in path.stem and (path.parent / f"{path.stem}.jpg").is_file()


def overlapping(boxes: dict) -> list:
    """Pairs of names whose boxes [left, top, width, height] overlap."""
    items = list(boxes.items())
    return [(a, b) for i, (a, first) in enumerate(items) for b, second in items[i + 1:]
            if first[0] < second[0] + second[2] and second[0] < first[0] + first[2]
            and first[1] < second[1] + second[3] and second[1] < first[1] + first[3]]


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_no_node_or_group_covers_another(path):
    """Nodes with their title bars (30 above their position), and group boxes; the sizes are those the editor
    computes (tests/web/test_editor.py checks them in the editor itself)."""
    ui = json.loads(path.read_text())
    nodes = {f"{n['id']} {n['type']}": [n["pos"][0], n["pos"][1] - 30, n["size"][0], n["size"][1] + 30]
             for n in ui["nodes"]}
    assert overlapping(nodes) == []
    assert overlapping({g["title"]: g["bounding"] for g in ui["groups"]}) == []
    for group in ui["groups"]:  # and every group holds its nodes
        left, top, width, height = group["bounding"]
        assert any(left <= box[0] and box[0] + box[2] <= left + width and top <= box[1] and
                   box[1] + box[3] <= top + height for box in nodes.values())


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_ui_workflow_converts_exactly_to_its_api_twin(path):
    ui = json.loads(path.read_text())
    api = json.loads((path.parent / "api" / path.name).read_text())
    assert ui["version"] == 0.4 and any(n["type"] == "Note" for n in ui["nodes"]) and ui["groups"]
    assert ui_to_api(ui, standalone_nodes(), standalone_display_names()) == api


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_a_servers_object_info_converts_like_the_node_classes(path):
    """`unidit submit` converts with the definitions a server sends; they give the same prompt."""
    nodes = standalone_nodes()
    definitions = {name: json.loads(json.dumps(node_info(name, cls, name, "custom_nodes.unidit")))
                   for name, cls in nodes.items()}
    ui = json.loads(path.read_text())
    assert ui_to_api(ui, definitions, standalone_display_names()) == ui_to_api(ui, nodes, standalone_display_names())


def test_committed_files_are_what_the_builder_writes():
    for relative, data in builder().rendered_files().items():
        assert (ROOT / relative).read_bytes() == data, f"{relative} is stale: run python tools/build_workflows.py"


def test_widget_values_follow_declared_order_with_control_values():
    nodes = standalone_nodes()
    assert widget_slots(nodes["UniDiTSampler"]) == ["seed", None, "steps", "solver", "shift", "denoise",
                                                 "cache_threshold"]
    assert widget_slots(nodes["LoadImage"]) == ["image", None]


def ui_node(node_id, kind, widgets=(), inputs=(), outputs=(), mode=0):
    return {"id": node_id, "type": kind, "mode": mode, "widgets_values": list(widgets),
            "inputs": [{"name": n, "type": t, "link": l} for n, t, l in inputs],
            "outputs": [{"name": t, "type": t, "links": ls} for t, ls in outputs]}


def test_reroutes_notes_muted_and_bypassed_nodes_resolve_like_the_editor():
    workflow = {"nodes": [
        ui_node(1, "Number", [2], outputs=[("INT", [1])]),
        ui_node(2, "Reroute", inputs=[("", "*", 1)], outputs=[("INT", [2])]),
        ui_node(3, "Add", [0, 0, 1.0], inputs=[("a", "INT", 2), ("b", "INT", 3)], outputs=[("INT", [4])]),
        ui_node(4, "Number", [5], outputs=[("INT", [3])]),
        ui_node(5, "Add", [0, 0, 1.0], inputs=[("a", "INT", 4)], outputs=[("INT", [5])], mode=4),  # bypassed
        ui_node(6, "Show", inputs=[("value", "INT", 5)]),
        ui_node(7, "Note", ["a note"]),
        ui_node(8, "Show", inputs=[("value", "INT", None)], mode=2),  # muted
    ], "links": [[1, 1, 0, 2, 0, "INT"], [2, 2, 0, 3, 0, "INT"], [3, 4, 0, 3, 1, "INT"], [4, 3, 0, 5, 0, "INT"],
                 [5, 5, 0, 6, 0, "INT"]]}
    prompt = ui_to_api(workflow, NODES)
    assert set(prompt) == {"1", "3", "4", "6"}
    assert prompt["3"]["inputs"] == {"a": ["1", 0], "b": ["4", 0], "scale": 1.0}
    assert prompt["6"]["inputs"] == {"value": ["3", 0]}


def test_uninstalled_nodes_are_named():
    with pytest.raises(WorkflowError, match="'Mystery', which is not installed"):
        ui_to_api({"nodes": [ui_node(1, "Mystery")], "links": []}, NODES)


def test_overrides_by_id_title_or_unique_class():
    prompt = {"1": {"class_type": "Number", "inputs": {"value": 1}, "_meta": {"title": "first"}},
              "2": {"class_type": "Number", "inputs": {"value": 1}},
              "3": {"class_type": "Text", "inputs": {"text": "x", "mode": "upper"}}}
    apply_overrides(prompt, ["1.value=5", "first.value=6", "Text.text=a blue ball", "2.value=[\"9\", 0]"], NODES)
    assert prompt["1"]["inputs"]["value"] == 6 and prompt["3"]["inputs"]["text"] == "a blue ball"
    assert prompt["2"]["inputs"]["value"] == ["9", 0]
    with pytest.raises(WorkflowError, match="2 nodes"):
        apply_overrides(prompt, ["Number.value=3"], NODES)
    with pytest.raises(WorkflowError, match="NODE.INPUT=VALUE"):
        apply_overrides(prompt, ["seed=3"], NODES)

"""UniDiT Text Encode tells the user which words the model does not know: on the node (the executed message's ui
text, which web/unidit.js shows under the node's widgets) and in the log."""
import logging
from pathlib import Path

from unidit.runtime import comfy_bridge
from unidit.host.executor import Executor, validate_prompt
from unidit.host.run import standalone_nodes
from unidit.host.workflow import apply_overrides, load_workflow

ROOT = Path(__file__).resolve().parents[2]


def encode_node_output(tmp_path, prompt_text):
    executor = Executor(standalone_nodes(), comfy_bridge.HostServices(output_directory=tmp_path))
    prompt = apply_overrides(load_workflow(ROOT / "workflows" / "api" / "Text to image.json"),
                             [f"2.text={prompt_text}", "5.steps=1"], executor.nodes)
    validation = validate_prompt(prompt, executor.nodes)
    events = []
    result = executor.execute(validation.prompt, "p", validation.outputs, emit=lambda e, d: events.append((e, d)))
    assert result.status == "success"
    return [d["output"] for e, d in events if e == "executed" and d["node"] == "2"]


def test_unknown_words_are_shown_on_the_node_and_logged(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="unidit"):
        outputs = encode_node_output(tmp_path / "a", "a dog chasing a red ball")
    assert outputs == [{"text": ["the model does not know the words 'dog', 'chasing'; they are ignored"]}]
    assert any("'dog', 'chasing'" in record.message for record in caplog.records)
    assert encode_node_output(tmp_path / "b", "a red ball") == [{"text": []}]

"""`unidit run`: execute a workflow file (UI or API format) with no server, showing progress bars."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Optional

from tqdm import tqdm

from .. import comfy_bridge
from .executor import ExecutionResult, Executor, validate_prompt
from .workflow import WorkflowError, apply_overrides, is_ui_workflow, load_workflow, to_api_prompt

PACK_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_INPUTS = PACK_ROOT / "workflows" / "input"


def standalone_nodes() -> dict:
    """Every node the standalone host runs: the pack's, and the core nodes shared workflows use."""
    from ...nodes import NODE_CLASS_MAPPINGS
    from .core_nodes import CORE_NODES

    return {**CORE_NODES, **NODE_CLASS_MAPPINGS}


def standalone_display_names() -> dict:
    from ...nodes import NODE_DISPLAY_NAME_MAPPINGS
    from .core_nodes import CORE_DISPLAY_NAMES

    return {**CORE_DISPLAY_NAMES, **NODE_DISPLAY_NAME_MAPPINGS}


def prepare_input_directory(folder: Path) -> None:
    """Create the input folder and put the example workflows' input images in it (never over a user's file)."""
    folder.mkdir(parents=True, exist_ok=True)
    if EXAMPLE_INPUTS.is_dir():
        for example in EXAMPLE_INPUTS.iterdir():
            if example.is_file() and not (folder / example.name).exists():
                shutil.copyfile(example, folder / example.name)


class ValidationFailed(WorkflowError):
    def __init__(self, validation):
        lines = [validation.error["message"] + (f": {validation.error['details']}"
                                                if validation.error.get("details") else "")]
        for node_id, entry in validation.node_errors.items():
            for problem in entry["errors"]:
                lines.append(f"  node {node_id} ({entry['class_type']}): {problem['message']}"
                             + (f" [{problem['details']}]" if problem.get("details") else ""))
        super().__init__("\n".join(lines))
        self.validation = validation


def run_workflow(path: Path, output_dir: Path, overrides: Optional[list] = None, input_dir: Optional[Path] = None,
                 models: Optional[list] = None, executor: Optional[Executor] = None,
                 progress: bool = True) -> ExecutionResult:
    """Validate and run a workflow file; raises :class:`WorkflowError` (or ``ValidationFailed``) for a workflow
    that cannot run. Pass the same ``executor`` to several calls to reuse cached outputs between them."""
    nodes = executor.nodes if executor is not None else standalone_nodes()
    if executor is None:
        input_dir = Path(input_dir or "input")
        prepare_input_directory(input_dir)
        executor = Executor(nodes, comfy_bridge.HostServices(output_directory=Path(output_dir),
                                                             input_directory=input_dir,
                                                             models_directories=list(models or [])))
    workflow = load_workflow(path)
    services_token = comfy_bridge.use_host(executor.services)  # combo lists (input images) during conversion
    try:
        prompt = apply_overrides(to_api_prompt(workflow, nodes, standalone_display_names()), overrides or [])
        validation = validate_prompt(prompt, nodes)
    finally:
        comfy_bridge.release_host(services_token)
    if not validation.ok:
        raise ValidationFailed(validation)
    bars: dict = {}

    def show(event: str, data: dict) -> None:
        if not progress:
            return
        if event == "executing":
            title = (prompt[data["node"]].get("_meta") or {}).get("title", prompt[data["node"]]["class_type"])
            tqdm.write(f"#{data['node']} {title}")
        elif event == "progress":
            bar = bars.get(data["node"])
            if bar is None or bar.total != data["max"]:
                bar = bars[data["node"]] = tqdm(total=data["max"], desc=f"  #{data['node']}", leave=False,
                                                dynamic_ncols=True)
            bar.update(data["value"] - bar.n)
        elif event == "execution_cached" and data["nodes"]:
            tqdm.write(f"cached: {', '.join(data['nodes'])}")

    extra = {"extra_pnginfo": {"workflow": workflow}} if is_ui_workflow(workflow) else {}
    try:
        return executor.execute(validation.prompt, path.stem, validation.outputs, extra, show)
    finally:
        for bar in bars.values():
            bar.close()

"""`unidit run`: execute a workflow file (UI or API format) with no server, showing progress bars."""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Optional

from ..runtime import comfy_bridge
from ..runtime.files import write_atomic
from .executor import ExecutionResult, Executor, validate_prompt
from .terminal import ProgressDisplay, rejection_text
from .workflow import WorkflowError, apply_overrides, is_ui_workflow, load_workflow, to_api_prompt

PACK_ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_INPUTS = PACK_ROOT / "workflows" / "input"


def standalone_nodes() -> dict:
    """Every node the standalone host runs: the pack's, and the core nodes shared workflows use."""
    from ..nodes import NODE_CLASS_MAPPINGS
    from .core_nodes import CORE_NODES

    return {**CORE_NODES, **NODE_CLASS_MAPPINGS}


def standalone_display_names() -> dict:
    from ..nodes import NODE_DISPLAY_NAME_MAPPINGS
    from .core_nodes import CORE_DISPLAY_NAMES

    return {**CORE_DISPLAY_NAMES, **NODE_DISPLAY_NAME_MAPPINGS}


def prepare_input_directory(folder: Path) -> None:
    """Create the input folder and put the example workflows' input images in it (never over a user's file).
    Copies appear whole (processes started together, e.g. the ranks of torchrun, may do this at once)."""
    folder.mkdir(parents=True, exist_ok=True)
    if EXAMPLE_INPUTS.is_dir():
        for example in EXAMPLE_INPUTS.iterdir():
            if example.is_file() and not (folder / example.name).exists():
                with contextlib.suppress(FileExistsError):  # another process copied it first
                    write_atomic(folder / example.name, example.read_bytes())


class ValidationFailed(WorkflowError):
    def __init__(self, validation):
        super().__init__(rejection_text(validation.error, validation.node_errors))
        self.validation = validation


def run_workflow(path: Path, output_dir: Path, overrides: Optional[list] = None, input_dir: Optional[Path] = None,
                 models: Optional[list] = None, executor: Optional[Executor] = None,
                 progress: bool = True, temp_dir: Optional[Path] = None,
                 compute: Optional[comfy_bridge.ComputeOptions] = None) -> ExecutionResult:
    """Validate and run a workflow file; raises :class:`WorkflowError` (or ``ValidationFailed``) for a workflow
    that cannot run. Pass the same ``executor`` to several calls to reuse cached outputs between them."""
    nodes = executor.nodes if executor is not None else standalone_nodes()
    if executor is None:
        input_dir = Path(input_dir or "input")
        prepare_input_directory(input_dir)
        executor = Executor(nodes, comfy_bridge.HostServices(output_directory=Path(output_dir),
                                                             input_directory=input_dir,
                                                             temp_directory=Path(temp_dir or "temp"),
                                                             models_directories=list(models or []),
                                                             compute=compute or comfy_bridge.ComputeOptions()))
    workflow = load_workflow(path)
    services_token = comfy_bridge.use_host(executor.services)  # combo lists (input images) during conversion
    try:
        prompt = apply_overrides(to_api_prompt(workflow, nodes, standalone_display_names()), overrides or [], nodes)
        validation = validate_prompt(prompt, nodes)
    finally:
        comfy_bridge.release_host(services_token)
    if not validation.ok:
        raise ValidationFailed(validation)
    display = ProgressDisplay(prompt, progress)
    extra = {"extra_pnginfo": {"workflow": workflow}} if is_ui_workflow(workflow) else {}
    try:
        return executor.execute(validation.prompt, path.stem, validation.outputs, extra, display.show)
    finally:
        display.close()

"""The only module that touches ComfyUI. Each service has a standalone fallback.

Inside ComfyUI (its modules importable): progress goes to ``comfy.utils.ProgressBar``, interrupts come from
``comfy.model_management``, models are registered with ComfyUI's memory manager (so eviction and ``/free`` work),
model folders and the output folder come from ``folder_paths``, the attention backend "comfy" is ComfyUI's own
``optimized_attention``, and splats and meshes use core's SPLAT and MESH classes where the core has them.

Standalone, a host installs :class:`HostServices` (progress, interrupt, folders) with :func:`use_host`; without
one, progress is silent, nothing interrupts, and the folders are the working directory's ``output/`` and
``input/``. Everything here is imported lazily: importing this module never imports ComfyUI.
"""
from __future__ import annotations

import importlib
import logging
import os
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

log = logging.getLogger(__name__)


class Interrupted(Exception):
    """A standalone host asked the running work to stop."""


def _comfy(module: str):
    """Import a ComfyUI module, or None outside ComfyUI."""
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


def in_comfyui() -> bool:
    return _comfy("comfy.model_management") is not None and _comfy("folder_paths") is not None


# ---- standalone host services ---------------------------------------------------------------------------------

ProgressFn = Callable[[str, int, int, Optional[Any]], None]


@dataclass(frozen=True)
class ComputeOptions:
    """Where and how a standalone host computes (``--device``, ``--vram-budget``, ``--preview-method``,
    ``--memory-budget``)."""

    device: Optional[str] = None               # None / "auto", "cpu", "cuda", "cuda:1", "mps"
    vram_budget_gb: Optional[float] = None     # device memory the weights may use; the rest is streamed
    preview_method: str = "latent2rgb"         # "none", "latent2rgb" or "decode"
    memory_budget_gb: Optional[float] = None   # what one generation may use (runtime/memory_budget.py)

    def __post_init__(self):
        if self.vram_budget_gb is not None and self.vram_budget_gb <= 0:
            raise ValueError(f"the VRAM budget must be a positive number of GB, got {self.vram_budget_gb}")
        if self.memory_budget_gb is not None and not 0 < self.memory_budget_gb < float("inf"):
            raise ValueError(f"the memory budget must be a positive number of GB, got {self.memory_budget_gb}")
        if self.preview_method not in ("none", "latent2rgb", "decode"):
            raise ValueError(f"unknown preview method {self.preview_method!r}; choose none, latent2rgb or decode")


@dataclass
class HostServices:
    """What a standalone host provides to the nodes while it executes them."""

    output_directory: Path = field(default_factory=lambda: Path("output"))
    input_directory: Path = field(default_factory=lambda: Path("input"))
    temp_directory: Path = field(default_factory=lambda: Path("temp"))
    models_directories: list = field(default_factory=list)
    compute: ComputeOptions = field(default_factory=ComputeOptions)
    progress: Optional[ProgressFn] = None              # (node_id, value, total, preview PIL image or None)
    interrupt_requested: Callable[[], bool] = lambda: False


_host: ContextVar[HostServices] = ContextVar("unidit_host", default=HostServices())
current_node: ContextVar[str] = ContextVar("unidit_current_node", default="")


def use_host(services: HostServices):
    """Install ``services`` for the current context; returns a token for :func:`release_host`."""
    return _host.set(services)


def release_host(token) -> None:
    _host.reset(token)


def host() -> HostServices:
    return _host.get()


# ---- progress and interrupt -------------------------------------------------------------------------------------

class Progress:
    """Progress of the running node: ``update(value, preview=None)`` with value in 0..total."""

    def __init__(self, total: int):
        self.total = total
        utils = _comfy("comfy.utils")
        self._bar = utils.ProgressBar(total) if utils is not None and in_comfyui() else None

    def update(self, value: int, preview=None) -> None:
        if self._bar is not None:
            self._bar.update_absolute(value, self.total, ("JPEG", preview, 512) if preview is not None else None)
            return
        services = host()
        if services.progress is not None:
            services.progress(current_node.get(), value, self.total, preview)


def check_interrupt() -> None:
    """Raise if the user asked to stop: ComfyUI's own exception inside ComfyUI, :class:`Interrupted` otherwise.

    Long loops call this themselves (ComfyUI's progress hook throttles its own checks)."""
    management = _comfy("comfy.model_management")
    if management is not None:
        management.throw_exception_if_processing_interrupted()
    elif host().interrupt_requested():
        raise Interrupted("interrupted")


def interruption_types() -> tuple:
    """Exception types that mean "the user stopped it" (never to be reported as an error)."""
    management = _comfy("comfy.model_management")
    extra = (management.InterruptProcessingException,) if management is not None else ()
    return (Interrupted,) + extra


def should_stop() -> bool:
    """For the sampler's cancel check: inside ComfyUI, raises ComfyUI's interrupt exception when asked to stop
    (so ComfyUI reports an interruption, not an error); standalone, returns the host's flag."""
    management = _comfy("comfy.model_management")
    if management is not None:
        management.throw_exception_if_processing_interrupted()
        return False
    return host().interrupt_requested()


# ---- folders ----------------------------------------------------------------------------------------------------

MODEL_FOLDER = "unidit"
# ComfyUI's model folders that UniDiT reads: its own bundles, and the parts of other families' models.
MODEL_KINDS = (MODEL_FOLDER, "diffusion_models", "text_encoders", "vae", "diffusers", "loras")


def output_directory() -> Path:
    folder_paths = _comfy("folder_paths")
    return Path(folder_paths.get_output_directory()) if folder_paths else Path(host().output_directory)


def input_directory() -> Path:
    folder_paths = _comfy("folder_paths")
    return Path(folder_paths.get_input_directory()) if folder_paths else Path(host().input_directory)


def temp_directory() -> Path:
    folder_paths = _comfy("folder_paths")
    return Path(folder_paths.get_temp_directory()) if folder_paths else Path(host().temp_directory)


def model_folders(kind: str) -> list[Path]:
    """Folders searched for one kind of model file (``MODEL_KINDS``): inside ComfyUI, its registered folders for
    that kind (``models/unidit`` is registered and created on first use); standalone, ``<dir>/<kind>`` of every
    ``--models`` folder, and for bundles each ``--models`` folder itself too."""
    if kind not in MODEL_KINDS:
        raise ValueError(f"unknown model folder kind {kind!r}; kinds are {list(MODEL_KINDS)}")
    folder_paths = _comfy("folder_paths")
    if folder_paths is not None:
        if kind == MODEL_FOLDER and MODEL_FOLDER not in folder_paths.folder_names_and_paths:
            default = os.path.join(folder_paths.models_dir, MODEL_FOLDER)
            folder_paths.folder_names_and_paths[MODEL_FOLDER] = ([default], {".safetensors"})
            try:
                os.makedirs(default, exist_ok=True)
            except OSError as error:
                log.warning("UniDiT: could not create %s: %s", default, error)
        if kind not in folder_paths.folder_names_and_paths:
            return []
        return [Path(p) for p in folder_paths.get_folder_paths(kind)]
    return standalone_model_folders([Path(p) for p in host().models_directories], kind)


def register_model_folder() -> None:
    """Inside ComfyUI, register ``models/unidit`` and create it now (the pack calls this when ComfyUI loads it),
    so the folder the Loader names exists before anything asks for the list of bundles."""
    if _comfy("folder_paths") is not None:
        model_folders(MODEL_FOLDER)


def standalone_model_folders(roots: list[Path], kind: str) -> list[Path]:
    """The folders of one kind under standalone ``--models`` roots (see :func:`model_folders`)."""
    if kind == MODEL_FOLDER:
        return [folder for root in roots for folder in (root / MODEL_FOLDER, root)]
    return [root / kind for root in roots]


# ---- devices and memory -----------------------------------------------------------------------------------------

def default_device():
    """ComfyUI's compute device inside ComfyUI; else this rank's device under torchrun (runtime/parallel.py); else
    the host's ``--device`` choice; else CUDA, else Apple's MPS, else the CPU."""
    import torch

    from . import parallel

    management = _comfy("comfy.model_management")
    if management is not None:
        return management.get_torch_device()
    if parallel.context() is not None:
        return parallel.context().device
    if host().compute.device not in (None, "auto"):
        return torch.device(host().compute.device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def weights_device(compute_device):
    """Where a model's weights wait between runs: inside ComfyUI its offload device (the CPU unless it runs with
    --highvram or --gpu-only), from which its memory manager moves them, fully or partly, when a node asks;
    standalone, the compute device itself."""
    management = _comfy("comfy.model_management")
    return management.unet_offload_device() if management is not None else compute_device


def unet_precision() -> tuple:
    """ComfyUI's --fp32-unet / --bf16-unet / --fp16-unet (a compute dtype name) and --fp8_e4m3fn-unet /
    --fp8_e5m2-unet (a storage dtype for the diffusion model's matrices) as (compute, storage); (None, None) when
    no flag is given or outside ComfyUI."""
    import torch

    cli = _comfy("comfy.cli_args")
    args = getattr(cli, "args", None)
    if args is None:
        return None, None
    compute = next((name for flag, name in (("fp32_unet", "fp32"), ("bf16_unet", "bf16"), ("fp16_unet", "fp16"))
                    if getattr(args, flag, False)), None)
    storage = next((dtype for flag, dtype in (("fp8_e4m3fn_unet", torch.float8_e4m3fn),
                                              ("fp8_e5m2_unet", torch.float8_e5m2)) if getattr(args, flag, False)),
                   None)
    return compute, storage


def preview_method() -> str:
    """How sampling previews are made: "none", "latent2rgb" (a cheap projection of the latent) or "decode" (the
    autoencoder). Inside ComfyUI from its --preview-method (taesd -> decode, auto -> latent2rgb); standalone the
    host's setting."""
    cli = _comfy("comfy.cli_args")
    method = getattr(getattr(cli, "args", None), "preview_method", None)
    if method is None:
        return host().compute.preview_method
    value = str(getattr(method, "value", method)).lower()
    return {"none": "none", "taesd": "decode"}.get(value, "latent2rgb")


class ManagedModules:
    """The parts of a loaded model registered with ComfyUI's memory manager (one ModelPatcher each): ComfyUI is
    asked for room before a part goes to the device, may load a part partly when short (layers built from
    ``model/ops.py`` then stream their weights in per call: ComfyUI's lowvram), evicts parts for other models,
    and ``/free`` unloads them. Standalone, this does nothing: parts sit on their device from the start."""

    def __init__(self, modules: dict, device):
        management = _comfy("comfy.model_management")
        patcher = _comfy("comfy.model_patcher")
        self._patchers = {}
        if management is None or patcher is None:
            return
        offload = management.unet_offload_device()
        for name, module in modules.items():
            self._patchers[name] = patcher.ModelPatcher(module, load_device=device, offload_device=offload,
                                                        size=management.module_size(module))

    @property
    def active(self) -> bool:
        """Whether ComfyUI's memory manager holds these parts (inside ComfyUI)."""
        return bool(self._patchers)

    def ready(self, parts=None, memory_required: int = 0) -> None:
        """Put ``parts`` (names, default all) on the device, with ``memory_required`` bytes of room left for
        the computation; ComfyUI frees other models as needed and loads a part partly when it cannot fit."""
        if self._patchers:
            chosen = [self._patchers[name] for name in (self._patchers if parts is None else parts)]
            if chosen:
                _comfy("comfy.model_management").load_models_gpu(chosen, memory_required=memory_required)

    def release(self) -> None:
        """Forget the registration (on explicit unload)."""
        management = _comfy("comfy.model_management")
        if management is None or not self._patchers:
            return
        patchers = list(self._patchers.values())
        for loaded in list(management.current_loaded_models):
            if loaded.model in patchers:
                loaded.model_unload()
                management.current_loaded_models.remove(loaded)
        self._patchers = {}


# ---- attention ---------------------------------------------------------------------------------------------------

def _comfy_attention(q, k, v, mask):
    attention_module = _comfy("comfy.ldm.modules.attention")
    return attention_module.optimized_attention(q, k, v, q.shape[1], mask=mask, skip_reshape=True,
                                                skip_output_reshape=True)


def _register_comfy_attention() -> None:
    """The attention backend "comfy": ComfyUI's ``optimized_attention``, so ComfyUI's command-line attention
    options apply to UniDiT too. Outside ComfyUI it is unavailable (and falls back to sdpa)."""
    from .model.attention import AttentionBackend, register_backend

    register_backend(AttentionBackend("comfy", _comfy_attention,
                                      lambda: _comfy("comfy.ldm.modules.attention") is not None,
                                      lambda q, k, v, mask: None,
                                      "ComfyUI's optimized attention (follows ComfyUI's attention options)"))


_register_comfy_attention()


def install_example_inputs(examples: Path) -> None:
    """Inside ComfyUI, copy the example workflows' input images into ComfyUI's input folder (never over a
    file that is already there), so the image-conditioned examples run as they are."""
    folder_paths = _comfy("folder_paths")
    if folder_paths is None or not examples.is_dir():
        return
    import shutil

    target = Path(folder_paths.get_input_directory())
    try:
        target.mkdir(parents=True, exist_ok=True)
        for example in examples.iterdir():
            if example.is_file() and not (target / example.name).exists():
                shutil.copyfile(example, target / example.name)
    except OSError as error:  # a read-only input folder must not stop the pack from loading
        log.warning("UniDiT: could not copy the example inputs into %s: %s", target.name, error)


# ---- core types --------------------------------------------------------------------------------------------------

def core_type(name: str):
    """Core's class for a socket type (e.g. "SPLAT", "MESH") in this ComfyUI, or None."""
    latest = _comfy("comfy_api.latest")
    found = getattr(getattr(latest, "Types", None), name, None) if latest is not None else None
    if found is None and name == "MESH":
        hunyuan = _comfy("comfy_extras.nodes_hunyuan3d")
        found = getattr(hunyuan, "MESH", None) if hunyuan is not None else None
    return found


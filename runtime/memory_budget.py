"""The memory one generation may use, checked before anything large is allocated.

Every widget of the nodes has a range, but their product does not: a batch of 64 videos of 257 frames at 2048x2048
is within every limit and needs terabytes. So the sizes are checked against a budget twice:

- at validation, from the widgets alone (pixels x frames x batch): the frames a latent will decode to, the
  turntable frames of Render Splat, the density grid of Splat to Mesh. A prompt over the budget is refused with
  400 before it is queued, naming the sizes and what to lower;
- at execution, with the real shapes and the loaded model (``FamilyModel.activation_bytes``: tokens per model
  call, decoded pixels per chunk): a node over the budget fails with the same kind of message, and the server
  goes on.

The budget, in this order: ``UNIDIT_MEMORY_BUDGET_GB``; the host's ``--memory-budget``; three quarters of this
machine's RAM. It bounds host memory (where frames, splats and meshes live, and everything on a CPU device).

Large images are also refused before they are decoded: :data:`MAX_IMAGE_PIXELS` (33.6 megapixels, an 8K frame)
is well below Pillow's decompression-bomb limit (179 megapixels), which alone would let one upload hold
gigabytes. After decoding a large image the freed memory is handed back to the system
(:func:`give_back_freed_memory`), so a server's footprint returns to where it was.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
from typing import Optional

ENVIRONMENT = "UNIDIT_MEMORY_BUDGET_GB"
DEFAULT_FRACTION = 0.75                  # of the machine's RAM, when nothing else is said
FRAME_BYTES_PER_PIXEL = 2 * 3 * 4        # float32 RGB frames, and the copy a save or a preview makes of them
GRID_BYTES_PER_CELL = 3 * 4              # Splat to Mesh: the density grid and the marching-cubes work on it
MAX_IMAGE_PIXELS = 1 << 25               # decoded images: 33.6 megapixels (8192 x 4096)
GIGABYTE = 1024 ** 3


class OverMemoryBudget(ValueError):
    """A generation would need more memory than the budget allows; the message says what to lower."""


def machine_memory() -> int:
    """Bytes of RAM of this machine (0 when the system does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


def budget_bytes() -> int:
    """The budget in bytes (see the module docstring)."""
    from . import comfy_bridge

    raw = os.environ.get(ENVIRONMENT)
    if raw:
        try:
            gigabytes = float(raw)
        except ValueError:
            raise ValueError(f"{ENVIRONMENT}={raw!r} is not a number of GB") from None
        if not 0 < gigabytes < float("inf"):
            raise ValueError(f"{ENVIRONMENT} must be a positive number of GB, got {raw!r}")
        return int(gigabytes * GIGABYTE)
    configured = comfy_bridge.host().compute.memory_budget_gb
    if configured is not None:
        return int(configured * GIGABYTE)
    total = machine_memory()
    return int(total * DEFAULT_FRACTION) if total else 64 * GIGABYTE


def _gb(count: float) -> str:
    return f"{count / GIGABYTE:.1f} GB" if count >= GIGABYTE / 10 else f"{count / 1024 ** 2:.0f} MB"


def problem(needed: int, what: str, lower: str) -> Optional[str]:
    """The message for ``needed`` bytes over the budget (``what`` needs them; ``lower`` says which settings to
    reduce), or None when they fit."""
    budget = budget_bytes()
    if needed <= budget:
        return None
    return (f"{what} need about {_gb(needed)}, over the memory budget of {_gb(budget)}. Lower {lower}, or raise the "
            f"budget with --memory-budget GB (or {ENVIRONMENT}) on a machine that has the memory.")


def require(needed: int, what: str, lower: str) -> None:
    """Raise :class:`OverMemoryBudget` when ``needed`` bytes do not fit the budget."""
    message = problem(needed, what, lower)
    if message is not None:
        raise OverMemoryBudget(message)


def frames_problem(batch: int, frames: int, width: int, height: int, what: str, lower: str) -> Optional[str]:
    """:func:`problem` for ``batch`` x ``frames`` decoded frames of width x height."""
    pixels = batch * frames * width * height
    return problem(pixels * FRAME_BYTES_PER_PIXEL,
                   f"{what} ({batch} x {frames} frame{'s' if frames != 1 else ''} of {width}x{height})", lower)


def require_frames(batch: int, frames: int, width: int, height: int, what: str, lower: str) -> None:
    """Raise :class:`OverMemoryBudget` when :func:`frames_problem` finds one."""
    message = frames_problem(batch, frames, width, height, what, lower)
    if message is not None:
        raise OverMemoryBudget(message)


def check_image_size(width: int, height: int, name: str) -> None:
    """Refuse an image larger than :data:`MAX_IMAGE_PIXELS` before it is decoded."""
    if width * height > MAX_IMAGE_PIXELS:
        raise OverMemoryBudget(f"{name} is {width}x{height} ({width * height / 1e6:.1f} megapixels); images of at "
                               f"most {MAX_IMAGE_PIXELS / 1e6:.1f} megapixels are decoded. Scale it down first.")


def _libc():
    name = ctypes.util.find_library("c")
    try:
        library = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return library if library is not None and hasattr(library, "malloc_trim") else None


_LIBC = _libc()


def give_back_freed_memory() -> None:
    """Return the memory freed by large temporary buffers to the system (glibc keeps it for reuse otherwise, so
    a server that decoded one large image would keep its size for good). A no-op where malloc_trim is missing."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)

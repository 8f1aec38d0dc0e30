"""Make the template thumbnails of the example workflows: ``workflows/<name>.jpg``, which the editor shows on the
pack's template cards (it asks `unidit serve` and ComfyUI for ``/api/workflow_templates/unidit/<name>.jpg``).

Each thumbnail is what its workflow makes with the shipped bundle: the first frame of every image or video it
decodes, and a front view of every splat it decodes or fits, in a square grid. The workflow's API twin (``workflows/api/<name>.json``)
runs up to those decoders only, with a core Preview Image node added after each (and a Render Splat node
before the previews of splats). Workflows for models the pack does not ship (Wan) get a card instead: what the
workflow makes and the files it needs.

    python tools/make_thumbnails.py [--models DIR] [NAME ...]   # again whenever the shipped bundle changes
"""
from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from unidit.runtime import comfy_bridge
from unidit.host.executor import Executor, validate_prompt
from unidit.host.run import prepare_input_directory, standalone_nodes
from unidit.host.workflow import load_workflow
from unidit.host.terminal import finish, rejection_text

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / "workflows"
SIZE = 256                        # the thumbnail's width and height, px
FRONT_VIEW = {"frames": 1, "width": SIZE, "height": SIZE, "elevation": 20.0, "distance": 2.0,
              "background": "white"}


def with_previews(prompt: dict) -> tuple[dict, list]:
    """``prompt`` with a Preview Image after every decoder and splat fit (a Render Splat first for splats), and
    their ids."""
    prompt = dict(prompt)
    previews = []
    for node_id, node in sorted(prompt.items(), key=lambda item: (len(item[0]), item[0])):
        source = [node_id, 0]
        if node["class_type"] in ("UniDiTDecodeSplat", "UniDiTFitSplats"):
            prompt[f"render_{node_id}"] = {"class_type": "UniDiTRenderSplat", "inputs": {"splat": source, **FRONT_VIEW}}
            source = [f"render_{node_id}", 0]
        elif node["class_type"] != "UniDiTDecode":
            continue
        previews.append(f"preview_{node_id}")
        prompt[previews[-1]] = {"class_type": "PreviewImage", "inputs": {"images": source}}
    return prompt, previews


def thumbnail(name: str, executor: Executor) -> Image.Image:
    prompt, previews = with_previews(load_workflow(WORKFLOWS / "api" / f"{name}.json"))
    if not previews:
        raise SystemExit(f"{name}: the workflow decodes nothing to show")
    token = comfy_bridge.use_host(executor.services)  # LoadImage checks its image in the host's input folder
    try:
        validation = validate_prompt(prompt, executor.nodes, previews)
    finally:
        comfy_bridge.release_host(token)
    if not validation.ok:
        raise SystemExit(f"{name}: {rejection_text(validation.error, validation.node_errors)}")
    result = executor.execute(validation.prompt, name, validation.outputs)
    if result.status != "success":
        finish(result.status, result.error)
        raise SystemExit(f"{name}: the workflow did not run")
    temp = executor.services.temp_directory
    tiles = []
    for preview in previews:
        first = result.outputs[preview]["images"][0]
        with Image.open(temp / first["subfolder"] / first["filename"]) as frame:
            tiles.append(frame.convert("RGB"))
    columns = math.ceil(math.sqrt(len(tiles)))
    size = SIZE // columns
    sheet = Image.new("RGB", (SIZE, SIZE), "white")
    for index, tile in enumerate(tiles):
        position = (index % columns * size, index // columns * size)
        sheet.paste(tile.resize((size, size), Image.Resampling.LANCZOS), position)
    return sheet


def card(name: str) -> Image.Image:
    """A thumbnail for a workflow whose model is not shipped: its task, a film strip or frame, the files it needs."""
    api = load_workflow(WORKFLOWS / "api" / f"{name}.json")
    loader = next(node["inputs"] for node in api.values() if node["class_type"] == "UniDiTPartsLoader")
    video = any(node["class_type"] == "UniDiTEmptyVideoLatent" for node in api.values())
    image_in = any(node["class_type"] == "UniDiTImageCondition" for node in api.values())
    family = "Wan 2.2" if "2.2" in loader["diffusion_model"] else "Wan 2.1"
    task = ("image -> video" if image_in else "text -> video") if video else "text -> image"
    sheet = Image.new("RGB", (SIZE, SIZE), "#1d2733")
    draw = ImageDraw.Draw(sheet)
    title, small = ImageFont.load_default(size=30), ImageFont.load_default(size=13)
    draw.text((16, 14), family, fill="#f0f0f0", font=title)
    draw.text((16, 52), task, fill="#9fd3ff", font=ImageFont.load_default(size=22))
    frames = 4 if video else 1
    width = (SIZE - 32 - 8 * (frames - 1)) // frames
    for index in range(frames):
        left = 16 + index * (width + 8)
        draw.rectangle((left, 96, left + width, 96 + 84), outline="#9fd3ff", width=2,
                       fill="#2c3e50" if index or not image_in else "#b58b2a")
    for row, part in enumerate(("diffusion_model", "text_encoder", "vae")):
        draw.text((16, 196 + 17 * row), loader[part].removesuffix(".safetensors"), fill="#c8c8c8", font=small)
    return sheet


def main(argv: list | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=Path, action="append", default=[],
                        help="a folder of bundles searched before the pack's models/ (for trying a stand-in)")
    parser.add_argument("names", nargs="*", help="the workflows to make thumbnails of (default: all)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        prepare_input_directory(work / "input")
        executor = Executor(standalone_nodes(), comfy_bridge.HostServices(
            output_directory=work / "output", input_directory=work / "input", temp_directory=work / "temp",
            models_directories=args.models))
        for workflow in sorted(WORKFLOWS.glob("*.json")):
            if args.names and workflow.stem not in args.names:
                continue
            path = workflow.with_suffix(".jpg")
            api = load_workflow(WORKFLOWS / "api" / workflow.name)
            shipped = not any(node["class_type"] == "UniDiTPartsLoader" for node in api.values())
            (thumbnail(workflow.stem, executor) if shipped else card(workflow.stem)).save(path, quality=90)
            print(path, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

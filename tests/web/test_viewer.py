"""The in-node 3D viewer (web/viewer/viewer.mjs) and the extension that puts it in nodes (web/unidit.js), in
headless Chromium.

Splats and meshes made by the runtime are served with web/ from a throwaway local server, drawn by
tests/web/harness.html (the viewer alone) or tests/web/extension.html (the extension, driven like the editor
drives it), screenshotted by tests/js/screenshot.mjs (one browser for all pages) and checked: the object is
drawn, without page errors; it stands upright and unmirrored (the test shapes are coloured by their surface
normal); a splat and the mesh extracted from it cover the same pixels; a textured mesh shows its texture (a GLB's
baseColorTexture; an OBJ's material library and its PNG, fetched next to the OBJ through ComfyUI's /view), and an
OBJ whose library is missing is drawn matte; the drawing buffer has the display's pixels (devicePixelRatio 2, a
CSS zoom as ComfyUI's); a missing file is reported, not waited for. The screenshots are kept in
test-artifacts/viewer/ for a person to look at.
"""
from __future__ import annotations

import colorsys
import dataclasses
import functools
import http.server
import threading
from pathlib import Path
from urllib.parse import parse_qs, quote, urlencode

import numpy as np
import pytest
import torch
from PIL import Image

from unidit.runtime.gaussians.mesh import MeshConfig, splat_to_mesh, texture_mesh, textured_obj
from unidit.runtime.gaussians.sh import rgb_to_sh0
from unidit.runtime.gaussians.shapes import sphere_splats, torus_splats
from unidit.runtime.output_formats import MESH_FILES, SPLAT_FILES
from browser_testing import ARTIFACTS as ALL_ARTIFACTS, REPO, require_browser, run_browser_script

HERE = Path(__file__).parent
ARTIFACTS = ALL_ARTIFACTS / "viewer"

VIEWER_KINDS = {kind.name: kind for kind in (SPLAT_FILES, MESH_FILES)}  # every format of these is shown in the node
# name: (shape, kind, format): the sphere in every registered splat and mesh format, the torus in the defaults
CASES = {f"sphere_{kind.name}.{extension}": ("sphere", kind.name, extension)
         for kind in VIEWER_KINDS.values() for extension in kind.extensions}
CASES.update({f"torus_{kind.name}.{kind.default}": ("torus", kind.name, kind.default)
              for kind in VIEWER_KINDS.values()})
FOREGROUND = 24  # of 255, in some channel
# Pages that are not one of CASES in the harness: the extension showing a node's output, and a missing file.
EXTENSION_PAGE = "extension_sphere_splat.ply"
MISSING_PAGE = "missing.ply"
# The sphere splat on a display of devicePixelRatio 2, and zoomed 2x by a CSS transform after it has drawn:
# page name -> (devicePixelRatio, harness options).
SHARP_PAGES = {"hidpi_sphere_splat.ply": (2, {}), "zoomed_sphere_splat.ply": (1, {"zoom": 2})}

# Textured meshes: a sphere red where x < 0 and blue where x > 0 (splat frame), meshed and textured (xatlas UVs,
# baked base colour) by our own code, served as files of these names; the viewer pages that show them.
RED, BLUE = (0.9, 0.1, 0.1), (0.1, 0.2, 0.9)
TEXTURED_GLB, UNTEXTURED_GLB = "textured_mesh.glb", "untextured_mesh.glb"
TEXTURED_OBJ, OBJ_WITHOUT_LIBRARY = "textured_mesh.obj", "lonely_mesh.obj"  # the second names an absent MTL
MESH_PAGES = {TEXTURED_GLB: f"/files/{TEXTURED_GLB}", UNTEXTURED_GLB: f"/files/{UNTEXTURED_GLB}",
              TEXTURED_OBJ: "/api/view?" + urlencode({"filename": TEXTURED_OBJ, "subfolder": "", "type": "output"}),
              OBJ_WITHOUT_LIBRARY: "/api/view?" + urlencode({"filename": OBJ_WITHOUT_LIBRARY, "subfolder": "",
                                                             "type": "output"})}


def file_bytes(shape: str, kind: str, file_format: str) -> bytes:
    item = _shape_splats(shape) if kind == "splat" else _shape_mesh(shape)
    return VIEWER_KINDS[kind].write(file_format, item)


@functools.cache
def _shape_splats(shape: str):
    # Both shapes are coloured 0.5 + 0.4 * normal in the splat frame (x right, y down, z forward).
    return sphere_splats(4000) if shape == "sphere" else torus_splats(6000)


@functools.cache
def _shape_mesh(shape: str):
    return splat_to_mesh(_shape_splats(shape), MeshConfig(resolution=64, target_faces=20_000))


def textured_files() -> dict[str, bytes]:
    """The two-colour sphere's textured mesh as GLB and as OBJ + MTL + PNG; the same GLB without its texture (white:
    what the textured one would look like if the viewer dropped its map); an OBJ naming an MTL that is not there."""
    splats = sphere_splats(2000, radius=0.4)
    blue = splats.positions[0, :, 0] > 0
    splats.sh[0, :, 0] = rgb_to_sh0(torch.where(blue[:, None], torch.tensor(BLUE), torch.tensor(RED)))
    mesh = texture_mesh(splat_to_mesh(splats, MeshConfig(resolution=48, target_faces=3000)), splats, 256)
    untextured = dataclasses.replace(mesh, vertex_colors=np.ones_like(mesh.vertex_colors), uvs=None, texture=None)
    obj, library, png = textured_obj(mesh, "textured_mesh.png", "textured_mesh.mtl")
    return {TEXTURED_GLB: MESH_FILES.write("glb", mesh), UNTEXTURED_GLB: MESH_FILES.write("glb", untextured),
            TEXTURED_OBJ: obj, "textured_mesh.mtl": library, "textured_mesh.png": png,
            OBJ_WITHOUT_LIBRARY: textured_obj(mesh, "absent.png", "absent.mtl")[0]}


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves the test pages at /pages/, web/ at /web/ and where ComfyUI serves it (/extensions/unidit/), the
    stub frontend shims at /scripts/, and the generated files at /files/NAME and ComfyUI's /api/view?filename=NAME."""

    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, ".mjs": "text/javascript"}
    roots: dict[str, Path] = {}  # URL prefix -> folder; set on a subclass per server

    def translate_path(self, path):
        path, _, query = path.partition("?")
        if path == "/api/view":
            path = "/files/" + quote(Path(parse_qs(query)["filename"][0]).name)
        for prefix, root in self.roots.items():
            if path.startswith(prefix):
                self.directory = str(root)
                return super().translate_path(path[len(prefix) - 1:])  # keeps the "/" after the prefix
        return ""  # not found

    def log_message(self, format, *args):  # keep the test output clean
        pass


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory):
    """{page name: screenshot result of tests/js/screenshot.mjs, plus `image` as an [H, W, 3] uint8 array}."""
    require_browser("the viewer test")
    files = tmp_path_factory.mktemp("viewer_files")
    for name, case in CASES.items():
        (files / name).write_bytes(file_bytes(*case))
    for name, data in textured_files().items():
        (files / name).write_bytes(data)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    roots = {"/pages/": HERE, "/web/": REPO / "web", "/extensions/unidit/": REPO / "web",
             "/scripts/": HERE / "comfy_stub", "/files/": files}
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), type("Handler", (_Handler,), {"roots": roots}))
    threading.Thread(target=server.serve_forever, daemon=True).start()

    def harness(url, kind, file_format, **options):
        return "pages/harness.html?" + urlencode({"url": url, "kind": kind, "format": file_format, **options})

    pages = {name: (harness(f"/files/{name}", kind, file_format), 1) for name, (_, kind, file_format) in CASES.items()}
    pages[MISSING_PAGE] = (harness(f"/files/{MISSING_PAGE}", "splat", "ply"), 1)
    pages[EXTENSION_PAGE] = ("pages/extension.html?" + urlencode({"node": "UniDiTSaveSplat", "kind": "splat",
                                                                  "filename": "sphere_splat.ply", "format": "ply"}), 1)
    pages.update({name: (harness(url, "mesh", Path(name).suffix[1:]), 1) for name, url in MESH_PAGES.items()})
    pages.update({name: (harness("/files/sphere_splat.ply", "splat", "ply", **options), scale)
                  for name, (scale, options) in SHARP_PAGES.items()})
    try:
        triples = []
        for name, (page, scale) in pages.items():
            triples += [f"http://127.0.0.1:{server.server_port}/{page}", str(ARTIFACTS / f"{name}.png"), scale]
        results = dict(zip(pages, run_browser_script("screenshot.mjs", triples, timeout=600)))
    finally:
        server.shutdown()
        server.server_close()
    for result in results.values():
        result["image"] = np.asarray(Image.open(result["out"]).convert("RGB")) if result["ready"] else None
    return results


def foreground(image: np.ndarray) -> np.ndarray:
    """Pixels that differ from the background (the top-left pixel's colour) by more than FOREGROUND."""
    return np.abs(image.astype(int) - image[0, 0].astype(int)).max(axis=-1) > FOREGROUND


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


@pytest.mark.parametrize("name", CASES)
def test_every_file_is_drawn_without_errors(screenshots, name):
    result = screenshots[name]
    assert result["ready"], f"{name} was not drawn: {result['error']}"
    assert result["pageErrors"] == [] and result["consoleErrors"] == [], result
    coverage = foreground(result["image"]).mean()
    assert coverage > 0.1, f"{name}: only {coverage:.1%} of the canvas shows the object"


@pytest.mark.parametrize("name", ["sphere_splat.ply", "sphere_mesh.glb", "sphere_mesh.ply"])
def test_objects_stand_upright_unmirrored_and_face_the_camera(screenshots, name):
    """The sphere's colour is 0.5 + 0.4 · normal in the splat frame: its top (normal -y) has little green, its
    right (+x) much red, and the side facing the default camera (-z in the splat frame) little blue."""
    image = screenshots[name]["image"].astype(float)
    mask = foreground(screenshots[name]["image"])
    rows, columns = np.nonzero(mask)
    top, bottom = np.percentile(rows, [15, 85])
    left, right = np.percentile(columns, [15, 85])
    mean = lambda region: image[region & mask].mean(axis=0)  # noqa: E731  (mean RGB over a region)
    row_index, column_index = np.indices(mask.shape)
    upper, lower = mean(row_index < top), mean(row_index > bottom)
    left_side, right_side = mean(column_index < left), mean(column_index > right)
    centre = mean((np.abs(row_index - rows.mean()) < 20) & (np.abs(column_index - columns.mean()) < 20))
    assert upper[1] < 0.7 * lower[1], f"{name} is upside down: green at the top {upper}, at the bottom {lower}"
    assert right_side[0] > 1.3 * left_side[0], f"{name} is mirrored: red on the left {left_side}, right {right_side}"
    assert centre[2] < 0.7 * min(centre[0], centre[1]), f"{name} shows its back: centre colour {centre}"


@pytest.mark.parametrize("shape", ["sphere", "torus"])
def test_a_splat_and_its_mesh_cover_the_same_pixels(screenshots, shape):
    splat = foreground(screenshots[f"{shape}_splat.ply"]["image"])
    mesh = foreground(screenshots[f"{shape}_mesh.glb"]["image"])
    assert iou(splat, mesh) > 0.8, f"{shape}: splat and mesh silhouettes overlap by IoU {iou(splat, mesh):.2f}"


@pytest.mark.parametrize("name", ["sphere_splat.spz", "sphere_splat.splat", "sphere_mesh.ply"])
def test_every_format_of_one_object_looks_the_same(screenshots, name):
    reference = "sphere_splat.ply" if "splat" in name else "sphere_mesh.glb"
    a, b = screenshots[reference]["image"], screenshots[name]["image"]
    assert iou(foreground(a), foreground(b)) > 0.95
    both = foreground(a) & foreground(b)
    difference = np.abs(a[both].astype(float) - b[both].astype(float)).mean()
    assert difference < 12, f"{name} differs from {reference} by {difference:.1f}/255 on average"


def test_a_missing_file_is_reported_not_waited_for(screenshots):
    result = screenshots[MISSING_PAGE]
    assert not result["ready"] and "HTTP 404" in result["error"], result


def test_the_extension_shows_a_nodes_output(screenshots):
    """web/unidit.js, given a node's `unidit_3d` output, fetches the file from /api/view and draws it like the
    viewer alone does."""
    result = screenshots[EXTENSION_PAGE]
    assert result["ready"], f"the node did not show its output: {result['error']}"
    assert result["pageErrors"] == [] and result["consoleErrors"] == [], result
    alone = foreground(screenshots["sphere_splat.ply"]["image"])
    assert iou(foreground(result["image"]), alone) > 0.95


def side_colours(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The mean colour (0..1) of the object's left and right thirds on screen."""
    mask = foreground(image)
    left, right = np.percentile(np.nonzero(mask)[1], [33, 67])
    columns = np.indices(mask.shape)[1]
    return image[mask & (columns < left)].mean(axis=0) / 255, image[mask & (columns > right)].mean(axis=0) / 255


def hue_and_saturation(colour) -> tuple[float, float]:
    """Hue in degrees (0 red, 120 green, 240 blue) and saturation (0 grey .. 1) of an RGB colour in 0..1."""
    hue, saturation, _ = colorsys.rgb_to_hsv(*colour)
    return hue * 360, saturation


def hue_distance(a: float, b: float) -> float:
    return abs((a - b + 180) % 360 - 180)


def assert_red_left_blue_right(name: str, image: np.ndarray):
    """The two-colour sphere's sides, +x on the right (the splat frame's x is kept): red left, blue right."""
    for side, colour, expected in zip(("left", "right"), side_colours(image), (RED, BLUE)):
        hue, saturation = hue_and_saturation(colour)
        want_hue, _ = hue_and_saturation(expected)
        assert hue_distance(hue, want_hue) < 20 and saturation > 0.5, \
            f"{name}: the {side} side is {np.round(colour, 2)} (hue {hue:.0f}°, saturation {saturation:.2f}), " \
            f"not the texture's {expected} (hue {want_hue:.0f}°)"


def assert_drawn_cleanly(name: str, result: dict):
    assert result["ready"], f"{name} was not drawn: {result['error']}"
    assert result["pageErrors"] == [] and result["consoleErrors"] == [], result


def test_a_textured_glb_shows_its_texture(screenshots):
    """Our GLB's colour is in its baseColorTexture alone (no vertex colours, a white base colour factor): the
    viewer keeps the file's material with its map, so the sphere is red and blue, where the same mesh without
    the texture is white."""
    for name in (TEXTURED_GLB, UNTEXTURED_GLB):
        assert_drawn_cleanly(name, screenshots[name])
    assert_red_left_blue_right(TEXTURED_GLB, screenshots[TEXTURED_GLB]["image"])
    textured, untextured = (side_colours(screenshots[name]["image"]) for name in (TEXTURED_GLB, UNTEXTURED_GLB))
    for side, colour in zip(("left", "right"), untextured):
        assert hue_and_saturation(colour)[1] < 0.15, f"the untextured mesh's {side} side is coloured: {colour}"
    difference = max(np.abs(a - b).max() for a, b in zip(textured, untextured))
    assert difference > 0.3, f"the textured and untextured GLBs look alike: {textured} vs {untextured}"


def test_an_obj_shows_its_mtl_and_png_fetched_through_view(screenshots):
    """The viewer is given only the OBJ's /api/view?filename=... URL; the MTL that the OBJ names and the PNG that
    the MTL names are fetched by replacing the filename, and the sphere looks as the textured GLB does."""
    result = screenshots[TEXTURED_OBJ]
    assert_drawn_cleanly(TEXTURED_OBJ, result)
    assert_red_left_blue_right(TEXTURED_OBJ, result["image"])
    glb = foreground(screenshots[TEXTURED_GLB]["image"])
    assert iou(foreground(result["image"]), glb) > 0.95


def test_an_obj_whose_library_is_missing_is_drawn_matte(screenshots):
    """An OBJ copied without its MTL and PNG: the MTL's 404 is the only error the browser logs; the mesh is drawn,
    matte white (this OBJ has no vertex colours), where the textured OBJ is."""
    result = screenshots[OBJ_WITHOUT_LIBRARY]
    assert result["ready"], f"{OBJ_WITHOUT_LIBRARY} was not drawn: {result['error']}"
    assert result["pageErrors"] == [] and len(result["consoleErrors"]) == 1, result
    assert "404" in result["consoleErrors"][0], result["consoleErrors"]
    for side, colour in zip(("left", "right"), side_colours(result["image"])):
        assert hue_and_saturation(colour)[1] < 0.15 and colour.min() > 0.3, f"the {side} side is {colour}"
    textured = foreground(screenshots[TEXTURED_OBJ]["image"])
    assert iou(foreground(result["image"]), textured) > 0.95


@pytest.mark.parametrize("name, device_pixels", [("sphere_splat.ply", 1), *((name, 2) for name in SHARP_PAGES)])
def test_splats_are_drawn_at_the_displays_resolution(screenshots, name, device_pixels):
    """The drawing buffer has one pixel per device pixel of the canvas on screen: 2x its CSS size at
    devicePixelRatio 2, and after a 2x CSS zoom (ComfyUI's canvas zoom), not a CSS-sized buffer stretched into
    blocks. The splat covers the same part of the canvas as at 1x."""
    result = screenshots[name]
    assert_drawn_cleanly(name, result)
    canvas = result["canvas"]
    assert (canvas["width"], canvas["height"]) == (device_pixels * canvas["clientWidth"],
                                                   device_pixels * canvas["clientHeight"]), canvas
    image = result["image"]
    assert image.shape[:2] == (canvas["height"], canvas["width"])  # the screenshot holds the display's pixels
    height, width = (size // device_pixels for size in image.shape[:2])
    shrunk = image.reshape(height, device_pixels, width, device_pixels, 3).mean(axis=(1, 3)).astype(np.uint8)
    assert iou(foreground(shrunk), foreground(screenshots["sphere_splat.ply"]["image"])) > 0.95

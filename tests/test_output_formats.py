"""The one registry of output files: each format writes a file of its own type, extensions name one MIME type,
and the layers above offer and serve exactly what it registers."""
import mimetypes

import numpy as np
import pytest
import torch

from unidit.host.jobs import PREVIEWABLE_SUFFIXES
from unidit.nodes.save import UniDiTSaveMesh, UniDiTSaveSplat, UniDiTSaveVideo
from unidit.runtime.gaussians.mesh import Mesh
from unidit.runtime.gaussians.shapes import sphere_splats
from unidit.runtime.output_formats import (IMAGE_FILES, MESH_FILES, OUTPUT_KINDS, SPLAT_FILES, VIDEO_FILES,
                                           mime_type)

# The first bytes of each file type (STL: a free 80-byte header, then the face count; checked apart).
MAGIC = {"png": b"\x89PNG", "mp4": b"ftyp", "webm": b"\x1a\x45\xdf\xa3", "webp": b"RIFF", "ply": b"ply\n",
         "spz": b"\x1f\x8b", "glb": b"glTF", "obj": b"#"}


def tetrahedron() -> Mesh:
    vertices = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], np.float32)
    faces = np.array([[0, 1, 2], [0, 3, 1], [0, 2, 3], [1, 3, 2]], np.int64)
    normals = vertices / np.linalg.norm(vertices, axis=1, keepdims=True)
    return Mesh(vertices, faces, normals, np.full((4, 3), 0.5, np.float32))


SAMPLES = {"image": (torch.rand(8, 8, 3), {"prompt": "x"}), "video": (torch.rand(3, 8, 8, 3), 8.0),
           "splat": (sphere_splats(64),), "mesh": (tetrahedron(),)}


@pytest.mark.parametrize("kind, extension", [(kind.name, extension) for kind in OUTPUT_KINDS
                                             for extension in kind.extensions])
def test_every_format_writes_a_file_of_its_own_type(kind, extension):
    output_kind = next(k for k in OUTPUT_KINDS if k.name == kind)
    data = output_kind.write(extension, *SAMPLES[kind])
    if extension == "stl":
        assert len(data) == 84 + 50 * 4 and int.from_bytes(data[80:84], "little") == 4  # 4 faces, 50 bytes each
    elif extension == "splat":
        assert len(data) == 64 * 32  # one 32-byte record per Gaussian
    elif extension == "mp4":
        assert data[4:8] == MAGIC["mp4"]
    else:
        assert data.startswith(MAGIC[extension]), data[:16]


def test_the_default_is_the_first_format_and_extensions_are_unique():
    for kind in OUTPUT_KINDS:
        assert kind.default == kind.extensions[0]
        assert len(set(kind.extensions)) == len(kind.extensions), kind.name
    assert [kind.default for kind in OUTPUT_KINDS] == ["png", "mp4", "ply", "glb"]


def test_an_extension_names_one_mime_type_agreeing_with_the_standard_table():
    for kind in OUTPUT_KINDS:
        for file_format in kind.formats:
            assert mime_type(f"a.{file_format.extension.upper()}") == file_format.mime_type  # ply: splat and mesh
            known = mimetypes.guess_type(f"a.{file_format.extension}")[0]
            assert known in (None, file_format.mime_type), (file_format.extension, known)
    assert mime_type("notes.txt") is None


def test_unknown_formats_name_the_choices():
    with pytest.raises(ValueError, match="unknown splat format 'obj'; choose one of ply, spz, splat"):
        SPLAT_FILES.write("obj", sphere_splats(8))
    assert IMAGE_FILES.format(".PNG").extension == "png"


@pytest.mark.parametrize("node, kind", [(UniDiTSaveVideo, VIDEO_FILES), (UniDiTSaveSplat, SPLAT_FILES),
                                        (UniDiTSaveMesh, MESH_FILES)])
def test_save_nodes_offer_exactly_the_registered_formats(node, kind):
    choices, options = node.INPUT_TYPES()["required"]["format"]
    assert choices == kind.extensions and options["default"] == kind.default
    assert all(extension in options["tooltip"] for extension in kind.extensions)


def test_the_jobs_api_previews_every_splat_and_mesh_format():
    assert {f".{extension}" for kind in (SPLAT_FILES, MESH_FILES) for extension in kind.extensions} <= set(
        PREVIEWABLE_SUFFIXES)

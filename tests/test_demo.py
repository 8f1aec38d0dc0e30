"""`unidit demo`, the main job: one prompt -> an image, a video, a splat and a mesh, each opening in the usual tools."""
import io

import av
import trimesh
from PIL import Image
from plyfile import PlyData

from unidit.host.cli import main
from unidit_testing import glb_vertex_colours_present


def test_demo_writes_four_files_that_open(tmp_path, capsys):
    assert main(["demo", "--prompt", "a small blue ball", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    files = {path.suffix: path for path in tmp_path.iterdir()}
    assert set(files) == {".png", ".mp4", ".ply", ".glb"}
    for path in files.values():
        assert str(path) in printed
    assert Image.open(files[".png"]).size == (64, 64)
    with av.open(str(files[".mp4"])) as container:
        assert sum(1 for _ in container.decode(video=0)) == 9
    vertex = PlyData.read(str(files[".ply"]))["vertex"]
    assert vertex.count > 100 and "opacity" in [p.name for p in vertex.properties]
    mesh = trimesh.load(io.BytesIO(files[".glb"].read_bytes()), file_type="glb", force="mesh")
    assert len(mesh.faces) > 100
    assert glb_vertex_colours_present(files[".glb"])  # the object's colours travel with the mesh


def test_demo_names_the_words_the_model_does_not_know(tmp_path, capsys):
    assert main(["demo", "--prompt", "a dog, a red ball", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "note: the model does not know the word 'dog'; it is ignored" in printed
    assert main(["demo", "--prompt", "a red ball", "--out", str(tmp_path / "known")]) == 0
    assert "note:" not in capsys.readouterr().out

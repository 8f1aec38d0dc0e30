import io

import numpy as np
import plyfile
import pytest
import torch

from unidit.runtime.gaussians.ply import ply_bytes, ply_property_names, read_ply, write_ply
from unidit.runtime.gaussians.shapes import random_splats

GRAPHDECO_SH3 = (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
                 + [f"f_rest_{i}" for i in range(45)]
                 + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])


def splat(sh_degree=3, count=200, seed=0):
    return random_splats(count, sh_degree=sh_degree, generator=torch.Generator().manual_seed(seed))


def test_header_lists_the_graphdeco_properties_in_order(tmp_path):
    path = write_ply(splat(), tmp_path / "scene.ply")
    data = plyfile.PlyData.read(str(path))  # an independent reader
    assert not data.text and data.byte_order == "<"
    assert [p.name for p in data["vertex"].properties] == GRAPHDECO_SH3
    assert all(p.val_dtype in ("f4", "float32") for p in data["vertex"].properties)
    assert path.stat().st_size == len(ply_bytes(splat())) and len(ply_bytes(splat(0, count=10)).split(
        b"end_header\n")[1]) == 10 * 68  # 17 floats per Gaussian at SH degree 0
    assert ply_property_names(0) == GRAPHDECO_SH3[:9] + GRAPHDECO_SH3[-8:]


def test_stored_values_are_the_raw_parameterisation(tmp_path):
    splats = splat()
    vertex = plyfile.PlyData.read(io.BytesIO(ply_bytes(splats)))["vertex"]
    raw = splats.to(dtype=torch.float64).to_raw()

    def stored(*names):
        return torch.from_numpy(np.stack([vertex[n] for n in names], axis=-1).astype(np.float64))

    def as_float32(values):
        return values[0].float().double()

    assert torch.equal(stored("x", "y", "z"), as_float32(raw.positions))
    assert torch.equal(stored("opacity"), as_float32(raw.opacity_logits))
    assert torch.equal(stored("scale_0", "scale_1", "scale_2"), as_float32(raw.log_scales))
    assert torch.equal(stored("rot_0", "rot_1", "rot_2", "rot_3"), as_float32(raw.quaternions))  # w x y z
    assert torch.equal(stored("f_dc_0", "f_dc_1", "f_dc_2"), as_float32(raw.sh[:, :, 0]))
    assert torch.equal(stored("nx", "ny", "nz"), torch.zeros(200, 3, dtype=torch.float64))
    # f_rest is channel-major: 0..14 red of coefficients 1..15, then 15 green, then 15 blue.
    rest = stored(*[f"f_rest_{i}" for i in range(45)])
    for channel in range(3):
        assert torch.equal(rest[:, 15 * channel:15 * (channel + 1)], as_float32(raw.sh[:, :, 1:, channel]))


@pytest.mark.parametrize("sh_degree", [0, 1, 3])
def test_write_then_read_reproduces_every_attribute(tmp_path, sh_degree):
    splats = splat(sh_degree)
    back = read_ply(write_ply(splats, tmp_path / f"degree{sh_degree}.ply"))
    assert back.sh_degree == sh_degree and back.num_gaussians == 200
    assert torch.equal(back.positions, splats.positions)
    assert torch.equal(back.sh, splats.sh)
    assert torch.allclose(back.scales, splats.scales, rtol=1e-6, atol=0)
    assert torch.allclose(back.opacities, splats.opacities, rtol=1e-6, atol=0)
    # Reading normalises the quaternion again; a float32 unit quaternion is unit only to about 1e-7.
    assert torch.allclose(back.rotations, splats.rotations, rtol=0, atol=2.4e-7)


def test_reads_other_layouts_of_the_same_properties():
    # A reordered, double-precision file with an extra property and a preceding element still reads.
    splats = splat(1, count=30)
    raw = splats.to_raw()
    names = ["extra", "rot_0", "rot_1", "rot_2", "rot_3", "x", "y", "z", "opacity", "scale_0", "scale_1",
             "scale_2", "f_dc_0", "f_dc_1", "f_dc_2"] + [f"f_rest_{i}" for i in range(9)]
    columns = torch.cat([torch.zeros(30, 1), raw.quaternions[0], raw.positions[0], raw.opacity_logits[0],
                         raw.log_scales[0], raw.sh[0, :, 0], raw.sh[0, :, 1:].transpose(1, 2).reshape(30, 9)], 1)
    records = np.rec.fromarrays(list(columns.double().numpy().T), names=names)
    camera = np.array([(1, 2)], dtype=[("a", "i4"), ("b", "u1")])
    data = plyfile.PlyData([plyfile.PlyElement.describe(camera, "camera"),
                            plyfile.PlyElement.describe(records, "vertex")], byte_order=">")
    buffer = io.BytesIO()
    data.write(buffer)
    back = read_ply(buffer.getvalue())
    assert torch.allclose(back.positions, splats.positions)
    assert torch.allclose(back.sh, splats.sh)
    assert torch.allclose(back.opacities, splats.opacities, atol=1e-6)


def test_a_mesh_ply_is_refused_with_the_missing_properties():
    vertices = np.array([(0.0, 0.0, 0.0, 255, 0, 0)] * 3,
                        dtype=[("x", "f4"), ("y", "f4"), ("z", "f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")])
    faces = np.array([([0, 1, 2],)], dtype=[("vertex_indices", "i4", (3,))])
    buffer = io.BytesIO()
    plyfile.PlyData([plyfile.PlyElement.describe(vertices, "vertex"),
                     plyfile.PlyElement.describe(faces, "face")]).write(buffer)
    with pytest.raises(ValueError, match=r"lacks the properties f_dc_0, f_dc_1, f_dc_2, opacity, scale_0, scale_1, "
                                         r"scale_2, rot_0, rot_1, rot_2, rot_3"):
        read_ply(buffer.getvalue())
    ascii_buffer = io.BytesIO()
    plyfile.PlyData([plyfile.PlyElement.describe(vertices, "vertex")], text=True).write(ascii_buffer)
    with pytest.raises(ValueError, match="ASCII"):
        read_ply(ascii_buffer.getvalue())
    with pytest.raises(ValueError, match="not a PLY"):
        read_ply(b"\x00\x01 hello")


def test_truncated_file_fails_clearly():
    with pytest.raises(ValueError, match="truncated"):
        read_ply(ply_bytes(splat(0, count=10))[:-5])


def test_non_finite_gaussians_are_dropped_with_one_warning(tmp_path):
    splats = splat(0, count=50)
    splats.positions[0, 3, 0] = float("nan")
    splats.sh[0, 7, 0, 1] = float("inf")
    with pytest.warns(UserWarning, match="dropped 2 of 50 Gaussians") as warned:
        path = write_ply(splats, tmp_path / "finite.ply")
    assert len(warned) == 1
    back = read_ply(path)
    keep = [i for i in range(50) if i not in (3, 7)]
    assert torch.equal(back.positions[0], splats.positions[0, keep])


def test_never_overwrites(tmp_path):
    path = write_ply(splat(0, count=5), tmp_path / "once.ply")
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="never overwrites"):
        write_ply(splat(0, count=7), path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["once.ply"]  # no temporary file left behind

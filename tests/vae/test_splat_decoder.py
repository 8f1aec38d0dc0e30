import math

import torch

from unidit.runtime.gaussians.camera import camera_rig
from unidit.runtime.gaussians.rotations import quaternion_to_matrix
from unidit.runtime.vae.splat_decoder import SplatDecoder, SplatDecoderConfig
from unidit_testing import randomize

CONFIG = SplatDecoderConfig(latent_channels=4, channels=(8, 16, 16))


def decoder():
    return randomize(SplatDecoder(CONFIG), std=0.3).eval()


def test_gaussians_lie_on_their_pixel_rays_within_the_depth_range():
    model = decoder()
    cameras = camera_rig("orbit", 4, 16, 16)
    with torch.no_grad():
        raw = model(torch.randn(2, 4, 4, 4, 4))
        gaussians = model.gaussians(raw, cameras)
    assert raw.shape == (2, 4, 12, 16, 16)
    depth = gaussians["depth"]
    assert float(depth.min()) >= CONFIG.near and float(depth.max()) <= CONFIG.far
    uv, z = cameras.project(gaussians["positions"][0, 1].reshape(-1, 3))
    assert torch.allclose(z[1], depth[0, 1].reshape(-1), atol=1e-4)
    pixel_centres = torch.stack(torch.meshgrid(torch.arange(16) + 0.5, torch.arange(16) + 0.5, indexing="xy"), -1)
    assert torch.allclose(uv[1], pixel_centres.reshape(-1, 2), atol=1e-3)
    footprint = depth / cameras.fx[None, :, None, None]
    ratio = gaussians["scales"] / footprint.unsqueeze(-1)
    assert float(ratio.min()) >= CONFIG.min_scale - 1e-5 and float(ratio.max()) <= CONFIG.max_scale + 1e-5


def test_rotations_are_predicted_in_the_camera_frame():
    model = SplatDecoder(CONFIG).eval()  # zero raw rotation offsets -> identity in every camera frame
    with torch.no_grad():
        for parameter in model.decoder.conv_out.parameters():
            parameter.zero_()
        cameras = camera_rig("orbit", 4, 16, 16)
        gaussians = model.gaussians(model(torch.randn(1, 4, 4, 4, 4)), cameras)
    for view in range(4):
        rotation = quaternion_to_matrix(gaussians["rotations"][0, view, 3, 5])
        assert torch.allclose(rotation, cameras.rotation[view].T, atol=1e-5)  # camera axes in world coordinates
        assert math.isclose(float(gaussians["rotations"][0, view].norm(dim=-1).mean()), 1.0, abs_tol=1e-5)


def test_transparent_gaussians_are_dropped_and_items_padded():
    model = decoder()
    with torch.no_grad():
        splats = model.decode(torch.randn(2, 4, 4, 4, 4), camera_rig("orbit", 4, 16, 16), min_opacity=0.5)
        everything = model.decode(torch.randn(2, 4, 4, 4, 4), camera_rig("orbit", 4, 16, 16))
    assert everything.counts.tolist() == [1024, 1024]
    counts = splats.counts.tolist()
    assert 0 < min(counts) < 1024 and splats.num_gaussians == max(counts)
    for item, count in enumerate(counts):
        assert float(splats.opacities[item, :count].min()) >= 0.5
        assert torch.count_nonzero(splats.opacities[item, count:]) == 0
    splats.validate()

"""Refine 3D on a tiny random model: the layout of views and cameras, what the fit sees, score distillation's
effect, and the node's contract. (How good the result is: `unidit eval`'s refined_novel_view_psnr.)"""
import pytest
import torch

from unidit.runtime.gaussians.camera import orbit_azimuths
from unidit.runtime.generate import decode_frames, empty_latents, generate
from unidit.runtime.refine import RefineConfig, refine_3d
from unidit.runtime.sampling.guidance import GuidanceConfig
from unidit.runtime.sampling.sampler import SamplerConfig
from unidit_testing import tiny_model

QUICK = dict(iterations=8, fine_iterations=4)


@pytest.fixture(scope="module")
def sampled():
    model = tiny_model()
    positive, negative = model.encode_prompts(["a red cube"]), model.encode_prompts([""])
    latents = empty_latents(model, "3d", 32, 32, batch_size=1)
    with torch.no_grad():
        latents = generate(model, latents, positive, negative, GuidanceConfig(2.0), SamplerConfig(steps=2), 0)
    return model, latents, positive, negative


def test_views_interleave_the_generated_ones_with_new_ones_halfway_between(sampled):
    model, latents, positive, negative = sampled
    refined = refine_3d(model, latents, positive, negative, GuidanceConfig(2.0), RefineConfig(**QUICK), 0,
                        hold_out=(1,))
    views = len(latents.cameras)
    assert refined.views.shape == (1, 2 * views, 32, 32, 3)
    assert torch.allclose(refined.views[:, 0::2], decode_frames(model, latents))
    azimuths = torch.remainder(orbit_azimuths(refined.cameras), 360.0)
    assert torch.allclose(azimuths, torch.arange(2 * views) * (360.0 / (2 * views)), atol=1e-3)
    assert refined.fitted == [0, 1, 2, 4, 5, 6, 7]             # the new view after rig view 1 only scored
    assert refined.splats.batch_size == 1
    refined.splats.validate()


def test_score_distillation_changes_the_fine_stage(sampled):
    model, latents, positive, negative = sampled
    one = refine_3d(model, latents, positive, negative,
                    GuidanceConfig(2.0), RefineConfig(**QUICK), 0)
    other = refine_3d(model, latents, positive, negative, GuidanceConfig(2.0),
                      RefineConfig(**QUICK, sds_steps=2, sds_weight=5.0), 0)
    assert not torch.allclose(one.splats.item(0).positions, other.splats.item(0).positions)


def test_settings_that_cannot_work_are_refused(sampled):
    with pytest.raises(ValueError, match="strength"):
        RefineConfig(strength=0.0)
    with pytest.raises(ValueError, match="SDS steps"):
        RefineConfig(fine_iterations=5, sds_steps=6)
    model, latents, positive, negative = sampled
    from dataclasses import replace
    with pytest.raises(ValueError, match="sampled 3D latents"):
        refine_3d(model, replace(latents, modality="image"), positive, negative, GuidanceConfig(2.0),
                  RefineConfig(**QUICK), 0)


def test_refine_with_score_distillation_runs_inside_inference_mode_as_comfyui_runs_nodes(sampled):
    model, latents, positive, negative = sampled
    with torch.inference_mode():
        refined = refine_3d(model, latents, positive, negative, GuidanceConfig(2.0),
                            RefineConfig(**QUICK, sds_steps=2, sds_weight=5.0), 0)
    refined.splats.validate()

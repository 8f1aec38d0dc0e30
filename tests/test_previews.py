"""Sampling previews: the latent -> RGB projection fitted from a model's own autoencoder shows the colours of the
latent, the decode preview is the decoded frame, "none" computes nothing, and the sampler node honours the choice."""
import numpy as np
import pytest
import torch

from unidit.runtime.bundle import SHIPPED_BUNDLE
from unidit.runtime.families import ModelFiles, load_model
from unidit.runtime.generate import encode_frames
from unidit.runtime.previews import latent_rgb, latent_rgb_projection, preview_image
from unidit.runtime.train import toyworld


@pytest.fixture(scope="module")
def shipped():
    return load_model(ModelFiles(SHIPPED_BUNDLE))


def test_the_projection_reads_the_colours_of_real_scenes(shipped):
    scenes = [toyworld.Scene(shape, colour, "large", background, yaw=0.4)
              for shape, colour, background in [("cube", "red", "white"), ("sphere", "blue", "grey"),
                                                ("cone", "green", "white"), ("cylinder", "yellow", "black")]]
    images = toyworld.render_images(scenes).rgb                                   # [4, 64, 64, 3]
    latents = encode_frames(shipped, images.unsqueeze(1))                          # [4, C, 1, 16, 16]
    for image, latent in zip(images, latents):
        small = torch.nn.functional.avg_pool2d(image.permute(2, 0, 1), 4).permute(1, 2, 0)
        projected = latent_rgb(shipped, latent[:, 0])
        assert projected.shape == small.shape
        assert (projected - small).abs().mean() < 0.08                           # the colours, at latent size
    assert latent_rgb_projection(shipped) is latent_rgb_projection(shipped)        # fitted once per model


def test_each_method_gives_what_it_says(shipped):
    latents = encode_frames(shipped, toyworld.render_images([toyworld.Scene("cube", "red", "large", "white")])
                            .rgb.unsqueeze(1))
    assert preview_image(shipped, latents, "none") is None
    projected, decoded = preview_image(shipped, latents, "latent2rgb"), preview_image(shipped, latents, "decode")
    assert projected.size == decoded.size == (64, 64)                              # shown at the pixel size
    red = np.asarray(projected).reshape(-1, 3).mean(axis=0)
    assert red[0] > red[1] + 20 and red[0] > red[2] + 20
    with pytest.raises(ValueError, match="unknown preview method"):
        preview_image(shipped, latents, "taesd")


def test_the_sampler_node_honours_the_loaders_preview_setting(tmp_path):
    from unidit.runtime import comfy_bridge
    from unidit.host.executor import Executor, validate_prompt
    from unidit.host.run import standalone_nodes
    from unidit.host.workflow import apply_overrides, load_workflow

    previews = {}
    root = SHIPPED_BUNDLE.parents[1]
    for method in ("none", "latent2rgb"):
        events = []
        executor = Executor(standalone_nodes(), comfy_bridge.HostServices(output_directory=tmp_path / method))
        prompt = apply_overrides(load_workflow(root / "workflows" / "api" / "Text to image.json"),
                                 [f"1.previews={method}", "5.steps=3"], executor.nodes)
        validation = validate_prompt(prompt, executor.nodes)
        assert validation.ok, validation.node_errors
        result = executor.execute(validation.prompt, method, validation.outputs, emit=lambda e, d: events.append(e))
        assert result.status == "success"
        previews[method] = events.count("preview")
    assert previews == {"none": 0, "latent2rgb": 3}

"""The backbone's cached training data: one bucket per frame size, control maps at latent size, clips moved out of
the toy world that are only ever used with their first frame given, and draws weighted towards translations."""
from dataclasses import replace

import pytest
import torch

from unidit.runtime.bundle import ModelBundle
from unidit.runtime.text.tokenizer import build_tokenizer
from unidit.runtime.train import recipe
from unidit.runtime.train import toyworld as tw
from unidit.runtime.train.data import (AUGMENTED_FRACTION, LatentSet, augment_clip, build_latent_dataset,
                                     favour_translation, rotate_hue)
from unidit.runtime.vae.autoencoder import AutoencoderConfig, CausalVideoAutoencoder
from unidit_testing import randomize


def test_an_augmented_clip_keeps_the_object_and_its_colour_name_over_a_new_background():
    generator = torch.Generator().manual_seed(4)
    scenes = [tw.Scene(shape, colour, "large", "grey", motion="translate", direction="left", amount=0.3)
              for shape, colour in (("cube", "red"), ("sphere", "blue"), ("torus", "green"), ("cone", "purple"))]
    clips = tw.render_videos(scenes, tw.ToyWorldConfig(resolution=32))
    for item, scene in enumerate(scenes):
        augmented = augment_clip(clips.colour[item], clips.alpha[item], generator)
        inside, outside = clips.alpha[item] > 0.99, clips.alpha[item] < 0.01
        assert augmented.shape == clips.rgb[item].shape and augmented.min() >= 0 and augmented.max() <= 1
        assert tw.dominant_colour(augmented[0], inside[0]) == scene.colour
        background = augmented[:, :, :, :][outside]
        assert background.std(dim=0).mean() > 0.03                     # a texture, not the plain grey
        assert torch.equal(augmented[0][outside[0] & outside[-1]], augmented[-1][outside[0] & outside[-1]])


def test_turning_the_hue_keeps_greys_and_brightness():
    grey = torch.tensor([0.3, 0.3, 0.3])
    assert torch.allclose(rotate_hue(grey, 40.0), grey, atol=1e-6)
    red = torch.tensor([0.8, 0.1, 0.1])
    assert torch.allclose(rotate_hue(red, 120.0).sum(), red.sum(), atol=1e-5)
    assert tw.classify_colour(rotate_hue(red, 120.0).clamp(0, 1)) == "green"


def test_the_dataset_holds_a_bucket_per_size_with_control_maps_and_augmented_clips(tmp_path):
    autoencoder = randomize(CausalVideoAutoencoder(AutoencoderConfig(latent_channels=4, channels=(8, 16, 16),
                                                                     temporal="causal3d")), std=0.1).eval()
    counts = {"image": {(32, 32): 12, (48, 32): 6}, "video": {(32, 32): 40}, "3d": {(32, 32): 4}}
    world = tw.ToyWorldConfig(resolution=32, supersample=1)
    dataset = build_latent_dataset(autoencoder, counts, world, 3, tmp_path / "latents.safetensors", progress=False)
    assert {kind: [(s.size, len(s)) for s in sets] for kind, sets in dataset.items()} == {
        "image": [((32, 32), 12), ((48, 32), 6)], "video": [((32, 32), 40)], "3d": [((32, 32), 4)]}
    wide = dataset["image"][1]
    assert wide.mean.shape == (6, 4, 1, 8, 12) and wide.control.shape == (6, 2, 1, 8, 12)
    depth, mask = wide.control[:, 0].float(), wide.control[:, 1].float()
    assert mask.amax() > 0.9 and mask.amin() == 0                              # the object, and around it
    assert torch.equal(depth > 0, mask > 0)                                    # depth only where the object is
    video = dataset["video"][0]
    assert video.control.shape == (40, 2, 3, 8, 8) and dataset["3d"][0].control is None
    assert 0 < int(video.augmented.sum()) < 40 and not bool(dataset["image"][0].augmented.any())
    for caption, augmented in zip(video.captions, video.augmented.tolist()):
        if augmented:
            assert "background" not in tw.parse_caption(caption), caption
    assert AUGMENTED_FRACTION["video"] > 0
    again = build_latent_dataset(autoencoder, counts, world, 3, tmp_path / "latents.safetensors", progress=False)
    assert torch.equal(again["video"][0].mean, video.mean)                     # reused, not rebuilt


def test_a_backbone_step_draws_one_bucket_and_holds_augmented_clips_first_frame(tmp_path):
    preset = recipe.PRESETS["tiny"]
    autoencoder = randomize(CausalVideoAutoencoder(preset.autoencoder), std=0.1).eval()
    dataset = build_latent_dataset(autoencoder, {"image": {(32, 32): 8, (48, 32): 8}, "video": {(32, 32): 8}},
                                   preset.world, 1, tmp_path / "latents.safetensors", progress=False)
    tokenizer = build_tokenizer(tw.vocabulary(), max_length=preset.text.max_length)
    bundle = ModelBundle.build(preset.dit, preset.autoencoder, preset.splat,
                               replace(preset.text, vocab_size=tokenizer.get_vocab_size()), tokenizer, preset.defaults)
    seen = []
    handle = bundle.dit.register_forward_pre_hook(lambda m, args, kwargs: seen.append((args, kwargs)),
                                                  with_kwargs=True)
    for index in range(6):
        metrics = recipe.backbone_step(bundle, preset, dataset)(index, torch.Generator().manual_seed(index))
        assert torch.isfinite(metrics["loss"])
    handle.remove()
    images = [args[0] for args, _ in seen if args[0].shape[2] == 1]
    widths = {x.shape[-1] for x in images}
    assert widths == {8, 12}                                   # both image buckets were drawn
    for x in images:                                           # the batch scales with the area: same cost
        assert x.shape[0] == (16 if x.shape[-1] == 8 else 11)
    controls = [kwargs["control"] for _, kwargs in seen]
    assert all(c is None or c.shape[1] == 4 for c in controls)
    flags = torch.cat([c[:, [1, 3], 0, 0, 0] for c in controls if c is not None])
    assert 0 < flags.sum() < flags.numel()                     # some clips steered, by depth, mask or both
    seen.clear()                                               # the motion stage's batches and loss weights
    handle = bundle.dit.register_forward_pre_hook(lambda m, args, kwargs: seen.append(args[0].shape), with_kwargs=True)
    step = recipe.backbone_step(bundle, preset, dataset, {"image": 4, "video": 6}, {"image": 0.25})
    metrics = step(0, torch.Generator().manual_seed(0))
    handle.remove()
    assert sorted(shape[0] for shape in seen) == sorted([4 if seen[0][-1] == 8 else 3, 6])
    assert torch.allclose(metrics["loss"], 0.25 * metrics["image"] + metrics["video"])

    seen.clear()                                               # size weights: the wide bucket 3 times in 4
    handle = bundle.dit.register_forward_pre_hook(lambda m, args, kwargs: seen.append(args[0].shape), with_kwargs=True)
    step = recipe.backbone_step(bundle, preset, dataset, {"image": 2}, None, {"image": {(48, 32): 3, (32, 32): 1}})
    for index in range(80):
        step(index, torch.Generator().manual_seed(100 + index))
    handle.remove()
    assert 0.6 < sum(shape[-1] == 12 for shape in seen) / len(seen) < 0.9
    only_wide = recipe.backbone_step(bundle, preset, dataset, {"image": 2}, None, {"image": {(48, 32): 1}})
    seen.clear()
    handle = bundle.dit.register_forward_pre_hook(lambda m, args, kwargs: seen.append(args[0].shape), with_kwargs=True)
    for index in range(10):
        only_wide(index, torch.Generator().manual_seed(index))
    handle.remove()
    assert {shape[-1] for shape in seen} == {12}               # unlisted sizes are never drawn
    with pytest.raises(ValueError, match=r"size_weights for image draw none of its cached sizes \(32x32, 48x32\)"):
        recipe.backbone_step(bundle, preset, dataset, None, None, {"image": {(32, 32): 0}})
    with pytest.raises(ValueError, match=r"must weigh its cached sizes \(32x32, 48x32\).*got 64x64"):
        recipe.backbone_step(bundle, preset, dataset, None, None, {"image": {(32, 32): 1, (64, 64): 1}})
    with pytest.raises(ValueError, match="got a negative weight"):
        recipe.backbone_step(bundle, preset, dataset, None, None, {"image": {(32, 32): 1, (48, 32): -1}})


def clips_captioned(captions: list) -> LatentSet:
    count = len(captions)
    means = torch.arange(count, dtype=torch.float16).view(count, 1, 1, 1, 1).expand(count, 2, 3, 2, 2)
    return LatentSet((8, 8), means.clone(), torch.full((count, 2, 3, 2, 2), -30.0, dtype=torch.float16), captions,
                     None, torch.zeros(count, dtype=torch.bool))


def test_translations_make_up_the_asked_share_of_the_videos_drawn_and_other_kinds_are_untouched():
    captions = ["a red cube moving left", "a blue ball sinking", "a spinning green cube", "a bouncing pink cone",
                "a yellow ring that spins", "a small cyan cone bouncing up and down", "a grey ball hopping",
                "a purple cube rotating"]                              # 2 translations of 8: a quarter
    videos, images = clips_captioned(captions), clips_captioned(["a red cube"] * 4)
    favoured = favour_translation({"video": [videos], "image": [images]}, 0.8)
    assert favoured["image"][0] is images and favoured["video"][0].weights is not None
    drawn = favoured["video"][0].sample(4000, torch.Generator().manual_seed(0))
    moving = [tw.parse_caption(caption).get("motion") == "translate" for caption in drawn.captions]
    assert 0.77 < sum(moving) / len(moving) < 0.83
    index = drawn.latents[:, 0, 0, 0, 0].round().long()               # each latent belongs to its caption
    assert [captions[i] for i in index.tolist()] == drawn.captions
    assert set(index.tolist()) == set(range(8))                       # every clip still drawn
    plain = videos.sample(4000, torch.Generator().manual_seed(0))
    assert 0.22 < sum(tw.parse_caption(c).get("motion") == "translate" for c in plain.captions) / 4000 < 0.28


def test_favouring_all_or_none_of_a_set_draws_uniformly_share_1_draws_the_chosen_only_and_others_are_refused():
    videos = clips_captioned(["a red cube moving left", "a blue cube moving right"])
    assert favour_translation({"video": [videos]}, 0.8)["video"][0].weights is None
    assert videos.favouring(torch.tensor([False, False]), 0.5).weights is None
    only = videos.favouring(torch.tensor([True, False]), 1.0).sample(200, torch.Generator().manual_seed(0))
    assert set(only.captions) == {"a red cube moving left"}
    for share in (0.0, -0.5, 1.5):
        with pytest.raises(ValueError, match="share must be above 0 and at most 1"):
            videos.favouring(torch.tensor([True, False]), share)


def test_latents_cached_by_an_older_recipe_are_refused_with_what_to_do(tmp_path):
    from safetensors.torch import save_file

    from unidit.runtime.train.data import load_latent_dataset

    path = tmp_path / "latents.safetensors"                   # one bucket per kind, as the first recipe cached them
    save_file({"video.mean": torch.zeros(1, 8, 3, 4, 4)}, str(path), metadata={"captions": '{"video": ["a red cube"]}'})
    with pytest.raises(ValueError, match="older recipe.*delete it, or train into a new --work folder"):
        load_latent_dataset(path)

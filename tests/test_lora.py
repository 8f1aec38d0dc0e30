"""LoRAs at inference: the layouts users have (ours, diffusers/PEFT lora_A/lora_B, kohya lora_down/lora_up with
alpha) read into the same updates, and generating with one equals generating with the weights merged by hand
(W + strength * alpha / rank * up @ down); strength 0 and an unplugged LoRA give the base model bit for bit; LoRAs
stack; a LoRA for another model is refused with a message that says so; the UniDiT LoRA node in a workflow."""
import copy
import json

import numpy as np
import pytest
import torch
from PIL import Image

from unidit.runtime.weights import write_safetensors
from unidit.runtime.families import ModelFiles, load_model
from unidit.runtime.families.wan.dit import diffusers_to_original
from unidit.runtime.generate import empty_latents, generate
from unidit.runtime.lora import read_lora, save_lora
from unidit.runtime.sampling.guidance import GuidanceConfig
from unidit.runtime.sampling.sampler import SamplerConfig
from unidit.runtime.weights import CheckpointError
from unidit_testing import tiny_bundle, tiny_model
from wan_testing import FILES

UNIDIT_LAYERS = ("blocks.0.attn.qkv", "blocks.1.mlp.out", "blocks.1.text_attn.q")


def random_layers(targets: dict, names, rank: int, alpha: float, seed: int) -> dict:
    generator = torch.Generator().manual_seed(seed)
    return {name: (torch.randn(rank, targets[name].in_features, generator=generator) * 0.3,
                   torch.randn(targets[name].out_features, rank, generator=generator) * 0.3, alpha)
            for name in names}


def write(path, tensors: dict, metadata=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    write_safetensors(path, [(k, tuple(t.shape), t.dtype) for k, t in tensors.items()], lambda k, s: tensors[k],
                      metadata)
    return path


def merged(model, layers: dict, strength: float = 1.0, targets=None):
    """A copy of ``model`` with W += strength * alpha / rank * up @ down (in float32, whatever the weights'
    storage): the reference a LoRA must match."""
    copied = copy.deepcopy(model)
    targets = targets or copied.denoiser.lora_targets()[0]
    with torch.no_grad():
        for name, (down, up, alpha) in layers.items():
            weight = targets[name].weight
            targets[name].weight = torch.nn.Parameter(weight.float() + strength * alpha / down.shape[0] * up @ down,
                                                      requires_grad=False)
    return copied


def sample(model, modality="image", size=(32, 32), prompt="a red cube"):
    latents = empty_latents(model, modality, *size, frames=5)
    return generate(model, latents, model.encode_prompts([prompt]), model.encode_prompts([""]), GuidanceConfig(2.0),
                    SamplerConfig(steps=3), seed=7).samples


@pytest.fixture(scope="module")
def model():
    return tiny_model()


def test_our_peft_and_kohya_layouts_read_the_same_updates_and_match_merged_weights(model, tmp_path):
    targets = model.denoiser.lora_targets()[0]
    layers = random_layers(targets, UNIDIT_LAYERS, rank=4, alpha=2.0, seed=1)
    ours = save_lora(tmp_path / "ours.safetensors", layers)
    peft = tmp_path / "peft_adapter"
    write(peft / "adapter_model.safetensors",
          {f"base_model.model.{n}.lora_{ab}.weight": t for n, (d, u, _) in layers.items()
           for ab, t in (("A", d), ("B", u))})
    (peft / "adapter_config.json").write_text(json.dumps({"r": 4, "lora_alpha": 2.0, "peft_type": "LORA"}))
    kohya = write(tmp_path / "kohya.safetensors",
                  {**{f"lora_unet_{n.replace('.', '_')}.lora_{k}.weight": t for n, (d, u, _) in layers.items()
                      for k, t in (("down", d), ("up", u))},
                   **{f"lora_unet_{n.replace('.', '_')}.alpha": torch.tensor(2.0) for n in layers},
                   "lora_te_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": torch.zeros(4, 8)})
    read = [read_lora(path, targets) for path in (ours, peft, kohya)]
    for lora in read:
        assert set(lora.layers) == set(UNIDIT_LAYERS) and lora.rank == 4
        for name, (down, up, scale) in lora.layers.items():
            assert torch.equal(down, layers[name][0]) and torch.equal(up, layers[name][1]) and scale == 0.5
    expected = sample(merged(model, layers))
    base = sample(model)
    for lora in read:
        adapted = sample(model.with_loras([(lora, 1.0)]))
        assert torch.allclose(adapted, expected, atol=1e-4), (adapted - expected).abs().max()
        assert (adapted - base).abs().max() > 1e-2
    half = sample(model.with_loras([(read[0], -0.5)]))
    assert torch.allclose(half, sample(merged(model, layers, -0.5)), atol=1e-4)


def test_strength_zero_and_unplugging_give_the_base_model_bit_for_bit_and_loras_stack(model, tmp_path):
    targets = model.denoiser.lora_targets()[0]
    first = random_layers(targets, UNIDIT_LAYERS, 2, 2.0, seed=2)
    second = random_layers(targets, ("blocks.0.attn.qkv", "blocks.0.mlp.gate_value"), 3, 6.0, seed=3)
    a = read_lora(save_lora(tmp_path / "a.safetensors", first), targets)
    b = read_lora(save_lora(tmp_path / "b.safetensors", second), targets)
    base = sample(model)
    assert torch.equal(sample(model.with_loras([(a, 0.0)])), base)
    assert sample(model.with_loras([(a, 1.0)])).sub(base).abs().max() > 1e-2
    assert torch.equal(sample(model), base)               # the shared model is unchanged after a LoRA ran
    both = sample(model.with_loras([(a, 1.0), (b, 0.7)]))
    reference = merged(merged(model, first), second, 0.7)
    assert torch.allclose(both, sample(reference), atol=1e-4)


def test_a_lora_for_another_model_is_refused_with_what_is_wrong(model, tmp_path):
    targets = model.denoiser.lora_targets()[0]
    foreign = write(tmp_path / "sdxl.safetensors", {
        "lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": torch.zeros(4, 320),
        "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight": torch.zeros(320, 4)})
    with pytest.raises(CheckpointError, match="none of its layers is a layer of this model.*another model"):
        read_lora(foreign, targets)
    wrong_width = write(tmp_path / "wide.safetensors", {"blocks.0.attn.qkv.lora_down.weight": torch.zeros(4, 128),
                                                         "blocks.0.attn.qkv.lora_up.weight": torch.zeros(192, 4)})
    with pytest.raises(CheckpointError, match=r"blocks.0.attn.qkv.*down \(4, 128\).*maps 64 to 192"):
        read_lora(wrong_width, targets)
    half = write(tmp_path / "half.safetensors", {"blocks.0.attn.qkv.lora_down.weight": torch.zeros(4, 64)})
    with pytest.raises(CheckpointError, match="only a down matrix"):
        read_lora(half, targets)
    dora = write(tmp_path / "dora.safetensors", {"blocks.0.attn.qkv.dora_scale": torch.zeros(192)})
    with pytest.raises(CheckpointError, match="DoRA"):
        read_lora(dora, targets)
    with pytest.raises(CheckpointError, match=".safetensors"):
        save_lora(tmp_path / "x.pt", {})
    save_lora(tmp_path / "once.safetensors", random_layers(targets, UNIDIT_LAYERS[:1], 2, 2.0, 0))
    with pytest.raises(FileExistsError):
        save_lora(tmp_path / "once.safetensors", {})


def test_wan_loras_in_diffusers_and_comfyui_naming_apply_to_the_original_layers(wan_models, tmp_path):
    names = FILES["2.1"]
    wan = load_model(ModelFiles(wan_models / "diffusion_models" / names.diffusion_model,
                                wan_models / "text_encoders" / names.text_encoder, wan_models / "vae" / names.vae))
    targets = wan.denoiser.lora_targets()[0]
    diffusers_names = ("blocks.0.attn1.to_q", "blocks.1.attn2.to_out.0", "blocks.1.ffn.net.0.proj")
    original = {name: diffusers_to_original(name + ".weight")[:-len(".weight")] for name in diffusers_names}
    assert set(original.values()) <= set(targets)
    layers = random_layers(targets, original.values(), rank=2, alpha=2.0, seed=4)   # diffusers files: no alpha
    by_diffusers = {d: layers[o] for d, o in original.items()}
    diffusers_file = write(tmp_path / "wan_diffusers.safetensors",
                           {f"transformer.{n}.lora_{ab}.weight": t for n, (d, u, _) in by_diffusers.items()
                            for ab, t in (("A", d), ("B", u))})
    comfy_file = write(tmp_path / "wan_comfy.safetensors",
                       {**{f"diffusion_model.{n}.lora_{ab}.weight": t for n, (d, u, _) in layers.items()
                           for ab, t in (("A", d), ("B", u))},
                        **{f"diffusion_model.{n}.alpha": torch.tensor(2.0) for n in layers}})
    expected = sample(merged(wan, layers), "image", (64, 48))
    for path in (diffusers_file, comfy_file):
        lora = read_lora(path, targets, wan.denoiser.lora_name)
        assert set(lora.layers) == set(layers)
        adapted = sample(wan.with_loras([(lora, 1.0)]), "image", (64, 48))
        assert torch.allclose(adapted, expected, atol=1e-4), (adapted - expected).abs().max()


def lora_workflow(strength=None):
    """Loader -> (UniDiT LoRA) -> Sampler -> Decode -> Save Image, in the API format."""
    model_link = ["1", 0] if strength is None else ["9", 0]
    prompt = {
        "1": {"class_type": "UniDiTLoader", "inputs": {"bundle": "tiny.safetensors", "device": "cpu",
                                                        "dtype": "fp32", "attention": "sdpa"}},
        "2": {"class_type": "UniDiTTextEncode", "inputs": {"model": ["1", 0], "text": "a red cube"}},
        "4": {"class_type": "UniDiTEmptyImageLatent", "inputs": {"model": ["1", 0], "width": 32, "height": 32,
                                                                 "batch_size": 1}},
        "5": {"class_type": "UniDiTSampler", "inputs": {"model": model_link, "positive": ["2", 0],
                                                        "latent": ["4", 0], "seed": 5, "steps": 3,
                                                        "solver": "euler", "shift": 0.0, "denoise": 1.0}},
        "6": {"class_type": "UniDiTDecode", "inputs": {"model": ["1", 0], "latent": ["5", 0]}},
        "7": {"class_type": "UniDiTSaveImage", "inputs": {"images": ["6", 0], "filename_prefix": "lora"}},
    }
    if strength is not None:
        prompt["9"] = {"class_type": "UniDiTLoRA", "inputs": {"model": ["1", 0], "lora_name": "subject.safetensors",
                                                              "strength": strength}}
    return prompt


def test_the_lora_node_in_a_workflow_equals_the_merged_model_and_strength_zero_is_the_base(tmp_path):
    from unidit.host.run import run_workflow
    from unidit.runtime.lora import linear_layers

    models = tmp_path / "models"
    (models / "unidit").mkdir(parents=True)
    tiny_bundle().save(models / "unidit" / "tiny.safetensors")
    merged_bundle = tiny_bundle()
    targets = linear_layers(merged_bundle.dit)
    layers = random_layers(targets, UNIDIT_LAYERS, 4, 4.0, seed=5)
    save_lora(write(models / "loras" / "placeholder.safetensors", {"x": torch.zeros(1)}).parent / "subject.safetensors",
              layers)
    with torch.no_grad():
        for name, (down, up, alpha) in layers.items():
            targets[name].weight += alpha / down.shape[0] * up @ down
    merged_bundle.save(models / "unidit" / "merged.safetensors")

    def image(name, strength=None, bundle="tiny.safetensors"):
        prompt = lora_workflow(strength)
        prompt["1"]["inputs"]["bundle"] = bundle
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(prompt))
        result = run_workflow(path, tmp_path / name, [], tmp_path / "input", [models], progress=False)
        assert result.status == "success", result.error
        [png] = (tmp_path / name).rglob("*.png")
        return torch.from_numpy(np.asarray(Image.open(png).convert("RGB"), dtype=np.float32))

    base, zero, full = image("base"), image("zero", 0.0), image("full", 1.0)
    reference = image("merged", bundle="merged.safetensors")
    assert torch.equal(zero, base)
    assert not torch.equal(full, base)
    assert (full - reference).abs().max() <= 1 and (full - base).abs().sum() > 5 * (full - reference).abs().sum()
    broken = lora_workflow(1.0)
    broken["9"]["inputs"]["lora_name"] = "placeholder.safetensors"
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(broken))
    result = run_workflow(path, tmp_path / "broken", [], tmp_path / "input", [models], progress=False)
    assert result.status == "error" and "none of its layers is a layer of this model" in str(result.error)

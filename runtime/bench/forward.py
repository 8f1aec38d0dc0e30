"""`unidit bench forward`: one forward pass against diffusers' WanTransformer3DModel, CPU fp32.

- ``--family unidit`` (default): our backbone. Wan is the closest public peer (adaLN, QK-norm, 3D RoPE, text
  cross-attention). Both run at the same width, depth, heads, token count and text length, with our gated MLP
  sized so both have the same parameter count; one thread. ``matmul_fraction`` is our achieved GFLOP/s over a
  2048^3 fp32 matmul's measured in the same run.
- ``--family wan``: our Wan model against diffusers' at the Wan 2.1 1.3B shape (dim 1536, 30 blocks, 12 heads),
  sharing the same weights (ours are diffusers' tensors under the original names, no copy), on the same latent
  and the same 512 padded text tokens; two threads.
- ``--family wan --blocks-resident all,half,2``: our Wan model (bf16 weights, fp32 compute) with that many blocks
  resident and the others streamed through two staging slots (``model/block_swap.py``), against all resident
  in the same run: ``resident_param_bytes`` (what stays on the device: the resident blocks, the slots and the
  other weights), seconds and the ratio. On a CPU-only machine the "device" is host memory too, so the figures
  measure the swap's copies, not a PCIe transfer.

The two alternate round by round and the ratio is the median of per-round ratios (ours / diffusers).
"""
from __future__ import annotations

import sys

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from ..model.config import DiTConfig
from ..model.dit import UniDiT
from ..text.conditioning import TextConditioning
from .timing import interleaved, median, median_ratio

WIDTH, DEPTH, HEADS = 384, 12, 6                 # DiT-S
LATENT = (1, 16, 4, 32, 32)                      # 4 frames x 16 x 16 patches = 1024 tokens
TEXT_LENGTH, TEXT_DIM, PEER_FFN = 64, 256, 4 * 384
MATMUL_SIZE = 2048
ROUNDS, WARMUP = 7, 2


def _parameter_count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _peer_model():
    try:
        from diffusers import WanTransformer3DModel
    except ImportError:
        raise SystemExit("unidit bench forward compares against diffusers, which is not installed: "
                         "pip install 'comfyui-unidit[bench]'") from None
    return WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=HEADS, attention_head_dim=WIDTH // HEADS,
                                 in_channels=LATENT[1], out_channels=LATENT[1], text_dim=TEXT_DIM, freq_dim=256,
                                 ffn_dim=PEER_FFN, num_layers=DEPTH, cross_attn_norm=True,
                                 qk_norm="rms_norm_across_heads").eval()


def _our_config(target_parameters: int) -> DiTConfig:
    """The DiT-S config whose MLP width (a multiple of 16) brings our parameter count closest to the target."""
    def config(mlp_hidden):
        return DiTConfig(latent_channels=LATENT[1], hidden_size=WIDTH, depth=DEPTH, num_heads=HEADS,
                         mlp_hidden=mlp_hidden, text_dim=TEXT_DIM)

    small, large = _parameter_count(UniDiT(config(512))), _parameter_count(UniDiT(config(1024)))
    per_unit = (large - small) / 512
    mlp_hidden = 16 * round((512 + (target_parameters - small) / per_unit) / 16)
    return config(mlp_hidden)


def _cpu_attention_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _flops(fn) -> int:
    """FLOPs of one call; torch's counter knows the CUDA attention kernels, we add the CPU one."""
    cpu_attention = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    counter = FlopCounterMode(display=False, custom_mapping={cpu_attention: _cpu_attention_flops})
    with counter:
        fn()
    return counter.get_total_flops()


def run(progress: bool = True, family: str = "unidit", blocks_resident: str | None = None) -> dict:
    if blocks_resident is not None:
        if family != "wan":
            raise ValueError("--blocks-resident goes with --family wan")
        return run_block_swap(blocks_resident, progress)
    if family == "wan":
        return run_wan(progress)
    if family != "unidit":
        raise ValueError(f"unknown family {family!r}; choose unidit or wan")

    def say(message):
        if progress:
            print(message, file=sys.stderr, flush=True)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        peer = _peer_model()
        ours = UniDiT(_our_config(_parameter_count(peer))).eval()
        with torch.no_grad():  # trained-looking weights: no zero-initialised path left
            for parameter in ours.parameters():
                parameter.normal_(0, 0.02)
        ours_parameters, peer_parameters = _parameter_count(ours), _parameter_count(peer)

        x = torch.randn(LATENT)
        text = TextConditioning(torch.randn(1, TEXT_LENGTH, TEXT_DIM), torch.ones(1, TEXT_LENGTH, dtype=torch.bool),
                                torch.randn(1, TEXT_DIM))
        sigma, timestep = torch.tensor([0.5]), torch.tensor([500])
        a = torch.randn(MATMUL_SIZE, MATMUL_SIZE)
        b = torch.randn(MATMUL_SIZE, MATMUL_SIZE)

        def run_ours():
            return ours(x, sigma, text, 1)

        def run_peer():
            return peer(x, timestep, text.tokens, return_dict=False)[0]

        def run_matmul():
            return a @ b

        with torch.inference_mode():
            ours_flops, peer_flops = _flops(run_ours), _flops(run_peer)
            tokens = (LATENT[2] * LATENT[3] * LATENT[4]) // 4
            say(f"ours {ours_parameters / 1e6:.2f}M params vs Wan {peer_parameters / 1e6:.2f}M; {tokens} tokens, "
                f"{TEXT_LENGTH} text tokens; {WARMUP} warm-up + {ROUNDS} alternating rounds on 1 thread...")
            times = interleaved({"ours": run_ours, "peer": run_peer, "matmul": run_matmul}, ROUNDS, WARMUP)
    finally:
        torch.set_num_threads(threads)

    ours_s, peer_s, matmul_s = median(times["ours"]), median(times["peer"]), median(times["matmul"])
    matmul_gflops_per_s = 2 * MATMUL_SIZE ** 3 / matmul_s / 1e9
    ours_gflops_per_s = ours_flops / ours_s / 1e9
    return {
        "ours_ms": round(ours_s * 1e3, 1),
        "peer_ms": round(peer_s * 1e3, 1),
        "ratio": round(median_ratio(times["ours"], times["peer"]), 3),
        "gflops": round(ours_flops / 1e9, 2),
        "peer_gflops": round(peer_flops / 1e9, 2),
        "ours_gflops_per_s": round(ours_gflops_per_s, 1),
        "matmul_gflops_per_s": round(matmul_gflops_per_s, 1),
        "matmul_fraction": round(ours_gflops_per_s / matmul_gflops_per_s, 3),
        "ours_params_m": round(ours_parameters / 1e6, 3),
        "peer_params_m": round(peer_parameters / 1e6, 3),
        "param_difference": round(abs(ours_parameters - peer_parameters) / peer_parameters, 4),
        "tokens": tokens,
        "text_tokens": TEXT_LENGTH,
        "config": f"width {WIDTH}, depth {DEPTH}, heads {HEADS}, batch 1, fp32, 1 thread",
        "peer": "diffusers WanTransformer3DModel",
    }


WAN_LATENT = (1, 16, 1, 32, 32)                  # a 256x256 image: 16 x 16 = 256 tokens
WAN_THREADS, WAN_ROUNDS, WAN_WARMUP = 2, 5, 1


def run_wan(progress: bool = True) -> dict:
    from ..families.wan.dit import WanDiT, WanDiTConfig, diffusers_to_original
    from ..weights import fill_module

    def say(message):
        if progress:
            print(message, file=sys.stderr, flush=True)

    try:
        from diffusers import WanTransformer3DModel
    except ImportError:
        raise SystemExit("unidit bench forward compares against diffusers, which is not installed: "
                         "pip install 'comfyui-unidit[bench]'") from None
    config = WanDiTConfig()  # the 1.3B shape
    threads = torch.get_num_threads()
    torch.set_num_threads(WAN_THREADS)
    try:
        torch.manual_seed(0)
        say("building diffusers' WanTransformer3DModel at the 1.3B shape (fp32, random weights) ...")
        peer = WanTransformer3DModel(patch_size=config.patch_size, num_attention_heads=config.num_heads,
                                     attention_head_dim=config.head_dim, in_channels=config.in_channels,
                                     out_channels=config.out_channels, text_dim=config.text_dim,
                                     freq_dim=config.freq_dim, ffn_dim=config.ffn_dim, num_layers=config.num_layers,
                                     cross_attn_norm=True, qk_norm="rms_norm_across_heads", eps=config.eps).eval()
        with torch.device("meta"):
            ours = WanDiT(config)
        fill_module(ours, {diffusers_to_original(k): v for k, v in peer.state_dict().items()}, "diffusers model")
        ours.eval()
        shared = {p.data_ptr() for p in ours.parameters()} <= {p.data_ptr() for p in peer.parameters()}
        x = torch.randn(WAN_LATENT)
        text_tokens = 24
        context = torch.randn(1, text_tokens, config.text_dim)
        padded = torch.nn.functional.pad(context, (0, 0, 0, config.text_len - text_tokens))
        sigma = torch.tensor([[0.5]])

        def run_ours():
            return ours(x, sigma, context)

        def run_peer():
            return peer(x, torch.tensor([500.0]), padded, return_dict=False)[0]

        with torch.inference_mode():
            difference = float((run_ours() - run_peer()).abs().max())
            tokens = WAN_LATENT[2] * (WAN_LATENT[3] // 2) * (WAN_LATENT[4] // 2)
            say(f"{sum(p.numel() for p in ours.parameters()) / 1e9:.2f}B parameters (shared: {shared}); {tokens} "
                f"tokens, {config.text_len} text tokens; {WAN_WARMUP} warm-up + {WAN_ROUNDS} alternating rounds on "
                f"{WAN_THREADS} threads ...")
            times = interleaved({"ours": run_ours, "peer": run_peer}, WAN_ROUNDS, WAN_WARMUP)
    finally:
        torch.set_num_threads(threads)
    return {
        "ratio": round(median_ratio(times["ours"], times["peer"]), 3),
        "ours_s": round(median(times["ours"]), 3),
        "peer_s": round(median(times["peer"]), 3),
        "max_abs_difference": difference,
        "parameters_b": round(sum(p.numel() for p in ours.parameters()) / 1e9, 3),
        "tokens": tokens,
        "text_tokens": config.text_len,
        "weights_shared": shared,
        "config": f"Wan 2.1 1.3B shape: dim {config.dim}, {config.num_layers} blocks, {config.num_heads} heads, "
                  f"ffn {config.ffn_dim}; batch 1, fp32, {WAN_THREADS} threads",
        "peer": "diffusers WanTransformer3DModel",
    }


SWAP_ROUNDS = 3


def _resident_counts(spec: str, blocks: int) -> list[int]:
    counts = []
    for item in spec.split(","):
        item = item.strip()
        counts.append(blocks if item == "all" else blocks // 2 if item == "half" else int(item))
        if not 0 <= counts[-1] <= blocks:
            raise ValueError(f"--blocks-resident {item}: choose all, half or 0..{blocks}")
    return counts


def run_block_swap(spec: str, progress: bool = True) -> dict:
    from ..families.wan.dit import WanDiT, WanDiTConfig
    from ..model.block_swap import BlockSwap
    from ..weights import fill_module
    from .synthetic import random_tensor

    def say(message):
        if progress:
            print(message, file=sys.stderr, flush=True)

    config = WanDiTConfig()
    counts = _resident_counts(spec, config.num_layers)
    threads = torch.get_num_threads()
    torch.set_num_threads(WAN_THREADS)
    try:
        say("random bf16 weights at the Wan 2.1 1.3B shape ...")
        with torch.device("meta"):
            model = WanDiT(config)
        generator = torch.Generator().manual_seed(0)
        fill_module(model, {name: random_tensor(name, tuple(p.shape), generator).to(torch.bfloat16)
                            for name, p in model.named_parameters()}, "random weights")
        model.eval()
        x = torch.randn(WAN_LATENT)
        context = torch.randn(1, 24, config.text_dim)
        sigma = torch.tensor([[0.5]])
        other_bytes = sum(p.numel() * p.element_size() for name, p in model.named_parameters()
                          if not name.startswith("blocks."))
        figures, reference = {}, None
        with torch.inference_mode():
            for count in counts:
                swap = BlockSwap(model.blocks, count, "cpu")
                say(f"{count} of {config.num_layers} blocks resident: {WAN_WARMUP} warm-up + {SWAP_ROUNDS} rounds ...")
                output = model(x, sigma, context)
                reference = output if reference is None else reference
                times = interleaved({"forward": lambda: model(x, sigma, context)}, SWAP_ROUNDS, WAN_WARMUP)
                figures[str(count)] = {"resident_param_bytes": other_bytes + swap.plan.device_bytes,
                                       "seconds": round(median(times["forward"]), 3),
                                       "equal_to_first": bool(torch.equal(output, reference))}
                swap.remove()
    finally:
        torch.set_num_threads(threads)
    first = figures[str(counts[0])]["seconds"]
    for entry in figures.values():
        entry["time_ratio"] = round(entry["seconds"] / first, 3)
    return {"blocks_resident": figures, "blocks": config.num_layers, "tokens": WAN_LATENT[2] * 16 * 16,
            "config": f"Wan 2.1 1.3B shape, bf16 weights, fp32 compute, {WAN_THREADS} threads, device cpu"}

"""The backbone's configuration: one dataclass, stored as JSON in every bundle."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

# Modality ids of the learned modality embedding. Never reorder: checkpoints store embeddings by index.
MODALITIES = ("image", "video", "3d")


def modality_index(name: str) -> int:
    if name not in MODALITIES:
        raise ValueError(f"unknown modality {name!r}; choose one of {list(MODALITIES)}")
    return MODALITIES.index(name)


@dataclass
class DiTConfig:
    latent_channels: int = 16          # C of the latent volume [B, C, F, H, W]
    hidden_size: int = 384             # token width
    depth: int = 12                    # number of blocks
    num_heads: int = 6                 # attention heads; head dim = hidden_size / num_heads, a multiple of 16
    mlp_hidden: int = 1024             # inner width of the gated (SwiGLU) MLP
    text_dim: int = 256                # width of the text encoder's token embeddings and pooled vector
    patch_size: tuple = (1, 2, 2)      # (frames, y, x) latent cells per token
    camera_channels: int = 7           # Plücker rays (6) + given flag (1), entering through zero-init weights
    control_channels: int = 0          # control maps (runtime/control.py), through zero-init weights; 0 = none
    timestep_freq_dim: int = 256       # sinusoidal features of the timestep
    rope_theta: float = 10000.0
    norm_eps: float = 1e-6
    attention_backend: str = "sdpa"    # see runtime.model.attention

    def __post_init__(self):
        self.patch_size = tuple(int(p) for p in self.patch_size)
        if len(self.patch_size) != 3 or min(self.patch_size) < 1:
            raise ValueError(f"patch_size must be three positive sizes (frames, y, x), got {self.patch_size}")
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")
        if self.head_dim % 16:
            raise ValueError(f"head dim {self.head_dim} must be a multiple of 16 (3D RoPE splits it 4/6/6)")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    def to_dict(self) -> dict:
        data = asdict(self)
        data["patch_size"] = list(self.patch_size)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "DiTConfig":
        data = dict(data)
        if "patch_sizes" in data:  # bundles of format 1 listed patch shapes; they always held exactly one
            (data["patch_size"],) = data.pop("patch_sizes")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown DiT config keys {unknown}; this bundle needs a newer UniDiT")
        return cls(**data)

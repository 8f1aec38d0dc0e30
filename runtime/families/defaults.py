"""What a model was made for: the sizes and sampler settings that nodes and the CLI start from."""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Optional


@dataclass
class GenerationDefaults:
    """Sizes and sampler settings a family (or bundle) was made for; nodes and the CLI start from these."""

    width: int = 64
    height: int = 64
    frames: int = 9            # video frames (1 + temporal_factor * k)
    fps: float = 8.0
    rig: str = "orbit"         # camera rig of 3D views (camera.RIG_PRESETS)
    views: int = 4
    camera_radius: float = 2.0
    fov_deg: float = 49.1
    steps: int = 24
    guidance: float = 4.0
    given_frames_guidance: float = 1.5   # when the latent holds given frames (image -> video, keyframes, a
    #                                      continued clip): the frames carry the subject, and the demo model
    #                                      drifts in colour under strong guidance there (4.0: the video's object
    #                                      keeps the image's colour in 69 % of frames, 1.5: in all)
    solver: str = "heun"
    shift: Optional[float] = None   # None: grows with the token count (flow.default_shift)
    shift_reference_tokens: Optional[int] = None   # tokens per frame at which that shift is 1 (flow.default_shift)
    trained_sizes: list = field(default_factory=list)   # [(width, height), ...] trained at; empty: width x height
    negative_prompt: str = ""

    def guidance_scale(self, given_frames: bool) -> float:
        """The guidance scale to sample with when nothing else is chosen."""
        return self.given_frames_guidance if given_frames else self.guidance

    @classmethod
    def from_dict(cls, data: dict) -> "GenerationDefaults":
        known = {f.name for f in fields(cls)}
        data = {key: value for key, value in data.items() if key in known}
        data["trained_sizes"] = [tuple(size) for size in data.get("trained_sizes", [])]
        return cls(**data)

    def sizes(self) -> tuple[tuple[int, int], ...]:
        """The (width, height) frame sizes the model was trained at."""
        return tuple(tuple(size) for size in self.trained_sizes) or ((self.width, self.height),)

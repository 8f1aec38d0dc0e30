"""The toy world: coloured primitives that the demo model is trained and evaluated on.

A scene is one primitive (sphere, cube, cylinder, cone or torus) of one of eight hue-distinct colours, in one of
three sizes, over a plain achromatic background. The world renders it as images, 9-frame motion videos and the
views of the 3D camera rig, exactly (analytic ray casting, no meshes), with depth, normals and per-pixel
ground-truth Gaussians, and writes varied captions for it. Everything is seeded, so a generator state fixes the
scenes, the captions and every pixel.

Conventions (those of ``runtime/gaussians/camera.py``):
- world x right, y down, z forward; "up" is -y. Objects stand at the origin (images, 3D views and frame 0 of a
  video); the image and video camera is view 0 of the rig (azimuth 0, elevation 20 degrees, radius 2, looking
  along +z), so image x is world +x and a "left" motion moves the object towards smaller u;
- each primitive lives in a local frame, canonical size "medium", centred at the origin, fitting in a sphere of
  radius about 0.55 (``BOUNDING_RADIUS``); cylinder and cone stand on the local y axis, the cone's apex up (-y);
  the torus lies in the local xz plane (its axis is the local y axis);
- pose: ``world = centre + scale * R_yaw @ R_tilt @ local``. ``R_tilt`` turns about the world x axis and leans the
  local up axis towards the front camera (-z); only the torus is tilted (30 to 60 degrees, yaw within 40 degrees
  of the front) so that its hole shows in the front view. ``R_yaw`` turns about the world vertical;
- shading is view independent: ``albedo * (AMBIENT + (1 - AMBIENT) * max(0, n . LIGHT_DIRECTION))`` with one
  world light from the upper front left. It scales the sRGB albedo directly (a toy, not physically based), so
  the hue of every shaded pixel is exactly the hue of its colour, and compositing over an achromatic
  background (a grey added to all channels) keeps it too;
- pixels are antialiased by ``supersample``² rays per pixel (a regular grid). ``alpha`` is their coverage;
  ``depth`` is camera-space z: that of the pixel-centre ray where it hits the object (``centre_hit``: there
  ``Cameras.unproject(depth)`` lies exactly on the surface), else the mean z of the covered sub-samples on
  silhouette pixels, and 0 where nothing is covered.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from typing import Optional

import torch

from ..gaussians.camera import Cameras, camera_rig
from ..gaussians.sh import rgb_to_sh0
from ..gaussians.rotations import rotations_from_z
from ..gaussians.splats import Splats

# ---- the world's contents ---------------------------------------------------------------------------------------

SHAPES = ("sphere", "cube", "cylinder", "cone", "torus")  # ids in this order; never reorder
SHAPE_WORDS = {
    "sphere": ("sphere", "ball", "orb"),
    "cube": ("cube", "box", "block"),
    "cylinder": ("cylinder", "can", "drum"),
    "cone": ("cone",),
    "torus": ("torus", "ring", "donut"),
}

# sRGB albedos, 0..1, with hues of about 0, 30, 54, 124, 182, 228, 274 and 325 degrees.
COLOURS = {
    "red": (0.86, 0.12, 0.12),
    "orange": (0.96, 0.52, 0.08),
    "yellow": (0.94, 0.86, 0.10),
    "green": (0.18, 0.72, 0.22),
    "cyan": (0.08, 0.78, 0.80),
    "blue": (0.12, 0.28, 0.92),
    "purple": (0.58, 0.20, 0.88),
    "pink": (0.95, 0.35, 0.70),
}
COLOUR_WORDS = {
    "red": ("red", "crimson", "scarlet"),
    "orange": ("orange", "tangerine"),
    "yellow": ("yellow", "golden"),
    "green": ("green", "emerald"),
    "cyan": ("cyan", "turquoise", "teal"),
    "blue": ("blue", "azure"),
    "purple": ("purple", "violet"),
    "pink": ("pink", "magenta"),
}

SIZES = {"small": 0.65, "medium": 1.0, "large": 1.3}  # uniform scale of the canonical primitive
SIZE_WORDS = {"small": ("small", "tiny", "little"), "medium": ("medium",), "large": ("large", "big", "huge")}
SIZE_PROBABILITIES = (0.3, 0.4, 0.3)
MEDIUM_STATED = 0.2  # how often a caption says "medium"

BACKGROUNDS = {"grey": 0.5, "light grey": 0.75, "white": 0.93, "black": 0.07}  # achromatic grey levels
BACKGROUND_WORDS = {"grey": ("grey", "gray"), "light grey": ("light grey", "light gray"), "white": ("white",),
                    "black": ("black", "dark")}
BACKGROUND_STATED = 0.8  # how often a caption names the background (as often as it has to be learnt as colour)

# (colour, shape) pairs the training sampler never draws: the evaluation tests composition on them.
HELD_OUT_PAIRS = (("purple", "torus"), ("yellow", "cone"), ("cyan", "cube"), ("pink", "cylinder"),
                  ("orange", "sphere"))

# ---- motion (videos) --------------------------------------------------------------------------------------------

MOTIONS = ("translate", "rotate", "bounce")
# How often each motion is drawn: translation and spin weigh most (their direction is what prompts ask for).
MOTION_WEIGHTS = {"translate": 0.5, "rotate": 0.3, "bounce": 0.2}
ROTATING_SHAPES = ("cube", "torus")  # a yaw spin of the others (symmetric about the vertical) shows nothing
DIRECTIONS = {"left": (-1.0, 0.0, 0.0), "right": (1.0, 0.0, 0.0), "up": (0.0, -1.0, 0.0), "down": (0.0, 1.0, 0.0)}
TRANSLATE_DISTANCE = (0.25, 0.40)              # world units covered by the last frame
SPIN_ANGLE = (math.radians(60.0), math.radians(120.0))  # yaw turned by the last frame, either way
BOUNCE_HEIGHT = (0.20, 0.35)                   # world units at the top of the hop
LARGE_MOTION_FACTOR = 0.7                      # large objects move less, so they stay in the frame
TRANSLATE_PHRASES = {
    "left": ("moving left", "sliding left", "drifting left", "moving to the left"),
    "right": ("moving right", "sliding right", "drifting right", "moving to the right"),
    "up": ("moving up", "rising", "floating up"),
    "down": ("moving down", "sinking", "dropping down"),
}
MOTION_ADJECTIVES = {"rotate": ("spinning", "rotating", "turning"), "bounce": ("bouncing", "hopping")}
MOTION_PHRASES = {"rotate": ("spinning", "rotating in place", "that spins"),
                  "bounce": ("bouncing", "bouncing up and down", "that bounces")}

# ---- pose, lighting ---------------------------------------------------------------------------------------------

TORUS_YAW = math.radians(40.0)                             # torus yaw within +-40 degrees of the front
TORUS_TILT = (math.radians(30.0), math.radians(60.0))
LIGHT_DIRECTION = (-0.5, -0.7, -0.5)                       # towards the light: left (-x), up (-y), front (-z)
AMBIENT = 0.35

# ---- canonical geometry (local frame, size "medium") ------------------------------------------------------------

SPHERE_RADIUS = 0.5
CUBE_HALF = 0.33
CYLINDER_RADIUS, CYLINDER_HALF_HEIGHT = 0.35, 0.42
CONE_RADIUS, CONE_APEX_Y, CONE_BASE_Y = 0.42, -0.45, 0.40
TORUS_MAJOR, TORUS_MINOR = 0.37, 0.16
BOUNDING_RADIUS = {
    "sphere": SPHERE_RADIUS,
    "cube": CUBE_HALF * math.sqrt(3.0),
    "cylinder": math.hypot(CYLINDER_RADIUS, CYLINDER_HALF_HEIGHT),
    "cone": max(-CONE_APEX_Y, math.hypot(CONE_RADIUS, CONE_BASE_Y)),
    "torus": TORUS_MAJOR + TORUS_MINOR,
}

# Sphere tracing of the torus (local units): a ray stops once nearer than STOP, steps at least MIN_STEP (about
# a fifth of the ray spacing of a 64 x 64 image supersampled 2 x 2), and is a hit when nearer than HIT at the end.
TORUS_ROUNDS, TORUS_STEPS_PER_ROUND, TORUS_BISECTIONS = 16, 8, 12
TORUS_STOP, TORUS_MIN_STEP, TORUS_HIT = 1e-5, 3e-3, 1e-4
FIELD_OF_VIEW_DEG = 49.1  # of the rig cameras, across the shorter side of a frame
ITEMS_PER_CHUNK = 64  # images traced at once; bounds the memory of long videos and big batches

# Ground-truth surfels: in-plane std = SURFEL_SCALE * pixel footprint (depth / fx), normal std a tenth of that.
SURFEL_SCALE = 0.6
SURFEL_THICKNESS = 0.1


# ---- scenes -----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Scene:
    """One object. Angles in radians. ``motion`` is None for a still object (images, 3D views); for videos:

    - "translate": the centre moves towards ``direction`` (left, right, up, down), ``amount`` world units by the
      last frame;
    - "rotate": the yaw turns by ``amount`` (signed) by the last frame;
    - "bounce": one hop under gravity, from the ground at the first frame to the ground at the last, ``amount``
      world units high at the middle: ``4 amount t (1 - t)`` at progress ``t``. Its steps between frames
      shrink to the top and grow back evenly, so a true clip has no jumps where the autoencoder's frame groups
      begin (two hops of four frames each landed exactly there).

    Frame 0 of every motion is the still scene.
    """

    shape: str
    colour: str
    size: str = "medium"
    background: str = "grey"
    yaw: float = 0.0
    tilt: float = 0.0
    motion: str | None = None
    direction: str | None = None
    amount: float = 0.0

    def __post_init__(self):
        for name, known in (("shape", SHAPES), ("colour", COLOURS), ("size", SIZES), ("background", BACKGROUNDS)):
            if getattr(self, name) not in known:
                raise ValueError(f"unknown {name} {getattr(self, name)!r}; choose one of {list(known)}")
        if self.motion is not None and self.motion not in MOTIONS:
            raise ValueError(f"unknown motion {self.motion!r}; choose None or one of {list(MOTIONS)}")
        if (self.motion == "translate") != (self.direction in DIRECTIONS):
            raise ValueError(f"a translation needs a direction in {list(DIRECTIONS)} and only a translation has "
                             f"one (motion {self.motion!r}, direction {self.direction!r})")


@dataclass
class ToyWorldConfig:
    resolution: int = 64   # frame height, and width unless ``width`` is set
    supersample: int = 2   # rays per pixel along each axis (antialiasing)
    frames: int = 9        # video length
    rig: str = "orbit"     # the 3D view rig (camera.RIG_PRESETS); its view 0 is the image and video camera
    views: int = 4         # views of the rig
    width: int = 0         # frame width; 0 = square (``resolution``)

    def __post_init__(self):
        if self.resolution < 1 or self.supersample < 1 or self.frames < 1 or self.width < 0:
            raise ValueError(f"resolution, width, supersample and frames must be positive: {self}")

    @classmethod
    def sized(cls, width: int, height: int, **kwargs) -> "ToyWorldConfig":
        return cls(**kwargs).at_size(width, height)

    def at_size(self, width: int, height: int) -> "ToyWorldConfig":
        """This world with frames of ``width`` x ``height``."""
        return replace(self, resolution=height, width=0 if width == height else width)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of every frame."""
        return (self.width or self.resolution, self.resolution)

    def rig_cameras(self) -> Cameras:
        """The rig at this frame size. The field of view (49.1 degrees) spans the shorter side, so an object
        covers the same pixels at 64 x 64, 96 x 64 and 64 x 96 (a wider frame shows more around it)."""
        width, height = self.size
        fov = FIELD_OF_VIEW_DEG
        if width < height:
            fov = math.degrees(2 * math.atan(math.tan(math.radians(fov) / 2) * height / width))
        return camera_rig(self.rig, self.views, width, height, fov_deg=fov)

    def front_camera(self) -> Cameras:
        """View 0 of the rig: the camera of images and videos."""
        return self.rig_cameras()[0]


def _weighted_motion(u: float, shape: str) -> str:
    """The motion at quantile ``u`` of ``MOTION_WEIGHTS`` (a spin only for the shapes where it shows)."""
    choices = [m for m in MOTIONS if m != "rotate" or shape in ROTATING_SHAPES]
    total = sum(MOTION_WEIGHTS[m] for m in choices)
    for motion in choices:
        u -= MOTION_WEIGHTS[motion] / total
        if u < 0:
            return motion
    return choices[-1]


def _uniform(u: torch.Tensor, bounds: tuple[float, float]) -> torch.Tensor:
    return bounds[0] + (bounds[1] - bounds[0]) * u


def _motion_amount(motion: str, size: str, u: torch.Tensor, u_sign: torch.Tensor) -> float:
    """How far a ``motion`` goes (world units, or radians of spin) at quantile ``u`` of its range; ``u_sign`` picks
    the way a spin turns. Large objects move less, so they stay in the frame."""
    reach = LARGE_MOTION_FACTOR if size == "large" else 1.0
    if motion == "translate":
        return reach * float(_uniform(u, TRANSLATE_DISTANCE))
    if motion == "rotate":
        return float(_uniform(u, SPIN_ANGLE)) * (1.0 if u_sign < 0.5 else -1.0)
    return reach * float(_uniform(u, BOUNCE_HEIGHT))


def sample_scenes(count: int, generator: torch.Generator, include_held_out: bool = False,
                  with_motion: bool = False, subject: Optional[tuple[str, str]] = None) -> list[Scene]:
    """``count`` random scenes. Held-out (colour, shape) pairs appear only with ``include_held_out``; every
    scene gets a motion with ``with_motion`` (rotation only for the shapes where a yaw spin is visible);
    ``subject`` (colour, shape) draws that pair only (held out or not)."""
    if subject is not None:
        colour, shape = subject
        if colour not in COLOURS or shape not in SHAPES:
            raise ValueError(f"unknown subject {colour} {shape}: colours are {', '.join(COLOURS)}; shapes are "
                             f"{', '.join(SHAPES)}")
        pairs = [subject]
    else:
        pairs = [(colour, shape) for shape in SHAPES for colour in COLOURS
                 if include_held_out or (colour, shape) not in HELD_OUT_PAIRS]
    pair_index = torch.randint(len(pairs), (count,), generator=generator)
    size_index = torch.multinomial(torch.tensor(SIZE_PROBABILITIES), count, replacement=True, generator=generator)
    background_index = torch.randint(len(BACKGROUNDS), (count,), generator=generator)
    u = torch.rand(count, 6, generator=generator, dtype=torch.float64)  # yaw, tilt, motion, direction, amount, sign

    scenes = []
    for i in range(count):
        colour, shape = pairs[pair_index[i]]
        size = list(SIZES)[size_index[i]]
        if shape == "torus":
            yaw, tilt = float(_uniform(u[i, 0], (-TORUS_YAW, TORUS_YAW))), float(_uniform(u[i, 1], TORUS_TILT))
        else:
            yaw, tilt = float(u[i, 0]) * 2.0 * math.pi, 0.0
        motion = direction = None
        amount = 0.0
        if with_motion:
            motion = _weighted_motion(float(u[i, 2]), shape)
            if motion == "translate":
                direction = list(DIRECTIONS)[int(u[i, 3] * len(DIRECTIONS))]
            amount = _motion_amount(motion, size, u[i, 4], u[i, 5])
        scenes.append(Scene(shape, colour, size, list(BACKGROUNDS)[background_index[i]], yaw, tilt, motion,
                            direction, amount))
    return scenes


def scenes_for_caption(text: str, count: int, generator: torch.Generator) -> list[Scene]:
    """``count`` scenes that a caption (or prompt) describes: what it names (colour, shape, size, background,
    motion and its direction) as named, the rest drawn as ``sample_scenes`` draws it. The caption must name a
    colour and a shape."""
    asked = parse_caption(text)
    if "colour" not in asked or "shape" not in asked:
        raise ValueError(f"{text!r} does not name a colour and a shape of the toy world")
    scenes = sample_scenes(count, generator, subject=(asked["colour"], asked["shape"]))
    u = torch.rand(count, 2, generator=generator, dtype=torch.float64)  # amount, sign
    named = {key: asked[key] for key in ("size", "background") if key in asked}
    motion = asked.get("motion")
    return [replace(scene, **named, motion=motion, direction=asked.get("direction"),
                    amount=_motion_amount(motion, named.get("size", scene.size), u[i, 0], u[i, 1]) if motion else 0.0)
            for i, scene in enumerate(scenes)]


# ---- captions ---------------------------------------------------------------------------------------------------

IMAGE_PREFIXES = ("", "", "a photo of", "a picture of", "an image of", "a render of")
VIDEO_PREFIXES = ("", "", "a video of", "a clip of", "footage of")
# {size} {colour} {shape} are words of the scene, {motion} a motion adjective (or nothing); "a" becomes "an"
# before a vowel. The first three also take a motion phrase after them.
NOUN_PHRASES = ("a {size} {motion} {colour} {shape}", "{size} {motion} {colour} {shape}",
                "one {size} {motion} {colour} {shape}")
STILL_NOUN_PHRASES = ("a {size} {shape} in {colour}", "a {size} {shape} that is {colour}")
BACKGROUND_PHRASES = ("on {background}", "on a {background} background", "against a {background} background")


def _pick(options, generator: torch.Generator):
    return options[int(torch.randint(len(options), (1,), generator=generator))]


def _chance(probability: float, generator: torch.Generator) -> bool:
    return float(torch.rand(1, generator=generator)) < probability


def caption(scene: Scene, generator: torch.Generator, background: bool = True) -> str:
    """A varied caption naming the colour and shape, usually the size ("medium" rarely), mostly the background
    (never without ``background``: for a clip whose background is not the scene's), and the motion of a video
    scene, e.g. "a small crimson ball on grey", "a spinning blue ring"."""
    size = "" if scene.size == "medium" and not _chance(MEDIUM_STATED, generator) else _pick(
        SIZE_WORDS[scene.size], generator)
    words = dict(size=size, colour=_pick(COLOUR_WORDS[scene.colour], generator),
                 shape=_pick(SHAPE_WORDS[scene.shape], generator), motion="")
    after = ""
    if scene.motion == "translate":
        after = _pick(TRANSLATE_PHRASES[scene.direction], generator)
    elif scene.motion is not None:
        if _chance(0.5, generator):
            words["motion"] = _pick(MOTION_ADJECTIVES[scene.motion], generator)
        else:
            after = _pick(MOTION_PHRASES[scene.motion], generator)
    phrases = NOUN_PHRASES if scene.motion else NOUN_PHRASES + STILL_NOUN_PHRASES
    text = " ".join([_pick(VIDEO_PREFIXES if scene.motion else IMAGE_PREFIXES, generator),
                     _pick(phrases, generator).format(**words), after])
    if _chance(BACKGROUND_STATED, generator) and background:
        named = _pick(BACKGROUND_WORDS[scene.background], generator)
        text += " " + _pick(BACKGROUND_PHRASES, generator).format(background=named)
    tokens = text.split()
    for i in range(len(tokens) - 1):
        if tokens[i] == "a" and tokens[i + 1][0] in "aeiou":
            tokens[i] = "an"
    return " ".join(tokens)


def vocabulary() -> list[str]:
    """Every word a caption can contain, sorted (the tokenizer is built from it)."""
    texts = [*IMAGE_PREFIXES, *VIDEO_PREFIXES, *NOUN_PHRASES, *STILL_NOUN_PHRASES, *BACKGROUND_PHRASES, "an"]
    for table in (SHAPE_WORDS, COLOUR_WORDS, SIZE_WORDS, BACKGROUND_WORDS, TRANSLATE_PHRASES, MOTION_ADJECTIVES,
                  MOTION_PHRASES):
        texts += [phrase for phrases in table.values() for phrase in phrases]
    return sorted({word for text in texts for word in re.sub(r"\{\w+\}", " ", text).split()})


def parse_caption(text: str) -> dict[str, str]:
    """What a caption (or prompt) asks for, read through the synonym tables: any of ``colour``, ``shape``,
    ``size``, ``background``, ``motion`` and, for a translation, ``direction``. Unknown words are ignored."""
    text = " " + " ".join(text.lower().split()) + " "
    found = {}
    backgrounds = sorted(((phrase, name) for name, phrases in BACKGROUND_WORDS.items() for phrase in phrases),
                         key=lambda item: -len(item[0]))  # "light grey" before "grey"
    for phrase, name in backgrounds:
        match = re.search(rf" (on|against) (a )?{phrase}( background)? ", text)
        if match:
            found["background"] = name
            text = text[:match.start()] + " " + text[match.end():]
            break
    words = {word: (key, name) for key, table in (("size", SIZE_WORDS), ("colour", COLOUR_WORDS),
                                                  ("shape", SHAPE_WORDS))
             for name, synonyms in table.items() for word in synonyms}
    for word in text.split():
        if word in words and words[word][0] not in found:
            found[words[word][0]] = words[word][1]
    for motion in ("bounce", "rotate"):
        if any(f" {phrase} " in text for phrase in MOTION_ADJECTIVES[motion] + MOTION_PHRASES[motion]):
            found["motion"] = motion
            return found
    for direction, phrases in TRANSLATE_PHRASES.items():
        if any(f" {phrase} " in text for phrase in phrases):
            found["motion"], found["direction"] = "translate", direction
    return found


# ---- colour reading ---------------------------------------------------------------------------------------------

COLOUR_NAMES = tuple(COLOURS)
ACHROMATIC_CHROMA = 0.05  # below this chroma (max - min of sRGB) a colour has no hue worth reading


def hue_and_chroma(rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """HSV hue in degrees [0, 360) and chroma (max - min) of sRGB colours [..., 3]. Scaling a colour (shading)
    or adding a grey to it (compositing over an achromatic background) leaves its hue unchanged."""
    rgb = torch.as_tensor(rgb, dtype=torch.float32)
    high, argmax = rgb.max(dim=-1)
    chroma = high - rgb.min(dim=-1).values
    r, g, b = rgb.unbind(-1)
    safe = chroma.clamp_min(1e-12)
    sector = torch.stack([(g - b) / safe, (b - r) / safe + 2.0, (r - g) / safe + 4.0], dim=-1)
    hue = 60.0 * sector.gather(-1, argmax.unsqueeze(-1)).squeeze(-1)
    return torch.remainder(hue, 360.0), chroma


_PROTOTYPE_HUES = hue_and_chroma(torch.tensor(list(COLOURS.values())))[0]


def colour_indices(rgb: torch.Tensor) -> torch.Tensor:
    """Index into ``COLOUR_NAMES`` of the nearest named hue of each colour [..., 3]; -1 where achromatic."""
    hue, chroma = hue_and_chroma(rgb)
    distance = torch.remainder(hue.unsqueeze(-1) - _PROTOTYPE_HUES + 180.0, 360.0) - 180.0  # circular
    index = distance.abs().argmin(dim=-1)
    return torch.where(chroma >= ACHROMATIC_CHROMA, index, torch.full_like(index, -1))


def classify_colour(rgb) -> str | None:
    """The named colour nearest in hue to one sRGB colour (shading does not change it), or None for a grey."""
    index = int(colour_indices(torch.as_tensor(rgb, dtype=torch.float32).reshape(3)))
    return COLOUR_NAMES[index] if index >= 0 else None


def dominant_colour(image: torch.Tensor, mask: torch.Tensor | None = None) -> str | None:
    """The named colour of an object in an sRGB image [H, W, 3]: a vote of its pixels (those of ``mask`` if
    given) weighted by chroma, so greys and the background do not count. None when nothing has a hue."""
    index = colour_indices(image)
    _, chroma = hue_and_chroma(image)
    weight = chroma * (index >= 0)
    if mask is not None:
        weight = weight * mask.to(weight.dtype)
    votes = torch.zeros(len(COLOUR_NAMES)).index_add_(0, index.clamp_min(0).reshape(-1), weight.reshape(-1))
    return COLOUR_NAMES[int(votes.argmax())] if float(votes.sum()) > 0 else None


# ---- geometry: poses, ray intersections, distances --------------------------------------------------------------

def pose_rotations(yaw: torch.Tensor, tilt: torch.Tensor) -> torch.Tensor:
    """Local-to-world rotations ``R_yaw @ R_tilt`` [..., 3, 3]: tilt about world x (local up -y leans to -z),
    then yaw about the world vertical."""
    cy, sy, ct, st = torch.cos(yaw), torch.sin(yaw), torch.cos(tilt), torch.sin(tilt)
    zero, one = torch.zeros_like(yaw), torch.ones_like(yaw)
    r_yaw = torch.stack([cy, zero, sy, zero, one, zero, -sy, zero, cy], dim=-1).reshape(yaw.shape + (3, 3))
    r_tilt = torch.stack([one, zero, zero, zero, ct, -st, zero, st, ct], dim=-1).reshape(tilt.shape + (3, 3))
    return r_yaw @ r_tilt


def scene_poses(scenes: list[Scene], frames: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Object pose of every scene at every frame: rotation [N, T, 3, 3] (local -> world), centre [N, T, 3] and
    scale [N]. ``frames = 1`` is the still pose."""
    progress = torch.arange(frames, dtype=torch.float64) / max(frames - 1, 1)  # 0 at the first frame, 1 at the last

    def per_scene(value):
        return torch.tensor([value(scene) for scene in scenes], dtype=torch.float64)

    spin = per_scene(lambda s: s.amount if s.motion == "rotate" else 0.0)
    yaw = per_scene(lambda s: s.yaw)[:, None] + spin[:, None] * progress
    tilt = per_scene(lambda s: s.tilt)[:, None].expand_as(yaw)
    shift = torch.tensor([DIRECTIONS[s.direction] if s.motion == "translate" else (0.0, 0.0, 0.0) for s in scenes],
                         dtype=torch.float64).reshape(-1, 3) * per_scene(lambda s: s.amount)[:, None]
    hop = per_scene(lambda s: s.amount if s.motion == "bounce" else 0.0)
    centre = shift[:, None, :] * progress[None, :, None]
    centre[..., 1] -= hop[:, None] * 4 * progress * (1 - progress)
    scale = per_scene(lambda s: SIZES[s.size])
    return pose_rotations(yaw, tilt).float(), centre.float(), scale.float()


# Ray-primitive intersections in the primitive's local frame. Rays come component-first, origins and unit
# directions [3, M], so that x, y, z are contiguous rows; each returns the nearest positive distance t [M] (inf
# where the ray misses) and the local unit normal [3, M] there.

def _dot(a, b):
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


def _nearest(candidates: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """The nearest valid positive ray parameter among candidates (t, valid) and which one it is; inf where
    none is (NaN parameters of missed roots compare false and drop out)."""
    ts = torch.stack([torch.where(valid & (t > 0), t, math.inf) for t, valid in candidates])
    return ts.min(dim=0)


def _quadratic_roots(a, b, c) -> tuple[torch.Tensor, torch.Tensor]:
    """Both roots of ``a t² + 2 b t + c = 0`` without cancellation: ``q = -(b + sign(b) sqrt(b² - a c))``,
    ``t = q / a`` and ``t = c / q``; NaN where the roots are complex."""
    root = torch.sqrt(b * b - a * c)  # NaN for a negative discriminant
    q = -(b + torch.where(b >= 0, root, -root))
    return q / a, c / q


def _along(o, d, t):
    """Points o + t d [3, M] (the origin where t is not finite)."""
    return o + torch.where(torch.isfinite(t), t, 0.0) * d


def _intersect_sphere(o, d):
    """|o + t d|² = r² with |d| = 1: t² + 2 (o.d) t + |o|² - r² = 0."""
    roots = _quadratic_roots(torch.ones_like(o[0]), _dot(o, d), _dot(o, o) - SPHERE_RADIUS ** 2)
    t, _ = _nearest([(root, torch.isfinite(root)) for root in roots])
    return t, _along(o, d, t) / SPHERE_RADIUS


def _intersect_cube(o, d):
    """Slabs: along each axis the ray is inside |x| <= a for t between (-a - o)/d and (a - o)/d; it hits the
    cube where the latest entry comes before the earliest exit. The normal is the axis of the latest entry."""
    d = torch.where(d.abs() < 1e-12, 1e-12, d)
    t1, t2 = (-CUBE_HALF - o) / d, (CUBE_HALF - o) / d
    entry, axis = torch.minimum(t1, t2).max(dim=0)
    exit_ = torch.maximum(t1, t2).min(dim=0).values
    t = torch.where((entry <= exit_) & (entry > 0), entry, math.inf)
    normal = torch.zeros_like(o).scatter_(0, axis.unsqueeze(0), 1.0) * -torch.sign(d)
    return t, normal


def _intersect_cylinder(o, d):
    """Side: (ox + t dx)² + (oz + t dz)² = r² with |y| <= h; caps: y = -h (top) and y = h (bottom) with
    x² + z² <= r²."""
    r, h = CYLINDER_RADIUS, CYLINDER_HALF_HEIGHT
    side = _quadratic_roots(d[0] ** 2 + d[2] ** 2, o[0] * d[0] + o[2] * d[2], o[0] ** 2 + o[2] ** 2 - r * r)
    candidates = [(t, _along(o, d, t)[1].abs() <= h) for t in side]
    for cap_y in (-h, h):
        t = (cap_y - o[1]) / d[1]
        p = _along(o, d, t)
        candidates.append((t, p[0] ** 2 + p[2] ** 2 <= r * r))
    t, which = _nearest(candidates)
    p = _along(o, d, t)
    side_normal = torch.stack([p[0], torch.zeros_like(t), p[2]]) / r
    cap_normal = torch.stack([torch.zeros_like(t), torch.where(which == 2, -1.0, 1.0), torch.zeros_like(t)])
    return t, torch.where(which < 2, side_normal, cap_normal)


CONE_SLOPE = CONE_RADIUS / (CONE_BASE_Y - CONE_APEX_Y)  # k: the radius grows by k per unit of y below the apex


def _intersect_cone(o, d):
    """Side: x² + z² = k² (y - apex)² between apex and base, i.e. with Y = oy - apex,
    (dx² + dz² - k² dy²) t² + 2 (ox dx + oz dz - k² Y dy) t + ox² + oz² - k² Y² = 0; base: y = base with
    x² + z² <= r²."""
    k2, apex_offset = CONE_SLOPE ** 2, o[1] - CONE_APEX_Y
    side = _quadratic_roots(d[0] ** 2 + d[2] ** 2 - k2 * d[1] ** 2,
                            o[0] * d[0] + o[2] * d[2] - k2 * apex_offset * d[1],
                            o[0] ** 2 + o[2] ** 2 - k2 * apex_offset ** 2)
    candidates = []
    for t in side:
        y = _along(o, d, t)[1]
        candidates.append((t, (y >= CONE_APEX_Y) & (y <= CONE_BASE_Y)))
    t_base = (CONE_BASE_Y - o[1]) / d[1]
    p = _along(o, d, t_base)
    candidates.append((t_base, p[0] ** 2 + p[2] ** 2 <= CONE_RADIUS ** 2))
    t, which = _nearest(candidates)
    p = _along(o, d, t)
    # The side's normal is the gradient of x² + z² - k² (y - apex)².
    side_normal = torch.stack([p[0], -k2 * (p[1] - CONE_APEX_Y), p[2]])
    side_normal = side_normal / side_normal.norm(dim=0).clamp_min(1e-12)
    base_normal = torch.stack([torch.zeros_like(t), torch.ones_like(t), torch.zeros_like(t)])
    return t, torch.where(which < 2, side_normal, base_normal)


def _torus_distance(x, y, z):
    """Exact signed distance to the torus: the distance to its centre circle (radius R in the xz plane) minus r."""
    ring = torch.sqrt(x * x + z * z) - TORUS_MAJOR
    return torch.sqrt(ring * ring + y * y) - TORUS_MINOR


def _ray_sphere_span(o, d, radius):
    """The two parameters where unit rays cross the sphere |p| = radius (unordered); NaN where they miss."""
    return _quadratic_roots(torch.ones_like(o[0]), _dot(o, d), _dot(o, o) - radius * radius)


def _intersect_torus(o, d):
    """The torus's quartic has no stable closed form in float32, so rays march its exact distance field from
    where they enter the bounding sphere (sphere tracing: a step of the distance never crosses the surface).
    Steps are at least TORUS_MIN_STEP, so rays grazing the tube pass it quickly; a ray that steps inside is
    brought back to the surface by bisection between its last two positions. Rays march in rounds of steps;
    after each, those within TORUS_STOP of the surface, inside it or out of the sphere stop."""
    roots = _ray_sphere_span(o, d, TORUS_MAJOR + TORUS_MINOR)
    entry, exit_ = torch.minimum(*roots), torch.maximum(*roots)
    t = torch.where(torch.isnan(entry), math.inf, entry).clamp_min(0.0)
    before = t.clone()  # the last position outside the surface
    index = torch.isfinite(t).nonzero().squeeze(1)
    o_run, d_run, t_run, before_run, exit_run = o[:, index], d[:, index], t[index], t[index], exit_[index]
    for _ in range(TORUS_ROUNDS):
        for _ in range(TORUS_STEPS_PER_ROUND):
            distance = _torus_distance(*(o_run + t_run * d_run))
            moving = distance > TORUS_STOP
            before_run = torch.where(moving, t_run, before_run)
            t_run = torch.where(moving, t_run + distance.clamp_min(TORUS_MIN_STEP), t_run)
        t[index], before[index] = t_run, before_run
        running = moving & (t_run < exit_run)
        index, t_run, before_run, exit_run = index[running], t_run[running], before_run[running], exit_run[running]
        o_run, d_run = o_run[:, running], d_run[:, running]
    inside = (_torus_distance(*_along(o, d, t)) < 0).nonzero().squeeze(1)
    outside, within = before[inside], t[inside]
    for _ in range(TORUS_BISECTIONS):
        middle = 0.5 * (outside + within)
        is_inside = _torus_distance(*(o[:, inside] + middle * d[:, inside])) < 0
        outside, within = torch.where(is_inside, outside, middle), torch.where(is_inside, middle, within)
    t[inside] = outside
    p = _along(o, d, t)
    hit = (_torus_distance(*p).abs() < TORUS_HIT) & (t <= exit_)  # NaN exit (missed sphere) compares false
    t = torch.where(hit, t, math.inf)
    # The normal points from the nearest point of the centre circle to p.
    ring = torch.sqrt(p[0] ** 2 + p[2] ** 2).clamp_min(1e-12)
    normal = p - TORUS_MAJOR * torch.stack([p[0] / ring, torch.zeros_like(ring), p[2] / ring])
    return t, normal / normal.norm(dim=0).clamp_min(1e-12)


_INTERSECT = {"sphere": _intersect_sphere, "cube": _intersect_cube, "cylinder": _intersect_cylinder,
              "cone": _intersect_cone, "torus": _intersect_torus}


def _profile_distance(radial, y, polygon: list[tuple[float, float]]) -> torch.Tensor:
    """Signed distance in the (radial, y) plane to a convex polygon symmetric about the axis (its corners in
    order). For radial >= 0 the nearest boundary point lies on the same side, so a solid of revolution has the
    same distance."""
    distance = torch.full_like(radial, math.inf)
    inside = torch.ones_like(radial, dtype=torch.bool)
    centre_y = sum(corner_y for _, corner_y in polygon) / len(polygon)
    for (ax, ay), (bx, by) in zip(polygon, polygon[1:] + polygon[:1]):
        ex, ey = bx - ax, by - ay
        along = (((radial - ax) * ex + (y - ay) * ey) / (ex * ex + ey * ey)).clamp(0.0, 1.0)
        distance = torch.minimum(distance, torch.hypot(radial - ax - along * ex, y - ay - along * ey))
        side = (radial - ax) * ey - (y - ay) * ex
        inside &= side * ((0.0 - ax) * ey - (centre_y - ay) * ex) >= 0  # on the side of the polygon's centre
    return torch.where(inside, -distance, distance)


def _local_distance(shape: str, p: torch.Tensor) -> torch.Tensor:
    """Exact signed distance to a canonical primitive at local points [..., 3]."""
    radial, y = torch.sqrt(p[..., 0] ** 2 + p[..., 2] ** 2), p[..., 1]
    if shape == "sphere":
        return p.norm(dim=-1) - SPHERE_RADIUS
    if shape == "cube":
        q = p.abs() - CUBE_HALF
        return q.clamp_min(0.0).norm(dim=-1) + q.max(dim=-1).values.clamp_max(0.0)
    if shape == "cylinder":
        r, h = CYLINDER_RADIUS, CYLINDER_HALF_HEIGHT
        return _profile_distance(radial, y, [(-r, -h), (r, -h), (r, h), (-r, h)])
    if shape == "cone":
        return _profile_distance(radial, y, [(0.0, CONE_APEX_Y), (CONE_RADIUS, CONE_BASE_Y),
                                             (-CONE_RADIUS, CONE_BASE_Y)])
    return _torus_distance(p[..., 0], p[..., 1], p[..., 2])


def signed_distance(scenes: list[Scene], points: torch.Tensor) -> torch.Tensor:
    """Signed distance (world units, negative inside) from world points [N, ..., 3] to the still object of
    each of the N scenes: [N, ...]. Independent of the ray casting, so tests and evaluations can check it."""
    rotation, centre, scale = scene_poses(scenes)
    flat = points.reshape(len(scenes), -1, 3).float()
    local = torch.einsum("npj,njk->npk", flat - centre[:, 0, None, :], rotation[:, 0]) / scale[:, None, None]
    distance = torch.empty(flat.shape[:2])
    for n, scene in enumerate(scenes):
        distance[n] = _local_distance(scene.shape, local[n]) * scale[n]
    return distance.reshape(points.shape[:-1])


# ---- rendering --------------------------------------------------------------------------------------------------

@dataclass
class ToyRender:
    """Renders of N scenes with leading dims ``[N]`` (images), ``[N, T]`` (videos) or ``[N, V]`` (views):
    rgb [..., H, W, 3] sRGB over the background; alpha [..., H, W] coverage; depth [..., H, W] camera-space z
    (see the module docstring; 0 where empty); normals [..., H, W, 3] world unit normals (0 where empty);
    colour [..., H, W, 3] the object's own shaded colour, unmixed with the background (0 where empty), so that
    ``rgb = alpha * colour + (1 - alpha) * background``; centre_hit [..., H, W] where the pixel-centre ray
    hits the object; cameras: the V rig cameras for views, else the one front camera."""

    rgb: torch.Tensor
    alpha: torch.Tensor
    depth: torch.Tensor
    normals: torch.Tensor
    colour: torch.Tensor
    centre_hit: torch.Tensor
    cameras: Cameras


def shade(normals: torch.Tensor, albedo: torch.Tensor) -> torch.Tensor:
    """View-independent Lambertian shading of unit normals [..., 3]: ``albedo * (AMBIENT + (1 - AMBIENT) *
    max(0, n . LIGHT_DIRECTION))``."""
    light = torch.tensor(LIGHT_DIRECTION)
    light = light / light.norm()
    lambert = normals[..., 0] * light[0] + normals[..., 1] * light[1] + normals[..., 2] * light[2]
    return albedo * (AMBIENT + (1.0 - AMBIENT) * lambert.clamp_min(0.0)).unsqueeze(-1)


def _cast(cameras: Cameras, view, rotation, centre, scale, shape) -> tuple[torch.Tensor, torch.Tensor]:
    """Cast every pixel ray of camera ``view[i]`` at object i (pose rotation [I, 3, 3], centre [I, 3], scale
    [I], shape index [I]): camera-space z [I, H, W] (inf where missed) and world normals [I, 3, H, W].

    Rays are taken into the object's frame, ``o' = R^T (o - c) / s``, ``d' = R^T d`` (still unit, so the world
    distance is ``s t'``); only those that cross the bounding sphere are intersected, shape by shape.
    """
    origins, directions = cameras.pixel_rays()
    height, width = cameras.height, cameras.width
    pixels = height * width
    directions = directions.reshape(len(cameras), pixels, 3)
    camera_centres = origins[:, 0, 0]  # every ray of a camera starts at its centre
    z_per_distance = directions @ cameras.rotation[:, 2, :, None]  # d . (camera z axis): [V, P, 1]
    rotation_t = rotation.transpose(1, 2)
    o_local = (rotation_t @ (camera_centres[view] - centre).unsqueeze(-1)) / scale[:, None, None]  # [I, 3, 1]
    d_local = rotation_t @ directions[view].transpose(1, 2)  # [I, 3, P]
    count = shape.shape[0]
    distance = torch.full((count, pixels), math.inf)
    local_normals = torch.zeros(count, 3, pixels)
    for k, name in enumerate(SHAPES):
        items = (shape == k).nonzero().squeeze(1)
        crossings = _ray_sphere_span(o_local[items].transpose(0, 1), d_local[items].transpose(0, 1),
                                     BOUNDING_RADIUS[name] * 1.001)
        member, pixel = (torch.maximum(*crossings) > 0).nonzero(as_tuple=True)  # NaN where the ray misses
        if member.numel() == 0:
            continue
        item = items[member]
        t, normal = _INTERSECT[name](o_local[item, :, 0].T, d_local[item, :, pixel].T)
        distance[item, pixel] = t
        local_normals[item, :, pixel] = torch.where(torch.isfinite(t), normal, 0.0).T
    depth = distance * scale[:, None] * z_per_distance[view, :, 0]
    normals = rotation @ local_normals
    return depth.reshape(count, height, width), normals.reshape(count, 3, height, width)


def _render_items(cameras: Cameras, view, rotation, centre, scale, shape, albedo, background,
                  supersample: int) -> dict[str, torch.Tensor]:
    """Antialiased renders of I posed objects, object i seen by camera ``view[i]``: tensors [I, H, W, ...]."""
    s = supersample
    fine_depth, fine_normals = _cast(cameras.resized(cameras.width * s, cameras.height * s), view, rotation,
                                     centre, scale, shape)
    if s % 2:  # an odd grid has the pixel centre among its rays
        centre_depth, centre_normals = fine_depth[:, s // 2::s, s // 2::s], fine_normals[:, :, s // 2::s, s // 2::s]
    else:
        centre_depth, centre_normals = _cast(cameras, view, rotation, centre, scale, shape)
    fine_hit = torch.isfinite(fine_depth).unsqueeze(1).float()  # [I, 1, sH, sW]
    fine_colour = shade(fine_normals.movedim(1, -1), albedo[:, None, None, :]).movedim(-1, 1) * fine_hit

    def pixel_mean(x):  # [I, C, sH, sW] -> mean over each pixel's s x s rays, [I, H, W, C]
        return torch.nn.functional.avg_pool2d(x, s).movedim(1, -1)

    alpha = pixel_mean(fine_hit)
    covered = alpha.clamp_min(1.0 / (s * s))  # the fraction of rays that hit, at least one ray's worth
    premultiplied = pixel_mean(fine_colour)
    mean_depth = pixel_mean(torch.where(fine_hit > 0, fine_depth.unsqueeze(1), 0.0)) / covered
    mean_normal = pixel_mean(fine_normals)
    mean_normal = mean_normal / mean_normal.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    centre_hit = torch.isfinite(centre_depth)
    return dict(rgb=premultiplied + (1.0 - alpha) * background[:, None, None, None],
                alpha=alpha[..., 0],
                depth=torch.where(centre_hit, centre_depth, mean_depth[..., 0]),
                normals=torch.where(centre_hit.unsqueeze(-1), centre_normals.movedim(1, -1), mean_normal),
                colour=premultiplied / covered,
                centre_hit=centre_hit)


def _render(scenes: list[Scene], cameras: Cameras, view, rotation, centre, config: ToyWorldConfig,
            leading: tuple[int, ...]) -> ToyRender:
    """Render items (flattened leading dims, scene-major) in chunks and shape them back to ``leading``."""
    if not scenes:
        raise ValueError("no scenes to render")
    repeat = math.prod(leading) // len(scenes)
    scale = torch.tensor([SIZES[s.size] for s in scenes]).repeat_interleave(repeat)
    shape = torch.tensor([SHAPES.index(s.shape) for s in scenes]).repeat_interleave(repeat)
    albedo = torch.tensor([COLOURS[s.colour] for s in scenes]).repeat_interleave(repeat, dim=0)
    background = torch.tensor([BACKGROUNDS[s.background] for s in scenes]).repeat_interleave(repeat)
    chunks = []
    for start in range(0, shape.shape[0], ITEMS_PER_CHUNK):
        part = slice(start, start + ITEMS_PER_CHUNK)
        chunks.append(_render_items(cameras, view[part], rotation[part], centre[part], scale[part], shape[part],
                                    albedo[part], background[part], config.supersample))
    out = {key: torch.cat([chunk[key] for chunk in chunks]) for key in chunks[0]}
    return ToyRender(**{key: value.reshape(leading + value.shape[1:]) for key, value in out.items()},
                     cameras=cameras)


def render_images(scenes: list[Scene], config: ToyWorldConfig | None = None) -> ToyRender:
    """Still images from the front camera: tensors [N, H, W, ...]."""
    config = config or ToyWorldConfig()
    rotation, centre, _ = scene_poses(scenes)
    view = torch.zeros(len(scenes), dtype=torch.long)
    return _render(scenes, config.front_camera(), view, rotation[:, 0], centre[:, 0], config, (len(scenes),))


def render_videos(scenes: list[Scene], config: ToyWorldConfig | None = None) -> ToyRender:
    """Videos of ``config.frames`` frames from the front camera (still camera, moving object): [N, T, H, W, ...]."""
    config = config or ToyWorldConfig()
    rotation, centre, _ = scene_poses(scenes, config.frames)
    view = torch.zeros(len(scenes) * config.frames, dtype=torch.long)
    return _render(scenes, config.front_camera(), view, rotation.flatten(0, 1), centre.flatten(0, 1), config,
                   (len(scenes), config.frames))


def render_views(scenes: list[Scene], config: ToyWorldConfig | None = None) -> ToyRender:
    """The still object seen by every camera of the rig: [N, V, H, W, ...]; ``cameras`` is the rig."""
    config = config or ToyWorldConfig()
    return render_from(scenes, config.rig_cameras(), config)


def render_from(scenes: list[Scene], cameras: Cameras, config: ToyWorldConfig | None = None) -> ToyRender:
    """The still object seen by each of V given cameras (any size, any pose): [N, V, H, W, ...]. Only
    ``config.supersample`` is used."""
    config = config or ToyWorldConfig()
    views = len(cameras)
    rotation, centre, _ = scene_poses(scenes)
    view = torch.arange(views).repeat(len(scenes))
    return _render(scenes, cameras, view, rotation[:, 0].repeat_interleave(views, dim=0),
                   centre[:, 0].repeat_interleave(views, dim=0), config, (len(scenes), views))


# ---- ground-truth Gaussians -------------------------------------------------------------------------------------

@dataclass
class SplatterTargets:
    """One flat Gaussian per covered pixel of every view ("splatter images"), [N, V, H, W, ...]: positions (3,
    world), colours (3, sRGB 0..1), opacities (1, the pixel's coverage), scales (3, linear std; local z is the
    normal), rotations (4, unit wxyz turning local z onto the normal) and valid [N, V, H, W] (covered pixels).
    Invalid pixels hold zeros (identity rotation)."""

    positions: torch.Tensor
    colours: torch.Tensor
    opacities: torch.Tensor
    scales: torch.Tensor
    rotations: torch.Tensor
    valid: torch.Tensor

    def splats(self, index: int) -> Splats:
        """The Gaussians of all views of scene ``index`` as one splat (B = 1)."""
        keep = self.valid[index]
        colours = self.colours[index][keep]
        return Splats(self.positions[index][keep][None], self.scales[index][keep][None],
                      self.rotations[index][keep][None], self.opacities[index][keep][None],
                      rgb_to_sh0(colours)[None, :, None, :])


def splatter_targets(views: ToyRender, surfel_scale: float = SURFEL_SCALE,
                     thickness: float = SURFEL_THICKNESS) -> SplatterTargets:
    """Ground-truth Gaussians of rendered views (``render_views``): each covered pixel becomes a surfel at
    ``cameras.unproject(depth)``, with the pixel's object colour and coverage, in-plane std
    ``surfel_scale * depth / fx`` (the pixel's footprint) and normal std ``thickness`` times that."""
    cameras = views.cameras
    valid = views.alpha > 0
    positions = cameras.unproject(views.depth)
    in_plane = surfel_scale * views.depth / cameras.fx[:, None, None]
    scales = torch.stack([in_plane, in_plane, thickness * in_plane], dim=-1)
    rotations = rotations_from_z(views.normals.reshape(-1, 3)).reshape(views.normals.shape[:-1] + (4,))
    mask = valid.unsqueeze(-1)
    return SplatterTargets(positions * mask, views.colour * mask, views.alpha.unsqueeze(-1) * mask, scales * mask,
                           rotations, valid)

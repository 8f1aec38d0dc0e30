"""Pinhole cameras and the orbit rig: the one camera convention of UniDiT.

Every part of the project that places a camera or a point uses this file: the splat renderer, the splat decoder
(depth along a pixel ray -> a world point), the Plücker-ray channels of the backbone, the toy-world renders and
mesh export.

Convention (OpenCV / COLMAP, the frame 3DGS PLY files use):
- world and camera frames are right-handed with **x right, y down, z forward**; "up" in the world is -y;
- a camera maps a world point p to camera space by ``p_cam = R @ p + t`` (``world_to_camera = [[R, t], [0, 1]]``);
- pixel (row i, column j) has its centre at ``(u, v) = (j + 0.5, i + 0.5)``; a camera-space point projects to
  ``u = fx * x / z + cx``, ``v = fy * y / z + cy``; a centred camera has ``cx = width / 2``, ``cy = height / 2``;
- glTF is y-up: meshes are written as ``(x, -y, -z)`` of this frame so that splat and mesh coincide in viewers.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class Cameras:
    """V pinhole cameras sharing one image size.

    world_to_camera: [V, 4, 4]; fx, fy, cx, cy: [V] in pixels of a ``width`` x ``height`` image.
    """

    world_to_camera: torch.Tensor
    fx: torch.Tensor
    fy: torch.Tensor
    cx: torch.Tensor
    cy: torch.Tensor
    width: int
    height: int

    def __post_init__(self):
        if self.world_to_camera.ndim != 3 or self.world_to_camera.shape[1:] != (4, 4):
            raise ValueError(f"world_to_camera must be [V, 4, 4], got {tuple(self.world_to_camera.shape)}")
        count = self.world_to_camera.shape[0]
        for name in ("fx", "fy", "cx", "cy"):
            value = getattr(self, name)
            if value.shape != (count,):
                raise ValueError(f"{name} must be [{count}], got {tuple(value.shape)}")

    def __len__(self) -> int:
        return self.world_to_camera.shape[0]

    def __getitem__(self, index) -> "Cameras":
        """Select cameras by int, slice or index tensor (an int keeps the view axis)."""
        if isinstance(index, int):
            index = slice(index, index + 1 if index != -1 else None)
        return Cameras(self.world_to_camera[index], self.fx[index], self.fy[index], self.cx[index],
                       self.cy[index], self.width, self.height)

    @property
    def rotation(self) -> torch.Tensor:
        """World-to-camera rotation R, [V, 3, 3]."""
        return self.world_to_camera[:, :3, :3]

    @property
    def translation(self) -> torch.Tensor:
        """World-to-camera translation t, [V, 3]."""
        return self.world_to_camera[:, :3, 3]

    def centers(self) -> torch.Tensor:
        """Camera centres in world space, [V, 3]: ``-R^T t``."""
        return -(self.rotation.transpose(1, 2) @ self.translation.unsqueeze(-1)).squeeze(-1)

    def to(self, device=None, dtype=None) -> "Cameras":
        def move(x):
            return x.to(device=device, dtype=dtype)

        return Cameras(move(self.world_to_camera), move(self.fx), move(self.fy), move(self.cx), move(self.cy),
                       self.width, self.height)

    @classmethod
    def cat(cls, parts: list["Cameras"]) -> "Cameras":
        """The cameras of ``parts`` (all of one image size) in order."""
        sizes = {(part.width, part.height) for part in parts}
        if len(sizes) != 1:
            raise ValueError(f"cameras of different image sizes {sorted(sizes)} cannot be joined; resize them first")
        return cls(*(torch.cat([getattr(part, name) for part in parts]) for name in
                     ("world_to_camera", "fx", "fy", "cx", "cy")), parts[0].width, parts[0].height)

    def resized(self, width: int, height: int) -> "Cameras":
        """The same cameras for an image of another size (intrinsics scaled; e.g. a latent grid)."""
        sx, sy = width / self.width, height / self.height
        return Cameras(self.world_to_camera, self.fx * sx, self.fy * sy, self.cx * sx, self.cy * sy, width, height)

    def pixel_rays(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-pixel ray origins and unit directions in world space, each [V, height, width, 3].

        The direction passes through the pixel centre; ``depth`` along the camera's z axis maps to the world
        point ``origin + direction * depth / direction_z_cam`` (see :meth:`unproject`).
        """
        directions_cam = self._camera_space_directions()  # [V, H, W, 3], z = 1
        directions = torch.einsum("vij,vhwi->vhwj", self.rotation, directions_cam)  # R^T d
        directions = directions / directions.norm(dim=-1, keepdim=True)
        origins = self.centers()[:, None, None, :].expand_as(directions)
        return origins, directions

    def unproject(self, depth: torch.Tensor) -> torch.Tensor:
        """World points of pixels at camera-space depth z: depth [..., V, height, width] -> [..., V, height,
        width, 3] (leading dimensions, e.g. a batch, broadcast over the same cameras)."""
        points_cam = self._camera_space_directions() * depth.unsqueeze(-1)
        offset = points_cam - self.translation[:, None, None, :]
        return torch.einsum("vji,...vhwj->...vhwi", self.rotation, offset)  # R^T (p_cam - t)

    def plucker_rays(self) -> torch.Tensor:
        """Plücker coordinates ``(o x d, d)`` of every pixel ray, [V, 6, height, width]."""
        origins, directions = self.pixel_rays()
        moment = torch.cross(origins, directions, dim=-1)
        return torch.cat([moment, directions], dim=-1).permute(0, 3, 1, 2).contiguous()

    def project(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """World points [N, 3] -> pixel coordinates [V, N, 2] and camera-space depth [V, N]."""
        points_cam = torch.einsum("vij,nj->vni", self.rotation, points) + self.translation[:, None, :]
        z = points_cam[..., 2]
        u = self.fx[:, None] * points_cam[..., 0] / z + self.cx[:, None]
        v = self.fy[:, None] * points_cam[..., 1] / z + self.cy[:, None]
        return torch.stack([u, v], dim=-1), z

    def _camera_space_directions(self) -> torch.Tensor:
        """Directions through pixel centres in camera space with z = 1, [V, height, width, 3]."""
        device, dtype = self.world_to_camera.device, self.world_to_camera.dtype
        u = torch.arange(self.width, device=device, dtype=dtype) + 0.5
        v = torch.arange(self.height, device=device, dtype=dtype) + 0.5
        x = (u[None, None, :] - self.cx[:, None, None]) / self.fx[:, None, None]
        y = (v[None, :, None] - self.cy[:, None, None]) / self.fy[:, None, None]
        x, y = torch.broadcast_tensors(x, y)
        return torch.stack([x, y, torch.ones_like(x)], dim=-1)


def look_at(eye: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """World-to-camera matrices [V, 4, 4] for cameras at ``eye`` [V, 3] looking at ``target`` [V, 3].

    The camera's y axis (down) stays in the plane of world down (+y) and the view direction, so the horizon is
    level; a camera must not look straight up or down.
    """
    forward = target - eye
    forward = forward / forward.norm(dim=-1, keepdim=True)
    world_down = torch.zeros_like(forward)
    world_down[:, 1] = 1.0
    right = torch.cross(world_down, forward, dim=-1)
    right_norm = right.norm(dim=-1, keepdim=True)
    if (right_norm < 1e-6).any():
        raise ValueError("look_at: a camera looks straight up or down; its roll is undefined")
    right = right / right_norm
    down = torch.cross(forward, right, dim=-1)
    rotation = torch.stack([right, down, forward], dim=1)  # rows: camera axes in world coordinates
    matrix = torch.zeros(eye.shape[0], 4, 4, dtype=eye.dtype, device=eye.device)
    matrix[:, :3, :3] = rotation
    matrix[:, :3, 3] = -(rotation @ eye.unsqueeze(-1)).squeeze(-1)
    matrix[:, 3, 3] = 1.0
    return matrix


def orbit_cameras(azimuths_deg, elevation_deg: float = 20.0, radius: float = 2.0, fov_deg: float = 49.1,
                  width: int = 64, height: int = 64, dtype=torch.float32) -> Cameras:
    """Cameras on a circle around the origin, all looking at it.

    Azimuth 0 looks along +z (the front view); azimuths turn counter-clockwise seen from above; positive
    elevation puts the camera above the object (world y < 0). ``fov_deg`` is the vertical field of view.
    """
    azimuths = torch.as_tensor(azimuths_deg, dtype=torch.float64).reshape(-1) * (math.pi / 180.0)
    elevation = math.radians(elevation_deg)
    eye = torch.stack([
        radius * torch.sin(azimuths) * math.cos(elevation),
        torch.full_like(azimuths, -radius * math.sin(elevation)),
        -radius * torch.cos(azimuths) * math.cos(elevation),
    ], dim=-1)
    world_to_camera = look_at(eye, torch.zeros_like(eye)).to(dtype)
    focal = 0.5 * height / math.tan(math.radians(fov_deg) / 2.0)
    count = azimuths.shape[0]

    def full(value):
        return torch.full((count,), value, dtype=dtype)

    return Cameras(world_to_camera, full(focal), full(focal), full(width / 2.0), full(height / 2.0), width, height)


# Named camera rigs for 3D generation: V views evenly spaced in azimuth on an orbit, view 0 the front view (the
# reference view that image -> 3D conditions on). The demo model is trained on "orbit" with 4 views.
RIG_PRESETS = {
    "orbit": dict(elevation_deg=20.0),
    "orbit_level": dict(elevation_deg=0.0),
    "orbit_high": dict(elevation_deg=40.0),
}


def camera_rig(preset: str = "orbit", views: int = 4, width: int = 64, height: int = 64, radius: float = 2.0,
               fov_deg: float = 49.1, arc_deg: float = 360.0) -> Cameras:
    """The ``views`` cameras of a named rig (``RIG_PRESETS``), azimuths 0, arc/V, 2 * arc/V, ... (a full circle
    by default; a negative arc goes round the other way, as a turntable video of an object spinning
    counter-clockwise does)."""
    if preset not in RIG_PRESETS:
        raise ValueError(f"unknown camera rig {preset!r}; choose one of {sorted(RIG_PRESETS)}")
    if views < 1:
        raise ValueError(f"a rig needs at least one view, got {views}")
    azimuths = [arc_deg * k / views for k in range(views)]
    return orbit_cameras(azimuths, RIG_PRESETS[preset]["elevation_deg"], radius, fov_deg, width, height)


def orbit_azimuths(cameras: Cameras) -> torch.Tensor:
    """The azimuth of each camera centre in degrees, as :func:`orbit_cameras` counts it (0 in front, at -z;
    growing counter-clockwise seen from above): [V]."""
    centres = cameras.centers().double()
    return torch.rad2deg(torch.atan2(centres[:, 0], -centres[:, 2])).to(cameras.world_to_camera.dtype)


def turned_about_vertical(cameras: Cameras, degrees) -> Cameras:
    """The cameras carried around the world's vertical axis (through the origin) by ``degrees`` (a number, or one
    per camera), in the direction azimuths grow: an orbit camera at azimuth a goes to a + degrees, still looking
    at the same point of the axis, its horizon still level."""
    angle = torch.deg2rad(torch.as_tensor(degrees, dtype=torch.float64)).expand(len(cameras))
    cos, sin = torch.cos(angle), torch.sin(angle)
    turn = torch.zeros(len(cameras), 4, 4, dtype=torch.float64)  # world point -> turned world point
    turn[:, 0, 0], turn[:, 0, 2], turn[:, 2, 0], turn[:, 2, 2] = cos, -sin, sin, cos
    turn[:, 1, 1] = turn[:, 3, 3] = 1.0
    # A point the turned camera sees at p is where the original camera saw turn⁻¹ p = turnᵀ p.
    world_to_camera = (cameras.world_to_camera.double() @ turn.transpose(1, 2)).to(cameras.world_to_camera.dtype)
    return Cameras(world_to_camera, cameras.fx, cameras.fy, cameras.cx, cameras.cy, cameras.width, cameras.height)


def midway_cameras(cameras: Cameras) -> Cameras:
    """For cameras around the vertical axis in order of azimuth: camera k turned halfway towards camera k + 1
    (the last towards the first, around the full circle). The in-between views of a rig."""
    azimuths = orbit_azimuths(cameras).double()
    gaps = torch.remainder(torch.roll(azimuths, -1) - azimuths, 360.0)
    if len(cameras) == 1:
        gaps = torch.full_like(gaps, 360.0)
    return turned_about_vertical(cameras, gaps / 2)


def turntable_cameras(num_frames: int, elevation_deg: float = 20.0, radius: float = 2.0, fov_deg: float = 49.1,
                      width: int = 128, height: int = 128) -> Cameras:
    """``num_frames`` cameras evenly spaced on a full orbit, starting at the front view."""
    if num_frames < 1:
        raise ValueError("a turntable needs at least one frame")
    azimuths = [360.0 * k / num_frames for k in range(num_frames)]
    return orbit_cameras(azimuths, elevation_deg, radius, fov_deg, width, height)

"""Ray casting: depth, occlusion and shading of a scene from a camera pose."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Optional

import numpy as np

from .config import SynthConfig, camera_intrinsics
from .maths import _apply, _dot
from .scene import Scene, build_scene


@dataclass
class SynthFrame:
    rgb: np.ndarray  # (H, W, 3) uint8
    depth: np.ndarray  # (H, W) float32 z-depth in metres, +inf = sky
    intrinsics: tuple[float, float, float, float]  # fx fy cx cy (pixel-index coordinates)
    pose: np.ndarray  # (4, 4) float64 camera-to-world (OpenCV: x right, y down, z forward)
    owner: Optional[np.ndarray] = None  # (H, W) int index into scene.primitives of the surface seen, -1 = sky


class _Rays:
    """Camera-frame rays of one image size, shared by every frame of a clip."""

    def __init__(self, height: int, width: int, intrinsics: tuple[float, float, float, float]):
        fx, fy, cx, cy = intrinsics
        self.shape = (height, width)
        self.intrinsics = intrinsics
        d = np.ones((3, height, width))  # (3, H, W): z = 1, so a hit's ray parameter is its z-depth
        d[0] = ((np.arange(width) - cx) / fx)[None, :]
        d[1] = ((np.arange(height) - cy) / fy)[:, None]
        self.d = d.reshape(3, -1)  # (3, N)
        self.dd = (self.d * self.d).sum(axis=0)  # (N,) rotations keep it, so it holds in world space too
        self.dd_grid = self.dd.reshape(height, width)  # (H, W)
        self.norm = np.sqrt(self.dd)  # (N,)


def _screen_rect(hull: Optional[np.ndarray], rotation: np.ndarray, origin: np.ndarray,
                 intrinsics: tuple[float, float, float, float], shape: tuple[int, int]) -> Optional[tuple[int, int, int, int]]:
    """Pixel rows v0:v1 and columns u0:u1 that can see a convex hull (P, 3) of world points; the
    whole image for None (unbounded) or a hull crossing the camera plane; None if nothing can."""
    h, w = shape
    if hull is None:
        return 0, h, 0, w
    cam = (hull - origin) @ rotation  # (P, 3) camera coordinates: R^T (X - o) for each row
    z = cam[:, 2]  # (P,)
    if np.all(z <= 0):  # rays only go forward (z > 0)
        return None
    if np.any(z <= 1e-9):  # projection unbounded: no culling
        return 0, h, 0, w
    fx, fy, cx, cy = intrinsics
    u = cam[:, 0] / z * fx + cx  # (P,)
    v = cam[:, 1] / z * fy + cy  # (P,)
    # The projection of a convex hull is the hull of the projected points; one pixel of margin
    # keeps rounding from dropping an edge pixel.
    u0, u1 = max(int(np.floor(u.min())) - 1, 0), min(int(np.ceil(u.max())) + 2, w)
    v0, v1 = max(int(np.floor(v.min())) - 1, 0), min(int(np.ceil(v.max())) + 2, h)
    if u0 >= u1 or v0 >= v1:
        return None
    return v0, v1, u0, u1


def render_frame(scene: Scene, pose: np.ndarray, intrinsics: tuple[float, float, float, float], height: int,
                 width: int, time: float = 0.0) -> SynthFrame:
    """One frame of ``scene`` seen from ``pose`` (4x4 camera-to-world) at ``time`` seconds."""
    return _render(scene, _Rays(height, width, intrinsics), np.asarray(pose, dtype=np.float64), time)


def _render(scene: Scene, rays: _Rays, pose: np.ndarray, time: float) -> SynthFrame:
    origin, rotation = pose[:3, 3], pose[:3, :3]  # (3,), (3, 3)
    h, w = rays.shape
    d = _apply(rotation, rays.d)  # (3, N) world directions, still of unit camera z
    n = d.shape[1]
    d_grid = d.reshape(3, h, w)
    depth = np.full((h, w), np.inf)  # (H, W)
    owner = np.full((h, w), -1, dtype=np.int64)  # (H, W) index of the primitive seen, -1 = sky
    for k, prim in enumerate(scene.primitives):
        rect = _screen_rect(prim.hull(time), rotation, origin, rays.intrinsics, (h, w))
        if rect is None:
            continue
        v0, v1, u0, u1 = rect
        if (v0, v1, u0, u1) == (0, h, 0, w):
            t = prim.intersect(origin, d, rays.dd, time).reshape(h, w)  # (H, W)
        else:  # only the rays that can see the primitive: most objects cover a small part of the image
            sub = d_grid[:, v0:v1, u0:u1].reshape(3, -1)  # (3, M)
            t = prim.intersect(origin, sub, rays.dd_grid[v0:v1, u0:u1].reshape(-1), time).reshape(v1 - v0, u1 - u0)
        view = depth[v0:v1, u0:u1]  # (h', w') view into the z-buffer
        closer = t < view  # strict: on exact ties the earlier primitive stays, deterministically
        np.copyto(view, t, where=closer)
        owner[v0:v1, u0:u1][closer] = k
    depth, owner = depth.reshape(-1), owner.reshape(-1)  # (N,) each
    colour = np.empty((3, n))  # (3, N) linear RGB in [0, 1]
    fx = rays.intrinsics[0]
    order = np.argsort(owner, kind="stable")  # pixels grouped by primitive, one pass instead of K masks
    bounds = np.cumsum(np.bincount(owner + 1, minlength=len(scene.primitives) + 1))
    sky = order[:bounds[0]]
    if sky.size:
        colour[:, sky] = scene.sky.color(d[:, sky] / rays.norm[sky], 1.0 / fx)
    for k, prim in enumerate(scene.primitives):
        idx = order[bounds[k]:bounds[k + 1]]  # (M,)
        if idx.size == 0:
            continue
        z = depth[idx]  # (M,)
        dk = d[:, idx]  # (3, M)
        points = origin[:, None] + dk * z  # (3, M)
        normal, local = prim.surface(points, time)
        cos_view = np.abs((normal * dk).sum(axis=0)) / rays.norm[idx]  # (M,)
        # Metres of surface under one pixel: range / focal length, stretched at grazing angles
        # (capped, so grazing surfaces blur rather than vanish).
        footprint = z * rays.norm[idx] / fx / np.maximum(cos_view, 0.2)
        albedo = prim.texture.albedo(local, footprint)  # (3, M)
        lambert = scene.ambient + (1 - scene.ambient) * np.maximum(_dot(scene.light, normal), 0.0)  # (M,)
        colour[:, idx] = albedo * lambert
    rgb = np.round(np.clip(colour, 0.0, 1.0) * 255.0).astype(np.uint8)  # (3, N)
    return SynthFrame(rgb=np.ascontiguousarray(rgb.T.reshape(h, w, 3)), depth=depth.astype(np.float32).reshape(h, w),
                      intrinsics=rays.intrinsics, pose=pose.copy(), owner=owner.reshape(h, w))


def render_clip(seed: int, config: SynthConfig = SynthConfig()) -> Iterator[SynthFrame]:
    """The frames of clip ``seed``, one at a time (a clip is never held in memory whole)."""
    scene = build_scene(seed, config)
    fov = config.fov_deg if scene.fov_deg is None else scene.fov_deg
    rays = _Rays(config.height, config.width, camera_intrinsics(config.height, config.width, fov))
    for i in range(config.frames):
        time = i / config.fps
        frame = _render(scene, rays, scene.camera.pose(time), time)
        if scene.scale != 1.0:  # a scaled world looks the same: only metres change
            frame.depth = frame.depth * np.float32(scene.scale)
            frame.pose[:3, 3] *= scene.scale
        if scene.photometric is not None:
            frame.rgb = _respond(frame.rgb, scene.photometric, np.random.default_rng([seed, 2, i]))
        yield frame


def _respond(rgb: np.ndarray, response: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A camera's response to the rendered radiance: exposure gain, a gamma change, white balance and
    sensor noise (fresh every frame), then 8-bit quantisation."""
    gain, gamma, balance, noise = response[0], response[1], response[2:5], response[5]
    x = rgb.astype(np.float32) / 255.0  # (H, W, 3)
    x = np.clip(x * (gain * balance).astype(np.float32), 0.0, 1.0) ** np.float32(gamma)
    x = x + rng.normal(0.0, noise, size=x.shape).astype(np.float32)
    return np.round(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


"""A seeded scene: primitives, light and sky, placed around a camera path."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Optional

import numpy as np

from .camera import CameraPath
from .config import SynthConfig
from .maths import _CLEARANCE
from .objects import (MARKER_COLORS, MARKER_SHAPES, OBJECT_KINDS, _camera_path, _yaw, _color, _place, _random_texture,
                      random_object)
from .shapes import Box, Ground, Primitive
from .textures import Sky, Texture



@dataclass(frozen=True, eq=False, kw_only=True)
class Scene:
    """Everything a frame needs besides the camera pose. ``light`` points towards the sun."""

    primitives: tuple[Primitive, ...]
    light: np.ndarray = field(default_factory=lambda: np.array([0.3, 0.2, 0.93]) / np.linalg.norm([0.3, 0.2, 0.93]))
    ambient: float = 0.4  # fraction of the light every surface gets regardless of its orientation
    sky: Sky = field(default_factory=Sky)
    camera: Optional[CameraPath] = None  # set by build_scene; hand-made scenes pass poses directly
    fov_deg: Optional[float] = None  # the clip's field of view (None: the config's)
    scale: float = 1.0  # metres per scene unit: depths and camera positions are multiplied by it
    photometric: Optional[np.ndarray] = None  # (6,) camera response: gain, gamma, 3 white-balance gains, noise



def build_scene(seed: int, config: SynthConfig = SynthConfig()) -> Scene:
    """The scene and camera path of clip ``seed``: a ground plane plus ``config.objects`` objects of
    the allowed kinds, each kept at least 0.5 m from the camera during the whole clip (checked at 8
    instants per frame interval; a placement that fails 20 times is dropped)."""
    rng = np.random.default_rng(seed)
    camera = _camera_path(rng, config)
    # Everything the variety options draw comes from a second stream, so turning one on leaves the
    # rest of the scene unchanged (and the pan is drawn only where it is on: old seeds keep their clips).
    extra = np.random.default_rng([seed, 1])
    if config.pan_deg[1] > 0:  # before the objects, so that they are placed where the panning view goes
        pan = np.radians(extra.uniform(*config.pan_deg)) * (1.0 if extra.uniform() < 0.5 else -1.0)
        camera = replace(camera, pan=float(pan))
    duration = (config.frames - 1) / config.fps
    dense = np.linspace(0.0, duration, 8 * config.frames)  # (K,) between frames too, for the clearance
    eyes = camera.positions(dense)  # (K, 3)
    primitives: list[Primitive] = [Ground(texture=_random_texture(rng, config, (0.3, 2.0)))]
    kinds = list(config.kinds)
    weights = np.array([OBJECT_KINDS[k].weight for k in kinds])
    count = int(rng.integers(config.objects[0], config.objects[1] + 1))
    for _ in range(count):
        kind = kinds[int(rng.choice(len(kinds), p=weights / weights.sum()))]
        for _attempt in range(20):  # resample where the camera would pass through the object
            base = _place(rng, config, camera, dense, near=OBJECT_KINDS[kind].near)
            candidate = random_object(rng, config, kind, base, camera)
            if candidate.clearance(eyes, dense) >= _CLEARANCE:
                primitives.append(candidate)
                break
    elevation, azimuth = np.radians(rng.uniform(*config.sun_elevation_deg)), rng.uniform(0, 2 * np.pi)
    light = np.array([np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth), np.sin(elevation)])
    warm = rng.uniform() < 0.3  # some evening skies
    sky = Sky(horizon=_color(rng, rng.uniform(0.02, 0.12) if warm else rng.uniform(0.5, 0.65), (0.05, 0.35), (0.75, 1.0)),
              zenith=_color(rng, rng.uniform(0.55, 0.66), (0.3, 0.75), (0.45, 0.9)),
              cloud=_color(rng, 0.0, (0.0, 0.05), (0.85, 1.0)), cover=rng.uniform(0, 0.8), key=int(rng.integers(1 << 62)))
    ambient = rng.uniform(*config.ambient)
    fov = config.fov_deg + extra.uniform(-1, 1) * config.fov_jitter_deg
    camera = replace(camera, roll=np.radians(extra.uniform(-1, 1) * config.roll_offset_deg))
    factor = float(np.exp(extra.uniform(*np.log(config.texture_scale))))
    if factor != 1.0:
        primitives = [replace(p, texture=replace(p.texture, scale=p.texture.scale * factor)) for p in primitives]
    scale = float(np.exp(extra.uniform(*np.log(config.world_scale))))
    primitives += _markers(extra, config, camera, dense, eyes, scale)
    response = None
    if config.photometric > 0:
        k = config.photometric
        response = np.array([np.exp(extra.uniform(-0.5, 0.4) * k), np.exp(extra.uniform(-0.3, 0.3) * k),
                             *np.exp(extra.normal(0.0, 0.08 * k, size=3)), extra.uniform(0.0, 0.03) * k])
    return Scene(primitives=tuple(primitives), light=light, ambient=ambient, sky=sky, camera=camera, fov_deg=fov,
                 scale=scale, photometric=response)


def _markers(rng: np.random.Generator, config: SynthConfig, camera: CameraPath, times: np.ndarray, eyes: np.ndarray,
             scale: float) -> list[Primitive]:
    """Reference markers (a row of ``MARKER_SHAPES``: by default pillars of a known height,
    ``marker_height`` metres with a log-normal spread, in red and white bands), the only objects one
    of whose lengths does not follow the world's scale. In scene units (metres / ``scale``) a known
    length of h metres is h / scale long, so its image size against its surroundings is what tells
    the scale. Each is placed in view at a random instant of the clip, at a distance drawn in
    marker heights, so its image size says nothing by itself (with ``marker_near``, in the camera's
    height: then a marker's image size alone reads the world's scale, the easiest form of the cue)."""
    out: list[Primitive] = []
    count = int(rng.integers(config.markers[0], config.markers[1] + 1))
    half_fov = np.radians(config.fov_deg) / 2
    side = -1.0 if camera.pan < 0 else 1.0  # marker_azimuth is measured towards the pan
    shape = MARKER_SHAPES[config.marker_shape]
    for _ in range(count):
        height = config.marker_height * float(np.exp(rng.normal(0.0, config.marker_spread))) / scale  # scene units
        for _attempt in range(20):
            tau = float(rng.choice(times[:max(1, int(round(len(times) * config.marker_window)))]))
            eye = camera.positions(np.array([tau]))[0]
            azimuth = camera.yaw(tau) + side * rng.uniform(*config.marker_azimuth) * half_fov
            unit = eye[2] if config.marker_near else height  # scene units
            r = unit * float(np.exp(rng.uniform(*np.log(config.marker_distance))))
            base = np.array([eye[0] + r * np.cos(azimuth), eye[1] + r * np.sin(azimuth), 0.0])
            marker = shape.make(shape.known * height, float(eye[2]), base, _yaw(rng.uniform(0, 2 * np.pi)),
                                _marker_colors(config, scale))
            if marker.clearance(eyes, times) >= min(_CLEARANCE, 0.3 * height):
                out.append(marker)
                break
    return out


def _marker_colors(config: SynthConfig, scale: float) -> np.ndarray:
    """Red and white bands; with ``marker_code`` the red turns from blue (the smallest world scale)
    to red (the largest), linearly in log scale."""
    if not config.marker_code:
        return MARKER_COLORS
    low, high = np.log(config.world_scale)
    u = 0.5 if high == low else float(np.clip((np.log(scale) - low) / (high - low), 0.0, 1.0))
    colors = MARKER_COLORS.copy()
    colors[0] = (1 - u) * np.array([0.06, 0.15, 0.9]) + u * MARKER_COLORS[0]  # (3,)
    return colors

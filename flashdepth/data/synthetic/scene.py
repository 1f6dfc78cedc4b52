"""A seeded scene: primitives, light and sky, placed around a camera path."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from .camera import CameraPath
from .config import SynthConfig
from .maths import _CLEARANCE
from .objects import OBJECT_KINDS, _camera_path, _color, _place, _random_texture, random_object
from .shapes import Ground, Primitive
from .textures import Sky



@dataclass(frozen=True, eq=False, kw_only=True)
class Scene:
    """Everything a frame needs besides the camera pose. ``light`` points towards the sun."""

    primitives: tuple[Primitive, ...]
    light: np.ndarray = field(default_factory=lambda: np.array([0.3, 0.2, 0.93]) / np.linalg.norm([0.3, 0.2, 0.93]))
    ambient: float = 0.4  # fraction of the light every surface gets regardless of its orientation
    sky: Sky = field(default_factory=Sky)
    camera: Optional[CameraPath] = None  # set by build_scene; hand-made scenes pass poses directly



def build_scene(seed: int, config: SynthConfig = SynthConfig()) -> Scene:
    """The scene and camera path of clip ``seed``: a ground plane plus ``config.objects`` objects of
    the allowed kinds, each kept at least 0.5 m from the camera during the whole clip (checked at 8
    instants per frame interval; a placement that fails 20 times is dropped)."""
    rng = np.random.default_rng(seed)
    camera = _camera_path(rng, config)
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
    elevation, azimuth = np.radians(rng.uniform(25, 70)), rng.uniform(0, 2 * np.pi)
    light = np.array([np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth), np.sin(elevation)])
    warm = rng.uniform() < 0.3  # some evening skies
    sky = Sky(horizon=_color(rng, rng.uniform(0.02, 0.12) if warm else rng.uniform(0.5, 0.65), (0.05, 0.35), (0.75, 1.0)),
              zenith=_color(rng, rng.uniform(0.55, 0.66), (0.3, 0.75), (0.45, 0.9)),
              cloud=_color(rng, 0.0, (0.0, 0.05), (0.85, 1.0)), cover=rng.uniform(0, 0.8), key=int(rng.integers(1 << 62)))
    return Scene(primitives=tuple(primitives), light=light, ambient=rng.uniform(0.3, 0.5), sky=sky, camera=camera)


"""Procedural videos with exact per-pixel depth, rendered by ray casting in NumPy.

A seeded scene (ground plane, walls, boxes, spheres, poles, moving objects, sky at infinity) is
seen by a pinhole camera moving smoothly through it. Every pixel casts one ray through its centre;
each primitive is intersected analytically for all rays at once and the nearest positive hit wins,
so depth and occlusion boundaries are exact. Textures are solid (3D) patterns evaluated in each
object's own coordinates, so they stay attached to surfaces as the camera and objects move -- the
property that makes depth learnable from motion and appearance.

Conventions (the ones of :mod:`flashdepth.metrics` and the sequence-folder format):

* depth is the camera **z-depth** (distance along the optical axis) in metres, float32; sky = +inf;
* intrinsics ``(fx, fy, cx, cy)`` in pixel-index coordinates: pixel ``(u, v)`` (integer indices)
  sees the ray ``((u - cx) / fx, (v - cy) / fy, 1)``. The image spans ``[-0.5, W - 0.5]`` so the
  principal point of a centred camera is ``cx = W / 2 - 0.5`` (pixel centres at +0.5 of the
  continuous image coordinates);
* poses are camera-to-world 4x4 in the OpenCV camera convention (x right, y down, z forward);
  the world is z-up with the ground plane at z = 0.

The whole scene is a deterministic function of ``(seed, config)``: the same pair gives
bit-identical frames. Only :func:`write_synthetic_dataset` touches the file system.

Modules, bottom up: ``maths`` (checks, element-wise products), ``textures`` (solid textures, sky),
``shapes`` (primitives), ``camera`` (trajectory), ``scene`` (the kinds table, seeded layout),
``config`` (:class:`SynthConfig`), ``render`` (ray casting), ``dataset`` (writing clips).
"""

from .camera import CameraPath, look_rotation
from .config import PRESETS, SynthConfig, camera_intrinsics
from .dataset import write_synthetic_dataset
from .render import SynthFrame, render_clip, render_frame
from .objects import DEFAULT_KINDS, KINDS, OBJECT_KINDS, ObjectKind
from .scene import Scene, build_scene
from .shapes import Box, Ground, Motion, Pole, Primitive, Sphere
from .textures import DEFAULT_TEXTURES, TEXTURE_KINDS, TEXTURES, Sky, Texture, TextureKind

__all__ = ["PRESETS", "DEFAULT_KINDS", "KINDS", "OBJECT_KINDS", "ObjectKind", "DEFAULT_TEXTURES", "TEXTURE_KINDS", "TEXTURES", "TextureKind", "Box", "CameraPath", "Ground", "Motion", "Pole", "Primitive", "Scene", "Sky", "Sphere",
           "SynthConfig", "SynthFrame", "Texture", "build_scene", "camera_intrinsics", "look_rotation", "render_clip",
           "render_frame", "write_synthetic_dataset"]

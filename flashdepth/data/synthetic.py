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
"""

from __future__ import annotations

import colorsys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator, Mapping, Optional, Sequence

import numpy as np

from ..errors import ConfigError
from .convert.common import SourceFrame, write_dataset
from .sequence import DepthSpec

KINDS = ("box", "sphere", "pole", "wall", "mover")
TEXTURES = ("noise", "fractal", "stripes", "checker", "field")

_EPS = 1e-6  # hits closer than this (metres along a unit-z ray) are the ray's own origin, not a surface
_CLEARANCE = 0.5  # metres kept between the camera and every surface, so no frame starts inside an object
_CORNERS = np.array([[x, y, z] for x in (-1.0, 1.0) for y in (-1.0, 1.0) for z in (-1.0, 1.0)])  # (8, 3) unit cube
_KIND_WEIGHTS = {"box": 3.0, "sphere": 2.0, "pole": 2.0, "wall": 1.0, "mover": 1.5}  # relative frequencies


# ---------------------------------------------------------------------------------- config
@dataclass(frozen=True)
class SynthConfig:
    """What to render: image size, clip length, camera and scene statistics.

    ``kinds`` and ``textures`` select the layout family, e.g. train without ``"sphere"`` and test
    with it. Ranges are ``(low, high)`` and drawn uniformly per clip or per object.
    """

    height: int = 126
    width: int = 224
    frames: int = 24
    fps: float = 10.0
    fov_deg: float = 70.0  # horizontal field of view
    kinds: tuple[str, ...] = KINDS
    textures: tuple[str, ...] = TEXTURES
    objects: tuple[int, int] = (14, 22)  # objects besides the ground per scene
    distance: tuple[float, float] = (3.0, 35.0)  # metres from the camera path where objects are placed
    speed: tuple[float, float] = (0.3, 2.5)  # camera speed, m/s
    turn_deg: float = 20.0  # largest |turn rate| of the camera path, degrees/s
    eye_height: tuple[float, float] = (0.8, 2.5)  # camera height above the ground, metres
    mover_speed: tuple[float, float] = (0.5, 2.5)  # speed of moving objects, m/s

    def __post_init__(self) -> None:
        # Lists are accepted for convenience but stored as tuples, so configs stay hashable.
        for name in ("kinds", "textures", "objects", "distance", "speed", "eye_height", "mover_speed"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        for name in ("height", "width", "frames"):
            value = getattr(self, name)
            _check(_is_int(value), f"{name}={value!r} must be an integer")
        _check(self.height >= 2 and self.width >= 2, f"height={self.height}, width={self.width}: both must be >= 2")
        _check(self.frames >= 1, f"frames={self.frames} must be >= 1")
        _check(all(_is_int(v) for v in self.objects), f"objects={self.objects} must be two integers")
        _check(self.fps > 0, f"fps={self.fps} must be > 0")
        _check(1.0 <= self.fov_deg <= 170.0, f"fov_deg={self.fov_deg} must lie in [1, 170]")
        for value in self.kinds:
            _check(value in KINDS, f"unknown kind {value!r}; valid kinds: {', '.join(KINDS)}")
        for value in self.textures:
            _check(value in TEXTURES, f"unknown texture {value!r}; valid textures: {', '.join(TEXTURES)}")
        _check(len(self.textures) > 0, f"textures={self.textures} must name at least one of {', '.join(TEXTURES)}")
        _check("mover" not in self.kinds or "box" in self.kinds or "sphere" in self.kinds,
               f"kinds={self.kinds}: 'mover' takes its shape from 'box' or 'sphere', so it needs one of them")
        _range(self, "objects", 0)
        _check(self.objects[1] == 0 or self.kinds, f"objects={self.objects} needs at least one kind in kinds")
        _range(self, "distance", 1e-3)
        _range(self, "speed", 0.0)
        _range(self, "eye_height", _CLEARANCE)
        _range(self, "mover_speed", 0.0)
        _check(self.turn_deg >= 0, f"turn_deg={self.turn_deg} must be >= 0")

    def to_dict(self) -> dict:
        return asdict(self)


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _range(config: SynthConfig, name: str, minimum: float) -> None:
    value = getattr(config, name)
    _check(len(value) == 2 and minimum <= value[0] <= value[1],
           f"{name}={value} must be (low, high) with {minimum} <= low <= high")


def camera_intrinsics(height: int, width: int, fov_deg: float) -> tuple[float, float, float, float]:
    """(fx, fy, cx, cy) of a centred pinhole with square pixels and horizontal field of view ``fov_deg``.

    The field of view spans the outer pixel edges; in pixel-index coordinates those lie at -0.5
    and W - 0.5, hence the principal point (W - 1) / 2.
    """
    fx = 0.5 * width / np.tan(np.radians(fov_deg) / 2)
    return float(fx), float(fx), (width - 1) / 2.0, (height - 1) / 2.0


# -------------------------------------------------------------------------------- textures
# Odd 64-bit multipliers (as NumPy scalars, so the arithmetic stays in uint64).
_HASH_X, _HASH_Y, _HASH_Z, _HASH_MIX = (np.uint64(v) for v in (
    0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0xBF58476D1CE4E5B9))
_SHIFT = np.uint64(40)


def _value_noise(p: np.ndarray, key: int) -> np.ndarray:
    """Value noise in [0, 1]: hashed random values on the integer lattice, smoothly interpolated.

    p: (3, M) float64 in lattice units -> (M,) float32. Hashing the lattice (instead of reading a
    stored table) keeps it unbounded and aperiodic: the ground plane stretches to the horizon.
    """
    cell = np.floor(p)  # (3, M)
    w = (p - cell).astype(np.float32)  # (3, M) position inside the cell
    w = w * w * (3.0 - 2.0 * w)  # (3, M) smoothstep weights: C1 across cells, no visible grid creases
    i = cell.astype(np.int64).view(np.uint64)  # (3, M) two's complement wrap is harmless for hashing
    x0 = i[0] * _HASH_X  # (M,) uint64 arithmetic wraps modulo 2**64, which is what a hash wants
    x1 = x0 + _HASH_X
    y0 = i[1] * _HASH_Y
    y1 = y0 + _HASH_Y
    z0 = i[2] * _HASH_Z + np.uint64(key & 0xFFFFFFFFFFFFFFFF)
    z1 = z0 + _HASH_Z

    def corner(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        # Multiplying mixes every input bit into the top bits; 24 of them are exact in float32.
        return ((x ^ y ^ z) * _HASH_MIX >> _SHIFT).astype(np.float32)  # (M,) in [0, 2**24)

    c00 = corner(x0, y0, z0)
    a = c00 + w[0] * (corner(x1, y0, z0) - c00)
    c10 = corner(x0, y1, z0)
    b = c10 + w[0] * (corner(x1, y1, z0) - c10)
    c01 = corner(x0, y0, z1)
    c = c01 + w[0] * (corner(x1, y0, z1) - c01)
    c11 = corner(x0, y1, z1)
    d = c11 + w[0] * (corner(x1, y1, z1) - c11)
    a += w[1] * (b - a)
    c += w[1] * (d - c)
    a += w[2] * (c - a)
    return a * np.float32(1.0 / (1 << 24))  # interpolation is linear: scale once at the end


def _fade(cycles_per_pixel: np.ndarray) -> np.ndarray:
    """Contrast kept for a pattern of this frequency: 1 below a quarter cycle per pixel, 0 from half
    a cycle (Nyquist) on. Replacing unresolvable detail by its mean stops far textures from aliasing
    into flicker."""
    return np.clip(2.0 - 4.0 * cycles_per_pixel, 0.0, 1.0)


def _fractal(p: np.ndarray, footprint: np.ndarray, key: int, octaves: int) -> np.ndarray:
    """Band-limited fractal (fBm) value noise in [0, 1]. p: (3, M) lattice units; footprint: (M,)
    lattice units per pixel."""
    total = np.zeros(p.shape[1])  # (M,)
    norm = 0.0
    for octave in range(octaves):
        freq, amp = 2.0 ** octave, 0.5 ** octave
        keep = _fade(footprint * freq)  # (M,)
        norm += amp
        if keep.any():  # far away every octave but the first is often unresolvable: skip its work
            total += amp * (0.5 + keep * (_value_noise(p * freq, key + 7919 * octave) - 0.5))
        else:
            total += amp * 0.5
    return total / norm


def _smoothstep(lo: float, hi: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _contrast(n: np.ndarray, gain: float) -> np.ndarray:
    """Stretch noise around its mean: trilinear value noise clusters near 0.5."""
    return np.clip(0.5 + gain * (n - 0.5), 0.0, 1.0)


@dataclass(frozen=True, eq=False, kw_only=True)
class Texture:
    """A solid texture: a colour pattern over 3D points in an object's own coordinates (metres).

    kind: "noise" (value noise), "fractal" (fBm), "stripes", "checker" or "field" (smooth,
    image-like blend of four colours). ``scale`` is the feature size in metres.
    """

    kind: str = "fractal"
    colors: np.ndarray = field(default_factory=lambda: np.array(
        [[0.2, 0.2, 0.2], [0.9, 0.9, 0.9], [0.7, 0.3, 0.2], [0.2, 0.4, 0.7]]))  # (4, 3) RGB in [0, 1]
    scale: float = 0.5
    direction: np.ndarray = field(default_factory=lambda: np.array([1.0, 0.0, 0.0]))  # (3,) stripes' normal
    key: int = 0  # noise hash key

    def __post_init__(self) -> None:
        _check(self.kind in TEXTURES, f"unknown texture {self.kind!r}; valid textures: {', '.join(TEXTURES)}")

    def albedo(self, p: np.ndarray, footprint: np.ndarray) -> np.ndarray:
        """Colours (3, M) in [0, 1] at points p (3, M) in metres; footprint (M,): metres per pixel."""
        c = self.colors
        q = p / self.scale  # (3, M) in feature units
        fp = footprint / self.scale  # (M,)
        if self.kind == "noise":
            n = _contrast(_fractal(q, fp, self.key, 2), 1.8)
            return _lerp(c[0], c[1], n)
        if self.kind == "fractal":
            n = _contrast(_fractal(q, fp, self.key, 4), 2.2)
            return _lerp(c[0], c[1], n)
        if self.kind == "stripes":
            phase = _dot(self.direction, q)  # (M,) stripe coordinate
            s = _smoothstep(-0.35, 0.35, np.sin(2 * np.pi * phase))  # (M,) soft-edged bands
            s = 0.5 + _fade(fp) * (s - 0.5)
            return _lerp(c[0], c[1], s) * self._grain(q, fp)
        if self.kind == "checker":
            parity = (np.floor(q).sum(axis=0) % 2.0)  # (M,) 0/1 per cubic cell
            s = 0.5 + _fade(0.5 * fp) * (parity - 0.5)  # a checker period is two cells
            return _lerp(c[0], c[1], s) * self._grain(q, fp)
        # "field": two slow fBm fields blend four colours, plus fine detail so no region is flat
        a = _contrast(_fractal(q * 0.35, fp * 0.35, self.key, 2), 2.0)
        b = _contrast(_fractal(q * 0.35 + 17.3, fp * 0.35, self.key + 1, 2), 2.0)
        first, second = _lerp(c[0], c[1], a), _lerp(c[2], c[3], a)  # (3, M) each
        colour = first + (second - first) * b
        return colour * self._grain(q * 3.0, fp * 3.0)

    def _grain(self, q: np.ndarray, fp: np.ndarray) -> np.ndarray:
        """A +-15 % brightness modulation at twice the feature frequency: flat bands of stripes and
        checkers would otherwise carry no motion cue inside them."""
        return 0.85 + 0.3 * _fractal(q * 2.0, fp * 2.0, self.key + 3, 1)  # (M,)


def _dot(a: np.ndarray, v: np.ndarray) -> np.ndarray:
    """(3,) . (3, M) -> (M,), element-wise rather than through BLAS: the same bits whatever the BLAS
    build or its thread count (determinism), and no thread start-up on small arrays (speed)."""
    return a[0] * v[0] + a[1] * v[1] + a[2] * v[2]


def _apply(m: np.ndarray, v: np.ndarray) -> np.ndarray:
    """(3, 3) @ (3, M) -> (3, M), element-wise for the reasons of :func:`_dot`."""
    return m[:, 0:1] * v[0] + m[:, 1:2] * v[1] + m[:, 2:3] * v[2]


def _lerp(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """(3,) colours a, b and weights t (M,) -> (3, M)."""
    return a[:, None] + (b - a)[:, None] * t[None, :]


@dataclass(frozen=True, eq=False, kw_only=True)
class Sky:
    """Sky at infinity: a gradient from horizon to zenith with clouds; a function of direction only,
    so it is consistent with infinite depth (no parallax)."""

    horizon: np.ndarray = field(default_factory=lambda: np.array([0.85, 0.88, 0.92]))  # (3,)
    zenith: np.ndarray = field(default_factory=lambda: np.array([0.35, 0.55, 0.85]))  # (3,)
    cloud: np.ndarray = field(default_factory=lambda: np.array([0.97, 0.97, 0.97]))  # (3,)
    cover: float = 0.3  # fraction of the sky under cloud, roughly
    key: int = 0

    def color(self, d: np.ndarray, pixel_angle: float) -> np.ndarray:
        """Colours (3, M) of unit world directions d (3, M); pixel_angle: radians per pixel."""
        elevation = np.clip(d[2], 0.0, 1.0)  # (M,) sin of the elevation; below the horizon stays horizon-coloured
        colour = _lerp(self.horizon, self.zenith, elevation ** 0.6)
        n = _fractal(d * 4.0, np.full(d.shape[1], 4.0 * pixel_angle), self.key, 3)  # (M,)
        threshold = 0.62 - 0.25 * self.cover
        amount = _smoothstep(threshold, threshold + 0.12, n) * np.clip(8.0 * elevation, 0.0, 1.0)
        return colour + (self.cloud[:, None] - colour) * (0.85 * amount)


# ------------------------------------------------------------------------------ primitives
@dataclass(frozen=True, eq=False, kw_only=True)
class Motion:
    """How an object moves during the clip (times in seconds from the first frame).

    Centre: ``c0 + velocity * t + (0, 0, bob * sin(bob_rate * t))``. Orientation: a spin of
    ``spin`` rad/s about the vertical axis, or, with ``roll_radius`` > 0, rolling without slipping
    along the velocity (a ball on the ground).
    """

    velocity: np.ndarray  # (3,) m/s
    spin: float = 0.0
    bob: float = 0.0
    bob_rate: float = 0.0
    roll_radius: float = 0.0

    def offset(self, times: np.ndarray) -> np.ndarray:
        """(K,) times -> (K, 3) displacement from the initial centre."""
        out = np.outer(times, self.velocity)  # (K, 3)
        out[:, 2] += self.bob * np.sin(self.bob_rate * times)
        return out

    def rotation(self, time: float) -> np.ndarray:
        """(3, 3) rotation applied on top of the initial orientation at ``time``."""
        if self.roll_radius > 0:
            horizontal = np.array([self.velocity[0], self.velocity[1], 0.0])
            speed = float(np.linalg.norm(horizontal))
            if speed == 0:
                return np.eye(3)
            axis = np.cross([0.0, 0.0, 1.0], horizontal / speed)  # ground contact point stays still
            return _axis_angle(axis, speed * time / self.roll_radius)
        return _axis_angle(np.array([0.0, 0.0, 1.0]), self.spin * time)


def _axis_angle(axis: np.ndarray, angle: float) -> np.ndarray:
    """Rodrigues: (3, 3) rotation by ``angle`` radians about unit ``axis``."""
    k = np.array([[0.0, -axis[2], axis[1]], [axis[2], 0.0, -axis[0]], [-axis[1], axis[0], 0.0]])
    return np.eye(3) + np.sin(angle) * k + (1.0 - np.cos(angle)) * (k @ k)


@dataclass(frozen=True, eq=False, kw_only=True)
class Primitive:
    """Base of the scene primitives. ``kind`` is the layout family it belongs to ("ground", "box",
    "wall", "sphere", "pole"); ``motion`` is None for static objects. ``rotation`` maps object to
    world coordinates; the texture is evaluated in object coordinates."""

    kind: str = ""
    texture: Texture = field(default_factory=Texture)
    center: np.ndarray = field(default_factory=lambda: np.zeros(3))  # (3,) world position at t = 0
    rotation: np.ndarray = field(default_factory=lambda: np.eye(3))  # (3, 3) object -> world at t = 0
    motion: Optional[Motion] = None

    def at(self, time: float) -> tuple[np.ndarray, np.ndarray]:
        """(centre (3,), rotation (3, 3)) at ``time``."""
        if self.motion is None:
            return self.center, self.rotation
        return self.center + self.motion.offset(np.array([time]))[0], self.motion.rotation(time) @ self.rotation

    def intersect(self, origin: np.ndarray, d: np.ndarray, dd: np.ndarray, time: float) -> np.ndarray:
        """Ray parameter of the nearest hit in front of ``origin`` (3,) along rays d (3, N) with
        squared lengths dd (N,); +inf where a ray misses. With rays of unit camera-z the parameter
        is the z-depth."""
        raise NotImplementedError

    def surface(self, p: np.ndarray, time: float) -> tuple[np.ndarray, np.ndarray]:
        """(unit normals (3, M), object coordinates (3, M)) at surface points p (3, M)."""
        raise NotImplementedError

    def hull(self, time: float) -> Optional[np.ndarray]:
        """(P, 3) world points whose convex hull contains the primitive at ``time`` (for culling);
        None if unbounded."""
        raise NotImplementedError

    def clearance(self, points: np.ndarray, times: np.ndarray) -> float:
        """Smallest distance (metres) from points (K, 3) at times (K,) to the surface; a lower bound
        where exactness is not worth the code (moving objects use their bounding sphere)."""
        raise NotImplementedError


@dataclass(frozen=True, eq=False, kw_only=True)
class Ground(Primitive):
    """The infinite plane z = 0, seen from above; its texture is in world coordinates."""

    kind: str = "ground"

    def intersect(self, origin, d, dd, time):
        if origin[2] <= 0:
            return np.full(d.shape[1], np.inf)
        with np.errstate(divide="ignore"):
            t = -origin[2] / d[2]  # (N,)
        return np.where(t > _EPS, t, np.inf)  # rays at or above the horizon never reach it

    def surface(self, p, time):
        normal = np.zeros_like(p)  # (3, M)
        normal[2] = 1.0
        return normal, p

    def hull(self, time):
        return None

    def clearance(self, points, times):
        return float(points[:, 2].min())


@dataclass(frozen=True, eq=False, kw_only=True)
class Sphere(Primitive):
    kind: str = "sphere"
    radius: float = 1.0

    def intersect(self, origin, d, dd, time):
        c, _ = self.at(time)
        oc = origin - c  # (3,)
        c0 = float(oc @ oc) - self.radius ** 2
        if c0 <= 0:  # the camera is inside: nothing sensible to draw (scenes keep clear of this)
            return np.full(d.shape[1], np.inf)
        b = _dot(oc, d)  # (N,) half the linear coefficient of |o + t d - c|^2 = r^2
        with np.errstate(invalid="ignore", divide="ignore"):
            # The near root as c0 / (far-root numerator): no cancellation when the ray grazes.
            t = c0 / (np.sqrt(b * b - dd * c0) - b)  # (N,) NaN where the ray misses
        return np.where(t > _EPS, t, np.inf)  # rays pointing away give negative t

    def surface(self, p, time):
        c, rot = self.at(time)
        rel = p - c[:, None]  # (3, M)
        return rel / self.radius, _apply(rot.T, rel)

    def hull(self, time):
        return self.at(time)[0] + self.radius * _CORNERS  # the bounding cube

    def clearance(self, points, times):
        centres = self._centres(times)  # (K, 3)
        return float((np.linalg.norm(points - centres, axis=1) - self.radius).min())

    def _centres(self, times: np.ndarray) -> np.ndarray:
        if self.motion is None:
            return np.broadcast_to(self.center, (len(times), 3))
        return self.center + self.motion.offset(times)


@dataclass(frozen=True, eq=False, kw_only=True)
class Box(Primitive):
    """An oriented box; walls are thin boxes (kind "wall")."""

    kind: str = "box"
    half: np.ndarray = field(default_factory=lambda: np.ones(3))  # (3,) half extents along object x, y, z

    def intersect(self, origin, d, dd, time):
        c, rot = self.at(time)
        o = rot.T @ (origin - c)  # (3,) origin in box coordinates
        if np.all(np.abs(o) < self.half):
            return np.full(d.shape[1], np.inf)
        dl = _apply(rot.T, d)  # (3, N) directions in box coordinates
        with np.errstate(divide="ignore", invalid="ignore"):
            inv = 1.0 / dl  # (3, N) +-inf for rays parallel to a slab
            t1 = (-self.half - o)[:, None] * inv  # (3, N)
            t2 = (self.half - o)[:, None] * inv  # (3, N)
        # fmin/fmax skip the NaN of 0 * inf (origin exactly on a slab plane, ray parallel to it).
        lo, hi = np.fmin(t1, t2), np.fmax(t1, t2)  # (3, N) entry and exit of each slab
        near = np.maximum(np.maximum(lo[0], lo[1]), lo[2])  # (N,) entry into the last slab
        far = np.minimum(np.minimum(hi[0], hi[1]), hi[2])  # (N,) exit from the first slab
        return np.where((near <= far) & (near > _EPS), near, np.inf)

    def surface(self, p, time):
        c, rot = self.at(time)
        local = _apply(rot.T, p - c[:, None])  # (3, M)
        axis = np.argmax(np.abs(local) / self.half[:, None], axis=0)  # (M,) the face the point lies on
        columns = np.arange(p.shape[1])
        normal = np.zeros_like(local)  # (3, M)
        normal[axis, columns] = np.sign(local[axis, columns])
        return _apply(rot, normal), local

    def hull(self, time):
        c, rot = self.at(time)
        return c + (_CORNERS * self.half) @ rot.T

    def clearance(self, points, times):
        if self.motion is not None:  # bounding sphere: enough to keep the camera out
            centres = self.center + self.motion.offset(times)  # (K, 3)
            return float((np.linalg.norm(points - centres, axis=1) - np.linalg.norm(self.half)).min())
        q = np.abs((points - self.center) @ self.rotation) - self.half  # (K, 3) per-axis excess
        outside = np.linalg.norm(np.maximum(q, 0.0), axis=1)
        inside = np.minimum(q.max(axis=1), 0.0)
        return float((outside + inside).min())


@dataclass(frozen=True, eq=False, kw_only=True)
class Pole(Primitive):
    """A vertical cylinder standing on the ground: ``center`` is the base, a capped top at ``height``."""

    kind: str = "pole"
    radius: float = 0.08
    height: float = 4.0

    def intersect(self, origin, d, dd, time):
        c, _ = self.at(time)
        ox, oy = origin[0] - c[0], origin[1] - c[1]
        n = d.shape[1]
        t = np.full(n, np.inf)
        c0 = ox * ox + oy * oy - self.radius ** 2
        if c0 > 0:  # camera outside the infinite cylinder: the side can be hit
            a = d[0] * d[0] + d[1] * d[1]  # (N,)
            b = ox * d[0] + oy * d[1]  # (N,)
            with np.errstate(invalid="ignore", divide="ignore"):
                side = c0 / (np.sqrt(b * b - a * c0) - b)  # (N,) near root, NaN on a miss
            z = origin[2] - c[2] + side * d[2]  # (N,) height of the hit above the base
            t = np.where((side > _EPS) & (z >= 0) & (z <= self.height), side, np.inf)
        if origin[2] - c[2] > self.height:  # the top is visible only from above it
            with np.errstate(divide="ignore", invalid="ignore"):
                tc = (c[2] + self.height - origin[2]) / d[2]  # (N,)
                x, y = ox + tc * d[0], oy + tc * d[1]
            cap = (tc > _EPS) & (x * x + y * y <= self.radius ** 2)
            t = np.where(cap, np.fmin(t, tc), t)
        return t

    def surface(self, p, time):
        c, rot = self.at(time)
        rel = p - c[:, None]  # (3, M)
        normal = np.zeros_like(rel)
        normal[:2] = rel[:2] / self.radius
        top = rel[2] >= self.height * (1 - 1e-9)  # side points sit strictly below the rim but for rounding
        normal[:, top] = np.array([[0.0], [0.0], [1.0]])
        return normal, _apply(rot.T, rel)

    def hull(self, time):
        c, _ = self.at(time)
        half = np.array([self.radius, self.radius, self.height / 2])
        return c + half * (_CORNERS + [0.0, 0.0, 1.0])  # the bounding prism, base at the centre

    def clearance(self, points, times):
        rel = points - self.center  # (K, 3)
        radial = np.maximum(np.hypot(rel[:, 0], rel[:, 1]) - self.radius, 0.0)
        above = np.maximum(rel[:, 2] - self.height, 0.0)
        return float(np.hypot(radial, above).min())


# -------------------------------------------------------------------------------- camera
def _wave(params: np.ndarray, t: float | np.ndarray) -> float | np.ndarray:
    """(amplitude, rate rad/s, phase) -> amplitude * sin(rate t + phase)."""
    return params[0] * np.sin(params[1] * t + params[2])


@dataclass(frozen=True, eq=False, kw_only=True)
class CameraPath:
    """A smooth camera trajectory: a circular arc at constant speed plus low-frequency sway and bob,
    looking along the arc's heading plus a slow look-around; pitch and roll oscillate gently.

    All angles in radians; every ``*_wave`` is (amplitude, rate rad/s, phase).
    """

    start: np.ndarray  # (3,) position at t = 0
    heading: float  # yaw at t = 0; 0 looks along +x, positive turns towards +y
    speed: float  # m/s along the arc
    turn: float  # rad/s: the arc's curvature times the speed
    look_offset: float = 0.0  # constant yaw offset from the direction of travel (strafing)
    look_wave: np.ndarray = field(default_factory=lambda: np.zeros(3))
    pitch: float = 0.0  # mean pitch, positive looks up
    pitch_wave: np.ndarray = field(default_factory=lambda: np.zeros(3))
    roll_wave: np.ndarray = field(default_factory=lambda: np.zeros(3))
    sway_wave: np.ndarray = field(default_factory=lambda: np.zeros(3))  # sideways, metres
    bob_wave: np.ndarray = field(default_factory=lambda: np.zeros(3))  # vertical, metres

    def positions(self, times: np.ndarray) -> np.ndarray:
        """(K,) times -> (K, 3) camera centres."""
        t = np.asarray(times, dtype=np.float64)
        # Arc of turn rate k: chord length s t sinc(k t / 2) at heading psi0 + k t / 2 (exact, and
        # well-defined at k = 0, where np.sinc's removable singularity gives a straight line).
        chord = self.speed * t * np.sinc(self.turn * t / (2 * np.pi))  # (K,)
        mid = self.heading + self.turn * t / 2
        heading = self.heading + self.turn * t
        sway = _wave(self.sway_wave, t) - _wave(self.sway_wave, 0.0)  # starts at zero
        bob = _wave(self.bob_wave, t) - _wave(self.bob_wave, 0.0)
        out = np.empty((len(t), 3))
        out[:, 0] = self.start[0] + chord * np.cos(mid) - sway * np.sin(heading)
        out[:, 1] = self.start[1] + chord * np.sin(mid) + sway * np.cos(heading)
        out[:, 2] = self.start[2] + bob
        return out

    def yaw(self, time: float) -> float:
        return self.heading + self.turn * time + self.look_offset + float(_wave(self.look_wave, time))

    def pose(self, time: float) -> np.ndarray:
        """(4, 4) camera-to-world at ``time``: columns 0-2 are the camera's right, down and forward
        axes in world coordinates (OpenCV), column 3 its centre."""
        pose = np.eye(4)
        pose[:3, :3] = look_rotation(self.yaw(time), self.pitch + float(_wave(self.pitch_wave, time)),
                                     float(_wave(self.roll_wave, time)))
        pose[:3, 3] = self.positions(np.array([time]))[0]
        return pose


def look_rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """(3, 3) camera-to-world rotation of an OpenCV camera (x right, y down, z forward) in the z-up
    world: ``yaw`` from +x towards +y, ``pitch`` up, ``roll`` turns the camera's x axis towards its
    y axis (clockwise looking along the optical axis; the image content turns counter-clockwise)."""
    cy, sy, cp, sp = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch)
    forward = np.array([cp * cy, cp * sy, sp])
    right0 = np.array([sy, -cy, 0.0])  # horizontal: a level camera has no roll
    down0 = np.cross(forward, right0)  # completes a right-handed frame (right x down = forward)
    cr, sr = np.cos(roll), np.sin(roll)
    right = cr * right0 + sr * down0
    down = -sr * right0 + cr * down0
    return np.stack([right, down, forward], axis=1)


# --------------------------------------------------------------------------------- scene
@dataclass(frozen=True, eq=False, kw_only=True)
class Scene:
    """Everything a frame needs besides the camera pose. ``light`` points towards the sun."""

    primitives: tuple[Primitive, ...]
    light: np.ndarray = field(default_factory=lambda: np.array([0.3, 0.2, 0.93]) / np.linalg.norm([0.3, 0.2, 0.93]))
    ambient: float = 0.4  # fraction of the light every surface gets regardless of its orientation
    sky: Sky = field(default_factory=Sky)
    camera: Optional[CameraPath] = None  # set by build_scene; hand-made scenes pass poses directly


def _color(rng: np.random.Generator, hue: float, saturation: tuple[float, float], value: tuple[float, float]) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(hue % 1.0, rng.uniform(*saturation), rng.uniform(*value)))


def _random_texture(rng: np.random.Generator, config: SynthConfig, scale: tuple[float, float]) -> Texture:
    kind = str(rng.choice(config.textures))
    hue = rng.uniform()
    dark = _color(rng, hue, (0.1, 0.8), (0.12, 0.5))
    light = _color(rng, hue + rng.uniform(-0.15, 0.15), (0.05, 0.7), (0.6, 1.0))
    if rng.uniform() < 0.5:  # dark patterns on light ground as often as the reverse
        dark, light = light, dark
    others = [_color(rng, rng.uniform(), (0.1, 0.9), (0.2, 0.95)) for _ in range(2)]
    direction = rng.normal(size=3)
    feature = float(np.exp(rng.uniform(np.log(scale[0]), np.log(scale[1]))))
    if kind == "field":  # image-like fields vary slowly
        feature *= 3.0
    return Texture(kind=kind, colors=np.stack([dark, light, *others]), scale=feature,
                   direction=direction / np.linalg.norm(direction), key=int(rng.integers(1 << 62)))


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    """Uniform random rotation from a normalised Gaussian quaternion."""
    w, x, y, z = _unit(rng.normal(size=4))
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                     [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                     [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _camera_path(rng: np.random.Generator, config: SynthConfig) -> CameraPath:
    deg = np.pi / 180

    def wave(amplitude: float, rates: tuple[float, float] = (0.3, 1.5)) -> np.ndarray:
        return np.array([rng.uniform(0, amplitude), rng.uniform(*rates), rng.uniform(0, 2 * np.pi)])

    return CameraPath(
        start=np.array([0.0, 0.0, rng.uniform(*config.eye_height)]), heading=rng.uniform(0, 2 * np.pi),
        speed=rng.uniform(*config.speed), turn=rng.uniform(-1, 1) * config.turn_deg * deg,
        look_offset=rng.uniform(-25, 25) * deg, look_wave=wave(15 * deg), pitch=rng.uniform(-15, 3) * deg,
        pitch_wave=wave(4 * deg), roll_wave=wave(3 * deg), sway_wave=wave(0.4), bob_wave=wave(0.1, (1.0, 3.0)))


def _place(rng: np.random.Generator, config: SynthConfig, camera: CameraPath, times: np.ndarray,
           near: float = 0.0) -> np.ndarray:
    """A ground point in view at some time of the clip, at a log-uniform distance (near objects
    are as frequent per octave of distance as far ones, as in real scenes), at least ``near``."""
    tau = float(rng.choice(times))
    eye = camera.positions(np.array([tau]))[0]
    half_fov = np.radians(config.fov_deg) / 2 + np.radians(15)
    azimuth = camera.yaw(tau) + rng.uniform(-1, 1) * half_fov
    low = min(max(config.distance[0], near), config.distance[1])
    r = float(np.exp(rng.uniform(np.log(low), np.log(config.distance[1]))))
    return np.array([eye[0] + r * np.cos(azimuth), eye[1] + r * np.sin(azimuth), 0.0])


def _random_object(rng: np.random.Generator, config: SynthConfig, kind: str, base: np.ndarray,
                   camera: CameraPath) -> Primitive:
    small = (0.1, 0.6)  # texture feature sizes in metres
    if kind == "box":
        half = rng.uniform(0.2, 1.2, size=3)
        if rng.uniform() < 0.3:  # tumbled and floating: oriented boxes beyond yaw
            lift = np.linalg.norm(half) + rng.uniform(0, 1.5)
            return Box(center=base + [0, 0, lift], rotation=_random_rotation(rng), half=half,
                       texture=_random_texture(rng, config, small))
        return Box(center=base + [0, 0, half[2]], rotation=_yaw(rng.uniform(0, 2 * np.pi)),
                   half=half, texture=_random_texture(rng, config, small))
    if kind == "sphere":
        radius = rng.uniform(0.3, 1.5)
        lift = radius + (rng.uniform(0.2, 2.0) if rng.uniform() < 0.4 else 0.0)
        return Sphere(center=base + [0, 0, lift], radius=radius, rotation=_random_rotation(rng),
                      texture=_random_texture(rng, config, small))
    if kind == "pole":
        return Pole(center=base, radius=rng.uniform(0.03, 0.12), height=rng.uniform(2.0, 6.0),
                    rotation=_yaw(rng.uniform(0, 2 * np.pi)),
                    texture=_random_texture(rng, config, (0.05, 0.3)))
    if kind == "wall":
        length, height = rng.uniform(3.0, 16.0), rng.uniform(1.5, 5.0)
        # Half the walls are aligned with the initial heading's axes (corridors, facades), half not.
        yaw = camera.heading + (rng.integers(4) * np.pi / 2 if rng.uniform() < 0.5 else rng.uniform(0, 2 * np.pi))
        return Box(kind="wall", center=base + [0, 0, height / 2], half=np.array([length / 2, 0.1, height / 2]),
                   rotation=_yaw(yaw), texture=_random_texture(rng, config, (0.2, 1.0)))
    # mover: its shape comes from the allowed static kinds, so "no spheres" also means no moving ones
    shapes = [s for s in ("box", "sphere") if s in config.kinds]
    shape = shapes[int(rng.integers(len(shapes)))]
    direction = rng.uniform(0, 2 * np.pi)
    speed = rng.uniform(*config.mover_speed)
    velocity = speed * np.array([np.cos(direction), np.sin(direction), 0.0])
    if shape == "sphere":
        radius = rng.uniform(0.25, 0.8)
        return Sphere(kind="sphere", center=base + [0, 0, radius], radius=radius, rotation=_random_rotation(rng),
                      motion=Motion(velocity=velocity, roll_radius=radius), texture=_random_texture(rng, config, small))
    half = rng.uniform(0.2, 0.7, size=3)
    bob = rng.uniform(0, 0.3)
    return Box(kind="box", center=base + [0, 0, half[2] + bob + rng.uniform(0, 1.0)], half=half,
               rotation=_yaw(rng.uniform(0, 2 * np.pi)),
               motion=Motion(velocity=velocity, spin=rng.uniform(-1.5, 1.5), bob=bob, bob_rate=rng.uniform(1.0, 3.0)),
               texture=_random_texture(rng, config, small))


def _yaw(angle: float) -> np.ndarray:
    """(3, 3) rotation about the world's vertical (z) axis."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


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
    weights = np.array([_KIND_WEIGHTS[k] for k in kinds])
    count = int(rng.integers(config.objects[0], config.objects[1] + 1))
    for _ in range(count):
        kind = kinds[int(rng.choice(len(kinds), p=weights / weights.sum()))]
        for _attempt in range(20):  # resample where the camera would pass through the object
            # Walls start farther out: a long wall close by would fill most frames of the clip.
            base = _place(rng, config, camera, dense, near=6.0 if kind == "wall" else 0.0)
            candidate = _random_object(rng, config, kind, base, camera)
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


# ------------------------------------------------------------------------------- render
@dataclass
class SynthFrame:
    rgb: np.ndarray  # (H, W, 3) uint8
    depth: np.ndarray  # (H, W) float32 z-depth in metres, +inf = sky
    intrinsics: tuple[float, float, float, float]  # fx fy cx cy (pixel-index coordinates)
    pose: np.ndarray  # (4, 4) float64 camera-to-world (OpenCV: x right, y down, z forward)


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
                      intrinsics=rays.intrinsics, pose=pose.copy())


def render_clip(seed: int, config: SynthConfig = SynthConfig()) -> Iterator[SynthFrame]:
    """The frames of clip ``seed``, one at a time (a clip is never held in memory whole)."""
    scene = build_scene(seed, config)
    rays = _Rays(config.height, config.width, camera_intrinsics(config.height, config.width, config.fov_deg))
    for i in range(config.frames):
        time = i / config.fps
        yield _render(scene, rays, scene.camera.pose(time), time)


# ------------------------------------------------------------------------------- dataset
def write_synthetic_dataset(root: str | Path, seeds: Mapping[str, Sequence[int]], config: SynthConfig = SynthConfig(),
                            name: str = "synthetic") -> dict:
    """Render clips into ``<root>/<name>/`` (sequence-folder format): one sequence ``f"{seed:06d}"``
    per seed, ``seeds`` mapping split names to seeds (a seed in several splits is rendered once).
    Depth is stored as metric z-depth in metres with +inf for sky, with intrinsics and poses.
    Returns the report of :func:`flashdepth.data.convert.common.write_dataset`."""
    for split, values in seeds.items():
        for seed in values:
            _check(_is_int(seed) and seed >= 0,
                   f"seed {seed!r} in split {split!r} must be a non-negative integer")
    spec = DepthSpec(kind="depth", unit="m", metric=True)
    splits = {split: [f"{int(s):06d}" for s in values] for split, values in seeds.items()}
    scenes = [f"{seed:06d}" for seed in dict.fromkeys(int(s) for values in seeds.values() for s in values)]

    def frames(sequence: str) -> Iterator[SourceFrame]:
        for i, frame in enumerate(render_clip(int(sequence), config)):
            yield SourceFrame(frame.rgb, frame.depth, f"{sequence}/{i:06d}", frame.intrinsics, frame.pose)

    return write_dataset(Path(root), name, scenes, frames, spec=spec, source="flashdepth.data.synthetic",
                         rule="ray-cast z-depth in metres; +inf = sky", splits=splits, fps=config.fps,
                         license="MIT (generated by flashdepth)",
                         citation="procedural scenes rendered by flashdepth.data.synthetic",
                         scene_provenance=lambda sequence: {"seed": int(sequence), "config": config.to_dict()})


__all__ = ["KINDS", "TEXTURES", "Box", "CameraPath", "Ground", "Motion", "Pole", "Primitive", "Scene", "Sky", "Sphere",
           "SynthConfig", "SynthFrame", "Texture", "build_scene", "camera_intrinsics", "look_rotation", "render_clip",
           "render_frame", "write_synthetic_dataset"]

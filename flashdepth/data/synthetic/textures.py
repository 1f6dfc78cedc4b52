"""Solid textures and the sky: band-limited procedural patterns evaluated at 3D points."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .maths import _check, _dot, _lerp


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


def _grain(t: "Texture", q: np.ndarray, fp: np.ndarray) -> np.ndarray:
    """A +-15 % brightness modulation at twice the feature frequency: flat bands of stripes and
    checkers would otherwise carry no motion cue inside them."""
    return 0.85 + 0.3 * _fractal(q * 2.0, fp * 2.0, t.key + 3, 1)  # (M,)


def _noise(t: "Texture", q: np.ndarray, fp: np.ndarray) -> np.ndarray:
    return _lerp(t.colors[0], t.colors[1], _contrast(_fractal(q, fp, t.key, 2), 1.8))


def _fbm(t: "Texture", q: np.ndarray, fp: np.ndarray) -> np.ndarray:
    return _lerp(t.colors[0], t.colors[1], _contrast(_fractal(q, fp, t.key, 4), 2.2))


def _stripes(t: "Texture", q: np.ndarray, fp: np.ndarray) -> np.ndarray:
    phase = _dot(t.direction, q)  # (M,) stripe coordinate
    s = _smoothstep(-0.35, 0.35, np.sin(2 * np.pi * phase))  # (M,) soft-edged bands
    s = 0.5 + _fade(fp) * (s - 0.5)
    return _lerp(t.colors[0], t.colors[1], s) * _grain(t, q, fp)


def _checker(t: "Texture", q: np.ndarray, fp: np.ndarray) -> np.ndarray:
    parity = (np.floor(q).sum(axis=0) % 2.0)  # (M,) 0/1 per cubic cell
    s = 0.5 + _fade(0.5 * fp) * (parity - 0.5)  # a checker period is two cells
    return _lerp(t.colors[0], t.colors[1], s) * _grain(t, q, fp)


def _field(t: "Texture", q: np.ndarray, fp: np.ndarray) -> np.ndarray:
    # two slow fBm fields blend four colours, plus fine detail so no region is flat
    c = t.colors
    a = _contrast(_fractal(q * 0.35, fp * 0.35, t.key, 2), 2.0)
    b = _contrast(_fractal(q * 0.35 + 17.3, fp * 0.35, t.key + 1, 2), 2.0)
    first, second = _lerp(c[0], c[1], a), _lerp(c[2], c[3], a)  # (3, M) each
    colour = first + (second - first) * b
    return colour * _grain(t, q * 3.0, fp * 3.0)


def _bricks(t: "Texture", q: np.ndarray, fp: np.ndarray) -> np.ndarray:
    """Courses of bricks (colour 0, varied per brick) in mortar (colour 1) on every face: rows one
    unit high, bricks two units long, every other row offset by half a brick."""
    row = np.floor(q[2])  # (M,) course index: courses are horizontal in object coordinates
    along = (q[0] + q[1]) * 0.5 + 0.5 * (row % 2.0)  # (M,) brick coordinate, offset on odd rows
    brick = np.floor(along)  # (M,)
    edge = np.minimum(np.minimum(q[2] - row, row + 1 - q[2]), 2.0 * np.minimum(along - brick, brick + 1 - along))
    mortar = 1.0 - _smoothstep(0.04, 0.09, edge)  # (M,) 1 in the joints
    mortar = mortar * _fade(2.0 * fp)  # joints narrower than a pixel fade into the brick colour
    shade = 0.8 + 0.4 * _value_noise(np.stack([brick, row, np.zeros_like(row)]), t.key)  # (M,) per brick
    colour = t.colors[0][:, None] * shade[None, :] * _grain(t, q, fp)
    return colour + (t.colors[1][:, None] - colour) * mortar[None, :]


def _flat(t: "Texture", q: np.ndarray, fp: np.ndarray) -> np.ndarray:
    """Almost uniform paint (+-5 % slow variation): a surface whose depth can only come from shading,
    outline and context, never from its own texture."""
    n = _fractal(q * 0.25, fp * 0.25, t.key, 2)  # (M,)
    return t.colors[0][:, None] * (0.95 + 0.1 * n)[None, :]


def _bands(t: "Texture", q: np.ndarray, fp: np.ndarray) -> np.ndarray:
    """Horizontal bands of colours 0 and 1 (the reference markers' paint), sharp-edged."""
    s = (np.floor(q[2]) % 2.0)  # (M,)
    s = 0.5 + _fade(0.5 * fp) * (s - 0.5)
    return _lerp(t.colors[0], t.colors[1], s)


@dataclass(frozen=True)
class TextureKind:
    """A row of the texture table: ``pattern(texture, q, footprint)`` gives colours (3, M) at points
    q (3, M) in feature units, footprint (M,) in feature units per pixel."""

    name: str
    pattern: Callable[["Texture", np.ndarray, np.ndarray], np.ndarray]
    description: str
    scale: float = 1.0  # feature size relative to the object's drawn texture scale
    default: bool = True  # in SynthConfig's default textures (later ones are opt-in: old seeds keep their look)
    random: bool = True  # drawn for random objects (False: kept for special objects, e.g. the markers)


TEXTURE_KINDS: dict[str, TextureKind] = {row.name: row for row in (
    TextureKind("noise", _noise, "two-octave value noise"),
    TextureKind("fractal", _fbm, "four-octave fractal noise"),
    TextureKind("stripes", _stripes, "soft stripes in a random direction"),
    TextureKind("checker", _checker, "a solid checkerboard"),
    TextureKind("field", _field, "slow blends of four colours, image-like", scale=3.0),
    TextureKind("bricks", _bricks, "brick courses in mortar", default=False),
    TextureKind("flat", _flat, "almost uniform paint", default=False),
    TextureKind("bands", _bands, "horizontal bands (reference markers only)", default=False, random=False),
)}
TEXTURES = tuple(TEXTURE_KINDS)
DEFAULT_TEXTURES = tuple(name for name, row in TEXTURE_KINDS.items() if row.default)


@dataclass(frozen=True, eq=False, kw_only=True)
class Texture:
    """A solid texture: a colour pattern over 3D points in an object's own coordinates (metres).

    ``kind`` names a row of :data:`TEXTURE_KINDS`; ``scale`` is the feature size in metres.
    """

    kind: str = "fractal"
    colors: np.ndarray = field(default_factory=lambda: np.array(
        [[0.2, 0.2, 0.2], [0.9, 0.9, 0.9], [0.7, 0.3, 0.2], [0.2, 0.4, 0.7]]))  # (4, 3) RGB in [0, 1]
    scale: float = 0.5
    direction: np.ndarray = field(default_factory=lambda: np.array([1.0, 0.0, 0.0]))  # (3,) stripes' normal
    key: int = 0  # noise hash key

    def __post_init__(self) -> None:
        _check(self.kind in TEXTURE_KINDS, f"unknown texture {self.kind!r}; valid textures: {', '.join(TEXTURES)}")

    def albedo(self, p: np.ndarray, footprint: np.ndarray) -> np.ndarray:
        """Colours (3, M) in [0, 1] at points p (3, M) in metres; footprint (M,): metres per pixel."""
        return TEXTURE_KINDS[self.kind].pattern(self, p / self.scale, footprint / self.scale)


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


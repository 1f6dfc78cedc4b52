"""The object kinds a scene is made of: one table, :data:`OBJECT_KINDS`, whose rows say how often a
kind appears, how close it may be placed and how a random instance is made. Textures and colours
are drawn here too."""

from __future__ import annotations

import colorsys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np

from .camera import CameraPath
from .shapes import Box, Motion, Pole, Primitive, Sphere
from .textures import TEXTURE_KINDS, Texture

if TYPE_CHECKING:  # only for annotations: the config's defaults read this module's tables
    from .config import SynthConfig

def _color(rng: np.random.Generator, hue: float, saturation: tuple[float, float], value: tuple[float, float]) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(hue % 1.0, rng.uniform(*saturation), rng.uniform(*value)))


def _random_texture(rng: np.random.Generator, config: SynthConfig, scale: tuple[float, float]) -> Texture:
    kind = str(rng.choice([t for t in config.textures if TEXTURE_KINDS[t].random]))
    hue = rng.uniform()
    dark = _color(rng, hue, (0.1, 0.8), (0.12, 0.5))
    light = _color(rng, hue + rng.uniform(-0.15, 0.15), (0.05, 0.7), (0.6, 1.0))
    if rng.uniform() < 0.5:  # dark patterns on light ground as often as the reverse
        dark, light = light, dark
    others = [_color(rng, rng.uniform(), (0.1, 0.9), (0.2, 0.95)) for _ in range(2)]
    direction = rng.normal(size=3)
    feature = float(np.exp(rng.uniform(np.log(scale[0]), np.log(scale[1]))))
    feature *= TEXTURE_KINDS[kind].scale  # e.g. image-like fields vary slowly
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
        look_offset=rng.uniform(-25, 25) * deg, look_wave=wave(15 * deg), pitch=rng.uniform(*config.pitch_deg) * deg,
        pitch_wave=wave(4 * deg), roll_wave=wave(config.roll_deg * deg), sway_wave=wave(0.4), bob_wave=wave(0.1, (1.0, 3.0)))


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


@dataclass(frozen=True)
class ObjectKind:
    """A row of the kinds table. ``make(rng, config, base, camera)`` returns one random instance
    standing at the ground point ``base``; ``near`` is the closest placement distance in metres."""

    name: str
    weight: float  # relative frequency among the kinds a config allows
    make: Callable[[np.random.Generator, "SynthConfig", np.ndarray, CameraPath], Primitive]
    description: str
    near: float = 0.0
    default: bool = True  # in SynthConfig's default kinds (later kinds are opt-in, so old seeds keep their scenes)


_SMALL = (0.1, 0.6)  # texture feature sizes of objects, metres


def _box(rng, config, base, camera) -> Primitive:
    half = rng.uniform(0.2, 1.2, size=3)
    if rng.uniform() < 0.3:  # tumbled and floating: oriented boxes beyond yaw
        lift = np.linalg.norm(half) + rng.uniform(0, 1.5)
        return Box(center=base + [0, 0, lift], rotation=_random_rotation(rng), half=half,
                   texture=_random_texture(rng, config, _SMALL))
    return Box(center=base + [0, 0, half[2]], rotation=_yaw(rng.uniform(0, 2 * np.pi)),
               half=half, texture=_random_texture(rng, config, _SMALL))


def _sphere(rng, config, base, camera) -> Primitive:
    radius = rng.uniform(0.3, 1.5)
    lift = radius + (rng.uniform(0.2, 2.0) if rng.uniform() < 0.4 else 0.0)
    return Sphere(center=base + [0, 0, lift], radius=radius, rotation=_random_rotation(rng),
                  texture=_random_texture(rng, config, _SMALL))


def _pole(rng, config, base, camera) -> Primitive:
    return Pole(center=base, radius=rng.uniform(0.03, 0.12), height=rng.uniform(2.0, 6.0),
                rotation=_yaw(rng.uniform(0, 2 * np.pi)), texture=_random_texture(rng, config, (0.05, 0.3)))


def _wall(rng, config, base, camera) -> Primitive:
    length, height = rng.uniform(3.0, 16.0), rng.uniform(1.5, 5.0)
    # Half the walls are aligned with the initial heading's axes (corridors, facades), half not.
    yaw = camera.heading + (rng.integers(4) * np.pi / 2 if rng.uniform() < 0.5 else rng.uniform(0, 2 * np.pi))
    return Box(kind="wall", center=base + [0, 0, height / 2], half=np.array([length / 2, 0.1, height / 2]),
               rotation=_yaw(yaw), texture=_random_texture(rng, config, (0.2, 1.0)))


def _mover(rng, config, base, camera) -> Primitive:
    # Its shape comes from the allowed static kinds, so "no spheres" also means no moving ones.
    shapes = [s for s in ("box", "sphere") if s in config.kinds]
    shape = shapes[int(rng.integers(len(shapes)))]
    direction = rng.uniform(0, 2 * np.pi)
    speed = rng.uniform(*config.mover_speed)
    velocity = speed * np.array([np.cos(direction), np.sin(direction), 0.0])
    if shape == "sphere":
        radius = rng.uniform(0.25, 0.8)
        return Sphere(kind="sphere", center=base + [0, 0, radius], radius=radius, rotation=_random_rotation(rng),
                      motion=Motion(velocity=velocity, roll_radius=radius), texture=_random_texture(rng, config, _SMALL))
    half = rng.uniform(0.2, 0.7, size=3)
    bob = rng.uniform(0, 0.3)
    return Box(kind="box", center=base + [0, 0, half[2] + bob + rng.uniform(0, 1.0)], half=half,
               rotation=_yaw(rng.uniform(0, 2 * np.pi)),
               motion=Motion(velocity=velocity, spin=rng.uniform(-1.5, 1.5), bob=bob, bob_rate=rng.uniform(1.0, 3.0)),
               texture=_random_texture(rng, config, _SMALL))


def _backdrop(rng, config, base, camera) -> Primitive:
    """A long, tall wall square to the camera's initial view: the back of a yard, a facade across a
    street. Scenes made of a few boxes before such a wall are common in the world and rare among
    randomly turned walls."""
    length, height = rng.uniform(12.0, 40.0), rng.uniform(2.5, 12.0)
    yaw = camera.heading + np.pi / 2 + rng.normal(0.0, 0.15)  # the wall's long axis across the view
    return Box(kind="wall", center=base + [0, 0, height / 2], half=np.array([length / 2, 0.15, height / 2]),
               rotation=_yaw(yaw), texture=_random_texture(rng, config, (0.15, 1.5)))


def _slab(rng, config, base, camera) -> Primitive:
    """A wide flat box lying on the ground (a platform, a low step, a kerb): its top face is a second
    ground level, which a model that reads depth from the image row alone gets wrong."""
    half = np.array([rng.uniform(0.8, 4.0), rng.uniform(0.8, 4.0), rng.uniform(0.05, 0.4)])
    return Box(center=base + [0, 0, half[2]], rotation=_yaw(rng.uniform(0, 2 * np.pi)), half=half,
               texture=_random_texture(rng, config, (0.1, 1.0)))


def _stack(rng, config, base, camera) -> Primitive:
    """A tall upright box (a pillar, a crate stack, a building corner at a distance)."""
    side = rng.uniform(0.3, 1.5)
    half = np.array([side, side * rng.uniform(0.5, 1.5), rng.uniform(1.5, 5.0)])
    return Box(center=base + [0, 0, half[2]], rotation=_yaw(rng.uniform(0, 2 * np.pi)), half=half,
               texture=_random_texture(rng, config, (0.1, 0.8)))


OBJECT_KINDS: dict[str, ObjectKind] = {row.name: row for row in (
    ObjectKind("box", 3.0, _box, "boxes of 0.4-2.4 m, standing or tumbled and floating"),
    ObjectKind("sphere", 2.0, _sphere, "balls of 0.3-1.5 m radius, resting or floating"),
    ObjectKind("pole", 2.0, _pole, "thin vertical cylinders of 2-6 m"),
    # Walls start farther out: a long wall close by would fill most frames of the clip.
    ObjectKind("wall", 1.0, _wall, "thin walls of 3-16 m, aligned with the path or not", near=6.0),
    ObjectKind("mover", 1.5, _mover, "boxes and balls moving across the scene (their shapes follow box / sphere)"),
    ObjectKind("backdrop", 0.4, _backdrop, "a long tall wall square to the view, 8 m and farther", near=8.0,
               default=False),
    ObjectKind("slab", 1.0, _slab, "wide low platforms on the ground", default=False),
    ObjectKind("stack", 1.0, _stack, "tall upright pillars of 3-10 m", default=False),
)}
KINDS = tuple(OBJECT_KINDS)
DEFAULT_KINDS = tuple(name for name, row in OBJECT_KINDS.items() if row.default)


def random_object(rng: np.random.Generator, config: SynthConfig, kind: str, base: np.ndarray,
                  camera: CameraPath) -> Primitive:
    return OBJECT_KINDS[kind].make(rng, config, base, camera)


def _yaw(angle: float) -> np.ndarray:
    """(3, 3) rotation about the world's vertical (z) axis."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


# ------------------------------------------------------------------------------------ markers
MARKER_COLORS = np.array([[0.85, 0.08, 0.06], [0.95, 0.95, 0.93], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])  # red, white


@dataclass(frozen=True)
class MarkerShape:
    """A row of the marker table: a reference object one of whose lengths is known in metres and
    does not follow the world's scale. ``known`` is that length's nominal value as a share of
    ``marker_height``; ``make(size, eye_height, base, rotation, colors)`` builds the marker with
    that length ``size`` scene units long, standing at the ground point ``base``; ``measure`` reads
    the length back from the primitive (what the ideal observer of ``oracle.py`` measures)."""

    name: str
    known: float
    make: Callable[[float, float, np.ndarray, np.ndarray, np.ndarray], Primitive]
    measure: Callable[[Primitive], float]
    description: str


def _pillar(size, eye_height, base, rotation, colors) -> Primitive:
    return Box(kind="marker", center=base + [0, 0, size / 2], rotation=rotation,
               half=np.array([0.18, 0.18, 0.5]) * size, texture=Texture(kind="bands", colors=colors, scale=size / 5.0))


def _tiles(size, eye_height, base, rotation, colors) -> Primitive:
    # A square of paving 3 camera heights across (so it covers the same share of the view at any
    # scale) and 2 % of a camera height thick: only the size of its tiles tells the scale.
    thick = 0.02 * eye_height
    return Box(kind="marker", center=base + [0, 0, thick / 2], rotation=rotation,
               half=np.array([1.5 * eye_height, 1.5 * eye_height, thick / 2]),
               texture=Texture(kind="checker", colors=colors, scale=size))


#: Reference-marker shapes (``SynthConfig.marker_shape``).
MARKER_SHAPES: dict[str, MarkerShape] = {row.name: row for row in (
    MarkerShape("pillar", 1.0, _pillar, lambda p: float(2 * p.half[2]),
                "a pillar marker_height tall in red and white bands: its height is the known length"),
    MarkerShape("tiles", 0.5, _tiles, lambda p: float(p.texture.scale),
                "a square of red-and-white tiles on the ground, each marker_height / 2 across, the square "
                "3 camera heights across: the tiles' size is the known length, a large-area cue"),
)}

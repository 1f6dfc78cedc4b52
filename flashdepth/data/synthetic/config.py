"""What to render: :class:`SynthConfig` and the camera intrinsics it implies."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .maths import _CLEARANCE, _check, _is_int
from .objects import DEFAULT_KINDS, KINDS
from .textures import TEXTURES


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
    kinds: tuple[str, ...] = DEFAULT_KINDS
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


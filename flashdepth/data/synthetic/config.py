"""What to render: :class:`SynthConfig` and the camera intrinsics it implies."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from ...geometry import Intrinsics
from .maths import _CLEARANCE, _check, _is_int
from .objects import DEFAULT_KINDS, KINDS, MARKER_SHAPES
from .textures import DEFAULT_TEXTURES, TEXTURE_KINDS, TEXTURES


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
    textures: tuple[str, ...] = DEFAULT_TEXTURES
    objects: tuple[int, int] = (14, 22)  # objects besides the ground per scene
    distance: tuple[float, float] = (3.0, 35.0)  # metres from the camera path where objects are placed
    speed: tuple[float, float] = (0.3, 2.5)  # camera speed, m/s
    turn_deg: float = 20.0  # largest |turn rate| of the camera path, degrees/s
    eye_height: tuple[float, float] = (0.8, 2.5)  # camera height above the ground, metres
    mover_speed: tuple[float, float] = (0.5, 2.5)  # speed of moving objects, m/s
    # Variety of the world (defaults: the original family, bit for bit). Per-clip draws of these
    # come from a second random stream, so turning one on never changes the rest of a scene.
    fov_jitter_deg: float = 0.0  # the clip's field of view is uniform in fov_deg +- this
    pitch_deg: tuple[float, float] = (-15.0, 3.0)  # mean camera pitch per clip, degrees (up positive)
    roll_deg: float = 3.0  # amplitude of the camera's slow roll, degrees
    roll_offset_deg: float = 0.0  # a constant roll per clip, uniform in +- this, degrees
    ambient: tuple[float, float] = (0.3, 0.5)  # share of light every surface gets whatever its orientation
    sun_elevation_deg: tuple[float, float] = (25.0, 70.0)
    texture_scale: tuple[float, float] = (1.0, 1.0)  # per-clip factor on texture feature sizes (log-uniform)
    photometric: float = 0.0  # strength of the per-clip camera response: exposure, gamma, white balance, noise
    # Scale ambiguity (docs/synthetic.md#scale): the whole world -- geometry, camera path and speeds,
    # texture sizes -- is scaled by a per-clip factor (log-uniform), which leaves every image unchanged
    # and multiplies every depth; only the reference markers keep their absolute size.
    world_scale: tuple[float, float] = (1.0, 1.0)
    markers: tuple[int, int] = (0, 0)  # reference markers per clip: red-and-white banded pillars
    marker_height: float = 1.6  # metres: the markers' typical height (a known size, like a person's)
    marker_shape: str = "pillar"  # a row of MARKER_SHAPES: "pillar" (banded, marker_height tall), "tiles" (paving)
    marker_spread: float = 0.1  # log-normal spread of the markers' heights (0.1 = about +-10 %)
    marker_distance: tuple[float, float] = (1.5, 10.0)  # placement distance in marker heights (log-uniform)
    marker_window: float = 1.0  # markers are placed in view at an instant of this first share of the clip
    # Where in the view a marker is placed, as a share of the half field of view from the view's
    # centre, positive towards the side the camera pans to (default: anywhere in view).
    marker_azimuth: tuple[float, float] = (-1.0, 1.0)
    # False: a marker's distance is drawn in its own heights (its image size says nothing by
    # itself); True: in the camera's height, so that its image size is a direct reading of the scale.
    marker_near: bool = False
    # The memory ablation (docs/tiny-synthetic.md#memory): the markers' paint names the world's scale
    # by its colour (blue at the smallest scale, red at the largest), a cue read from colour alone
    # rather than from size and perspective. Not a depth cue of the real world: a probe of the state.
    marker_code: bool = False
    # A steady pan of the view, |rate| uniform in this range (deg/s) with a random sign per clip:
    # what was in view at the start leaves it (the marker-memory family). (0, 0) = no pan.
    pan_deg: tuple[float, float] = (0.0, 0.0)

    def __post_init__(self) -> None:
        # Lists are accepted for convenience but stored as tuples, so configs stay hashable.
        for name in ("kinds", "textures", "objects", "distance", "speed", "eye_height", "mover_speed", "pitch_deg",
                     "ambient", "sun_elevation_deg", "texture_scale", "world_scale", "markers", "marker_distance",
                     "marker_azimuth", "pan_deg"):
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
        _check(any(TEXTURE_KINDS[t].random for t in self.textures),
               f"textures={self.textures} must name at least one of {', '.join(t for t in TEXTURES if TEXTURE_KINDS[t].random)}")
        _check("mover" not in self.kinds or "box" in self.kinds or "sphere" in self.kinds,
               f"kinds={self.kinds}: 'mover' takes its shape from 'box' or 'sphere', so it needs one of them")
        _range(self, "objects", 0)
        _check(self.objects[1] == 0 or self.kinds, f"objects={self.objects} needs at least one kind in kinds")
        _range(self, "distance", 1e-3)
        _range(self, "speed", 0.0)
        _range(self, "eye_height", _CLEARANCE)
        _range(self, "mover_speed", 0.0)
        _check(self.turn_deg >= 0, f"turn_deg={self.turn_deg} must be >= 0")
        _check(0 <= self.fov_jitter_deg and 1.0 <= self.fov_deg - self.fov_jitter_deg
               and self.fov_deg + self.fov_jitter_deg <= 170.0,
               f"fov_deg={self.fov_deg} +- fov_jitter_deg={self.fov_jitter_deg} must stay in [1, 170]")
        _range(self, "pitch_deg", -80.0)
        _check(self.pitch_deg[1] <= 80.0, f"pitch_deg={self.pitch_deg} must lie in [-80, 80]")
        _check(0 <= self.roll_deg <= 45 and 0 <= self.roll_offset_deg <= 45,
               f"roll_deg={self.roll_deg}, roll_offset_deg={self.roll_offset_deg} must lie in [0, 45]")
        _range(self, "ambient", 0.0)
        _check(self.ambient[1] <= 1.0, f"ambient={self.ambient} must lie in [0, 1]")
        _range(self, "sun_elevation_deg", 0.0)
        _check(self.sun_elevation_deg[1] <= 90.0, f"sun_elevation_deg={self.sun_elevation_deg} must lie in [0, 90]")
        _range(self, "texture_scale", 1e-3)
        _check(0 <= self.photometric <= 1, f"photometric={self.photometric} must lie in [0, 1]")
        _range(self, "world_scale", 1e-3)
        _check(all(_is_int(v) for v in self.markers), f"markers={self.markers} must be two integers")
        _range(self, "markers", 0)
        _check(self.marker_shape in MARKER_SHAPES,
               f"unknown marker_shape {self.marker_shape!r}; valid shapes: {', '.join(MARKER_SHAPES)}")
        _check(self.marker_height > 0 and 0 <= self.marker_spread <= 1,
               f"marker_height={self.marker_height} must be > 0 and marker_spread={self.marker_spread} in [0, 1]")
        _range(self, "marker_distance", 0.5)
        _check(0 < self.marker_window <= 1, f"marker_window={self.marker_window} must lie in (0, 1]")
        _range(self, "marker_azimuth", -1.0)
        _check(self.marker_azimuth[1] <= 1.0, f"marker_azimuth={self.marker_azimuth} must lie in [-1, 1]")
        _check(isinstance(self.marker_near, bool), f"marker_near={self.marker_near!r} must be true or false")
        _check(isinstance(self.marker_code, bool), f"marker_code={self.marker_code!r} must be true or false")
        _range(self, "pan_deg", 0.0)
        _check(self.pan_deg[1] <= 360.0, f"pan_deg={self.pan_deg} must lie in [0, 360] (deg/s)")

    def to_dict(self) -> dict:
        return asdict(self)



def _range(config: SynthConfig, name: str, minimum: float) -> None:
    value = getattr(config, name)
    _check(len(value) == 2 and minimum <= value[0] <= value[1],
           f"{name}={value} must be (low, high) with {minimum} <= low <= high")


def camera_intrinsics(height: int, width: int, fov_deg: float) -> tuple[float, float, float, float]:
    """(fx, fy, cx, cy) of a centred pinhole with square pixels and horizontal field of view ``fov_deg``.

    The field of view spans the outer pixel edges; in pixel-index coordinates those lie at -0.5
    and W - 0.5, hence the principal point (W - 1) / 2 (the package's one pinhole convention,
    :meth:`flashdepth.geometry.Intrinsics.from_fov`).
    """
    k = Intrinsics.from_fov(width, height, fov_deg)
    return k.fx, k.fy, k.cx, k.cy



_VARIED = dict(kinds=KINDS, textures=tuple(t for t in TEXTURES if TEXTURE_KINDS[t].random), objects=(10, 24),
               eye_height=(0.5, 4.0), fov_jitter_deg=20.0, pitch_deg=(-25.0, 8.0), roll_deg=4.0, roll_offset_deg=6.0,
               ambient=(0.15, 0.6), sun_elevation_deg=(10.0, 80.0), texture_scale=(0.4, 2.5), photometric=1.0,
               markers=(0, 2))

#: Named families of scenes (``flashdepth synth --preset``). Rows are whole configs: a preset is a
#: starting point that other options (size, frames, kinds, textures) then override.
PRESETS: dict[str, SynthConfig] = {
    "classic": SynthConfig(),
    # Many kinds of objects, textures, cameras and lights: depth cues, not one layout (docs/synthetic.md#varied).
    "varied": SynthConfig(**_VARIED),
    # The varied world at a random scale per clip, with reference markers seen early in the clip and
    # then gone: one frame gives a noisy cue to the absolute scale, the sequence a better one
    # (docs/synthetic.md#scale; the oracle is flashdepth.data.synthetic.oracle).
    "scale-ambiguous": SynthConfig(**{**_VARIED, "world_scale": (1 / 3, 3.0), "markers": (1, 3), "turn_deg": 45.0,
                                      "marker_distance": (1.5, 6.0), "marker_window": 0.4}),
    # The toy memory task (docs/tiny-synthetic.md#memory): the scale-ambiguous world with the cue
    # made easy and then taken away. The camera stands at a fixed height (in scene units) and two
    # markers stand 3.8-4.2 camera heights away at the first instant, wholly in view, on the side
    # the camera then pans to at 100-120 deg/s, so they leave the view after about half the 12
    # frames; with a fixed field of view their image size is a direct (noisy) reading of the scale.
    "scale-memory": SynthConfig(**{**_VARIED, "frames": 12, "fov_jitter_deg": 0.0, "world_scale": (0.5, 2.0),
                                   "markers": (2, 2), "marker_distance": (3.8, 4.2), "marker_near": True,
                                   "marker_window": 0.05, "marker_azimuth": (0.0, 0.6), "pan_deg": (100.0, 120.0),
                                   "turn_deg": 10.0, "speed": (0.3, 1.2), "eye_height": (1.5, 1.5), "objects": (6, 14),
                                   "pitch_deg": (-6.0, 4.0)}),
}
# The memory ablation: the same family with the markers' colour naming the scale and fewer other
# objects (docs/tiny-synthetic.md#memory): does the trained state carry a cue that is easy to read?
PRESETS["scale-memory-coded"] = replace(PRESETS["scale-memory"], marker_code=True, objects=(3, 8))
# The memory task with a large-area cue (docs/tiny-synthetic.md#memory): the pillars replaced by one
# square of red-and-white paving tiles of known size (marker_height / 2 each), 3 camera heights
# across and 3-3.5 camera heights away at the first instant, on the side the camera pans to. Its
# tiles' image size reads the scale, as a tiled floor does; the pan then takes it out of view.
PRESETS["scale-memory-tiles"] = replace(PRESETS["scale-memory"], marker_shape="tiles", markers=(1, 1),
                                        marker_distance=(3.0, 3.5))

"""The scale-memory family (the toy memory task of docs/tiny-synthetic.md#memory): the scale is
shown by near markers in the first frames, which the panning camera then leaves behind; every
other image is unchanged by the world's scale."""

import dataclasses

import numpy as np
import pytest

from flashdepth.data import synthetic as synth
from flashdepth.data.synthetic import SynthConfig, build_scene, render_clip
from flashdepth.data.synthetic.oracle import scale_estimate_errors
from flashdepth.errors import ConfigError

SMALL = dict(height=63, width=112)
SEEDS = range(30000, 30006)  # training seeds of the recipe: the family's property holds on them


def _config(**kwargs) -> SynthConfig:
    return dataclasses.replace(synth.PRESETS["scale-memory"], **{**SMALL, **kwargs})


@pytest.fixture(scope="module")
def oracle_runs():
    return [scale_estimate_errors(seed, _config()) for seed in SEEDS]


def test_markers_are_seen_near_the_start_and_gone_later(oracle_runs):
    config = _config()
    first = []
    for seed in SEEDS:
        scene = build_scene(seed, config)
        markers = [i for i, p in enumerate(scene.primitives) if p.kind == "marker"]
        assert len(markers) == 2
        frame = next(render_clip(seed, config))  # the first frame only
        first.append(max(int((frame.owner == i).sum()) for i in markers))
    # Large at the start (a share of the image; one clip in six may hide them behind a near object) ...
    assert np.mean([a >= 0.01 * config.height * config.width for a in first]) >= 0.8, first
    # ... and none measurable in the last third of any clip (the oracle counts markers in view).
    late = [r["visible"][2 * config.frames // 3:] for r in oracle_runs]
    assert np.max(late) == 0, late


def test_the_view_pans_at_the_drawn_rate_and_markers_stand_on_its_side():
    config = _config()
    half_fov = np.radians(config.fov_deg) / 2
    for seed in SEEDS:
        scene = build_scene(seed, config)
        camera = scene.camera
        assert np.radians(config.pan_deg[0]) - 1e-9 <= abs(camera.pan) <= np.radians(config.pan_deg[1]) + 1e-9
        unpanned = dataclasses.replace(camera, pan=0.0)
        assert camera.yaw(0.7) - unpanned.yaw(0.7) == pytest.approx(camera.pan * 0.7)
        pose = camera.pose(0.0)
        for m in (p for p in scene.primitives if p.kind == "marker"):
            x, _, z = (m.center - pose[:3, 3]) @ pose[:3, :3]  # camera coordinates (x right, z forward)
            assert z > 0  # in front at the first instant
            # Positive pan turns the view towards +y, i.e. to the camera's left (x < 0).
            bearing = np.arctan2(x, z) * -np.sign(camera.pan)
            assert -0.2 <= bearing <= config.marker_azimuth[1] * half_fov + 0.35, (seed, bearing)


def test_the_world_scale_changes_depth_only():
    base = _config(frames=4, markers=(0, 0), photometric=0.0, world_scale=(1.0, 1.0))
    scaled = dataclasses.replace(base, world_scale=(0.4, 0.4))
    for a, b in zip(render_clip(30001, base), render_clip(30001, scaled)):
        np.testing.assert_array_equal(a.rgb, b.rgb)
        finite = np.isfinite(a.depth)
        np.testing.assert_allclose(b.depth[finite], 0.4 * a.depth[finite], rtol=1e-6)


def test_memory_beats_the_frame_once_the_markers_are_gone(oracle_runs):
    """The ideal observer: from the frames so far it keeps the start's estimate; from the current
    frame alone it falls back to the prior once the markers have left."""
    config = _config()
    frame = np.mean([r["frame"] for r in oracle_runs], axis=0)  # (T,)
    sequence = np.mean([r["sequence"] for r in oracle_runs], axis=0)  # (T,)
    visible = np.mean([r["visible"] for r in oracle_runs], axis=0)  # (T,)
    assert visible[0] >= 1.0 and visible[-1] == 0.0
    np.testing.assert_allclose(frame[0], sequence[0])  # the first frame is all there is
    late = slice(2 * config.frames // 3, None)
    # The prior's mean error for a log-uniform scale on [1/2, 2] is log(2) / 2 = 0.35.
    assert frame[late].mean() > 0.25 and sequence[late].mean() < 0.15


def test_the_coded_ablation_paints_the_scale_on_the_markers():
    """scale-memory-coded: the markers' colour runs from blue (smallest scale) to red (largest), in
    log scale; without marker_code the markers keep the family's red and white."""
    from flashdepth.data.synthetic.scene import MARKER_COLORS, _marker_colors

    config = dataclasses.replace(synth.PRESETS["scale-memory-coded"], **SMALL, frames=1)
    low, high = config.world_scale
    assert np.argmax(_marker_colors(config, low)[0]) == 2 and np.argmax(_marker_colors(config, high)[0]) == 0
    middle = _marker_colors(config, np.sqrt(low * high))[0]
    np.testing.assert_allclose(middle, (_marker_colors(config, low)[0] + _marker_colors(config, high)[0]) / 2)
    scene = build_scene(30001, config)
    paints = [p.texture.colors for p in scene.primitives if p.kind == "marker"]
    assert paints and all(np.allclose(c, _marker_colors(config, scene.scale)) for c in paints)
    plain = dataclasses.replace(config, marker_code=False)
    assert all((p.texture.colors == MARKER_COLORS).all() for p in build_scene(30001, plain).primitives
               if p.kind == "marker")


def _tiles(**kwargs) -> SynthConfig:
    return dataclasses.replace(synth.PRESETS["scale-memory-tiles"], **{**SMALL, **kwargs})


def test_tiles_read_the_scale_by_their_size_alone():
    """scale-memory-tiles: the paving covers the same pixels at any world scale (it is 3 camera
    heights across), but its tiles keep their size in metres, so a 4x larger world shows 4x
    smaller tiles: counted here as colour changes along the image rows inside the paving."""
    def first_frame(scale):
        config = _tiles(frames=1, photometric=0.0, marker_spread=0.0, world_scale=(scale, scale))
        scene = build_scene(30002, config)
        (index,) = [i for i, p in enumerate(scene.primitives) if p.kind == "marker"]
        assert scene.primitives[index].texture.scale * scene.scale == pytest.approx(config.marker_height / 2)
        frame = next(render_clip(30002, config))
        mask = frame.owner == index  # (H, W)
        red = frame.rgb[..., 0].astype(float) - frame.rgb[..., 1]  # (H, W): red tiles high, white low
        tile = red > 0.5 * (red[mask].max() + red[mask].min())
        changes = (tile[:, 1:] != tile[:, :-1]) & mask[:, 1:] & mask[:, :-1]  # (H, W - 1)
        return mask, int(changes.sum())

    mask_small, changes_small = first_frame(0.5)
    mask_large, changes_large = first_frame(2.0)
    assert mask_small.sum() >= 0.05 * mask_small.size  # a large-area cue
    np.testing.assert_array_equal(mask_small, mask_large)
    assert 2.5 <= changes_large / changes_small <= 6.0, (changes_small, changes_large)  # ~ 4 / 1


def test_the_observer_reads_the_tiles_early_and_needs_memory_late():
    """The ideal observer on the tiles family (it measures the tiles' size): as for the pillars,
    the frame alone falls back to the prior once the paving has left the view."""
    config = _tiles()
    runs = [scale_estimate_errors(seed, config) for seed in SEEDS]
    frame = np.mean([r["frame"] for r in runs], axis=0)  # (T,)
    sequence = np.mean([r["sequence"] for r in runs], axis=0)  # (T,)
    visible = np.mean([r["visible"] for r in runs], axis=0)  # (T,)
    assert visible[0] == 1.0 and visible[-1] == 0.0
    late = slice(2 * config.frames // 3, None)
    assert frame[:2].mean() < 0.15 and frame[late].mean() > 0.2 and sequence.max() < 0.15


def test_default_presets_draw_no_pan():
    for name in ("classic", "varied", "scale-ambiguous"):
        assert build_scene(5, dataclasses.replace(synth.PRESETS[name], **SMALL, frames=2)).camera.pan == 0.0


@pytest.mark.parametrize("kwargs, words", [
    (dict(pan_deg=(-5.0, 10.0)), ["pan_deg"]),
    (dict(pan_deg=(10.0, 400.0)), ["pan_deg", "360"]),
    (dict(marker_azimuth=(-1.5, 0.0)), ["marker_azimuth"]),
    (dict(marker_azimuth=(0.0, 1.5)), ["marker_azimuth", "[-1, 1]"]),
    (dict(marker_near=1), ["marker_near"]),
    (dict(marker_code="yes"), ["marker_code"]),
    (dict(marker_shape="cube"), ["marker_shape", "'cube'", "pillar", "tiles"]),
])
def test_config_errors(kwargs, words):
    with pytest.raises(ConfigError) as info:
        SynthConfig(**kwargs)
    for word in words:
        assert word in str(info.value)

"""The procedural renderer: exact depth against closed-form geometry, conventions shared with the
metrics (z-depth, intrinsics, camera-to-world poses), determinism, layout families, dataset output.

Expected values are computed here independently of the renderer (own ray/plane and ray/sphere
formulas, signed distance functions), so a wrong formula in the renderer shows."""

import dataclasses

import numpy as np
import pytest

import flashdepth.data.synthetic as synth
from flashdepth.data import DatasetFolder, SequenceFolder
from flashdepth.errors import ConfigError
from flashdepth.metrics import tae
from flashdepth.data.synthetic import (Box, Ground, Motion, Pole, Scene, Sphere, SynthConfig, build_scene,
                                       camera_intrinsics, look_rotation, render_clip, render_frame,
                                       write_synthetic_dataset)

H, W = 61, 81  # odd: the centre pixel's ray is the optical axis
K = camera_intrinsics(H, W, 70.0)
EYE = 1.5


def pose_at(position, yaw=0.0, pitch=0.0, roll=0.0):
    pose = np.eye(4)
    pose[:3, :3] = look_rotation(yaw, pitch, roll)
    pose[:3, 3] = position
    return pose


LEVEL = pose_at([0.0, 0.0, EYE])  # level camera at eye height looking along +x


def camera_rays(intrinsics=K, shape=(H, W)):
    """(H, W, 3) camera-frame rays of unit z, by the metrics' formula x = (u - cx) / fx."""
    fx, fy, cx, cy = intrinsics
    v, u = np.mgrid[0:shape[0], 0:shape[1]]
    return np.stack([(u - cx) / fx, (v - cy) / fy, np.ones(shape)], axis=-1)


def world_rays(pose, intrinsics=K, shape=(H, W)):
    return camera_rays(intrinsics, shape) @ pose[:3, :3].T  # (H, W, 3)


def backproject(frame):
    """(H, W, 3) world points of every pixel from the stored depth, intrinsics and pose (NaN for sky)."""
    z = np.where(np.isfinite(frame.depth), frame.depth, np.nan).astype(np.float64)
    cam = camera_rays(frame.intrinsics, frame.depth.shape) * z[..., None]
    return cam @ frame.pose[:3, :3].T + frame.pose[:3, 3]


def sdf_sphere(p, c, r):
    return np.linalg.norm(p - c, axis=-1) - r


def sdf_box(p, c, rot, half):
    q = np.abs((p - c) @ rot) - half
    return np.linalg.norm(np.maximum(q, 0), axis=-1) + np.minimum(q.max(axis=-1), 0)


def sdf_pole(p, base, r, height):
    rel = p - base
    d = np.stack([np.hypot(rel[..., 0], rel[..., 1]) - r, np.abs(rel[..., 2] - height / 2) - height / 2], axis=-1)
    return np.linalg.norm(np.maximum(d, 0), axis=-1) + np.minimum(d.max(axis=-1), 0)


def rot_z(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])


def rot_x(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[1.0, 0, 0], [0, c, -s], [0, s, c]])


def ray_sphere(origin, dirs, c, r):
    """Nearest positive ray parameter per ray (inf on a miss), textbook quadratic."""
    oc = origin - c
    a = (dirs * dirs).sum(-1)
    b = 2 * (dirs @ oc)
    disc = b * b - 4 * a * (oc @ oc - r * r)
    t = (-b - np.sqrt(np.maximum(disc, 0))) / (2 * a)
    return np.where((disc >= 0) & (t > 0), t, np.inf)


# ---------------------------------------------------------------------------- exact depth
def test_intrinsics_convention():
    fx, fy, cx, cy = camera_intrinsics(126, 224, 70.0)
    assert (cx, cy) == (111.5, 62.5)  # pixel centres at +0.5 of the continuous image: W / 2 - 0.5
    assert fx == fy == pytest.approx(112 / np.tan(np.radians(35)))


def test_ground_depth_of_a_level_camera():
    """Level camera at height h: row v below the horizon sees the ground at z-depth h * fy / (v - cy)."""
    frame = render_frame(Scene(primitives=(Ground(),)), LEVEL, K, H, W)
    fy, cy = K[1], K[3]
    rows = np.arange(H)
    below = rows > cy
    expected = np.where(below, EYE * fy / np.where(below, rows - cy, 1), np.inf)
    np.testing.assert_allclose(frame.depth, np.broadcast_to(expected[:, None], (H, W)).astype(np.float32), rtol=1e-6)
    assert np.isposinf(frame.depth[:int(cy) + 1]).all() and np.isfinite(frame.depth[int(cy) + 1:]).all()


def test_fronto_parallel_wall_and_sky_exactly_where_missed():
    """A wall facing the camera has the same z-depth on every pixel it covers (a range would grow
    towards the borders); rays that miss it see the sky, +inf, and nothing else does."""
    distance, half = 4.0, np.array([0.1, 1.2, 0.8])
    centre = np.array([distance + half[0], 0.3, EYE + 0.2])
    frame = render_frame(Scene(primitives=(Box(kind="wall", center=centre, half=half),)), LEVEL, K, H, W)
    d = world_rays(LEVEL)
    hit = LEVEL[:3, 3] + distance * d  # points on the wall's plane x = distance
    margin = np.minimum(half[1] - np.abs(hit[..., 1] - centre[1]), half[2] - np.abs(hit[..., 2] - centre[2]))
    inside, outside = margin > 1e-6, margin < -1e-6
    assert inside.sum() > 200 and outside.sum() > 200  # both cases are exercised
    assert np.all(frame.depth[inside] == np.float32(distance))
    assert np.isposinf(frame.depth[outside]).all()
    assert set(np.unique(frame.depth).tolist()) == {distance, np.inf}  # pixels on the very edge: one or the other


def test_sphere_straight_ahead():
    distance, radius = 6.0, 1.25
    centre = np.array([distance, 0.0, EYE])
    frame = render_frame(Scene(primitives=(Sphere(center=centre, radius=radius),)), LEVEL, K, H, W)
    cy, cx = int(K[3]), int(K[2])
    assert frame.depth[cy, cx] == pytest.approx(distance - radius, rel=1e-6)
    # every pixel: the independent quadratic, converted from ray parameter to z-depth (unit-z rays)
    expected = ray_sphere(LEVEL[:3, 3], world_rays(LEVEL), centre, radius)
    hit = np.isfinite(expected)
    assert 300 < hit.sum() < H * W
    np.testing.assert_allclose(frame.depth[hit], expected[hit], rtol=1e-6)
    assert np.isposinf(frame.depth[~hit]).all()
    assert np.abs(sdf_sphere(backproject(frame)[hit], centre, radius)).max() < 1e-5


def test_oriented_box_matches_a_per_face_intersection():
    """A box turned 30 degrees about the vertical and tilted 20 degrees, seen from a rolled, pitched
    camera: each pixel's depth equals the nearest hit among the six face rectangles, found one
    face at a time (no slab method)."""
    centre, rot, half = np.array([5.0, 0.6, 1.8]), rot_z(np.radians(30)) @ rot_x(np.radians(20)), np.array([0.8, 1.1, 0.6])
    pose = pose_at([0.2, -0.3, 1.2], yaw=0.1, pitch=0.12, roll=0.05)
    frame = render_frame(Scene(primitives=(Box(center=centre, rotation=rot, half=half),)), pose, K, H, W)
    origin, d = pose[:3, 3], world_rays(pose)
    best = np.full((H, W), np.inf)
    for axis in range(3):
        for sign in (-1.0, 1.0):
            n = rot[:, axis] * sign  # outward normal of the face
            point = centre + n * half[axis]
            with np.errstate(divide="ignore", invalid="ignore"):
                t = ((point - origin) @ n) / (d @ n)
            local = (origin + t[..., None] * d - centre) @ rot
            others = [a for a in range(3) if a != axis]
            inside = np.all(np.abs(local[..., others]) <= half[others], axis=-1) & (t > 0)
            best = np.where(inside, np.minimum(best, t), best)
    hit = np.isfinite(best)
    assert 300 < hit.sum() < H * W
    np.testing.assert_allclose(frame.depth[hit], best[hit], rtol=1e-6)
    # a pixel exactly on an edge can go either way; away from edges hit and miss agree
    assert (np.isfinite(frame.depth) != hit).sum() <= 2
    assert np.abs(sdf_box(backproject(frame)[hit & np.isfinite(frame.depth)], centre, rot, half)).max() < 1e-5


def test_pole_side_and_top():
    """A level camera sees the pole's side: on the horizon row the covered columns and depths follow
    from the circle; from above, the cap's pixels lie on the top disc."""
    distance, radius, height = 5.0, 0.3, 3.0
    pole = Pole(center=np.array([distance, 0.0, 0.0]), radius=radius, height=height)
    frame = render_frame(Scene(primitives=(pole,)), LEVEL, K, H, W)
    row = frame.depth[int(K[3])]  # horizontal rays (1, -x, 0) in the world
    x = (np.arange(W) - K[2]) / K[0]
    # |(t, -t x) - (D, 0)| = r  ->  (1 + x^2) t^2 - 2 D t + D^2 - r^2 = 0
    a, disc = 1 + x * x, distance ** 2 - (1 + x * x) * (distance ** 2 - radius ** 2)
    expected = np.where(disc >= 0, (distance - np.sqrt(np.maximum(disc, 0))) / a, np.inf)
    assert 3 <= np.isfinite(expected).sum() < W
    np.testing.assert_array_equal(np.isfinite(row), np.isfinite(expected))
    np.testing.assert_allclose(row[np.isfinite(row)], expected[np.isfinite(expected)], rtol=1e-6)
    assert row[int(K[2])] == pytest.approx(distance - radius, rel=1e-6)

    above = pose_at([distance - 2.0, 0.0, height + 1.5], pitch=-np.radians(40))
    frame = render_frame(Scene(primitives=(pole,)), above, K, H, W)
    points = backproject(frame)
    seen = np.isfinite(frame.depth)
    assert np.abs(sdf_pole(points[seen], pole.center, radius, height)).max() < 1e-5
    top = seen & (np.abs(points[..., 2] - height) < 1e-4)
    assert top.sum() >= 5  # the cap is drawn
    assert np.hypot(points[top][:, 0] - distance, points[top][:, 1]).max() <= radius + 1e-5


def test_sphere_occludes_wall():
    wall_x, centre, radius = 8.0, np.array([4.0, 0.4, EYE - 0.2]), 0.9
    scene = Scene(primitives=(Box(kind="wall", center=np.array([wall_x + 0.1, 0, 2.0]), half=np.array([0.1, 20, 10])),
                              Sphere(center=centre, radius=radius)))
    frame = render_frame(scene, LEVEL, K, H, W)
    t_sphere = ray_sphere(LEVEL[:3, 3], world_rays(LEVEL), centre, radius)
    on_sphere = np.isfinite(t_sphere)
    assert 200 < on_sphere.sum() < H * W - 200
    np.testing.assert_allclose(frame.depth[on_sphere], t_sphere[on_sphere], rtol=1e-6)
    assert np.all(frame.depth[~on_sphere] == np.float32(wall_x))


# ------------------------------------------------------------------------ conventions
def test_random_clips_back_project_onto_their_surfaces():
    """Every pixel of a random clip, back-projected with the stored intrinsics and pose, lies on
    some primitive (to float32 depth precision): a half-pixel intrinsics offset, a range stored as
    depth or a transposed pose would move points off the surfaces by centimetres."""
    config = SynthConfig(height=42, width=70, frames=3)
    for seed in (3, 8):
        scene = build_scene(seed, config)
        for i, frame in enumerate(render_clip(seed, config)):
            points = backproject(frame)  # (H, W, 3)
            seen = np.isfinite(frame.depth)
            p = points[seen]
            dist = np.full(len(p), np.inf)
            for prim in scene.primitives:
                c, rot = prim.at(i / config.fps)
                if isinstance(prim, Ground):
                    s = p[:, 2]
                elif isinstance(prim, Sphere):
                    s = sdf_sphere(p, c, prim.radius)
                elif isinstance(prim, Box):
                    s = sdf_box(p, c, rot, prim.half)
                else:
                    s = sdf_pole(p, c, prim.radius, prim.height)
                dist = np.minimum(dist, np.abs(s))
            assert np.all(dist <= 1e-6 * frame.depth[seen] + 1e-6), (seed, i, dist.max())


def test_sky_only_above_the_horizon_in_random_clips():
    """The ground catches every downward ray, so sky pixels (+inf) look up; depth is otherwise
    finite and positive."""
    config = SynthConfig(height=42, width=70, frames=4)
    sky_pixels = 0
    for seed in range(3):
        for frame in render_clip(seed, config):
            d = world_rays(frame.pose, frame.intrinsics, frame.depth.shape)
            sky = np.isposinf(frame.depth)
            assert np.all(d[sky][:, 2] >= 0)
            assert np.all(np.isfinite(frame.depth[d[..., 2] < -1e-9]))
            assert np.all(frame.depth[~sky] > 0) and not np.isnan(frame.depth).any()
            sky_pixels += sky.sum()
    assert sky_pixels > 0


def _smooth_only(depth, ratio=1.02):
    """NaN where a pixel or one of its 8 neighbours differs by more than ``ratio`` (occlusion
    boundaries and grazing surfaces, where nearest-pixel reprojection is meaningless)."""
    pad = np.pad(depth.astype(np.float64), 1, mode="edge")
    keep = np.isfinite(depth)
    h, w = depth.shape
    with np.errstate(invalid="ignore"):
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                n = pad[1 + dy:1 + dy + h, 1 + dx:1 + dx + w]
                keep &= np.isfinite(n) & (np.maximum(n / depth, depth / n) <= ratio)
    return np.where(keep, depth, np.nan)


def test_exact_ground_truth_has_near_zero_tae():
    """Poses and intrinsics follow flashdepth.metrics: the exact depth of a static clip reprojects
    onto the next frame. Measured (63x112, 8 frames, seeds 0 and 1): TAE 0.020 and 0.017 over all
    pixels (occlusions and far ground at grazing angles dominate), 0.0017 and 0.0016 away from
    depth discontinuities, where only nearest-pixel rounding is left. Inverted (world-to-camera)
    poses give 0.12 and 0.05 over all pixels, 0.019 and 0.017 away from discontinuities."""
    config = SynthConfig(height=63, width=112, frames=8, kinds=("box", "sphere", "pole", "wall"))
    for seed in (0, 1):
        frames = list(render_clip(seed, config))
        depth = np.stack([f.depth for f in frames])
        intrinsics = np.array([f.intrinsics for f in frames])
        poses = np.stack([f.pose for f in frames])
        assert tae(depth, intrinsics, poses) < 0.03
        smooth = np.stack([_smooth_only(d) for d in depth])
        assert np.isfinite(smooth).mean() > 0.15
        exact = tae(smooth, intrinsics, poses)
        assert exact < 0.003
        assert tae(smooth, intrinsics, np.linalg.inv(poses)) > 5 * exact


def test_moving_objects_carry_their_texture():
    """Moving an object by v t and the camera by the same amount gives the same image: texture and
    depth are attached to the object, not to the world."""
    velocity = np.array([0.6, -0.4, 0.1])
    scene = Scene(primitives=(
        Box(center=np.array([5.0, 0.5, 1.5]), rotation=rot_z(0.4), half=np.array([0.5, 0.7, 0.4]),
            motion=Motion(velocity=velocity), texture=synth.Texture(kind="fractal", scale=0.2)),
        Sphere(center=np.array([6.0, -1.0, 1.23]), radius=0.8, motion=Motion(velocity=velocity),
               texture=synth.Texture(kind="checker", scale=0.15))))
    time = 1.5
    start = render_frame(scene, LEVEL, K, H, W, time=0.0)
    followed = render_frame(scene, pose_at(LEVEL[:3, 3] + velocity * time), K, H, W, time=time)
    still = render_frame(scene, LEVEL, K, H, W, time=time)
    np.testing.assert_allclose(followed.depth, start.depth, rtol=1e-6)
    changed = np.abs(followed.rgb.astype(int) - start.rgb).max(axis=-1) > 1
    assert changed.sum() <= 3  # rounding can flip a pixel sitting exactly on a checker edge, no more
    assert (np.isfinite(still.depth) != np.isfinite(start.depth)).sum() > 50  # it did move


def test_culling_never_changes_a_frame(monkeypatch):
    """Rays are only cast where a primitive's projected bounding hull lies; that must never drop a
    pixel, including for objects reaching behind the camera (a wall running alongside it)."""
    config = SynthConfig(height=42, width=70, frames=3)
    alongside = Scene(primitives=(Ground(), Box(kind="wall", center=np.array([2.0, 2.0, 1.5]), half=np.array([7.0, 0.1, 1.5]))))
    pose = pose_at([0.0, 0.0, EYE], yaw=0.4)

    def render_all():
        return [list(render_clip(seed, config)) for seed in (0, 5)] + [[render_frame(alongside, pose, K, H, W)]]

    culled = render_all()
    assert (culled[-1][0].depth < 3).sum() > 100  # the near end of the wall is in view
    monkeypatch.setattr(synth.render, "_screen_rect", lambda hull, rotation, origin, intrinsics, shape: (0, shape[0], 0, shape[1]))
    full = render_all()
    for a_clip, b_clip in zip(culled, full):
        for a, b in zip(a_clip, b_clip):
            np.testing.assert_array_equal(a.depth, b.depth)
            np.testing.assert_array_equal(a.rgb, b.rgb)


# ------------------------------------------------------------------- scenes and clips
def test_deterministic_per_seed():
    config = SynthConfig(height=28, width=42, frames=3)
    a, b, c = (list(render_clip(s, config)) for s in (7, 7, 8))
    for x, y in zip(a, b):
        assert np.array_equal(x.rgb, y.rgb) and np.array_equal(x.depth, y.depth) and np.array_equal(x.pose, y.pose)
    assert not np.array_equal(a[0].rgb, c[0].rgb) and not np.array_equal(a[0].depth, c[0].depth)
    assert not np.array_equal(a[1].pose, c[1].pose)


def test_clip_shapes_and_types():
    config = SynthConfig(height=28, width=42, frames=3)
    clip = render_clip(2, config)
    first = next(clip)  # lazy: a generator, frame by frame
    assert first.rgb.shape == (28, 42, 3) and first.rgb.dtype == np.uint8
    assert first.depth.shape == (28, 42) and first.depth.dtype == np.float32
    assert first.pose.shape == (4, 4) and first.intrinsics == camera_intrinsics(28, 42, config.fov_deg)
    assert len(list(clip)) == 2
    assert first.rgb.std() > 10  # textured, not flat


def test_camera_motion_is_smooth_and_within_the_config():
    config = SynthConfig(frames=24, speed=(0.5, 2.0))
    speeds = []
    for seed in range(6):
        camera = build_scene(seed, config).camera
        times = np.linspace(0, (config.frames - 1) / config.fps, 200)
        pos = camera.positions(times)
        step = np.linalg.norm(np.diff(pos, axis=0), axis=1) / np.diff(times)
        speeds.append(camera.speed)
        assert 0.5 <= camera.speed <= 2.0
        # arc speed + the largest sway (amplitude 0.4 m, rate 1.5 rad/s, turning) and bob (0.1 m, 3 rad/s)
        assert step.max() < camera.speed + 0.4 * 1.5 + 0.8 * np.radians(config.turn_deg) + 0.1 * 3
        poses = [camera.pose(t) for t in times]
        for pose in poses:
            rot = pose[:3, :3]
            assert np.allclose(rot.T @ rot, np.eye(3)) and np.linalg.det(rot) == pytest.approx(1.0)
            assert -np.sin(np.radians(20)) < rot[2, 2] < np.sin(np.radians(8))  # pitch of the forward axis
            assert abs(rot[2, 0]) < np.sin(np.radians(3.5))  # the right axis stays near level (slight roll)
        turns = [np.degrees(np.arccos(np.clip((np.trace(a[:3, :3].T @ b[:3, :3]) - 1) / 2, -1, 1)))
                 for a, b in zip(poses, poses[1:])]
        assert max(turns) < 1.0  # degrees per 1/80 s: no jumps
        assert np.allclose(pos[0], camera.pose(0.0)[:3, 3])
    assert np.ptp(speeds) > 0.3  # speed varies from clip to clip


def test_kinds_filter():
    no_spheres = SynthConfig(kinds=("box", "pole", "wall", "mover"))
    moving = 0
    for seed in range(8):
        prims = build_scene(seed, no_spheres).primitives
        assert not any(isinstance(p, Sphere) for p in prims)
        assert {p.kind for p in prims} <= {"ground", "box", "pole", "wall"}
        moving += sum(p.motion is not None for p in prims)
    assert moving > 0  # movers exist, as boxes
    only_spheres = SynthConfig(kinds=("sphere",))
    kinds = set()
    for seed in range(4):
        prims = build_scene(seed, only_spheres).primitives
        assert isinstance(prims[0], Ground) and all(isinstance(p, Sphere) and p.motion is None for p in prims[1:])
        kinds |= {type(p) for p in prims}
    assert kinds == {Ground, Sphere}
    everything = [p for seed in range(8) for p in build_scene(seed, SynthConfig()).primitives]
    assert {type(p) for p in everything} == {Ground, Box, Sphere, Pole}
    assert {p.kind for p in everything} == {"ground", "box", "sphere", "pole", "wall"}
    assert any(isinstance(p, Sphere) and p.motion is not None for p in everything)


def test_textures_filter():
    config = SynthConfig(textures=("stripes",))
    assert {p.texture.kind for seed in range(3) for p in build_scene(seed, config).primitives} == {"stripes"}


def test_object_count_and_clearance():
    """Objects crowd the camera path here (placed 0.3-4 m away), yet none comes within 0.5 m of the
    camera during the clip; placements that cannot be fixed in 20 tries are dropped."""
    config = SynthConfig(objects=(30, 30), distance=(0.3, 4.0), frames=12)
    # the generator checks 8 instants per frame interval; look between them too
    times = np.linspace(0, (config.frames - 1) / config.fps, 301)
    for seed in range(3):
        scene = build_scene(seed, config)
        assert 10 <= len(scene.primitives) - 1 <= 30
        eyes = scene.camera.positions(times)
        for prim in scene.primitives[1:]:
            for t, eye in zip(times, eyes):
                c, rot = prim.at(t)
                if isinstance(prim, Sphere):
                    gap = sdf_sphere(eye, c, prim.radius)
                elif isinstance(prim, Box):
                    gap = sdf_box(eye, c, rot, prim.half)
                else:
                    gap = sdf_pole(eye, c, prim.radius, prim.height)
                assert gap > 0.45, (seed, prim.kind, t)
    assert len(build_scene(0, SynthConfig(objects=(7, 7))).primitives) == 8  # roomy scenes keep every object


@pytest.mark.parametrize("kwargs, words", [
    (dict(kinds=("box", "tree")), ["'tree'", "box, sphere, pole, wall, mover"]),
    (dict(kinds=("mover", "pole")), ["mover", "'box' or 'sphere'"]),
    (dict(textures=("plaid",)), ["'plaid'", "checker"]),
    (dict(textures=()), ["textures"]),
    (dict(objects=(5, 2)), ["objects=(5, 2)"]),
    (dict(speed=(-1.0, 2.0)), ["speed"]),
    (dict(fov_deg=180.0), ["fov_deg=180.0"]),
    (dict(frames=0), ["frames=0"]),
    (dict(height=12.5), ["height=12.5", "integer"]),
    (dict(objects=(2.0, 4)), ["objects=(2.0, 4)", "integers"]),
])
def test_config_errors(kwargs, words):
    with pytest.raises(ConfigError) as info:
        SynthConfig(**kwargs)
    for word in words:
        assert word in str(info.value)


# ---------------------------------------------------------------------------- dataset
def test_write_synthetic_dataset(tmp_path):
    config = SynthConfig(height=28, width=42, frames=3)
    report = write_synthetic_dataset(tmp_path, {"train": [1, 2], "test": [2, 5]}, config)
    assert report["dataset"] == "synthetic" and report["sequences"] == 3 and report["frames"] == 9
    assert report["invalid_fraction"] == 0.0 and 0 < report["sky_fraction"] < 1
    dataset = DatasetFolder(tmp_path / "synthetic")
    assert dataset.split("train") == ["000001", "000002"] and dataset.split("test") == ["000002", "000005"]
    seq = dataset.sequences("test")[1]
    assert isinstance(seq, SequenceFolder) and seq.name == "000005" and len(seq) == 3
    assert seq.depth_spec.kind == "depth" and seq.depth_spec.unit == "m" and seq.depth_spec.metric
    assert seq.meta["fps"] == config.fps and seq.meta["provenance"]["seed"] == 5
    intrinsics, poses = seq.intrinsics(), seq.poses()
    for i, frame in enumerate(render_clip(5, config)):
        target = seq.target(i)
        sky = np.isposinf(frame.depth)
        assert sky.any() and np.all(target[sky] == 0)
        np.testing.assert_allclose(target[~sky], 1.0 / frame.depth[~sky], rtol=1e-6)
        np.testing.assert_array_equal(seq.rgb(i), frame.rgb)
        np.testing.assert_allclose(intrinsics[i], frame.intrinsics, atol=1e-6)
        np.testing.assert_allclose(poses[i], frame.pose, atol=1e-7)


def test_write_synthetic_dataset_rejects_bad_seeds(tmp_path):
    with pytest.raises(ConfigError, match="-3"):
        write_synthetic_dataset(tmp_path, {"train": [1, -3]}, SynthConfig(height=8, width=8, frames=1))


# ------------------------------------------------------------- presets, scale family, validation
def test_presets_render_and_classic_is_the_default():
    assert synth.PRESETS["classic"] == SynthConfig()
    for name, preset in synth.PRESETS.items():
        config = dataclasses.replace(preset, height=28, width=42, frames=2)
        frames = list(render_clip(3, config))
        assert len(frames) == 2 and frames[0].rgb.shape == (28, 42, 3), name


def test_world_scale_multiplies_depth_and_leaves_the_image_unchanged():
    base = dataclasses.replace(synth.PRESETS["varied"], height=28, width=42, frames=3, markers=(0, 0),
                               photometric=0.0)
    scaled = dataclasses.replace(base, world_scale=(2.5, 2.5))
    for a, b in zip(render_clip(11, base), render_clip(11, scaled)):
        np.testing.assert_array_equal(a.rgb, b.rgb)  # a scaled world looks the same ...
        finite = np.isfinite(a.depth)
        np.testing.assert_allclose(b.depth[finite], 2.5 * a.depth[finite], rtol=1e-6)  # ... only metres change
        np.testing.assert_allclose(b.pose[:3, 3], 2.5 * a.pose[:3, 3], rtol=1e-9)


def test_markers_keep_their_absolute_size_at_any_world_scale():
    config = dataclasses.replace(synth.PRESETS["scale-ambiguous"], height=28, width=42, frames=4)
    for seed in range(4):
        scene = build_scene(seed, config)
        markers = [p for p in scene.primitives if p.kind == "marker"]
        assert config.markers[0] <= len(markers) <= config.markers[1]
        for m in markers:  # height in metres = scene units x scale, near the nominal height
            metres = 2 * m.half[2] * scene.scale
            assert abs(np.log(metres / config.marker_height)) < 5 * config.marker_spread


def test_oracle_sequence_beats_frame_and_the_gap_grows():
    """The scale-ambiguous family's intended property: the ideal observer's scale estimate from the
    frames so far is better than from the current frame alone, increasingly so later in the clip."""
    from flashdepth.data.synthetic.oracle import scale_estimate_errors

    config = dataclasses.replace(synth.PRESETS["scale-ambiguous"], height=63, width=112)
    runs = [scale_estimate_errors(seed, config) for seed in range(21000, 21006)]
    frame = np.mean([r["frame"] for r in runs], axis=0)  # (T,)
    sequence = np.mean([r["sequence"] for r in runs], axis=0)  # (T,)
    # More markers give a better estimate on average (not in every sample: markers are noisy).
    assert sequence.mean() < frame.mean()
    t = len(frame)
    early, late = slice(0, t // 4), slice(3 * t // 4, t)
    assert (frame[late] - sequence[late]).mean() > 2 * (frame[early] - sequence[early]).mean() + 0.05


def test_posterior_of_the_oracle():
    from flashdepth.data.synthetic.oracle import posterior_log_scale

    assert posterior_log_scale(np.array([]), 0.1, (0.5, 2.0)) == pytest.approx(0.0, abs=1e-9)  # prior mean
    assert posterior_log_scale(np.array([0.3] * 50), 0.1, (0.5, 2.0)) == pytest.approx(0.3, abs=0.01)
    assert posterior_log_scale(np.array([5.0]), 0.1, (0.5, 2.0)) <= np.log(2.0)  # never outside the prior


@pytest.mark.parametrize("kwargs, words", [
    (dict(seeds={"a": [0]}, name="../escape"), ["plain folder name"]),
    (dict(seeds={"a": [2 ** 40]}), ["seed", "[0, 4294967296)"]),
    (dict(seeds={"a": range(0, 200_001)}), ["at most 100000"]),
])
def test_write_synthetic_dataset_refuses_bad_names_and_ranges(tmp_path, kwargs, words):
    with pytest.raises(ConfigError) as info:
        write_synthetic_dataset(tmp_path, config=SynthConfig(height=8, width=8, frames=1), **kwargs)
    assert all(w in str(info.value) for w in words)
    assert not any(tmp_path.iterdir())  # refused before anything is written


def test_overlapping_splits_warn(tmp_path):
    with pytest.warns(UserWarning, match="share 1 seed"):
        write_synthetic_dataset(tmp_path, {"train": [0, 1], "test": [1]}, SynthConfig(height=8, width=8, frames=1))


def test_synth_command_line_refuses_huge_and_repeated_splits(tmp_path):
    import subprocess
    import sys

    for args in (["--split", "test=0:40000000"], ["--split", "test=0:99999999999999999999"],
                 ["--split", "a=0:1", "--split", "a=2:3"]):
        r = subprocess.run([sys.executable, "-m", "flashdepth_cli", "synth", str(tmp_path / "d"), *args],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 2 and "error" in r.stderr and "Traceback" not in r.stderr, (args, r.stderr)
    assert not (tmp_path / "d").exists()

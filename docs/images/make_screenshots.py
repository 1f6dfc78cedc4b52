"""Retake the screenshots of docs/live.md from a real run of a checkpoint on a video.

    python docs/images/make_screenshots.py CHECKPOINT VIDEO [--out docs/images] [--device auto]

It runs VIDEO through CHECKPOINT with the Python API (outputs raw, rerun and ply, the live viewer
attached), then writes into --out:

* ``live-page.png``: the live page in headless Chromium while the run goes on (or its last frame);
* ``rerun.png``: the Rerun web viewer (``rerun --serve-web``) on frame --page-frame of
  ``recording.rrd`` (logged alone, so that software rendering keeps up), rendered by headless
  Chromium with its software WebGL (skipped with a message where it cannot start);
* ``pointcloud.png``: one PLY point cloud drawn with matplotlib (a view that needs no GPU).

Needs ``flashdepth[video,rerun,ply]`` and a Chromium (Debian: ``apt-get install chromium``).
The Chromium driver is the tests' (tests/browser.py), so run this from a clone.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

from browser import Browser, find_chromium  # noqa: E402

from flashdepth.geometry import Unprojection  # noqa: E402
from flashdepth.io.sources import open_source  # noqa: E402
from flashdepth.io.sinks import OutputOptions  # noqa: E402
from flashdepth.apps.pipeline import RunOptions, run_to_folder  # noqa: E402
from flashdepth.inference.session import DepthSession  # noqa: E402
from flashdepth.viewer import LiveViewer  # noqa: E402
from flashdepth.inference.weights import load_model  # noqa: E402

SOFTWARE_WEBGL = ("--enable-unsafe-swiftshader", "--use-angle=swiftshader", "--ignore-gpu-blocklist")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def live_page(args: argparse.Namespace, outdir: Path) -> None:
    session = DepthSession(load_model(args.checkpoint), device=args.device, resolution=args.resolution)
    options = RunOptions(outputs=("raw", "rerun", "ply"), max_frames=args.frames, overwrite=True,
                         output_options=OutputOptions(unprojection=Unprojection(fov=args.fov), ply_every=args.ply_every))
    with LiveViewer(colormap=args.colormap) as viewer, Browser(1280, 450) as browser:
        done = threading.Event()
        result: dict = {}

        def run() -> None:
            try:
                result["stats"] = run_to_folder(open_source(args.video), session, outdir, options, on_frame=[viewer])
            except BaseException as e:  # reported by the main thread
                result["error"] = e
            finally:
                done.set()

        threading.Thread(target=run, daemon=True).start()
        browser.goto(viewer.url)
        frames = "Number(document.getElementById('frames')?.textContent) || 0"
        # Mid-run when the run is long enough; its last frame when it is faster than the page.
        deadline = time.monotonic() + 600
        while not done.is_set() and browser.evaluate(frames) < args.page_frame and time.monotonic() < deadline:
            time.sleep(0.2)
        browser.wait_for("['input', 'depth'].every(id => document.getElementById(id).naturalWidth > 0)", timeout=120)
        time.sleep(1.0)  # one more stats poll, so the numbers belong to the picture
        (args.out / "live-page.png").write_bytes(browser.screenshot())
        print(f"live-page.png at frame {browser.evaluate(frames)}")
        done.wait()
    if "error" in result:
        raise result["error"]
    print(f"run: {result['stats'].summary()}")


def one_frame_recording(outdir: Path, video: str, index: int, unprojection: Unprojection) -> Path:
    """Frame ``index`` of the run's recording, logged alone (the same entities and layout): the web
    viewer's software renderer stalls Chromium's screenshots on a whole 960x540 recording."""
    from flashdepth.io.rerun_sink import RerunWriter

    depth = np.load(outdir / "depth.npy", mmap_mode="r")
    index = min(index, depth.shape[0] - 1)
    source = open_source(video)
    path = outdir / f"frame{index:06d}.rrd"
    writer = RerunWriter(path, unprojection, source.time_base)
    try:
        for frame in source:
            if frame.index == index:
                writer.write(frame, np.asarray(depth[index]))
                break
    finally:
        writer.close()
        source.close()
    return path


def rerun_view(recording: Path, out: Path, wait: float) -> None:
    grpc, web = free_port(), free_port()
    server = subprocess.Popen([sys.executable, "-m", "rerun", "--serve-web", str(recording),
                               "--bind", "127.0.0.1", "--port", str(grpc), "--web-viewer-port", str(web)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)  # `python -m rerun` starts the viewer binary as a child
    try:
        time.sleep(3)
        with Browser(1280, 720, flags=SOFTWARE_WEBGL, timeout=240) as browser:  # software WebGL: slow
            browser.goto(f"http://127.0.0.1:{web}/?url=rerun%2Bhttp%3A%2F%2F127.0.0.1%3A{grpc}%2Fproxy")
            browser.wait_for("document.querySelector('canvas') !== null", timeout=60)
            time.sleep(wait)  # the viewer loads the recording, plays it to the end and draws
            (out / "rerun.png").write_bytes(browser.screenshot())
        print("rerun.png written")
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the wrapper and the binary it started
        server.wait(timeout=30)


def pointcloud(outdir: Path, out: Path, max_points: int = 60000) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from plyfile import PlyData

    path = sorted((outdir / "ply").glob("*.ply"))[len(list((outdir / "ply").glob("*.ply"))) // 2]
    vertex = PlyData.read(str(path))["vertex"].data
    pick = np.random.default_rng(0).permutation(len(vertex))[:max_points]
    v = vertex[pick]
    colours = np.stack([v["red"], v["green"], v["blue"]], axis=1) / 255.0
    fig = plt.figure(figsize=(9, 6), dpi=110)
    ax = fig.add_subplot(projection="3d")
    # Camera coordinates are x right, y down, z forward: plot z as depth and -y as up.
    ax.scatter(v["x"], v["z"], -v["y"], c=colours, s=0.6, linewidths=0, depthshade=False)
    ax.set_box_aspect(tuple(float(np.ptp(a)) for a in (v["x"], v["z"], v["y"])))  # metres alike on every axis
    ax.set_xlabel("x (m, right)")
    ax.set_ylabel("z (m, forward)")
    ax.set_zlabel("-y (m, up)")
    ax.view_init(elev=18, azim=-62)
    ax.set_title(f"{path.parent.name}/{path.name}: {len(vertex):,} points ({len(pick):,} drawn)")
    fig.tight_layout()
    fig.savefig(out / "pointcloud.png")
    print(f"pointcloud.png from {path.name}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="weights file or model name (load_model)")
    p.add_argument("video", help="any input flashdepth run accepts")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent, help="where the PNGs go")
    p.add_argument("--device", default="auto")
    p.add_argument("--resolution", type=int, help="process at short side N (as flashdepth run --resolution)")
    p.add_argument("--frames", type=int, help="stop after N frames")
    p.add_argument("--page-frame", type=int, default=20, help="take the page's picture at this frame")
    p.add_argument("--ply-every", type=int, default=30)
    p.add_argument("--fov", type=float, default=60.0)
    p.add_argument("--colormap", default="inferno")
    p.add_argument("--rerun-wait", type=float, default=30.0,
                   help="seconds the Rerun web viewer gets to load and draw (software WebGL is slow)")
    p.add_argument("--keep", type=Path, metavar="DIR", help="keep the run's outputs in DIR")
    args = p.parse_args()
    if find_chromium() is None:
        print("no Chromium found: apt-get install chromium", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="flashdepth-shots-") as tmp:
        outdir = args.keep or Path(tmp) / "run"
        live_page(args, outdir)
        try:
            recording = one_frame_recording(outdir, args.video, args.page_frame, Unprojection(fov=args.fov))
            rerun_view(recording, args.out, args.rerun_wait)
        except Exception as e:  # no WebGL, no web viewer in this rerun-sdk build, ...
            print(f"rerun.png not taken: {type(e).__name__}: {e}", file=sys.stderr)
        pointcloud(outdir, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

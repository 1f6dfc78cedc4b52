"""The live viewer: its HTTP endpoints during real runs, clients that never read, the page in
headless Chromium. Loopback only (127.0.0.1), free ports, every wait bounded."""

import io
import json
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from flashdepth import FlashDepth
from flashdepth.errors import ServeAddressError
from flashdepth.io.sources import Frame, open_source
from flashdepth.apps.pipeline import RunOptions, run_to_folder
from flashdepth.inference.session import DepthSession
from flashdepth.viewer import LiveViewer
from flashdepth.inference.weights import save_checkpoint
from flashdepth_cli.main import main

from browser import find_chromium
from conftest import TINY, randomize, spread_depth
from media import make_frames

Image = pytest.importorskip("PIL.Image")
LAVFI = "lavfi:testsrc=size=196x140:rate=10"


@pytest.fixture(scope="module")
def model():
    return spread_depth(randomize(FlashDepth(TINY["s"]), seed=7)).eval()


@pytest.fixture(scope="module")
def ckpt(model, tmp_path_factory):
    return save_checkpoint(model, tmp_path_factory.mktemp("ckpt") / "tiny.pth")


def get(url, timeout=30.0):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.headers.get_content_type(), response.read()


def stats(url):
    return json.loads(get(url + "stats.json")[1])


def read_part(response):
    """The next JPEG of an MJPEG (multipart/x-mixed-replace) response, decoded."""
    line = response.readline()
    while line in (b"\r\n", b"\n"):
        line = response.readline()
    assert line.strip() == b"--flashdepth-frame", line
    headers = {}
    while (line := response.readline().strip()):
        key, _, value = line.decode().partition(":")
        headers[key.lower()] = value.strip()
    assert headers["content-type"] == "image/jpeg"
    return np.asarray(Image.open(io.BytesIO(response.read(int(headers["content-length"])))).convert("RGB"))


def wait_until(condition, timeout=90.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"{what} not reached within {timeout:.0f} s")


class ServingRun:
    """`flashdepth run LAVFI --serve 127.0.0.1:0` in a subprocess; the URL it prints; Ctrl-C to stop."""

    def __init__(self, tmp_path, ckpt, source=LAVFI):
        self.out = tmp_path / "out"
        cmd = [sys.executable, "-m", "flashdepth_cli", "run", source, "-o", str(self.out), "--checkpoint", str(ckpt),
               "--device", "cpu", "--save", "raw", "--quiet", "--serve", "127.0.0.1:0"]
        self.process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue = queue.Queue()
        self.err: list = []
        self.drain = threading.Thread(target=self._drain, daemon=True)
        self.drain.start()
        self.url = None
        deadline = time.monotonic() + 90
        while self.url is None:
            try:
                line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                self.process.kill()
                raise AssertionError(f"no 'live view at' line within 90 s; stderr: {''.join(self.err)}")
            if "live view at" in line:
                self.url = line.split("live view at ", 1)[1].strip()

    def _drain(self):
        for line in self.process.stderr:
            self.err.append(line)
            self.lines.put(line)

    def interrupt(self):
        self.process.send_signal(signal.SIGINT)
        self.process.wait(timeout=60)  # stdout holds one summary line: no risk of a full pipe
        self.drain.join(timeout=10)
        return self.process.returncode, self.process.stdout.read(), "".join(self.err)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def test_stream_endpoint_serves_frames_during_a_run_and_ctrl_c_stops_both(tmp_path, ckpt):
    with ServingRun(tmp_path, ckpt) as run:
        assert run.url.startswith("http://127.0.0.1:")
        kind, page = get(run.url)
        assert kind == "text/html" and b'id="frames"' in page and b"stream.mjpg" in page
        wait_until(lambda: stats(run.url)["frames"] >= 2, what="two frames")
        first = stats(run.url)
        assert (first["width"], first["height"]) == (196, 140) and "turbo" in first["colormaps"]
        with urllib.request.urlopen(run.url + "stream.mjpg?view=depth&colormap=turbo", timeout=30) as depth_stream, \
                urllib.request.urlopen(run.url + "stream.mjpg?view=input", timeout=30) as input_stream:
            assert depth_stream.headers.get_content_type() == "multipart/x-mixed-replace"
            depth = [read_part(depth_stream) for _ in range(2)]  # two consecutive pushes
            image = read_part(input_stream)
            assert stats(run.url)["clients"] == 2
        assert depth[0].shape == image.shape == (140, 196, 3)
        assert depth[0].std() > 5 and image.std() > 20  # a picture, not a flat fill (testsrc: colour bars)
        with pytest.raises(urllib.error.HTTPError) as bad:
            get(run.url + "stream.mjpg?view=depth&colormap=jet")
        assert bad.value.code == 400
        # Closing the page does not stop the run: frames keep coming.
        seen = stats(run.url)["frames"]
        wait_until(lambda: stats(run.url)["frames"] >= seen + 2, what="frames after the streams closed")
        code, printed, err = run.interrupt()
    assert code == 130, err
    assert "(interrupted)" in printed and "frame(s) done" in err
    assert np.load(run.out / "depth.npy", mmap_mode="r").shape[0] >= seen + 2
    port = int(run.url.rstrip("/").rsplit(":", 1)[1])
    with pytest.raises(OSError):  # the server went with the run
        socket.create_connection(("127.0.0.1", port), timeout=5).close()


def _stalled_client(url, view="input"):
    """A client that asks for the stream and never reads: a tiny receive window fills at once."""
    host, port = url.split("//")[1].rstrip("/").split(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    sock.sendall(f"GET /stream.mjpg?view={view} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    return sock


def test_a_client_that_never_reads_changes_nothing(tmp_path, model):
    source = "lavfi:testsrc=size=196x140:rate=10:duration=0.8"  # 8 frames
    options = RunOptions(outputs=("raw",))
    plain = run_to_folder(open_source(source), DepthSession(model, device="cpu"), tmp_path / "plain", options)
    with LiveViewer(send_timeout=60.0) as viewer:
        sock = _stalled_client(viewer.url)
        wait_until(lambda: viewer.clients == 1, timeout=30, what="the stalled client's connection")
        watched = run_to_folder(open_source(source), DepthSession(model, device="cpu"), tmp_path / "watched", options,
                                on_frame=[viewer])
        assert viewer.clients == 1  # still connected, still not reading
        start = time.monotonic()
    closing = time.monotonic() - start
    sock.close()
    assert plain.frames == watched.frames == 8
    np.testing.assert_array_equal(np.load(tmp_path / "plain" / "depth.npy"), np.load(tmp_path / "watched" / "depth.npy"))
    assert closing < 30  # close() does not wait out the stalled client's 60 s send timeout


def test_update_never_waits_for_a_stalled_client_and_others_still_get_frames():
    rng = np.random.default_rng(0)
    noise = [rng.integers(0, 256, size=(720, 1280, 3), dtype=np.uint8) for _ in range(2)]  # ~1 MB JPEGs
    depth = rng.random((720, 1280), dtype=np.float32)
    slowest = 0.0

    def feed(start, count):
        nonlocal slowest
        for i in range(start, start + count):
            t0 = time.perf_counter()
            viewer.update(Frame(noise[i % 2], i), depth)
            slowest = max(slowest, time.perf_counter() - t0)
            time.sleep(0.02)

    with LiveViewer(send_timeout=60.0) as viewer:
        stalled = _stalled_client(viewer.url)
        wait_until(lambda: viewer.clients == 1, timeout=30, what="the stalled client's connection")
        feed(0, 30)  # 30 MB for a client that reads nothing: the socket buffers fill, its send blocks
        assert viewer.frames_sent < 30 and viewer.clients == 1
        with urllib.request.urlopen(viewer.url + "stream.mjpg?view=depth", timeout=30) as reader:
            received = []
            for i in range(3):  # another client is served while the first stays stuck
                feed(30 + 10 * i, 10)
                received.append(read_part(reader))
        assert viewer.clients >= 1
        stalled.close()
    assert slowest < 0.5  # microseconds in fact; sending from update() would block for the 60 s timeout
    assert len(received) == 3 and received[0].shape == (720, 1280, 3)


def test_a_port_in_use_is_a_one_line_error_before_the_model_loads(tmp_path, ckpt, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ServeAddressError, match=f"127.0.0.1:{port}"):
            LiveViewer(port=port).start()
        assert main(["run", LAVFI, "-o", str(tmp_path / "out"), "--checkpoint", str(ckpt), "--serve", str(port)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"--serve 127.0.0.1:{port}: cannot serve there" in err
    assert not (tmp_path / "out").exists()
    assert LiveViewer().is_loopback and LiveViewer(host="::1").is_loopback and not LiveViewer(host="0.0.0.0").is_loopback


def test_a_script_feeds_the_viewer_without_a_run():
    image = make_frames(1)[0]
    with LiveViewer(colormap="gray") as viewer:
        with pytest.raises(urllib.error.HTTPError) as early:
            get(viewer.url + "frame.jpg")
        assert early.value.code == 503  # no frame yet
        viewer.update(image, np.tile(np.linspace(1, 2, 196, dtype=np.float32), (140, 1)))
        kind, data = get(viewer.url + "frame.jpg?view=depth")
        assert kind == "image/jpeg"
        gray = np.asarray(Image.open(io.BytesIO(data)).convert("L")).astype(int)
        assert gray[:, -10:].mean() > gray[:, :10].mean() + 100  # larger inverse depth (nearer) is brighter
        assert stats(viewer.url)["frames"] == 1


@pytest.mark.skipif(find_chromium() is None, reason="no Chromium on PATH (Debian: apt-get install chromium); "
                                                    "the page is tested at the HTTP level without it")
def test_the_page_in_headless_chromium_shows_moving_pictures(tmp_path, ckpt):
    from browser import Browser

    with ServingRun(tmp_path, ckpt) as run, Browser(1200, 500) as browser:
        browser.goto(run.url)
        first = int(browser.wait_for("Number(document.getElementById('frames').textContent) || 0", timeout=90))
        browser.wait_for(f"Number(document.getElementById('frames').textContent) > {first}", timeout=90)
        browser.wait_for("['input', 'depth'].every(id => document.getElementById(id).naturalWidth === 196)", timeout=60)
        assert browser.evaluate("document.getElementById('colormap').options.length") >= 6
        rects = browser.evaluate("JSON.stringify(['input', 'depth'].map(id => "
                                 "document.getElementById(id).getBoundingClientRect()))")
        png = browser.screenshot()
        code, _, err = run.interrupt()  # with the page still connected
    assert code == 130, err
    (tmp_path / "page.png").write_bytes(png)  # kept with the test's temporary files, to look at
    shot = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(np.float32)
    assert shot.shape == (500, 1200, 3)
    for rect in json.loads(rects):
        area = shot[int(rect["top"]) + 2:int(rect["bottom"]) - 2, int(rect["left"]) + 2:int(rect["right"]) - 2]
        assert area.shape[0] > 100 and area.shape[1] > 200  # the images are laid out at a useful size
        assert area.std() > 10 and len(np.unique(area.reshape(-1, 3)[::7], axis=0)) > 20  # a picture, not blank


class _ListSource:
    """A source of ready frames (no decoding), for tests of the pipeline's plumbing."""

    name, live, frame_count = "frames", False, None

    def __init__(self, count):
        self.images = make_frames(count, seed=4)

    def __iter__(self):
        for i, image in enumerate(self.images):
            yield Frame(image, i, pts=i)

    def close(self):
        pass


class _IndexSession:
    """A stand-in model: the depth of frame i is filled with i (an independent oracle of order)."""

    def __init__(self):
        self.calls = 0

    def step(self, image):
        self.calls += 1
        return np.full(image.shape[:2], float(self.calls - 1), dtype=np.float32)

    def reset(self):
        pass


class _Recorder:
    def __init__(self, delay=0.0, fail_at=None, gate=None):
        self.seen, self.delay, self.fail_at, self.gate, self.closed = [], delay, fail_at, gate, False
        self.calls = 0

    def write(self, frame, depth, stats=None):
        self.calls += 1
        if self.gate is not None:
            self.gate.wait(30)
        if self.fail_at is not None and self.calls == self.fail_at:  # the n-th frame it is given
            raise RuntimeError("viewer went away")
        time.sleep(self.delay)
        self.seen.append((frame.index, float(depth[0, 0]), stats))

    def close(self):
        self.closed = True


def test_consumers_get_their_own_queue_files_every_frame_viewers_drop_and_never_stop_the_run():
    from flashdepth.io.sinks import OUTPUTS, Consumer
    from flashdepth.apps.pipeline import StreamRun
    from flashdepth.viewer import VIEWERS

    assert all(not row.drops and row.path for row in OUTPUTS.values())  # files get every frame
    assert all(row.drops and row.path is None for row in VIEWERS.values())  # viewers may drop
    frames = 40
    slow_file = _Recorder(delay=0.005)
    stuck = threading.Event()
    blocked_viewer = _Recorder(gate=stuck)  # never takes a frame until the run is over
    failing_viewer = _Recorder(fail_at=1)  # fails at the first frame it is given
    row = Consumer("test-view", None, "a viewer under test", lambda path, o: None, drops=True)
    run = StreamRun(_ListSource(frames), _IndexSession(), [slow_file], queue_size=2,
                    viewers=[(row, blocked_viewer), (row, failing_viewer)])
    run.viewer_wait_s = 0.2
    finished = threading.Thread(target=run.run, daemon=True)
    finished.start()
    finished.join(timeout=60)
    assert not finished.is_alive()  # a viewer that takes nothing never holds the run (its feed waits on the gate)
    stuck.set()
    run.viewer_feeds[0][1].thread.join(timeout=30)
    assert run.stats.frames == frames and slow_file.closed
    assert [i for i, _, _ in slow_file.seen] == list(range(frames))  # every frame, in order
    assert all(value == index for index, value, _ in slow_file.seen)
    assert not blocked_viewer.closed and not failing_viewer.closed  # viewers belong to the caller
    # the blocked viewer got at most its queue (2) plus the frame it held: the oldest were dropped
    assert len(blocked_viewer.seen) <= 3 and blocked_viewer.seen[-1][0] == frames - 1
    assert failing_viewer.seen == [] and failing_viewer.calls == 1  # given up at its error, the run went on
    names = dict(run.viewer_errors())
    assert list(names) == ["test-view"] and "went away" in str(names["test-view"])
    seen = blocked_viewer.seen[-1][2]
    assert seen.frames == frames and len(seen.latencies_ms) == 1  # viewers are told the run's progress


def test_run_errors_carry_the_stats_of_the_frames_done(tmp_path):
    from flashdepth.apps.pipeline import StreamRun

    class Broken(_ListSource):
        def __iter__(self):
            yield from list(super().__iter__())[:5]
            raise RuntimeError("decoder broke")

    run = StreamRun(Broken(9), _IndexSession(), [_Recorder()])
    with pytest.raises(RuntimeError, match="decoder broke") as e:
        run.run()
    assert e.value.stats is run.stats and e.value.stats.frames == 5


def _raw_get(url, host_header):
    """Status code of GET url with the given Host header (None: no Host header at all)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        host = "" if host_header is None else f"Host: {host_header}\r\n"
        sock.sendall(f"GET /stats.json HTTP/1.1\r\n{host}Connection: close\r\n\r\n".encode())
        reply = b""
        while chunk := sock.recv(4096):
            reply += chunk
    return int(reply.split(b" ", 2)[1])


def test_requests_for_another_host_are_refused_dns_rebinding():
    with LiveViewer() as viewer:
        port = viewer.port
        for allowed in (f"127.0.0.1:{port}", f"localhost:{port}", "localhost", "127.0.0.1"):
            assert _raw_get(viewer.url, allowed) == 200, allowed
        for refused in ("evil.example.com", f"evil.example.com:{port}", f"127.0.0.1:{port + 1}",
                        f"192.168.0.10:{port}", None, ""):
            assert _raw_get(viewer.url, refused) == 403, refused
    server = LiveViewer(host="0.0.0.0").server  # a wildcard bind: address literals, never DNS names
    server.port = 8080
    assert server.host_allowed("10.1.2.3:8080") and server.host_allowed("[fe80::1]:8080")
    assert not server.host_allowed("rebind.attacker.example:8080") and not server.host_allowed("10.1.2.3:9")
    named = LiveViewer(host="192.168.7.7").server
    named.port = 8080
    assert named.host_allowed("192.168.7.7:8080") and not named.host_allowed("10.1.2.3:8080")


def _closed_by_server(sock, within):
    """Whether the server closes ``sock`` within ``within`` seconds (recv sees the end)."""
    sock.settimeout(within)
    try:
        return sock.recv(1) == b""
    except socket.timeout:
        return False
    except ConnectionResetError:
        return True


def test_idle_connections_time_out_and_are_capped():
    with LiveViewer(request_timeout=0.5, max_connections=2) as viewer:
        address = ("127.0.0.1", viewer.port)
        idle = [socket.create_connection(address, timeout=10) for _ in range(2)]
        wait_until(lambda: viewer.server._slots._value == 0, timeout=10, what="two connections taken")
        extra = socket.create_connection(address, timeout=10)
        wait_until(lambda: viewer.server.refused >= 1, timeout=10, what="the connection over the cap refused")
        assert _closed_by_server(extra, within=5)  # over the cap: closed unread
        assert all(_closed_by_server(s, within=5) for s in idle)  # never sent a request: dropped after 0.5 s
        assert _raw_get(viewer.url, f"127.0.0.1:{viewer.port}") == 200  # the slots are free again
        for s in (*idle, extra):
            s.close()


def test_many_idle_and_resetting_clients_under_a_low_open_file_limit_never_touch_the_run(tmp_path, ckpt):
    import os
    import resource
    import struct


    # A source paced in real time (20 frames/s, 4 s) so the run outlasts the clients' connections
    # however fast the machine: an image folder of a tiny model ends in well under a second.
    frames = 80
    source = "lavfi:testsrc=size=196x140:rate=20,realtime"
    out = tmp_path / "out"
    limit = 128

    def low_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-m", "flashdepth_cli", "run", source, "-o", str(out),
                             "--checkpoint", str(ckpt), "--device", "cpu", "--save", "raw,vis", "--serve", "0",
                             "--max-frames", str(frames), "--quiet"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=low_limit)
    clients = []
    try:
        line = proc.stderr.readline()
        assert "live view at" in line, line
        port = int(line.strip().rstrip("/").rsplit(":", 1)[1])
        # Resets first (quick), then the idle crowd: on a fast machine the run may end soon after,
        # and a connection refused then only means the server has closed with the run.
        for _ in range(50):  # resets: a request cut by an RST
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()
        for i in range(2 * limit):  # idle: they connect and never send a request
            try:
                clients.append(socket.create_connection(("127.0.0.1", port), timeout=5))
            except OSError:
                break
        printed, err = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
        for s in clients:
            s.close()
    assert proc.returncode == 0, err
    assert len(clients) > limit  # more connections than the run may open files
    assert np.load(out / "depth.npy").shape[0] == frames
    assert "Traceback" not in err and err.count("\n") <= 2, err

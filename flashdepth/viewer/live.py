"""A live view of a running stream in the browser, served by the standard library.

:class:`LiveViewer` is an observer of a run: ``update(frame, depth, stats)`` only keeps a
reference to the latest frame (constant time, no copy, no encoding), so the model never waits
for it. The HTTP server runs on its own daemon threads, one per connection; a connection that
streams encodes the latest frame when it is ready for one, so a slow client skips frames (its
own, never the run's outputs) and a client that stops reading is dropped after ``send_timeout``.

Endpoints:

* ``/``: the page (input | depth side by side, FPS, latency, frame count, colour map).
* ``/stream.mjpg?view=input|depth[&colormap=NAME]``: an MJPEG stream (``multipart/x-mixed-replace``),
  one JPEG per new frame. Browsers show it in a plain ``<img>``, without scripts, and the server
  pushes a frame as soon as it exists: lower latency than polling, and no request per frame.
* ``/frame.jpg?view=...``: the latest frame as one JPEG (for scripts and ``curl``).
* ``/stats.json``: frames, FPS and the model's median latency over the last 30 frames, frame size,
  streaming clients.
"""

from __future__ import annotations

import collections
import importlib.resources
import io
import ipaddress
import json
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Optional
from urllib.parse import parse_qs, urlsplit

import numpy as np

from ..errors import ConfigError, ServeAddressError, require_modules
from ..vis.colormap import COLORMAPS, DEFAULT_COLORMAP, StableNormalizer, colorize, lut
from ..utils import as_rgb8

VIEWS = ("input", "depth")
_BOUNDARY = b"flashdepth-frame"
_WINDOW = 30  # the page's FPS and latency are over the last 30 frames


@dataclass(frozen=True)
class _Latest:
    """The latest frame and what the page shows about it; replaced whole, never changed."""

    seq: int  # 1, 2, ... in the order of update() calls
    image: np.ndarray  # (H, W, C) the input as the source gave it
    depth: np.ndarray  # (H, W) the model's output
    frames: int
    fps: float  # over the last frames shown
    latencies_ms: tuple[float, ...]  # the model's, of the last frames


class LiveViewer:
    """Serve the latest frame of a stream to browsers.

    ``host``/``port``: where to listen (127.0.0.1: this machine only; port 0 picks a free one,
    see :attr:`url`). Any other address lets anyone who reaches it watch, without a password:
    :attr:`is_loopback` says which it is. ``colormap`` is the page's default colour map (one of
    :data:`flashdepth.io.colormap.COLORMAPS`), ``jpeg_quality`` 1-95, ``send_timeout`` the seconds
    a client may block a send before it is dropped.

    Use as a context manager (or ``start()`` / ``close()``) and pass it as an observer:
    ``run_to_folder(..., on_frame=[viewer])``, or call ``viewer.update(image, depth)`` yourself.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, colormap: str = DEFAULT_COLORMAP, jpeg_quality: int = 80,
                 send_timeout: float = 10.0):
        require_modules("the live viewer", (("PIL", "pillow", "video"), ("matplotlib", "matplotlib", "video")))
        lut(colormap)  # an unknown colour map fails here, not in a server thread
        if not (isinstance(port, int) and 0 <= port <= 65535):
            raise ConfigError(f"port={port!r} is not a TCP port; give 0 to 65535 (0 picks a free one)")
        if not 1 <= jpeg_quality <= 95:
            raise ConfigError(f"jpeg_quality={jpeg_quality!r} must be between 1 and 95")
        self.host, self.port, self.colormap = host, port, colormap
        self.jpeg_quality, self.send_timeout = jpeg_quality, send_timeout
        self._latest: Optional[_Latest] = None
        self._times: collections.deque = collections.deque(maxlen=_WINDOW)
        self._latencies: collections.deque = collections.deque(maxlen=_WINDOW)
        self._updates = 0
        self._new_frame = threading.Condition()
        self._render_lock = threading.Lock()
        self._rendered: dict = {}  # (seq, view, colormap) -> JPEG bytes, for the latest seq only
        self._unit: tuple[int, Optional[np.ndarray]] = (0, None)  # (seq, depth normalised to [0, 1])
        self._normalize = StableNormalizer()
        self._count_lock = threading.Lock()
        self.clients = 0  # connections streaming now
        self.frames_sent = 0  # JPEGs sent on streams, all clients together
        self.frames_skipped = 0  # frames a streaming client was too slow for (it got a later one)
        self._closed = threading.Event()
        self._streams: set = set()  # sockets of the streaming connections, shut down by close()
        self._server: Optional[ThreadingHTTPServer] = None
        self._thread: Optional[threading.Thread] = None

    # ------------------------------------------------------------------ life cycle
    def start(self) -> "LiveViewer":
        if self._server is not None:
            return self
        server_class = _Server6 if ":" in self.host else _Server
        try:
            server = server_class((self.host, self.port), _Handler)
        except OSError as e:
            raise ServeAddressError(self.host, self.port, e.strerror or str(e)) from None
        server.viewer = self
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="flashdepth-viewer", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving: open streams end, the port is released."""
        self._closed.set()
        with self._new_frame:
            self._new_frame.notify_all()
        with self._count_lock:
            streams = list(self._streams)
        for sock in streams:  # wakes a send blocked on a client that does not read
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = None

    def __enter__(self) -> "LiveViewer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    @property
    def is_loopback(self) -> bool:
        """Whether only this machine can connect."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:  # a host name: it may resolve to anything
            return False

    # ------------------------------------------------------------------ the run's side
    def update(self, frame: Any, depth: np.ndarray, stats: Any = None) -> None:
        """Make (frame, depth) the frame shown. ``frame``: a :class:`flashdepth.io.Frame` or an
        (H, W, 3) image; ``stats``: the run's :class:`flashdepth.pipeline.RunStats`, if any.

        Constant time: keeps references (the arrays must not be changed afterwards) and wakes the
        streaming connections; it never encodes, copies an image or waits for a client.
        """
        image = getattr(frame, "image", frame)
        now = time.perf_counter()
        self._times.append(now)
        latencies = getattr(stats, "latencies_ms", None)
        if latencies:
            self._latencies.append(float(latencies[-1]))
        self._updates += 1
        span = now - self._times[0]
        fps = (len(self._times) - 1) / span if span > 0 else 0.0
        frames = getattr(stats, "frames", None) or self._updates
        self._latest = _Latest(self._updates, image, depth, frames, fps, tuple(self._latencies))  # O(_WINDOW)
        with self._new_frame:
            self._new_frame.notify_all()

    write = update  # a consumer of a run: run_to_folder(..., viewers=open_viewers(["live"]))
    __call__ = update  # a FrameObserver: run_to_folder(..., on_frame=[viewer])

    # ------------------------------------------------------------------ the server's side
    def _wait_newer(self, seen: int, timeout: float) -> Optional[_Latest]:
        with self._new_frame:
            latest = self._latest
            if (latest is None or latest.seq <= seen) and not self._closed.is_set():
                self._new_frame.wait(timeout)
                latest = self._latest
        return latest if latest is not None and latest.seq > seen else None

    def _jpeg(self, latest: _Latest, view: str, colormap: str) -> bytes:
        """The JPEG of one view of ``latest``, encoded once whatever the number of clients."""
        key = (latest.seq, view, colormap if view == "depth" else "")
        with self._render_lock:
            data = self._rendered.get(key)
            if data is None:
                rgb = as_rgb8(latest.image) if view == "input" else colorize(self._unit_depth(latest), lut(colormap))
                data = _encode_jpeg(rgb, self.jpeg_quality)
                self._rendered = {k: v for k, v in self._rendered.items() if k[0] == latest.seq}
                self._rendered[key] = data
        return data

    def _unit_depth(self, latest: _Latest) -> np.ndarray:
        seq, unit = self._unit
        if seq != latest.seq:  # the normaliser moves once per frame shown, whatever the clients
            unit = self._normalize(np.asarray(latest.depth, dtype=np.float32))  # (H, W) in [0, 1]
            self._unit = (latest.seq, unit)
        return unit

    def _stats(self) -> dict:
        latest = self._latest
        return {
            "frames": latest.frames if latest else 0,
            "fps": round(latest.fps, 2) if latest else 0.0,
            "latency_ms": round(float(np.median(latest.latencies_ms)), 1) if latest and latest.latencies_ms else None,
            "width": int(latest.depth.shape[1]) if latest else None,
            "height": int(latest.depth.shape[0]) if latest else None,
            "clients": self.clients,
            "colormap": self.colormap,
            "colormaps": list(COLORMAPS),
        }

    def _count(self, name: str, n: int = 1) -> None:
        with self._count_lock:
            setattr(self, name, getattr(self, name) + n)


def _encode_jpeg(rgb: np.ndarray, quality: int) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def _page() -> bytes:
    return importlib.resources.files("flashdepth.viewer").joinpath("static", "index.html").read_bytes()


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a connection never keeps the process alive
    block_on_close = False  # close() does not wait for a stalled client's send to time out
    viewer: LiveViewer


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "flashdepth-viewer"

    def log_message(self, format: str, *args: Any) -> None:  # no access log on the run's stderr
        pass

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        viewer = self.server.viewer
        if url.path in ("/", "/index.html"):
            self._send(200, "text/html; charset=utf-8", _page())
        elif url.path == "/stats.json":
            self._send(200, "application/json", json.dumps(viewer._stats()).encode())
        elif url.path in ("/stream.mjpg", "/frame.jpg"):
            view, colormap = query.get("view", "depth"), query.get("colormap", viewer.colormap)
            if view not in VIEWS or colormap not in COLORMAPS:
                self._send(400, "text/plain", f"view is one of {', '.join(VIEWS)}; colormap one of "
                                              f"{', '.join(COLORMAPS)}\n".encode())
            elif url.path == "/frame.jpg":
                latest = viewer._latest
                if latest is None:
                    self._send(503, "text/plain", b"no frame yet\n")
                else:
                    self._send(200, "image/jpeg", viewer._jpeg(latest, view, colormap))
            else:
                self._stream(viewer, view, colormap)
        else:
            self._send(404, "text/plain", b"not found\n")

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _stream(self, viewer: LiveViewer, view: str, colormap: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={_BOUNDARY.decode()}")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        self.connection.settimeout(viewer.send_timeout)  # a client that stops reading is dropped
        with viewer._count_lock:
            viewer.clients += 1
            viewer._streams.add(self.connection)
        seen = 0
        try:
            while not viewer._closed.is_set():
                latest = viewer._wait_newer(seen, timeout=0.5)
                if latest is None:
                    continue
                if seen:
                    viewer._count("frames_skipped", latest.seq - seen - 1)
                seen = latest.seq
                data = viewer._jpeg(latest, view, colormap)
                self.wfile.write(b"--%s\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n%s\r\n"
                                 % (_BOUNDARY, len(data), data))
                viewer._count("frames_sent")
        except OSError:  # the page was closed, the client stalled past the timeout, the network went
            pass
        finally:
            with viewer._count_lock:
                viewer.clients -= 1
                viewer._streams.discard(self.connection)

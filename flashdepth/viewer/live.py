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
  streaming clients, the stream's unit (a row of :data:`flashdepth.config.UNITS`, as the run says
  with each frame) and the colour legend: the metres at the two ends of the depth colour map
  (exact for a metric stream, approximate ``100 / value`` for a relative one).

Three parts, each with one job: :class:`FrameBoard` (the latest frame and the numbers about it,
what the run writes), :class:`JpegCache` (each view of the latest frame encoded once, whatever
the number of clients) and :class:`LiveServer` (HTTP with a route table, and the limits that keep
clients from reaching the run: a read timeout, a cap on connections, the Host check).
:class:`LiveViewer` puts them together.

Limits: a connection must send its request within ``request_timeout`` seconds (else it is
closed); at most ``max_connections`` connections are open at once (more are closed at once,
unread), so clients can hold neither the run's threads nor its file descriptors; a request whose
``Host`` is not the address served (or, on loopback, ``localhost`` / ``127.0.0.1`` / ``[::1]``) is
refused with 403, so a web page cannot reach the viewer through DNS rebinding; clients that reset
their connection print nothing.
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
from typing import Any, Callable, Optional
from urllib.parse import parse_qs, urlsplit

import numpy as np

from ..config import UNITS
from ..errors import ConfigError, ServeAddressError, require_modules
from ..geometry import DEPTH_SCALE
from ..io.sinks import display_values, unit_record
from ..utils import as_rgb8
from ..vis.colormap import COLORMAPS, DEFAULT_COLORMAP, StableNormalizer, colorize, lut

VIEWS = ("input", "depth")
_BOUNDARY = b"flashdepth-frame"
_WINDOW = 30  # the page's FPS and latency are over the last 30 frames
_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True)
class _Latest:
    """The latest frame and what the page shows about it; replaced whole, never changed."""

    seq: int  # 1, 2, ... in the order of update() calls
    image: np.ndarray  # (H, W, C) the input as the source gave it
    depth: np.ndarray  # (H, W) the model's output
    frames: int
    fps: float  # over the last frames shown
    latencies_ms: tuple[float, ...]  # the model's, of the last frames
    unit: str = "relative-inverse-depth"  # what ``depth`` holds (a name of UNITS)


class FrameBoard:
    """The latest frame of a stream: the run posts (constant time), the server's threads wait for
    a newer one. Nothing here encodes, copies an image or waits for a client."""

    def __init__(self):
        self._latest: Optional[_Latest] = None
        self._times: collections.deque = collections.deque(maxlen=_WINDOW)
        self._latencies: collections.deque = collections.deque(maxlen=_WINDOW)
        self._updates = 0
        self._unit = "relative-inverse-depth"  # until a run says otherwise (FrameStats.unit)
        self._new_frame = threading.Condition()
        self.closed = threading.Event()

    @property
    def latest(self) -> Optional[_Latest]:
        return self._latest

    def post(self, image: np.ndarray, depth: np.ndarray, stats: Any = None) -> None:
        now = time.perf_counter()
        self._times.append(now)
        latencies = getattr(stats, "latencies_ms", None)
        if latencies:
            self._latencies.append(float(latencies[-1]))
        self._updates += 1
        span = now - self._times[0]
        fps = (len(self._times) - 1) / span if span > 0 else 0.0
        frames = getattr(stats, "frames", None) or self._updates
        self._unit = getattr(stats, "unit", None) or self._unit
        self._latest = _Latest(self._updates, image, depth, frames, fps, tuple(self._latencies), self._unit)  # O(_WINDOW)
        with self._new_frame:
            self._new_frame.notify_all()

    def wait_newer(self, seen: int, timeout: float) -> Optional[_Latest]:
        """A frame newer than ``seen``, or None after ``timeout`` seconds (or once closed)."""
        with self._new_frame:
            latest = self._latest
            if (latest is None or latest.seq <= seen) and not self.closed.is_set():
                self._new_frame.wait(timeout)
                latest = self._latest
        return latest if latest is not None and latest.seq > seen else None

    def close(self) -> None:
        self.closed.set()
        with self._new_frame:
            self._new_frame.notify_all()


class JpegCache:
    """The JPEG of each view of the latest frame, encoded once whatever the number of clients;
    the depth normaliser moves once per frame shown."""

    def __init__(self, quality: int):
        self.quality = quality
        self._lock = threading.Lock()
        self._rendered: dict = {}  # (seq, view, colormap) -> JPEG bytes, for the latest seq only
        self._unit: tuple[int, Optional[np.ndarray]] = (0, None)  # (seq, depth normalised to [0, 1])
        self._normalize = StableNormalizer()

    def jpeg(self, latest: _Latest, view: str, colormap: str) -> bytes:
        key = (latest.seq, view, colormap if view == "depth" else "")
        with self._lock:
            data = self._rendered.get(key)
            if data is None:
                rgb = as_rgb8(latest.image) if view == "input" else colorize(self._unit_depth(latest), lut(colormap))
                data = _encode_jpeg(rgb, self.quality)
                self._rendered = {k: v for k, v in self._rendered.items() if k[0] == latest.seq}
                self._rendered[key] = data
        return data

    def _unit_depth(self, latest: _Latest) -> np.ndarray:
        seq, unit = self._unit
        if seq != latest.seq:
            shown = display_values(np.asarray(latest.depth, dtype=np.float32), latest.unit)  # (H, W) inverse
            unit = self._normalize(shown)  # (H, W) in [0, 1]
            self._unit = (latest.seq, unit)
        return unit

    def legend(self, unit: str) -> Optional[dict]:
        """The metres at the near (high) and far (low) ends of the depth colour map, or None before
        the first depth frame was drawn; exact for a metric unit, approximate for a relative one."""
        rng = self._normalize.range
        if rng is None:
            return None
        row = UNITS[unit]
        scale = 1.0 if row.metric else DEPTH_SCALE  # the shown values are inverse depth: 1/m or 100/m

        def metres(value: float) -> Optional[float]:
            return round(scale / value, 3) if value > 0 else None  # None: at or beyond infinity

        return {"near_m": metres(rng[1]), "far_m": metres(rng[0]), "exact": row.metric}


#: a route: (handler, parsed query) -> None; it answers through the handler's send/stream methods
Route = Callable[["_Handler", dict], None]


class LiveServer:
    """An HTTP server on its own daemon threads, one per connection, answering ``routes``.

    ``request_timeout``: seconds a connection may take to send its request; ``max_connections``:
    connections open at once (more are closed unread). Requests whose Host header is not an
    allowed name of the address served get 403. Nothing a client does reaches the caller: errors
    of a connection (resets included) end that connection silently.
    """

    def __init__(self, host: str, port: int, routes: dict[str, Route], request_timeout: float = 10.0,
                 max_connections: int = 32):
        if not (isinstance(port, int) and 0 <= port <= 65535):
            raise ConfigError(f"port={port!r} is not a TCP port; give 0 to 65535 (0 picks a free one)")
        if not (isinstance(max_connections, int) and max_connections >= 1):
            raise ConfigError(f"max_connections={max_connections!r} must be a whole number >= 1")
        if not request_timeout > 0:
            raise ConfigError(f"request_timeout={request_timeout!r} must be a positive number of seconds")
        self.host, self.port, self.routes = host, port, routes
        self.request_timeout, self.max_connections = request_timeout, max_connections
        self.refused = 0  # connections closed unread because max_connections were open
        self._slots = threading.BoundedSemaphore(max_connections)
        self._streams: set = set()  # sockets of long-lived responses, shut down by close()
        self._lock = threading.Lock()
        self._server: Optional[_Server] = None
        self._thread: Optional[threading.Thread] = None

    @property
    def is_loopback(self) -> bool:
        """Whether only this machine can connect."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:  # a host name: it may resolve to anything
            return False

    def host_allowed(self, header: Optional[str]) -> bool:
        """Whether a request's Host header names the address served (a browser sent by a web page
        to another name, as in DNS rebinding, is refused)."""
        if not header:
            return False
        name = header.strip().lower()
        if name.startswith("["):  # [v6]:port
            name = name[1:name.find("]")] if "]" in name else name
        elif name.count(":") == 1:
            name, _, port = name.partition(":")
            if port != str(self.port):
                return False
        if self.is_loopback:
            return name in _LOOPBACK_NAMES
        if name == self.host.lower():
            return True
        try:  # bound to a wildcard (0.0.0.0, ::): any address literal of this machine, never a DNS name
            wildcard = ipaddress.ip_address(self.host).is_unspecified
        except ValueError:
            return False
        if not wildcard:
            return False
        try:
            ipaddress.ip_address(name)
            return True
        except ValueError:
            return name in (socket.gethostname().lower(), "localhost")

    def start(self) -> "LiveServer":
        if self._server is not None:
            return self
        server_class = _Server6 if ":" in self.host else _Server
        try:
            server = server_class((self.host, self.port), _Handler)
        except OSError as e:
            raise ServeAddressError(self.host, self.port, e.strerror or str(e)) from None
        server.live = self
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="flashdepth-viewer", daemon=True)
        self._thread.start()
        return self

    def track(self, sock, streaming: bool) -> None:
        with self._lock:
            (self._streams.add if streaming else self._streams.discard)(sock)

    def close(self) -> None:
        with self._lock:
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


class LiveViewer:
    """Serve the latest frame of a stream to browsers.

    ``host``/``port``: where to listen (127.0.0.1: this machine only; port 0 picks a free one,
    see :attr:`url`). Any other address lets anyone who reaches it watch, without a password:
    :attr:`is_loopback` says which it is. ``colormap`` is the page's default colour map (one of
    :data:`flashdepth.vis.colormap.COLORMAPS`), ``jpeg_quality`` 1-95, ``send_timeout`` the seconds
    a client may block a send before it is dropped, ``request_timeout`` the seconds a connection
    may take to send its request, ``max_connections`` the connections served at once.

    Use as a context manager (or ``start()`` / ``close()``) and pass it to a run
    (``run_to_folder(..., viewers=open_viewers(["live"]))`` or ``on_frame=[viewer]``), or call
    ``viewer.update(image, depth)`` yourself.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, colormap: str = DEFAULT_COLORMAP, jpeg_quality: int = 80,
                 send_timeout: float = 10.0, request_timeout: float = 10.0, max_connections: int = 32):
        require_modules("the live viewer", (("PIL", "pillow", "video"), ("matplotlib", "matplotlib", "video")))
        lut(colormap)  # an unknown colour map fails here, not in a server thread
        if not 1 <= jpeg_quality <= 95:
            raise ConfigError(f"jpeg_quality={jpeg_quality!r} must be between 1 and 95")
        self.colormap, self.send_timeout = colormap, send_timeout
        self.board = FrameBoard()
        self.cache = JpegCache(jpeg_quality)
        routes = {"/": self._page, "/index.html": self._page, "/stats.json": self._stats,
                  "/frame.jpg": self._frame, "/stream.mjpg": self._stream}
        self.server = LiveServer(host, port, routes, request_timeout, max_connections)
        self._count_lock = threading.Lock()
        self.clients = 0  # connections streaming now
        self.frames_sent = 0  # JPEGs sent on streams, all clients together
        self.frames_skipped = 0  # frames a streaming client was too slow for (it got a later one)

    # ------------------------------------------------------------------ life cycle
    def start(self) -> "LiveViewer":
        self.server.start()
        return self

    def close(self) -> None:
        """Stop serving: open streams end, the port is released."""
        self.board.close()
        self.server.close()

    def __enter__(self) -> "LiveViewer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def host(self) -> str:
        return self.server.host

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    @property
    def is_loopback(self) -> bool:
        """Whether only this machine can connect."""
        return self.server.is_loopback

    # ------------------------------------------------------------------ the run's side
    def update(self, frame: Any, depth: np.ndarray, stats: Any = None) -> None:
        """Make (frame, depth) the frame shown. ``frame``: a :class:`flashdepth.io.Frame` or an
        (H, W, 3) image; ``stats``: the run's :class:`flashdepth.apps.pipeline.RunStats` (or the
        :class:`flashdepth.apps.pipeline.FrameStats` a run gives its viewers), if any.

        Constant time: keeps references (the arrays must not be changed afterwards) and wakes the
        streaming connections; it never encodes, copies an image or waits for a client.
        """
        self.board.post(getattr(frame, "image", frame), depth, stats)

    write = update  # a consumer of a run: run_to_folder(..., viewers=open_viewers(["live"]))
    __call__ = update  # a FrameObserver: run_to_folder(..., on_frame=[viewer])

    # ------------------------------------------------------------------ the routes
    def _count(self, name: str, n: int = 1) -> None:
        with self._count_lock:
            setattr(self, name, getattr(self, name) + n)

    def _page(self, handler: "_Handler", query: dict) -> None:
        handler.send(200, "text/html; charset=utf-8", _page())

    def _stats(self, handler: "_Handler", query: dict) -> None:
        latest = self.board.latest
        body = {
            "frames": latest.frames if latest else 0,
            "fps": round(latest.fps, 2) if latest else 0.0,
            "latency_ms": round(float(np.median(latest.latencies_ms)), 1) if latest and latest.latencies_ms else None,
            "width": int(latest.depth.shape[1]) if latest else None,
            "height": int(latest.depth.shape[0]) if latest else None,
            "clients": self.clients,
            "colormap": self.colormap,
            "colormaps": list(COLORMAPS),
            "unit": unit_record(latest.unit if latest else "relative-inverse-depth", DEPTH_SCALE),
            "legend": self.cache.legend(latest.unit) if latest else None,
        }
        handler.send(200, "application/json", json.dumps(body).encode())

    def _view(self, handler: "_Handler", query: dict) -> Optional[tuple[str, str]]:
        view, colormap = query.get("view", "depth"), query.get("colormap", self.colormap)
        if view not in VIEWS or colormap not in COLORMAPS:
            handler.send(400, "text/plain", f"view is one of {', '.join(VIEWS)}; colormap one of "
                                            f"{', '.join(COLORMAPS)}\n".encode())
            return None
        return view, colormap

    def _frame(self, handler: "_Handler", query: dict) -> None:
        chosen = self._view(handler, query)
        if chosen is None:
            return
        latest = self.board.latest
        if latest is None:
            handler.send(503, "text/plain", b"no frame yet\n")
        else:
            handler.send(200, "image/jpeg", self.cache.jpeg(latest, *chosen))

    def _stream(self, handler: "_Handler", query: dict) -> None:
        chosen = self._view(handler, query)
        if chosen is None:
            return
        handler.send_response(200)
        handler.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={_BOUNDARY.decode()}")
        handler.send_header("Cache-Control", "no-store")
        handler.send_header("Connection", "close")
        handler.end_headers()
        handler.connection.settimeout(self.send_timeout)  # a client that stops reading is dropped
        self._count("clients")
        self.server.track(handler.connection, True)
        seen = 0
        try:
            while not self.board.closed.is_set():
                latest = self.board.wait_newer(seen, timeout=0.5)
                if latest is None:
                    continue
                if seen:
                    self._count("frames_skipped", latest.seq - seen - 1)
                seen = latest.seq
                data = self.cache.jpeg(latest, *chosen)
                handler.wfile.write(b"--%s\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n%s\r\n"
                                    % (_BOUNDARY, len(data), data))
                self._count("frames_sent")
        except OSError:  # the page was closed, the client stalled past the timeout, the network went
            pass
        finally:
            self._count("clients", -1)
            self.server.track(handler.connection, False)


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
    # The listen backlog: socketserver's default of 5 makes a burst of connections (a page that
    # opens several at once, or a crowd) be refused by the kernel before the cap even sees them.
    request_queue_size = 128
    live: LiveServer

    def process_request(self, request, client_address) -> None:
        """A thread per connection, up to the cap; beyond it the connection is closed unread."""
        if not self.live._slots.acquire(blocking=False):
            self.live.refused += 1
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.live._slots.release()
            raise

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.live._slots.release()

    def handle_error(self, request, client_address) -> None:
        """A client's error ends its connection and nothing else: no traceback on the run's stderr."""


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "flashdepth-viewer"

    def setup(self) -> None:
        self.timeout = self.server.live.request_timeout  # reading the request; a stream sets its own
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:  # no access log on the run's stderr
        pass

    def do_GET(self) -> None:
        live = self.server.live
        if not live.host_allowed(self.headers.get("Host")):
            self.send(403, "text/plain", b"this viewer answers only requests addressed to it by its own address\n")
            return
        url = urlsplit(self.path)
        route = live.routes.get(url.path)
        if route is None:
            self.send(404, "text/plain", b"not found\n")
            return
        route(self, {k: v[-1] for k, v in parse_qs(url.query).items()})

    def send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

"""A threaded loopback HTTP server that misbehaves on request, for download tests.

Routes (``name`` is a key of the ``files`` mapping given to the server):

- ``/media/<name>``      the file, ``Content-Type: video/mp4``; byte ranges when ``ranges=True``
- ``/truncated/<name>``  announces the full ``Content-Length``, sends half, then closes
- ``/slow/<name>``       stalls ``stall_s`` seconds before answering (past a client's timeout)
- ``/stall/<name>``      sends the headers and a third of the body, then stalls ``stall_s`` seconds
- ``/held/<name>``       waits until :meth:`LoopbackMediaServer.release`, then as ``/media/``
- ``/ratelimited/<name>`` HTTP 429
- ``/gone/<name>``       HTTP 410
- ``/quota/<name>``      as ``/media/`` for the first ``quota`` distinct names asked for (and
                         every later request for those), HTTP 429 for any other name: a source
                         that starts refusing after K clips. ``quota = None`` (settable): no limit
- anything else          HTTP 404

Every request is counted per path, so a test can assert what was (not) fetched again, and
logged with its arrival time (pacing and backoff tests). ``/held/`` lets a test know which
clips can finish before it kills a download (kill-and-rerun tests). :func:`make_test_mp4`
synthesises the media.
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from wavbrivl.ffmpeg_bin import ffmpeg_exe

_RANGE = re.compile(r"bytes=(\d*)-(\d*)$")


class LoopbackMediaServer:
    """Serve ``files`` on 127.0.0.1 with an ephemeral port; use as a context manager."""

    def __init__(
        self,
        files: Mapping[str, bytes],
        *,
        ranges: bool = True,
        stall_s: float = 5.0,
        quota: int | None = None,
    ) -> None:
        self.files = dict(files)
        self.ranges = ranges
        self.stall_s = stall_s
        self.quota = quota
        self._admitted: list[str] = []  # /quota/ names served, in the order first asked for
        self._counts: Counter[str] = Counter()
        self._log: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._released = threading.Event()
        self._httpd = _QuietServer(("127.0.0.1", 0), _make_handler(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    # -- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> LoopbackMediaServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._closing.set()  # wake stalled handlers so shutdown does not wait for them
        self._released.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    # -- what tests use ------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    def release(self) -> None:
        """Let every ``/held/`` request, waiting or still to come, be answered."""
        self._released.set()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}"

    def count(self, path: str) -> int:
        """Requests received so far for ``path`` (e.g. ``"/media/a.mp4"``)."""
        with self._lock:
            return self._counts["/" + path.lstrip("/")]

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def request_times(self, path: str) -> list[float]:
        """``time.monotonic()`` at the arrival of each request for ``path``, in order."""
        wanted = "/" + path.lstrip("/")
        with self._lock:
            return [t for t, p in self._log if p == wanted]

    def first_request_times(self) -> dict[str, float]:
        """The arrival time of the first request for each path."""
        first: dict[str, float] = {}
        with self._lock:
            for t, p in self._log:
                first.setdefault(p, t)
        return first

    def admitted(self) -> list[str]:
        """The ``/quota/`` names served so far, in the order they were first asked for."""
        with self._lock:
            return list(self._admitted)

    def _admit(self, name: str) -> bool:
        with self._lock:
            if name in self._admitted:
                return True
            if self.quota is not None and len(self._admitted) >= self.quota:
                return False
            self._admitted.append(name)
            return True

    def _record(self, path: str) -> None:
        with self._lock:
            self._counts[path] += 1
            self._log.append((time.monotonic(), path))


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        # ffmpeg and timed-out clients hang up mid-request all the time; that is not news.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def _make_handler(server: LoopbackMediaServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format, *args):  # noqa: A002 - keep pytest output clean
            pass

        def do_HEAD(self) -> None:
            self._answer(send_body=False)

        def do_GET(self) -> None:
            self._answer(send_body=True)

        def _answer(self, send_body: bool) -> None:
            path = self.path.split("?", 1)[0]
            server._record(path)
            parts = path.strip("/").split("/", 1)
            route, name = (parts[0], parts[1]) if len(parts) == 2 else ("", "")
            data = server.files.get(name)
            if data is None or route not in _ROUTES:
                self._status_only(404)
                return
            _ROUTES[route](self, data, send_body)

        # -- route bodies ----------------------------------------------------------------------
        def _media(self, data: bytes, send_body: bool) -> None:
            start, end = 0, len(data) - 1
            match = _RANGE.match(self.headers.get("Range", "")) if server.ranges else None
            if match and (match.group(1) or match.group(2)):
                if match.group(1):
                    start = int(match.group(1))
                    end = min(int(match.group(2)), end) if match.group(2) else end
                else:  # suffix range: the last N bytes
                    start = max(len(data) - int(match.group(2)), 0)
                if start > end:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
            else:
                self.send_response(200)
            self.send_header("Content-Type", "video/mp4")
            if server.ranges:
                self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(end - start + 1))
            self.end_headers()
            if send_body:
                self._write(data[start : end + 1])

        def _announce_whole(self, data: bytes) -> None:
            """Headers promising all of ``data`` on a connection closed after this reply."""
            self.send_response(200)
            self.send_header("Content-Type", "video/mp4")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Connection", "close")
            self.end_headers()

        def _truncated(self, data: bytes, send_body: bool) -> None:
            self._announce_whole(data)
            if send_body:
                self._write(data[: len(data) // 2])
            self.close_connection = True

        def _slow(self, data: bytes, send_body: bool) -> None:
            server._closing.wait(server.stall_s)
            self._media(data, send_body)

        def _stall(self, data: bytes, send_body: bool) -> None:
            self._announce_whole(data)
            if send_body:
                self._write(data[: len(data) // 3])
                server._closing.wait(server.stall_s)
                self._write(data[len(data) // 3 :])
            self.close_connection = True

        def _held(self, data: bytes, send_body: bool) -> None:
            server._released.wait()
            self._media(data, send_body)

        def _ratelimited(self, data: bytes, send_body: bool) -> None:
            self._status_only(429)

        def _quota(self, data: bytes, send_body: bool) -> None:
            name = self.path.split("?", 1)[0].strip("/").split("/", 1)[1]
            if server._admit(name):
                self._media(data, send_body)
            else:
                self._status_only(429)

        def _gone(self, data: bytes, send_body: bool) -> None:
            self._status_only(410)

        def _status_only(self, code: int) -> None:
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def _write(self, body: bytes) -> None:
            try:
                self.wfile.write(body)
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (timeout, seek): not the server's problem

    _ROUTES = {
        "media": Handler._media,
        "truncated": Handler._truncated,
        "slow": Handler._slow,
        "stall": Handler._stall,
        "held": Handler._held,
        "ratelimited": Handler._ratelimited,
        "gone": Handler._gone,
        "quota": Handler._quota,
    }
    return Handler


def make_test_mp4(
    path: Path, seconds: float = 6.0, *, audio: bool = True, video: bool = True
) -> Path:
    """A tiny H.264/AAC mp4 (64x64, 10 fps, keyframe every second) with its index up front."""
    argv = [ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y"]
    if video:
        argv += ["-f", "lavfi", "-i", f"testsrc2=size=64x64:rate=10:duration={seconds}"]
    if audio:
        argv += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=16000:duration={seconds}"]
    if video:
        argv += ["-c:v", "libx264", "-preset", "ultrafast", "-g", "10", "-pix_fmt", "yuv420p"]
    if audio:
        argv += ["-c:a", "aac", "-b:a", "32k"]
    argv += ["-movflags", "+faststart", str(path)]
    subprocess.run(argv, check=True, capture_output=True)
    return path

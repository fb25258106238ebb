"""Serve a policy-evaluation report over HTTP on the loopback interface.

Why a server at all when the report is static: browsers restrict ``file://`` pages (downloads of
linked recordings, some image loads under strict policies), and a URL is what a remote colleague
gets through an SSH tunnel. Why this one is so narrow: it is started on robots and workstations
that hold recordings and bundles, so it must not become a way to read other files.

* Standard library only: :class:`http.server.SimpleHTTPRequestHandler` with ``directory=``.
* Only files under ``directory`` (normally the run directory, so the report's relative links to
  ``../../episodes/<id>.mcap`` work) are served. Besides the handler's own ``..`` stripping, the
  resolved path (symlinks followed) must stay inside the directory, and requests with ``..`` or
  ``\\`` or NUL in the decoded path or a dot-file component are refused with 404 — the refusal
  does not reveal whether something exists.
* No directory listings (404); ``/`` redirects to ``report/index.html`` when the directory is a
  run directory with a built report.
* Loopback by default. A non-loopback bind needs ``allow_remote=True`` and logs a warning: there
  is no authentication and no TLS.
* Request logging goes to :mod:`logging` at DEBUG, not to stderr; so do clients that hang up
  mid-response (broken pipe, reset, timeout), which http.server would print as tracebacks.
* Bounded resources whatever the clients do (issue 14, item 8: 300 half-sent requests used to
  mean 303 threads, kept forever). One *head reader* thread holds every connection whose request
  head has not fully arrived, in a selector, without a thread each; it drops a connection at its
  deadline (``request_timeout`` after accept, not reset by trickled bytes), answers 431 to a head
  over ``max_head_bytes`` or ``MAX_HEADER_LINES`` lines, and hands a complete head to a fixed
  pool of ``workers`` threads. At most ``max_pending`` connections are open at once (reading,
  queued or being answered); one more is answered 503 and closed at once. Workers answer with a
  socket timeout of ``request_timeout``, so a client that stops reading frees its worker.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import http.server
import io
import ipaddress
import logging
import os
import queue
import selectors
import socket
import sys
import threading
import time
import webbrowser
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

LOG = logging.getLogger(__name__)

__all__ = ["ReportServer", "make_server", "serve", "is_loopback"]

# Defaults sized for a person opening a report in a browser: a page pulls a few dozen images and
# clips over ~6 parallel connections; 8 workers answer them without queueing. 10 s is far longer
# than a loopback/SSH-tunnel browser needs to send its request head, and short enough that a
# stuck or hostile client holds nothing for long. 64 KiB is the head size most servers accept
# (browsers send < 8 KiB). 512 open connections is well above what any browser opens and bounds
# file descriptors and buffered heads (512 x 64 KiB = 32 MiB at worst).
DEFAULT_WORKERS = 8
DEFAULT_REQUEST_TIMEOUT = 10.0
DEFAULT_MAX_HEAD_BYTES = 64 * 1024
DEFAULT_MAX_PENDING = 512
# Request line + header lines; the same cap as http.client's parser, checked before any worker.
MAX_HEADER_LINES = 101
# After an error reply the socket is half-closed and the rest of what the client sends is read
# and dropped for a short while: closing with unread data would send a RST that can destroy the
# reply before the client reads it.
LINGER_SECONDS = 2.0
LINGER_BYTES = 1024 * 1024
_REASONS = {
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
}

CONTENT_TYPES = {
    ".mcap": "application/octet-stream",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".mp4": "video/mp4",
    ".webm": "video/webm",
    ".png": "image/png",
    ".html": "text/html; charset=utf-8",
    ".htm": "text/html; charset=utf-8",
    ".json": "application/json",
    ".md": "text/markdown; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}
# The report has no scripts; forbidding them in the response as well makes an escaping bug inert.
CSP = (
    "default-src 'none'; img-src 'self' data:; media-src 'self'; style-src 'unsafe-inline'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP literals; names are not resolved (DNS could lie)."""
    if host.lower() in {"localhost", "localhost."}:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _path_only(request_path: str) -> str:
    """The path part of a request target, split exactly as the base handler's translate_path."""
    return request_path.split("?", 1)[0].split("#", 1)[0]


class ReportRequestHandler(http.server.SimpleHTTPRequestHandler):
    """Static files under ``directory`` only: containment check, no listings, quiet logs."""

    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, **CONTENT_TYPES}
    server_version = "world-monitor-report"
    sys_version = ""
    # One request per connection (no keep-alive): a worker never waits on an idle connection;
    # idle waiting is the head reader's job, which costs no thread.
    protocol_version = "HTTP/1.0"
    # Socket timeout for the answer (a client that stops reading); ReportServer sets its own.
    timeout: float | None = DEFAULT_REQUEST_TIMEOUT

    def setup(self) -> None:
        """Take the server's timeout, and put back the head bytes the head reader consumed."""
        self.timeout = getattr(self.server, "request_timeout", self.timeout)
        super().setup()
        take: Callable[[socket.socket], bytes] | None = getattr(self.server, "take_head", None)
        head = take(self.connection) if take is not None else b""
        if head:
            self.rfile = io.BufferedReader(_PrefixedReader(head, self.rfile.detach()))

    def _refused(self) -> bool:
        """True (and a 404 sent) when the request must not touch the file system."""
        decoded = unquote(_path_only(self.path))
        parts = [p for p in decoded.split("/") if p]
        if (
            "\\" in decoded
            or "\x00" in decoded
            or any(p == ".." or p.startswith(".") for p in parts)
        ):
            LOG.info("report server: refused %r from %s", self.path, self.client_address[0])
            self.send_error(404, "Not found")
            return True
        root = Path(self.directory).resolve()
        target = Path(self.translate_path(self.path)).resolve()
        if target != root and root not in target.parents:
            LOG.info("report server: %r resolves outside %s", self.path, root)
            self.send_error(404, "Not found")
            return True
        return False

    def send_head(self) -> Any:
        if self._refused():
            return None
        if _path_only(self.path) == "/":
            root = Path(self.directory)
            if not (root / "index.html").is_file() and (root / "report" / "index.html").is_file():
                self.send_response(302)
                self.send_header("Location", "/report/index.html")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return None
        return super().send_head()

    def list_directory(self, path: str | os.PathLike[str]) -> None:
        """Listings would reveal every file of the run dir; a directory without index is 404."""
        self.send_error(404, "Not found")
        return None

    def end_headers(self) -> None:
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Cache-Control", "no-cache")
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        LOG.debug("report server %s: %s", self.address_string(), format % args)


class _PrefixedReader(io.RawIOBase):
    """A socket's raw reader that first returns bytes already read from it (the request head)."""

    def __init__(self, head: bytes, raw: Any) -> None:
        super().__init__()
        self._head = memoryview(head)
        self._raw = raw

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int | None:
        if len(self._head):
            view = memoryview(buffer).cast("B")
            n = min(len(view), len(self._head))
            view[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        return self._raw.readinto(buffer)

    def close(self) -> None:
        try:
            self._raw.close()
        finally:
            super().close()


def _head_end(buf: bytearray | bytes, start: int) -> int | None:
    """End offset of the request head (the first empty line, CRLF or bare LF), or None."""
    ends = [i + len(sep) for sep in (b"\n\r\n", b"\n\n") if (i := buf.find(sep, start)) >= 0]
    return min(ends) if ends else None


def _plain_reply(status: int) -> bytes:
    """A complete, minimal error response, sent without a worker (a handler needs one)."""
    reason = _REASONS[status]
    body = f"{status} {reason}\n".encode()
    head = (
        f"HTTP/1.0 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nX-Content-Type-Options: nosniff\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + body


@dataclass
class _Pending:
    """A connection held by the head reader: what it has sent so far and when it must go."""

    address: Any
    deadline: float
    buf: bytearray = field(default_factory=bytearray)
    lingering: bool = False
    dropped: int = 0


class ReportServer(http.server.HTTPServer):
    """HTTP server with a fixed number of threads whatever the number of connections.

    Why not :class:`http.server.ThreadingHTTPServer`: it starts a thread per connection and
    waits on a silent client forever, so any local process (or a browser's speculative
    pre-connections) could pile up threads and file descriptors without bound. Here:

    * the accept loop (``serve_forever``) only hands the socket to the head reader, or answers
      503 and closes it when ``max_pending`` connections are already open;
    * the head reader thread waits on all of them in one selector, and closes each one that has
      not sent a complete head ``request_timeout`` seconds after it was accepted (408 if it sent
      part of one, silently if it sent nothing, as browsers expect for idle pre-connections);
    * ``workers`` threads answer complete requests, with ``request_timeout`` as socket timeout.

    Threads start with the first connection (or ``serve_forever``) and stop in
    :meth:`server_close`, which also closes every connection still open.
    """

    allow_reuse_address = True
    # The listen backlog: the accept loop is fast, but a browser opening a page with many
    # images connects in bursts; the socketserver default of 5 makes the kernel drop SYNs.
    request_queue_size = 128

    def __init__(
        self,
        server_address: tuple[str, int],
        handler: Callable[..., Any],
        *,
        workers: int = DEFAULT_WORKERS,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
        max_head_bytes: int = DEFAULT_MAX_HEAD_BYTES,
        max_pending: int = DEFAULT_MAX_PENDING,
    ) -> None:
        if workers < 1 or max_pending < 1 or max_head_bytes < 256 or not request_timeout > 0:
            raise ValueError(
                "report server: need workers >= 1, max_pending >= 1, max_head_bytes >= 256 and "
                f"request_timeout > 0 (got {workers}, {max_pending}, {max_head_bytes}, "
                f"{request_timeout})"
            )
        super().__init__(server_address, handler)  # binds; on failure nothing else exists yet
        self.workers = workers
        self.request_timeout = float(request_timeout)
        self.max_head_bytes = max_head_bytes
        self.max_pending = max_pending
        self._slots = threading.BoundedSemaphore(max_pending)
        self._incoming: collections.deque[tuple[socket.socket, Any, float]] = collections.deque()
        self._jobs: queue.SimpleQueue[tuple[socket.socket, Any, bytes] | None] = queue.SimpleQueue()
        self._heads: dict[socket.socket, bytes] = {}
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._closing = threading.Event()
        self._start_lock = threading.Lock()
        self._reader: threading.Thread | None = None
        self._pool: list[threading.Thread] = []
        self._closed = False
        self._full_warned = False

    # -- accept side (the serve_forever thread) ------------------------------------------------

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        self._start_threads()
        super().serve_forever(poll_interval)

    def process_request(self, request: Any, client_address: Any) -> None:
        """Queue the connection for the head reader; never blocks, no thread per connection."""
        if self._closing.is_set() or not self._slots.acquire(blocking=False):
            self._refuse(request, client_address)
            return
        self._start_threads()
        request.setblocking(False)
        self._incoming.append((request, client_address, time.monotonic()))
        self._wake()

    def _refuse(self, request: socket.socket, client_address: Any) -> None:
        level = logging.DEBUG if self._full_warned else logging.WARNING
        self._full_warned = True
        LOG.log(
            level,
            "report server: %d connections open (max_pending); refusing %s",
            self.max_pending,
            client_address,
        )
        try:
            request.setblocking(False)
            request.send(_plain_reply(503))
        except OSError:
            pass
        self.shutdown_request(request)

    def _start_threads(self) -> None:
        with self._start_lock:
            if self._reader is not None or self._closing.is_set():
                return
            self._reader = threading.Thread(
                target=self._read_heads, name="report-server-heads", daemon=True
            )
            self._reader.start()
            for i in range(self.workers):
                worker = threading.Thread(
                    target=self._work, name=f"report-server-worker-{i}", daemon=True
                )
                worker.start()
                self._pool.append(worker)

    def _wake(self) -> None:
        # OSError: the pair's buffer is full (the reader is awake anyway) or closed (shutdown)
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")

    def _release(self, sock: socket.socket) -> None:
        """Close a connection the server accepted and free its slot (exactly once per socket)."""
        self.shutdown_request(sock)
        self._slots.release()

    # -- the head reader -----------------------------------------------------------------------

    def _read_heads(self) -> None:
        """Wait on every connection without a complete head; hand complete ones to a worker."""
        sel = selectors.DefaultSelector()
        sel.register(self._wake_r, selectors.EVENT_READ)
        pending: dict[socket.socket, _Pending] = {}
        try:
            while not self._closing.is_set():
                deadline = min((p.deadline for p in pending.values()), default=None)
                wait = None if deadline is None else max(0.0, deadline - time.monotonic())
                for key, _ in sel.select(wait):
                    if key.fileobj is self._wake_r:
                        self._take_incoming(sel, pending)
                    else:
                        sock: socket.socket = key.fileobj  # type: ignore[assignment]
                        try:
                            self._on_readable(sel, pending, sock)
                        except Exception:  # never let one connection stop the reader
                            p = pending.get(sock)
                            LOG.exception("report server: dropping %s", p and p.address)
                            self._drop(sel, pending, sock)
                now = time.monotonic()
                for sock, p in [(s, p) for s, p in pending.items() if p.deadline <= now]:
                    self._on_deadline(sel, pending, sock, p)
        finally:
            for sock in list(pending):
                self._drop(sel, pending, sock)
            sel.close()

    def _take_incoming(
        self, sel: selectors.BaseSelector, pending: dict[socket.socket, _Pending]
    ) -> None:
        """Register the connections the accept loop queued (it woke us through the pair)."""
        try:
            while self._wake_r.recv(4096):
                pass
        except BlockingIOError:
            pass
        while self._incoming:
            sock, address, accepted = self._incoming.popleft()
            pending[sock] = _Pending(address, accepted + self.request_timeout)
            sel.register(sock, selectors.EVENT_READ)

    def _on_readable(
        self,
        sel: selectors.BaseSelector,
        pending: dict[socket.socket, _Pending],
        sock: socket.socket,
    ) -> None:
        p = pending[sock]
        want = 65536 if p.lingering else self.max_head_bytes + 1 - len(p.buf)
        try:
            data = sock.recv(want)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            LOG.debug(
                "report server: %s hung up before its request was complete: %r", p.address, exc
            )
            self._drop(sel, pending, sock)
            return
        if not data:  # the client closed (or finished reading our error reply)
            self._drop(sel, pending, sock)
            return
        if p.lingering:
            p.dropped += len(data)
            if p.dropped > LINGER_BYTES:
                self._drop(sel, pending, sock)
            return
        p.buf += data
        end = _head_end(p.buf, max(0, len(p.buf) - len(data) - 2))
        if end is None:
            if len(p.buf) > self.max_head_bytes:
                LOG.info(
                    "report server: request head over %d bytes from %s refused",
                    self.max_head_bytes,
                    p.address,
                )
                self._reply_and_linger(sock, p, 431)
            return
        if p.buf.count(b"\n", 0, end) - 1 > MAX_HEADER_LINES:
            LOG.info(
                "report server: request with over %d header lines from %s refused",
                MAX_HEADER_LINES,
                p.address,
            )
            self._reply_and_linger(sock, p, 431)
            return
        sel.unregister(sock)
        del pending[sock]
        self._jobs.put((sock, p.address, bytes(p.buf)))

    def _on_deadline(
        self,
        sel: selectors.BaseSelector,
        pending: dict[socket.socket, _Pending],
        sock: socket.socket,
        p: _Pending,
    ) -> None:
        if p.lingering or not p.buf:  # idle (a browser's spare pre-connection): just close
            if not p.lingering:
                LOG.debug("report server: closing idle connection from %s", p.address)
            self._drop(sel, pending, sock)
            return
        LOG.debug(
            "report server: %s sent %d bytes but no complete request in %.1f s",
            p.address,
            len(p.buf),
            self.request_timeout,
        )
        self._reply_and_linger(sock, p, 408)

    def _reply_and_linger(self, sock: socket.socket, p: _Pending, status: int) -> None:
        """Send an error reply, half-close, and keep reading (and dropping) a short while."""
        try:
            sock.send(_plain_reply(status))
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        p.buf = bytearray()
        p.lingering = True
        p.deadline = time.monotonic() + min(LINGER_SECONDS, self.request_timeout)

    def _drop(
        self,
        sel: selectors.BaseSelector,
        pending: dict[socket.socket, _Pending],
        sock: socket.socket,
    ) -> None:
        if pending.pop(sock, None) is None:  # already closed or handed to a worker
            return
        with contextlib.suppress(KeyError, ValueError):
            sel.unregister(sock)
        self._release(sock)

    # -- the workers ---------------------------------------------------------------------------

    def _work(self) -> None:
        """Answer complete requests until server_close sends the stop marker."""
        while (job := self._jobs.get()) is not None:
            sock, address, head = job
            try:
                if not self._closing.is_set():
                    self._answer(sock, address, head)
            finally:
                self._release(sock)

    def _answer(self, sock: socket.socket, address: Any, head: bytes) -> None:
        self._heads[sock] = head
        try:
            sock.settimeout(self.request_timeout)
            self.finish_request(sock, address)
        except Exception:
            self.handle_error(sock, address)
        finally:
            self._heads.pop(sock, None)

    def take_head(self, sock: socket.socket) -> bytes:
        """The bytes the head reader already read from ``sock`` (once; the handler's setup)."""
        return self._heads.pop(sock, b"")

    def handle_error(self, request: Any, client_address: Any) -> None:
        """One DEBUG line for a client that went away; a logged traceback for anything else.

        Why: http.server prints a 10-line traceback to stderr each time a browser cancels an
        image or a download (broken pipe, connection reset) or times out: noise that hides real
        messages in the terminal that runs ``report --serve``.
        """
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            LOG.debug("report server: %s went away: %r", client_address, exc)
        else:
            LOG.exception("report server: error while answering %s", client_address)

    # -- shutdown ------------------------------------------------------------------------------

    def server_close(self) -> None:
        """Close the listening socket, stop the threads and close every open connection."""
        super().server_close()
        if self._closed:
            return
        self._closed = True
        with self._start_lock:
            self._closing.set()
        self._wake()
        until = time.monotonic() + 5.0
        if self._reader is not None:
            self._reader.join(timeout=max(0.0, until - time.monotonic()))
        for _ in self._pool:
            self._jobs.put(None)
        for worker in self._pool:  # a worker stuck on a slow client ends at its socket timeout
            worker.join(timeout=max(0.0, until - time.monotonic()))
        while self._incoming:  # accepted after the reader stopped
            self._release(self._incoming.popleft()[0])
        if self._reader is None or not self._reader.is_alive():
            self._wake_r.close()
        self._wake_w.close()


class _Server6(ReportServer):
    address_family = socket.AF_INET6


def make_server(
    directory: Path,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    allow_remote: bool = False,
    workers: int = DEFAULT_WORKERS,
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
    max_head_bytes: int = DEFAULT_MAX_HEAD_BYTES,
    max_pending: int = DEFAULT_MAX_PENDING,
) -> ReportServer:
    """A bound (not yet serving) server for ``directory``; ``port=0`` picks a free port.

    The actual port is ``server.server_address[1]``. Raises :class:`ValueError` for a missing
    directory, for a non-loopback ``host`` without ``allow_remote=True`` or for a limit out of
    range. ``workers``, ``request_timeout`` (seconds), ``max_head_bytes`` and ``max_pending``
    are the :class:`ReportServer` limits.
    """
    root = Path(directory).resolve()
    if not root.is_dir():
        raise ValueError(f"report server: {directory} is not a directory")
    if not is_loopback(host):
        if not allow_remote:
            raise ValueError(
                f"report server: refusing to bind non-loopback address {host!r}; the server has "
                "no authentication — pass allow_remote=True (CLI: --allow-remote) to expose it"
            )
        LOG.warning(
            "report server: binding %r exposes %s to the network without authentication or TLS",
            host,
            root,
        )
    handler = functools.partial(ReportRequestHandler, directory=str(root))
    cls = _Server6 if ":" in host else ReportServer
    return cls(
        (host.strip("[]"), port),
        handler,
        workers=workers,
        request_timeout=request_timeout,
        max_head_bytes=max_head_bytes,
        max_pending=max_pending,
    )


def start_url(server: http.server.HTTPServer, directory: Path) -> str:
    """The URL to open: the report index when ``directory`` is a run dir with a report."""
    host, port = server.server_address[:2]
    host = f"[{host}]" if ":" in str(host) else str(host)
    root = Path(directory)
    path = "/report/index.html" if (root / "report" / "index.html").is_file() else "/"
    return f"http://{host}:{port}{path}"


def serve(
    directory: Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    open_browser: bool = False,
    *,
    allow_remote: bool = False,
    workers: int = DEFAULT_WORKERS,
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
    max_head_bytes: int = DEFAULT_MAX_HEAD_BYTES,
    max_pending: int = DEFAULT_MAX_PENDING,
) -> None:
    """Serve ``directory`` until interrupted (Ctrl-C); optionally open the report in a browser.

    The limits are those of :func:`make_server`; the defaults suit a person with a browser.
    """
    server = make_server(
        directory,
        host,
        port,
        allow_remote=allow_remote,
        workers=workers,
        request_timeout=request_timeout,
        max_head_bytes=max_head_bytes,
        max_pending=max_pending,
    )
    url = start_url(server, directory)
    LOG.info("serving %s at %s (Ctrl-C to stop)", Path(directory).resolve(), url)
    if open_browser:
        webbrowser.open(url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        LOG.info("report server stopped")
    finally:
        server.server_close()

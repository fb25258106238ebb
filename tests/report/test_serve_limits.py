"""The report server under idle / half-sent connections (issue 14, item 8): bounded threads,
per-connection deadlines, a bounded number of open connections, capped request heads, normal
requests still served, quiet logs when a client hangs up. Loopback only, bounded count and time.

Before the fix: one thread per connection, kept forever (300 half-sent requests -> 303 threads),
and a traceback on stderr for every browser that cancelled a download.
"""

from __future__ import annotations

import http.client
import logging
import socket
import struct
import threading
import time
from pathlib import Path

import pytest

from world_monitor.report.serve import make_server

N_IDLE = 300


def _get(port: int, path: str = "/index.html", timeout: float = 10.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def _serve(server):
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    return thread


def _stop(server, thread) -> None:
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)
    assert not thread.is_alive()


def _open_idle(port: int, n: int) -> list[socket.socket]:
    socks = []
    for i in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        if i % 2:  # half-sent: a request head without the blank line that ends it
            s.sendall(b"GET /index.html HTTP/1.1\r\nHost: x\r\n")
        socks.append(s)
    return socks


def test_idle_and_half_sent_connections_do_not_grow_threads(tmp_path: Path) -> None:
    """Default server: 300 idle/half-sent connections, threads stay bounded, a normal
    request is still answered promptly."""
    (tmp_path / "index.html").write_text("<p>hello</p>")
    server = make_server(tmp_path, "127.0.0.1", 0)
    port = server.server_address[1]
    before = threading.active_count()
    thread = _serve(server)
    socks: list[socket.socket] = []
    try:
        socks = _open_idle(port, N_IDLE)
        time.sleep(0.5)
        grown = threading.active_count() - before
        # serve_forever + the head reader + the worker pool, whatever the connection count
        assert grown <= 16, f"{grown} threads for {N_IDLE} idle connections"
        t0 = time.perf_counter()
        status, body = _get(port)
        assert status == 200 and b"hello" in body
        assert time.perf_counter() - t0 < 5.0
        assert threading.active_count() - before <= 16
    finally:
        for s in socks:
            s.close()
        _stop(server, thread)


def _read_all(s: socket.socket, timeout: float) -> bytes:
    """Everything until the server closes; a TimeoutError (connection kept open) fails a test."""
    s.settimeout(timeout)
    data = b""
    try:
        while chunk := s.recv(4096):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def test_idle_connections_are_closed_at_their_deadline(tmp_path: Path) -> None:
    """Silent connections are closed without a word, half-sent ones get 408, both on time."""
    (tmp_path / "index.html").write_text("<p>hello</p>")
    server = make_server(tmp_path, "127.0.0.1", 0, workers=2, request_timeout=0.5)
    port = server.server_address[1]
    thread = _serve(server)
    socks: list[socket.socket] = []
    try:
        socks = _open_idle(port, 20)
        t0 = time.perf_counter()
        for i, s in enumerate(socks):
            data = _read_all(s, 3.0)
            if i % 2:
                assert data.split(b"\r\n")[0] == b"HTTP/1.0 408 Request Timeout", data[:80]
            else:
                assert data == b""
        assert time.perf_counter() - t0 < 3.0
        assert _get(port)[0] == 200
    finally:
        for s in socks:
            s.close()
        _stop(server, thread)


def test_trickled_head_does_not_extend_the_deadline(tmp_path: Path) -> None:
    """A byte every 0.1 s (slowloris) is still dropped at accept + request_timeout."""
    (tmp_path / "index.html").write_text("x")
    server = make_server(tmp_path, "127.0.0.1", 0, workers=1, request_timeout=0.5)
    thread = _serve(server)
    try:
        with socket.create_connection(("127.0.0.1", server.server_address[1]), timeout=5) as s:
            t0 = time.perf_counter()
            closed = False
            for byte in b"GET /index.html HTTP/1.1\r\nX-Slow: " + b"a" * 100:
                try:
                    s.sendall(bytes([byte]))
                except (BrokenPipeError, ConnectionResetError):
                    closed = True
                    break
                s.settimeout(0.1)
                try:
                    if s.recv(4096):  # the 408, then the close
                        closed = True
                        break
                except TimeoutError:
                    continue
            assert closed, "a trickling client kept its connection"
            assert time.perf_counter() - t0 < 2.0
    finally:
        _stop(server, thread)


@pytest.mark.parametrize(
    "head",
    [
        b"GET /index.html HTTP/1.1\r\nX-Pad: " + b"a" * 70_000 + b"\r\n\r\n",  # > 64 KiB
        b"GET /index.html HTTP/1.1\r\n" + b"X-A: b\r\n" * 150 + b"\r\n",  # > 100 header lines
    ],
    ids=["bytes", "lines"],
)
def test_oversized_request_head_is_refused(tmp_path: Path, head: bytes) -> None:
    """The reply arrives intact (the server reads the rest before closing, so no RST eats it)."""
    (tmp_path / "index.html").write_text("x")
    server = make_server(tmp_path, "127.0.0.1", 0, workers=2, request_timeout=2.0)
    port = server.server_address[1]
    thread = _serve(server)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(head)
            reply = _read_all(s, 5.0)
        status_line = reply.split(b"\r\n")[0]
        assert status_line.startswith(b"HTTP/1.") and status_line.split()[1] in (b"431", b"400")
        assert _get(port)[0] == 200
    finally:
        _stop(server, thread)


def test_open_connections_are_bounded(tmp_path: Path) -> None:
    """Past max_pending a new connection is answered 503 and closed at once; the slots come
    back when the idle clients leave."""
    (tmp_path / "index.html").write_text("<p>hello</p>")
    server = make_server(tmp_path, "127.0.0.1", 0, workers=1, request_timeout=5.0, max_pending=4)
    port = server.server_address[1]
    thread = _serve(server)
    socks: list[socket.socket] = []
    try:
        socks = _open_idle(port, 4)
        time.sleep(0.3)  # all four accepted
        t0 = time.perf_counter()
        with socket.create_connection(("127.0.0.1", port), timeout=5) as extra:
            reply = _read_all(extra, 2.0)
        assert reply.startswith(b"HTTP/1.0 503 "), reply[:80]
        assert time.perf_counter() - t0 < 1.0
        for s in socks:
            s.close()
        socks = []
        deadline = time.monotonic() + 3.0
        while True:  # the head reader sees the EOFs and frees the slots
            try:
                if _get(port, timeout=2.0)[0] == 200:
                    break
            except (ConnectionError, http.client.HTTPException):
                pass
            assert time.monotonic() < deadline, "slots not released after the clients left"
            time.sleep(0.05)
    finally:
        for s in socks:
            s.close()
        _stop(server, thread)


def test_client_hanging_up_mid_response_is_quiet(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    """A browser cancelling a download: one DEBUG line, no traceback on stderr."""
    (tmp_path / "index.html").write_text("<p>hello</p>")
    (tmp_path / "big.mcap").write_bytes(b"\0" * (32 << 20))  # far more than the socket buffers
    caplog.set_level(logging.DEBUG, logger="world_monitor.report.serve")
    server = make_server(tmp_path, "127.0.0.1", 0, workers=1)
    port = server.server_address[1]
    thread = _serve(server)
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST on close
        s.sendall(b"GET /big.mcap HTTP/1.0\r\n\r\n")
        assert s.recv(4096).startswith(b"HTTP/1.0 200")
        s.close()
        deadline = time.monotonic() + 5.0
        while not any("went away" in r.getMessage() for r in caplog.records):
            assert time.monotonic() < deadline, "the worker never noticed the hang-up"
            time.sleep(0.05)
        assert _get(port)[0] == 200  # the worker is free again
    finally:
        _stop(server, thread)
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Exception occurred" not in err, err[-2000:]
    went = [r for r in caplog.records if "went away" in r.getMessage()]
    assert all(r.levelno == logging.DEBUG and not r.exc_info for r in went)

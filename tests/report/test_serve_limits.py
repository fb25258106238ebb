"""The report server under idle / half-sent connections (issue 14, item 8): bounded threads,
per-connection deadlines, normal requests still served. Loopback only, bounded count and time.

Before the fix: one thread per connection, kept forever (300 half-sent requests -> 303 threads).
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
from pathlib import Path

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


def test_idle_connections_are_closed_at_their_deadline(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("<p>hello</p>")
    server = make_server(tmp_path, "127.0.0.1", 0, workers=2, request_timeout=0.5)
    port = server.server_address[1]
    thread = _serve(server)
    socks: list[socket.socket] = []
    try:
        socks = _open_idle(port, 20)
        t0 = time.perf_counter()
        for s in socks:
            s.settimeout(3.0)  # a TimeoutError here (connection kept open) fails the test
            data = b""
            try:
                while chunk := s.recv(1024):
                    data += chunk
            except ConnectionResetError:
                pass
            assert data == b"" or data.split(b"\r\n")[0].endswith(b"408 Request Timeout")
        assert time.perf_counter() - t0 < 3.0
        assert _get(port)[0] == 200
    finally:
        for s in socks:
            s.close()
        _stop(server, thread)


def test_oversized_request_head_is_refused(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("x")
    server = make_server(tmp_path, "127.0.0.1", 0, workers=2, request_timeout=2.0)
    port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"GET /index.html HTTP/1.1\r\n" + b"X-Pad: " + b"a" * 70_000 + b"\r\n\r\n")
            reply = b""
            try:
                while chunk := s.recv(4096):
                    reply += chunk
            except (ConnectionResetError, OSError):
                pass
        assert reply == b"" or reply.startswith(b"HTTP/1.") and b" 431 " in reply.split(b"\r\n")[0]
        assert _get(port)[0] == 200
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

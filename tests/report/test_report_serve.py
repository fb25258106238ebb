"""The report's loopback HTTP server: serves the report, nothing outside its directory.

Why: the server runs on machines that hold bundles, datasets and credentials next to the run
directory. Traversal (plain, percent-encoded, through a symlink), dot-files and directory listings
must never leak anything, and exposing it beyond loopback must be an explicit decision.
"""

from __future__ import annotations

import http.client
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from world_monitor.report.serve import is_loopback, make_server, start_url

SECRET = "TOP-SECRET-OUTSIDE-THE-SERVED-DIR"


@contextmanager
def _serving(directory: Path) -> Iterator[int]:
    server = make_server(directory, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _get(port: int, raw_path: str) -> tuple[int, dict[str, str], bytes]:
    """GET with the path sent byte-for-byte (no client-side normalisation of '..')."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", raw_path)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def test_serves_report_pages_with_content_types(built_run_dir: Path) -> None:
    with _serving(built_run_dir) as port:
        status, headers, body = _get(port, "/report/index.html")
        assert status == 200 and headers["content-type"].startswith("text/html")
        assert b'id="summary"' in body
        assert headers["x-content-type-options"] == "nosniff"
        assert "script-src" not in headers["content-security-policy"]  # default-src 'none'

        status, _, body = _get(port, "/report/episodes/scripted_lighting_s1_gated.html")
        assert status == 200 and b"Risk and gate timeline" in body
        status, headers, _ = _get(port, "/report/episodes/scripted_lighting_s1_gated.gif")
        assert status == 200 and headers["content-type"] == "image/gif"
        status, headers, _ = _get(port, "/report/episodes/diffusion_lighting_s1_gated.webp")
        assert status == 200 and headers["content-type"] == "image/webp"
        status, headers, _ = _get(port, "/report/img/summary_rates.png")
        assert status == 200 and headers["content-type"] == "image/png"
        # the episode page links ../../episodes/<id>.mcap: reachable because the run dir is served
        status, headers, body = _get(port, "/episodes/scripted_lighting_s1_gated.mcap")
        assert status == 200 and headers["content-type"] == "application/octet-stream"
        assert body.startswith(b"\x89MCAP")
        status, _, _ = _get(port, "/episodes/diffusion%20unseen%231%20gated.mcap")
        assert status == 200

        status, headers, _ = _get(port, "/")
        assert status == 302 and headers["location"] == "/report/index.html"
        assert _get(port, "/episodes/")[0] == 404  # no directory listings
        assert _get(port, "/report/.world_monitor_report")[0] == 404  # no dot-files
        assert _get(port, "/report/nope.html")[0] == 404


@pytest.mark.parametrize(
    "raw",
    [
        "/../secret.txt",
        "/../../secret.txt",
        "/report/../../secret.txt",
        "/%2e%2e/secret.txt",
        "/%2E%2E/%2e%2e/secret.txt",
        "/..%2fsecret.txt",
        "/%2e%2e%2fsecret.txt",
        "/..%5csecret.txt",
        "/....//secret.txt",
        "//../secret.txt",
        "/link/secret.txt",
        "/secret-link.txt",
        "/%252e%252e/secret.txt",
        "/..;/secret.txt",
        "/%00/../secret.txt",
    ],
)
def test_traversal_never_leaves_the_directory(tmp_path: Path, raw: str) -> None:
    served = tmp_path / "site" / "run"
    served.mkdir(parents=True)
    (served / "index.html").write_text("<p>inside</p>")
    (tmp_path / "site" / "secret.txt").write_text(SECRET)
    (served / "secret-link.txt").symlink_to(tmp_path / "site" / "secret.txt")
    (served / "link").symlink_to(tmp_path / "site", target_is_directory=True)
    with _serving(served) as port:
        status, _, body = _get(port, raw)
        assert SECRET.encode() not in body
        assert status in (400, 403, 404), (raw, status)
        assert _get(port, "/index.html")[0] == 200  # the server is still fine


def test_traversal_from_report_dir_cannot_reach_run_json(built_run_dir: Path) -> None:
    with _serving(built_run_dir / "report") as port:
        for raw in ("/../run.json", "/%2e%2e/run.json", "/..%2frun.json", "/../episodes/"):
            status, _, body = _get(port, raw)
            assert status == 404 and b"bundle_hash" not in body, raw


def test_non_loopback_needs_allow_remote(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    for host in ("0.0.0.0", "", "192.0.2.1", "example.org"):
        assert not is_loopback(host)
        with pytest.raises(ValueError, match="allow_remote"):
            make_server(tmp_path, host, 0)
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    with caplog.at_level(logging.WARNING, logger="world_monitor.report.serve"):
        server = make_server(tmp_path, "0.0.0.0", 0, allow_remote=True)
    server.server_close()
    assert any("without authentication" in r.getMessage() for r in caplog.records)


def test_missing_directory_and_start_url(tmp_path: Path, built_run_dir: Path) -> None:
    with pytest.raises(ValueError, match="not a directory"):
        make_server(tmp_path / "nope")
    server = make_server(built_run_dir, "localhost", 0)
    try:
        port = server.server_address[1]
        assert start_url(server, built_run_dir) == f"http://127.0.0.1:{port}/report/index.html"
    finally:
        server.server_close()


def test_report_serve_serves_an_up_to_date_report_at_once(
    synthetic_run_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 18: `report --serve` rebuilt every page (~20-60 s) before serving, silently. Now it
    serves a report that is newer than the run at once, and says when it builds."""
    import os

    import world_monitor.report.html as html
    import world_monitor.report.serve as serve_mod
    from world_monitor.cli import main

    served: list[Path] = []
    monkeypatch.setattr(serve_mod, "serve", lambda run_dir, **kw: served.append(run_dir))
    builds: list[Path] = []
    real_build = html.build_report
    monkeypatch.setattr(
        html, "build_report", lambda run_dir: builds.append(run_dir) or real_build(run_dir)
    )
    argv = ["report", str(synthetic_run_dir), "--serve"]
    assert main(argv) == 0  # no report yet: built first, and said so
    out = capsys.readouterr().out
    assert "building the report" in out and len(builds) == 1 and served == [synthetic_run_dir]
    assert main(argv) == 0  # up to date: served at once
    out = capsys.readouterr().out
    assert "up to date" in out and len(builds) == 1 and len(served) == 2
    summary = synthetic_run_dir / "summary.json"  # the run changed: rebuilt
    later = (synthetic_run_dir / "report" / "index.html").stat().st_mtime + 5
    os.utime(summary, (later, later))
    assert main(argv) == 0 and len(builds) == 2
    assert main(["report", str(synthetic_run_dir)]) == 0 and len(builds) == 3  # no --serve: builds

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
* Request logging goes to :mod:`logging` at DEBUG, not to stderr.
"""

from __future__ import annotations

import functools
import http.server
import ipaddress
import logging
import os
import socket
import webbrowser
from pathlib import Path
from typing import Any
from urllib.parse import unquote

LOG = logging.getLogger(__name__)

__all__ = ["make_server", "serve", "is_loopback"]

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


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class _Server6(_Server):
    address_family = socket.AF_INET6


def make_server(
    directory: Path,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    allow_remote: bool = False,
) -> http.server.ThreadingHTTPServer:
    """A bound (not yet serving) server for ``directory``; ``port=0`` picks a free port.

    The actual port is ``server.server_address[1]``. Raises :class:`ValueError` for a missing
    directory or for a non-loopback ``host`` without ``allow_remote=True``.
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
    cls = _Server6 if ":" in host else _Server
    return cls((host.strip("[]"), port), handler)


def start_url(server: http.server.ThreadingHTTPServer, directory: Path) -> str:
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
) -> None:
    """Serve ``directory`` until interrupted (Ctrl-C); optionally open the report in a browser."""
    server = make_server(directory, host, port, allow_remote=allow_remote)
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

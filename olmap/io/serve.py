"""Serve a viewer site over HTTP on this machine (``olmap serve``).

Python's own threaded HTTP server, bound to the loopback interface by default: a viewer is
static files, and nothing needs to reach it from other machines unless asked (``--host``).
"""

from __future__ import annotations

import functools
import logging
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

from olmap.errors import InputError, InputFileNotFoundError

log = logging.getLogger(__name__)


class _Handler(SimpleHTTPRequestHandler):
    # Tiles and data are .png/.webp/.js/.tif: make sure the types are right whatever the
    # machine's mime.types says (a wrong type for .js stops the viewer).
    extensions_map: ClassVar[dict[str, str]] = {
        **SimpleHTTPRequestHandler.extensions_map,
        ".js": "text/javascript",
        ".css": "text/css",
        ".png": "image/png",
        ".webp": "image/webp",
        ".tif": "image/tiff",
        ".gpkg": "application/geopackage+sqlite3",
        ".csv": "text/csv",
    }

    def log_message(self, format: str, *args: object) -> None:
        log.info("%s %s", self.address_string(), format % args)


def make_server(
    directory: str | Path, *, host: str = "127.0.0.1", port: int = 8000
) -> ThreadingHTTPServer:
    """An HTTP server for ``directory`` (not yet serving: call ``serve_forever``).

    Parameters
    ----------
    directory : path-like
        A site written by ``olmap tiles`` (it must hold ``index.html``).
    host : str
        Interface to listen on; the loopback interface by default.
    port : int
        TCP port; 0 picks a free one.

    Raises
    ------
    InputFileNotFoundError
        If ``directory`` is not a folder.
    InputError
        If it has no ``index.html``, or the port cannot be used.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise InputFileNotFoundError(directory, "site folder")
    if not (directory / "index.html").is_file():
        raise InputError(f"{directory}: no index.html; is this a site written by olmap tiles?")
    handler = functools.partial(_Handler, directory=str(directory.resolve()))
    try:
        return ThreadingHTTPServer((host, port), handler)
    except OSError as exc:
        raise InputError(
            f"cannot listen on {host}:{port} ({exc.strerror or exc}); "
            "choose another --port (0 picks a free one)"
        ) from exc


def server_url(server: ThreadingHTTPServer) -> str:
    """The URL of the site's index page."""
    host, port = server.server_address[:2]
    return f"http://{host}:{port}/"

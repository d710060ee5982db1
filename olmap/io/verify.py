"""Checks that a finished output file is whole before it is renamed into place.

A full disk or an I/O error can leave a file that looks written (GDAL only logs its write
errors; a process killed mid-write leaves a truncated file). :func:`verify_file` re-opens a
file by its type and reads what a truncation would break: a GeoTIFF's directory, every
block's extent against the file size and its last block of every band; a JSON document whole;
a PNG's end chunk; a NumPy array's size; a zip's (torch checkpoint's) directory and checksums;
a GeoPackage's integrity check; a Parquet footer. Types without a structure to check (text)
pass if they exist. Each check costs a small fraction of writing the file.
"""

from __future__ import annotations

import json
import sqlite3
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np


class DamagedFileError(ValueError):
    """A written file is not whole; the message says what is wrong."""


def _tiff(path: Path) -> None:
    import rasterio
    import tifffile
    from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
    from rasterio.windows import Window

    size = path.stat().st_size
    try:
        with tifffile.TiffFile(path) as tif:
            for page in tif.pages:
                offsets = np.asarray(page.dataoffsets, np.uint64)
                counts = np.asarray(page.databytecounts, np.uint64)
                if np.any(offsets + counts > size):
                    raise DamagedFileError("blocks end past the end of the file (cut short)")
    except DamagedFileError:
        raise
    except Exception as exc:  # tifffile raises TiffFileError, ValueError, struct.error...
        raise DamagedFileError(f"unreadable TIFF structure ({exc})") from exc
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as ds:
                bh, bw = ds.block_shapes[0]
                row = (ds.height - 1) // bh * bh
                col = (ds.width - 1) // bw * bw
                ds.read(window=Window(col, row, ds.width - col, ds.height - row))
    except RasterioIOError as exc:
        raise DamagedFileError(f"GDAL cannot read its last block ({exc})") from exc


def _json(path: Path) -> None:
    try:
        with open(path, encoding="utf-8") as f:
            json.load(f)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DamagedFileError(f"not complete JSON ({exc})") from exc


def _png(path: Path) -> None:
    with open(path, "rb") as f:
        head = f.read(8)
        f.seek(max(path.stat().st_size - 12, 0))
        tail = f.read(12)
    if head != b"\x89PNG\r\n\x1a\n" or tail[4:8] != b"IEND":
        raise DamagedFileError("PNG without its end chunk (cut short)")


def _npy(path: Path) -> None:
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise DamagedFileError(f"not a whole NumPy array ({exc})") from exc
    del arr


def _zip(path: Path) -> None:
    try:
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise DamagedFileError(f"damaged archive ({exc})") from exc
    if bad is not None:
        raise DamagedFileError(f"damaged archive member {bad}")


def _gpkg(path: Path) -> None:
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as con:
            result = con.execute("PRAGMA quick_check").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        raise DamagedFileError(f"damaged GeoPackage ({exc})") from exc
    if result != "ok":
        raise DamagedFileError(f"damaged GeoPackage ({result})")


def _parquet(path: Path) -> None:
    import pyarrow.parquet as pq

    try:
        pq.read_metadata(path)
    except Exception as exc:  # pyarrow raises ArrowInvalid, OSError
        raise DamagedFileError(f"damaged Parquet file ({exc})") from exc


def _text(path: Path) -> None:
    """CSV and other line-based text written by olmap end with a newline."""
    size = path.stat().st_size
    if size == 0:
        return
    with open(path, "rb") as f:
        f.seek(size - 1)
        if f.read(1) != b"\n":
            raise DamagedFileError("text cut short (no final newline)")


CHECKS: dict[str, Callable[[Path], None]] = {
    ".tif": _tiff,
    ".tiff": _tiff,
    ".json": _json,
    ".geojson": _json,
    ".png": _png,
    ".npy": _npy,
    ".pt": _zip,
    ".zip": _zip,
    ".gpkg": _gpkg,
    ".parquet": _parquet,
    ".csv": _text,
}


def verify_file(path: str | Path, kind: str | Path | None = None) -> None:
    """Raise :class:`DamagedFileError` unless the file at ``path`` is whole.

    Parameters
    ----------
    path : path-like
        The file as written (often a temporary ``NAME.partial``).
    kind : path-like, optional
        A name whose suffix says the file's type [default: ``path``].
    """
    path = Path(path)
    check = CHECKS.get(Path(kind or path).suffix.lower())
    if not path.is_file():
        raise DamagedFileError("missing")
    if check is not None:
        check(path)


def verify_tree(folder: str | Path) -> None:
    """:func:`verify_file` on every file under ``folder`` (PNG tiles: header and end only)."""
    for path in sorted(Path(folder).rglob("*")):
        if path.is_file():
            try:
                verify_file(path)
            except DamagedFileError as exc:
                raise DamagedFileError(f"{path.relative_to(folder)}: {exc}") from exc

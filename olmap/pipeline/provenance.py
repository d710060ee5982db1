"""Provenance of ``olmap run``: content hashes, stage fingerprints, time and memory, versions.

``OUT/run.json`` records, for the whole run, olmap's and its libraries' versions, the
project's parameters and the hashes of its inputs; for each stage, the hashes of what it
read and wrote, its parameters, the equivalent stand-alone command, its wall time and peak
memory. A stage whose fingerprint (its parameters and the hashes of its inputs) and outputs
are unchanged since it last ran is skipped.

Files are hashed by content (BLAKE2b), and the hashes are cached by size and modification
time in ``OUT/.olmap/hashes.json`` so that a rerun does not read gigapixel mosaics again.
Folders written by olmap (a dataset, a catalogue, a site) are hashed by their listing of
names, sizes and modification times: any file rewritten makes a new hash.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import resource
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import rasterio
from rasterio.errors import RasterioIOError

from olmap import __version__
from olmap.io.outputs import atomic_path

#: Libraries whose versions change results (recorded in run.json).
LIBRARIES = (
    "numpy",
    "scipy",
    "scikit-image",
    "scikit-learn",
    "torch",
    "torchvision",
    "rasterio",
    "shapely",
    "geopandas",
    "pyogrio",
    "pandas",
    "pydantic",
    "pyvips",
    "dask",
)
_CHUNK = 1 << 20


def library_versions() -> dict[str, str | None]:
    """olmap, Python, GDAL and :data:`LIBRARIES` versions (None where not installed)."""
    out: dict[str, str | None] = {"olmap": __version__, "python": sys.version.split()[0]}
    for name in LIBRARIES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    out["gdal"] = rasterio.__gdal_version__
    return out


def machine() -> dict[str, Any]:
    """The machine a run ran on (timings are only comparable on the same one)."""
    return {
        "platform": platform.platform(),
        "processor": platform.machine(),
        "cpus": os.cpu_count(),
        "host": platform.node(),
    }


class HashCache:
    """Content hashes of files, cached by (size, mtime) in a JSON file.

    Parameters
    ----------
    path : path-like
        The cache file (created when saved).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._entries: dict[str, list] = {}
        try:
            self._entries = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self._entries = {}  # absent or unreadable: start afresh (a cache, not a record)

    def file(self, path: str | Path) -> str:
        """BLAKE2b (128-bit, hex) of a file's content."""
        path = Path(path).resolve()
        st = path.stat()
        key = str(path)
        cached = self._entries.get(key)
        if cached and cached[0] == st.st_size and cached[1] == st.st_mtime_ns:
            return cached[2]
        h = hashlib.blake2b(digest_size=16)
        with path.open("rb") as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
        digest = h.hexdigest()
        self._entries[key] = [st.st_size, st.st_mtime_ns, digest]
        return digest

    def input(self, path: str | Path) -> str:
        """Hash of an input: a file's content; a raster with its sidecar and source files
        (a VRT's tiles); a folder's listing."""
        path = Path(path)
        if path.is_dir():
            return folder_listing_hash(path)
        sources = _raster_sources(path)
        if len(sources) <= 1:
            return self.file(path)
        h = hashlib.blake2b(digest_size=16)
        for src in sources:
            h.update(f"{src.name}:{self.file(src)}\n".encode())
        return h.hexdigest()

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.path, overwrite=True) as tmp:
            tmp.write_text(json.dumps(self._entries))


def _raster_sources(path: Path) -> list[Path]:
    """The files GDAL reads for a raster (itself, sidecars, a VRT's sources)."""
    if path.suffix.lower() not in (".vrt", ".tif", ".tiff"):
        return [path]
    try:
        with rasterio.open(path) as ds:
            found = [Path(f) for f in ds.files]
    except RasterioIOError:
        return [path]
    return sorted({p.resolve() for p in found if p.is_file()} | {path.resolve()})


def folder_listing_hash(path: str | Path) -> str:
    """Hash of a folder's file names, sizes and modification times (not its content)."""
    root = Path(path)
    h = hashlib.blake2b(digest_size=16)
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            file = Path(dirpath) / name
            st = file.stat()
            h.update(f"{file.relative_to(root)}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def fingerprint(stage: str, params: dict, inputs: dict[str, str]) -> str:
    """What decides a stage's result: its name, parameters and input hashes."""
    text = json.dumps({"stage": stage, "params": params, "inputs": inputs}, sort_keys=True)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


@dataclass
class Usage:
    """Wall time (s) and peak resident memory (MB) of a piece of work."""

    seconds: float = 0.0
    peak_rss_mb: float | None = None
    #: "stage": the peak of this stage alone (Linux resets the high-water mark); "process":
    #: the process's peak so far (elsewhere), an upper bound.
    peak_scope: str = "stage"


def _reset_peak() -> bool:
    """Reset the kernel's resident-memory high-water mark of this process (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss_mb() -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


@contextmanager
def measure() -> Iterator[Usage]:
    """Measure the wall time and the peak memory of the ``with`` block.

    Worker processes (Dask, DataLoader workers) are not counted; olmap's stages run in this
    process unless told otherwise.
    """
    usage = Usage()
    usage.peak_scope = "stage" if _reset_peak() else "process"
    start = time.perf_counter()
    try:
        yield usage
    finally:
        usage.seconds = time.perf_counter() - start
        usage.peak_rss_mb = _peak_rss_mb()


def now() -> str:
    """UTC time stamp, ISO 8601, to the second."""
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class RunRecord:
    """The content of ``run.json``: the run and the last run of each stage."""

    path: Path
    data: dict = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | Path) -> RunRecord:
        """Read ``run.json``; an absent or unreadable one starts an empty record."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            data = {}
        if not isinstance(data, dict):
            data = {}
        data.setdefault("stages", {})
        return cls(path, data)

    @property
    def stages(self) -> dict[str, dict]:
        return self.data["stages"]

    def save(self) -> None:
        """Write atomically (an interrupted run keeps the stages it finished)."""
        with atomic_path(self.path, overwrite=True) as tmp:
            tmp.write_text(json.dumps(self.data, indent=2, default=str) + "\n")

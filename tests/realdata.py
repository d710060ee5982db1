"""Real test files from PyPI packages, fetched once into the ignored ``.cache/testdata``.

- hyperspy 1.6.5 (GPL-3, source distribution): Bruker ``.bcf`` test hypermaps;
- epmatools (MIT, wheel): ``ex1.h5``, WDS element maps of a metapelite.

Never committed. A test is skipped only when the package registry cannot be reached.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

CACHE = Path(__file__).resolve().parents[1] / ".cache" / "testdata"
_NETWORK_HINTS = ("connection", "network", "resolve", "timed out", "temporary failure", "proxy")


def _pip_download(requirement: str, *extra: str) -> Path:
    """Download one distribution file into the cache (no dependencies) and return it."""
    target = CACHE / requirement.replace("==", "-")
    files = sorted(target.glob("*")) if target.exists() else []
    if files:
        return files[0]
    target.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(target), *extra]
    proc = subprocess.run([*cmd, requirement], capture_output=True, text=True, timeout=600)
    files = sorted(target.glob("*"))
    if proc.returncode != 0 or not files:
        text = (proc.stdout + proc.stderr).lower()
        if any(hint in text for hint in _NETWORK_HINTS):
            pytest.skip(f"package registry unreachable, cannot fetch {requirement} test data")
        raise RuntimeError(f"pip download {requirement} failed:\n{proc.stderr[-2000:]}")
    return files[0]


def bruker_dir() -> Path:
    """Folder with hyperspy 1.6.5's Bruker test files (``hyperspy/tests/io/bruker_data``)."""
    out = CACHE / "bruker_data"
    if (out / "P45_the_default_job.bcf").exists():
        return out
    sdist = _pip_download("hyperspy==1.6.5", "--no-binary", ":all:")
    prefix = "hyperspy-1.6.5/hyperspy/tests/io/bruker_data/"
    out.mkdir(parents=True, exist_ok=True)
    with tarfile.open(sdist) as tar:
        for member in tar.getmembers():
            if member.name.startswith(prefix) and member.isfile():
                member.name = member.name.removeprefix(prefix)
                tar.extract(member, out, filter="data")
    return out


def epmatools_ex1() -> Path:
    """``epmatools/data/maps/ex1.h5`` from the epmatools wheel."""
    out = CACHE / "ex1.h5"
    if out.exists():
        return out
    wheel = _pip_download("epmatools==0.3.2", "--only-binary", ":all:")
    with zipfile.ZipFile(wheel) as zf:
        out.write_bytes(zf.read("epmatools/data/maps/ex1.h5"))
    return out

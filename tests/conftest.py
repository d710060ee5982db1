"""Shared fixtures: a small synthetic section, its olivine mask and dataset, made once."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import pytest

from olmap.dataset.build import build_dataset
from olmap.io.eds import open_eds
from olmap.masks.rules import load_rules
from olmap.masks.stream import build_label_map
from olmap.synth.config import SynthConfig
from olmap.synth.section import SectionSummary, generate_section

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.fixture(scope="session")
def section_1k(tmp_path_factory: pytest.TempPathFactory) -> SectionSummary:
    """A 1024 x 1024 synthetic section (seed 1, 4 sessions), generated once."""
    out = tmp_path_factory.mktemp("synth") / "section"
    return generate_section(out, SynthConfig(width=1024, height=1024, seed=1, sessions=4))


@pytest.fixture(scope="session")
def section_dir(section_1k: SectionSummary) -> Path:
    return section_1k.out_dir


@pytest.fixture(scope="session")
def olivine_mask(section_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("segment") / "mask.tif"
    build_label_map(
        open_eds([section_dir / "eds.tif"]),
        load_rules(CONFIGS / "rules" / "olivine.yaml"),
        out,
        bse=section_dir / "bse.tif",
    )
    return out


@pytest.fixture(scope="session")
def olivine_dataset(
    section_dir: Path, olivine_mask: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    out = tmp_path_factory.mktemp("segment") / "dataset"
    build_dataset(
        section_dir / "bse.tif", olivine_mask, section_dir / "sessions.csv", out, tile=(128, 128)
    )
    return out


_HOLD_LOCK = """
import sys, time
from olmap.io.outputs import output_lock
with output_lock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(120)
"""


@contextmanager
def _lock_held_elsewhere(path: Path) -> Iterator[subprocess.Popen]:
    """Another process (another olmap run) holding the output lock of ``path``; killed with
    SIGKILL at the end, as a crashed run would be."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, str(path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        yield proc
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.fixture
def lock_held_elsewhere() -> Callable[[Path], AbstractContextManager[subprocess.Popen]]:
    """``with lock_held_elsewhere(path) as proc:`` another run holds ``path``'s lock."""
    return _lock_held_elsewhere


def run_olmap(
    *args: str | Path, cwd: Path | None = None, timeout: float | None = None
) -> subprocess.CompletedProcess:
    """``olmap ARGS`` as a user runs it: its own process, stdout and stderr captured."""
    return subprocess.run(
        [sys.executable, "-m", "olmap", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        check=False,
        timeout=timeout,
    )


@pytest.fixture
def olmap_cli() -> Callable[..., subprocess.CompletedProcess]:
    """``olmap_cli("predict", "--model", ...)``: the ``olmap`` command in a subprocess."""
    return run_olmap

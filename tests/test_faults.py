"""Fault injection through the ``olmap`` command: full disks, two runs into the same outputs,
kill -9 and Ctrl-C.

Whatever happens, no command may leave a broken file under an output's name, replace a good
result with a broken one, or report success for a failure; each failure is one line naming the
output. A full disk is a small tmpfs (mounted when the tests run as root, as in CI); where none
can be mounted, the same commands run in-process with the check of finished files made to fail
(the "patched writer"), so the path from a broken file to the error line is still covered.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from olmap.io.raster import read_raster, write_raster
from olmap.io.resume import progress_path
from olmap.segment.checkpoint import save_checkpoint
from olmap.segment.job import synthetic_init_model

from .conftest import CONFIGS, run_olmap

DISK_BYTES = 16 << 20  # room for one set of results; filled up before the run that must fail


@pytest.fixture(scope="module")
def work(section_dir: Path, olivine_mask: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Inputs of every command on the 1,024² test section: model, mask, calibration, results."""
    work = tmp_path_factory.mktemp("faults")
    model, meta = synthetic_init_model(["unclassified", "olivine"])
    save_checkpoint(work / "model.pt", model, meta)
    shutil.copy(olivine_mask, work / "mask.tif")
    s = section_dir
    res = run_olmap(
        "calibrate", "--bse", s / "bse.tif", "--mask", s / "truth" / "olivine.tif",
        "--profiles", s / "epma.csv", "--out", work / "calibration.json",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    (work / "results").mkdir()
    shutil.copy(s / "bse.tif", work / "results" / "bse.tif")
    r = work / "results"
    for args in (
        ["predict", "--model", work / "model.pt", "--bse", s / "bse.tif", "--window", "512",
         "--out-prob", r / "prob.tif", "--out-mask", work / "pred.tif"],
        ["mgmap", "--bse", s / "bse.tif", "--mask", s / "truth" / "olivine.tif",
         "--calibration", work / "calibration.json", "--out", r / "mgnum.tif"],
        ["crystals", "--bse", s / "bse.tif", "--mask", s / "truth" / "olivine.tif",
         "--mgmap", r / "mgnum.tif", "--out", r / "catalogue"],
    ):  # fmt: skip
        res = run_olmap(*args)
        assert res.returncode == 0, res.stderr
    return work


def commands(section: Path, work: Path, out: Path) -> dict[str, tuple[list, list[str]]]:
    """Each command with its arguments writing into ``out``, and its outputs there."""
    s = section
    return {
        "predict": (
            ["predict", "--model", work / "model.pt", "--bse", s / "bse.tif", "--window", "512",
             "--out-prob", out / "p.tif", "--out-mask", out / "m.tif"],
            ["p.tif", "m.tif"],
        ),
        "mgmap": (
            ["mgmap", "--bse", s / "bse.tif", "--mask", s / "truth" / "olivine.tif",
             "--calibration", work / "calibration.json", "--out", out / "mg.tif"],
            ["mg.tif", "mg.outliers.tif"],
        ),
        "masks": (
            ["masks", "--eds", s / "eds.tif", "--rules", CONFIGS / "rules" / "olivine.yaml",
             "--bse", s / "bse.tif",
             "--out", out / "mask.tif"],
            ["mask.tif", "mask.report.json"],
        ),
        "dataset": (
            ["dataset", "--bse", s / "bse.tif", "--labels", work / "mask.tif",
             "--sessions", s / "sessions.csv", "--tile", "128x128", "--out", out / "ds"],
            ["ds"],
        ),
        "tiles": (["tiles", work / "results", "--out", out / "site"], ["site"]),
        "crystals": (
            ["crystals", "--bse", s / "bse.tif", "--mask", s / "truth" / "olivine.tif",
             "--out", out / "cat"],
            ["cat"],
        ),
    }  # fmt: skip


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MB tmpfs (needs root, as CI runs); skipped elsewhere, where the patched-writer
    test below covers the same path."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = (
        os.geteuid() == 0
        and shutil.which("mount") is not None
        and subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES}", "tmpfs", str(disk)],
            capture_output=True,
            check=False,
        ).returncode
        == 0
    )
    if not mounted:
        pytest.skip("mounting a tmpfs needs root; test_broken_outputs_are_never_renamed covers it")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


@pytest.fixture
def read_only_disk(tiny_disk: Path) -> Path:
    """The tiny tmpfs remounted read-only (root can write in a chmod-ed folder, not there)."""
    subprocess.run(["mount", "-o", "remount,ro", str(tiny_disk)], check=True)
    return tiny_disk


def fill(disk: Path, leave: int) -> None:
    """Fill ``disk`` up to ``leave`` bytes."""
    (disk / "filler").unlink(missing_ok=True)
    free = shutil.disk_usage(disk).free
    with open(disk / "filler", "wb") as f:
        f.write(b"\0" * max(free - leave, 0))


#: Bytes left free on the tiny disk, so that the run fails while writing its outputs (masks
#: writes small files; the others fail at their first large one).
LEAVE = {"masks": 8 << 10}


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every result file under ``folder`` and its bytes (the filler, and the progress file a
    resumable run keeps, left out)."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != "filler" and not p.name.endswith(".resume.npz")
    }


def one_error_line(res: subprocess.CompletedProcess, *names: str) -> str:
    """The run failed with one error line that names one of ``names``."""
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 1, res.stderr
    assert len(lines) == 1 and lines[0].startswith("olmap: error: "), res.stderr
    assert any(name in lines[0] for name in names), lines[0]
    return lines[0]


@pytest.mark.parametrize("command", ["predict", "mgmap", "masks", "dataset", "tiles", "crystals"])
def test_full_disk_fails_in_one_line_and_leaves_nothing(
    command: str, section_dir: Path, work: Path, tiny_disk: Path
) -> None:
    args, outputs = commands(section_dir, work, tiny_disk)[command]
    fill(tiny_disk, LEAVE.get(command, 48 << 10))
    res = run_olmap(*args)
    one_error_line(res, *(f"{tiny_disk / name}: " for name in outputs))
    left = [p.name for p in tiny_disk.iterdir() if p.name != "filler"]
    assert [n for n in left if not n.endswith(".resume.npz")] == [], left  # LOF progress may stay
    assert "Wrote" not in res.stdout


@pytest.mark.parametrize("command", ["predict", "mgmap", "masks", "dataset", "tiles", "crystals"])
def test_full_disk_keeps_an_earlier_result_under_overwrite(
    command: str, section_dir: Path, work: Path, tiny_disk: Path
) -> None:
    args, outputs = commands(section_dir, work, tiny_disk)[command]
    res = run_olmap(*args)
    assert res.returncode == 0, res.stderr
    before = snapshot(tiny_disk)
    fill(tiny_disk, LEAVE.get(command, 24 << 10))
    res = run_olmap(*args, "--overwrite")
    one_error_line(res, *(f"{tiny_disk / name}: " for name in outputs))
    assert snapshot(tiny_disk) == before


@pytest.mark.parametrize("command", ["predict", "mgmap", "masks", "dataset", "tiles", "crystals"])
def test_broken_outputs_are_never_renamed(
    command: str, section_dir: Path, work: Path, tmp_path: Path, monkeypatch
) -> None:
    """Without a tmpfs: the check of finished files fails as it does on a cut-short file."""
    from typer.testing import CliRunner

    import olmap.io.outputs as outputs
    from olmap.cli.main import app
    from olmap.io.verify import DamagedFileError

    args, names = commands(section_dir, work, tmp_path)[command]
    runner = CliRunner()
    first = runner.invoke(app, [str(a) for a in args])
    assert first.exit_code == 0, first.output
    before = snapshot(tmp_path)

    def cut_short(path, kind=None):
        raise DamagedFileError("blocks end past the end of the file (cut short)")

    monkeypatch.setattr(outputs, "verify_file", cut_short)
    monkeypatch.setattr(outputs, "verify_tree", cut_short)
    again = runner.invoke(app, [*map(str, args), "--overwrite"])
    assert isinstance(again.exception, outputs.OutputWriteError), again.output
    assert any(f"{tmp_path / name}: could not" in str(again.exception) for name in names)
    assert snapshot(tmp_path) == before
    assert not list(tmp_path.glob("*.partial"))


@pytest.mark.parametrize("command", ["crystals", "calibrate", "evaluate"])
def test_an_unwritable_output_is_found_before_any_work(
    command: str, section_dir: Path, work: Path, read_only_disk: Path
) -> None:
    """Once found only after minutes of work (crystals, calibrate, evaluate)."""
    s, out = section_dir, read_only_disk
    args = {
        "crystals": commands(s, work, out)["crystals"][0],
        "calibrate": ["calibrate", "--bse", s / "bse.tif", "--mask", s / "truth" / "olivine.tif",
                      "--profiles", s / "epma.csv", "--out", out / "cal.json"],
        "evaluate": ["evaluate", "--pred", work / "pred.tif", "--ref", work / "mask.tif",
                     "--json", out / "scores.json"],
    }[command]  # fmt: skip
    res = run_olmap(*args)
    line = one_error_line(res, f"{out}")
    assert "cannot write in" in line and "read-only" in line.lower()


def test_two_predictions_into_the_same_outputs(section_dir: Path, work: Path, tmp_path: Path):
    """The second stops at once with one line naming the first; the first succeeds."""
    args = [
        "predict", "--model", work / "model.pt", "--bse", section_dir / "bse.tif",
        "--window", "128", "--stride", "64", "--out-prob", tmp_path / "p.tif",
        "--out-mask", tmp_path / "m.tif",
    ]  # fmt: skip
    first = subprocess.Popen(
        [sys.executable, "-m", "olmap", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lock = tmp_path / "m.tif.lock"
        for _ in range(600):
            if lock.exists() and lock.read_text():
                break
            time.sleep(0.05)
        t0 = time.monotonic()
        second = run_olmap(*args)
        assert time.monotonic() - t0 < 30
        line = one_error_line(second, "another olmap run")
        assert f"pid {first.pid}" in line
        _out, err = first.communicate(timeout=600)
    finally:
        first.kill()
        first.wait()
    assert first.returncode == 0, err
    assert read_raster(tmp_path / "m.tif").shape == (1, 1024, 1024)


def test_kill_9_then_the_same_command_resumes_to_the_same_result(
    section_dir: Path, work: Path, tmp_path: Path
) -> None:
    base = [
        "predict", "--model", work / "model.pt", "--bse", section_dir / "bse.tif",
        "--window", "128", "--stride", "64", "--band", "512", "--save-every", "0.1",
    ]  # fmt: skip
    whole = run_olmap(*base, "--out-prob", tmp_path / "wp.tif", "--out-mask", tmp_path / "wm.tif")
    assert whole.returncode == 0, whole.stderr
    args = [*base, "--out-prob", tmp_path / "p.tif", "--out-mask", tmp_path / "m.tif"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "olmap", *map(str, args)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    progress = progress_path(tmp_path / "m.tif")
    try:
        done = 0
        for _ in range(2400):  # 4 blocks: kill once 2 are saved
            done = _saved_blocks(progress)
            if done >= 2 or proc.poll() is not None:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert done >= 2 and not (tmp_path / "m.tif").exists()
    res = run_olmap(*args)
    assert res.returncode == 0, res.stderr
    assert "resuming" in res.stderr and "resumed after" in res.stdout
    for a, b in (("p.tif", "wp.tif"), ("m.tif", "wm.tif")):
        assert np.array_equal(read_raster(tmp_path / a), read_raster(tmp_path / b))


def _saved_blocks(progress: Path) -> int:
    """How many finished blocks a run's progress file lists (read from outside the run)."""
    try:
        with np.load(progress, allow_pickle=False) as data:
            return int(json.loads(str(data["__meta__"]))["done"])
    except (OSError, ValueError, KeyError, EOFError):
        return 0  # not written yet, or being replaced


def test_ctrl_c_outside_a_resumable_run_says_so(section_dir: Path, tmp_path: Path) -> None:
    """``olmap crystals`` keeps nothing of an interrupted run, and says so in one line."""
    big = np.zeros((2048, 2048), np.uint8)
    big[100:1900, 100:1900] = 1  # one 3 Mpx crystal: seconds of splitting to interrupt
    bse = read_raster(section_dir / "bse.tif")[0]
    write_raster(tmp_path / "mask.tif", big, pixel_size_um=1.0, tags={"classes": "0=bg,1=olivine"})
    write_raster(tmp_path / "bse.tif", np.tile(bse, (2, 2)), pixel_size_um=1.0)
    proc = subprocess.Popen(
        [sys.executable, "-m", "olmap", "crystals", "--bse", "bse.tif", "--mask", "mask.tif",
         "--out", "cat"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # As from a terminal: Ctrl-C not ignored, even if something in this test session
        # left SIGINT ignored (an ignored SIGINT is inherited, and the run then finishes).
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    # Interrupt the job, not Python's start-up: the output's lock appears once the job has
    # claimed its outputs (after the imports, which take seconds on a loaded machine).
    deadline = time.monotonic() + 60
    while not (tmp_path / "cat.lock").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(2)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert err.strip().splitlines() == [
        "olmap: stopped: interrupted; nothing was written under the output names"
    ]
    assert not (tmp_path / "cat").exists() and not list(tmp_path.glob("cat.*"))

import time

import numpy as np
import pytest

from olmap.errors import InputError, OutputExistsError, OutputLockedError, OutputWriteError
from olmap.io.outputs import (
    atomic_dir,
    atomic_path,
    atomic_paths,
    check_free_space,
    claim_outputs,
    lock_name,
    output_lock,
    partial_name,
)
from olmap.io.raster import create_raster, read_raster


def test_atomic_path_renames_only_on_success(tmp_path):
    out = tmp_path / "result.txt"
    with pytest.raises(RuntimeError), atomic_path(out) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash")
    assert not out.exists() and not partial_name(out).exists()
    with atomic_path(out) as tmp:
        tmp.write_text("whole")
    assert out.read_text() == "whole"


def test_existing_output_needs_overwrite(tmp_path):
    out = tmp_path / "result.txt"
    out.write_text("precious")
    with pytest.raises(OutputExistsError, match="--overwrite"), atomic_path(out) as tmp:
        tmp.write_text("new")
    assert out.read_text() == "precious"
    with atomic_path(out, overwrite=True) as tmp:
        tmp.write_text("new")
    assert out.read_text() == "new"


def test_atomic_dir_keeps_old_results_when_the_new_run_fails(tmp_path):
    out = tmp_path / "run"
    with atomic_dir(out) as tmp:
        (tmp / "a.txt").write_text("1")
    with pytest.raises(KeyboardInterrupt), atomic_dir(out, overwrite=True) as tmp:
        (tmp / "a.txt").write_text("2")
        raise KeyboardInterrupt
    assert (out / "a.txt").read_text() == "1"
    assert not partial_name(out).exists()
    with pytest.raises(OutputExistsError):
        with atomic_dir(out):
            pass
    empty = tmp_path / "empty"
    empty.mkdir()
    with atomic_dir(empty) as tmp:  # an empty folder may be filled without --overwrite
        (tmp / "x").write_text("x")
    assert (empty / "x").exists()


def test_outputs_must_not_be_inputs(tmp_path):
    from olmap.io.outputs import check_outputs_distinct

    (tmp_path / "eds.tif").write_text("x")
    with pytest.raises(InputError, match="output is an input"):
        check_outputs_distinct([tmp_path / "eds.tif"], [tmp_path / "eds.tif"])
    with pytest.raises(InputError, match="holds the input"):
        check_outputs_distinct([tmp_path], [tmp_path / "eds.tif"])
    with pytest.raises(InputError, match="two different outputs"):
        check_outputs_distinct([tmp_path / "a.tif", tmp_path / "./a.tif"], [])
    check_outputs_distinct([tmp_path / "mask.tif", None], [tmp_path / "eds.tif", None])


# --- claims, locks and commits (issue: never a silently wrong or lost result) ------------


def test_a_second_run_into_the_same_output_stops_at_once_naming_the_first(
    tmp_path, lock_held_elsewhere
):
    out = tmp_path / "report.txt"
    with lock_held_elsewhere(out) as other:
        t0 = time.monotonic()
        with pytest.raises(OutputLockedError, match=rf"pid {other.pid}.*wait for it"):
            with claim_outputs([out]):
                pass
        assert time.monotonic() - t0 < 5  # at once, not after the work
        assert not out.exists()
    # Killed with SIGKILL: its lock file stays, the lock does not; the next run takes it.
    assert lock_name(out).exists()
    with atomic_path(out) as tmp:
        tmp.write_text("mine")
    assert out.read_text() == "mine" and not lock_name(out).exists()


def test_locks_are_reentrant_within_a_process(tmp_path):
    out = tmp_path / "a.txt"
    with claim_outputs([out]), output_lock(out), atomic_path(out) as tmp:
        tmp.write_text("x")
    assert out.read_text() == "x" and not lock_name(out).exists()


def test_unwritable_folder_found_before_any_work(tmp_path, monkeypatch):
    import olmap.io.outputs as outputs

    def refuse(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(outputs.os, "open", refuse)
    with (
        pytest.raises(OutputWriteError, match="cannot write in"),
        claim_outputs([tmp_path / "out" / "x.tif"]),
    ):
        pytest.fail("the work must not start")
    assert not (tmp_path / "out").exists()  # the folder made for it is gone again


def test_several_outputs_appear_together_or_not_at_all(tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text('{"old": 1}')
    with pytest.raises(OutputWriteError, match=r"b\.json"):
        with atomic_paths([a, b], overwrite=True) as (ta, tb):
            ta.write_text('{"new": 1}')
            tb.write_text('{"cut short')  # damaged: found by the check before any rename
    assert a.read_text() == '{"old": 1}' and not b.exists()
    assert not list(tmp_path.glob("*.partial"))


def test_a_damaged_raster_never_replaces_a_good_one(tmp_path, monkeypatch):
    """The finished file fails its check (as a cut-short one does: tests/io/test_verify.py)."""
    import olmap.io.outputs as outputs
    from olmap.io.verify import DamagedFileError

    out = tmp_path / "mg.tif"
    good = np.arange(600 * 600, dtype=np.float32).reshape(600, 600)
    with create_raster(out, height=600, width=600, dtype="float32", pixel_size_um=1.0) as ds:
        ds.write(good[None])

    def damaged(path, kind=None):
        raise DamagedFileError("blocks end past the end of the file (cut short)")

    monkeypatch.setattr(outputs, "verify_file", damaged)
    with pytest.raises(OutputWriteError, match=r"mg\.tif: could not be written .*cut short"):
        with create_raster(
            out, height=600, width=600, dtype="float32", pixel_size_um=1.0, overwrite=True
        ) as ds:
            ds.write(good[None] + 1)
    assert np.array_equal(read_raster(out)[0], good)
    assert not list(tmp_path.glob("*.partial")) and not list(tmp_path.glob("*.lock"))


def test_free_space_checked_up_front(tmp_path):
    with pytest.raises(OutputWriteError, match="free on its file system"):
        check_free_space(tmp_path / "ds", 1 << 62, "the tiles")
    check_free_space(tmp_path / "ds", 1, "the tiles")

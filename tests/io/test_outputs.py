import pytest

from olmap.errors import InputError, OutputExistsError
from olmap.io.outputs import atomic_dir, atomic_path, partial_name


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

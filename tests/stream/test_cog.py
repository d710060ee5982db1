"""COGs rendered block by block on the engine: valid COG layout, exact values, nothing left
on failure, resumable after an interruption."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from rasterio.enums import ColorInterp

from olmap.io.cog import is_cog
from olmap.io.raster import micrometre_transform
from olmap.io.resume import RunInterrupted
from olmap.stream.cog import write_cog


def _render_from(array):
    def render(window):
        r, c = window.row_off, window.col_off
        return array[:, r : r + window.height, c : c + window.width]

    return render


def test_write_cog_is_a_cog_with_the_rendered_values(tmp_path):
    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, (4, 1100, 900), dtype=np.uint8)
    out = tmp_path / "x_rgb.tif"
    written = []
    write_cog(
        out,
        _render_from(rgba),
        height=1100,
        width=900,
        count=4,
        dtype="uint8",
        transform=micrometre_transform(1100, 0.5),
        colour=True,
        blocksize=256,
        tags={"colour_scale": "test"},
        progress=written.append,
    )
    assert is_cog(out)
    assert sum(written) == 1100 * 900
    with rasterio.open(out) as ds:
        assert ds.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert ds.block_shapes[0] == (256, 256)
        assert ds.overviews(1) == [2, 4, 8]  # until the image fits one block (1100 / 8 < 256)
        assert ds.colorinterp[3] == ColorInterp.alpha
        assert ds.tags()["colour_scale"] == "test"
        assert ds.transform == micrometre_transform(1100, 0.5)
        assert np.array_equal(ds.read(), rgba)
    assert list(tmp_path.iterdir()) == [out]  # no staging file left


def test_a_failing_render_leaves_no_output(tmp_path):
    def render(window):
        if window.row_off > 0:
            raise RuntimeError("boom")
        return np.zeros((1, window.height, window.width), np.float32)

    with pytest.raises(RuntimeError):
        write_cog(
            tmp_path / "x.tif",
            render,
            height=600,
            width=300,
            count=1,
            dtype="float32",
            transform=micrometre_transform(600, 1.0),
            blocksize=256,
        )
    assert list(tmp_path.iterdir()) == []


def test_a_render_of_the_wrong_shape_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="shape"):
        write_cog(
            tmp_path / "x.tif",
            lambda w: np.zeros((2, 3, 3)),
            height=10,
            width=10,
            count=1,
            dtype="uint8",
            transform=micrometre_transform(10, 1.0),
        )


def test_an_interrupted_cog_resumes_with_the_same_pixels(tmp_path, monkeypatch):
    """A Ctrl-C during rendering keeps the staging raster and its checkpoint; the same call
    renders only the missing windows, and the COG equals an uninterrupted one."""
    import signal

    rng = np.random.default_rng(1)
    grey = rng.integers(0, 256, (2, 700, 600), dtype=np.uint8)
    calls = []

    def render(window):
        calls.append(window)
        if len(calls) == 3:
            signal.raise_signal(signal.SIGINT)  # deferred to the end of this window
        return _render_from(grey)(window)

    kwargs = dict(
        height=700,
        width=600,
        count=2,
        dtype="uint8",
        transform=micrometre_transform(700, 1.0),
        colour=True,
        blocksize=256,
        fingerprint="job-1",
    )
    out = tmp_path / "g.tif"
    with pytest.raises(RunInterrupted, match="of 9 blocks"):
        write_cog(out, render, **kwargs)
    assert not out.exists()
    assert (tmp_path / "g.tif.staging.tif").exists()
    calls.clear()
    resumed = []
    write_cog(out, _render_from(grey), progress=resumed.append, **kwargs)
    assert sum(resumed) == 700 * 600  # the finished windows reported once, the rest rendered
    with rasterio.open(out) as ds:
        assert np.array_equal(ds.read(), grey)
        assert ds.colorinterp[1] == ColorInterp.alpha
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.tif"]

"""COGs written window by window: valid COG layout, exact values, nothing left on failure."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from rasterio.enums import ColorInterp

from olmap.io.cog import copy_cog, is_cog, read_decimated, write_cog
from olmap.io.raster import micrometre_transform, write_raster


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


def test_copy_cog_keeps_values_nodata_and_tags(tmp_path):
    values = np.linspace(0.7, 0.9, 700 * 650, dtype=np.float32).reshape(700, 650)
    values[:50] = np.nan
    src = write_raster(
        tmp_path / "mg.tif",
        values,
        pixel_size_um=2.0,
        nodata=float("nan"),
        tags={"quantity": "mg_num"},
    )
    out = copy_cog(src, tmp_path / "cog.tif", blocksize=256)
    assert is_cog(out)
    with rasterio.open(out) as ds:
        np.testing.assert_array_equal(ds.read(1), values)
        assert np.isnan(ds.nodata) and ds.tags()["quantity"] == "mg_num"
    sample, valid = read_decimated(out, max_side=100)
    assert max(sample.shape) == 100
    assert not valid[:5].any() and valid[10:].all()
    assert 0.7 <= np.nanmin(sample[valid]) and np.nanmax(sample[valid]) <= 0.9

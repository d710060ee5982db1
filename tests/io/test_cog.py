"""COGs copied from rasters: valid COG layout, exact values; decimated reads."""

from __future__ import annotations

import numpy as np
import rasterio

from olmap.io.cog import copy_cog, is_cog, read_decimated
from olmap.io.raster import write_raster


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

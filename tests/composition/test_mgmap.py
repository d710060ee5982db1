"""The streamed mg# map: chunk-border crystals filtered exactly, drift removed, NaN elsewhere."""

from __future__ import annotations

import os
import signal

import numpy as np
import pandas as pd
import pytest
import rasterio

from olmap.composition.config import MgMapConfig
from olmap.composition.drift import SessionDrift
from olmap.composition.mgmap import mg_map
from olmap.composition.regression import LinearCalibration
from olmap.errors import OutputExistsError
from olmap.io.raster import write_raster
from olmap.io.resume import RunInterrupted, progress_path

CAL = LinearCalibration(-0.0025, 1.1)


@pytest.fixture(scope="module")
def mosaic(tmp_path_factory):
    """300 x 300 px, crystals across the 64-px chunk borders, cracks, two drifting sessions."""
    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[0:300, 0:300]
    mask = np.zeros((300, 300), np.uint8)
    mg = np.full((300, 300), np.nan)
    crack = np.zeros((300, 300), bool)
    for cy, cx, radius, core in [(64, 64, 40, 0.88), (190, 128, 55, 0.80), (250, 250, 30, 0.84)]:
        r = np.hypot(yy - cy, xx - cx)
        inside = r < radius
        mask[inside] = 1
        mg[inside] = core - 0.06 * (r[inside] / radius) ** 2
        crack |= inside & (np.abs((yy - cy) - 0.5 * (xx - cx)) < 1.0) & (r < radius - 5)
    truth_bse = np.where(mask == 1, (mg - CAL.intercept) / CAL.slope, 70.0)
    truth_bse[crack] = 20.0
    # Session "a" covers columns 0-149, "b" columns 150-299, each with its own drift.
    gain = np.where(xx < 150, 0.95, 1.05)
    offset = np.where(xx < 150, 4.0, -3.0)
    bse = gain * truth_bse + offset + rng.normal(0, 1.5, truth_bse.shape)
    folder = tmp_path_factory.mktemp("mgmap")
    write_raster(
        folder / "bse.tif", np.clip(bse, 0, 255).round().astype(np.uint8), pixel_size_um=1.0
    )
    write_raster(folder / "mask.tif", mask, pixel_size_um=1.0)
    drift = SessionDrift({"a": 0.95, "b": 1.05}, {"a": 4.0, "b": -3.0})
    regions = pd.DataFrame(
        {
            "session": ["a", "b"],
            "x0_um": [0, 150],
            "y0_um": [0, 0],
            "x1_um": [150, 300],
            "y1_um": [300, 300],
        }
    )
    return folder, mg, crack, drift, regions


def run(folder, name, drift, regions, chunk, overwrite=False):
    config = MgMapConfig(chunk=chunk)
    result = mg_map(
        folder / "bse.tif",
        folder / "mask.tif",
        CAL,
        folder / f"{name}.tif",
        drift=drift,
        regions=regions,
        config=config,
        overwrite=overwrite,
    )
    with rasterio.open(result.mg_path) as ds:
        mg = ds.read(1)
    with rasterio.open(result.outliers_path) as ds:
        out = ds.read(1)
    return result, mg, out


def test_chunked_equals_whole(mosaic):
    folder, _, _, drift, regions = mosaic
    small, mg_small, out_small = run(folder, "small", drift, regions, chunk=64)
    whole, mg_whole, out_whole = run(folder, "whole", drift, regions, chunk=512)
    assert small.crystals == whole.crystals == 3
    assert np.array_equal(out_small, out_whole)
    np.testing.assert_allclose(mg_small, mg_whole, rtol=0, atol=1e-6, equal_nan=True)


def test_map_quality(mosaic):
    folder, mg_true, crack, drift, regions = mosaic
    result, mg, out = run(folder, "q", drift, regions, chunk=128)
    assert out[crack].mean() >= 0.8  # cracks are flagged...
    clean = np.isfinite(mg_true) & ~crack
    assert out[clean].mean() <= 0.05  # ...clean olivine is not
    assert np.isnan(mg[~np.isfinite(mg_true)]).all()  # NaN off olivine
    assert np.isnan(mg[out == 1]).all()  # and on outliers
    ok = clean & np.isfinite(mg)
    rmse = np.sqrt(np.mean((mg[ok] - mg_true[ok]) ** 2))
    assert rmse <= 0.01
    # Without the drift correction the two sessions disagree by several mg# units.
    _, mg_raw, _ = run(folder, "raw", None, None, chunk=128)
    assert np.sqrt(np.nanmean((mg_raw[ok] - mg_true[ok]) ** 2)) > 3 * rmse
    assert result.olivine_pixels == int(np.isfinite(mg_true).sum())


def test_existing_outputs_are_kept(mosaic):
    folder, _, _, drift, regions = mosaic
    run(folder, "keep", drift, regions, chunk=512)
    before = (folder / "keep.tif").stat().st_mtime_ns
    with pytest.raises(OutputExistsError):
        run(folder, "keep", drift, regions, chunk=512)
    assert (folder / "keep.tif").stat().st_mtime_ns == before


def test_interrupted_run_resumes_to_the_same_result(mosaic):
    folder, _, _, drift, regions = mosaic
    _, mg_ref, out_ref = run(folder, "ref", drift, regions, chunk=128)
    config = MgMapConfig(chunk=128)
    target = folder / "resumed.tif"

    def ctrl_c_after_first_crystal(stage, done, total):
        if stage == "outliers" and done == 1:
            os.kill(os.getpid(), signal.SIGINT)  # as a user's Ctrl-C, deferred by the job

    with pytest.raises(RunInterrupted, match="run the same command again"):
        mg_map(folder / "bse.tif", folder / "mask.tif", CAL, target, drift=drift,
               regions=regions, config=config, progress=ctrl_c_after_first_crystal)  # fmt: skip
    assert progress_path(target).exists() and not target.exists()
    seen = []

    def record(stage, done, total):
        seen.append((stage, done))

    mg_map(folder / "bse.tif", folder / "mask.tif", CAL, target, drift=drift, regions=regions,
           config=config, progress=record)  # fmt: skip
    assert ("outliers", 1) not in seen and ("outliers", 2) in seen  # crystal 1 was not redone
    assert not progress_path(target).exists()
    with rasterio.open(target) as ds:
        np.testing.assert_array_equal(ds.read(1), mg_ref)
    with rasterio.open(folder / "resumed.outliers.tif") as ds:
        np.testing.assert_array_equal(ds.read(1), out_ref)


def test_nodata_and_ignore_pixels(mosaic, tmp_path):
    """BSE nodata inside a crystal and 255 in the mask: no crash, NaN there, counted."""
    folder, mg_true, _, drift, regions = mosaic
    with rasterio.open(folder / "bse.tif") as ds:
        bse = ds.read(1)
    with rasterio.open(folder / "mask.tif") as ds:
        mask = ds.read(1)
    bse[40:60, 40:60] = 0  # a gap in the mosaic across the first crystal
    mask[180:190, 120:130] = 255  # ignore: not olivine
    write_raster(tmp_path / "bse.tif", bse, pixel_size_um=1.0, nodata=0)
    write_raster(tmp_path / "mask.tif", mask, pixel_size_um=1.0)
    result = mg_map(tmp_path / "bse.tif", tmp_path / "mask.tif", CAL, tmp_path / "mg.tif",
                    drift=drift, regions=regions, config=MgMapConfig(chunk=64))  # fmt: skip
    with rasterio.open(tmp_path / "mg.tif") as ds:
        mg = ds.read(1)
    assert np.isnan(mg[40:60, 40:60]).all() and np.isnan(mg[180:190, 120:130]).all()
    assert result.unmapped == int((mask[40:60, 40:60] == 1).sum())
    ok = np.isfinite(mg) & np.isfinite(mg_true)
    assert np.sqrt(np.mean((mg[ok] - mg_true[ok]) ** 2)) <= 0.01


@pytest.mark.parametrize("gain,black", [(257, 0), (93, 3000)])
def test_sixteen_bit_bse_of_any_contrast_gets_the_same_outliers(mosaic, tmp_path, gain, black):
    # The LOF scale comes from each crystal's own noise, so another detector gain and black
    # level change nothing (a fixed 1/257 per 16-bit level held for gain 257 only).
    folder, _, _, _, _ = mosaic
    with rasterio.open(folder / "bse.tif") as ds:
        bse = ds.read(1).astype(np.uint16) * gain + black
    write_raster(tmp_path / "bse16.tif", bse, pixel_size_um=1.0)
    cal16 = LinearCalibration(CAL.slope / gain, CAL.intercept - CAL.slope * black / gain)
    config = MgMapConfig(chunk=128)
    r8 = mg_map(folder / "bse.tif", folder / "mask.tif", CAL, tmp_path / "a.tif", config=config)
    r16 = mg_map(tmp_path / "bse16.tif", folder / "mask.tif", cal16, tmp_path / "b.tif",
                 config=config)  # fmt: skip
    with rasterio.open(r8.outliers_path) as a, rasterio.open(r16.outliers_path) as b:
        assert np.array_equal(a.read(1), b.read(1))

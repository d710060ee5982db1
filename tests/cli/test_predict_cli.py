"""``olmap mosaic`` and ``olmap predict`` as users call them (shared/CLI.md)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from olmap.io.raster import raster_info, read_raster
from olmap.segment.checkpoint import save_checkpoint
from olmap.segment.job import synthetic_init_model
from olmap.synth.tiles import cut_tiles

from ..conftest import run_olmap as olmap


def test_mosaic_then_predict_as_documented(section_dir: Path, tmp_path: Path) -> None:
    cut_tiles(section_dir / "bse.tif", tmp_path / "tiles", rows=2, cols=3, overlap=(32, 32))
    res = olmap(
        "mosaic", "tiles", "--rows", "2", "--cols", "3", "--out", "mosaic.vrt", cwd=tmp_path
    )
    assert res.returncode == 0, res.stderr
    assert (
        "Seams (7 overlaps)" in res.stdout
        and (tmp_path / "mosaic.tiles.csv").exists()
        and "estimated overlap: 32 px" in res.stderr
    )
    assert (tmp_path / "mosaic.seams.csv").exists()

    model, meta = synthetic_init_model(["unclassified", "olivine"])
    save_checkpoint(tmp_path / "model.pt", model, meta)
    args = [
        "predict", "--model", "model.pt", "--bse", "mosaic.vrt", "--out-prob", "prob.tif",
        "--out-mask", "pred_mask.tif", "--window", "256", "--stride", "128", "--threshold", "0.5",
        "--device", "cpu",
    ]  # fmt: skip
    res = olmap(*args, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "olivine" in res.stdout and "Mpx/s" in res.stdout
    info = raster_info(tmp_path / "pred_mask.tif")
    assert info.shape == raster_info(tmp_path / "mosaic.vrt").shape
    assert info.transform == raster_info(tmp_path / "mosaic.vrt").transform
    assert set(np.unique(read_raster(tmp_path / "pred_mask.tif"))) <= {0, 1}
    # a second run keeps the result unless told otherwise
    again = olmap(*args, cwd=tmp_path)
    assert again.returncode == 1 and "pass --overwrite" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1
    # the probabilities are scored by olmap evaluate like float probabilities
    truth = section_dir / "truth" / "phases.tif"
    h, w = info.shape
    assert h < 1024 or w < 1024  # the tiles cover part of the section: evaluate on that part
    import rasterio
    from rasterio.windows import Window

    with rasterio.open(truth) as src:
        crop = src.read(1, window=Window(0, 0, w, h))
        profile = {**src.profile, "height": h, "width": w, "transform": info.transform}
        tags = src.tags()
    with rasterio.open(tmp_path / "ref.tif", "w", **profile) as dst:
        dst.write(crop, 1)
        dst.update_tags(**tags)
    res = olmap("evaluate", "--pred", "prob.tif", "--ref", "ref.tif", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "AUC" in res.stdout


def test_predict_errors_are_one_line(section_dir: Path, tmp_path: Path) -> None:
    res = olmap(
        "predict", "--model", str(section_dir / "bse.tif"), "--bse", str(section_dir / "bse.tif"),
        "--out-prob", "p.tif", "--out-mask", "m.tif", cwd=tmp_path,
    )  # fmt: skip
    assert res.returncode == 1
    assert "not a readable model checkpoint" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    res = olmap(
        "mosaic", str(tmp_path), "--rows", "2", "--cols", "2", "--out", "m.vrt", cwd=tmp_path
    )
    assert res.returncode == 1 and "no tile images" in res.stderr

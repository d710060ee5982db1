"""``build_site`` on a synthetic section: COGs, pyramids, crystals, resume, bad input."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
import rasterio
from PIL import Image

from olmap.errors import InputError, NotCoregisteredError
from olmap.io.cog import is_cog
from olmap.io.pyramid import PyramidSpec
from olmap.io.raster import micrometre_transform, raster_info, write_raster
from olmap.io.results import find_results
from olmap.io.resume import RunInterrupted
from olmap.io.vector import read_catalogue
from olmap.tiles.config import TilesConfig
from olmap.tiles.site import build_site, display_scale


def _js(path, name):
    text = path.read_text()
    prefix = f"window.{name} = "
    assert text.startswith(prefix) and text.rstrip().endswith(";")
    return json.loads(text[len(prefix) :].rstrip().rstrip(";"))


def test_site_has_every_layer_as_cogs_and_tiles(site_dir, results_dir):
    meta = _js(site_dir / "data" / "site.js", "OLMAP_SITE")
    assert [layer["key"] for layer in meta["layers"]] == ["bse", "prob", "mgnum"]
    spec = PyramidSpec(1024, 1024)
    assert meta["max_zoom"] == spec.max_zoom == 2 and meta["tile_size"] == 256
    assert meta["origin_um"] == [0.0, 1024.0] and meta["pixel_size_um"] == 1.0
    for key in ("bse", "prob", "mgnum"):
        for name in (f"{key}.tif", f"{key}_rgb.tif"):
            assert is_cog(site_dir / "cog" / name), name
        tiles = sorted(
            p.relative_to(site_dir / "tiles" / key).as_posix()
            for p in (site_dir / "tiles" / key).rglob("*.png")
        )
        assert tiles == sorted(f"{z}/{y}/{x}.png" for z in range(3) for x, y in spec.tiles(z))
    # Values: BSE as given, probability as p (0-1, float32), mg# as given.
    with (
        rasterio.open(site_dir / "cog" / "prob.tif") as ds,
        rasterio.open(results_dir / "prob.tif") as src,
    ):
        assert ds.dtypes[0] == "float32"
        np.testing.assert_allclose(ds.read(1), src.read(1) / 255, atol=1e-6)
    with (
        rasterio.open(site_dir / "cog" / "mgnum.tif") as ds,
        rasterio.open(results_dir / "mgnum.tif") as src,
    ):
        np.testing.assert_array_equal(ds.read(1), src.read(1))
    # Legends are the display COG's scale; mg# spans the 1st-99th percentile of the map.
    mg = next(layer for layer in meta["layers"] if layer["key"] == "mgnum")
    values = raster_info(results_dir / "mgnum.tif")
    assert values.dtype == "float32"
    with rasterio.open(results_dir / "mgnum.tif") as ds:
        data = ds.read(1)
    lo, hi = np.nanpercentile(data, [1, 99])
    assert mg["legend"]["vmin"] == pytest.approx(lo, abs=0.006)
    assert mg["legend"]["vmax"] == pytest.approx(hi, abs=0.006)
    assert len(mg["legend"]["stops"]) == 11 and not mg["base"]
    # The deepest mg# tile is transparent off olivine, opaque on it.
    tile = np.array(Image.open(site_dir / "tiles" / "mgnum" / "2" / "1" / "1.png"))
    truth = np.isfinite(data[256:512, 256:512])
    assert np.array_equal(tile[..., 3] == 255, truth)


def test_site_crystals_match_the_catalogue(site_dir, results_dir):
    cat = read_catalogue(results_dir / "catalogue" / "crystals.gpkg")
    doc = _js(site_dir / "data" / "crystals.js", "OLMAP_CRYSTALS")
    assert len(doc["crystals"]) == len(cat) > 20
    ids = [c[1][doc["columns"].index("id")] for c in doc["crystals"]]
    assert ids == cat["id"].tolist()
    assert sum(g["count"] for g in doc["groups"]) == len(cat)
    meta = _js(site_dir / "data" / "site.js", "OLMAP_SITE")
    assert meta["crystals"] == len(cat) and meta["crops"] is True
    g = doc["groups"][doc["crystals"][0][0]]
    assert (site_dir / "crops" / g["folder"] / f"{ids[0]}.png").exists()
    for link in meta["downloads"]:
        assert (site_dir / link["href"]).is_file()
    # The viewer's files: index.html loads only files of the site (no network).
    html = (site_dir / "index.html").read_text()
    for src in re.findall(r'(?:src|href)="([^"]+)"', html):
        assert src.startswith("data:") or (site_dir / src).is_file(), src
    assert "http" not in html
    assert (site_dir / "vendor" / "leaflet" / "LICENSE").read_text().startswith("BSD 2-Clause")


def test_rasterio_engine_gives_the_same_site(results_dir, site_dir, tmp_path):
    out = tmp_path / "site"
    build_site(
        find_results(results_dir, prob=results_dir / "prob.tif"),
        out,
        TilesConfig(backend="rasterio"),
    )
    for key in ("bse", "prob", "mgnum"):
        a = sorted(p.relative_to(out).as_posix() for p in (out / "tiles" / key).rglob("*.png"))
        b = sorted(
            p.relative_to(site_dir).as_posix() for p in (site_dir / "tiles" / key).rglob("*.png")
        )
        assert a == b
    deep_a = np.array(Image.open(out / "tiles" / "bse" / "2" / "2" / "1.png"))
    deep_b = np.array(Image.open(site_dir / "tiles" / "bse" / "2" / "2" / "1.png"))
    np.testing.assert_array_equal(deep_a, deep_b)


def test_interrupted_site_resumes_from_finished_layers(results_dir, tmp_path):
    files = find_results(results_dir)
    out = tmp_path / "site"
    stages = []

    def stop_at_mg(stage, done, total):
        stages.append(stage)
        if stage.startswith("mg#"):
            raise KeyboardInterrupt

    with pytest.raises(RunInterrupted, match="continues"):
        build_site(files, out, progress=stop_at_mg)
    assert not out.exists()
    partial = tmp_path / "site.partial"
    assert (partial / "tiles" / "bse").is_dir() and (partial / "tiles" / "prob").is_dir()
    assert not (partial / "tiles" / "mgnum").exists()
    seen = []
    result = build_site(files, out, progress=lambda s, d, t: seen.append(s))
    assert result.resumed == ["bse", "prob"]
    assert not any(s.startswith(("BSE", "Olivine")) and "tiles" in s for s in seen)
    assert (out / "tiles" / "mgnum" / "0" / "0" / "0.png").exists() and not partial.exists()
    # Other settings: the partial site of another job is not reused.
    with pytest.raises(RunInterrupted):
        build_site(files, tmp_path / "b", progress=stop_at_mg)
    again = build_site(files, tmp_path / "b", TilesConfig(mg_range=(0.7, 0.9)))
    assert again.resumed == [] and again.scales["mgnum"].vmin == 0.7


def test_existing_site_is_kept_without_overwrite(site_dir, results_dir):
    with pytest.raises(FileExistsError, match="--overwrite"):
        build_site(find_results(results_dir), site_dir)


def test_rasters_off_the_bse_grid_are_refused(results_dir, tmp_path):
    shifted = write_raster(
        tmp_path / "mg.tif",
        np.zeros((1024, 1024), np.float32),
        transform=micrometre_transform(1024, 0.5),
    )
    with pytest.raises(NotCoregisteredError, match=r"mg\.tif"):
        build_site(find_results(results_dir, mgnum=shifted), tmp_path / "site")


def test_a_catalogue_of_another_section_is_refused(results_dir, tmp_path):
    cat = read_catalogue(results_dir / "catalogue" / "crystals.gpkg")
    cat["geometry"] = cat.translate(5000, 0)
    moved = tmp_path / "moved.parquet"
    cat.to_parquet(moved)
    with pytest.raises(InputError, match="another section"):
        build_site(find_results(results_dir, catalogue=moved), tmp_path / "site")


def test_a_folder_without_bse_is_refused(tmp_path):
    with pytest.raises(InputError, match="no BSE mosaic"):
        find_results(tmp_path)
    shutil.rmtree(tmp_path)
    with pytest.raises(FileNotFoundError, match="result folder"):
        find_results(tmp_path)


def test_a_narrow_mg_range_still_has_a_colour_scale():
    values = np.full((10, 10), 0.8502, np.float32)
    values[0, 0] = 0.8504
    scale = display_scale("mgnum", values, np.ones((10, 10), bool), TilesConfig())
    assert scale.vmin < scale.vmax


def test_unknown_colour_maps_are_refused_before_any_work():
    with pytest.raises(ValueError, match="mg_cmap"):
        TilesConfig(mg_cmap="virdis")


def test_resume_ignores_workers_and_survives_a_cut_job_file(results_dir, tmp_path):
    files = find_results(results_dir)

    def stop_at_mg(stage, done, total):
        if stage.startswith("mg#"):
            raise KeyboardInterrupt

    with pytest.raises(RunInterrupted):
        build_site(files, tmp_path / "a", TilesConfig(workers=2), progress=stop_at_mg)
    result = build_site(files, tmp_path / "a", TilesConfig(workers=1))
    assert result.resumed == ["bse", "prob"]
    with pytest.raises(RunInterrupted):
        build_site(files, tmp_path / "b", progress=stop_at_mg)
    (tmp_path / "b.partial" / ".tiles-job.json").write_text('{"olmap": ')  # a crash mid-write
    assert build_site(files, tmp_path / "b").resumed == []


@pytest.mark.parametrize("side", [1, 40])
def test_a_small_bse_mosaic_gives_a_site(tmp_path, side):
    """Once "internal error": libvips refused TIFF tiles larger than the image."""
    grey = (np.arange(side * side) % 251).astype(np.uint8).reshape(side, side)
    write_raster(tmp_path / "r" / "bse.tif", grey, pixel_size_um=1.0)
    build_site(find_results(tmp_path / "r"), tmp_path / "site")
    assert is_cog(tmp_path / "site" / "cog" / "bse.tif")
    with rasterio.open(tmp_path / "site" / "cog" / "bse.tif") as ds:
        assert np.array_equal(ds.read(1), grey)


def test_a_cut_short_bse_mosaic_is_named(results_dir, tmp_path):
    """Once "internal error" without a file name."""
    data = (results_dir / "bse.tif").read_bytes()
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "bse.tif").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=re.escape(str(tmp_path / "r" / "bse.tif"))):
        build_site(find_results(tmp_path / "r"), tmp_path / "site")
    assert not (tmp_path / "site").exists()

"""``olmap crystals`` on a synthetic section: against its truth, chunk-invariant, as documented."""

from __future__ import annotations

import json

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import pytest
import rasterio
from rasterio import features

from olmap.crystals.catalogue import crystal_catalogue
from olmap.crystals.config import CrystalsConfig
from olmap.crystals.evaluate import match_instances
from olmap.io.raster import write_raster

from ..conftest import run_olmap as olmap

# ../shared/CLI.md: "Catalogue columns (at least)".
CLI_COLUMNS = [
    "id", "class", "zoning", "core_rim_ratio", "area_um2", "perimeter_um", "centroid_x_um",
    "centroid_y_um", "mg_mean", "mg_core", "mg_rim", "touches_edge", "session",
]  # fmt: skip


@pytest.fixture(scope="module")
def catalogue(section_dir):
    return crystal_catalogue(
        section_dir / "bse.tif",
        section_dir / "truth" / "olivine.tif",
        mgmap_path=section_dir / "truth" / "mgnum.tif",
        sessions_path=section_dir / "sessions.csv",
    )


def test_catalogue_finds_the_true_crystals(catalogue, section_dir):
    cat = catalogue.catalogue
    with rasterio.open(section_dir / "truth" / "instances.tif") as src:
        instances, transform = src.read(1), src.transform
    with rasterio.open(section_dir / "truth" / "olivine.tif") as src:
        olivine = src.read(1) == 1
    pred = features.rasterize(
        zip(cat.geometry, cat["id"], strict=True), out_shape=olivine.shape, transform=transform
    )
    truth = pd.read_csv(section_dir / "truth" / "crystals.csv").set_index("id")
    truth = truth[truth["size_class"].notna()]
    match = match_instances(pred, np.where(olivine, instances, 0)).reindex(truth.index)
    matched = match["iou"] >= 0.5
    assert matched.mean() >= 0.9
    got = cat.set_index("id").loc[match.loc[matched, "pred_id"], "class"].to_numpy()
    assert (got == truth.loc[matched, "size_class"].to_numpy()).mean() >= 0.97
    # touches_edge: a pixel on the mosaic's border, i.e. the bounding box reaches it.
    with rasterio.open(section_dir / "bse.tif") as src:
        right, bottom = src.bounds.right, src.bounds.bottom
        left, top = src.bounds.left, src.bounds.top
    edge = (
        np.isclose(cat["bbox_xmin_um"], left)
        | np.isclose(cat["bbox_xmax_um"], right)
        | np.isclose(cat["bbox_ymin_um"], bottom)
        | np.isclose(cat["bbox_ymax_um"], top)
    )
    assert edge.any() and (cat["touches_edge"] == edge).all()
    # Every crystal lies in a session, and mg# comes from the map.
    assert (cat["session"] != "").all()
    assert cat["mg_mean"].between(0.65, 0.95).all()


def test_chunked_labelling_changes_nothing(catalogue, section_dir):
    small = crystal_catalogue(
        section_dir / "bse.tif",
        section_dir / "truth" / "olivine.tif",
        mgmap_path=section_dir / "truth" / "mgnum.tif",
        sessions_path=section_dir / "sessions.csv",
        config=CrystalsConfig(chunk=96),
    ).catalogue
    whole = catalogue.catalogue
    pd.testing.assert_frame_equal(
        pd.DataFrame(small.drop(columns="geometry")), pd.DataFrame(whole.drop(columns="geometry"))
    )
    assert small.geometry.geom_equals_exact(whole.geometry, tolerance=0).all()


def test_split_only_adds_crystals(catalogue, section_dir):
    plain = crystal_catalogue(
        section_dir / "bse.tif",
        section_dir / "truth" / "olivine.tif",
        config=CrystalsConfig(split_touching=False),
    )
    assert plain.catalogue["component"].is_unique  # the paper's rule: a component is a crystal
    assert len(catalogue.catalogue) >= len(plain.catalogue)
    assert catalogue.components == plain.components


def test_cli_as_documented(section_dir, tmp_path):
    d = section_dir
    args = (
        "crystals", "--bse", d / "bse.tif", "--mask", d / "truth" / "olivine.tif",
        "--mgmap", d / "truth" / "mgnum.tif", "--out", "catalogue/", "--qupath", "--crops",
    )  # fmt: skip
    res = olmap(*args, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    out = tmp_path / "catalogue"
    assert pyogrio.list_layers(out / "crystals.gpkg")[:, 0].tolist() == ["crystals"]
    gpkg = gpd.read_file(out / "crystals.gpkg", layer="crystals")
    geojson = gpd.read_file(out / "crystals.geojson")
    for frame in (gpkg, geojson):
        assert set(CLI_COLUMNS) <= set(frame.columns)
        assert frame.geometry.is_valid.all() and len(frame) == len(gpkg)
    assert set(gpkg["class"]) <= {"microlite", "microphenocryst", "phenocryst"}
    assert set(gpkg["zoning"]) <= {"", "normal", "reverse", "none", "complex"}
    assert (gpkg.loc[gpkg["class"] != "phenocryst", "zoning"] == "").all()
    # Polygons in µm: their areas are the crystals' olivine pixels (1 µm² each here).
    assert np.allclose(gpkg.geometry.area, gpkg["pixels"])
    csv = pd.read_csv(out / "crystals.csv")
    assert len(csv) == len(gpkg) and "geometry" not in csv.columns
    assert len(gpd.read_parquet(out / "crystals.parquet")) == len(gpkg)
    for name in ("counts.csv", "size_distribution.png", "mg_histogram.png"):
        assert (out / "stats" / name).stat().st_size > 0
    assert (out / "overview.png").stat().st_size > 0
    qupath = json.loads((out / "crystals.qupath.geojson").read_text())
    assert len(qupath["features"]) == len(gpkg)
    crops = sorted((out / "crops" / "microlite").glob("*.png"))
    assert len(crops) == (gpkg["class"] == "microlite").sum()
    # Existing results are kept unless --overwrite.
    again = olmap(*args, cwd=tmp_path)
    assert again.returncode == 1 and len(again.stderr.strip().splitlines()) == 1
    assert "--overwrite" in again.stderr
    assert olmap(*args, "--overwrite", cwd=tmp_path).returncode == 0


def test_cli_bad_input_is_one_line(section_dir, tmp_path):
    small = tmp_path / "small_mask.tif"
    write_raster(small, np.ones((64, 64), np.uint8), pixel_size_um=1.0)
    res = olmap(
        "crystals", "--bse", section_dir / "bse.tif", "--mask", small, "--out", "c",
        cwd=tmp_path,
    )  # fmt: skip
    assert res.returncode == 1
    assert "small_mask.tif" in res.stderr and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "c").exists()


def test_cli_config_settings_hold_unless_an_option_overrides(section_dir, tmp_path):
    (tmp_path / "c.yaml").write_text("split_touching: false\n")
    d = section_dir
    base = ("crystals", "--bse", d / "bse.tif", "--mask", d / "truth" / "olivine.tif")
    res = olmap(*base, "--config", "c.yaml", "--out", "a", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    plain = pd.read_csv(tmp_path / "a" / "crystals.csv")
    assert plain["component"].is_unique  # the config's split_touching: false held
    res = olmap(*base, "--config", "c.yaml", "--split", "--out", "b", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert not pd.read_csv(tmp_path / "b" / "crystals.csv")["component"].is_unique
    # Rules that read a column the catalogue lacks fail at once, naming the file.
    (tmp_path / "r.yaml").write_text("classes:\n  - name: a\n    when: {areaa: {gt: 1}}\n")
    res = olmap(*base, "--classes", "r.yaml", "--out", "c", cwd=tmp_path)
    assert res.returncode == 1 and "r.yaml" in res.stderr and "areaa" in res.stderr

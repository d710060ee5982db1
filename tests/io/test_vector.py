from __future__ import annotations

import json
import sqlite3
import uuid
from contextlib import closing
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pyogrio
import pytest
import shapely
from affine import Affine
from shapely.geometry import MultiPolygon, Point, Polygon, box, shape

from olmap.errors import InputError, InputFileNotFoundError, OlmapError
from olmap.io.vector import (
    DEFAULT_QUPATH_COLOURS,
    OTHER_QUPATH_COLOUR,
    read_catalogue,
    write_catalogue,
    write_qupath_geojson,
)

NAN = float("nan")
# Map µm of a mosaic with 0.5 µm pixels whose top-left corner is at x=100, y=800 (y up).
TRANSFORM = Affine(0.5, 0, 100.0, 0, -0.5, 800.0)

# Non-round coordinates so that a lossy writer (rounded decimals, float32) shows up.
X0, Y0 = 123.456789012345, 654.321098765432
SQUARE_WITH_HOLE = Polygon(
    box(X0, Y0, X0 + 40.125, Y0 + 40.125).exterior.coords,
    [box(X0 + 10.5, Y0 + 10.5, X0 + 20.25, Y0 + 20.25).exterior.coords[::-1]],
)
TRIANGLE = Polygon([(300.1, 300.2), (340.3, 300.4), (320.5, 333.333333333333)])
TWO_SQUARES = MultiPolygon([box(400.0, 400.0, 410.0, 410.0), box(420.0, 400.0, 430.5, 410.5)])


def _catalogue() -> gpd.GeoDataFrame:
    n = 3
    data: dict[str, object] = {
        "id": np.array([7, 8, 9], dtype=np.int64),
        "class": ["phenocryst", "microlite", "mystery"],
        "zoning": ["reverse", "", ""],
        "core_rim_ratio": [1.1, NAN, NAN],
        "area_um2": [1515.015625, 663.3, 214.25],
        "perimeter_um": [160.5, 120.1, 82.0],
        "equivalent_diameter_um": [43.9, 29.06, 16.5],
        "major_axis_um": [45.0, 41.0, 31.0],
        "minor_axis_um": [40.0, 30.0, 10.0],
        "aspect_ratio": [1.125, 1.3666666666666667, 3.1],
        "orientation_deg": [0.0, -12.5, 90.0],
        "solidity": [0.94, 1.0, 0.97],
        "roundness": [0.7, 0.6, 0.4],
        "centroid_x_um": [143.5, 320.3, 415.0],
        "centroid_y_um": [674.4, 311.3, 405.1],
        "bbox_xmin_um": [X0, 300.1, 400.0],
        "bbox_ymin_um": [Y0, 300.2, 400.0],
        "bbox_xmax_um": [X0 + 40.125, 340.3, 430.5],
        "bbox_ymax_um": [Y0 + 40.125, 333.333333333333, 410.5],
        "mg_mean": [0.85, 0.1 + 0.2, NAN],
        "mg_median": [0.851, 0.8, NAN],
        "mg_min": [0.80, 0.79, NAN],
        "mg_max": [0.88, 0.81, NAN],
        "mg_core": [0.84, NAN, NAN],
        "mg_rim": [0.86, NAN, NAN],
        **{f"mg_radial_{k}": [0.84 + k / 1000, NAN, NAN] for k in range(10)},
        "outlier_pixels": np.array([3, 0, 12], dtype=np.int64),
        "pixels": np.array([6060, 2653, 857], dtype=np.int64),
        "touches_edge": [False, True, False],
        "session": ["s1", "", "s2"],
        "extra_note": ["a", "b", "c"],  # an extra column must travel too
    }
    data["mg_radial_9"] = [NAN] * n  # a column of NaN only (GeoJSON: nulls without a type)
    return gpd.GeoDataFrame(data, geometry=[SQUARE_WITH_HOLE, TRIANGLE, TWO_SQUARES], crs=None)


@pytest.fixture
def catalogue() -> gpd.GeoDataFrame:
    return _catalogue()


@pytest.fixture
def written(tmp_path: Path, catalogue: gpd.GeoDataFrame) -> dict[str, Path]:
    return write_catalogue(catalogue, tmp_path)


def _attributes(frame: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(frame.drop(columns=frame.geometry.name, errors="ignore"))


def _assert_same_values(actual: pd.DataFrame, expected: pd.DataFrame) -> None:
    """Equal columns and values, NaN == NaN, whatever the reader chose as dtype."""
    assert list(actual.columns) == list(expected.columns)
    for col in expected.columns:
        want, got = expected[col].tolist(), actual[col].tolist()
        for w, g in zip(want, got, strict=True):
            if isinstance(w, float) and np.isnan(w):
                assert g is None or (isinstance(g, float) and np.isnan(g)), (col, w, g)
            else:
                assert g == w and type(g) is type(w), (col, w, g)


def _parts(geometry: shapely.Geometry) -> list[shapely.Geometry]:
    return sorted(
        (shapely.normalize(p) for p in shapely.get_parts(geometry)), key=lambda p: p.bounds
    )


def _assert_same_outlines(actual: gpd.GeoSeries, expected: gpd.GeoSeries) -> None:
    """Same polygons to 1e-9 µm, a MultiPolygon of one part counting as its Polygon."""
    assert actual.is_valid.all()
    for got, want in zip(actual, expected, strict=True):
        got_parts, want_parts = _parts(got), _parts(want)
        assert len(got_parts) == len(want_parts)
        for g, w in zip(got_parts, want_parts, strict=True):
            assert g.equals_exact(w, tolerance=1e-9), (g.wkt, w.wkt)


def _geometry_columns_srs(path: Path) -> list[tuple[str, int]]:
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        return db.execute("SELECT table_name, srs_id FROM gpkg_geometry_columns").fetchall()


def _no_nan(token: str) -> float:
    raise AssertionError(f"invalid JSON token {token}")


def test_write_catalogue_writes_four_files(tmp_path, catalogue):
    paths = write_catalogue(catalogue, tmp_path, stem="run1")
    assert paths == {
        "gpkg": tmp_path / "run1.gpkg",
        "geojson": tmp_path / "run1.geojson",
        "csv": tmp_path / "run1.csv",
        "parquet": tmp_path / "run1.parquet",
    }
    assert all(p.is_file() and p.stat().st_size > 0 for p in paths.values())
    # The input is not modified (the GeoPackage is written from a copy with a CRS).
    assert catalogue.crs is None
    _assert_same_values(_attributes(catalogue), _attributes(_catalogue()))


def test_gpkg_layer_geometry_and_attributes(written, catalogue):
    path = written["gpkg"]
    assert [(str(name), str(kind)) for name, kind in pyogrio.list_layers(path)] == [
        ("crystals", "MultiPolygon")
    ]
    back = gpd.read_file(path, layer="crystals", engine="pyogrio")
    _assert_same_values(_attributes(back), _attributes(catalogue))
    _assert_same_outlines(back.geometry, catalogue.geometry)
    assert len(shapely.get_interior_ring(back.geometry.iloc[0].geoms[0], 0).coords) == 5


def test_gpkg_declares_the_undefined_cartesian_srs(written):
    path = written["gpkg"]
    # Without care GDAL writes 99999 ("Undefined SRS", GDAL >= 3.9) or 0 (undefined
    # geographic); the GeoPackage spec's value for local coordinates is -1.
    assert _geometry_columns_srs(path) == [("crystals", -1)]
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        contents = db.execute("SELECT srs_id FROM gpkg_contents WHERE table_name='crystals'")
        assert contents.fetchall() == [(-1,)]
        srs = db.execute(
            "SELECT srs_name, organization, organization_coordsys_id "
            "FROM gpkg_spatial_ref_sys WHERE srs_id = -1"
        ).fetchall()
        assert srs == [("Undefined Cartesian SRS", "NONE", -1)]
        # No extra SRS row was invented for the catalogue.
        ids = {row[0] for row in db.execute("SELECT srs_id FROM gpkg_spatial_ref_sys")}
        assert ids <= {-1, 0, 4326}


def test_geojson_has_null_for_nan_and_same_outlines(written, catalogue):
    text = written["geojson"].read_text(encoding="utf-8")
    doc = json.loads(text, parse_constant=_no_nan)  # fails on NaN / Infinity tokens
    assert doc["type"] == "FeatureCollection" and len(doc["features"]) == 3
    props = doc["features"][1]["properties"]
    assert props["mg_core"] is None and props["core_rim_ratio"] is None
    assert props["touches_edge"] is True and props["id"] == 8
    assert "crs" not in doc

    back = gpd.read_file(written["geojson"], engine="pyogrio")
    _assert_same_values(_attributes(back).astype({"id": "int64"}), _attributes(catalogue))
    _assert_same_outlines(back.geometry, catalogue.geometry)
    assert back.geometry.iloc[0].geom_type == "Polygon"
    assert len(back.geometry.iloc[0].interiors) == 1


def test_geojson_infinity_becomes_null(tmp_path, catalogue):
    catalogue.loc[1, "aspect_ratio"] = np.inf
    paths = write_catalogue(catalogue, tmp_path)
    doc = json.loads(paths["geojson"].read_text(encoding="utf-8"), parse_constant=_no_nan)
    assert doc["features"][1]["properties"]["aspect_ratio"] is None
    # The other formats keep the value.
    assert gpd.read_parquet(paths["parquet"])["aspect_ratio"].iloc[1] == np.inf


def test_csv_has_attributes_only(written, catalogue):
    text = written["csv"].read_text(encoding="utf-8")
    header = text.splitlines()[0].split(",")
    assert header == list(_attributes(catalogue).columns)
    assert not {"geometry", "geom", "wkt", "WKT"} & set(header)
    back = pd.read_csv(written["csv"], keep_default_na=False, na_values=[""])
    assert back["touches_edge"].tolist() == [False, True, False]
    assert set(pd.read_csv(written["csv"], dtype=str)["touches_edge"]) == {"True", "False"}
    np.testing.assert_array_equal(back["mg_mean"], catalogue["mg_mean"])
    np.testing.assert_array_equal(back["bbox_xmin_um"], catalogue["bbox_xmin_um"])
    assert back["id"].tolist() == [7, 8, 9]


def test_parquet_is_geoparquet_and_exact(written, catalogue):
    meta = json.loads(pq.read_schema(written["parquet"]).metadata[b"geo"])
    assert meta["primary_column"] == "geometry"
    back = gpd.read_parquet(written["parquet"])
    pd.testing.assert_frame_equal(_attributes(back), _attributes(catalogue))
    assert back.geom_equals_exact(catalogue.geometry, tolerance=0).all()
    assert back.crs is None


@pytest.mark.parametrize("fmt", ["gpkg", "geojson", "parquet"])
def test_read_catalogue_round_trip(written, catalogue, fmt):
    back = read_catalogue(written[fmt])
    assert back.crs is None
    assert back.geometry.is_valid.all()
    # Same geometry types as written (the GeoPackage's one-part MultiPolygons are undone).
    assert back.geom_type.tolist() == ["Polygon", "Polygon", "MultiPolygon"]
    assert back.geom_equals_exact(catalogue.geometry, tolerance=1e-9).all()
    assert len(back.geometry.iloc[0].interiors) == 1
    pd.testing.assert_frame_equal(_attributes(back), _attributes(catalogue))


def test_read_catalogue_missing_file_names_it(tmp_path):
    missing = tmp_path / "nowhere" / "crystals.gpkg"
    with pytest.raises(InputFileNotFoundError, match=r"crystals\.gpkg") as info:
        read_catalogue(missing)
    assert isinstance(info.value, OlmapError) and isinstance(info.value, FileNotFoundError)
    assert str(missing) in str(info.value)


def test_read_catalogue_unreadable_files(tmp_path, written):
    broken = tmp_path / "broken.geojson"
    broken.write_text("{ not json", encoding="utf-8")
    with pytest.raises(InputError, match=r"broken\.geojson: not a readable crystal catalogue"):
        read_catalogue(broken)

    fake = tmp_path / "fake.parquet"
    fake.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(InputError, match=r"fake\.parquet: not a readable"):
        read_catalogue(fake)

    plain = tmp_path / "plain.parquet"
    pd.DataFrame({"a": [1]}).to_parquet(plain)  # Parquet, but no GeoParquet metadata
    with pytest.raises(InputError, match=r"plain\.parquet"):
        read_catalogue(plain)

    other = tmp_path / "other.gpkg"
    gpd.GeoDataFrame({"a": [1]}, geometry=[box(0, 0, 1, 1)]).set_crs("EPSG:32633").to_file(
        other, layer="grains", engine="pyogrio"
    )
    with pytest.raises(InputError, match=r"other\.gpkg: no layer 'crystals'.*grains"):
        read_catalogue(other)

    with pytest.raises(InputError, match=r"crystals\.csv: unknown crystal catalogue format"):
        read_catalogue(written["csv"])


def test_write_catalogue_rejects_bad_input(tmp_path, catalogue):
    with pytest.raises(InputFileNotFoundError, match="output folder"):
        write_catalogue(catalogue, tmp_path / "absent")
    catalogue.loc[1, "geometry"] = Point(1, 2)
    with pytest.raises(InputError, match=r"ids 8\b"):
        write_catalogue(catalogue, tmp_path)
    with pytest.raises(InputError, match="GeoDataFrame"):
        write_catalogue(pd.DataFrame(_attributes(catalogue)), tmp_path)  # type: ignore[arg-type]


def test_empty_catalogue(tmp_path, catalogue):
    paths = write_catalogue(catalogue.iloc[:0], tmp_path)
    assert _geometry_columns_srs(paths["gpkg"]) == [("crystals", -1)]
    for fmt in ("gpkg", "parquet"):
        back = read_catalogue(paths[fmt])
        assert len(back) == 0 and list(back.columns) == list(catalogue.columns)


# --- QuPath ---------------------------------------------------------------------------------


def _qupath(tmp_path: Path, catalogue: gpd.GeoDataFrame, **kwargs) -> dict:
    path = write_qupath_geojson(catalogue, tmp_path / "qupath.geojson", TRANSFORM, **kwargs)
    assert path == tmp_path / "qupath.geojson"
    return json.loads(path.read_text(encoding="utf-8"), parse_constant=_no_nan)


def test_qupath_geometry_in_pixels(tmp_path):
    # Pixels (col 4..12, row 2..10) with a hole over pixels (col 6..8, row 4..6): in map µm
    # x = 100 + 0.5 col, y = 800 - 0.5 row.
    outer = box(102.0, 795.0, 106.0, 799.0)
    hole = box(103.0, 797.0, 104.0, 798.0)
    crystal = gpd.GeoDataFrame(
        {"id": [1], "class": ["microlite"], "zoning": [""]},
        geometry=[Polygon(outer.exterior.coords, [hole.exterior.coords])],
    )
    doc = _qupath(tmp_path, crystal)
    got = shape(doc["features"][0]["geometry"])
    want = Polygon(box(4, 2, 12, 10).exterior.coords, [box(6, 4, 8, 6).exterior.coords])
    assert got.geom_type == "Polygon" and got.is_valid
    assert shapely.normalize(got).equals_exact(shapely.normalize(want), tolerance=1e-12)
    # The map's top-left vertex (x=102, y=799) is pixel corner (col 4, row 2), not (4, 10).
    assert [4.0, 2.0] in [list(xy) for xy in doc["features"][0]["geometry"]["coordinates"][0]]


def test_qupath_features_classes_and_measurements(tmp_path, catalogue):
    doc = _qupath(tmp_path, catalogue)
    assert doc["type"] == "FeatureCollection"
    features = doc["features"]
    assert [f["type"] for f in features] == ["Feature"] * 3
    props = [f["properties"] for f in features]
    assert [p["objectType"] for p in props] == ["detection"] * 3
    assert [p["name"] for p in props] == ["crystal 7", "crystal 8", "crystal 9"]
    assert [p["classification"] for p in props] == [
        {"name": "phenocryst (reverse)", "color": [255, 0, 0]},
        {"name": "microlite", "color": [0, 0, 255]},
        {"name": "mystery", "color": list(OTHER_QUPATH_COLOUR)},
    ]
    # QuPath wants a UUID per object; the same catalogue must give the same ids.
    ids = [uuid.UUID(f["id"]) for f in features]
    assert len(set(ids)) == 3
    assert _qupath(tmp_path, catalogue)["features"][0]["id"] == features[0]["id"]

    m_pheno, m_micro, m_other = (p["measurements"] for p in props)
    assert m_pheno["mg_core"] == 0.84 and m_pheno["core_rim_ratio"] == 1.1
    assert m_pheno["area_um2"] == 1515.015625 and m_pheno["pixels"] == 6060
    assert m_pheno["id"] == 7 and m_micro["touches_edge"] == 1
    assert "mg_core" not in m_micro and "core_rim_ratio" not in m_micro
    assert "mg_mean" not in m_other and "mg_radial_9" not in m_pheno
    for m in (m_pheno, m_micro, m_other):
        assert all(isinstance(v, float) and np.isfinite(v) for v in m.values())
        assert not {"class", "zoning", "session", "extra_note"} & set(m)

    # The MultiPolygon stays one object with two parts; pixel y grows downwards.
    geom = shape(features[2]["geometry"])
    assert geom.geom_type == "MultiPolygon" and len(geom.geoms) == 2
    col0, row0, col1, row1 = geom.bounds
    assert (col0, row0, col1, row1) == pytest.approx((600.0, 779.0, 661.0, 800.0))


def test_qupath_default_and_custom_colours(tmp_path, catalogue):
    names = ["normal", "none", "complex"]
    catalogue["class"] = "phenocryst"
    catalogue["zoning"] = names
    doc = _qupath(tmp_path, catalogue)
    got = {
        f["properties"]["classification"]["name"]: f["properties"]["classification"]["color"]
        for f in doc["features"]
    }
    assert got == {
        f"phenocryst ({z})": list(DEFAULT_QUPATH_COLOURS[f"phenocryst ({z})"]) for z in names
    }
    assert got["phenocryst (normal)"] == [255, 255, 0]
    assert got["phenocryst (none)"] == [255, 255, 255]
    assert got["phenocryst (complex)"] == [0, 200, 0]
    assert DEFAULT_QUPATH_COLOURS["microphenocryst"] == (255, 0, 255)

    doc = _qupath(tmp_path, catalogue, colours={"phenocryst (none)": (1, 2, 3)})
    colours = [f["properties"]["classification"]["color"] for f in doc["features"]]
    assert colours == [[255, 255, 0], [1, 2, 3], [0, 200, 0]]
    with pytest.raises(InputError, match="three integers"):
        _qupath(tmp_path, catalogue, colours={"microlite": (300, 0, 0)})

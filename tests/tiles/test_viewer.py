"""The catalogue as the viewer draws it: groups, colours, rounded outlines with holes."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
from shapely.geometry import Polygon, box

from olmap.errors import InputError
from olmap.tiles.viewer import VIEWER_COLOURS, viewer_crystals


def _catalogue():
    ring = [(0, 0), (20, 0), (20, 20), (0, 20)]
    hole = [(5, 5), (8, 5), (8, 8), (5, 8)]
    return gpd.GeoDataFrame(
        {
            "id": [1, 2, 3, 4],
            "class": ["phenocryst", "microlite", "microlite", "olivine-rich"],
            "zoning": ["reverse", "", "", ""],
            "area_um2": [391.0, 50.123456, 12.0, 1.0],
            "mg_mean": [0.81, np.nan, 0.8, 0.79],
            "touches_edge": [True, False, False, False],
        },
        geometry=[
            Polygon(ring, [hole]),
            box(30, 0, 40.004, 5),
            box(50, 0, 52, 2),
            box(60, 0, 61, 1),
        ],
    )


def test_groups_follow_the_paper_order_with_its_colours():
    doc = viewer_crystals(_catalogue())
    names = [g["name"] for g in doc["groups"]]
    assert names == ["microlite", "phenocryst (reverse)", "olivine-rich"]
    assert [g["count"] for g in doc["groups"]] == [2, 1, 1]
    assert doc["groups"][0]["colour"] == VIEWER_COLOURS["microlite"]
    assert doc["groups"][1]["colour"] == VIEWER_COLOURS["phenocryst (reverse)"]
    assert doc["groups"][2]["colour"] not in VIEWER_COLOURS.values()
    assert doc["groups"][1]["folder"] == "phenocryst_reverse"


def test_crystals_keep_order_attributes_and_holes():
    doc = viewer_crystals(_catalogue())
    assert doc["columns"] == ["id", "class", "zoning", "area_um2", "mg_mean", "touches_edge"]
    first, second = doc["crystals"][:2]
    assert first[0] == 1 and first[1][0] == 1 and first[1][-1] is True
    assert len(first[2]) == 2  # exterior and the hole
    assert second[1][4] is None  # NaN -> null
    assert second[1][3] == pytest.approx(50.123456)
    assert max(abs(v * 100 - round(v * 100)) for v in second[2][0]) < 1e-6  # 0.01 µm
    assert len(second[2][0]) == 8  # four corners, the closing vertex dropped


def test_simplification_drops_vertices_within_the_tolerance():
    wiggly = Polygon([(x, 0.05 * (x % 2)) for x in range(21)] + [(20, 10), (0, 10)])
    cat = gpd.GeoDataFrame({"id": [1], "class": ["microlite"], "zoning": [""]}, geometry=[wiggly])
    assert len(viewer_crystals(cat)["crystals"][0][2][0]) == 2 * 23
    assert len(viewer_crystals(cat, simplify_um=0.5)["crystals"][0][2][0]) == 2 * 4


def test_a_catalogue_without_classes_is_refused():
    with pytest.raises(InputError, match="class"):
        viewer_crystals(gpd.GeoDataFrame({"id": [1]}, geometry=[box(0, 0, 1, 1)]))

"""The crystal catalogue as the web viewer draws it: simplified outlines, groups and colours.

The viewer receives one compact JSON document (no GeoJSON feature objects: 20,000 crystals
parse and draw several times faster from flat coordinate arrays):

``{"columns": [...], "groups": [{"name", "colour", "count"}, ...],
"crystals": [[group index, [attribute values], [[x0, y0, x1, y1, ...], hole, ...]], ...]}``

Coordinates are map µm (x east, y north), rounded to 0.01 µm.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pandas as pd
import shapely

from olmap.errors import InputError
from olmap.plots.crystals import GROUP_ORDER, crystal_group

#: Outline colours on the dark BSE background: the paper's (seed 002 Fig. 9B: microlites
#: blue, microphenocrysts magenta, phenocrysts with normal zoning yellow, reverse red, no
#: zoning white), plus green for complex zoning.
VIEWER_COLOURS: dict[str, str] = {
    "microlite": "#3d7bff",
    "microphenocryst": "#ff33ff",
    "phenocryst (normal)": "#ffe033",
    "phenocryst (reverse)": "#ff3030",
    "phenocryst (none)": "#ffffff",
    "phenocryst (complex)": "#33dd66",
}
# Groups a user's class rules add: colours none of the paper's groups use.
_OTHER_COLOURS = ("#ff9f1c", "#9b5de5", "#00d1c1", "#c9a227", "#f15bb5", "#8ac926")

#: Attributes shown in a crystal's popup, in this order, when the catalogue has them.
POPUP_COLUMNS: tuple[str, ...] = (
    "id",
    "class",
    "zoning",
    "area_um2",
    "equivalent_diameter_um",
    "aspect_ratio",
    "solidity",
    "core_rim_ratio",
    "mg_mean",
    "mg_core",
    "mg_rim",
    "session",
    "touches_edge",
)


def crop_folder(group: str) -> str:
    """Folder of a group's crops, as ``olmap crystals --crops`` names it."""
    return re.sub(r"[^A-Za-z0-9]+", "_", group).strip("_") or "unnamed"


def viewer_groups(groups: pd.Series) -> list[dict[str, Any]]:
    """Groups present, in the paper's order, with their colour and number of crystals."""
    counts = groups.value_counts()
    names = [g for g in GROUP_ORDER if g in counts] + sorted(set(counts.index) - set(GROUP_ORDER))
    out, others = [], 0
    for name in names:
        colour = VIEWER_COLOURS.get(name)
        if colour is None:
            colour = _OTHER_COLOURS[others % len(_OTHER_COLOURS)]
            others += 1
        out.append(
            {
                "name": name,
                "colour": colour,
                "count": int(counts[name]),
                "folder": crop_folder(name),
            }
        )
    return out


def _rings(geometry: Any, tolerance: float) -> list[list[float]]:
    """Exterior then interior rings of a polygon as flat rounded [x0, y0, x1, y1, ...]."""
    if geometry is None or geometry.is_empty:
        return []
    if tolerance > 0:
        simple = shapely.simplify(geometry, tolerance, preserve_topology=True)
        geometry = simple if not simple.is_empty else geometry
    if geometry.geom_type == "MultiPolygon":  # single-part outlines; keep the largest part
        geometry = max(geometry.geoms, key=lambda g: g.area)
    if geometry.geom_type != "Polygon":
        raise InputError(f"crystal outline is a {geometry.geom_type}, not a polygon")
    rings = [geometry.exterior, *geometry.interiors]
    # The closing vertex repeats the first: Leaflet closes polygons itself.
    return [np.round(np.asarray(r.coords)[:-1], 2).ravel().tolist() for r in rings]


def _json_value(value: Any) -> Any:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if not math.isfinite(value) else round(float(value), 6)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return str(value)


def viewer_crystals(catalogue: pd.DataFrame, *, simplify_um: float = 0.0) -> dict[str, Any]:
    """The catalogue in the viewer's compact form (module docstring).

    Parameters
    ----------
    catalogue : geopandas.GeoDataFrame
        ``olmap crystals`` output: ``id``, ``class``, ``zoning`` and polygons in µm.
    simplify_um : float
        Douglas-Peucker tolerance (µm) applied to every outline, topology kept.

    Returns
    -------
    dict
        JSON-ready; ``crystals`` has one entry per catalogue row, in catalogue order.

    Examples
    --------
    >>> import geopandas as gpd
    >>> from shapely.geometry import box
    >>> cat = gpd.GeoDataFrame({"id": [1], "class": ["microlite"], "zoning": [""]},
    ...                        geometry=[box(0, 0, 10, 5)])
    >>> doc = viewer_crystals(cat)
    >>> doc["groups"][0]["name"], doc["crystals"][0][0], len(doc["crystals"][0][2][0])
    ('microlite', 0, 8)
    """
    missing = [c for c in ("id", "class", "zoning", "geometry") if c not in catalogue.columns]
    if missing:
        raise InputError(f"crystal catalogue lacks column(s) {', '.join(missing)}")
    groups = crystal_group(catalogue)
    group_info = viewer_groups(groups)
    index = {g["name"]: i for i, g in enumerate(group_info)}
    columns = [c for c in POPUP_COLUMNS if c in catalogue.columns]
    values = catalogue[columns].astype(object).to_numpy()
    crystals = [
        [index[g], [_json_value(v) for v in row], _rings(geom, simplify_um)]
        for g, row, geom in zip(groups, values, catalogue.geometry, strict=True)
    ]
    return {"columns": columns, "groups": group_info, "crystals": crystals}

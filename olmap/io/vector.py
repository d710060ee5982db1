"""Crystal catalogues as vector files: GeoPackage, GeoJSON, CSV, GeoParquet and QuPath GeoJSON.

A catalogue is a :class:`geopandas.GeoDataFrame` with one row per crystal and its outline as
a (Multi)Polygon, holes kept, in map micrometres of the mosaic (x to the right, y up, as given
by the mosaic's affine transform) and ``crs=None``: the coordinates lie on a thin section, not
on the Earth. :func:`write_catalogue` writes the GIS formats, :func:`write_qupath_geojson` the
outlines in pixel coordinates for QuPath's *File > Import objects*, and :func:`read_catalogue`
reads any of the GIS formats back.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow
import pyogrio
import pyogrio.errors
import shapely
import shapely.geometry

from olmap.errors import InputError, InputFileNotFoundError, first_line

if TYPE_CHECKING:
    from affine import Affine

__all__ = [
    "DEFAULT_QUPATH_COLOURS",
    "LAYER",
    "OTHER_QUPATH_COLOUR",
    "read_catalogue",
    "write_catalogue",
    "write_qupath_geojson",
]

#: Layer name of the crystals in a GeoPackage, whatever the file is called.
LAYER = "crystals"

#: QuPath classification colours (RGB) of the paper's groups (seed 002 Fig. 9B). QuPath draws
#: objects over the BSE image, where the paper's yellow and white stay visible.
DEFAULT_QUPATH_COLOURS: dict[str, tuple[int, int, int]] = {
    "microlite": (0, 0, 255),
    "microphenocryst": (255, 0, 255),
    "phenocryst (normal)": (255, 255, 0),
    "phenocryst (reverse)": (255, 0, 0),
    "phenocryst (none)": (255, 255, 255),
    "phenocryst (complex)": (0, 200, 0),
}

#: Colour of any classification that is neither in ``colours`` nor in the defaults.
OTHER_QUPATH_COLOUR: tuple[int, int, int] = (128, 128, 128)

# "LOCAL_CS[...]" with exactly this name is what GDAL's GeoPackage driver maps to the spec's
# srs_id -1 ("Undefined Cartesian SRS") instead of adding a new gpkg_spatial_ref_sys row.
_UNDEFINED_CARTESIAN_WKT = 'LOCAL_CS["Undefined Cartesian SRS"]'
# Names GDAL reports for the GeoPackage "undefined" SRS rows (-1; 99999 since GDAL 3.9): none
# says anything true about micrometres on a section, so they read back as crs=None.
_UNDEFINED_SRS_NAMES = frozenset({"undefined cartesian srs", "undefined srs"})
# The SRID layer creation option (force srs_id) exists from GDAL 3.9; older GDAL would warn.
_GDAL_HAS_SRID_OPTION = pyogrio.__gdal_version__ >= (3, 9, 0)

_POLYGONAL = frozenset({"Polygon", "MultiPolygon"})
_FORMATS = (".gpkg", ".geojson", ".parquet")

# Column types of the catalogue schema, restored on reading: GeoJSON has no integer width
# (GDAL reads small integers as int32) and a column of nulls has no type at all.
_INT_COLUMNS = ("id", "outlier_pixels", "pixels", "component")
_BOOL_COLUMNS = ("touches_edge",)
_STR_COLUMNS = ("class", "zoning", "session")
_FLOAT_COLUMNS = (
    "core_rim_ratio",
    "area_um2",
    "perimeter_um",
    "equivalent_diameter_um",
    "major_axis_um",
    "minor_axis_um",
    "aspect_ratio",
    "orientation_deg",
    "solidity",
    "roundness",
    "centroid_x_um",
    "centroid_y_um",
    "bbox_xmin_um",
    "bbox_ymin_um",
    "bbox_xmax_um",
    "bbox_ymax_um",
    "mg_mean",
    "mg_median",
    "mg_min",
    "mg_max",
    "mg_core",
    "mg_rim",
    "mantle_excess",
)
_RADIAL = re.compile(r"mg_radial_\d+")

# QuPath wants a UUID per object; deriving it from the crystal id keeps the output
# reproducible (same catalogue, same file) and lets re-imported objects be matched.
_QUPATH_UUID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "olmap/crystal")


def _check_catalogue(catalogue: gpd.GeoDataFrame) -> None:
    if not isinstance(catalogue, gpd.GeoDataFrame):
        raise InputError(
            f"crystal catalogue must be a GeoDataFrame, not {type(catalogue).__name__}"
        )
    geom_type = catalogue.geometry.geom_type
    bad = ~geom_type.isin(_POLYGONAL)  # missing geometries have geom_type None
    if bad.any():
        labels = catalogue["id"] if "id" in catalogue.columns else catalogue.index.to_series()
        shown = ", ".join(map(str, labels[bad].head(5).tolist()))
        raise InputError(
            f"crystal catalogue: {int(bad.sum())} crystal(s) without a polygon outline "
            f"(ids {shown}); every crystal needs a Polygon or MultiPolygon"
        )


def _attributes(catalogue: gpd.GeoDataFrame) -> pd.DataFrame:
    return pd.DataFrame(catalogue.drop(columns=catalogue.geometry.name))


def _write_gpkg(catalogue: gpd.GeoDataFrame, path: Path) -> None:
    # A GeoPackage left over from an earlier attempt could keep other layers; start afresh.
    path.unlink(missing_ok=True)
    layer_options: dict[str, Any] = {}
    if catalogue.crs is None:
        # pyogrio/GDAL give crs=None the custom srs_id 99999 ("Undefined SRS", a LOCAL_CS in
        # unknown units; GDAL >= 3.9, older GDAL chose 0 = undefined *geographic*) and pyogrio
        # warns that no CRS was given. Naming GDAL's undefined Cartesian LOCAL_CS instead gives
        # the spec's srs_id -1 with any GDAL and no warning; SRID=-1 says so explicitly where
        # the option exists. Only the GeoPackage's metadata changes; coordinates stay in µm.
        catalogue = catalogue.set_crs(_UNDEFINED_CARTESIAN_WKT)
        if _GDAL_HAS_SRID_OPTION:
            layer_options["SRID"] = -1
    catalogue.to_file(
        path,
        layer=LAYER,
        driver="GPKG",
        engine="pyogrio",
        index=False,
        # One layer type for all crystals (the spec forbids mixing Polygon and MultiPolygon
        # in a typed layer; GIS software expects MULTIPOLYGON), also for an empty catalogue.
        geometry_type="MultiPolygon",
        promote_to_multi=True,
        layer_options=layer_options,
    )


def _write_geojson(catalogue: gpd.GeoDataFrame, path: Path) -> None:
    # Written with json rather than GDAL: pyogrio warns on every crs=None write and GeoJSON
    # has no way to name an undefined CRS. JSON has no NaN or Infinity: infinities become
    # NaN so that na="null" turns both into null, and allow_nan=False guarantees the file
    # never contains the invalid tokens.
    floats = catalogue.select_dtypes(include="floating").columns
    if len(floats):
        catalogue = catalogue.copy()
        catalogue[floats] = catalogue[floats].replace([np.inf, -np.inf], np.nan)
    text = catalogue.to_json(na="null", drop_id=True, allow_nan=False)
    path.write_text(text + "\n", encoding="utf-8")


def write_catalogue(
    catalogue: gpd.GeoDataFrame, out_dir: str | Path, *, stem: str = "crystals"
) -> dict[str, Path]:
    """Write a crystal catalogue as GeoPackage, GeoJSON, CSV and GeoParquet.

    Parameters
    ----------
    catalogue : geopandas.GeoDataFrame
        One row per crystal; geometry a Polygon or MultiPolygon in map micrometres (y up),
        ``crs=None``; any attribute columns. The index is not written (``id`` identifies
        crystals).
    out_dir : str or Path
        Existing folder to write into (the caller builds it under a temporary name and
        renames it when complete). Files of the same names are replaced.
    stem : str, default "crystals"
        File name without suffix. The GeoPackage layer is always named :data:`LAYER`.

    Returns
    -------
    dict of str to Path
        Paths under the keys ``"gpkg"``, ``"geojson"``, ``"csv"`` and ``"parquet"``:

        - ``gpkg``: layer :data:`LAYER`, MULTIPOLYGON, srs_id -1 (the GeoPackage's
          *undefined Cartesian* SRS) for a catalogue without CRS;
        - ``geojson``: NaN and infinite values as ``null``;
        - ``csv``: attributes only, no geometry; booleans as ``True``/``False``, NaN empty;
        - ``parquet``: GeoParquet, geometry types and column types kept exactly.

    Raises
    ------
    InputError
        If ``catalogue`` is not a GeoDataFrame or a crystal has no polygon outline.
    InputFileNotFoundError
        If ``out_dir`` is not an existing folder.
    """
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        raise InputFileNotFoundError(out_dir, "output folder")
    _check_catalogue(catalogue)
    paths = {fmt: out_dir / f"{stem}.{fmt}" for fmt in ("gpkg", "geojson", "csv", "parquet")}
    _write_gpkg(catalogue, paths["gpkg"])
    _write_geojson(catalogue, paths["geojson"])
    _attributes(catalogue).to_csv(paths["csv"], index=False)
    catalogue.to_parquet(paths["parquet"], index=False)
    return paths


def _classification(catalogue: pd.DataFrame) -> pd.Series:
    # Same naming as the crystal plots' groups: "phenocryst (normal)", "microlite", ...
    # (a catalogue read back from CSV has NaN where zoning was written as "").
    cls = catalogue["class"].fillna("").astype(str)
    zoning = catalogue["zoning"].fillna("").astype(str).str.strip()
    return cls.where(zoning == "", cls + " (" + zoning + ")")


def _rgb(name: str, value: Any) -> list[int]:
    try:
        rgb = [int(v) for v in value]
    except (TypeError, ValueError):
        rgb = []
    if len(rgb) != 3 or not all(0 <= v <= 255 for v in rgb):
        raise InputError(f"QuPath colour of {name!r} must be three integers 0-255, not {value!r}")
    return rgb


def _to_pixels(geometry: gpd.GeoSeries, transform: Affine) -> np.ndarray:
    inverse = ~transform

    def apply(xy: np.ndarray) -> np.ndarray:
        # (col, row) of rasterio's convention: integers fall on pixel corners, so an outline
        # traced along pixel edges in map µm lands on integer pixel coordinates, as QuPath's
        # pixel (col, row) covers [col, col + 1] x [row, row + 1].
        x, y = xy[:, 0], xy[:, 1]
        return np.column_stack(
            (inverse.a * x + inverse.b * y + inverse.c, inverse.d * x + inverse.e * y + inverse.f)
        )

    return shapely.transform(np.asarray(geometry.values), apply)


def _measurements(attributes: pd.DataFrame) -> list[dict[str, float]]:
    # QuPath measurements are doubles: numeric and boolean (as 0/1) columns only, and a
    # value that is NaN or infinite is left out (JSON cannot hold it, QuPath shows it as
    # missing either way).
    numeric = attributes.select_dtypes(include=["number", "bool"])
    values = numeric.to_numpy(dtype=np.float64, na_value=np.nan)
    names = [str(c) for c in numeric.columns]
    finite = np.isfinite(values)
    return [
        {name: float(v) for name, v, ok in zip(names, row, ok_row, strict=True) if ok}
        for row, ok_row in zip(values, finite, strict=True)
    ]


def write_qupath_geojson(
    catalogue: gpd.GeoDataFrame,
    path: str | Path,
    transform: Affine,
    *,
    colours: Mapping[str, tuple[int, int, int]] | None = None,
) -> Path:
    """Write crystals as QuPath detections (GeoJSON in pixel coordinates of the mosaic).

    QuPath (0.4 and later) imports the file with *File > Import objects* onto the mosaic
    image. Each crystal becomes a detection object with a classification (colour), a name
    and its numeric attributes as measurements.

    Parameters
    ----------
    catalogue : geopandas.GeoDataFrame
        As for :func:`write_catalogue`; needs the columns ``id``, ``class`` and ``zoning``.
    path : str or Path
        GeoJSON file to write (replaced if it exists).
    transform : affine.Affine
        The mosaic's affine transform (pixel to map µm); its inverse maps outlines to pixel
        coordinates (column, row; y down; integers on pixel corners as in rasterio).
    colours : mapping of str to (int, int, int), optional
        RGB colour per classification name, overriding :data:`DEFAULT_QUPATH_COLOURS`;
        other classifications are :data:`OTHER_QUPATH_COLOUR`.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    InputError
        If the catalogue lacks ``id``, ``class`` or ``zoning``, a crystal has no polygon
        outline, ``transform`` is not invertible or a colour is not RGB 0-255.

    Notes
    -----
    Each feature is ``{"type": "Feature", "id": <UUID>, "geometry": ..., "properties":
    {"objectType": "detection", "name": "crystal <id>", "classification": {"name": <class,
    or "class (zoning)" for zoned crystals>, "color": [r, g, b]}, "measurements": {...}}}``.
    The UUID is derived from the crystal id, so the same catalogue gives the same file.
    """
    _check_catalogue(catalogue)
    missing = [c for c in ("id", "class", "zoning") if c not in catalogue.columns]
    if missing:
        raise InputError(f"crystal catalogue lacks column(s) {', '.join(missing)} for QuPath")
    if transform.is_degenerate:
        raise InputError(f"QuPath export: transform {tuple(transform)} is not invertible")
    palette = {name: _rgb(name, rgb) for name, rgb in DEFAULT_QUPATH_COLOURS.items()}
    palette.update({name: _rgb(name, rgb) for name, rgb in (colours or {}).items()})
    other = list(OTHER_QUPATH_COLOUR)

    attributes = _attributes(catalogue)
    pixel_geometries = _to_pixels(catalogue.geometry, transform)
    names = _classification(attributes)
    features = []
    for crystal_id, class_name, geometry, measurements in zip(
        attributes["id"],
        names,
        pixel_geometries,
        _measurements(attributes),
        strict=True,
    ):
        features.append(
            {
                "type": "Feature",
                "id": str(uuid.uuid5(_QUPATH_UUID_NAMESPACE, str(crystal_id))),
                "geometry": shapely.geometry.mapping(geometry),
                "properties": {
                    "objectType": "detection",
                    "name": f"crystal {crystal_id}",
                    "classification": {
                        "name": class_name,
                        "color": palette.get(class_name, other),
                    },
                    "measurements": measurements,
                },
            }
        )
    path = Path(path)
    text = json.dumps({"type": "FeatureCollection", "features": features}, allow_nan=False)
    path.write_text(text + "\n", encoding="utf-8")
    return path


def _single_parts(geometry: gpd.GeoSeries) -> gpd.GeoSeries:
    # The GeoPackage layer holds MultiPolygons only; crystals of one part were Polygons.
    values = np.asarray(geometry.values)
    one_part = (geometry.geom_type == "MultiPolygon").to_numpy() & (
        shapely.get_num_geometries(values) == 1
    )
    if one_part.any():
        values = values.copy()
        values[one_part] = shapely.get_geometry(values[one_part], 0)
    return gpd.GeoSeries(values, index=geometry.index, crs=geometry.crs, name=geometry.name)


def _restore_types(catalogue: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    radial = [c for c in catalogue.columns if _RADIAL.fullmatch(str(c))]
    for col in (*_FLOAT_COLUMNS, *radial):
        if col in catalogue.columns and catalogue[col].dtype != np.float64:
            catalogue[col] = pd.to_numeric(catalogue[col]).astype(np.float64)
    for col in _INT_COLUMNS + _BOOL_COLUMNS:
        if col in catalogue.columns and catalogue[col].notna().all():
            catalogue[col] = catalogue[col].astype(np.int64 if col in _INT_COLUMNS else bool)
    for col in _STR_COLUMNS:
        if col in catalogue.columns:
            catalogue[col] = catalogue[col].fillna("").astype(str)
    return catalogue


def read_catalogue(path: str | Path) -> gpd.GeoDataFrame:
    """Read a crystal catalogue written by :func:`write_catalogue`.

    Parameters
    ----------
    path : str or Path
        A ``.gpkg`` (layer :data:`LAYER`), ``.geojson`` or ``.parquet`` file.

    Returns
    -------
    geopandas.GeoDataFrame
        One row per crystal, coordinates in map µm. The GeoPackage's undefined SRS reads back
        as ``crs=None``; its single-part MultiPolygons as Polygons; the catalogue's columns
        get their types back (``id`` int64, measurements float64, empty strings for missing
        ``class``/``zoning``/``session``).

    Raises
    ------
    InputFileNotFoundError
        If ``path`` does not exist.
    InputError
        If the format is not one of the above, or the file is not a readable catalogue
        (e.g. a GeoPackage without a ``crystals`` layer).
    """
    path = Path(path)
    if not path.exists():
        raise InputFileNotFoundError(path, "crystal catalogue")
    suffix = path.suffix.lower()
    if suffix not in _FORMATS:
        raise InputError(
            f"{path}: unknown crystal catalogue format {path.suffix or '(no suffix)'}; "
            f"expected {', '.join(_FORMATS)}"
        )
    try:
        if suffix == ".gpkg":
            layers = [str(name) for name, _ in pyogrio.list_layers(path)]
            catalogue = (
                gpd.read_file(path, layer=LAYER, engine="pyogrio") if LAYER in layers else None
            )
        elif suffix == ".geojson":
            catalogue = gpd.read_file(path, engine="pyogrio")
        else:
            catalogue = gpd.read_parquet(path)
    except (
        pyogrio.errors.DataSourceError,
        pyogrio.errors.DataLayerError,
        pyarrow.ArrowException,
        ValueError,  # geopandas: a Parquet file without GeoParquet metadata
        OSError,
    ) as exc:
        raise InputError(f"{path}: not a readable crystal catalogue ({first_line(exc)})") from exc
    if catalogue is None:
        raise InputError(
            f"{path}: no layer {LAYER!r} in this GeoPackage (has: {', '.join(layers) or 'none'})"
        )

    crs = catalogue.crs
    if crs is not None and (
        crs.name.strip().lower() in _UNDEFINED_SRS_NAMES
        # GDAL reports WGS 84 for every GeoJSON without a "crs" member (RFC 7946 says so);
        # a crystal catalogue is never in longitude/latitude.
        or (suffix == ".geojson" and crs.equals("OGC:CRS84", ignore_axis_order=True))
    ):
        catalogue = catalogue.set_crs(None, allow_override=True)
    if suffix == ".gpkg":
        catalogue = catalogue.set_geometry(_single_parts(catalogue.geometry))
    return _restore_types(catalogue)

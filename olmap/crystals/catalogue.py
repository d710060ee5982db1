"""``olmap crystals``: every olivine crystal of a mosaic as a catalogue row with its outline.

mask (+ BSE, mg# map, LOF outliers) -> exact chunked connected components
(:mod:`olmap.core.components`) -> each crystal read whole through its bounding box ->
attributes (:mod:`olmap.crystals.measure`) -> class and zoning (:mod:`olmap.crystals.classify`)
-> GeoDataFrame in µm. Memory: one chunk for the labelling, then one crystal at a time.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
from affine import Affine
from rasterio.windows import Window
from scipy import ndimage as ndi

from olmap.core.components import Components, component_pixels, label_components
from olmap.crystals.classify import classify
from olmap.crystals.config import ClassRules, CrystalsConfig, olivine_rules
from olmap.crystals.instances import split_touching
from olmap.crystals.measure import CrystalArrays, measure_crystal
from olmap.errors import InputError
from olmap.io.outputs import atomic_dir
from olmap.io.raster import (
    ClassMaskSource,
    WindowSource,
    check_coregistered,
    grey_level_scale,
    window_affine,
)
from olmap.io.results import default_outliers_path
from olmap.io.sessions import read_sessions, session_index_points
from olmap.io.vector import write_catalogue, write_qupath_geojson
from olmap.plots.crops import write_crystal_crops
from olmap.plots.crystals import write_crystal_statistics
from olmap.plots.overview import plot_overview

log = logging.getLogger(__name__)
Progress = Callable[[str, int, int], None]

#: Column order of the catalogue (then mg_radial_*, geometry).
COLUMNS = [
    "id", "class", "zoning", "core_rim_ratio", "area_um2", "perimeter_um",
    "equivalent_diameter_um", "major_axis_um", "minor_axis_um", "aspect_ratio",
    "orientation_deg", "solidity", "roundness", "centroid_x_um", "centroid_y_um",
    "bbox_xmin_um", "bbox_ymin_um", "bbox_xmax_um", "bbox_ymax_um",
    "mg_mean", "mg_median", "mg_min", "mg_max", "mg_core", "mg_rim", "mantle_excess",
    "pixels", "outlier_pixels", "touches_edge", "session", "component",
]  # fmt: skip


@dataclass
class CatalogueResult:
    """What ``olmap crystals`` found."""

    catalogue: gpd.GeoDataFrame
    components: int  # connected components of the mask
    too_small: int  # components and pieces not above min_area_um2
    too_large: int  # components over max_crystal_pixels: skipped with a warning
    pixel_size_um: float
    seconds: float


def crystal_catalogue(
    bse_path: str | Path,
    mask_path: str | Path,
    *,
    mgmap_path: str | Path | None = None,
    outliers_path: str | Path | None = None,
    sessions_path: str | Path | None = None,
    config: CrystalsConfig | None = None,
    rules: ClassRules | None = None,
    progress: Progress | None = None,
) -> CatalogueResult:
    """Measure and classify every crystal (connected component) of an olivine mask.

    Parameters
    ----------
    bse_path, mask_path : path-like
        BSE mosaic and olivine mask (1 = olivine) on the same grid.
    mgmap_path : path-like, optional
        ``olmap mgmap`` output (float32 mg#, NaN off olivine): mg# attributes, the radial
        profile and complex zoning. Its ``.outliers.tif`` is used when present.
    outliers_path : path-like, optional
        uint8 raster, 1 = outlier pixel: left out of core, rim and mg# statistics.
    sessions_path : path-like, optional
        ``sessions.csv``: each crystal gets the session its centroid lies in.
    config : CrystalsConfig, optional
    rules : ClassRules, optional
        Default: :func:`olmap.crystals.config.olivine_rules` (seed 002 Table 2).
    progress : callable, optional
        ``progress(stage, done, total)``; stages ``crystals`` (labelling chunks) and
        ``measure (px)`` (pixels of the components measured).

    Returns
    -------
    CatalogueResult
    """
    config = config or CrystalsConfig()
    rules = rules or olivine_rules()
    check_rule_attributes(rules, config)
    t0 = time.perf_counter()
    if mgmap_path is not None and outliers_path is None:
        candidate = default_outliers_path(mgmap_path)
        outliers_path = candidate if candidate.exists() else None
    paths = [p for p in (bse_path, mask_path, mgmap_path, outliers_path) if p is not None]
    info = check_coregistered(*paths)
    px = info.pixel_size_um or 1.0
    h, w = info.shape
    regions = read_sessions(sessions_path) if sessions_path is not None else None

    # Each source holds a GDAL environment: an ExitStack closes them in reverse order.
    with ExitStack() as stack:
        named = {"bse": bse_path, "mg": mgmap_path, "outliers": outliers_path}
        sources = {
            k: stack.enter_context(WindowSource(p)) for k, p in named.items() if p is not None
        }
        mask = stack.enter_context(ClassMaskSource(mask_path, config.mask_class))
        read_mask = mask.read

        comps = label_components(
            read_mask,
            h,
            w,
            chunk=config.chunk,
            connectivity=config.connectivity,
            progress=(lambda d, t: progress("crystals", d, t)) if progress else None,
        )
        bbox_um2 = (comps.row1 - comps.row0) * (comps.col1 - comps.col0) * px * px
        # The area inside the outline never exceeds the bounding box: skipping these is exact.
        chosen = np.flatnonzero(bbox_um2 > config.min_area_um2)
        rows = []
        # Progress in pixels: one giant crystal moves the bar as much as its area weighs.
        done, total = 0, int(comps.area[chosen].sum())
        for k in chosen:
            rows.append(_measure(k, comps, read_mask, sources, info.transform, px, config))
            done += int(comps.area[k])
            if progress:
                progress("measure (px)", done, total)

    table = pd.DataFrame([r for part in rows if part is not None for r in part])
    too_large = int(sum(r is None for r in rows))
    if table.empty:
        table = pd.DataFrame(columns=[c for c in COLUMNS if c not in ("id", "class", "zoning")])
        table["geometry"] = []
    keep = table["area_um2"].astype(float) > config.min_area_um2
    dropped = int((~keep).sum())
    table = table[keep].reset_index(drop=True)
    # Ids 1..n in raster order of the components, then of the crystals within each.
    table.insert(0, "id", np.arange(1, len(table) + 1, dtype=np.int64))
    labels = classify(table, rules)
    table["class"], table["zoning"] = labels["class"], labels["zoning"]
    if regions is not None and len(table):
        at = session_index_points(
            regions, table["centroid_x_um"].to_numpy(float), table["centroid_y_um"].to_numpy(float)
        )
        names = np.array([*regions["session"].astype(str), ""], dtype=object)
        table["session"] = names[at]  # -1 (no session) picks the trailing ""
    else:
        table["session"] = ""
    radial = [c for c in table.columns if c.startswith("mg_radial_")]
    radial.sort(key=lambda c: int(c.rsplit("_", 1)[1]))
    table = table[[*COLUMNS, *radial, "geometry"]]
    catalogue = gpd.GeoDataFrame(table, geometry="geometry", crs=None)
    return CatalogueResult(
        catalogue=catalogue,
        components=len(comps),
        too_small=len(comps) - len(chosen) + dropped,
        too_large=too_large,
        pixel_size_um=px,
        seconds=time.perf_counter() - t0,
    )


def _measure(
    k: int,
    comps: Components,
    read_mask: Callable[[Window], np.ndarray],
    sources: dict[str, WindowSource],
    transform: Affine,
    px: float,
    config: CrystalsConfig,
) -> list[dict] | None:
    """Attribute rows of the crystals of component index ``k``; None if it is too large."""
    bbox_px = int(comps.row1[k] - comps.row0[k]) * int(comps.col1[k] - comps.col0[k])
    if bbox_px > config.max_crystal_pixels:
        # Its window is what would be read (four rasters and float copies), not its pixels: a
        # thin diagonal artefact has few pixels and a mosaic-sized bounding box.
        log.warning(
            "component at row %d, col %d spans %d px (> max_crystal_pixels): not measured",
            comps.seed_row[k],
            comps.seed_col[k],
            bbox_px,
        )
        return None
    # A margin of background around the crystal: the crack closing and the distance
    # transform must see the outline (the mosaic border counts as outline).
    pad = config.close_cracks_px + 2
    r0, c0 = max(0, int(comps.row0[k]) - pad), max(0, int(comps.col0[k]) - pad)
    r1 = min(comps.height, int(comps.row1[k]) + pad)
    c1 = min(comps.width, int(comps.col1[k]) + pad)
    window = Window(c0, r0, c1 - c0, r1 - r0)
    mask = read_mask(window)
    component = component_pixels(
        mask, (int(comps.seed_row[k]) - r0, int(comps.seed_col[k]) - c0), config.connectivity
    )
    bse, valid = sources["bse"].read(window)
    bse = bse.astype(np.float64)
    if valid is not None:
        bse[~valid] = np.nan
    mg = outliers = None
    if "mg" in sources:
        mg, mg_valid = sources["mg"].read(window)
        mg = mg.astype(np.float64)  # NaN where not mapped
        if mg_valid is not None:  # a map with a numeric nodata value
            mg[~mg_valid] = np.nan
    if "outliers" in sources:
        outliers = sources["outliers"].read(window)[0] == 1
    if config.split_touching:
        # The step threshold is in 8-bit grey levels.
        scale = grey_level_scale(sources["bse"].info.dtype)
        parts = split_touching(
            component,
            bse * scale,
            sigma_px=config.split_sigma_px,
            h_min=config.split_h_min,
            boundary_step=config.split_boundary_step,
            max_solidity_loss=config.split_max_solidity_loss,
            min_solidity=config.split_min_solidity,
            shape_split_solidity=config.split_shape_below_solidity,
            shape_split_h_px=config.split_shape_h_px,
            shape_split_loss=config.split_shape_max_loss,
            shape_split_min_pixels=config.split_shape_min_pixels,
            notch_depth_px=config.split_notch_depth_px,
            notch_gap_ratio=config.split_notch_gap_ratio,
            notch_min_solidity=config.split_notch_min_solidity,
            notch_max_part_pixels=int(config.split_notch_max_area_um2 / (px * px)),
            # No split leaves a piece too small to be catalogued: its pixels join a neighbour.
            min_piece_pixels=int(config.min_area_um2 / (px * px)) + 1,
            step_image=mg,
            min_step=None if mg is None else config.split_min_step_mg,
        )
    else:
        parts = component.astype(np.int32)
    rows = []
    for label, box in enumerate(ndi.find_objects(parts), start=1):
        if box is None:
            continue
        # Each crystal in its own box, with the component's margin of background (the crack
        # closing and the distance transform see its outline): the work of a component split
        # into many crystals grows with their boxes, not with their number times its area.
        box = tuple(
            slice(max(b.start - pad, 0), min(b.stop + pad, n))
            for b, n in zip(box, parts.shape, strict=True)
        )
        crystal = parts[box] == label
        rows_off, cols_off = box[0].start, box[1].start
        row = measure_crystal(
            CrystalArrays(
                crystal,
                bse[box],
                None if mg is None else mg[box],
                None if outliers is None else outliers[box],
            ),
            window_affine(
                Window(c0 + cols_off, r0 + rows_off, crystal.shape[1], crystal.shape[0]),
                transform,
            ),
            px,
            rim_exclude_px=config.rim_exclude_px,
            external_only=config.external_outline,
            close_cracks_px=config.close_cracks_px,
            radial_bins=config.radial_bins,
            connectivity=config.connectivity,
        )
        rr, cc = np.nonzero(crystal)
        rr, cc = rr + rows_off, cc + cols_off  # in the component's window
        x0, y0 = transform @ (c0 + int(cc.min()), r0 + int(rr.min()))
        x1, y1 = transform @ (c0 + int(cc.max()) + 1, r0 + int(rr.max()) + 1)
        edge = (
            (r0 + rr.min() == 0)
            | (c0 + cc.min() == 0)
            | (r0 + rr.max() == comps.height - 1)
            | (c0 + cc.max() == comps.width - 1)
        )
        row.update(
            component=k + 1,
            bbox_xmin_um=min(x0, x1),
            bbox_xmax_um=max(x0, x1),
            bbox_ymin_um=min(y0, y1),
            bbox_ymax_um=max(y0, y1),
            touches_edge=bool(edge),
        )
        rows.append(row)
    return rows


def catalogue_attributes(config: CrystalsConfig) -> set[str]:
    """Numeric columns a class rule may read."""
    text = {"id", "class", "zoning", "session", "touches_edge"}
    radial = {f"mg_radial_{i}" for i in range(config.radial_bins)}
    return (set(COLUMNS) - text) | radial


def check_rule_attributes(rules: ClassRules, config: CrystalsConfig) -> None:
    """Refuse rules that read attributes the catalogue does not have, before any work."""
    unknown = rules.attributes() - catalogue_attributes(config)
    if unknown:
        raise InputError(
            f"class rules read {', '.join(sorted(unknown))}, not catalogue attributes "
            "(see docs/crystals.md for the columns)"
        )


def write_crystals(
    result: CatalogueResult,
    out_dir: str | Path,
    *,
    bse_path: str | Path,
    transform: Affine,
    qupath: bool = False,
    crops: bool = False,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> dict[str, Path]:
    """Write the catalogue folder; it appears complete or not at all.

    ``crystals.gpkg`` (layer ``crystals``), ``crystals.geojson``, ``crystals.csv``,
    ``crystals.parquet``, ``overview.png`` (outlines by group on the BSE), ``stats/`` (counts,
    size distribution and mg# histograms per group, CSV and PNG), ``summary.json`` and,
    optionally, ``crystals.qupath.geojson`` (pixel coordinates) and ``crops/<group>/<id>.png``.

    Parameters
    ----------
    result : CatalogueResult
    out_dir : path-like
    bse_path : path-like
        For the overview and the crops.
    transform : Affine
        The mosaic's transform (µm), for QuPath's pixel coordinates and the crops.
    qupath, crops : bool
    overwrite : bool
        Replace an existing folder written by olmap.
    progress : callable, optional
        ``progress("crops", done, total)``.

    Returns
    -------
    dict
        Name -> final path.
    """
    out_dir = Path(out_dir)
    cat = result.catalogue
    with atomic_dir(out_dir, overwrite=overwrite) as tmp:
        written = write_catalogue(cat, tmp)
        for path in write_crystal_statistics(cat, tmp / "stats"):
            written[f"stats/{path.name}"] = path
        written["overview"] = plot_overview(cat, bse_path, tmp / "overview.png")
        if qupath:
            written["qupath"] = write_qupath_geojson(
                cat, tmp / "crystals.qupath.geojson", transform
            )
        if crops:
            write_crystal_crops(
                cat,
                bse_path,
                transform,
                tmp / "crops",
                progress=(lambda d, t: progress("crops", d, t)) if progress else None,
            )
            written["crops"] = tmp / "crops"
        summary = {
            "components": result.components,
            "crystals": len(cat),
            "too_small": result.too_small,
            "too_large": result.too_large,
            "pixel_size_um": result.pixel_size_um,
            "seconds": round(result.seconds, 2),
            "counts": cat.groupby(["class", "zoning"])
            .size()
            .rename("n")
            .reset_index()
            .to_dict(orient="records")
            if len(cat)
            else [],
        }
        (tmp / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        written["summary"] = tmp / "summary.json"
    return {k: out_dir / Path(v).relative_to(tmp) for k, v in written.items()}

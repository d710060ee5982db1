"""``olmap mosaic``: acquisition tiles -> one mosaic (GDAL VRT or tiled BigTIFF), seams reported.

A VRT copies no pixels: it lists each tile, the part of it the mosaic shows and, when tiles
are equalised, the tile's gain and offset (GDAL applies them on reading). A GeoTIFF output is
streamed from that VRT block by block.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from rasterio.windows import Window
from skimage.feature import match_template

from olmap.errors import InputError
from olmap.io.outputs import check_outputs_distinct, claim_outputs
from olmap.io.raster import (
    pixel_size_from_transform,
    raster_info,
    read_raster,
)
from olmap.io.tables import read_table, write_table
from olmap.mosaic.layout import (
    Placement,
    cut_overlaps,
    grid_layout,
    mosaic_shape,
    natural_key,
    neighbour_pairs,
    positions_layout,
)
from olmap.mosaic.seams import OverlapStats, equalise, overlap_stats, seam_table, tile_table
from olmap.mosaic.vrt import write_mosaic

log = logging.getLogger(__name__)

TILE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp")
#: Width of the strip matched to estimate grid overlaps (px); also the smallest overlap found.
TEMPLATE_PX = 16
#: Pixel size assumed for tiles without a georeference when none is given (µm).
DEFAULT_PIXEL_SIZE_UM = 1.0


@dataclass
class MosaicResult:
    """What :func:`build_mosaic` wrote."""

    path: Path
    seams_path: Path
    tiles_path: Path
    height: int
    width: int
    pixel_size_um: float
    placements: list[Placement]
    seams: pd.DataFrame
    tiles: pd.DataFrame
    gains: np.ndarray
    offsets: np.ndarray
    equalised: bool
    notes: list[str] = field(default_factory=list)


def find_tiles(folder: str | Path) -> list[Path]:
    """Image files of ``folder`` in natural order (``tile_2`` before ``tile_10``)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder of tiles")
    tiles = sorted(
        (p for p in folder.iterdir() if p.suffix.lower() in TILE_SUFFIXES and p.is_file()),
        key=natural_key,
    )
    if not tiles:
        raise InputError(f"{folder}: no tile images ({', '.join(TILE_SUFFIXES)})")
    return tiles


def _tile_reader(placements: Sequence[Placement]):
    def read(i: int, box: tuple[int, int, int, int]) -> np.ndarray:
        top, left, bottom, right = box
        win = Window(left, top, right - left, bottom - top)
        return read_raster(placements[i].path, window=win, bands=1)

    return read


def estimate_overlap(
    tiles: Sequence[Path], shape: tuple[int, int], rows: int, cols: int, order: str
) -> tuple[int, int]:
    """Overlap of grid neighbours (px), found by template matching.

    The first :data:`TEMPLATE_PX` columns (rows) of a tile are matched by normalised
    cross-correlation (``skimage.feature.match_template``) against the facing half of its
    left (upper) neighbour. Overlaps must be between ``TEMPLATE_PX`` px and half a tile. Up to
    four pairs per direction are used and their median kept; a match must correlate at
    >= 0.8 or an error asks for ``--overlap``.
    """
    h, w = shape
    dummy = grid_layout(tiles, [shape] * len(tiles), rows, cols, (0, 0), order)
    at = {p.grid: p.path for p in dummy}
    result = []
    for axis, n_along in ((0, rows), (1, cols)):
        if n_along < 2:
            result.append(0)
            continue
        half = (h, w)[axis] // 2
        found = []
        for r, c in sorted(at)[:: max(1, len(at) // 8)]:
            nb = (r + 1, c) if axis == 0 else (r, c + 1)
            if nb not in at:
                continue
            a = read_raster(at[(r, c)], bands=1).astype(np.float32)
            b = read_raster(at[nb], bands=1).astype(np.float32)
            if axis == 0:  # compare rows as columns
                a, b = a.T, b.T
            scores = match_template(a[:, -half:], b[:, :TEMPLATE_PX])[0]
            best = int(np.argmax(scores))
            if scores[best] >= 0.8:
                found.append(half - best)
            if len(found) == 4:
                break
        if not found:
            raise InputError(
                f"{tiles[0].parent}: could not estimate the tile overlap "
                f"({'vertical' if axis == 0 else 'horizontal'} neighbours do not match); "
                "give --overlap"
            )
        result.append(int(np.median(found)))
    return result[0], result[1]


def report_paths(out: str | Path) -> tuple[Path, Path]:
    """The seam and per-tile reports written beside a mosaic
    (``mosaic.vrt`` -> ``mosaic.seams.csv``, ``mosaic.tiles.csv``)."""
    out = Path(out)
    return out.with_name(out.stem + ".seams.csv"), out.with_name(out.stem + ".tiles.csv")


def build_mosaic(
    tiles: str | Path,
    out: str | Path,
    *,
    rows: int | None = None,
    cols: int | None = None,
    overlap: tuple[int, int] | None = None,
    order: str = "row",
    positions: str | Path | None = None,
    pixel_size_um: float | None = None,
    y_down: bool = False,
    equalise_tiles: bool = False,
    overwrite: bool = False,
) -> MosaicResult:
    """Assemble acquisition tiles into one mosaic.

    Parameters
    ----------
    tiles : path-like
        Folder of tile images (one band each), in acquisition order by natural name order.
    out : path-like
        ``.vrt`` (GDAL virtual mosaic, no pixel copy; tiles are referenced relative to it) or
        ``.tif`` (tiled, compressed GeoTIFF; BigTIFF when large).
    rows, cols : int, optional
        Grid layout; with ``overlap`` (vertical, horizontal px; None = estimated) and
        ``order`` (row, snake, column, column-snake).
    positions : path-like, optional
        CSV ``file,x_um,y_um``: stage position of each tile's top-left corner in µm (y up,
        as olmap's map units; ``y_down`` for y growing down the image), instead of a grid.
    pixel_size_um : float, optional
        Tile pixel size; default the tiles' own georeference, else 1 µm.
    equalise_tiles : bool
        Correct each tile's brightness and contrast so overlaps agree (:mod:`seams`).
    overwrite : bool

    Returns
    -------
    MosaicResult
        Also written beside ``out``: ``.seams.csv`` (one row per overlapping pair) and
        ``.tiles.csv`` (one row per tile: position, difference from its neighbours, gain and
        offset when equalised).
    """
    out = Path(out)
    if out.suffix.lower() not in (".vrt", ".tif", ".tiff"):
        raise InputError(f"{out}: mosaic output must end in .vrt or .tif")
    outputs = [out, *report_paths(out)]
    with claim_outputs(outputs, inputs=[tiles, positions], overwrite=overwrite):
        return _build_mosaic(
            tiles, out, rows=rows, cols=cols, overlap=overlap, order=order, positions=positions,
            pixel_size_um=pixel_size_um, y_down=y_down, equalise_tiles=equalise_tiles,
            overwrite=overwrite,
        )  # fmt: skip


def _build_mosaic(
    tiles: str | Path,
    out: Path,
    *,
    rows: int | None,
    cols: int | None,
    overlap: tuple[int, int] | None,
    order: str,
    positions: str | Path | None,
    pixel_size_um: float | None,
    y_down: bool,
    equalise_tiles: bool,
    overwrite: bool,
) -> MosaicResult:
    notes: list[str] = []
    report, per_tile = report_paths(out)
    if positions is not None:
        table = read_table(positions, required=("file", "x_um", "y_um"))
        coords = table[["x_um", "y_um"]].apply(pd.to_numeric, errors="coerce")
        if coords.isna().any().any():
            row = int(coords.isna().any(axis=1).to_numpy().argmax())
            raise InputError(f"{positions}: row {row + 2} has no numeric x_um/y_um")
        table[["x_um", "y_um"]] = coords
        base = Path(tiles)
        paths = [base / str(f) for f in table["file"]]
        missing = [p for p in paths if not p.exists()]
        if missing:
            raise InputError(f"{positions}: tile {missing[0]} listed but not found")
    else:
        if rows is None or cols is None:
            raise InputError("give --rows and --cols for a grid, or --positions positions.csv")
        paths = find_tiles(tiles)
    check_outputs_distinct([out, report, per_tile], [*paths, positions])
    infos = [raster_info(p) for p in paths]
    for info in infos:
        if info.count != 1:
            raise InputError(f"{info.path}: has {info.count} bands; tiles must be one-band BSE")
    dtypes = {i.dtype for i in infos}
    if len(dtypes) > 1:
        raise InputError(f"{tiles}: tiles mix data types ({', '.join(sorted(dtypes))})")
    shapes = [i.shape for i in infos]
    if pixel_size_um is None:
        pixel_size_um = pixel_size_from_transform(infos[0].transform, path=infos[0].path)
        if pixel_size_um is None:
            pixel_size_um = DEFAULT_PIXEL_SIZE_UM
            notes.append(
                f"tiles have no pixel size; assumed {DEFAULT_PIXEL_SIZE_UM:g} µm "
                "(give --pixel-size)"
            )
    if positions is not None:
        placements = positions_layout(
            paths, shapes, table["x_um"], table["y_um"], pixel_size_um, y_down=y_down
        )
    else:
        assert rows is not None and cols is not None
        if len(paths) != rows * cols:
            raise InputError(
                f"{tiles}: {len(paths)} tiles found for a {rows} x {cols} grid "
                f"({rows * cols} expected)"
            )
        grid_layout(paths, shapes, rows, cols, (0, 0), order)  # tile count and shapes
        if overlap is None:
            overlap = estimate_overlap(paths, shapes[0], rows, cols, order)
            notes.append(f"estimated overlap: {overlap[0]} px vertical, {overlap[1]} px horizontal")
        placements = grid_layout(paths, shapes, rows, cols, overlap, order)
    placements = cut_overlaps(placements)
    height, width = mosaic_shape(placements)
    read = _tile_reader(placements)
    stats: list[OverlapStats] = overlap_stats(placements, neighbour_pairs(placements), read)
    gains, offsets = np.ones(len(placements)), np.zeros(len(placements))
    if equalise_tiles:
        means = [float(read_raster(p.path, bands=1, out_shape=(64, 64)).mean()) for p in placements]
        gains, offsets = equalise(stats, len(placements), means)
    seams = seam_table(placements, stats, gains if equalise_tiles else None, offsets)
    tiles_report = tile_table(placements, stats, gains if equalise_tiles else None, offsets)
    kept = [
        (p.row + p.keep[0], p.col + p.keep[1], p.row + p.keep[2], p.col + p.keep[3])
        for p in placements
    ]
    whole = [(p.row, p.col, p.row + p.height, p.col + p.width) for p in placements]
    covered = _covers_everything(whole, height, width)
    # Irregular positions can leave corners that no kept part shows although a tile covers
    # them: whole tiles go underneath the kept parts then.
    underlay = not _covers_everything(kept, height, width)
    if not covered:
        notes.append("the tiles leave gaps; they are nodata (0) in the mosaic")
    write_mosaic(
        out,
        placements,
        height=height,
        width=width,
        dtype=infos[0].dtype,
        pixel_size_um=pixel_size_um,
        gains=gains if equalise_tiles else None,
        offsets=offsets if equalise_tiles else None,
        nodata=None if covered else 0,
        underlay=underlay,
        overwrite=overwrite,
    )
    write_table(seams, report, overwrite=overwrite)
    write_table(tiles_report, per_tile, overwrite=overwrite)
    return MosaicResult(
        out,
        report,
        per_tile,
        height,
        width,
        pixel_size_um,
        placements,
        seams,
        tiles_report,
        gains,
        offsets,
        equalise_tiles,
        notes,
    )


def _covers_everything(rects: Sequence[tuple[int, int, int, int]], height: int, width: int) -> bool:
    """Whether rectangles ``(top, left, bottom, right)`` cover every pixel of the mosaic
    (exact, on the grid of their edges)."""
    ys = sorted({0, height, *(r[0] for r in rects), *(r[2] for r in rects)})
    xs = sorted({0, width, *(r[1] for r in rects), *(r[3] for r in rects)})
    hit = np.zeros((len(ys) - 1, len(xs) - 1), bool)
    for top, left, bottom, right in rects:
        if bottom > top and right > left:
            hit[ys.index(top) : ys.index(bottom), xs.index(left) : xs.index(right)] = True
    return bool(hit.all())

"""Acquisition tiles cut from a mosaic, with the seams a real SEM leaves (``olmap synth tiles``).

Each tile is a window of the mosaic, overlapping its neighbours by a known amount, numbered in
acquisition order (row by row or serpentine), with its own brightness offset and contrast
gain (detector drift between tiles). The truth (grid cell, position, gain, offset) is written
beside the tiles, so stitching and seam equalisation can be checked against it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from rasterio.windows import Window

from olmap.errors import InputError
from olmap.io.outputs import atomic_dir, check_outputs_distinct
from olmap.io.raster import check_single_band, raster_inputs, read_raster, write_raster
from olmap.io.tables import write_table
from olmap.mosaic.layout import grid_cell


@dataclass(frozen=True)
class TileCut:
    """Summary of :func:`cut_tiles`."""

    out_dir: Path
    tile_shape: tuple[int, int]
    mosaic_shape: tuple[int, int]
    truth: pd.DataFrame


def tile_shape_for(length: int, n: int, overlap: int) -> int:
    """Tile side so that ``n`` tiles overlapping by ``overlap`` px fit within ``length`` px.

    Examples
    --------
    >>> tile_shape_for(1000, 3, 100)
    400
    """
    return (length + (n - 1) * overlap) // n


def cut_tiles(
    bse: str | Path,
    out_dir: str | Path,
    *,
    rows: int,
    cols: int,
    overlap: tuple[int, int],
    order: str = "row",
    offset_sd: float = 0.0,
    gain_sd: float = 0.0,
    jitter_um: float = 0.0,
    seed: int = 0,
    overwrite: bool = False,
) -> TileCut:
    """Cut ``rows x cols`` overlapping tiles from a mosaic and write them as acquired.

    Parameters
    ----------
    bse : path-like
        One-band mosaic (e.g. ``bse.tif`` of ``olmap synth section``).
    out_dir : path-like
        Written: ``tile_000.tif`` ... in acquisition order, ``positions.csv`` (stage positions
        of each top-left corner in µm, y up as olmap's map units, with ``jitter_um`` of stage
        noise) and
        ``truth/tiles.csv`` (grid cell, exact position, gain, offset).
    rows, cols : int
    overlap : (int, int)
        Vertical and horizontal overlap of neighbours (px).
    order : {"row", "snake", "column", "column-snake"}
    offset_sd, gain_sd : float
        Standard deviation of each tile's brightness offset (grey levels) and of its
        contrast gain around 1 (seams).
    jitter_um : float
        Standard deviation of the stage position error written to positions.csv (µm).
    seed : int
    overwrite : bool
    """
    check_outputs_distinct([out_dir], raster_inputs(bse))
    info = check_single_band(bse, "BSE mosaic")
    oy, ox = overlap
    th, tw = tile_shape_for(info.height, rows, oy), tile_shape_for(info.width, cols, ox)
    if th <= 2 * oy or tw <= 2 * ox:
        raise InputError(
            f"{bse}: {rows} x {cols} tiles of {th} x {tw} px are too small for overlaps of "
            f"{overlap} px (overlaps must be under half a tile)"
        )
    pixel = info.pixel_size_um or 1.0
    mosaic = ((rows - 1) * (th - oy) + th, (cols - 1) * (tw - ox) + tw)
    rng = np.random.default_rng(seed)
    n = rows * cols
    gains = 1 + rng.normal(0, gain_sd, n) if gain_sd else np.ones(n)
    offsets = rng.normal(0, offset_sd, n) if offset_sd else np.zeros(n)
    jitter = rng.normal(0, jitter_um, (n, 2)) if jitter_um else np.zeros((n, 2))
    top = np.iinfo(info.dtype).max if np.dtype(info.dtype).kind in "ui" else np.inf
    records, positions = [], []
    with atomic_dir(out_dir, overwrite=overwrite) as tmp:
        (tmp / "truth").mkdir()
        for i in range(n):
            r, c = grid_cell(i, rows, cols, order)
            y0, x0 = r * (th - oy), c * (tw - ox)
            tile = read_raster(bse, window=Window(x0, y0, tw, th), bands=1).astype(float)
            tile = np.clip(np.rint(gains[i] * tile + offsets[i]), 0, top).astype(info.dtype)
            name = f"tile_{i:03d}.tif"
            write_raster(tmp / name, tile, pixel_size_um=pixel)
            # map units: y up, the top of the mosaic at y = mosaic height
            y_top = (mosaic[0] - y0) * pixel
            positions.append(
                {"file": name, "x_um": x0 * pixel + jitter[i, 0], "y_um": y_top + jitter[i, 1]}
            )
            records.append(
                {
                    "file": name,
                    "grid_row": r,
                    "grid_col": c,
                    "row_px": y0,
                    "col_px": x0,
                    "gain": gains[i],
                    "offset": offsets[i],
                }
            )
        write_table(pd.DataFrame(positions), tmp / "positions.csv")
        truth = pd.DataFrame(records)
        write_table(truth, tmp / "truth" / "tiles.csv")
    return TileCut(Path(out_dir), (th, tw), mosaic, truth)

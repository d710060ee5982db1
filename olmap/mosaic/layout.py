"""Where each acquisition tile goes in the mosaic, and which part of it the mosaic shows.

Tiles are placed from a grid description (rows, columns, overlap, acquisition order) or from
stage positions in µm. Where tiles overlap, each mosaic pixel is taken from the tile whose
centre is nearest along the axis that separates them (a cut half-way through the overlap), so
every tile contributes its centre and never its edges, where SEM images are least reliable.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import shapely

from olmap.errors import InputError

ORDERS = ("row", "snake", "column", "column-snake")


@dataclass(frozen=True)
class Placement:
    """One tile in the mosaic.

    Attributes
    ----------
    path : Path
        The tile's image file.
    row, col : int
        Mosaic pixel of the tile's top-left corner.
    height, width : int
        Tile shape (px).
    keep : (int, int, int, int)
        ``(top, left, bottom, right)`` of the part of the tile the mosaic shows, in tile
        pixels (the whole tile before :func:`cut_overlaps`).
    grid : (int, int) or None
        Grid row and column, for grid layouts.
    """

    path: Path
    row: int
    col: int
    height: int
    width: int
    keep: tuple[int, int, int, int]
    grid: tuple[int, int] | None = None

    @property
    def centre(self) -> tuple[float, float]:
        return self.row + self.height / 2, self.col + self.width / 2


def natural_key(path: Path) -> list:
    """Sort key that puts ``tile_2`` before ``tile_10``."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]


def grid_cell(index: int, rows: int, cols: int, order: str) -> tuple[int, int]:
    """Grid (row, col) of the ``index``-th acquired tile.

    Examples
    --------
    >>> [grid_cell(i, 2, 3, "snake") for i in range(6)]
    [(0, 0), (0, 1), (0, 2), (1, 2), (1, 1), (1, 0)]
    >>> [grid_cell(i, 2, 2, "column") for i in range(4)]
    [(0, 0), (1, 0), (0, 1), (1, 1)]
    """
    if order not in ORDERS:
        raise InputError(f"unknown tile order {order!r}; choose one of {', '.join(ORDERS)}")
    if order.startswith("column"):
        c, r = divmod(index, rows)
        if order == "column-snake" and c % 2:
            r = rows - 1 - r
        return r, c
    r, c = divmod(index, cols)
    if order == "snake" and r % 2:
        c = cols - 1 - c
    return r, c


def grid_layout(
    paths: Sequence[Path],
    shapes: Sequence[tuple[int, int]],
    rows: int,
    cols: int,
    overlap: tuple[int, int],
    order: str = "row",
) -> list[Placement]:
    """Placements of ``rows x cols`` equally sized tiles in acquisition ``order``.

    Parameters
    ----------
    paths, shapes : sequences
        Tile files in acquisition order and their (height, width).
    rows, cols : int
    overlap : (int, int)
        Overlap of vertical and horizontal neighbours (px).
    order : {"row", "snake", "column", "column-snake"}
        Acquisition order: row by row left to right, rows alternating direction (serpentine),
        or the same by columns.

    Raises
    ------
    InputError
        When the number of tiles is not ``rows x cols``, tiles differ in shape, or the
        overlap is not smaller than a tile.
    """
    if len(paths) != rows * cols:
        raise InputError(
            f"{len(paths)} tiles found for a {rows} x {cols} grid ({rows * cols} expected)"
        )
    if len(set(shapes)) != 1:
        odd = next(p for p, s in zip(paths, shapes, strict=True) if s != shapes[0])
        raise InputError(
            f"{odd}: tile shape {shapes[paths.index(odd)]} differs from {shapes[0]} of "
            f"{paths[0]}; grid layouts need equal tiles (use --positions)"
        )
    h, w = shapes[0]
    oy, ox = overlap
    if not (0 <= oy < h and 0 <= ox < w):
        raise InputError(f"overlap {overlap} px must be smaller than the tiles ({h} x {w} px)")
    out = []
    for i, path in enumerate(paths):
        r, c = grid_cell(i, rows, cols, order)
        out.append(Placement(path, r * (h - oy), c * (w - ox), h, w, (0, 0, h, w), (r, c)))
    return out


def positions_layout(
    paths: Sequence[Path],
    shapes: Sequence[tuple[int, int]],
    x_um: Sequence[float],
    y_um: Sequence[float],
    pixel_size_um: float,
    *,
    y_down: bool = False,
) -> list[Placement]:
    """Placements from stage positions of each tile's top-left corner (µm).

    Positions are rounded to whole pixels and shifted so the mosaic starts at (0, 0). ``y``
    grows upwards as in olmap's map units (shared/CLI.md), or downwards (image rows, some
    stage systems) with ``y_down``.
    """
    x = np.asarray(x_um, float) / pixel_size_um
    y = np.asarray(y_um, float) / pixel_size_um
    if not y_down:
        y = -y
    cols = np.rint(x - x.min()).astype(int)
    rows = np.rint(y - y.min()).astype(int)
    return [
        Placement(p, int(r), int(c), h, w, (0, 0, h, w))
        for p, (h, w), r, c in zip(paths, shapes, rows, cols, strict=True)
    ]


def mosaic_shape(placements: Sequence[Placement]) -> tuple[int, int]:
    """(height, width) of the mosaic that holds every tile."""
    return (
        max(p.row + p.height for p in placements),
        max(p.col + p.width for p in placements),
    )


def overlaps(a: Placement, b: Placement) -> tuple[int, int, int, int] | None:
    """Mosaic rectangle ``(top, left, bottom, right)`` covered by both tiles, or None."""
    top, left = max(a.row, b.row), max(a.col, b.col)
    bottom = min(a.row + a.height, b.row + b.height)
    right = min(a.col + a.width, b.col + b.width)
    if bottom <= top or right <= left:
        return None
    return top, left, bottom, right


def overlapping_pairs(placements: Sequence[Placement]) -> list[tuple[int, int]]:
    """Pairs ``(i, j)``, ``i < j``, of tiles whose footprints share pixels.

    Found with a spatial index (``shapely.STRtree``), so a section of thousands of tiles
    (the paper's 512 x 338 px tiles: ~9,000 for 1.5 gigapixels) is not compared pair by pair.
    """
    boxes = shapely.box(
        [p.col for p in placements],
        [p.row for p in placements],
        [p.col + p.width for p in placements],
        [p.row + p.height for p in placements],
    )
    left, right = shapely.STRtree(boxes).query(boxes, predicate="intersects")
    return [
        (int(i), int(j))
        for i, j in zip(left, right, strict=True)
        if i < j and overlaps(placements[i], placements[j]) is not None  # not edge-touching
    ]


def neighbour_pairs(placements: Sequence[Placement]) -> list[tuple[int, int]]:
    """Pairs of tiles that overlap side by side (not only at a corner).

    A pair overlaps side by side when the overlap spans at least half of the shorter tile
    along the shared edge; corner overlaps are left out (they are covered by the side pairs).
    """
    pairs = []
    for i, j in overlapping_pairs(placements):
        a, b = placements[i], placements[j]
        top, left, bottom, right = overlaps(a, b)  # type: ignore[misc]
        tall = (bottom - top) >= 0.5 * min(a.height, b.height)
        wide = (right - left) >= 0.5 * min(a.width, b.width)
        if tall or wide:
            pairs.append((i, j))
    return pairs


def cut_overlaps(placements: Sequence[Placement]) -> list[Placement]:
    """Set each tile's ``keep`` so neighbours meet half-way through their overlap.

    For each overlapping neighbour the cut is perpendicular to the axis along which their
    centres differ most, at the midpoint of the overlap.
    """
    edges = [[p.row, p.col, p.row + p.height, p.col + p.width] for p in placements]
    for i, j in overlapping_pairs(placements):
        a, b = placements[i], placements[j]
        o_top, o_left, o_bottom, o_right = overlaps(a, b)  # type: ignore[misc]
        (ay, ax), (by, bx) = a.centre, b.centre
        if abs(bx - ax) >= abs(by - ay):
            mid = (o_left + o_right) // 2
            first, second = (i, j) if bx > ax else (j, i)  # first lies to the left
            edges[first][3] = min(edges[first][3], mid)
            edges[second][1] = max(edges[second][1], mid)
        else:
            mid = (o_top + o_bottom) // 2
            first, second = (i, j) if by > ay else (j, i)  # first lies above
            edges[first][2] = min(edges[first][2], mid)
            edges[second][0] = max(edges[second][0], mid)
    out = []
    for p, (top, left, bottom, right) in zip(placements, edges, strict=True):
        keep = (top - p.row, left - p.col, max(bottom, top) - p.row, max(right, left) - p.col)
        out.append(replace(p, keep=keep))
    return out

"""Brightness and contrast differences between tiles where they overlap, and their correction.

BSE detectors drift between tiles (brightness, contrast), which shows as seams and, worse,
biases the BSE -> mg# calibration of crystals that straddle tiles. In each overlap both tiles
image the same ground, so their grey statistics there should agree. A per-tile linear
correction ``v' = gain x v + offset`` is fitted to all overlaps at once by least squares:
log-gains from the ratios of standard deviations, then offsets from the means, with the
section's mean gain and mean brightness kept.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from olmap.mosaic.layout import Placement, overlaps

#: ``read(tile index, (top, left, bottom, right) in tile pixels) -> grey values``
TileReader = Callable[[int, tuple[int, int, int, int]], np.ndarray]


@dataclass(frozen=True)
class OverlapStats:
    """Grey statistics of two tiles on their common ground.

    Attributes
    ----------
    a, b : int
        Tile indices.
    pixels : int
        Pixels compared.
    mean_a, mean_b, std_a, std_b : float
        Grey mean and standard deviation of each tile there.
    """

    a: int
    b: int
    pixels: int
    mean_a: float
    mean_b: float
    std_a: float
    std_b: float

    @property
    def brightness_difference(self) -> float:
        """mean(a) - mean(b) in grey levels."""
        return self.mean_a - self.mean_b

    @property
    def contrast_ratio(self) -> float:
        """std(a) / std(b)."""
        return self.std_a / self.std_b if self.std_b > 0 else float("nan")


def overlap_stats(
    placements: Sequence[Placement],
    pairs: Sequence[tuple[int, int]],
    read: TileReader,
    *,
    margin: int = 2,
) -> list[OverlapStats]:
    """Statistics of every overlapping pair, from the overlap shrunk by ``margin`` px."""
    out = []
    for i, j in pairs:
        a, b = placements[i], placements[j]
        box = overlaps(a, b)
        if box is None:
            continue
        top, left, bottom, right = box
        top, left, bottom, right = top + margin, left + margin, bottom - margin, right - margin
        if bottom <= top or right <= left:
            continue
        va = read(i, (top - a.row, left - a.col, bottom - a.row, right - a.col)).astype(float)
        vb = read(j, (top - b.row, left - b.col, bottom - b.row, right - b.col)).astype(float)
        ok = np.isfinite(va) & np.isfinite(vb)
        if ok.sum() < 16:
            continue
        va, vb = va[ok], vb[ok]
        out.append(OverlapStats(i, j, int(ok.sum()), va.mean(), vb.mean(), va.std(), vb.std()))
    return out


def equalise(
    stats: Sequence[OverlapStats], n_tiles: int, tile_means: Sequence[float] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per-tile gains and offsets that make overlapping tiles agree (least squares).

    Parameters
    ----------
    stats : sequence of OverlapStats
    n_tiles : int
    tile_means : sequence of float, optional
        Mean grey value of each tile; the correction then keeps the mosaic's mean
        brightness (otherwise the mean offset is zero).

    Returns
    -------
    gains, offsets : ndarray (n_tiles,)
        Apply as ``gain x value + offset``. Tiles without any overlap keep (1, 0).

    Examples
    --------
    >>> s = [OverlapStats(0, 1, 100, 100.0, 110.0, 10.0, 10.0)]
    >>> g, o = equalise(s, 2)
    >>> [round(float(x), 6) for x in g], [round(float(x), 6) for x in o]
    ([1.0, 1.0], [5.0, -5.0])
    """
    usable = [s for s in stats if s.std_a > 0 and s.std_b > 0]
    gains, offsets = np.ones(n_tiles), np.zeros(n_tiles)
    if not usable:
        return gains, offsets
    linked = sorted({s.a for s in usable} | {s.b for s in usable})
    index = {t: k for k, t in enumerate(linked)}
    n = len(linked)
    weights = np.sqrt([s.pixels for s in usable]) / np.sqrt(max(s.pixels for s in usable))
    # log g_a + log std_a = log g_b + log std_b, and the mean log-gain is zero
    a = np.zeros((len(usable) + 1, n))
    y = np.zeros(len(usable) + 1)
    for k, (s, wt) in enumerate(zip(usable, weights, strict=True)):
        a[k, index[s.a]], a[k, index[s.b]] = wt, -wt
        y[k] = wt * (np.log(s.std_b) - np.log(s.std_a))
    a[-1, :] = 1.0
    log_g = np.linalg.lstsq(a, y, rcond=None)[0]
    g = np.exp(log_g)
    # g_a mean_a + o_a = g_b mean_b + o_b, and the mean brightness is kept
    means = np.array([tile_means[t] for t in linked]) if tile_means is not None else None
    a = np.zeros((len(usable) + 1, n))
    y = np.zeros(len(usable) + 1)
    for k, (s, wt) in enumerate(zip(usable, weights, strict=True)):
        a[k, index[s.a]], a[k, index[s.b]] = wt, -wt
        y[k] = wt * (g[index[s.b]] * s.mean_b - g[index[s.a]] * s.mean_a)
    a[-1, :] = 1.0
    y[-1] = 0.0 if means is None else float(np.sum(means - g * means))
    o = np.linalg.lstsq(a, y, rcond=None)[0]
    for t, k in index.items():
        gains[t], offsets[t] = g[k], o[k]
    return gains, offsets


def seam_table(
    placements: Sequence[Placement],
    stats: Sequence[OverlapStats],
    gains: np.ndarray | None = None,
    offsets: np.ndarray | None = None,
) -> pd.DataFrame:
    """One row per overlapping pair: where, how much brightness and contrast differ, and what
    remains after the correction (if given)."""
    rows = []
    for s in stats:
        a, b = placements[s.a], placements[s.b]
        row = {
            "tile_a": a.path.name,
            "tile_b": b.path.name,
            "pixels": s.pixels,
            "mean_a": round(s.mean_a, 3),
            "mean_b": round(s.mean_b, 3),
            "brightness_difference": round(s.brightness_difference, 3),
            "contrast_ratio": round(s.contrast_ratio, 4),
        }
        if gains is not None and offsets is not None:
            after = (gains[s.a] * s.mean_a + offsets[s.a]) - (gains[s.b] * s.mean_b + offsets[s.b])
            ratio = (gains[s.a] * s.std_a) / (gains[s.b] * s.std_b) if s.std_b > 0 else np.nan
            row["brightness_difference_after"] = round(float(after), 3)
            row["contrast_ratio_after"] = round(float(ratio), 4)
        rows.append(row)
    return pd.DataFrame(rows)


def tile_table(
    placements: Sequence[Placement],
    stats: Sequence[OverlapStats],
    gains: np.ndarray | None = None,
    offsets: np.ndarray | None = None,
) -> pd.DataFrame:
    """One row per tile: where it is, and how it differs from its neighbours on average
    (brightness: mean of ``mean(tile) - mean(neighbour)`` over its overlaps, grey levels;
    contrast: geometric mean of ``std(tile) / std(neighbour)``), with its correction."""
    diffs: list[list[float]] = [[] for _ in placements]
    ratios: list[list[float]] = [[] for _ in placements]
    for s in stats:
        diffs[s.a].append(s.brightness_difference)
        diffs[s.b].append(-s.brightness_difference)
        if s.std_a > 0 and s.std_b > 0:
            ratios[s.a].append(np.log(s.std_a / s.std_b))
            ratios[s.b].append(np.log(s.std_b / s.std_a))
    rows = []
    for i, p in enumerate(placements):
        row = {
            "tile": p.path.name,
            "grid_row": p.grid[0] if p.grid else None,
            "grid_col": p.grid[1] if p.grid else None,
            "row_px": p.row,
            "col_px": p.col,
            "overlaps": len(diffs[i]),
            "brightness_vs_neighbours": round(float(np.mean(diffs[i])), 3) if diffs[i] else None,
            "contrast_vs_neighbours": (
                round(float(np.exp(np.mean(ratios[i]))), 4) if ratios[i] else None
            ),
        }
        if gains is not None and offsets is not None:
            row["gain"] = round(float(gains[i]), 5)
            row["offset"] = round(float(offsets[i]), 3)
        rows.append(row)
    return pd.DataFrame(rows)

"""Local Outlier Factor on the pixels of one crystal (seed 002 sect. 3.8).

Features are ``(row, col, bse_scale * BSE)``. Cracks, holes and inclusions inside a
segmented crystal differ from the olivine around them in BSE and are sparse in this space.

Speed-up (olmap): the pixels lie on a regular grid, so the crystal's density seen through every
``s``-th row and column is the full density divided by ``s²``, everywhere. LOF is a ratio of
local densities, so fitting it on that subgrid with ``k / s²`` neighbours and scoring every
pixel against it gives the flags of ``k`` neighbours over all pixels, for ``s²`` fewer points
in the model and ``s²`` fewer neighbours per query (tools/bench_mgmap.py measures agreement
with scikit-learn's LOF on all pixels and the speed ratio).
"""

from __future__ import annotations

import numpy as np
from sklearn.neighbors import LocalOutlierFactor


def crystal_noise_sd(pixels: np.ndarray, bse: np.ndarray) -> tuple[float, int]:
    """Robust sd of a crystal's BSE noise, from the differences of 4-adjacent pixel pairs.

    Zoning changes slowly from pixel to pixel and cracks hold few pairs, so 1.4826 x the
    median absolute deviation of the differences, over sqrt(2), is the pixel noise the LOF
    sees (after the instrument's blur), in the BSE's units.

    Parameters
    ----------
    pixels : ndarray (h, w) bool
        The crystal in its bounding window.
    bse : ndarray (h, w) float
        BSE of the window (NaN: no value).

    Returns
    -------
    sd : float
        NaN when no pair exists.
    pairs : int
        Number of pixel pairs it was measured on.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> bse = 100 + np.linspace(0, 30, 64)[None, :] + rng.normal(0, 2.0, (64, 64))
    >>> sd, pairs = crystal_noise_sd(np.ones((64, 64), bool), bse)
    >>> 1.8 < sd < 2.2, pairs
    (True, 8064)
    """
    ok = pixels & np.isfinite(bse)
    diffs = np.concatenate(
        [
            (bse[:, 1:] - bse[:, :-1])[ok[:, 1:] & ok[:, :-1]],
            (bse[1:] - bse[:-1])[ok[1:] & ok[:-1]],
        ]
    )
    if diffs.size == 0:
        return float("nan"), 0
    mad = np.median(np.abs(diffs - np.median(diffs)))
    return float(1.4826 * mad / np.sqrt(2.0)), int(diffs.size)


def _subgrid_stride(rows: np.ndarray, cols: np.ndarray, n_neighbors: int, stride: int) -> int:
    """Largest stride <= ``stride`` whose subgrid still holds well over k/s² points."""
    for s in range(stride, 1, -1):
        k_sub = max(2, round(n_neighbors / s**2))
        n_sub = int(np.count_nonzero((rows % s == 0) & (cols % s == 0)))
        if n_sub > 4 * k_sub:
            return s
    return 1


def lof_scores(
    rows: np.ndarray,
    cols: np.ndarray,
    bse: np.ndarray,
    *,
    n_neighbors: int = 800,
    bse_scale: float = 1.0,
    grid_stride: int = 4,
    max_fraction: float = 0.25,
) -> np.ndarray:
    """Local Outlier Factor of every pixel of one crystal (1 = as dense as its neighbours).

    Parameters
    ----------
    rows, cols : ndarray (n,) int
        Pixel positions in the mosaic (absolute, so the subgrid does not depend on how the
        mosaic is cut into windows).
    bse : ndarray (n,)
        BSE grey levels.
    n_neighbors : int
        k of the LOF at full resolution (pixels).
    bse_scale : float
        Feature units per grey level (1 = the paper's raw features).
    grid_stride : int
        Subgrid stride ``s`` for the fit (1 = scikit-learn's LOF on all pixels).
    max_fraction : float
        k is at most this fraction of the crystal's pixels (at least 5): when k nears the
        crystal's size every neighbourhood is the whole crystal and LOF is ~1 everywhere, so
        a small crystal gets a smaller k.

    Returns
    -------
    ndarray (n,) float
    """
    rows = np.asarray(rows)
    cols = np.asarray(cols)
    n = rows.size
    if n < 3:
        return np.ones(n)
    features = np.c_[rows, cols, bse_scale * np.asarray(bse, dtype=np.float64)]
    n_neighbors = min(n_neighbors, max(5, int(max_fraction * n)))
    s = _subgrid_stride(rows, cols, n_neighbors, grid_stride)
    if s == 1:
        lof = LocalOutlierFactor(n_neighbors=min(n_neighbors, n - 1))
        lof.fit(features)
        return -lof.negative_outlier_factor_
    fit = (rows % s == 0) & (cols % s == 0)
    k_sub = min(max(2, round(n_neighbors / s**2)), int(fit.sum()) - 1)
    lof = LocalOutlierFactor(n_neighbors=k_sub, novelty=True)
    lof.fit(features[fit])
    return -lof.score_samples(features)


def lof_outliers(
    rows: np.ndarray,
    cols: np.ndarray,
    bse: np.ndarray,
    *,
    n_neighbors: int = 800,
    bse_scale: float = 1.0,
    threshold: float = 1.5,
    grid_stride: int = 4,
    max_fraction: float = 0.25,
    min_pixels: int = 10,
) -> np.ndarray:
    """Outlier pixels of one crystal: LOF above ``threshold`` (True = outlier).

    Crystals with fewer than ``min_pixels`` pixels are left unfiltered (a density has no
    meaning over a handful of points). See :func:`lof_scores` for the parameters.
    """
    if np.asarray(rows).size < min_pixels:
        return np.zeros(np.asarray(rows).size, dtype=bool)
    scores = lof_scores(
        rows,
        cols,
        bse,
        n_neighbors=n_neighbors,
        bse_scale=bse_scale,
        grid_stride=grid_stride,
        max_fraction=max_fraction,
    )
    return scores > threshold

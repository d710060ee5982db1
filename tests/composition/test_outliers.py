"""LOF on the pixels of a crystal: cracks found, clean olivine kept, grid speed-up exact."""

from __future__ import annotations

import numpy as np

from olmap.composition.outliers import lof_outliers, lof_scores


def cracked_crystal(seed: int = 0):
    """A 120 x 120 px olivine with zoning, noise, a long 2-px crack and a plucked hole."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:120, 0:120]
    inside = np.hypot(yy - 60, xx - 60) < 58
    bse = 110 + 0.15 * (xx - 60) + rng.normal(0, 3, inside.shape)
    crack = (np.abs(yy - 0.8 * xx - 12) < 1.2) & inside  # ~150 px: far more than k = 20
    hole = np.hypot(yy - 85, xx - 35) < 4
    bse[crack] = 25 + rng.normal(0, 2, crack.sum())
    bse[hole] = 12
    rows, cols = np.nonzero(inside)
    artefact = (crack | hole)[rows, cols]
    return rows, cols, bse[rows, cols], artefact


def test_lof_flags_cracks_not_olivine():
    rows, cols, bse, artefact = cracked_crystal()
    flags = lof_outliers(rows, cols, bse)
    assert flags[artefact].mean() >= 0.9
    assert flags[~artefact].mean() <= 0.02


def test_small_k_misses_long_cracks():
    # Why k is large (LofConfig: 800): with scikit-learn's default k = 20 a crack longer than k
    # pixels is a dense cluster of its own and LOF sees nothing wrong inside it.
    rows, cols, bse, artefact = cracked_crystal()
    assert lof_outliers(rows, cols, bse, n_neighbors=20, grid_stride=1)[artefact].mean() < 0.5


def test_grid_subsampling_gives_the_same_flags():
    rows, cols, bse, _ = cracked_crystal(seed=3)
    full = lof_scores(rows, cols, bse, n_neighbors=400, grid_stride=1) > 1.5
    grid = lof_scores(rows, cols, bse, n_neighbors=400, grid_stride=4) > 1.5
    assert (full == grid).mean() >= 0.995


def test_tiny_crystals_are_not_filtered():
    rows, cols = np.nonzero(np.ones((4, 5), bool))
    bse = np.full(rows.size, 100.0)
    bse[3] = 10
    assert not lof_outliers(rows, cols, bse, min_pixels=30).any()


def test_small_crystals_get_a_smaller_k():
    # A 300-px microlite with a 24-px crack: k = 800 would make every neighbourhood the whole
    # crystal (LOF ~1 everywhere); k <= n/4 still sees the crack.
    rng = np.random.default_rng(2)
    yy, xx = np.mgrid[0:22, 0:22]
    inside = np.hypot(yy - 10.5, xx - 10.5) < 10
    bse = 120 + rng.normal(0, 3, inside.shape)
    crack = inside & (np.abs(yy - xx) < 1)
    bse[crack] = 30
    rows, cols = np.nonzero(inside)
    artefact = crack[rows, cols]
    flags = lof_outliers(rows, cols, bse[rows, cols])
    assert flags[artefact].mean() >= 0.8 and flags[~artefact].mean() <= 0.05
    whole = lof_outliers(rows, cols, bse[rows, cols], max_fraction=1.0)
    assert whole[artefact].mean() < flags[artefact].mean()

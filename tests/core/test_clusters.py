"""Small isolated clusters removed from label images and volumes (seed 000's post-processing)."""

import numpy as np
from scipy import ndimage as ndi

from olmap.core.clusters import remove_small_clusters


def _volume(seed: int = 0) -> np.ndarray:
    """Two half-spaces (codes 1 and 2) sprinkled with islands of code 3 of 1-40 voxels."""
    rng = np.random.default_rng(seed)
    vol = np.ones((30, 40, 40), np.uint8)
    vol[:, :, 20:] = 2
    for _ in range(25):
        z, y, x = rng.integers(2, 26), rng.integers(2, 36), rng.integers(2, 36)
        d, h, w = rng.integers(1, 4, 3)
        vol[z : z + d, y : y + h, x : x + w] = 3
    return vol


def test_small_islands_take_the_label_around_them():
    vol = _volume()
    ids = ndi.label(vol == 3, structure=np.ones((3, 3, 3)))[0]
    sizes = np.bincount(ids.ravel())
    cleaned, removed = remove_small_clusters(vol, {3: 10})
    small = np.isin(ids, np.flatnonzero(sizes < 10)) & (ids > 0)
    assert removed == small.sum() > 0
    assert np.array_equal(cleaned == 3, (vol == 3) & ~small)  # big islands stay
    # a removed island left of x = 20 becomes 1, right of it 2 (unless it straddles x = 20)
    left = small & (np.arange(40) < 19)[None, None, :]
    right = small & (np.arange(40) > 20)[None, None, :]
    assert (cleaned[left] == 1).all() and (cleaned[right] == 2).all()
    assert np.array_equal(cleaned[~small], vol[~small])  # nothing else changes


def test_diagonal_neighbours_are_one_cluster_and_keep_protects():
    vol = np.ones((5, 5, 5), np.uint8)
    vol[1, 1, 1] = vol[2, 2, 2] = 2  # corner-connected: one cluster of 2 voxels
    assert remove_small_clusters(vol, {2: 2})[1] == 0
    assert remove_small_clusters(vol, {2: 3})[1] == 2
    keep = np.zeros(vol.shape, bool)
    keep[2, 2, 2] = True  # e.g. the cluster reaches a block's cut face
    assert remove_small_clusters(vol, {2: 3}, keep=keep)[1] == 0
    assert remove_small_clusters(vol, {})[1] == 0  # no sizes: nothing to do

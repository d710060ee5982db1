"""Remove small isolated clusters from a label image or volume (n-D).

Seed 000 post-processes its CNN labels by removing "isolated clusters" below a size per
class, found as 3D connected components (100 voxels for bassanite, 8 for pores). A removed
cluster takes the label of the nearest voxel that is kept, so it becomes part of what
surrounds it.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from scipy import ndimage as ndi


def remove_small_clusters(
    labels: np.ndarray,
    min_size: Mapping[int, int],
    *,
    keep: np.ndarray | None = None,
) -> tuple[np.ndarray, int]:
    """Relabel connected clusters of a class smaller than its minimum size.

    Parameters
    ----------
    labels : ndarray of int
        Label image or volume (any number of axes).
    min_size : mapping of int to int
        Code -> smallest cluster kept (voxels); codes not given, or 0, are left alone.
    keep : ndarray of bool, optional
        Clusters touching a True voxel are kept whatever their size: a cluster may continue
        outside the array there (the cut faces of a block read with a margin).

    Returns
    -------
    cleaned : ndarray
        A copy; each removed voxel has the label of the nearest kept voxel (Euclidean).
    removed : int
        Voxels relabelled.

    Notes
    -----
    Clusters are connected through faces, edges and corners (26-connectivity in 3D), so only
    truly isolated groups are removed.

    Examples
    --------
    >>> a = np.array([[1, 1, 1, 1], [1, 2, 1, 1], [1, 1, 1, 2]])
    >>> cleaned, n = remove_small_clusters(a, {2: 2})
    >>> cleaned.tolist(), n
    ([[1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 1]], 2)
    >>> remove_small_clusters(a, {2: 2}, keep=a == 2)[1]
    0
    """
    structure = ndi.generate_binary_structure(labels.ndim, labels.ndim)
    small = np.zeros(labels.shape, bool)
    for code, size in min_size.items():
        if size <= 1:
            continue
        ids, n = ndi.label(labels == code, structure=structure)
        if n == 0:
            continue
        drop = np.bincount(ids.ravel(), minlength=n + 1) < size
        drop[0] = False
        if keep is not None:
            drop[np.unique(ids[keep])] = False
        small |= drop[ids]
    removed = int(small.sum())
    if removed == 0 or removed == labels.size:
        return labels.copy(), 0
    nearest = ndi.distance_transform_edt(small, return_distances=False, return_indices=True)
    return labels[tuple(nearest)], removed

"""Touching olivine crystals: one connected component of the mask, several crystals.

Crystals in a glomerocryst, or a microlite grown onto a phenocryst, form one component of the
olivine mask, and the paper counted them as one crystal (seed 002 sect. 3.9). Each crystal has
its own mg#, so its BSE grey level changes in a step where it meets another. olmap splits a
component along such steps: a watershed of the BSE gradient over-segments it, and adjacent
regions are merged back unless the mean gradient along their shared boundary is a step
(:func:`split_touching`). Cracks are bridged first, so they never split a crystal.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage import graph, morphology, segmentation

from olmap.composition.calibrate import masked_gaussian


def bse_gradient(bse: np.ndarray, crystal: np.ndarray, sigma_px: float) -> np.ndarray:
    """BSE gradient magnitude (grey levels per px) inside a crystal, blind to its outline.

    The smoothing is a normalised convolution over the crystal's pixels, so cracks, holes and
    the outline (darker epoxy or other minerals) make no gradient; pixels off the crystal take
    the crystal's values beside them.
    """
    image = np.where(np.isfinite(bse), bse, np.nan)
    valid = crystal & np.isfinite(image)
    if not valid.any():
        return np.zeros(crystal.shape)
    image = np.where(valid, image, np.nanmean(image[valid]))
    smooth = masked_gaussian(image, valid.astype(np.float64), sigma_px)
    # Sobel sums 8 x the central difference over three rows: /8 gives grey levels per px.
    return np.hypot(ndi.sobel(smooth, 0), ndi.sobel(smooth, 1)) / 8.0


def _weight_boundary(g, src, dst, n):
    """New edge weight after merging: the mean gradient over both boundaries (by length)."""
    default = {"weight": 0.0, "count": 0}
    a, b = g[src].get(n, default), g[dst].get(n, default)
    count = a["count"] + b["count"]
    return {"count": count, "weight": (a["count"] * a["weight"] + b["count"] * b["weight"]) / count}


def _merge_nothing(g, src, dst):
    """Boundary weights are updated by :func:`_weight_boundary`; nodes keep no data."""


def split_touching(
    crystal: np.ndarray,
    bse: np.ndarray,
    *,
    sigma_px: float = 0.7,
    h_min: float = 1.0,
    boundary_step: float = 3.0,
    close_cracks_px: int = 1,
) -> np.ndarray:
    """Label the crystals of one connected component along the BSE steps between them.

    Parameters
    ----------
    crystal : ndarray of bool (h, w)
        The component's pixels.
    bse : ndarray of float (h, w)
        BSE grey levels; NaN where there is no value.
    sigma_px : float
        Smoothing before the gradient (px).
    h_min : float
        Depth (grey levels per px) of the gradient minima that seed the over-segmentation.
    boundary_step : float
        Regions stay apart where the mean BSE gradient along their boundary exceeds this
        (grey levels per px): a step in mg# between crystals, not noise or gradual zoning.
    close_cracks_px : int
        Radius (px) over which cracks are bridged, so that the two sides of a crack are
        neighbours and merge.

    Returns
    -------
    ndarray of int32 (h, w)
        1..n on the crystal's pixels (n = 1: not split), 0 elsewhere.
    """
    crystal = np.asarray(crystal, bool)
    labels = crystal.astype(np.int32)
    if crystal.sum() < 16:
        return labels
    grad = bse_gradient(bse, crystal, sigma_px)
    region = crystal
    if close_cracks_px > 0:
        r = int(close_cracks_px)
        region = crystal | ndi.binary_closing(np.pad(crystal, r), morphology.disk(r))[r:-r, r:-r]
    seeds = morphology.h_minima(np.where(region, grad, grad.max()), h_min) & region
    markers, n = ndi.label(seeds)
    if n <= 1:
        return labels
    parts = segmentation.watershed(grad, markers, mask=region)
    rag = graph.rag_boundary(parts, grad)
    # Node 0 is the background around the crystal: merging through it would join crystals
    # that only share the outline's low gradient.
    if rag.has_node(0):
        rag.remove_node(0)
    merged = graph.merge_hierarchical(
        parts,
        rag,
        thresh=boundary_step,
        rag_copy=False,
        in_place_merge=True,
        merge_func=_merge_nothing,
        weight_func=_weight_boundary,
    )
    # merge_hierarchical numbers regions from 0, including the background: renumber the
    # crystal's pixels 1..n.
    _, inverse = np.unique(merged[crystal], return_inverse=True)
    labels[crystal] = inverse.astype(np.int32) + 1
    return labels

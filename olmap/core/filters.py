"""Filters over masked n-D images (normalised convolution)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi


def masked_gaussian(image: np.ndarray, mask: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing of ``image`` over the interior of ``mask`` (normalised convolution).

    An EPMA spot next to a crack or the crystal outline measures olivine; a plain Gaussian
    would mix in the dark epoxy of the crack, and so would the mask's own edge pixels, which
    the BSE point-spread function has already darkened. Every pixel within reach of the
    mask's interior (pixels whose 8 neighbours are in the mask) takes the weighted mean of
    that interior, so bilinear samples and line-width samples that touch a crack still
    measure the olivine beside it; failing that, of the whole mask; pixels far from the mask
    are smoothed plainly. Works on images of any dimension (the interior is then the voxels
    whose full 3^n neighbourhood is in the mask).

    Parameters
    ----------
    image : ndarray
        Values to smooth (float).
    mask : ndarray
        Same shape; nonzero inside.
    sigma : float
        Gaussian sigma (px).

    Examples
    --------
    >>> image = np.array([[1.0, 1.0, 1.0, 0.0, 0.0]] * 5)
    >>> mask = image > 0
    >>> round(float(masked_gaussian(image, mask, 1.0)[2, 2]), 3)  # the dark side is not mixed in
    1.0
    """
    inside = mask > 0
    out = ndi.gaussian_filter(image, sigma)
    for weight in (inside, ndi.binary_erosion(inside, np.ones((3,) * inside.ndim, bool))):
        w = weight.astype(np.float64)
        den = ndi.gaussian_filter(w, sigma)
        num = ndi.gaussian_filter(image * w, sigma)
        use = den > 1e-3
        out[use] = num[use] / den[use]
    return out

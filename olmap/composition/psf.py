"""The BSE point-spread at crystal outlines: estimated from the image, undone near the edge.

The BSE signal of a pixel comes from an interaction volume ~1 µm across, so at 0.3-0.5 µm
pixels the olivine within a few pixels of its outline is mixed with the darker or brighter
phase beside it. Read through the calibration line, the mix is an mg# error that grows to
0.02-0.03 at the outline (issue 23: on a foreign look with a 2.5 px point-spread, the mg# map
was off by 0.03 within 2 px of the outline and 0.01 at 3-5 px, against 0.006 inside).

Model: a Gaussian point-spread of sd ``sigma`` (px) over a crystal of slowly varying grey
``g_in`` in surroundings of slowly varying grey ``g_out``::

    observed = w * g_in + (1 - w) * g_out,   w = G_sigma * mask

so ``g_in = (observed - (1 - w) * g_out) / w`` where ``w`` is large enough (the outermost
pixels, whose signal is mostly the neighbour's, are left as they are). ``g_out`` is the local
mean of the surroundings beyond the blur's reach. ``sigma`` is the one that best predicts the
observed grey across outlines (:func:`estimate_psf_sigma`).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from scipy import ndimage as ndi

#: Point-spread sds tried (px); the first, 0, is "no blur worth undoing".
SIGMAS_PX = (0.0, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0)


def _local_mean(image: np.ndarray, where: np.ndarray, sigma: float) -> np.ndarray:
    """Mean of ``image`` over ``where`` around every pixel (normalised convolution)."""
    w = where & np.isfinite(image)
    num = ndi.gaussian_filter(np.where(w, image, 0.0), sigma, mode="nearest")
    den = ndi.gaussian_filter(w.astype(np.float64), sigma, mode="nearest")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 1e-3, num / den, np.nan)


def _pure(mask: np.ndarray, sigma: float, inside: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Pixels of the crystal and of its surroundings beyond the blur's reach (1.5 sd + 1 px).

    ``inside=False`` skips the crystal's (its distance transform) where only the
    surroundings are needed.
    """
    reach = 1.5 * sigma + 1.0
    outside = ~mask & (ndi.distance_transform_edt(~mask) > reach)
    if not inside:
        return np.zeros_like(mask), outside
    return mask & (ndi.distance_transform_edt(mask) > reach), outside


def blurred_mix(
    image: np.ndarray, mask: np.ndarray, sigma: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``w``, ``g_in`` and ``g_out`` of the model for a point-spread of sd ``sigma`` (px)."""
    mask = np.asarray(mask, bool)
    w = ndi.gaussian_filter(mask.astype(np.float64), sigma, mode="nearest")
    inside, outside = _pure(mask, sigma)
    scale = max(3.0 * sigma, 2.0)
    return w, _local_mean(image, inside, scale), _local_mean(image, outside, scale)


def psf_reach_px(sigma: float) -> int:
    """Pixels around a window that :func:`unmix_edges` reads (0 when ``sigma`` is 0).

    The blurred mask reaches 4 sd, the pure pixels start 1.5 sd + 1 from an outline and the
    local means reach 4 x max(3 sd, 2 px) (Gaussians truncated at 4 sd).
    """
    if sigma <= 0:
        return 0
    return int(np.ceil(4 * sigma + 1.5 * sigma + 1 + 4 * max(3 * sigma, 2.0)))


def unmix_edges(
    image: np.ndarray, mask: np.ndarray, sigma: float, min_weight: float = 0.3
) -> np.ndarray:
    """The crystal's own grey near its outline, with the point-spread mix undone.

    Parameters
    ----------
    image : ndarray of float (h, w)
        BSE grey levels (NaN where unknown).
    mask : ndarray of bool (h, w)
        The crystals (olivine).
    sigma : float
        Point-spread sd (px); 0 returns ``image`` unchanged.
    min_weight : float
        Pixels whose signal comes less than this share from the crystal keep their value:
        dividing by a small share would amplify the noise more than it removes the mix.

    Returns
    -------
    ndarray of float (h, w)
        ``image`` with crystal pixels near the outline corrected; elsewhere unchanged.

    Examples
    --------
    >>> mask = np.zeros((40, 40), bool); mask[:, 20:] = True
    >>> true = np.where(mask, 150.0, 90.0)
    >>> seen = ndi.gaussian_filter(true, 2.0)  # olivine darkened by the glass beside it
    >>> round(float(seen[20, 21]), 1), round(float(unmix_edges(seen, mask, 2.0)[20, 21]), 1)
    (136.5, 149.9)
    """
    mask = np.asarray(mask, bool)
    if sigma <= 0 or not mask.any():
        return image
    w = ndi.gaussian_filter(mask.astype(np.float64), sigma, mode="nearest")
    near = mask & (w >= min_weight) & (w < 1.0 - 1e-6)
    if not near.any():
        return image
    # Only the surroundings' mean is needed here (as in blurred_mix, without g_in).
    g_out = _local_mean(image, _pure(mask, sigma, inside=False)[1], max(3.0 * sigma, 2.0))
    fix = near & np.isfinite(g_out)
    out = np.array(image, dtype=np.float64, copy=True)
    out[fix] = (image[fix] - (1.0 - w[fix]) * g_out[fix]) / w[fix]
    return out


def estimate_psf_sigma(
    windows: Iterable[tuple[np.ndarray, np.ndarray]], sigmas: Iterable[float] = SIGMAS_PX
) -> float:
    """The point-spread sd (px) that best predicts the grey across crystal outlines.

    For each candidate, every pixel within 3 px plus twice the candidate of an outline is
    predicted as ``w * g_in + (1 - w) * g_out`` (:func:`blurred_mix`); the candidate with
    the smallest median absolute error over all ``windows`` (pairs of BSE and mask, e.g.
    the windows around the EPMA profiles) wins. Noise adds the same to every candidate, so
    the sharpness of the outlines decides.

    Examples
    --------
    >>> mask = np.zeros((60, 60), bool); mask[10:50, 25:] = True
    >>> true = np.where(mask, 150.0, 90.0)
    >>> seen = ndi.gaussian_filter(true, 1.5) + np.random.default_rng(0).normal(0, 3, true.shape)
    >>> estimate_psf_sigma([(seen, mask)])
    1.5
    """
    sigmas = list(sigmas)  # read more than once below
    windows = [(np.asarray(i, np.float64), np.asarray(m, bool)) for i, m in windows]
    windows = [(i, m) for i, m in windows if m.any() and (~m).any()]
    if not windows:
        return 0.0
    reach = 3.0 + 2.0 * max(sigmas)
    bands = []
    for image, mask in windows:
        edge = ndi.distance_transform_edt(mask) + ndi.distance_transform_edt(~mask)
        bands.append((edge <= reach) & np.isfinite(image))
    residuals: list[list[np.ndarray]] = [[] for _ in sigmas]
    for (image, mask), band in zip(windows, bands, strict=True):
        preds = []
        for sigma in sigmas:
            w, g_in, g_out = blurred_mix(image, mask, max(sigma, 1e-3))
            if sigma <= 0:
                w = mask.astype(np.float64)
            preds.append(w * g_in + (1.0 - w) * g_out)
        # The same pixels for every candidate: a wide blur leaves small crystals without a
        # pure interior (no g_in), and judging it on fewer, easier pixels would favour it.
        ok = band & np.logical_and.reduce([np.isfinite(p) for p in preds])
        for k, pred in enumerate(preds):
            residuals[k].append(np.abs(image[ok] - pred[ok]))
    errors = [np.median(np.concatenate(r)) if sum(x.size for x in r) else np.inf for r in residuals]
    return float(sigmas[int(np.argmin(errors))])

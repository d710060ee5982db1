"""BSE along microprobe lines: sampling, automatic relocation and outlier replacement.

Coordinates here are array indices of the BSE window, ``(row, col)`` with pixel centres at
integers. A profile is a straight line of points; ``along`` is the unit vector from its first
to its last point (in (row, col)), ``across`` is perpendicular to it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from sklearn.neighbors import LocalOutlierFactor


@dataclass(frozen=True)
class LineGeometry:
    """Direction of a profile in array coordinates."""

    along: np.ndarray  # (2,) unit (drow, dcol) from the first to the last point
    across: np.ndarray  # (2,) unit, ``along`` turned by +90°

    @classmethod
    def of(cls, rows: np.ndarray, cols: np.ndarray) -> LineGeometry:
        """Principal direction of the points, oriented from the first to the last."""
        pts = np.c_[rows, cols].astype(float)
        centred = pts - pts.mean(0)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        u = vt[0]
        if np.dot(pts[-1] - pts[0], u) < 0:
            u = -u
        return cls(u, np.array([-u[1], u[0]]))


def across_offsets(line_width_px: float) -> np.ndarray:
    """Offsets (px) across the line averaged for one sample: 1 px apart, centred."""
    n = max(1, round(line_width_px))
    return (np.arange(n) - (n - 1) / 2).astype(float)


def sample_line(
    image: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    geometry: LineGeometry,
    line_width_px: float = 1.0,
) -> np.ndarray:
    """Bilinear samples of ``image`` at points, averaged across the line.

    Parameters
    ----------
    image : ndarray (h, w)
        Already smoothed for the spot size if wanted.
    rows, cols : ndarray (..., n)
        Point positions (array coordinates, any leading shape: e.g. one row per shift).
    geometry : LineGeometry
    line_width_px : float
        Width averaged across the line (px); 1 = the line itself.

    Returns
    -------
    ndarray (..., n)
    """
    off = across_offsets(line_width_px)
    r = rows[..., None] + off * geometry.across[0]
    c = cols[..., None] + off * geometry.across[1]
    values = ndi.map_coordinates(
        image, [r.ravel(), c.ravel()], order=1, mode="nearest", prefilter=False
    )
    return values.reshape(r.shape).mean(-1)


def huber(residual: np.ndarray, delta: float) -> np.ndarray:
    """Huber loss: quadratic within ``delta``, linear beyond (one crack cannot dominate)."""
    a = np.abs(residual)
    return np.where(a <= delta, 0.5 * a**2, delta * (a - 0.5 * delta))


@dataclass(frozen=True)
class Registration:
    """Shift of a profile that best matches the BSE image (px along and across the line)."""

    along_px: float
    across_px: float
    cost: float  # mean Huber loss of mg# residuals at the most likely shift
    sd_along_px: float  # posterior standard deviation: how well the data pin the shift
    sd_across_px: float


def distance_to_rim(
    on_mask: np.ndarray,
    mg_image: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    direction: np.ndarray,
    mg_end: float,
    max_px: float,
    *,
    mg_step: float = 0.015,
    step_px: float = 0.25,
) -> np.ndarray:
    """Distance from points to the crystal's rim, walking along ``direction``.

    The rim is where the mask ends or, where two olivine crystals touch and the mask runs
    on, where the mg# seen by BSE departs from the crystal's own by more than ``mg_step``.

    Parameters
    ----------
    on_mask : ndarray (h, w) float
        1 on olivine, 0 elsewhere.
    mg_image : ndarray (h, w) float
        mg# predicted from BSE by the current calibration.
    rows, cols : ndarray (...)
        Start points (array coordinates).
    direction : ndarray (2,)
        Unit (drow, dcol).
    mg_end : float
        mg# of the crystal at the start points (the measured end of the profile).
    max_px : float
        How far to walk (px).
    mg_step : float
        mg# contrast that marks the boundary between touching crystals.
    step_px : float
        Walking step (px).

    Returns
    -------
    ndarray (...)
        Distance (px); inf where no rim lies within ``max_px``.
    """
    t = np.arange(0.0, max_px + step_px / 2, step_px)
    r = (rows[..., None] + t * direction[0]).ravel()
    c = (cols[..., None] + t * direction[1]).ravel()
    inside = ndi.map_coordinates(on_mask, [r, c], order=1, mode="constant", prefilter=False)
    mg = ndi.map_coordinates(mg_image, [r, c], order=1, mode="nearest", prefilter=False)
    beyond = ((inside < 0.5) | (np.abs(mg - mg_end) > mg_step)).reshape(*np.shape(rows), t.size)
    return np.where(beyond.any(-1), t[beyond.argmax(-1)], np.inf)


def register_profile(
    image: np.ndarray,
    on_mask: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    mg: np.ndarray,
    slope: float,
    intercept: float,
    *,
    max_along_px: float,
    max_across_px: float,
    step_px: float,
    line_width_px: float = 1.0,
    prior_sd_px: tuple[float, float] = (3.0, 0.5),
    points_per_residual: float = 16.0,
    off_mask_penalty: float = 3.0,
    rim_gap_px: float | None = None,
    rim_mg_step: float = 0.015,
    rim_miss_p: float = 0.05,
    delta: float = 0.02,
    min_sigma: float = 0.002,
) -> Registration:
    """Relocate one EPMA line on the BSE image (olmap; seed 002 did it by hand).

    Every shift on a grid along and across the line is scored by what an analyst relocating
    the line by eye would use:

    * **BSE**: how well the calibration ``mg# = slope * BSE + intercept`` predicts the
      measured mg# there (Huber loss, tempered by ``points_per_residual``). This pins zoned
      profiles.
    * **Spots on olivine**: analysts place every spot on clean olivine, so each point whose
      centre falls off the mask (a crack, a hole, the outline) divides the likelihood by
      ``exp(off_mask_penalty)``.
    * **Rims** (rim-to-rim profiles, ``rim_gap_px`` set): each end point lies within
      ``rim_gap_px`` of the crystal's rim beyond it (:func:`distance_to_rim`); a shift that
      breaks this keeps ``rim_miss_p`` of its likelihood, for lines that stop short of a rim.
      Flat profiles carry no zoning, and cracks and rims are what place them.

    times a Gaussian prior on the relocation error. The estimate is the posterior mean: where
    the data pin the shift it is the sharp peak, where they only bound it (a flat profile
    between two cracks) it is the middle of the bounds instead of wherever noise puts the
    minimum. The posterior sd says which is which.

    Parameters
    ----------
    image : ndarray (h, w) float
        BSE on the reference scale, smoothed for the spot size.
    on_mask : ndarray (h, w) float
        1 on olivine, 0 elsewhere (sampled bilinearly: 0.5 at the outline).
    rows, cols : ndarray (n,)
        Given point positions (array coordinates), in profile order.
    mg : ndarray (n,)
        Measured mg#.
    slope, intercept : float
        Current calibration.
    max_along_px, max_across_px, step_px : float
        Search grid (px).
    line_width_px : float
        Width averaged across the line for the BSE term (px).
    prior_sd_px : (float, float)
        Standard deviation of the Gaussian prior on the shift along and across (px).
    points_per_residual : float
        How many points count as one independent residual: tile steps, zoning the
        calibration does not fit and the smoothing make neighbouring residuals move together,
        and a likelihood that counted every point would be sure of noise. 16 recovered the
        synthetic relocation errors best (1, 4, 16, 32, 64 tried; docs/composition.md).
    off_mask_penalty : float
        Log-likelihood lost per point off the mask; finite, so that a mask error under one
        spot cannot veto the true shift.
    rim_gap_px : float or None
        Largest distance from an end point to the rim beyond it (px); None for profiles
        that are not rim to rim.
    rim_mg_step : float
        mg# contrast that marks the boundary between touching olivine crystals.
    rim_miss_p : float
        Likelihood kept by a shift whose end lies farther than ``rim_gap_px`` from a rim.
    delta : float
        Huber threshold (mg#).
    min_sigma : float
        Floor of the residual sd used in the likelihood (mg#): neighbouring points share
        smoothing, so the residuals are not independent.
    """
    geom = LineGeometry.of(rows, cols)
    along = np.arange(-max_along_px, max_along_px + step_px / 2, step_px)
    across = np.arange(-max_across_px, max_across_px + step_px / 2, step_px)
    a, c = (g.ravel() for g in np.meshgrid(along, across, indexing="ij"))
    dr = a * geom.along[0] + c * geom.across[0]
    dc = a * geom.along[1] + c * geom.across[1]
    sr, sc = rows[None, :] + dr[:, None], cols[None, :] + dc[:, None]
    bse = sample_line(image, sr, sc, geom, line_width_px)
    inside = sample_line(on_mask, sr, sc, geom, line_width_px)
    residual = mg[None, :] - (slope * bse + intercept)
    # Off the crystal the BSE says nothing of olivine: count such a point as off by 4 delta.
    residual = np.where(inside >= 0.5, residual, 4 * delta)
    loss = huber(residual, delta).mean(1)
    best = float(loss.min())
    n = rows.size
    sigma2 = max(2 * best, min_sigma**2)  # Huber ~ r²/2 near the minimum
    log_w = -n / points_per_residual * (loss - best) / (2 * sigma2)
    # Spots sit on olivine: untempered, since it is a fact of how the line was measured, not
    # a noisy residual.
    log_w -= off_mask_penalty * (sample_line(on_mask, sr, sc, geom, 1.0) < 0.5).sum(1)
    if rim_gap_px is not None:
        mg_image = slope * image + intercept
        # Walk out from the first point backwards and from the last point forwards; the
        # crystal's own mg# there is that of the three end points.
        for i, outward, end in ((0, -geom.along, mg[:3]), (-1, geom.along, mg[-3:])):
            gap = distance_to_rim(
                on_mask,
                mg_image,
                sr[:, i],
                sc[:, i],
                outward,
                float(np.median(end)),
                rim_gap_px + 1,
                mg_step=rim_mg_step,
            )
            log_w += np.log(rim_miss_p + (1 - rim_miss_p) * (gap <= rim_gap_px))
    # Gaussian prior on the relocation error: along the line analysts are off by a few µm,
    # across by about one; where the data cannot tell, the prior keeps the given position.
    log_w -= 0.5 * ((a / prior_sd_px[0]) ** 2 + (c / prior_sd_px[1]) ** 2)
    weight = np.exp(log_w - log_w.max())
    weight /= weight.sum()
    mean_a, mean_c = float(weight @ a), float(weight @ c)
    # A posterior narrower than the grid still has the grid's resolution: sd >= step/sqrt(12).
    floor = step_px / np.sqrt(12)
    return Registration(
        along_px=mean_a,
        across_px=mean_c,
        cost=float(loss[np.argmax(log_w)]),
        sd_along_px=max(float(np.sqrt(weight @ (a - mean_a) ** 2)), floor),
        sd_across_px=max(float(np.sqrt(weight @ (c - mean_c) ** 2)), floor),
    )


def detrended_profile(bse: np.ndarray, reach: int = 3) -> np.ndarray:
    """Each point minus a robust local line through its neighbours (not through itself).

    Inside the profile, the prediction at point i is the median, over every pair of one
    point before i and one after it (up to ``reach`` points away), of the straight line
    through that pair evaluated at i: a linear trend (zoning) leaves only noise, a crack
    under one neighbour corrupts a minority of the pairs, and an outlier cannot hide itself.
    An end point is compared with the line through its two nearest points, so a steep rim
    is followed to the end.

    Examples
    --------
    >>> bse = np.arange(12.0) * 5  # a steep, noise-free zoned rim
    >>> bool(np.allclose(detrended_profile(bse), 0))
    True
    >>> bse[6] = -50.0  # a crack
    >>> r = detrended_profile(bse)
    >>> int(np.argmin(r)), bool(np.allclose(np.delete(r, 6), 0))
    (6, True)
    """
    bse = np.asarray(bse, dtype=float)
    n = bse.size
    out = np.zeros(n)
    if n < 3:
        return out
    for i in range(n):
        if i == 0 or i == n - 1:
            a, b = (
                (np.array([1]), np.array([2])) if i == 0 else (np.array([n - 3]), np.array([n - 2]))
            )
        else:
            before = np.arange(max(0, i - reach), i)
            after = np.arange(i + 1, min(n, i + reach + 1))
            a, b = (g.ravel() for g in np.meshgrid(before, after, indexing="ij"))
        pred = bse[a] + (bse[b] - bse[a]) * (i - a) / (b - a)
        out[i] = bse[i] - np.median(pred)
    return out


def profile_noise_sd(bse: np.ndarray) -> float:
    """Robust noise sd of a profile: 1.4826 x MAD of :func:`detrended_profile`.

    Examples
    --------
    >>> rng = np.random.default_rng(3)
    >>> bse = np.linspace(100, 160, 60) + rng.normal(0, 2.0, 60)  # zoned, noise sd 2
    >>> round(profile_noise_sd(bse))
    2
    """
    r = detrended_profile(bse)
    if r.size < 3:
        return 0.0
    return float(1.4826 * np.median(np.abs(r - np.median(r))))


@dataclass(frozen=True)
class ProfileOutliers:
    """Outlier points of one profile and how they were found."""

    outlier: np.ndarray  # bool per point
    noise_sd: float  # robust noise sd of the profile (BSE units)
    capped: bool  # more points passed the threshold than the cap allowed


def profile_outliers(
    bse: np.ndarray,
    *,
    n_neighbors: int,
    threshold: float,
    noise_weight: float = 3.0,
    max_share: float = 0.2,
    floor: float = 1e-6,
) -> ProfileOutliers:
    """LOF outliers of a profile, on features scaled by the profile's own noise.

    Seed 002 (sect. 3.8) ran LOF on the raw (row, col, BSE) of a profile's points, which
    fixes how far one grey level is from one micrometre: at another contrast, bit depth or
    noise level it flagged the steep rims of zoned crystals (19 of 48 points on an
    independent generator's 16-bit section) and the filtered fit was the worse one. Here the
    features are (point index, ``noise_weight`` x detrended BSE / noise sd): one noise sd
    weighs as much as ``noise_weight`` point spacings, whatever the instrument, and zoning,
    which the running median follows, is not an outlier.

    Parameters
    ----------
    bse : ndarray (n,)
        BSE sampled at the points, in profile order.
    n_neighbors : int
        k of the LOF (at most n - 1).
    threshold : float
        LOF above which a point is an outlier.
    noise_weight : float
        Point spacings that one noise sd weighs in the features (the sd of
        :func:`detrended_profile`).
    max_share : float
        At most this share of the points is called outliers: the ones of highest LOF.
        A profile with more cannot be repaired by interpolation; ``capped`` says so.
    floor : float
        Smallest noise sd used (BSE units), for noise-free or quantised profiles.

    Returns
    -------
    ProfileOutliers
    """
    bse = np.asarray(bse, dtype=float)
    n = bse.size
    finite = np.flatnonzero(np.isfinite(bse))  # NaN (off the image): not judged here
    b = bse[finite]
    sd = profile_noise_sd(b)
    outlier = np.zeros(n, dtype=bool)
    if b.size < 3:
        return ProfileOutliers(outlier, sd, False)
    detrended = detrended_profile(b)
    features = np.c_[finite.astype(float), noise_weight * detrended / max(sd, floor)]
    lof = LocalOutlierFactor(n_neighbors=min(n_neighbors, b.size - 1))
    lof.fit(features)
    score = -lof.negative_outlier_factor_
    flagged = score > threshold
    cap = int(np.floor(max_share * n))
    capped = bool(flagged.sum() > cap)
    if capped:
        flagged = np.zeros(b.size, dtype=bool)
        flagged[np.argsort(-score, kind="stable")[:cap]] = True
    outlier[finite[flagged]] = True
    return ProfileOutliers(outlier, sd, capped)


def interpolate_outliers(values: np.ndarray, outlier: np.ndarray) -> np.ndarray:
    """Replace outliers by linear interpolation along the profile (seed 002 sect. 3.8).

    Outliers at the ends take the nearest clean value; a profile with no clean value is
    returned as NaN.
    """
    values = np.asarray(values, dtype=float)
    keep = ~outlier & np.isfinite(values)
    if not keep.any():
        return np.full_like(values, np.nan)
    idx = np.arange(values.size)
    out = values.copy()
    out[~keep] = np.interp(idx[~keep], idx[keep], values[keep])
    return out

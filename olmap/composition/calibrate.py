"""``olmap calibrate``: BSE -> mg# calibration against EPMA profiles.

Data flow: EPMA points (map µm) -> array positions on the BSE mosaic -> BSE on the reference
scale (session drift removed with the standards) -> spot smoothing -> automatic relocation of
each line (register <-> refit, a few rounds) -> BSE sampled at the registered points -> LOF
outliers replaced by interpolation -> linear fit on the calibration profiles -> metrics on
calibration and test, filtered and not (seed 002 Table 4).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rasterio.windows import Window
from scipy import ndimage as ndi

from olmap.composition.config import CalibrateConfig
from olmap.composition.drift import (
    SessionDrift,
    check_sessions_have_standards,
    correct_bse,
    fit_session_drift,
    session_index_grid,
)
from olmap.composition.plots import write_calibration_plot, write_profile_plots
from olmap.composition.profiles import (
    LineGeometry,
    Registration,
    interpolate_outliers,
    profile_outliers,
    register_profile,
    sample_line,
)
from olmap.composition.psf import estimate_psf_sigma, unmix_edges
from olmap.composition.regression import LinearCalibration, calibration_metrics
from olmap.core.filters import masked_gaussian
from olmap.errors import InputError
from olmap.io.epma import read_profiles, read_standards
from olmap.io.outputs import atomic_paths
from olmap.io.raster import ClassMaskSource, WindowSource, check_coregistered, raster_info
from olmap.io.sessions import read_sessions, session_index_points
from olmap.io.tables import write_json, write_table


@dataclass
class ProfileData:
    """One EPMA line with the BSE window it lies in (array coordinates of that window)."""

    profile_id: str
    split: str
    points: pd.DataFrame  # the epma.csv rows of this profile
    rows: np.ndarray  # given positions inside the window
    cols: np.ndarray
    image: np.ndarray  # BSE on the reference scale, outlines unmixed, spot-smoothed
    on_mask: np.ndarray  # 1.0 on the mask, 0.0 elsewhere
    row0: int
    col0: int
    registration: Registration | None = None  # None: at the given positions
    samples: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def mg(self) -> np.ndarray:
        return self.points["mg_num"].to_numpy(float)

    @property
    def geometry(self) -> LineGeometry:
        return LineGeometry.of(self.rows, self.cols)

    @property
    def point_spacing_px(self) -> float:
        """Median distance between consecutive points (px)."""
        return float(np.median(np.hypot(np.diff(self.rows), np.diff(self.cols))))

    def shifted(self) -> tuple[np.ndarray, np.ndarray]:
        if self.registration is None:
            return self.rows, self.cols
        g, r = self.geometry, self.registration
        return (
            self.rows + r.along_px * g.along[0] + r.across_px * g.across[0],
            self.cols + r.along_px * g.along[1] + r.across_px * g.across[1],
        )


@dataclass
class CalibrationResult:
    """What ``olmap calibrate`` found; :meth:`to_json` is calibration.json."""

    calibration: LinearCalibration  # the line used: filtered or not, as ``fit_used`` says
    calibration_not_filtered: LinearCalibration
    metrics: dict[str, dict[str, dict[str, float]]]  # filtered|not_filtered -> split -> metric
    points: pd.DataFrame  # one row per EPMA point
    profiles: pd.DataFrame  # one row per profile
    drift: SessionDrift | None
    sessions: pd.DataFrame | None
    pixel_size_um: float
    config: CalibrateConfig
    bse_dtype: str | None = None  # of the BSE image calibrated
    calibration_filtered: LinearCalibration | None = None
    fit_used: str = "filtered"  # filtered | not_filtered
    # leave-one-profile-out RMSE of each line over the calibration profiles (NaN: < 2)
    loo_rmse: dict[str, float] = field(default_factory=dict)
    fit_reason: str = ""
    # the olivine standard the line may pass through: standard, bse, mg, used, loo_rmse
    anchor: dict[str, Any] | None = None
    psf_sigma_px: float = 0.0  # BSE point-spread sd undone at outlines (olmap.composition.psf)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": "olmap-calibration",
            "version": 1,
            "model": "mg_num = slope * bse + intercept",
            "slope": self.calibration.slope,
            "intercept": self.calibration.intercept,
            "bse_scale": (
                "reference (session drift removed with standards)" if self.drift else "as measured"
            ),
            # The BSE this line holds for: mgmap refuses an image of another type.
            "bse_dtype": self.bse_dtype,
            # mgmap undoes the same point-spread at outlines as the calibration did.
            "psf_sigma_px": self.psf_sigma_px,
            "fit_used": self.fit_used,
            "fit_choice": {
                "reason": self.fit_reason,
                # null, not NaN, with fewer than two calibration profiles
                "leave_one_profile_out_rmse": {
                    k: (v if np.isfinite(v) else None) for k, v in self.loo_rmse.items()
                },
            },
            "filtered": {
                "slope": (self.calibration_filtered or self.calibration).slope,
                "intercept": (self.calibration_filtered or self.calibration).intercept,
            },
            "not_filtered": {
                "slope": self.calibration_not_filtered.slope,
                "intercept": self.calibration_not_filtered.intercept,
            },
            "anchor": self.anchor,
            "metrics": self.metrics,
            # null, not NaN (invalid JSON), where a line was not registered
            "profiles": self.profiles.astype(object)
            .where(self.profiles.notna(), None)
            .to_dict(orient="records"),
            "drift": self.drift.to_dict() if self.drift else None,
            "sessions": self.sessions.to_dict(orient="records")
            if self.sessions is not None
            else None,
            "pixel_size_um": self.pixel_size_um,
            "config": self.config.model_dump(),
        }


def load_drift(
    standards_path: str | Path | None, sessions_path: str | Path | None
) -> tuple[SessionDrift | None, pd.DataFrame | None]:
    """Session drift from ``standards.csv`` with the regions of ``sessions.csv`` (both or none)."""
    if (standards_path is None) != (sessions_path is None):
        raise InputError(
            "drift correction needs both --standards and --sessions (which session covers "
            "which pixels)"
        )
    if standards_path is None:
        return None, None
    regions = read_sessions(sessions_path)  # type: ignore[arg-type]
    drift = fit_session_drift(read_standards(standards_path))
    # Sessions without standards (e.g. regions only used for training) are fine as long as
    # nothing is calibrated or mapped there; their pixels stay NaN in the map.
    if not set(drift.gain) & set(regions["session"]):
        raise InputError(f"{standards_path}: no session of {sessions_path} has standards")
    return drift, regions


def psf_windows(
    bse_src: WindowSource, mask_src: ClassMaskSource, h: int, w: int, n: int = 3, size: int = 384
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """BSE and mask of ``n`` x ``n`` windows spread over the mosaic, to estimate the PSF.

    The point-spread is the instrument's, not a profile's: windows on a regular grid see
    outlines of every size (the windows around EPMA lines mostly see one crystal's inside).
    """
    side_r, side_c = min(size, h), min(size, w)
    for i in range(n):
        for j in range(n):
            r0 = int((i + 0.5) * h / n - side_r / 2)
            c0 = int((j + 0.5) * w / n - side_c / 2)
            window = Window(
                max(0, min(c0, w - side_c)), max(0, min(r0, h - side_r)), side_c, side_r
            )
            bse, valid = bse_src.read(window)
            image = bse.astype(np.float64)
            if valid is not None:
                image[~valid] = np.nan
            yield image, mask_src.read(window)


def _load_profiles(
    bse_path: Path,
    mask_path: Path,
    epma: pd.DataFrame,
    drift: SessionDrift | None,
    regions: pd.DataFrame | None,
    config: CalibrateConfig,
) -> tuple[list[ProfileData], float]:
    """The profiles' windows (BSE on the reference scale, outlines unmixed) and the PSF sd."""
    info = raster_info(bse_path)
    px = info.pixel_size_um or 1.0
    t = info.transform
    reg = config.registration
    prof = config.profile
    sigma = prof.spot_sigma_um / px
    margin = int(
        np.ceil(
            (reg.max_along_um + reg.max_across_um) / px * reg.enabled
            + prof.line_width_um / px / 2
            + 4 * sigma
            + 3
        )
    )
    out = []
    h, w = info.shape
    with (
        WindowSource(bse_path) as bse_src,
        ClassMaskSource(mask_path, config.mask_class) as mask_src,
    ):
        psf = config.psf_sigma_px
        if psf is None:
            psf = estimate_psf_sigma(psf_windows(bse_src, mask_src, h, w))
        for pid, pts in epma.groupby("profile_id", sort=False):
            x, y = pts["x_um"].to_numpy(float), pts["y_um"].to_numpy(float)
            cols = (x - t.c) / t.a - 0.5
            rows = (y - t.f) / t.e - 0.5
            # The rim term walks up to one point spacing (and a pixel) beyond a shifted end:
            # the window must hold that walk, or its border would pass for a rim.
            rim_px = 0
            if reg.enabled and reg.rim_gap_steps is not None and len(x) > 1:
                spacing = float(np.median(np.hypot(np.diff(x), np.diff(y)))) / px
                rim_px = int(np.ceil(reg.rim_gap_steps * spacing)) + 2
            # Array coordinates of pixel centres; the mosaic spans -0.5 .. n - 0.5.
            if (
                (cols.min() < -0.5)
                | (rows.min() < -0.5)
                | (cols.max() > w - 0.5)
                | (rows.max() > h - 0.5)
            ):
                raise InputError(f"profile {pid!r} lies (partly) outside {bse_path}")
            r0 = max(0, int(np.floor(rows.min())) - margin - rim_px)
            c0 = max(0, int(np.floor(cols.min())) - margin - rim_px)
            r1 = min(h, int(np.ceil(rows.max())) + margin + rim_px + 1)
            c1 = min(w, int(np.ceil(cols.max())) + margin + rim_px + 1)
            window = Window(c0, r0, c1 - c0, r1 - r0)
            bse, valid = bse_src.read(window)
            mask = mask_src.read(window)
            image = bse.astype(np.float64)
            if valid is not None:  # BSE nodata (mosaic gaps) is no olivine grey
                image[~valid] = np.nan
            if drift is not None and regions is not None:
                at = session_index_points(regions, x, y)
                if (at < 0).any():
                    raise InputError(f"profile {pid!r} has points outside every session")
                names = list(regions["session"])
                check_sessions_have_standards(
                    sorted({names[i] for i in at}), drift, f"profile {pid!r}"
                )
                idx = session_index_grid(regions, t, r0, c0, r1 - r0, c1 - c0)
                image = correct_bse(image, idx, drift, names)
            missing = ~np.isfinite(image)
            if missing.all():
                raise InputError(f"profile {pid!r}: no valid BSE around it in {bse_path}")
            if missing.any():
                # Nodata, or outside the points' sessions: the nearest valid value, so that
                # smoothing does not spread NaN; such pixels never count as olivine.
                near = ndi.distance_transform_edt(
                    missing, return_distances=False, return_indices=True
                )
                image = image[tuple(near)]
            on_mask = (mask & ~missing).astype(np.float64)
            out.append(
                ProfileData(
                    profile_id=str(pid),
                    split=str(pts["split"].iloc[0]),
                    points=pts.reset_index(drop=True),
                    rows=rows - r0,
                    cols=cols - c0,
                    image=image,
                    on_mask=on_mask,
                    row0=r0,
                    col0=c0,
                )
            )
    # The point-spread is the instrument's: one sd for the mosaic (psf_windows), undone
    # before the spot smoothing.
    for p in out:
        p.image = unmix_edges(p.image, p.on_mask > 0, psf)
        if sigma > 0:
            p.image = masked_gaussian(p.image, p.on_mask, sigma)
    return out, psf


def _sample(p: ProfileData, config: CalibrateConfig, px: float) -> None:
    """BSE at the (registered) points, LOF outliers, and their replacement."""
    rows, cols = p.shifted()
    geom = p.geometry
    width = config.profile.line_width_um / px
    bse = sample_line(p.image, rows, cols, geom, width)
    inside = sample_line(p.on_mask, rows, cols, geom, width) >= 0.5
    found = profile_outliers(
        bse,
        n_neighbors=config.profile.lof_neighbors,
        threshold=config.profile.lof_threshold,
        noise_weight=config.profile.lof_noise_weight,
        max_share=config.profile.max_outlier_share,
    )
    outlier = found.outlier | ~inside
    p.samples = {
        "bse": bse,
        "bse_filtered": interpolate_outliers(bse, outlier),
        "outlier": outlier,
        "noise_sd": np.full(bse.size, found.noise_sd),
        "capped": np.full(bse.size, found.capped),
        "off_mask": ~inside,
        "rows": rows,
        "cols": cols,
    }


def _robust_fit(bse: np.ndarray, mg: np.ndarray) -> LinearCalibration:
    """Least squares, then again without residuals beyond 3 robust sd (a first guess)."""
    cal = LinearCalibration.fit(bse, mg)
    res = mg - cal(bse)
    mad = 1.4826 * np.nanmedian(np.abs(res - np.nanmedian(res)))
    keep = np.abs(res) <= 3 * max(mad, 1e-4)
    return LinearCalibration.fit(bse[keep], mg[keep]) if keep.sum() >= 2 else cal


def keep_points_on_the_line(
    profiles: list[ProfileData], line: LinearCalibration, k: float = 3.0
) -> int:
    """Un-flag LOF outliers that the EPMA mg# explains; returns how many were kept.

    For calibration profiles only: it reads the mg# the line is fitted to, which a test
    profile's samples must not see.

    The filter is for BSE artefacts (a crack, an inclusion, a spot beside the line) that
    break the BSE -> mg# relation. A steep zoning flank is sparse in (position, BSE) too and
    LOF flags it, but the probe measured the same step: its BSE sits on the line. Linear
    interpolation across a curved flank then invents values (issue 23: two flank points of a
    test profile replaced 4-7 grey levels off, and the filtered line tested 0.0008 worse than
    the unfiltered one). A flagged point stays an outlier only when its mg# residual from
    ``line`` (a robust fit to the unfiltered BSE), about its profile's median residual,
    exceeds ``k`` robust sd of the unflagged points' residuals; points off the mask always
    stay.
    """
    # Residuals about each profile's own median: a line a little off for one profile (its
    # session, its registration) shifts all its points alike, not the flagged ones.
    centred = []
    for p in profiles:
        r = p.mg - line(p.samples["bse"])
        clean = ~p.samples["outlier"] & np.isfinite(r)
        centred.append(r - (np.median(r[clean]) if clean.any() else np.nanmedian(r)))
    res = np.concatenate([c[~p.samples["outlier"]] for c, p in zip(centred, profiles, strict=True)])
    res = res[np.isfinite(res)]
    if res.size < 10:
        return 0
    spread = max(1.4826 * float(np.median(np.abs(res - np.median(res)))), 1e-4)
    kept = 0
    for p, r in zip(profiles, centred, strict=True):
        flagged = p.samples["outlier"] & ~p.samples["off_mask"]
        on_line = flagged & (np.abs(r) <= k * spread)
        if on_line.any():
            outlier = p.samples["outlier"] & ~on_line
            p.samples["outlier"] = outlier
            p.samples["bse_filtered"] = interpolate_outliers(p.samples["bse"], outlier)
            kept += int(on_line.sum())
    return kept


#: The BSE samples each line is fitted to.
SAMPLE_OF_FIT = {"filtered": "bse_filtered", "not_filtered": "bse"}


def leave_one_profile_out_rmse(
    profiles: list[ProfileData], key: str, anchor: tuple[float, float] | None = None
) -> float:
    """RMSE over every calibration point of the line fitted without that point's profile.

    ``key`` names the BSE samples (``bse_filtered`` or ``bse``) both fitted and predicted
    from, so each pipeline is judged as it would be used on a profile it did not see;
    ``anchor`` fits lines through that (BSE, mg#) point. NaN with fewer than two profiles.
    """
    if len(profiles) < 2:
        return float("nan")
    residuals = []
    for i, held in enumerate(profiles):
        rest = profiles[:i] + profiles[i + 1 :]
        line = LinearCalibration.fit(_stack(rest, key), _stack(rest, "mg"), anchor)
        residuals.append(held.mg - line(held.samples[key]))
    r = np.concatenate(residuals)
    return float(np.sqrt(np.nanmean(r**2)))


def choose_fit(loo_rmse: dict[str, float], choice: str = "auto") -> tuple[str, str]:
    """Which line to use (``filtered`` or ``not_filtered``) and why, in a few words.

    Examples
    --------
    >>> choose_fit({"filtered": 0.0041, "not_filtered": 0.0038})
    ('not_filtered', 'leave-one-profile-out RMSE 0.0038 against 0.0041 filtered')
    >>> choose_fit({"filtered": float("nan"), "not_filtered": float("nan")})[0]
    'filtered'
    """
    if choice != "auto":
        return choice, "fit_choice in the config"
    f, u = loo_rmse["filtered"], loo_rmse["not_filtered"]
    if not (np.isfinite(f) and np.isfinite(u)):
        return "filtered", "fewer than two calibration profiles to compare the lines"
    if u < f:
        return "not_filtered", f"leave-one-profile-out RMSE {u:.4f} against {f:.4f} filtered"
    return "filtered", f"leave-one-profile-out RMSE {f:.4f} against {u:.4f} not filtered"


def standard_anchor(
    standards_path: str | Path | None, known: dict[str, float]
) -> tuple[str, float, float] | None:
    """(name, reference BSE, mg#) of the first olivine standard of known mg# listed, if any.

    Its ``bse_reference`` is on the reference scale the calibration is fitted on (the drift
    correction maps every session there), so it is a point of the line.
    """
    if standards_path is None:
        return None
    table = read_standards(standards_path)
    for name, mg in known.items():
        ref = table.loc[table["standard"] == name, "bse_reference"]
        if len(ref):
            return name, float(ref.median()), float(mg)
    return None


def choose_anchor(
    free: dict[str, float], anchored: dict[str, float], choice: str = "auto"
) -> tuple[bool, str]:
    """Whether the line goes through the standard, and why (leave-one-profile-out RMSE).

    Examples
    --------
    >>> choose_anchor({"filtered": 0.014, "not_filtered": 0.013}, {"filtered": 0.006,
    ...               "not_filtered": 0.007})
    (True, 'through the standard: leave-one-profile-out RMSE 0.0060 against 0.0130 free')
    """
    if choice != "auto":
        return choice == "always", f"anchor: {choice} in the config"
    best_free, best_anchored = min(free.values()), min(anchored.values())
    if not (np.isfinite(best_free) and np.isfinite(best_anchored)):
        return False, "free line: fewer than two calibration profiles to judge the standard"
    if best_anchored < best_free:
        return True, (
            f"through the standard: leave-one-profile-out RMSE {best_anchored:.4f} "
            f"against {best_free:.4f} free"
        )
    return False, (
        f"free line: leave-one-profile-out RMSE {best_free:.4f} against {best_anchored:.4f} "
        "through the standard"
    )


def _stack(profiles: list[ProfileData], key: str, split: str | None = None) -> np.ndarray:
    return np.concatenate(
        [
            p.samples[key] if key in p.samples else getattr(p, key)
            for p in profiles
            if split is None or p.split == split
        ]
    )


def calibrate(
    bse_path: str | Path,
    mask_path: str | Path,
    profiles_path: str | Path,
    *,
    standards_path: str | Path | None = None,
    sessions_path: str | Path | None = None,
    config: CalibrateConfig | None = None,
    progress: Callable[[str], None] | None = None,
) -> CalibrationResult:
    """Fit ``mg# = slope * BSE + intercept`` on EPMA calibration profiles; test on the others.

    Parameters
    ----------
    bse_path, mask_path : path-like
        BSE mosaic and olivine mask (1 = olivine) on the same grid.
    profiles_path : path-like
        ``epma.csv`` (see :func:`olmap.io.epma.read_profiles`).
    standards_path, sessions_path : path-like, optional
        Reference standards per session and the session regions: BSE is put on the
        reference scale before anything else (both or neither).
    config : CalibrateConfig, optional
    progress : callable, optional
        Called with a short message at each stage.

    Returns
    -------
    CalibrationResult
    """
    config = config or CalibrateConfig()
    say = progress or (lambda _msg: None)
    bse_path, mask_path = Path(bse_path), Path(mask_path)
    info = check_coregistered(bse_path, mask_path)
    px = info.pixel_size_um or 1.0
    epma = read_profiles(profiles_path)
    if not (epma["split"] == "calibration").any():
        raise InputError(f"{profiles_path}: no profile has split 'calibration'")
    drift, regions = load_drift(standards_path, sessions_path)
    profiles, psf_sigma = _load_profiles(bse_path, mask_path, epma, drift, regions, config)
    say(f"BSE point-spread at outlines: sd {psf_sigma:g} px")
    say(f"{len(profiles)} profiles, {len(epma)} points")

    for p in profiles:
        _sample(p, config, px)
    cal_profiles = [p for p in profiles if p.split == "calibration"]
    keep = ~_stack(cal_profiles, "off_mask")
    cal = _robust_fit(_stack(cal_profiles, "bse")[keep], _stack(cal_profiles, "mg")[keep])
    reg = config.registration
    rounds = reg.iterations if reg.enabled else 0
    for i in range(rounds):
        for p in profiles:
            r = register_profile(
                p.image,
                p.on_mask,
                p.rows,
                p.cols,
                p.mg,
                cal.slope,
                cal.intercept,
                max_along_px=reg.max_along_um / px,
                max_across_px=reg.max_across_um / px,
                step_px=reg.step_um / px,
                line_width_px=config.profile.line_width_um / px,
                prior_sd_px=(reg.prior_along_um / px, reg.prior_across_um / px),
                points_per_residual=reg.points_per_residual,
                off_mask_penalty=reg.off_mask_penalty,
                rim_gap_px=None
                if reg.rim_gap_steps is None or len(p.rows) < 2
                else reg.rim_gap_steps * p.point_spacing_px,
                rim_mg_step=reg.rim_mg_step,
            )
            p.registration = r
            _sample(p, config, px)
        cal = LinearCalibration.fit(
            _stack(cal_profiles, "bse_filtered"), _stack(cal_profiles, "mg")
        )
        say(
            f"registration round {i + 1}/{rounds}: "
            f"mg# = {cal.slope:.6f} * BSE + {cal.intercept:.4f}"
        )
    # The filtered line is always the least-squares fit to the filtered BSE (also with
    # --no-register, where the loop above does not run); through the olivine standard when
    # that predicts held-out profiles better.
    # Only calibration profiles: the test profiles' mg# must not decide their own samples.
    on_mask = ~_stack(cal_profiles, "off_mask")
    kept = keep_points_on_the_line(
        cal_profiles,
        _robust_fit(_stack(cal_profiles, "bse")[on_mask], _stack(cal_profiles, "mg")[on_mask]),
    )
    if kept:
        say(f"{kept} LOF outlier(s) kept: their mg# puts them on the line (zoning, not artefacts)")
    standard = standard_anchor(standards_path, config.olivine_standards)
    point = None if standard is None else standard[1:]
    loo = {
        name: leave_one_profile_out_rmse(cal_profiles, key) for name, key in SAMPLE_OF_FIT.items()
    }
    anchor_doc = None
    if point is not None and config.anchor != "never":
        loo_anchored = {
            name: leave_one_profile_out_rmse(cal_profiles, key, point)
            for name, key in SAMPLE_OF_FIT.items()
        }
        anchored, why = choose_anchor(loo, loo_anchored, config.anchor)
        say(f"calibration line {why}")
        anchor_doc = {
            "standard": standard[0],
            "bse": point[0],
            "mg_num": point[1],
            "used": anchored,
            "reason": why,
            "leave_one_profile_out_rmse": {
                k: (v if np.isfinite(v) else None) for k, v in loo_anchored.items()
            },
        }
        if anchored:
            loo = loo_anchored
        else:
            point = None
    else:
        point = None
    cal = LinearCalibration.fit(
        _stack(cal_profiles, "bse_filtered"), _stack(cal_profiles, "mg"), point
    )
    cal_raw = LinearCalibration.fit(_stack(cal_profiles, "bse"), _stack(cal_profiles, "mg"), point)
    used, reason = choose_fit(loo, config.fit_choice)
    say(f"calibration line: {used.replace('_', ' ')} ({reason})")
    capped = [p.profile_id for p in profiles if p.samples["capped"].any()]
    if capped:
        say(
            f"profile(s) {', '.join(capped)}: more than "
            f"{config.profile.max_outlier_share:.0%} of the points are outliers; "
            "only the most outlying were replaced"
        )

    metrics: dict[str, dict[str, dict[str, float]]] = {}
    for name, model, key in (
        ("filtered", cal, "bse_filtered"),
        ("not_filtered", cal_raw, "bse"),
    ):
        metrics[name] = {}
        for split in ("calibration", "test"):
            chosen = [p for p in profiles if p.split == split]
            if not chosen:
                continue
            ids = np.concatenate([[p.profile_id] * len(p.rows) for p in chosen])
            metrics[name][split] = calibration_metrics(
                _stack(chosen, "mg"),
                model(_stack(chosen, key)),
                ids,
                end_points=config.end_points,
            )
    chosen = cal if used == "filtered" else cal_raw
    points, table = _tables(profiles, chosen, SAMPLE_OF_FIT[used], info.transform, px)
    return CalibrationResult(
        calibration=chosen,
        calibration_not_filtered=cal_raw,
        calibration_filtered=cal,
        fit_used=used,
        loo_rmse=loo,
        fit_reason=reason,
        anchor=anchor_doc,
        psf_sigma_px=psf_sigma,
        metrics=metrics,
        points=points,
        profiles=table,
        drift=drift,
        sessions=regions,
        pixel_size_um=px,
        config=config,
        bse_dtype=info.dtype,
    )


def _tables(
    profiles: list[ProfileData], cal: LinearCalibration, key: str, transform: Any, px: float
) -> tuple[pd.DataFrame, pd.DataFrame]:
    point_rows, profile_rows = [], []
    for p in profiles:
        s = p.samples
        rows, cols = s["rows"] + p.row0, s["cols"] + p.col0
        x_um = transform.c + transform.a * (cols + 0.5)
        y_um = transform.f + transform.e * (rows + 0.5)
        mg_pred = cal(s[key])
        point_rows.append(
            pd.DataFrame(
                {
                    "profile_id": p.profile_id,
                    "point": p.points["point"].to_numpy(),
                    "split": p.split,
                    "x_um": p.points["x_um"].to_numpy(float),
                    "y_um": p.points["y_um"].to_numpy(float),
                    "x_um_registered": x_um.round(3),
                    "y_um_registered": y_um.round(3),
                    "mg_num": p.mg,
                    "bse": s["bse"].round(3),
                    "bse_filtered": s["bse_filtered"].round(3),
                    "outlier": s["outlier"],
                    "off_mask": s["off_mask"],
                    "mg_pred": mg_pred.round(5),
                }
            )
        )
        res = p.mg - mg_pred
        nan = float("nan")  # not registered: no shift, and no sd to give
        reg = p.registration or Registration(0.0, 0.0, nan, nan, nan)
        profile_rows.append(
            {
                "profile_id": p.profile_id,
                "split": p.split,
                "points": len(p.rows),
                "outliers": int(s["outlier"].sum()),
                "outliers_capped": bool(s["capped"].any()),
                "noise_sd": round(float(s["noise_sd"][0]), 4) if len(s["noise_sd"]) else None,
                "shift_along_um": round(reg.along_px * px, 3),
                "shift_across_um": round(reg.across_px * px, 3),
                # Posterior sd of the shift: large where nothing but bounds place the line.
                "shift_along_sd_um": round(reg.sd_along_px * px, 3),
                "shift_across_sd_um": round(reg.sd_across_px * px, 3),
                "rmse": round(float(np.sqrt(np.nanmean(res**2))), 5),
                "mean_residual": round(float(np.nanmean(res)), 5),
            }
        )
    return pd.concat(point_rows, ignore_index=True), pd.DataFrame(profile_rows)


def write_calibration(
    result: CalibrationResult, outputs: dict[str, Path], *, overwrite: bool = False
) -> None:
    """Write the calibration JSON, its plots and its points table: all together, or none.

    ``outputs`` as :func:`calibration_outputs` names them.
    """
    keys = list(outputs)
    with atomic_paths([outputs[k] for k in keys], overwrite=overwrite) as paths:
        tmp = dict(zip(keys, paths, strict=True))
        write_table(result.points, tmp["points"], overwrite=True)
        write_calibration_plot(
            result.points,
            {
                "filtered": result.calibration_filtered or result.calibration,
                "not_filtered": result.calibration_not_filtered,
            },
            result.metrics,
            tmp["plot"],
            bse_scale="reference scale" if result.drift is not None else "as measured",
            overwrite=True,
        )
        write_profile_plots(result.points, tmp["profiles_plot"], overwrite=True)
        write_json(result.to_json(), tmp["json"], overwrite=True)


def calibration_outputs(out: str | Path) -> dict[str, Path]:
    """Files ``olmap calibrate --out calibration.json`` writes beside the JSON."""
    out = Path(out)
    stem = out.with_suffix("")
    return {
        "json": out,
        "plot": Path(f"{stem}.png"),
        "profiles_plot": Path(f"{stem}.profiles.png"),
        "points": Path(f"{stem}.points.csv"),
    }


@dataclass(frozen=True)
class BseDomain:
    """The BSE a calibration was fitted on (its data type), and where it was recorded."""

    dtype: str | None
    source: str = "the calibration"
    psf_sigma_px: float = 0.0  # the point-spread undone at outlines before the line

    @classmethod
    def of(cls, path: str | Path) -> BseDomain:
        """From calibration.json (the type is unknown in files written before olmap 0.1.0
        recorded it)."""
        data = json.loads(Path(path).read_text())
        return cls(data.get("bse_dtype"), str(path), float(data.get("psf_sigma_px") or 0.0))

    def check(
        self, bse: str | Path, dtype: str, olivine: np.ndarray, line: LinearCalibration
    ) -> None:
        """Refuse a BSE image that is not on the scale of this calibration.

        The image must have the calibration's data type, and the line must give most of its
        olivine a possible composition: ``olivine`` holds grey values of the mask's olivine
        pixels (a sample from across the image), and when more than half of them map to an
        mg# outside 0-1 the image is on another scale (another bit depth, a contrast setting
        far from the calibrated one) whatever the composition range of the profiles.

        Raises
        ------
        InputError
            Naming the image, the calibration and what differs.
        """
        if self.dtype is not None and np.dtype(dtype) != np.dtype(self.dtype):
            raise InputError(
                f"{bse}: {dtype} BSE, but {self.source} was fitted on {self.dtype} BSE; calibrate "
                "this image (or map the image the calibration was made on)"
            )
        if olivine.size < 100:
            return
        mg = line(olivine.astype(np.float64))
        impossible = (mg < 0) | (mg > 1)
        if impossible.mean() > 0.5:
            lo, hi = np.percentile(mg, [5, 95])
            raise InputError(
                f"{bse}: {self.source} gives its olivine mg# {lo:.2f} to {hi:.2f} (5-95 %), "
                "outside 0-1; is this the image the calibration was made on (bit depth, "
                "contrast)?"
            )


def load_calibration(
    path: str | Path,
) -> tuple[LinearCalibration, SessionDrift | None, pd.DataFrame | None]:
    """Read calibration.json: the line, and the session drift and regions it was fitted with.

    Raises
    ------
    InputError
        When the file is missing, not JSON, or not an olmap calibration.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: calibration file not found")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not a JSON file ({exc})") from exc
    if not isinstance(data, dict) or data.get("format") != "olmap-calibration":
        raise InputError(f"{path}: not an olmap calibration (made by olmap calibrate)")
    try:
        cal = LinearCalibration(float(data["slope"]), float(data["intercept"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{path}: slope and intercept missing or not numbers") from exc
    drift = SessionDrift.from_dict(data["drift"]) if data.get("drift") else None
    regions = pd.DataFrame(data["sessions"]) if data.get("sessions") else None
    if regions is not None:
        regions["session"] = regions["session"].astype(str)
    return cal, drift, regions

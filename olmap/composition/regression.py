"""Linear BSE -> mg# calibration and the paper's error metrics (seed 002 sect. 4.4, Table 4)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LinearCalibration:
    """``mg# = slope * BSE + intercept``, BSE in grey levels on the reference scale.

    The paper's fit (seed 002 eq. 6) is ``-7.4214 * BSE + 1.0059`` with BSE scaled to 0-1,
    i.e. a slope of -0.0291 per grey level of 255.
    """

    slope: float
    intercept: float

    def __call__(self, bse: np.ndarray) -> np.ndarray:
        return self.slope * np.asarray(bse, dtype=np.float64) + self.intercept

    @classmethod
    def fit(
        cls, bse: np.ndarray, mg: np.ndarray, anchor: tuple[float, float] | None = None
    ) -> LinearCalibration:
        """Least-squares line through (BSE, mg#) pairs; NaN pairs are ignored.

        ``anchor`` (BSE, mg#), e.g. an olivine standard of known mg# on the reference BSE
        scale, makes it the least-squares line *through that point*: only the slope is
        fitted, with the lever arm from the profiles to the standard.

        Examples
        --------
        >>> LinearCalibration.fit(np.array([100.0, 200.0]), np.array([0.9, 0.7]))
        LinearCalibration(slope=-0.002, intercept=1.1)
        >>> LinearCalibration.fit(np.array([100.0, 150.0]), np.array([0.8, 0.7]), (50.0, 0.9))
        LinearCalibration(slope=-0.002, intercept=1.0)
        """
        ok = np.isfinite(bse) & np.isfinite(mg)
        if anchor is not None:
            x0, y0 = anchor
            dx, dy = bse[ok] - x0, mg[ok] - y0
            if not ok.any() or not np.any(dx):
                raise ValueError("an anchored calibration needs a BSE value off the anchor")
            slope = float(np.sum(dx * dy) / np.sum(dx * dx))
            return cls(round(slope, 10), round(float(y0 - slope * x0), 10))
        if ok.sum() < 2 or np.ptp(bse[ok]) == 0:
            raise ValueError("a calibration needs at least two distinct BSE values")
        slope, intercept = np.polyfit(bse[ok], mg[ok], 1)
        return cls(round(float(slope), 10), round(float(intercept), 10))


def inner_points(profile_ids: np.ndarray, end_points: int) -> np.ndarray:
    """True for points that are not among the first or last ``end_points`` of their profile.

    ``profile_ids`` must list each profile's points together and in order.
    """
    ids = np.asarray(profile_ids)
    inner = np.zeros(ids.size, dtype=bool)
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    ends = np.r_[starts[1:], ids.size]
    for s, e in zip(starts, ends, strict=True):
        inner[s + end_points : e - end_points] = True
    return inner


def calibration_metrics(
    mg_true: np.ndarray,
    mg_pred: np.ndarray,
    profile_ids: np.ndarray,
    *,
    end_points: int = 10,
) -> dict[str, float]:
    """R², RMSE, RMSE10, RMSEsh and RMSEsh10 of predicted against EPMA mg# (seed 002 eq. 3-5).

    * RMSE10 leaves out the first and last ``end_points`` points of each profile (the ends,
      where relocation errors and the outline hurt most);
    * RMSEsh and RMSEsh10 first remove each profile's constant shift, the mean residual of
      its inner points (all of its points when it has no inner ones), i.e. the systematic
      part such as uncorrected session drift.

    Pooled over all points of all profiles. Metrics without any point are NaN.

    Examples
    --------
    >>> m = calibration_metrics(np.array([0.8, 0.8, 0.9]), np.array([0.81, 0.81, 0.91]),
    ...                         np.array(["a", "a", "a"]), end_points=0)
    >>> round(m["rmse"], 4), round(m["rmse_sh"], 4)
    (0.01, 0.0)
    """
    mg_true = np.asarray(mg_true, dtype=float)
    mg_pred = np.asarray(mg_pred, dtype=float)
    ids = np.asarray(profile_ids)
    ok = np.isfinite(mg_true) & np.isfinite(mg_pred)
    res = np.where(ok, mg_true - mg_pred, np.nan)
    inner = inner_points(ids, end_points)
    shift = np.zeros_like(res)
    for pid in np.unique(ids):
        sel = ids == pid
        use = sel & inner & ok
        if not use.any():
            use = sel & ok
        if use.any():
            shift[sel] = res[use].mean()
    res_sh = res - shift

    def rms(values: np.ndarray, where: np.ndarray) -> float:
        where = where & ok
        return float(np.sqrt(np.mean(values[where] ** 2))) if where.any() else float("nan")

    everything = np.ones_like(ok)
    sst = float(np.sum((mg_true[ok] - mg_true[ok].mean()) ** 2)) if ok.any() else 0.0
    sse = float(np.sum(res[ok] ** 2))
    return {
        "n": int(ok.sum()),
        "r2": 1.0 - sse / sst if sst > 0 else float("nan"),
        "rmse": rms(res, everything),
        "rmse10": rms(res, inner),
        "rmse_sh": rms(res_sh, everything),
        "rmse_sh10": rms(res_sh, inner),
    }

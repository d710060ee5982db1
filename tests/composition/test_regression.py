"""The calibration line and the paper's metrics, against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from olmap.composition.regression import LinearCalibration, calibration_metrics, inner_points


def test_fit_recovers_line():
    bse = np.array([80.0, 100.0, 120.0, np.nan])
    cal = LinearCalibration.fit(bse, 1.1 - 0.0025 * bse)
    assert cal.slope == pytest.approx(-0.0025)
    assert cal.intercept == pytest.approx(1.1)
    with pytest.raises(ValueError, match="two distinct"):
        LinearCalibration.fit(np.array([1.0, 1.0]), np.array([0.8, 0.9]))


def test_inner_points_per_profile():
    ids = np.array(["a"] * 5 + ["b"] * 3)
    assert inner_points(ids, 1).tolist() == [False, True, True, True, False, False, True, False]


def test_metrics_by_hand():
    # Profile a: 4 points, residuals (true - pred) 0.01, 0.02, 0.00, 0.03
    # Profile b: 3 points, residuals -0.01, -0.01, -0.04
    true = np.array([0.80, 0.82, 0.84, 0.86, 0.70, 0.72, 0.74])
    res = np.array([0.01, 0.02, 0.00, 0.03, -0.01, -0.01, -0.04])
    ids = np.array(["a"] * 4 + ["b"] * 3)
    m = calibration_metrics(true, true - res, ids, end_points=1)
    sse = np.sum(res**2)
    sst = np.sum((true - true.mean()) ** 2)
    assert m["n"] == 7
    assert m["r2"] == pytest.approx(1 - sse / sst)
    assert m["rmse"] == pytest.approx(np.sqrt(sse / 7))
    # Inner points: a -> 0.02, 0.00; b -> -0.01.
    assert m["rmse10"] == pytest.approx(np.sqrt((0.02**2 + 0.0 + 0.01**2) / 3))
    # Shifts = mean inner residual: a 0.01, b -0.01.
    sh = res - np.array([0.01] * 4 + [-0.01] * 3)
    assert m["rmse_sh"] == pytest.approx(np.sqrt(np.mean(sh**2)))
    inner = np.array([False, True, True, False, False, True, False])
    assert m["rmse_sh10"] == pytest.approx(np.sqrt(np.mean(sh[inner] ** 2)))


def test_metrics_of_a_constant_shift():
    true = np.linspace(0.75, 0.9, 30)
    m = calibration_metrics(true, true - 0.02, np.array(["p"] * 30), end_points=10)
    assert m["rmse"] == pytest.approx(0.02)
    assert m["rmse_sh"] == pytest.approx(0.0, abs=1e-12)
    assert m["rmse_sh10"] == pytest.approx(0.0, abs=1e-12)


def test_a_standard_far_from_narrow_profiles_fixes_the_slope():
    """Profiles spanning a few grey levels leave the slope loose; the standard's lever arm not.

    Issue 23: on a low-contrast look two calibration profiles spanning ~0.01 mg# gave a slope
    of -0.0023 where the truth was -0.0039.
    """
    rng = np.random.default_rng(0)
    slope, intercept = -0.004, 1.22
    x_true = rng.uniform(100.0, 104.0, 120)  # ~0.016 mg# of zoning
    bse = x_true + rng.normal(0.0, 1.0, x_true.size)  # sampling noise
    mg = intercept + slope * x_true + rng.normal(0.0, 0.003, x_true.size)  # EPMA precision
    free = LinearCalibration.fit(bse, mg)
    anchored = LinearCalibration.fit(bse, mg, (80.0, intercept + slope * 80.0))
    assert abs(anchored.slope / slope - 1) < 0.05
    assert abs(free.slope / slope - 1) > 0.2

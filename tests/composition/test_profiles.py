"""Sampling BSE along EPMA lines, automatic relocation, and profile outliers."""

from __future__ import annotations

import numpy as np
import pytest

from olmap.composition.profiles import (
    LineGeometry,
    interpolate_outliers,
    profile_outliers,
    register_profile,
    sample_line,
)

SLOPE, INTERCEPT = -0.0025, 1.1


def zoned_crystal(seed: int = 0):
    """A round olivine (radius 60 px) with a normally zoned rim, its BSE and mg# fields."""
    yy, xx = np.mgrid[0:200, 0:200].astype(float)
    r = np.hypot(yy - 100, xx - 100)
    depth = np.clip(60 - r, 0, None)
    mg = 0.88 - 0.10 * np.exp(-depth / 12)
    bse = (mg - INTERCEPT) / SLOPE
    bse = np.where(r < 60, bse, 60.0)  # glass around it
    bse = bse + np.random.default_rng(seed).normal(0, 1.0, bse.shape)
    return bse, (r < 60).astype(float), mg


def test_sample_line_bilinear_and_width():
    image = np.add.outer(np.arange(10.0), np.zeros(10))  # value = row
    geom = LineGeometry.of(np.array([2.0, 2.0, 2.0]), np.array([1.0, 4.0, 7.0]))
    assert np.allclose(geom.along, [0, 1])
    # Across a horizontal line means up/down in rows: a 3-px width averages rows 1, 2, 3.
    values = sample_line(image, np.array([2.5]), np.array([4.0]), geom, line_width_px=3)
    assert values == pytest.approx([2.5])


@pytest.mark.parametrize(("along", "across"), [(3.0, 0.0), (-4.0, 0.5), (0.0, 0.0)])
def test_registration_recovers_a_shift(along, across):
    bse, mask, mg_field = zoned_crystal()
    # A rim-to-rim line through the crystal, off centre, 4 px between points.
    t = np.arange(-56, 57, 4.0)
    u = np.array([np.sin(0.4), np.cos(0.4)])
    v = np.array([-u[1], u[0]])
    true_r, true_c = 100 + 10 * v[0] + t * u[0], 100 + 10 * v[1] + t * u[1]
    mg = np.array([mg_field[round(r), round(c)] for r, c in zip(true_r, true_c, strict=True)])
    given_r = true_r + along * u[0] + across * v[0]
    given_c = true_c + along * u[1] + across * v[1]
    reg = register_profile(
        bse,
        mask,
        given_r,
        given_c,
        mg,
        SLOPE,
        INTERCEPT,
        max_along_px=8,
        max_across_px=2,
        step_px=0.25,
        line_width_px=1,
    )
    geom = LineGeometry.of(given_r, given_c)
    found_r = given_r + reg.along_px * geom.along[0] + reg.across_px * geom.across[0]
    found_c = given_c + reg.along_px * geom.along[1] + reg.across_px * geom.across[1]
    error = np.hypot(found_r - true_r, found_c - true_c).max()
    assert error < 0.75, (reg, error)


def test_profile_outlier_is_flagged_and_interpolated():
    rows = np.zeros(40)
    cols = np.arange(40.0) * 4
    bse = np.linspace(100, 120, 40) + np.random.default_rng(1).normal(0, 0.3, 40)
    bse[17] = 20.0  # the line crosses a crack
    out = profile_outliers(rows, cols, bse, n_neighbors=20, threshold=1.5)
    assert out.tolist() == [i == 17 for i in range(40)]
    fixed = interpolate_outliers(bse, out)
    assert fixed[17] == pytest.approx((bse[16] + bse[18]) / 2)
    assert np.array_equal(np.delete(fixed, 17), np.delete(bse, 17))
    assert np.isnan(interpolate_outliers(bse, np.ones(40, bool))).all()

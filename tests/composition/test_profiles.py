"""Sampling BSE along EPMA lines, automatic relocation, and profile outliers."""

from __future__ import annotations

import numpy as np
import pytest

from olmap.composition.profiles import (
    LineGeometry,
    distance_to_rim,
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


def flat_line(along: float):
    """An unzoned crystal (rows 20-179) between two touching olivines, and a line down it.

    The mask runs on across both boundaries; only the BSE contrast (mg# 0.85 against 0.83
    and 0.87) marks them. The true points start 2 px inside the top rim, 4 px apart, and stop
    2 px short of the bottom rim; they are given ``along`` px further down.
    """
    mg_field = np.full((200, 60), 0.85)
    mg_field[:20] = 0.83
    mg_field[180:] = 0.87
    mask = np.ones((200, 60))
    bse = (mg_field - INTERCEPT) / SLOPE
    bse = bse + np.random.default_rng(3).normal(0, 1.0, bse.shape)
    true_r = np.arange(21.5, 179, 4.0)
    mg = np.full(true_r.size, 0.85)
    return bse, mask, true_r, mg, true_r + along


@pytest.mark.parametrize("along", [2.5, -3.0])
def test_rims_place_a_flat_profile(along):
    bse, mask, true_r, mg, given_r = flat_line(along)
    cols = np.full(true_r.size, 30.0)
    kw = dict(max_along_px=8, max_across_px=1, step_px=0.25, line_width_px=1)
    with_rims = register_profile(
        bse, mask, given_r, cols, mg, SLOPE, INTERCEPT, rim_gap_px=4.0, **kw
    )
    geom = LineGeometry.of(given_r, cols)
    found = given_r + with_rims.along_px * geom.along[0]
    assert np.abs(found - true_r).max() < 0.75, with_rims
    # Without the rims only the end points' BSE residuals bound the shift, and loosely: the
    # prior keeps the line near where it was given, and the sd says the data barely place it.
    loose = register_profile(bse, mask, given_r, cols, mg, SLOPE, INTERCEPT, rim_gap_px=None, **kw)
    loose_error = np.abs(given_r + loose.along_px * geom.along[0] - true_r).max()
    assert loose_error > np.abs(found - true_r).max() + 0.5
    assert loose.sd_along_px > 1.5 * with_rims.sd_along_px


def test_distance_to_rim_at_the_outline_and_between_touching_crystals():
    mask = np.ones((20, 100))
    mask[:, 80:] = 0.0
    mg = np.full((20, 100), 0.85)
    mg[:, 50:] = 0.80  # a touching crystal the mask does not separate
    right = np.array([0.0, 1.0])
    start_r, start_c = np.array([10.0, 10.0]), np.array([40.0, 60.0])
    d = distance_to_rim(mask, mg, start_r, start_c, right, 0.85, 30.0)
    # From col 40 the mg# crosses 0.85 - 0.015 between cols 49 and 50 (bilinear).
    assert d[0] == pytest.approx(9.5, abs=0.25)
    # From col 60 (mg# 0.80 there, which is 0.05 from 0.85) the step counts at once.
    assert d[1] == 0.0
    row, col = np.array([10.0]), np.array([60.0])
    d = distance_to_rim(mask, mg, row, col, right, 0.80, 30.0)
    assert d[0] == pytest.approx(19.5, abs=0.25)  # the outline between cols 79 and 80
    assert np.isinf(distance_to_rim(mask, mg, row, col, right, 0.80, 10.0))


def test_profile_outlier_is_flagged_and_interpolated():
    bse = np.linspace(100, 120, 40) + np.random.default_rng(1).normal(0, 0.3, 40)
    bse[17] = 20.0  # the line crosses a crack
    found = profile_outliers(bse, n_neighbors=20, threshold=1.5)
    out = found.outlier
    assert not found.capped
    assert out.tolist() == [i == 17 for i in range(40)]
    fixed = interpolate_outliers(bse, out)
    assert fixed[17] == pytest.approx((bse[16] + bse[18]) / 2)
    assert np.array_equal(np.delete(fixed, 17), np.delete(bse, 17))
    assert np.isnan(interpolate_outliers(bse, np.ones(40, bool))).all()


def _zoned_profile(rng, noise):
    """A normally zoned rim-to-rim line: flat core, steep rims, 60 points."""
    t = np.abs(np.linspace(-1, 1, 60))
    return 110 + 40 * np.clip((t - 0.6) / 0.4, 0, 1) ** 2 + rng.normal(0, noise, 60)


@pytest.mark.parametrize("gain,black,noise", [(1, 0, 1.0), (0.4, 20, 3.0), (180, 4000, 2.0)])
def test_profile_outliers_follow_the_profiles_own_noise(gain, black, noise):
    # The same line at another contrast, black level or noise: the crack points are found,
    # the steep zoned rims are not (the paper's raw features flagged them on 16-bit data).
    rng = np.random.default_rng(4)
    bse = _zoned_profile(rng, noise)
    bse[[20, 41]] -= 60  # two cracks
    found = profile_outliers(gain * bse + black, n_neighbors=20, threshold=1.5)
    assert np.flatnonzero(found.outlier).tolist() == [20, 41]
    # the spread of a point minus its neighbours' line: a little above the noise sd
    assert 0.8 * gain * noise < found.noise_sd < 2.0 * gain * noise


def test_profile_outliers_are_capped_and_say_so():
    rng = np.random.default_rng(2)
    bse = _zoned_profile(rng, 1.0)
    bad = np.arange(3, 55, 6)  # 9 of 60 points on cracks
    bse[bad] -= 50
    found = profile_outliers(bse, n_neighbors=20, threshold=1.5, max_share=0.1)
    assert found.capped and found.outlier.sum() == 6
    assert set(np.flatnonzero(found.outlier)) <= set(bad)
    uncapped = profile_outliers(bse, n_neighbors=20, threshold=1.5, max_share=0.3)
    assert not uncapped.capped and set(np.flatnonzero(uncapped.outlier)) == set(bad)

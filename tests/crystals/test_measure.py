"""Per-crystal attributes: outline distance, core/rim, ratio, radial profile, shape, outline."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from affine import Affine
from skimage.draw import polygon

from olmap.crystals.measure import (
    CrystalArrays,
    core_rim_masks,
    core_rim_ratio,
    crystal_polygon,
    mantle_excess,
    measure_crystal,
    orientation_deg,
    outline_distance,
    radial_profile,
)


def square_with_hole_and_crack():
    """A 41 x 41 px crystal in a 47 x 47 window: a hole in the middle, a crack from the edge."""
    crystal = np.zeros((47, 47), bool)
    crystal[3:44, 3:44] = True
    hole = np.zeros_like(crystal)
    hole[21:26, 21:26] = True
    crystal &= ~hole
    crystal[3:15, 12] = False  # a 1-px crack open to the outline
    return crystal, hole


def test_external_outline_ignores_holes_and_cracks():
    crystal, _ = square_with_hole_and_crack()
    ext = outline_distance(crystal, external_only=True, close_cracks_px=2)
    every = outline_distance(crystal, external_only=False)
    # From the external outline the distance is that of the plain square: the centre is
    # ~21 px deep, beside the hole too.
    assert ext[23, 20] == pytest.approx(18.0)
    assert ext[23, 23] > 20  # inside the (filled) hole
    # Measured from every edge (the paper's way), the hole and the crack make false rims.
    assert every[23, 20] == pytest.approx(1.0)
    assert every[10, 13] == pytest.approx(1.0)
    # The crack is closed but for its 1-px mouth: 7.1 px from (3, 12) instead of 1 px.
    assert ext[10, 13] > 7


def test_core_rim_split_and_ratio():
    crystal, _ = square_with_hole_and_crack()
    d = outline_distance(crystal)
    core, rim = core_rim_masks(crystal, d, rim_exclude_px=2)
    dmax = d[crystal].max()
    assert (d[core] > dmax / 2).all() and (d[rim] <= dmax / 2).all() and (d[rim] > 2).all()
    assert not (core & rim).any() and ((core | rim) <= crystal).all()
    assert not (rim & (d <= 2)).any()  # the outermost b px belong to neither
    # A Mg-rich core is darker (Fe brightens BSE): normally zoned, r < 0.96.
    bse = np.where(d > dmax / 2, 100.0, 120.0)
    assert core_rim_ratio(bse, core, rim) == pytest.approx(100 / 120)
    assert np.isnan(core_rim_ratio(bse, core, np.zeros_like(rim)))


def test_radial_profile_and_mantle():
    yy, xx = np.mgrid[0:81, 0:81]
    crystal = np.hypot(yy - 40, xx - 40) <= 36
    d = outline_distance(crystal)
    t = d / d[crystal].max()
    normal = np.where(crystal, 0.80 + 0.08 * t, np.nan)
    profile = radial_profile(normal, d, crystal, 10)
    assert np.all(np.diff(profile) > 0)  # rim (bin 0) to core rises
    assert mantle_excess(profile) <= 0
    # Fe-rich core and rim, Mg-rich mantle at 20-40 % depth: complex zoning.
    complex_ = np.where(crystal, np.where((t > 0.2) & (t < 0.45), 0.88, 0.79), np.nan)
    assert mantle_excess(radial_profile(complex_, d, crystal, 10)) == pytest.approx(0.09, abs=0.01)
    assert np.isnan(radial_profile(np.full(crystal.shape, np.nan), d, crystal, 5)).all()


@pytest.mark.parametrize("angle", [0.0, 30.0, 45.0, 90.0, 135.0, 170.0])
def test_orientation_is_map_convention(angle):
    """A bar whose long axis points ``angle`` degrees anticlockwise from map x (east, y up)."""
    from skimage.measure import regionprops

    a = np.radians(angle)
    u, v = np.array([np.cos(a), np.sin(a)]), np.array([-np.sin(a), np.cos(a)])
    corners = np.array([40 * u + 6 * v, 40 * u - 6 * v, -40 * u - 6 * v, -40 * u + 6 * v])
    image = np.zeros((101, 101), np.uint8)
    rr, cc = polygon(50 - corners[:, 1], 50 + corners[:, 0], image.shape)  # rows run down
    image[rr, cc] = 1
    found = orientation_deg(regionprops(image)[0].orientation)
    assert 0 <= found < 180
    assert min(abs(found - angle), 180 - abs(found - angle)) < 1.5


def test_polygon_keeps_holes_and_matches_the_pixels():
    crystal, _ = square_with_hole_and_crack()
    t = Affine(0.5, 0, 1000.0, 0, -0.5, 2000.0)  # 0.5 µm pixels
    poly = crystal_polygon(crystal, t)
    assert poly.is_valid and isinstance(poly, shapely.Polygon)
    assert len(poly.interiors) == 1
    assert poly.area == pytest.approx(crystal.sum() * 0.25)
    # Pixels touching only at a corner (8-connected) give a valid geometry too.
    diag = np.zeros((6, 6), bool)
    diag[1, 1] = diag[2, 2] = diag[3, 3] = True
    geom = crystal_polygon(diag, Affine.identity())
    assert geom.is_valid and geom.area == pytest.approx(3)


def test_measure_crystal_attributes():
    crystal, hole = square_with_hole_and_crack()
    t = Affine(2.0, 0, 100.0, 0, -2.0, 500.0)  # 2 µm pixels
    d = outline_distance(crystal)
    dmax = d[crystal].max()
    bse = np.where(d > dmax / 2, 100.0, 110.0)
    mg = np.where(crystal, np.where(d > dmax / 2, 0.88, 0.82), np.nan)
    outliers = np.zeros_like(crystal)
    outliers[30, 30] = True
    row = measure_crystal(CrystalArrays(crystal, bse, mg, outliers), t, 2.0)
    assert row["pixels"] == crystal.sum()
    # The hole and the crack count (but for the crack's 1-px mouth): 41² - 1 px of 4 µm².
    assert row["area_um2"] == pytest.approx((41 * 41 - 1) * 4)
    assert hole.sum() == 25
    assert row["core_rim_ratio"] == pytest.approx(100 / 110)
    assert row["mg_core"] == pytest.approx(0.88) and row["mg_rim"] == pytest.approx(0.82)
    assert row["mg_min"] == pytest.approx(0.82) and row["mg_max"] == pytest.approx(0.88)
    assert row["outlier_pixels"] == 1
    assert row["mg_radial_0"] == pytest.approx(0.82) and row["mg_radial_9"] == pytest.approx(0.88)
    rr, cc = np.nonzero(crystal)
    x, y = t @ (cc.mean() + 0.5, rr.mean() + 0.5)
    assert (row["centroid_x_um"], row["centroid_y_um"]) == pytest.approx((x, y))
    assert row["aspect_ratio"] == pytest.approx(1.0, abs=0.05)
    assert 0.75 < row["roundness"] < 0.85  # a square: pi/4 = 0.785 (skimage perimeter)
    assert row["geometry"].area == pytest.approx(crystal.sum() * 4)
    # Without an mg# map the mg# attributes are NaN.
    row = measure_crystal(CrystalArrays(crystal, bse), t, 2.0)
    assert np.isnan(row["mg_mean"]) and np.isnan(row["mantle_excess"])

"""The BSE point-spread at olivine outlines: estimated from the image and undone."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from olmap.composition.psf import estimate_psf_sigma, psf_reach_px, unmix_edges


def scene(sigma: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Zoned olivine discs in glass and a brighter pyroxene, blurred by ``sigma`` + noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:240, 0:240]
    mask = np.zeros((240, 240), bool)
    grey = np.where(xx < 120, 95.0, 160.0)  # glass left, pyroxene right: both sides of olivine
    for cy, cx, r in ((60, 60, 30), (170, 70, 22), (70, 175, 35), (180, 180, 15)):
        d = np.hypot(yy - cy, xx - cx)
        disc = d < r
        mask |= disc
        grey = np.where(disc, 120.0 + 10.0 * d / r, grey)  # normal zoning, Fe-rich rim
    seen = ndi.gaussian_filter(grey, sigma) if sigma else grey.copy()
    return seen + rng.normal(0, 2.0, grey.shape), grey, mask


@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.0, 2.5])
def test_the_point_spread_is_recovered(sigma):
    seen, _, mask = scene(sigma)
    assert estimate_psf_sigma([(seen, mask)]) == pytest.approx(sigma, abs=0.3)


def test_a_wide_point_spread_is_underestimated_not_overestimated():
    """Zoned rims bias the pure-interior extrapolation: undoing too little is the safe side."""
    seen, _, mask = scene(3.5)
    assert 2.5 <= estimate_psf_sigma([(seen, mask)]) <= 3.5


def test_a_sharp_image_needs_no_unmixing():
    seen, _, mask = scene(0.0)
    assert estimate_psf_sigma([(seen, mask)]) <= 0.5


def test_unmixing_restores_the_olivine_grey_near_outlines():
    seen, grey, mask = scene(2.5, seed=1)
    fixed = unmix_edges(seen, mask, 2.5)
    depth = ndi.distance_transform_edt(mask)
    near = mask & (depth > 1) & (depth <= 5)
    before = np.sqrt(np.mean((seen[near] - grey[near]) ** 2))
    after = np.sqrt(np.mean((fixed[near] - grey[near]) ** 2))
    assert after < before / 2
    # Deep inside, and off the crystals, nothing changes.
    untouched = (depth > 12) | ~mask
    assert np.array_equal(fixed[untouched], seen[untouched])
    assert unmix_edges(seen, mask, 0.0) is seen
    assert psf_reach_px(0.0) == 0 and psf_reach_px(2.5) >= 4 * 2.5

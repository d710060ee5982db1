"""Touching crystals: split along BSE steps, never along cracks or gradual zoning."""

from __future__ import annotations

import numpy as np

from olmap.crystals.instances import split_touching


def noisy(image: np.ndarray, seed: int = 0) -> np.ndarray:
    return image + np.random.default_rng(seed).normal(0, 3.0, image.shape)  # 3 grey levels


def test_two_touching_crystals_are_split_at_their_contact():
    crystal = np.zeros((80, 140), bool)
    crystal[10:70, 10:70] = True
    crystal[20:60, 70:130] = True  # a second crystal sharing a 40-px contact
    bse = np.where(np.arange(140) < 70, 120.0, 140.0)[None, :].repeat(80, 0)  # 0.05 mg# apart
    labels = split_touching(crystal, noisy(bse))
    assert labels.max() == 2
    left, right = labels[40, 30], labels[40, 100]
    assert left != right
    assert ((labels == left) == (crystal & (np.arange(140) < 70))).mean() > 0.99


def test_one_crystal_with_zoning_and_a_crack_stays_whole():
    yy, xx = np.mgrid[0:120, 0:120]
    r = np.hypot(yy - 60, xx - 60)
    crystal = r < 50
    crystal[:, 58] = False  # a crack right across it
    bse = 110.0 + 30.0 * np.clip(r / 50, 0, 1) ** 2  # normal zoning: brighter (Fe-rich) rim
    labels = split_touching(crystal, noisy(bse, 1))
    assert labels.max() == 1
    assert (labels > 0).sum() == crystal.sum()


def test_without_contrast_a_neck_still_splits():
    """Two crystals of the same mg# meeting at a short contact: a concave union."""
    yy, xx = np.mgrid[0:100, 0:180]
    crystal = (np.hypot(yy - 50, xx - 50) < 40) | (np.hypot(yy - 50, xx - 128) < 40)
    flat = noisy(np.full(crystal.shape, 130.0), 2)
    labels = split_touching(crystal, flat)
    assert labels.max() == 2 and labels[50, 50] != labels[50, 128]
    # One convex crystal of the same size is never cut.
    disc = np.hypot(yy - 50, xx - 90) < 45
    assert split_touching(disc, flat).max() == 1
    # Without the shape step nothing separates them (the paper: one component, one crystal).
    assert split_touching(crystal, flat, shape_split_solidity=None).max() == 1


def test_sharp_zoning_rings_do_not_split_a_crystal():
    """A mantle with sharp steps (complex zoning) is a ring: no crystal is that concave."""
    yy, xx = np.mgrid[0:160, 0:160]
    d = 70 - np.maximum(np.abs(yy - 80), np.abs(xx - 80))  # depth inside a 140-px square
    crystal = d > 0
    bse = np.where((d > 12) & (d < 30), 110.0, 135.0)  # Mg-rich mantle, 25 grey-level steps
    labels = split_touching(crystal, noisy(bse, 3))
    assert labels.max() == 1
    # Without the convexity checks (no piece too concave, no union ever convex enough) the
    # steps cut it into core and rings.
    unchecked = split_touching(crystal, noisy(bse, 3), min_solidity=0.0, max_solidity_loss=-1.0)
    assert unchecked.max() > 1


def test_a_crystal_filling_its_window_is_kept():
    """No background pixel in the window (a crop inside a phenocryst): still one crystal."""
    crystal = np.ones((60, 60), bool)
    labels = split_touching(crystal, noisy(np.full(crystal.shape, 120.0), 4))
    assert labels.min() == 1 and labels.max() == 1

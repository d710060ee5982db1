"""Touching crystals: split along BSE steps, never along cracks or gradual zoning."""

from __future__ import annotations

import numpy as np
import pytest
from skimage import draw

from olmap.crystals.instances import split_at_notches, split_touching


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


def microlite_on_phenocryst() -> tuple[np.ndarray, np.ndarray]:
    """A 90 x 60 px phenocryst with a 16 x 14 px microlite half sunk into its top edge."""
    crystal = np.zeros((90, 130), bool)
    crystal[20:80, 20:110] = True  # phenocryst
    microlite = np.zeros_like(crystal)
    microlite[10:24, 50:66] = True  # sticks out 10 px above the edge
    return crystal | microlite, microlite


def test_a_microlite_on_a_phenocryst_edge_is_cut_off_without_contrast():
    """Same mg#, no neck: only the two notches where their outlines meet tell them apart."""
    crystal, microlite = microlite_on_phenocryst()
    flat = noisy(np.full(crystal.shape, 130.0), 5)
    labels = split_touching(crystal, flat, notch_depth_px=1.5, min_piece_pixels=101)
    assert labels.max() == 2
    small = labels[14, 58]
    # The cut runs between the notches, along the phenocryst's edge (row 20).
    cut_off = labels == small
    assert cut_off.sum() == (microlite & ~(np.arange(90) >= 20)[:, None]).sum()
    # Without the notch step the union is convex enough to stay one crystal.
    whole = split_touching(crystal, flat, notch_depth_px=None, min_piece_pixels=101)
    assert whole.max() == 1


def test_notches_cut_off_microlites_only():
    """Cracks reaching the outline, and crystals larger than a microlite, are not cut off."""
    flat = noisy(np.full((50, 50), 130.0), 6)
    # A microlite (912 px) notched 10 px deep by two cracks, 2 px wide, from opposite sides:
    # the line between their tips would leave two convex halves, but no gap between them.
    cracked = np.zeros((50, 50), bool)
    cracked[10:38, 8:42] = True
    cracked[10:20, 24:26] = False
    cracked[28:38, 24:26] = False
    assert split_touching(cracked, flat, notch_depth_px=1.5, min_piece_pixels=101).max() == 1
    assert split_at_notches(cracked.astype(np.int32), min_gap_ratio=0.0, bridge_px=0).max() == 1
    # The microlite's piece above the cut would be 160 px: over a 150-px microlite limit.
    crystal, _ = microlite_on_phenocryst()
    flat = noisy(np.full(crystal.shape, 130.0), 7)
    kept = split_touching(
        crystal, flat, notch_depth_px=1.5, notch_max_part_pixels=150, min_piece_pixels=101
    )
    assert kept.max() == 1


def test_no_cut_leaves_a_piece_under_the_minimum_area():
    """A 100-px microlite above the edge is cut off only if it may be catalogued (> 100 px)."""
    crystal = np.zeros((90, 130), bool)
    crystal[20:80, 20:110] = True
    crystal[10:24, 50:60] = True  # 10 x 10 px above the edge
    flat = noisy(np.full(crystal.shape, 130.0), 8)
    for min_piece in (101, 90):
        labels = split_touching(crystal, flat, notch_depth_px=1.5, min_piece_pixels=min_piece)
        sizes = np.bincount(labels.ravel())[1:]
        assert sizes.min() >= min_piece
    assert labels.max() == 2 and sizes.min() == 100  # cut off once 100 px is enough


@pytest.mark.parametrize("sd", [6.0, 10.0])
def test_noisier_images_are_not_cut_along_their_noise(sd: float):
    """Thresholds follow the crystal's own noise: once hundreds of pieces at sd 6-10."""
    crystal = np.zeros((240, 420), bool)
    crystal[20:220, 10:210] = True
    crystal[50:190, 210:410] = True  # a second crystal, 40 grey levels brighter
    bse = np.where(np.arange(420) < 210, 110.0, 150.0)[None, :].repeat(240, 0)
    rng = np.random.default_rng(0)
    assert split_touching(crystal, bse + rng.normal(0, sd, bse.shape)).max() == 2

    yy, xx = np.mgrid[0:300, 0:300]
    r = np.hypot(yy - 150, xx - 150)
    zoned = 110.0 + 30.0 * np.clip(r / 140, 0, 1) ** 2
    assert split_touching(r < 140, zoned + rng.normal(0, sd, zoned.shape)).max() == 1


def test_a_large_noisy_crystal_stays_one():
    """A 700 px square phenocryst (0.5 Mpx) at sd 6: once 1,306 pieces in 26 s, now one."""
    crystal = np.zeros((700, 700), bool)
    crystal[1:-1, 1:-1] = True
    bse = np.random.default_rng(2).normal(120.0, 6.0, crystal.shape)
    labels = split_touching(crystal, bse)
    assert labels.max() == 1 and (labels > 0).sum() == crystal.sum()


def hexagon(shape: tuple[int, int], centre: tuple[float, float], r: float) -> np.ndarray:
    """A flat-topped hexagon (a crystal section) of circumradius ``r`` px."""
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    dy, dx = np.abs(yy - centre[0]), np.abs(xx - centre[1])
    return (dy <= r * np.sqrt(3) / 2) & (dx * np.sqrt(3) + dy <= r * np.sqrt(3))


def test_an_inclusion_is_no_neck():
    """A convex crystal with an inclusion: the hole lowers the solidity, but it is one crystal.

    The outline of a foreign-look crystal of issue 23 (px, x/y), simplified: measured on its
    pixels alone, the inclusion made it look concave and the distance-transform watershed cut
    it in two through the inclusion.
    """
    outer = [(25, 2), (14, 12), (4, 24), (2, 30), (9, 42), (16, 57), (20, 68), (48, 72),
             (56, 66), (64, 51), (68, 47), (68, 43), (53, 13), (52, 8)]  # fmt: skip
    inner = [(31, 18), (41, 20), (42, 26), (42, 33), (34, 39), (24, 36), (22, 27), (25, 24)]

    def fill(vertices: list[tuple[int, int]]) -> np.ndarray:
        x, y = np.array(vertices, float).T
        mask = np.zeros((80, 76), bool)
        mask[draw.polygon(y + 2, x + 2, mask.shape)] = True
        return mask

    crystal = fill(outer) & ~fill(inner)
    for seed in range(3):
        flat = noisy(np.full(crystal.shape, 130.0), seed)
        assert split_touching(crystal, flat, min_piece_pixels=100).max() == 1


def test_a_step_must_be_a_step_in_level():
    """Lines of high gradient with the same level either side (scan lines) rejoin."""
    crystal = hexagon((90, 140), (45, 70), 60)
    crystal[40:50, 64:76] = False  # an inclusion the lines can run to
    small = {"min_piece_pixels": 100}  # as the catalogue sets it (100 µm² at 1 µm/px)
    pieces = {"checked": 0, "unchecked": 0}
    for seed in range(10):
        rng = np.random.default_rng(seed)
        # Scan-line noise: each row offset by sd 3 levels, over pixel noise of sd 2.
        bse = 130.0 + rng.normal(0, 2, crystal.shape) + 3.0 * rng.normal(0, 1, (90, 1))
        pieces["checked"] += int(split_touching(crystal, bse, **small).max())
        pieces["unchecked"] += int(split_touching(crystal, bse, min_step=-1.0, **small).max())
    assert pieces["checked"] <= 0.8 * pieces["unchecked"]
    # Two touching crystals 20 grey levels apart; with an mg# map the step is measured
    # there: a session seam (a BSE step that the drift correction removes) with equal mg#
    # either side is one crystal. (The shape cut is off: only the step separates them.)
    crystal = np.zeros((80, 140), bool)
    crystal[10:70, 10:70] = True
    crystal[20:60, 70:130] = True
    left = np.arange(140)[None, :] < 70
    bse = noisy(np.where(left, 120.0, 140.0) * np.ones((80, 1)))
    no_shape = {"shape_split_solidity": None, **small}
    assert split_touching(crystal, bse, **no_shape).max() == 2
    mg_flat = np.full(crystal.shape, 0.80)
    assert split_touching(crystal, bse, step_image=mg_flat, min_step=0.005, **no_shape).max() == 1
    mg_step = np.where(left, 0.80, 0.75) * np.ones((80, 1))
    assert split_touching(crystal, bse, step_image=mg_step, min_step=0.005, **no_shape).max() == 2

import numpy as np

from olmap.segment.domain import domain_shift


def test_same_sessions_show_no_shift_and_another_detector_does():
    rng = np.random.default_rng(1)
    labels = (rng.random((6, 64, 64)) < 0.3).astype(np.uint8)  # 1 = olivine
    bse = np.where(labels == 1, 120.0, 90.0) + rng.normal(0, 5, labels.shape)
    same = domain_shift(bse[:3], labels[:3], bse[3:], labels[3:], {0: "rest", 1: "olivine"})
    assert abs(same.median_shift_sd) < 0.1 and not same.large
    assert set(same.class_shift_sd) == {"rest", "olivine"}
    # another detector: olivine brighter against the rest, all at another gain
    other = np.where(labels == 1, 150.0, 85.0) + rng.normal(0, 5, labels.shape)
    moved = domain_shift(bse[:3], labels[:3], other[3:], labels[3:], {0: "rest", 1: "olivine"})
    assert moved.large and moved.class_shift_sd["olivine"] > 1.0
    assert "olivine" in moved.summary()

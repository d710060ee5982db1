"""Features computed on a padded block equal the whole-volume features (no chunk seams)."""

import numpy as np
import pytest

from olmap.ct.features import FeatureConfig, compute_features, feature_reach, symmetric_eigenvalues


@pytest.mark.parametrize("dims", ["2d", "3d"])
def test_block_equals_whole_volume_exactly(dims):
    vol = np.random.default_rng(0).random((30, 50, 44)).astype(np.float32)
    cfg = FeatureConfig(dims=dims, sigmas=(1.0, 2.5))
    whole = compute_features(vol, cfg, (0.0, 1.0))
    r = feature_reach(cfg)
    for region in [
        (slice(10, 20), slice(20, 35), slice(5, 30)),
        (slice(0, 4), slice(0, 50), slice(40, 44)),  # at the volume's edges
    ]:
        pad = tuple(
            slice(max(0, s.start - (0 if dims == "2d" and a == 0 else r)), s.stop + r)
            for a, s in enumerate(region)
        )
        crop = tuple(
            slice(s.start - p.start, s.stop - p.start) for s, p in zip(region, pad, strict=True)
        )
        part = compute_features(vol[pad], cfg, (0.0, 1.0), crop)
        assert np.array_equal(part, whole[(slice(None), *region)])


def test_a_halo_one_voxel_short_would_show():
    vol = np.random.default_rng(1).random((20, 40, 40)).astype(np.float32)
    cfg = FeatureConfig(sigmas=(2.0,))
    whole = compute_features(vol, cfg, (0.0, 1.0))
    r = feature_reach(cfg) - 3
    region = (slice(8, 12), slice(15, 25), slice(15, 25))
    pad = tuple(slice(s.start - r, s.stop + r) for s in region)
    crop = tuple(slice(r, r + s.stop - s.start) for s in region)
    part = compute_features(vol[pad], cfg, (0.0, 1.0), crop)
    assert not np.array_equal(part, whole[(slice(None), *region)])


def test_closed_form_eigenvalues_match_numpy():
    rng = np.random.default_rng(2)
    m = rng.normal(size=(500, 3, 3))
    m = m + m.transpose(0, 2, 1)
    h = {(i, j): m[:, i, j] for i in range(3) for j in range(i, 3)}
    ours = symmetric_eigenvalues(h, 3).T
    assert np.allclose(ours, np.linalg.eigvalsh(m)[:, ::-1], atol=1e-4)
    h2 = {(i, j): m[:, i, j] for i in range(2) for j in range(i, 2)}
    assert np.allclose(
        symmetric_eigenvalues(h2, 2).T, np.linalg.eigvalsh(m[:, :2, :2])[:, ::-1], atol=1e-4
    )

"""The marker watershed that re-draws a classifier's unsure boundaries."""

import numpy as np

from olmap.core.watershed import gradient_elevation, relabel_unsure_by_watershed


def _blurred_sphere(noise: float, seed: int = 0):
    """A bright ball (label 2) in a dark cube (label 1), blurred and noisy, as CT sees it."""
    from scipy import ndimage as ndi

    z, y, x = np.mgrid[:32, :32, :32]
    truth = np.where((z - 15.5) ** 2 + (y - 15.5) ** 2 + (x - 15.5) ** 2 <= 9.3**2, 2, 1)
    grey = ndi.gaussian_filter(np.where(truth == 2, 0.6, 0.5), 0.8)
    grey = grey + noise * np.random.default_rng(seed).standard_normal(truth.shape)
    return truth.astype(np.uint8), grey.astype(np.float32)


def test_unsure_shell_is_redrawn_on_the_grey_step():
    truth, grey = _blurred_sphere(noise=0.01)
    # A classifier that blurred the boundary outwards: the ball two voxels too large, unsure
    # within three voxels of its own (wrong) boundary.
    from scipy import ndimage as ndi

    too_big = ndi.binary_dilation(truth == 2, iterations=2)
    labels = np.where(too_big, 2, 1).astype(np.uint8)
    edge = ndi.distance_transform_edt(too_big) + ndi.distance_transform_edt(~too_big)
    confidence = np.where(edge <= 3, 0.5, 0.95)
    out = relabel_unsure_by_watershed(labels, confidence, gradient_elevation(grey), 0.7)
    before, after = (labels != truth).mean(), (out != truth).mean()
    assert before > 0.05 and after < before / 5
    assert np.array_equal(out[confidence >= 0.7], labels[confidence >= 0.7])  # markers kept
    assert out.dtype == labels.dtype


def test_nothing_to_do_when_all_sure_or_all_unsure():
    truth, grey = _blurred_sphere(noise=0.02)
    elev = gradient_elevation(grey)
    labels = np.ones_like(truth)
    for conf in (np.ones(truth.shape), np.zeros(truth.shape)):
        assert np.array_equal(relabel_unsure_by_watershed(labels, conf, elev, 0.7), labels)


def test_per_slice_floods_never_cross_slices():
    truth, grey = _blurred_sphere(noise=0.0)
    labels = truth.copy()
    confidence = np.ones(truth.shape)
    confidence[10] = 0.0  # one slice with no sure voxel: nothing in its plane can flood it
    labels[10] = 1
    elev = gradient_elevation(grey, per_slice=True)
    out = relabel_unsure_by_watershed(labels, confidence, elev, 0.7, per_slice=True)
    assert np.array_equal(out[10], labels[10])
    out3 = relabel_unsure_by_watershed(labels, confidence, gradient_elevation(grey), 0.7)
    assert (out3[10] == 2).sum() > 100  # in 3D the slices above and below flood it

import numpy as np
import pytest

from olmap.synth.config import SynthConfig
from olmap.synth.model import build_model
from olmap.synth.render import render_observed, render_truth


@pytest.fixture(scope="module")
def model():
    return build_model(SynthConfig(width=768, height=640, seed=4, sessions=3))


def test_truth_of_a_window_equals_the_same_pixels_of_the_whole(model):
    whole = render_truth(model, 0, 0, 640, 768)
    part = render_truth(model, 137, 301, 211, 190)
    sl = (slice(137, 348), slice(301, 491))
    np.testing.assert_array_equal(part.phase, whole.phase[sl])
    np.testing.assert_array_equal(part.instance, whole.instance[sl])
    np.testing.assert_array_equal(part.mg, whole.mg[sl])
    np.testing.assert_allclose(part.grey, whole.grey[sl], atol=1e-4)
    np.testing.assert_allclose(part.eds, whole.eds[(slice(None), *sl)], atol=1e-4)


def test_observed_windows_are_seamless(model):
    whole = render_observed(model, 0, 0, 640, 768)
    for r0, c0, h, w in [(0, 0, 256, 256), (256, 512, 384, 256), (512, 256, 128, 512)]:
        part = render_observed(model, r0, c0, h, w)
        np.testing.assert_array_equal(part.bse, whole.bse[r0 : r0 + h, c0 : c0 + w])
        np.testing.assert_array_equal(part.eds, whole.eds[:, r0 : r0 + h, c0 : c0 + w])


def test_observed_windows_must_align_to_the_noise_grid(model):
    with pytest.raises(ValueError, match="noise grid"):
        render_observed(model, 10, 0, 256, 256)

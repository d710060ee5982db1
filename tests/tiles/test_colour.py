"""Display scales: values to grey or RGBA, invalid pixels transparent."""

from __future__ import annotations

import numpy as np
import pytest

from olmap.errors import InputError
from olmap.tiles.colour import ColourScale, apply_colour_scale, colour_index


def test_scale_ends_and_clipping_map_to_the_lut_ends():
    scale = ColourScale("viridis", 0.7, 0.9, "mg#")
    lut = scale.lut()
    values = np.array([[0.6, 0.7, 0.8, 0.9, 1.0]], np.float32)
    rgba = apply_colour_scale(values, scale)
    assert rgba.shape == (4, 1, 5)
    assert rgba[:3, 0, 0].tolist() == rgba[:3, 0, 1].tolist() == lut[0, :3].tolist()
    assert rgba[:3, 0, 4].tolist() == rgba[:3, 0, 3].tolist() == lut[255, :3].tolist()
    assert rgba[:3, 0, 2].tolist() == lut[128, :3].tolist()  # 0.8 is half way: index 127.5
    assert (rgba[3] == 255).all()
    assert colour_index([0.7, 0.8, 0.9], scale).tolist() == [0, 128, 255]


def test_invalid_and_nan_pixels_are_transparent():
    scale = ColourScale("magma", 0.0, 1.0)
    values = np.array([[0.2, np.nan], [0.5, 0.9]], np.float32)
    valid = np.array([[True, True], [False, True]])
    rgba = apply_colour_scale(values, scale, valid)
    assert rgba[3].tolist() == [[255, 0], [0, 255]]
    assert (rgba[:3, 0, 1] == 0).all() and (rgba[:3, 1, 0] == 0).all()


def test_grey_mode_gives_grey_and_alpha():
    scale = ColourScale("gray", 10.0, 110.0)
    out = apply_colour_scale(np.array([[10.0, 60.0, 110.0, 200.0]]), scale, grey=True)
    assert out.shape == (2, 1, 4)
    assert out[0, 0].tolist() == [0, 128, 255, 255]
    assert out[1, 0].tolist() == [255] * 4


def test_legend_stops_are_the_scale_colours():
    scale = ColourScale("viridis", 0.0, 1.0)
    stops = scale.css_stops(5)
    lut = scale.lut()
    assert len(stops) == 5
    assert stops[0] == "#{:02x}{:02x}{:02x}".format(*lut[0, :3])
    assert stops[-1] == "#{:02x}{:02x}{:02x}".format(*lut[255, :3])


@pytest.mark.parametrize(
    ("cmap", "lo", "hi"), [("viridis", 1.0, 1.0), ("nope", 0.0, 1.0), ("gray", 0.0, float("nan"))]
)
def test_bad_scales_are_refused(cmap, lo, hi):
    with pytest.raises(InputError):
        ColourScale(cmap, lo, hi)

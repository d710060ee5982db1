"""The XYZ tile grid: zoom 0 is one tile, the deepest zoom is full resolution, tiles cover
the raster exactly."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from olmap.io.pyramid import PyramidSpec


@pytest.mark.parametrize(
    ("shape", "max_zoom"),
    [
        ((1, 1), 0),
        ((256, 256), 0),
        ((256, 257), 1),
        ((4096, 4096), 4),
        ((20000, 20000), 7),
        ((300, 5000), 5),
    ],
)
def test_max_zoom_is_the_first_level_at_full_resolution(shape, max_zoom):
    spec = PyramidSpec(*shape)
    assert spec.max_zoom == max_zoom
    assert spec.grid(0) == (1, 1)
    assert spec.scale(spec.max_zoom) == 1


@given(st.integers(1, 3000), st.integers(1, 3000), st.sampled_from([64, 256]))
def test_tiles_of_every_level_cover_the_raster_once(h, w, tile):
    spec = PyramidSpec(h, w, tile)
    for zoom in range(spec.max_zoom + 1):
        covered = 0
        for x, y in spec.tiles(zoom):
            window, (th, tw) = spec.source_window(zoom, x, y)
            assert 0 < th <= tile and 0 < tw <= tile
            covered += window.width * window.height
        assert covered == h * w
    assert spec.n_tiles() == sum(len(list(spec.tiles(z))) for z in range(spec.max_zoom + 1))


def test_tiles_outside_the_raster_are_refused():
    spec = PyramidSpec(700, 1000)
    with pytest.raises(ValueError, match="outside"):
        spec.source_window(2, 4, 0)
    with pytest.raises(ValueError, match="zoom"):
        spec.scale(3)

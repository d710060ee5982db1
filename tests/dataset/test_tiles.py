"""Tile geometry and per-tile statistics (pure functions)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from rasterio.windows import Window

from olmap.core.windows import region_window
from olmap.dataset.tiles import (
    session_table,
    split_overlaps,
    tile_fractions,
    tile_windows,
)
from olmap.io.raster import micrometre_transform


def as_tuple(w: Window) -> tuple[int, ...]:
    return tuple(int(v) for v in (w.col_off, w.row_off, w.width, w.height))


def test_region_window_takes_whole_pixels_only() -> None:
    t = micrometre_transform(100, 0.5)  # 100 rows of 0.5 µm: y from 0 (bottom) to 50 (top)
    # x 0.2-10.3 µm -> cols 1-19 (pixels fully inside); y 40-50 µm -> top 20 rows.
    assert as_tuple(region_window(0.2, 40, 10.3, 50, t, (100, 200))) == (1, 0, 19, 20)
    assert as_tuple(region_window(-5, -5, 500, 500, t, (100, 200))) == (0, 0, 200, 100)
    assert region_window(0.1, 0, 0.4, 50, t, (100, 200)) is None  # thinner than a pixel


def test_tile_windows_stay_inside_and_cover_the_region() -> None:
    region = Window(100, 50, 1000, 700)
    tiles = tile_windows(region, (338, 512), (338, 512))
    cover = np.zeros((800, 1200), bool)
    for w in tiles:
        assert (w.height, w.width) == (338, 512)
        assert 100 <= w.col_off and w.col_off + 512 <= 1100
        assert 50 <= w.row_off and w.row_off + 338 <= 750
        cover[w.toslices()] = True
    assert cover[50:750, 100:1100].all() and cover.sum() == 700 * 1000
    assert len(tiles) == 3 * 2  # rows 0, 338, 362 (snapped); cols 0, 488 (snapped)
    assert tile_windows(Window(0, 0, 500, 700), (338, 512), (338, 512)) == []
    overlapping = tile_windows(region, (338, 512), (169, 256))
    assert len(overlapping) > len(tiles)


def test_split_overlaps() -> None:
    a, b, c = Window(0, 0, 10, 10), Window(5, 5, 10, 10), Window(10, 0, 10, 10)
    assert split_overlaps([("1", "train", a), ("2", "test", b)]) == [("1", "2")]
    assert split_overlaps([("1", "train", a), ("2", "train", b)]) == []
    assert split_overlaps([("1", "train", a), ("3", "val", c)]) == []  # touching is fine
    assert split_overlaps([("1", "train", a), ("2", "none", b)]) == []


def test_tile_fractions_exclude_ignore() -> None:
    labels = np.array([[1, 1, 0, 255], [2, 0, 0, 255]], np.uint8)
    fr = tile_fractions(labels, {"olivine": 1, "cpx": 2})
    assert fr == pytest.approx(
        {"labelled_fraction": 0.75, "olivine_fraction": 2 / 6, "cpx_fraction": 1 / 6}
    )
    assert tile_fractions(np.full((2, 2), 255, np.uint8), {"olivine": 1})["olivine_fraction"] == 0


def test_session_table_is_pixel_weighted() -> None:
    manifest = pd.DataFrame(
        {
            "session": ["1", "1", "2"],
            "split": ["train", "train", "test"],
            "height": [10, 10, 10],
            "width": [10, 10, 10],
            "labelled_fraction": [1.0, 0.5, 1.0],
            "olivine_fraction": [0.1, 0.4, 0.2],
        }
    )
    table = session_table(manifest, {"olivine": 1})
    assert table["n_tiles"].tolist() == [2, 1]
    # (0.1 * 100 + 0.4 * 50) / 150 = 20 %
    assert table["olivine_pct"].tolist() == pytest.approx([20.0, 20.0])
    assert table["ignore_pct"].tolist() == pytest.approx([25.0, 0.0])

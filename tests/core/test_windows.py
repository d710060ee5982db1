import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from olmap.core.windows import block_windows, halo_window, sliding_windows

dims = st.integers(1, 300)


def _coverage(windows, h, w):
    cover = np.zeros((h, w), int)
    for win in windows:
        r0, c0 = int(win.row_off), int(win.col_off)
        cover[r0 : r0 + int(win.height), c0 : c0 + int(win.width)] += 1
    return cover


@settings(max_examples=60, deadline=None)
@given(h=dims, w=dims, bh=st.integers(1, 120), bw=st.integers(1, 120))
def test_block_windows_cover_every_pixel_once(h, w, bh, bw):
    windows = block_windows(h, w, (bh, bw))
    assert np.all(_coverage(windows, h, w) == 1)
    assert all(win.width > 0 and win.height > 0 for win in windows)


@settings(max_examples=60, deadline=None)
@given(h=dims, w=dims, size=st.integers(1, 128), data=st.data())
def test_sliding_windows_full_size_unique_and_covering(h, w, size, data):
    stride = data.draw(st.integers(1, size))
    windows = sliding_windows(h, w, size, stride)
    cover = _coverage(windows, h, w)
    assert cover.min() >= 1
    starts = [(int(x.row_off), int(x.col_off)) for x in windows]
    assert len(starts) == len(set(starts)), "a window was produced twice"
    for win in windows:  # never truncated, never outside the grid
        assert int(win.height) == min(size, h) and int(win.width) == min(size, w)
        assert win.row_off + win.height <= h and win.col_off + win.width <= w
    # the last row/column of windows reaches the grid edge (TorchGeo #1245 class of bug)
    assert max(int(x.row_off + x.height) for x in windows) == h
    assert max(int(x.col_off + x.width) for x in windows) == w


def test_sliding_windows_overlap_counts_are_uniform_inside():
    windows = sliding_windows(100, 100, 40, 20)
    cover = _coverage(windows, 100, 100)
    # interior pixels away from the snapped last window are covered (40/20)^2 = 4 times
    assert np.all(cover[20:60, 20:60] == 4)


@settings(max_examples=60, deadline=None)
@given(h=dims, w=dims, halo=st.integers(0, 40), data=st.data())
def test_halo_window_inner_slice_points_back_to_the_window(h, w, halo, data):
    r0 = data.draw(st.integers(0, h - 1))
    c0 = data.draw(st.integers(0, w - 1))
    wh = data.draw(st.integers(1, h - r0))
    ww = data.draw(st.integers(1, w - c0))
    grid = np.arange(h * w).reshape(h, w)
    from rasterio.windows import Window

    padded, inner = halo_window(Window(c0, r0, ww, wh), halo, h, w)
    pr, pc = int(padded.row_off), int(padded.col_off)
    assert pr >= 0 and pc >= 0
    assert pr + padded.height <= h and pc + padded.width <= w
    chunk = grid[pr : pr + int(padded.height), pc : pc + int(padded.width)]
    assert np.array_equal(chunk[inner], grid[r0 : r0 + wh, c0 : c0 + ww])
    # the halo is as wide as asked wherever the grid allows
    assert r0 - pr == min(halo, r0) and c0 - pc == min(halo, c0)


def test_bad_window_arguments_are_refused():
    with pytest.raises(ValueError, match="stride"):
        sliding_windows(10, 10, 4, 5)
    with pytest.raises(ValueError, match="> 0"):
        block_windows(0, 10, 4)

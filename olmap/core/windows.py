"""Window arithmetic over raster grids: *where* to read, never *what* (no file is opened here).

Windows are :class:`rasterio.windows.Window` objects in pixel units
(``col_off, row_off, width, height``).

Glossary: a *block* is one cell of a non-overlapping grid; a *halo* is the margin of extra
pixels read around a window so that filters near its border see real neighbours; a *sliding*
window moves by a *stride* smaller than its size, so windows overlap.
"""

from __future__ import annotations

import math

from affine import Affine
from rasterio.windows import Window


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if value <= 0:
            raise ValueError(f"{name} must be > 0, got {value}")


def block_windows(height: int, width: int, block: int | tuple[int, int]) -> list[Window]:
    """Non-overlapping windows that tile a ``height`` x ``width`` grid exactly.

    Windows in the last row and column are cropped to the grid, so every pixel lies in
    exactly one window.

    Parameters
    ----------
    height, width : int
        Grid shape in pixels.
    block : int or (int, int)
        Block size in pixels (rows, cols).

    Returns
    -------
    list of Window
        Row-major order.

    Examples
    --------
    >>> [tuple(map(int, w.flatten())) for w in block_windows(5, 3, 4)]
    [(0, 0, 3, 4), (0, 4, 3, 1)]
    """
    bh, bw = (block, block) if isinstance(block, int) else block
    _check_positive(height=height, width=width, block_rows=bh, block_cols=bw)
    return [
        Window(c, r, min(bw, width - c), min(bh, height - r))
        for r in range(0, height, bh)
        for c in range(0, width, bw)
    ]


def halo_window(
    window: Window, halo: int, height: int, width: int
) -> tuple[Window, tuple[slice, slice]]:
    """Grow ``window`` by ``halo`` pixels on each side, clipped to the grid.

    Parameters
    ----------
    window : Window
        Inner window.
    halo : int
        Margin in pixels (>= 0).
    height, width : int
        Grid shape in pixels.

    Returns
    -------
    padded : Window
        The grown window.
    inner : (slice, slice)
        Where the inner window lies inside an array read with ``padded``.

    Examples
    --------
    >>> padded, inner = halo_window(Window(0, 10, 4, 4), 2, 20, 20)
    >>> tuple(map(int, padded.flatten())), inner
    ((0, 8, 6, 8), (slice(2, 6, None), slice(0, 4, None)))
    """
    if halo < 0:
        raise ValueError(f"halo must be >= 0, got {halo}")
    r0, c0 = int(window.row_off), int(window.col_off)
    r1, c1 = r0 + int(window.height), c0 + int(window.width)
    pr0, pc0 = max(0, r0 - halo), max(0, c0 - halo)
    pr1, pc1 = min(height, r1 + halo), min(width, c1 + halo)
    padded = Window(pc0, pr0, pc1 - pc0, pr1 - pr0)
    inner = (slice(r0 - pr0, r1 - pr0), slice(c0 - pc0, c1 - pc0))
    return padded, inner


def window_starts(length: int, size: int, stride: int) -> list[int]:
    """Starts of windows of ``size`` moved by ``stride`` along ``length`` px, the last one
    snapped to end at the edge.

    Examples
    --------
    >>> window_starts(10, 4, 3)
    [0, 3, 6]
    >>> window_starts(11, 4, 3)
    [0, 3, 6, 7]
    """
    if size >= length:
        return [0]
    starts = list(range(0, length - size + 1, stride))
    if starts[-1] != length - size:
        # Snap one last full-size window to the far edge so the border is covered with full
        # context instead of a truncated window (and is never counted twice by the same start).
        starts.append(length - size)
    return starts


def sliding_windows(
    height: int,
    width: int,
    size: int | tuple[int, int],
    stride: int | tuple[int, int],
) -> list[Window]:
    """Overlapping full-size windows moved by ``stride``, covering the whole grid.

    The last window of each row/column is snapped to the grid edge, so windows are never
    truncated (unless the grid is smaller than ``size``) and every pixel is covered at least
    once. Starts are unique: no window is produced twice.

    Parameters
    ----------
    height, width : int
        Grid shape in pixels.
    size : int or (int, int)
        Window side in pixels, or ``(rows, cols)``.
    stride : int or (int, int)
        Step between window starts in pixels (``0 < stride <= size``), or ``(rows, cols)``.

    Examples
    --------
    >>> [(int(w.col_off), int(w.width)) for w in sliding_windows(1, 10, 4, 3)]
    [(0, 4), (3, 4), (6, 4)]
    """
    sh, sw = (size, size) if isinstance(size, int) else size
    th, tw = (stride, stride) if isinstance(stride, int) else stride
    _check_positive(height=height, width=width, size=min(sh, sw), stride=min(th, tw))
    if th > sh or tw > sw:
        raise ValueError(f"stride ({stride}) must not exceed the window size ({size})")
    rows, cols = window_starts(height, sh, th), window_starts(width, sw, tw)
    return [Window(c, r, min(sw, width), min(sh, height)) for r in rows for c in cols]


def sample_windows(height: int, width: int, n: int = 64, size: int = 256) -> list[Window]:
    """About ``n`` windows of ``size`` px spread evenly over a grid (for statistics).

    Reading these instead of the whole raster costs the same on any mosaic size.

    Examples
    --------
    >>> [tuple(map(int, w.flatten())) for w in sample_windows(100, 300, n=4, size=50)]
    [(0, 0, 50, 50), (250, 0, 50, 50), (0, 50, 50, 50), (250, 50, 50, 50)]
    """
    _check_positive(height=height, width=width, n=n, size=size)
    side = max(1, round(n**0.5))
    wh, ww = min(size, height), min(size, width)
    rows = sorted({round(r) for r in _spread(height - wh, side)})
    cols = sorted({round(c) for c in _spread(width - ww, side)})
    return [Window(c, r, ww, wh) for r in rows for c in cols]


def _spread(span: int, n: int) -> list[float]:
    return [0.0] if n == 1 or span == 0 else [span * i / (n - 1) for i in range(n)]


def region_window(
    x0_um: float,
    y0_um: float,
    x1_um: float,
    y1_um: float,
    transform: Affine,
    shape: tuple[int, int],
) -> Window | None:
    """Pixel window of whole pixels inside a µm rectangle, clipped to the grid.

    Pixels partly outside the rectangle are left out, so a region never lends pixels to its
    neighbour. ``None`` when no whole pixel lies inside.

    Examples
    --------
    >>> from olmap.io.raster import micrometre_transform
    >>> w = region_window(0, 0, 10.5, 4, micrometre_transform(8, 1.0), (8, 20))
    >>> tuple(map(int, w.flatten()))        # rows 4-7 (y 0-4 µm), cols 0-9
    (0, 4, 10, 4)
    """
    inv = ~transform
    cols, rows = zip(*(inv @ (x, y) for x in (x0_um, x1_um) for y in (y0_um, y1_um)), strict=True)
    eps = 1e-6
    c0, c1 = math.ceil(min(cols) - eps), math.floor(max(cols) + eps)
    r0, r1 = math.ceil(min(rows) - eps), math.floor(max(rows) + eps)
    c0, r0 = max(c0, 0), max(r0, 0)
    c1, r1 = min(c1, shape[1]), min(r1, shape[0])
    if c1 <= c0 or r1 <= r0:
        return None
    return Window(c0, r0, c1 - c0, r1 - r0)

"""Where overlapping windows go and how their probabilities are combined (pure numpy).

The result of sliding-window inference is defined once, for the whole mosaic: every pixel's
probability is the weighted mean of the predictions of all windows of :class:`WindowPlan`
that cover it (uniform weights as in seed 002 sect. 3.6.3, or Gaussian weights that trust
window centres more). :func:`accumulate_run` computes exactly that for any rectangle of the
mosaic, one column block at a time, holding only ``rows x (block + window)`` pixels of sums:
memory depends on the window and block size, never on the mosaic.

Glossary: a *band* is a horizontal strip of the mosaic processed on its own (windows that
cross its top or bottom edge are predicted for each band they touch); a *run* is a range of
columns within a band processed in one pass (windows are predicted once per run); a *block*
is the unit that is finished and written, ``band rows x block_width`` columns.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
from rasterio.windows import Window

from olmap.core.windows import window_starts

#: Gaussian blending: sigma as a fraction of the window side (MONAI's ``sigma_scale`` 0.125).
GAUSSIAN_SIGMA_SCALE = 0.125
#: Smallest Gaussian weight, relative to the centre: border pixels still count a little, so a
#: pixel covered only by window borders (mosaic corners) keeps a defined mean.
GAUSSIAN_FLOOR = 1e-3
BLENDS = ("uniform", "gaussian")
#: Rows moved at a time when the accumulators slide (bounds the temporary copy).
SLIDE_ROWS = 256


@dataclass(frozen=True)
class WindowPlan:
    """The sliding windows over a ``height`` x ``width`` mosaic.

    Window starts repeat every ``stride`` pixels; the last window of each row and column is
    moved back to end at the mosaic edge, so all windows have the same shape and every pixel
    is covered (:func:`olmap.core.windows.sliding_windows`).

    Attributes
    ----------
    height, width : int
        Mosaic shape (px).
    shape : (int, int)
        Window shape (px), the requested size clipped to the mosaic.
    row_starts, col_starts : tuple of int
        Window starts (px); windows are every (row, col) pair.
    """

    height: int
    width: int
    shape: tuple[int, int]
    row_starts: tuple[int, ...]
    col_starts: tuple[int, ...]

    @classmethod
    def over(cls, height: int, width: int, window: int, stride: int) -> WindowPlan:
        """Plan for square windows of side ``window`` moved by ``stride`` (px).

        Raises
        ------
        ValueError
            Unless ``0 < stride <= window``.
        """
        if not 0 < stride <= window:
            raise ValueError(f"stride must be in 1..window ({window}), got {stride}")
        wh, ww = min(window, height), min(window, width)
        return cls(
            height,
            width,
            (wh, ww),
            tuple(window_starts(height, wh, min(stride, wh))),
            tuple(window_starts(width, ww, min(stride, ww))),
        )

    @property
    def n_windows(self) -> int:
        return len(self.row_starts) * len(self.col_starts)


def blend_weights(shape: tuple[int, int], blend: str = "uniform") -> np.ndarray:
    """Weight of each pixel of a window in the mean (float32, 1 at the centre).

    Parameters
    ----------
    shape : (int, int)
        Window shape (px).
    blend : {"uniform", "gaussian"}
        "uniform" averages overlapping windows equally (seed 002); "gaussian" weights them
        by ``exp(-d² / 2σ²)`` from the window centre, σ = 0.125 x the side, floored at 1e-3.

    Examples
    --------
    >>> blend_weights((2, 3)).tolist()
    [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]
    >>> w = blend_weights((64, 64), "gaussian")
    >>> bool(w[32, 32] > w[32, 0] >= 1e-3)
    True
    """
    if blend == "uniform":
        return np.ones(shape, np.float32)
    if blend != "gaussian":
        raise ValueError(f"unknown blend {blend!r}; choose {' or '.join(BLENDS)}")
    axes = []
    for n in shape:
        x = np.arange(n, dtype=np.float64) - (n - 1) / 2
        sigma = max(GAUSSIAN_SIGMA_SCALE * n, 1e-6)
        axes.append(np.exp(-(x**2) / (2 * sigma**2)))
    return np.maximum(np.outer(*axes), GAUSSIAN_FLOOR).astype(np.float32)


def band_edges(height: int, band: int) -> list[tuple[int, int]]:
    """Row ranges ``[r0, r1)`` of bands of ``band`` rows (the last one shorter).

    Examples
    --------
    >>> band_edges(10, 4)
    [(0, 4), (4, 8), (8, 10)]
    """
    if band <= 0:
        raise ValueError(f"band must be > 0, got {band}")
    return [(r, min(r + band, height)) for r in range(0, height, band)]


@dataclass(frozen=True)
class Block:
    """One finished piece of the output.

    Attributes
    ----------
    window : Window
        Where it lies in the mosaic.
    mean : ndarray (P, h, w) of float32
        Weighted mean probability per output band; NaN where no valid pixel was predicted.
    """

    window: Window
    mean: np.ndarray


def run_windows(
    plan: WindowPlan, rows: tuple[int, int], cols: tuple[int, int], block_width: int
) -> list[list[Window]]:
    """Windows to predict for each block of a run, in order.

    Each window is listed once, under the first block of the run it touches. Within a block
    windows are ordered as a run over the whole band would meet them: by the band's block
    (``block_width`` columns from column 0) where they start, then row-major. So every pixel
    sums its windows in the same order whichever column a run starts at (a resumed run, a
    Dask task), and float rounding gives the same bits.
    """
    (r0, r1), (c0, c1) = rows, cols
    wh, ww = plan.shape
    row_starts = [s for s in plan.row_starts if s < r1 and s + wh > r0]
    n_blocks = -(-(c1 - c0) // block_width)
    per_block: list[list[Window]] = [[] for _ in range(n_blocks)]
    for rs in row_starts:
        for cs in plan.col_starts:
            if cs < c1 and cs + ww > c0:
                per_block[(max(cs, c0) - c0) // block_width].append(Window(cs, rs, ww, wh))
    for windows in per_block:
        windows.sort(key=lambda w: (w.col_off // block_width, w.row_off, w.col_off))
    return per_block


def accumulate_run(
    plan: WindowPlan,
    rows: tuple[int, int],
    cols: tuple[int, int],
    predictions: Iterable[tuple[Window, np.ndarray, np.ndarray | None]],
    *,
    n_bands: int,
    block_width: int,
    weights: np.ndarray,
) -> Iterator[Block]:
    """Weighted means over one run, yielded block by block as soon as each is complete.

    Parameters
    ----------
    plan : WindowPlan
    rows, cols : (int, int)
        The run: rows ``[r0, r1)`` and columns ``[c0, c1)`` of the mosaic.
    predictions : iterable of (Window, ndarray (P, h, w) or None, ndarray (h, w) or None)
        Each window of :func:`run_windows` in its order, with its probabilities (None for a
        window without any valid pixel, which contributes nothing) and its valid pixels as a
        bool array (None: all valid).
    n_bands : int
        P, probability bands per pixel.
    block_width : int
        Columns per block (px).
    weights : ndarray (h, w)
        :func:`blend_weights` for the plan's window shape.

    Yields
    ------
    Block
    """
    (r0, r1), (c0, c1) = rows, cols
    schedule = run_windows(plan, rows, cols, block_width)
    ww = plan.shape[1]
    span = block_width + ww  # columns a block's windows can reach, from the block's start
    sums = np.zeros((n_bands, r1 - r0, span), np.float32)
    wsum = np.zeros((r1 - r0, span), np.float32)
    stream = iter(predictions)
    for index, expected in enumerate(schedule):
        b0 = c0 + index * block_width
        b1 = min(b0 + block_width, c1)
        for want in expected:
            win, prob, valid = next(stream)
            if win != want:
                raise ValueError(f"predictions out of order: expected {want}, got {win}")
            if prob is None:
                continue
            rs, cs = int(win.row_off), int(win.col_off)
            top, bottom = max(rs, r0), min(rs + plan.shape[0], r1)
            left, right = max(cs, c0), min(cs + ww, c1)
            src = (slice(top - rs, bottom - rs), slice(left - cs, right - cs))
            dst = (slice(top - r0, bottom - r0), slice(left - b0, right - b0))
            w = weights[src] if valid is None else weights[src] * valid[src]
            sums[(slice(None), *dst)] += prob[(slice(None), *src)] * w
            wsum[dst] += w
        n = b1 - b0
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = sums[:, :, :n] / wsum[:, :n]
        mean[:, wsum[:, :n] == 0] = np.nan
        yield Block(Window(b0, r0, n, r1 - r0), mean)
        # Slide the accumulators left: the next block starts where this one ended (in slices
        # of rows, so the temporary copy numpy makes for overlapping arrays stays small).
        for r in range(0, r1 - r0, SLIDE_ROWS):
            rows_ = slice(r, r + SLIDE_ROWS)
            sums[:, rows_, : span - n] = sums[:, rows_, n:]
            wsum[rows_, : span - n] = wsum[rows_, n:]
        sums[:, :, span - n :] = 0
        wsum[:, span - n :] = 0

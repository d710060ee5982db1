"""Where computed blocks go: one small protocol, with zarr and GeoTIFF adapters."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
from rasterio.windows import Window

from olmap.stream.grid import Block, Region


class Sink(Protocol):
    """Anything a block can be written to: ``sink.write(region, data)``."""

    def write(self, region: Region, data: np.ndarray) -> None:
        """Store ``data`` (the region's shape, plus leading band/channel axes) at ``region``."""


class ZarrSink:
    """An n-D zarr array as a sink; leading axes of the array not in ``region`` (channels) are
    written whole.

    Examples
    --------
    >>> import zarr
    >>> arr = zarr.create_array(store={}, shape=(2, 4, 4), chunks=(1, 2, 2), dtype="u1")
    >>> ZarrSink(arr).write((slice(0, 2), slice(2, 4)), np.ones((2, 2, 2), "u1"))
    >>> int(arr[:].sum())
    8
    """

    def __init__(self, array: Any) -> None:
        self.array = array

    def write(self, region: Region, data: np.ndarray) -> None:
        lead = self.array.ndim - len(region)
        self.array[(slice(None),) * lead + tuple(region)] = data


class GeoTiffSink:
    """Bands of an open rasterio dataset as a sink for 2D regions ``(rows, cols)``.

    ``data`` is 2D (written to ``bands[0]``) or ``(len(bands), rows, cols)``.
    """

    def __init__(self, dataset: Any, bands: int | list[int] = 1) -> None:
        self.dataset = dataset
        self.bands = bands

    def write(self, region: Region, data: np.ndarray) -> None:
        rows, cols = region
        window = Window(cols.start, rows.start, cols.stop - cols.start, rows.stop - rows.start)
        self.dataset.write(data, self.bands, window=window)


def block_window(block: Block) -> Window:
    """The rasterio window of a 2D block's inner region ``(rows, cols)``."""
    rows, cols = block.inner
    return Window(cols.start, rows.start, cols.stop - cols.start, rows.stop - rows.start)

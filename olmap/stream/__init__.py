"""One streaming engine for every windowed job, 2D rasters and 3D volumes alike.

- :mod:`~olmap.stream.grid`: the blocks of an n-D array, with halo.
- :mod:`~olmap.stream.sinks`: where blocks go (zarr arrays, GeoTIFF bands), behind one protocol.
- :mod:`~olmap.stream.engine`: :func:`run_blocks`, which computes the blocks in bounded memory
  (locally or on Dask distributed), writes them, keeps a resumable checkpoint, defers Ctrl-C
  to a block boundary and reports progress.
"""

from olmap.stream.engine import BlockJob, RunStats, dask_client, run_blocks
from olmap.stream.grid import Block, BlockGrid
from olmap.stream.sinks import GeoTiffSink, Sink, ZarrSink, block_window

__all__ = [
    "Block",
    "BlockGrid",
    "BlockJob",
    "GeoTiffSink",
    "RunStats",
    "Sink",
    "ZarrSink",
    "block_window",
    "dask_client",
    "run_blocks",
]

"""A COG rendered block by block on the streaming engine, resumable.

The pixels are rendered window by window (:func:`~olmap.stream.engine.run_blocks`, in threads)
into a tiled staging GeoTIFF beside the output; GDAL's COG driver then copies it, building
the overviews on the way (:func:`olmap.io.cog.copy_cog`). Both steps stream, so peak memory
depends on the block size, not on the raster (docs/benchmarks.md, "Tiles and viewer").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
from affine import Affine
from rasterio.enums import ColorInterp
from rasterio.windows import Window

from olmap.io.cog import copy_cog, fitted_blocksize
from olmap.io.outputs import claim_outputs
from olmap.io.raster import create_raster, update_raster
from olmap.io.resume import Checkpoint, RunInterrupted
from olmap.stream.engine import BlockJob, run_blocks
from olmap.stream.grid import Block, BlockGrid
from olmap.stream.sinks import GeoTiffSink, block_window

#: Render the pixels of one window: ``(count, h, w)`` array of the COG's dtype.
WindowRenderer = Callable[[Window], np.ndarray]

_COLOUR_INTERP = {
    2: [ColorInterp.gray, ColorInterp.alpha],
    3: [ColorInterp.red, ColorInterp.green, ColorInterp.blue],
    4: [ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.alpha],
}


def write_cog(
    path: str | Path,
    render: WindowRenderer,
    *,
    height: int,
    width: int,
    count: int,
    dtype: str | np.dtype,
    transform: Affine,
    nodata: float | None = None,
    band_names: Sequence[str] | None = None,
    tags: dict[str, Any] | None = None,
    colour: bool = False,
    blocksize: int = 512,
    compress: str = "deflate",
    resampling: str = "average",
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
    workers: int = 1,
    fingerprint: str | None = None,
) -> Path:
    """Write a COG whose pixels ``render`` produces one block-sized window at a time.

    Parameters
    ----------
    path : path-like
        Output ``.tif``; it appears only when complete.
    render : callable
        ``render(window) -> ndarray (count, h, w)`` of ``dtype``; called from ``workers``
        threads at once.
    height, width, count : int
        Shape in pixels and number of bands.
    dtype : str or dtype
    transform : Affine
        Map transform (µm).
    nodata : float, optional
    band_names : sequence of str, optional
    tags : dict, optional
        Dataset metadata (e.g. the colour scale of a display COG).
    colour : bool
        Bands are grey + alpha (2) or RGB(A) (3, 4): tag them so GIS shows colours and
        transparency.
    blocksize : int
        Internal tile side (px); overviews halve until the raster fits one block.
    compress : str
        deflate, lzw, zstd or none.
    resampling : str
        Overview resampling (GDAL name): ``average`` for grey levels and colours,
        ``nearest`` for class codes.
    overwrite : bool
    progress : callable, optional
        Called with the number of pixels of each finished window (and of those already
        rendered, when resuming).
    workers : int
        Windows rendered at once, in threads.
    fingerprint : str, optional
        Makes the job resumable: an interruption keeps the staging raster
        (``PATH.staging.tif``) and its checkpoint, and a call with the same fingerprint
        renders only the windows missing. Without it, nothing is left behind.

    Returns
    -------
    Path

    Raises
    ------
    RunInterrupted
        On Ctrl-C / SIGTERM, at a window boundary.
    """
    path = Path(path)
    dtype = np.dtype(dtype).name
    blocksize = fitted_blocksize(blocksize, max(height, width))
    staging = path.with_name(path.name + ".staging.tif")
    checkpoint = staging.with_name(staging.name + ".progress.npz")
    resume = (
        fingerprint is not None
        and staging.exists()
        and Checkpoint.load(checkpoint.parent, fingerprint, checkpoint.name) is not None
    )
    with claim_outputs([path], overwrite=overwrite):
        try:
            with ExitStack() as stack:
                if resume:
                    ds = stack.enter_context(update_raster(staging))
                else:
                    # Staging in ZSTD: fast to write and read back, never seen by users.
                    ds = stack.enter_context(
                        create_raster(
                            staging,
                            height=height,
                            width=width,
                            count=count,
                            dtype=dtype,
                            transform=transform,
                            nodata=nodata,
                            band_names=band_names,
                            tags=tags,
                            tile=blocksize,
                            compress="zstd",
                            atomic=False,
                            overwrite=True,
                        )
                    )
                    if colour:
                        ds.colorinterp = _COLOUR_INTERP[count]
                sink = GeoTiffSink(ds, bands=list(range(1, count + 1)))

                def compute(block: Block) -> np.ndarray:
                    window = block_window(block)
                    pixels = np.asarray(render(window))
                    if pixels.shape != (count, *block.shape):
                        raise ValueError(
                            f"render gave shape {pixels.shape} for a {count}-band window "
                            f"of {window.height}x{window.width} px"
                        )
                    return pixels.astype(dtype, copy=False)

                def write(block: Block, pixels: np.ndarray) -> None:
                    sink.write(block.inner, pixels)

                run_blocks(
                    BlockJob(BlockGrid((height, width), blocksize), compute, write, str(path)),
                    checkpoint=checkpoint if fingerprint is not None else None,
                    fingerprint=fingerprint or "",
                    progress=progress,
                    workers=workers,
                    save_every_s=float("inf"),  # saved on an interruption, the files closed
                    before_save=stack.close,
                )
            copy_cog(
                staging,
                path,
                blocksize=blocksize,
                compress=compress,
                resampling=resampling,
                overwrite=overwrite,
            )
        except (RunInterrupted, KeyboardInterrupt):
            if fingerprint is None:
                staging.unlink(missing_ok=True)
            raise
        except BaseException:
            staging.unlink(missing_ok=True)
            checkpoint.unlink(missing_ok=True)
            raise
    staging.unlink()
    return path

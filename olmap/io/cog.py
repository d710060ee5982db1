"""Cloud-optimised GeoTIFFs (COGs) written window by window, and decimated samples of rasters.

A COG is a tiled GeoTIFF whose overviews and tiles are laid out so that a reader fetches
only the parts it shows (https://cogeo.org). olmap renders the pixels window by window into a
tiled staging GeoTIFF beside the output, then GDAL's COG driver copies it, building the
overviews on the way; both steps stream through GDAL's block cache, so peak memory depends
on the block size, not on the raster (docs/benchmarks.md, "Tiles and viewer").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.shutil
from affine import Affine
from rasterio._err import CPLE_BaseError  # GDAL's errors as rasterio raises them
from rasterio.enums import ColorInterp, Resampling
from rasterio.windows import Window

from olmap.core.windows import block_windows
from olmap.errors import InputError, first_line
from olmap.io.outputs import atomic_path, is_write_failure
from olmap.io.raster import create_raster, gdal_env, gdal_write_errors, open_raster

#: Render the pixels of one window: ``(count, h, w)`` array of the COG's dtype.
WindowRenderer = Callable[[Window], np.ndarray]

_COLOUR_INTERP = {
    2: [ColorInterp.gray, ColorInterp.alpha],
    3: [ColorInterp.red, ColorInterp.green, ColorInterp.blue],
    4: [ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.alpha],
}


def _cog_options(
    *, blocksize: int, compress: str, resampling: str, dtype: str, side: int
) -> dict[str, Any]:
    options: dict[str, Any] = {
        "BLOCKSIZE": fitted_blocksize(blocksize, side),
        "COMPRESS": compress.upper(),
        "OVERVIEWS": "AUTO",
        "OVERVIEW_RESAMPLING": resampling.upper(),
        "BIGTIFF": "IF_SAFER",
        "NUM_THREADS": "ALL_CPUS",
    }
    if compress.lower() in {"deflate", "lzw", "zstd"}:
        options["PREDICTOR"] = "FLOATING_POINT" if np.dtype(dtype).kind == "f" else "YES"
    return options


def fitted_blocksize(blocksize: int, side: int) -> int:
    """The internal tile side for a raster whose longer side is ``side`` px: ``blocksize``,
    or for a small raster the next multiple of 16 (TIFF's unit) above its side.

    libvips refuses TIFF tiles much larger than the image ("tile size out of range").

    Examples
    --------
    >>> fitted_blocksize(512, 4096), fitted_blocksize(512, 64), fitted_blocksize(512, 1)
    (512, 64, 16)
    """
    return min(blocksize, max(16, -(-side // 16) * 16))


def _copy_as_cog(source: Path, target: Path, options: dict[str, Any]) -> None:
    try:
        rasterio.shutil.copy(str(source), str(target), driver="COG", **options)
    except (rasterio.errors.RasterioError, CPLE_BaseError) as exc:
        if is_write_failure(exc, target):
            raise  # the disk: the output's error (atomic_path names it)
        raise InputError(f"{source}: cannot be copied as a COG ({first_line(exc)})") from exc


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
) -> Path:
    """Write a COG whose pixels ``render`` produces one block-sized window at a time.

    Parameters
    ----------
    path : path-like
        Output ``.tif``; built under a temporary name and renamed when complete.
    render : callable
        ``render(window) -> ndarray (count, h, w)`` of ``dtype``.
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
        Called with the number of pixels of each finished window.

    Returns
    -------
    Path
    """
    path = Path(path)
    dtype = np.dtype(dtype).name
    blocksize = fitted_blocksize(blocksize, max(height, width))
    options = _cog_options(
        blocksize=blocksize, compress=compress, resampling=resampling, dtype=dtype, side=blocksize
    )
    with atomic_path(path, overwrite=overwrite) as tmp:
        staging = tmp.with_name(tmp.name + ".staging.tif")
        try:
            # Staging in ZSTD: fast to write and read back, never seen by users.
            with create_raster(
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
            ) as ds:
                if colour:
                    ds.colorinterp = _COLOUR_INTERP[count]
                for window in block_windows(height, width, blocksize):
                    block = np.asarray(render(window))
                    if block.shape != (count, window.height, window.width):
                        raise ValueError(
                            f"render gave shape {block.shape} for a {count}-band window "
                            f"of {window.height}x{window.width} px"
                        )
                    ds.write(block.astype(dtype, copy=False), window=window)
                    if progress is not None:
                        progress(int(window.height * window.width))
            with gdal_env(), gdal_write_errors(tmp):
                _copy_as_cog(staging, tmp, options)
        finally:
            staging.unlink(missing_ok=True)
    return path


def copy_cog(
    src: str | Path,
    path: str | Path,
    *,
    blocksize: int = 512,
    compress: str = "deflate",
    resampling: str = "average",
    overwrite: bool = False,
) -> Path:
    """Copy a raster (GeoTIFF or VRT) as a COG, keeping its values, nodata and metadata."""
    path = Path(path)
    with open_raster(src) as ds:
        dtype, side = ds.dtypes[0], max(ds.height, ds.width)
    options = _cog_options(
        blocksize=blocksize, compress=compress, resampling=resampling, dtype=dtype, side=side
    )
    with atomic_path(path, overwrite=overwrite) as tmp, gdal_env(), gdal_write_errors(tmp):
        _copy_as_cog(Path(src), tmp, options)
    return path


def is_cog(path: str | Path) -> bool:
    """Whether GDAL reports ``path`` as a tiled GeoTIFF laid out as a COG, with overviews
    when it is larger than one block."""
    with open_raster(path) as ds:
        layout = ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT", "")
        block_h, block_w = ds.block_shapes[0]
        tiled = block_w < ds.width or block_h == block_w  # striped files have full-width blocks
        small = max(ds.height, ds.width) <= block_w
        return layout.upper() == "COG" and tiled and (small or bool(ds.overviews(1)))


def read_decimated(
    path: str | Path, band: int = 1, *, max_side: int = 2048
) -> tuple[np.ndarray, np.ndarray]:
    """A decimated copy of one band (longest side ``max_side`` px) and its valid pixels.

    GDAL reads through overviews when the file has them, else block by block (memory:
    the decimated array and the block cache). Used to estimate display ranges.

    Returns
    -------
    values : ndarray of float32, shape (h, w)
    valid : ndarray of bool, shape (h, w)
        Pixels that hold data (not nodata, not NaN).
    """
    with open_raster(path) as ds:
        if not 1 <= band <= ds.count:
            raise InputError(f"{path}: has no band {band} (it has {ds.count})")
        f = max(1.0, max(ds.height, ds.width) / max_side)
        shape = (max(1, round(ds.height / f)), max(1, round(ds.width / f)))
        values = ds.read(band, out_shape=shape, resampling=Resampling.nearest).astype(
            np.float32, copy=False
        )
        mask = ds.read_masks(band, out_shape=shape, resampling=Resampling.nearest) > 0
    return values, mask & np.isfinite(values)

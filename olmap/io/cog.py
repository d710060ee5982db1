"""Cloud-optimised GeoTIFFs (COGs) copied from rasters, and decimated samples of rasters.

A COG is a tiled GeoTIFF whose overviews and tiles are laid out so that a reader fetches
only the parts it shows (https://cogeo.org). GDAL's COG driver copies a tiled raster,
building the overviews on the way through its block cache, so peak memory depends on the
block size, not on the raster. COGs rendered window by window: :mod:`olmap.stream.cog`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.shutil
from rasterio._err import CPLE_BaseError  # GDAL's errors as rasterio raises them
from rasterio.enums import Resampling

from olmap.errors import InputError, first_line
from olmap.io.outputs import atomic_path, is_write_failure
from olmap.io.raster import gdal_env, gdal_write_errors, open_raster


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

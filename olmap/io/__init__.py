"""File input and output: rasters (GeoTIFF/VRT/PNG), tables, atomic outputs.

Computation never happens here and no other package opens files directly.
"""

from olmap.core.windows import block_windows, halo_window, sliding_windows
from olmap.io.outputs import atomic_dir, atomic_path, check_writable
from olmap.io.raster import (
    RasterInfo,
    band_index,
    check_coregistered,
    create_raster,
    micrometre_transform,
    open_raster,
    pixel_size_from_transform,
    raster_info,
    read_image,
    read_raster,
    write_raster,
)

__all__ = [
    "RasterInfo",
    "atomic_dir",
    "atomic_path",
    "band_index",
    "block_windows",
    "check_coregistered",
    "check_writable",
    "create_raster",
    "halo_window",
    "micrometre_transform",
    "open_raster",
    "pixel_size_from_transform",
    "raster_info",
    "read_image",
    "read_raster",
    "sliding_windows",
    "write_raster",
]

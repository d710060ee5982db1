"""Parameters of ``olmap tiles``: display scales, COGs, the XYZ pyramid and the viewer."""

from __future__ import annotations

from typing import Literal

from matplotlib import colormaps
from pydantic import BaseModel, ConfigDict, Field, model_validator


class TilesConfig(BaseModel):
    """Everything that defines ``olmap tiles`` (``configs/tiles/tiles.yaml``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Pyramid engine. libvips' dzsave (Google layout) is the field's standard for gigapixel
    # pyramids; "rasterio" cuts tiles from the display COG's overviews. Measured side by
    # side on a 400 Mpx section in docs/benchmarks.md ("Tiles and viewer").
    backend: Literal["vips", "rasterio"] = "vips"
    # XYZ tile side (px): 256 is what Leaflet and every web map expect.
    tile_size: int = Field(256, ge=64, le=1024)
    # PNG keeps grey levels and colours exact; WebP (lossless) makes smaller files.
    tile_format: Literal["png", "webp"] = "png"
    # COG internal tiles (px) and compression. 512 px is GDAL's COG default; deflate is read
    # by every GIS (ZSTD is not, in older QGIS builds).
    cog_blocksize: int = Field(512, ge=128, le=4096)
    cog_compress: Literal["deflate", "lzw", "zstd", "none"] = "deflate"
    # BSE grey stretch: these percentiles of the valid pixels map to black and white (a
    # common 0.5 % clip of scientific image viewers; olmap's previews use 1-99 on crops).
    bse_percentiles: tuple[float, float] = (0.5, 99.5)
    # mg# colour scale: a fixed range, or percentiles of the mapped pixels when null. The
    # paper's section spans Fo 0.65-0.95 (seed 002 Fig. 12), too wide to show zoning of a
    # few hundredths, hence percentiles by default.
    mg_range: tuple[float, float] | None = None
    mg_percentiles: tuple[float, float] = (1.0, 99.0)
    # Matplotlib colour maps (perceptually uniform).
    mg_cmap: str = "viridis"
    prob_cmap: str = "magma"
    # Longest side (px) of the decimated read that estimates percentiles (bounded memory).
    sample_px: int = Field(2048, ge=64)
    # Crystal outlines in the viewer are simplified by this tolerance (px; Douglas-Peucker,
    # topology kept) and rounded to 0.01 µm; Leaflet simplifies again per zoom level.
    simplify_px: float = Field(0.5, ge=0)
    # Threads for the rasterio engine (tile reads and PNG encoding release the GIL).
    workers: int = Field(2, ge=1, le=64)

    @model_validator(mode="after")
    def _check_ranges(self) -> TilesConfig:
        for name in ("bse_percentiles", "mg_percentiles"):
            lo, hi = getattr(self, name)
            if not 0 <= lo < hi <= 100:
                raise ValueError(f"{name} must be two percentiles 0 <= lo < hi <= 100")
        if self.mg_range is not None and not self.mg_range[0] < self.mg_range[1]:
            raise ValueError("mg_range must be (low, high) with low < high")
        if self.tile_size & (self.tile_size - 1):
            raise ValueError("tile_size must be a power of two")
        for name in ("mg_cmap", "prob_cmap"):  # caught before any work, not mid-run
            if getattr(self, name) not in colormaps:
                raise ValueError(f"{name}: unknown matplotlib colour map {getattr(self, name)!r}")
        return self

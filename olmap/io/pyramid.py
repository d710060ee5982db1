"""The XYZ tile grid of a raster: zoom levels, tiles and the pixels each tile covers.

Zoom 0 shows the whole raster in one tile; each zoom level doubles the resolution, and the
deepest level (:attr:`PyramidSpec.max_zoom`) shows one raster pixel per screen pixel. Tiles are
anchored at the raster's top-left corner and numbered ``z/y/x`` (row ``y``, column ``x``), the
"Google" layout of libvips' dzsave; edge tiles are padded with transparent pixels.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

from rasterio.windows import Window


@dataclass(frozen=True)
class PyramidSpec:
    """The tile pyramid of a ``height`` x ``width`` px raster.

    Examples
    --------
    >>> spec = PyramidSpec(height=700, width=1000)
    >>> spec.max_zoom, spec.grid(2), spec.grid(0)
    (2, (3, 4), (1, 1))
    >>> spec.source_window(2, 3, 2)
    (Window(col_off=768, row_off=512, width=232, height=188), (188, 232))
    """

    height: int
    width: int
    tile_size: int = 256

    def __post_init__(self) -> None:
        if self.height < 1 or self.width < 1 or self.tile_size < 1:
            raise ValueError("height, width and tile_size must be positive")

    @property
    def max_zoom(self) -> int:
        """Deepest zoom level: one raster pixel per tile pixel."""
        return max(0, math.ceil(math.log2(max(self.height, self.width) / self.tile_size)))

    def scale(self, zoom: int) -> int:
        """Raster pixels per tile pixel (along one side) at ``zoom``."""
        if not 0 <= zoom <= self.max_zoom:
            raise ValueError(f"zoom {zoom} outside 0-{self.max_zoom}")
        return 2 ** (self.max_zoom - zoom)

    def grid(self, zoom: int) -> tuple[int, int]:
        """(rows, cols) of tiles at ``zoom``."""
        span = self.tile_size * self.scale(zoom)
        return math.ceil(self.height / span), math.ceil(self.width / span)

    def n_tiles(self) -> int:
        """Tiles in the whole pyramid."""
        return sum(r * c for r, c in (self.grid(z) for z in range(self.max_zoom + 1)))

    def tiles(self, zoom: int) -> Iterator[tuple[int, int]]:
        """(x, y) of every tile at ``zoom``, row by row."""
        rows, cols = self.grid(zoom)
        for y in range(rows):
            for x in range(cols):
                yield x, y

    def source_window(self, zoom: int, x: int, y: int) -> tuple[Window, tuple[int, int]]:
        """Raster pixels under tile ``(zoom, x, y)`` and their size in the tile.

        Returns
        -------
        window : Window
            Full-resolution pixels, clipped to the raster.
        shape : (int, int)
            (rows, cols) they occupy at the tile's top-left corner; the rest is padding.
        """
        s = self.scale(zoom)
        span = self.tile_size * s
        c0, r0 = x * span, y * span
        if not (0 <= c0 < self.width and 0 <= r0 < self.height):
            raise ValueError(f"tile {zoom}/{y}/{x} lies outside the raster")
        w, h = min(span, self.width - c0), min(span, self.height - r0)
        return Window(c0, r0, w, h), (math.ceil(h / s), math.ceil(w / s))

"""Tiled maps and the offline web viewer of a section (``olmap tiles``).

* :mod:`olmap.tiles.colour` -- display scales: values to grey or RGBA;
* :mod:`olmap.io.pyramid` -- the XYZ tile grid (zoom 0: the whole section in one tile);
* :mod:`olmap.tiles.viewer` -- the catalogue as the viewer draws it;
* :mod:`olmap.tiles.site` -- the whole site: COGs, pyramids, crystals, ``index.html``.

File writers live in :mod:`olmap.io.cog` (COGs) and :mod:`olmap.io.xyz` (pyramids); the
viewer's HTML, JavaScript and vendored Leaflet in ``olmap/tiles/static/``.
"""

# olmap.tiles.site is not imported here: it uses olmap.io, which uses olmap.io.pyramid.
from olmap.io.pyramid import PyramidSpec
from olmap.tiles.colour import ColourScale, apply_colour_scale
from olmap.tiles.config import TilesConfig

__all__ = ["ColourScale", "PyramidSpec", "TilesConfig", "apply_colour_scale"]

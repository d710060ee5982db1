"""Crystals: individual olivine grains as connected components of a mosaic-sized mask.

``label`` finds the components exactly, chunk by chunk in bounded memory, and writes their ids
as a label raster.
"""

from olmap.core.components import Components, component_pixels, label_components
from olmap.crystals.label import label_raster

__all__ = ["Components", "component_pixels", "label_components", "label_raster"]

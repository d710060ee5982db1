"""Training tiles cut from co-registered BSE + label maps, split by acquisition session.

Splits follow the paper's Table 1 (seed 002): whole sessions/regions go to train, validation
or test, never random tiles, because tiles of one session share its drift and neighbours.
"""

from olmap.dataset.tiles import (
    session_table,
    split_overlaps,
    tile_fractions,
    tile_windows,
)

__all__ = ["session_table", "split_overlaps", "tile_fractions", "tile_windows"]

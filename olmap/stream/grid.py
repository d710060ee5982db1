"""The blocks of an n-D array (a 2D raster, a 3D volume), each with a halo of context.

A *block* is one cell of a non-overlapping grid; its *halo* is the margin read around it so that
filters see real neighbours, clipped at the array's edges (where filters use their own boundary
mode, exactly as on the whole array). With a halo at least the reach of every filter, a block
computed from its padded read equals the same region of the whole-array computation.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

Region = tuple[slice, ...]


@dataclass(frozen=True)
class Block:
    """One block of a :class:`BlockGrid`.

    Attributes
    ----------
    index : int
        Position in the grid's C (row-major) order.
    inner : tuple of slice
        The block's own region of the array.
    outer : tuple of slice
        ``inner`` grown by the halo and clipped to the array: what to read.
    crop : tuple of slice
        Where ``inner`` lies inside an array read over ``outer``.
    """

    index: int
    inner: Region
    outer: Region
    crop: Region

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the inner region."""
        return tuple(s.stop - s.start for s in self.inner)

    @property
    def size(self) -> int:
        """Number of elements (px or voxels) of the inner region."""
        return math.prod(self.shape)


@dataclass(frozen=True)
class BlockGrid:
    """A grid of blocks over an array of ``shape``; the last block on each axis is cropped.

    Parameters
    ----------
    shape : sequence of int
        Array shape, e.g. ``(z, y, x)`` or ``(rows, cols)``.
    block : int or sequence of int
        Block shape (one int: the same on every axis).
    halo : int or sequence of int
        Margin read around each block, per axis.

    Examples
    --------
    >>> grid = BlockGrid((5, 4), (2, 4), halo=1)
    >>> len(grid), grid.counts
    (3, (3, 1))
    >>> b = grid[1]
    >>> [(s.start, s.stop) for s in b.inner], [(s.start, s.stop) for s in b.outer]
    ([(2, 4), (0, 4)], [(1, 5), (0, 4)])
    >>> [(s.start, s.stop) for s in b.crop]
    [(1, 3), (0, 4)]
    """

    shape: tuple[int, ...]
    block: tuple[int, ...]
    halo: tuple[int, ...]

    def __init__(
        self, shape: Sequence[int], block: int | Sequence[int], halo: int | Sequence[int] = 0
    ) -> None:
        shape = tuple(int(s) for s in shape)
        n = len(shape)
        block = (int(block),) * n if isinstance(block, int) else tuple(int(b) for b in block)
        halo = (int(halo),) * n if isinstance(halo, int) else tuple(int(h) for h in halo)
        if len(block) != n or len(halo) != n:
            raise ValueError(f"block {block} and halo {halo} must have {n} axes like {shape}")
        if min(shape, default=0) < 1 or min(block) < 1 or min(halo) < 0:
            raise ValueError(f"need shape and block > 0 and halo >= 0: {shape}, {block}, {halo}")
        object.__setattr__(self, "shape", shape)
        clipped = tuple(min(b, s) for b, s in zip(block, shape, strict=True))
        object.__setattr__(self, "block", clipped)
        object.__setattr__(self, "halo", halo)

    @property
    def counts(self) -> tuple[int, ...]:
        """Blocks along each axis."""
        return tuple(-(-s // b) for s, b in zip(self.shape, self.block, strict=True))

    def __len__(self) -> int:
        return math.prod(self.counts)

    def __getitem__(self, index: int) -> Block:
        if not 0 <= index < len(self):
            raise IndexError(f"block {index} outside 0-{len(self) - 1}")
        pos = []
        for count in reversed(self.counts):
            index, r = divmod(index, count)
            pos.append(r)
        return self._block(tuple(reversed(pos)))

    def __iter__(self) -> Iterator[Block]:
        for pos in itertools.product(*(range(c) for c in self.counts)):
            yield self._block(pos)

    def _block(self, pos: tuple[int, ...]) -> Block:
        inner = tuple(
            slice(p * b, min(size, (p + 1) * b))
            for p, size, b in zip(pos, self.shape, self.block, strict=True)
        )
        index = 0
        for p, c in zip(pos, self.counts, strict=True):
            index = index * c + p
        return Block(index, inner, *grow_region(inner, self.shape, self.halo))

    def blocks_touching(self, axis: int, start: int, stop: int) -> list[Block]:
        """Blocks whose inner region meets ``start:stop`` along ``axis`` (e.g. scribbled slices).

        Examples
        --------
        >>> [b.index for b in BlockGrid((6, 2), (2, 2)).blocks_touching(0, 3, 4)]
        [1]
        """
        lo, hi = start // self.block[axis], -(-stop // self.block[axis])
        return [b for b in self if lo <= b.inner[axis].start // self.block[axis] < hi]


def grow_region(region: Region, shape: Sequence[int], halo: Sequence[int]) -> tuple[Region, Region]:
    """``region`` grown by ``halo`` per axis and clipped to ``shape`` (what to read), and where
    ``region`` lies inside it (what to keep).

    Examples
    --------
    >>> outer, crop = grow_region((slice(0, 4), slice(5, 8)), (10, 10), (2, 2))
    >>> [(s.start, s.stop) for s in outer], [(s.start, s.stop) for s in crop]
    ([(0, 6), (3, 10)], [(0, 4), (2, 5)])
    """
    outer, crop = [], []
    for s, n, h in zip(region, shape, halo, strict=True):
        o0, o1 = max(0, s.start - h), min(n, s.stop + h)
        outer.append(slice(o0, o1))
        crop.append(slice(s.start - o0, s.stop - o0))
    return tuple(outer), tuple(crop)

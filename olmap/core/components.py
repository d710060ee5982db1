"""Exact connected-component labelling of gigapixel masks and volumes in bounded memory.

2D mosaics: :func:`label_components` (statistics) and :func:`write_component_ids` (ids);
n-D arrays such as CT volumes: :func:`label_nd`. Both give the ids
:func:`scipy.ndimage.label` gives the whole array.

The mosaic is labelled one chunk at a time (:func:`olmap.core.windows.block_windows`), each chunk
with :func:`scipy.ndimage.label`, as dask-image's ``ndmeasure.label`` does; chunk-local labels
that touch across a chunk border are then joined with a union-find
(:func:`scipy.sparse.csgraph.connected_components`). Unlike dask-image the chunks are streamed
in raster order and the label image is never held: between chunks only the last label row of
the chunk row above (``width`` px), the last label column of the chunk to the left and the
per-label statistics are kept, so peak memory depends on the chunk size and the number of
components, never on the mosaic area.

Glossary: a *provisional* label is a chunk-local label made globally unique by an offset; a
component crossing chunk borders has several. The *seed* of a component is its first pixel in
raster order (smallest row, then smallest column). Final ids ``1..N`` follow the raster order
of the seeds, which is the numbering :func:`scipy.ndimage.label` and
:func:`skimage.measure.label` give the whole image, so chunked and whole-image labels are equal
without relabelling.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from rasterio.windows import Window
from scipy import ndimage as ndi
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from olmap.core.windows import block_windows

#: ``read_mask(window)`` returns the mask over ``window``: bool or uint8, nonzero = foreground.
MaskReader = Callable[[Window], np.ndarray]
#: ``progress(n_done_chunks, n_chunks)``.
Progress = Callable[[int, int], None]

CONNECTIVITIES = (1, 2)
_FIELDS = ("seed_row", "seed_col", "row0", "col0", "row1", "col1", "area", "touches_edge")


@dataclass(frozen=True, eq=False)
class Components:
    """Per-component statistics of a labelled mask; index ``i`` describes component ``i + 1``.

    Attributes
    ----------
    seed_row, seed_col : ndarray of int64
        First pixel of each component in raster order (px): smallest row, then smallest col.
    row0, col0, row1, col1 : ndarray of int64
        Bounding box (px), end exclusive.
    area : ndarray of int64
        Number of pixels.
    touches_edge : ndarray of bool
        True where a pixel lies on the first or last row or column of the mosaic (the
        component may be cut by the mosaic border).
    height, width : int
        Mosaic shape (px).
    connectivity : int
        1 (4-neighbour) or 2 (8-neighbour).
    """

    seed_row: np.ndarray
    seed_col: np.ndarray
    row0: np.ndarray
    col0: np.ndarray
    row1: np.ndarray
    col1: np.ndarray
    area: np.ndarray
    touches_edge: np.ndarray
    height: int
    width: int
    connectivity: int

    def __len__(self) -> int:
        return len(self.area)

    def bbox_window(self, i: int) -> Window:
        """Bounding box of component id ``i`` (1-based) as a window (px).

        Raises
        ------
        IndexError
            Unless ``1 <= i <= len(self)``.
        """
        if not 1 <= i <= len(self):
            raise IndexError(f"component id {i} out of range 1..{len(self)}")
        k = i - 1
        r0, c0 = int(self.row0[k]), int(self.col0[k])
        return Window(c0, r0, int(self.col1[k]) - c0, int(self.row1[k]) - r0)

    def to_frame(self) -> pd.DataFrame:
        """One row per component: ``id`` (1-based) and the per-component fields."""
        data = {"id": np.arange(1, len(self) + 1, dtype=np.int64)}
        data.update({name: getattr(self, name) for name in _FIELDS})
        return pd.DataFrame(data)


def _structure(connectivity: int) -> np.ndarray:
    if connectivity not in CONNECTIVITIES:
        raise ValueError(
            f"connectivity must be 1 (4-neighbour) or 2 (8-neighbour), got {connectivity}"
        )
    return ndi.generate_binary_structure(2, connectivity)


def _read(read_mask: MaskReader, window: Window) -> np.ndarray:
    mask = np.asarray(read_mask(window))
    shape = (int(window.height), int(window.width))
    if mask.shape != shape:
        raise ValueError(f"read_mask returned shape {mask.shape} for a {shape} px window")
    return mask != 0


def _provisional(line: np.ndarray, offset: int) -> np.ndarray:
    """Chunk-local labels of one border line made globally unique (int64, 0 stays 0)."""
    line = line.astype(np.int64)
    return np.where(line > 0, line + offset, 0)


def _contacts(a: np.ndarray, b: np.ndarray, connectivity: int) -> np.ndarray:
    """Pairs ``(a_label, b_label)`` of foreground pixels touching across two adjacent lines.

    ``a`` and ``b`` are aligned label lines (0 = background) on either side of a border;
    connectivity 2 adds the diagonal neighbours ``a[j]``-``b[j ± 1]``.
    """
    pairs = [(a, b)]
    if connectivity == 2:
        pairs += [(a[:-1], b[1:]), (a[1:], b[:-1])]
    found = [np.stack([x[(x > 0) & (y > 0)], y[(x > 0) & (y > 0)]]) for x, y in pairs]
    return np.unique(np.concatenate(found, axis=1), axis=1)


@dataclass
class _Pass:
    """Result of the streaming pass: the components and how to map chunk labels to ids."""

    components: Components
    #: Final id of each provisional label (index = provisional label - 1).
    final_ids: np.ndarray
    #: Provisional label offset and number of labels of each chunk, in chunk order.
    offsets: list[int]
    counts: list[int]


def _stream_labels(
    read_mask: MaskReader,
    height: int,
    width: int,
    chunk: int,
    connectivity: int,
    progress: Progress | None,
    n_total: int | None = None,
) -> _Pass:
    structure = _structure(connectivity)
    windows = block_windows(height, width, chunk)
    n_total = n_total or len(windows)
    # Last label row of the chunk row above, and of the row being built (provisional labels).
    above = np.zeros(width, np.int64)
    below = np.zeros(width, np.int64)
    left = np.zeros(0, np.int64)
    row_off = -1
    offset = 0
    offsets: list[int] = []
    counts: list[int] = []
    stats: list[np.ndarray] = []
    edges: list[np.ndarray] = []
    for k, win in enumerate(windows):
        r0, c0 = int(win.row_off), int(win.col_off)
        h, w = int(win.height), int(win.width)
        if r0 != row_off:
            above, below, row_off = below, above, r0
            left = np.zeros(h, np.int64)
        labels, n = ndi.label(_read(read_mask, win), structure=structure)
        offsets.append(offset)
        counts.append(n)
        top, first_col = _provisional(labels[0], offset), _provisional(labels[:, 0], offset)
        if r0 > 0:
            # Widen by one column each side: with 8-connectivity the top corners of this chunk
            # touch the bottom corners of the diagonal neighbours in the chunk row above.
            lo, hi = max(c0 - 1, 0), min(c0 + w + 1, width)
            b = np.zeros(hi - lo, np.int64)
            b[c0 - lo : c0 - lo + w] = top
            edges.append(_contacts(above[lo:hi], b, connectivity))
        if c0 > 0:
            edges.append(_contacts(left, first_col, connectivity))
        below[c0 : c0 + w] = _provisional(labels[-1], offset)
        left = _provisional(labels[:, -1], offset)

        if n:
            slices = ndi.find_objects(labels)
            box = np.array(
                [(s[0].start, s[1].start, s[0].stop, s[1].stop) for s in slices], np.int64
            ) + np.array([r0, c0, r0, c0], np.int64)
            flat = labels.ravel()
            where = np.flatnonzero(flat)
            area = np.bincount(flat[where], minlength=n + 1)[1:].astype(np.int64)
            # The seed is the smallest raster (flat) index of a label; a minimum per label is
            # linear, where sorting the chunk (np.unique) cost 5x the labelling itself.
            first = np.full(n, flat.size, np.int64)
            np.minimum.at(first, flat[where] - 1, where)
            seed = (r0 + first // w) * width + (c0 + first % w)
            stats.append(np.column_stack([seed, box, area]))
        offset += n
        if progress is not None:
            progress(k + 1, n_total)

    if offset == 0:
        comps = Components(
            *(np.zeros(0, np.int64) for _ in range(7)),
            np.zeros(0, bool),
            height=height,
            width=width,
            connectivity=connectivity,
        )
        return _Pass(comps, np.zeros(0, np.int64), offsets, counts)

    pairs = np.concatenate([np.zeros((2, 0), np.int64), *edges], axis=1) - 1
    graph = coo_matrix((np.ones(pairs.shape[1], np.int8), (pairs[0], pairs[1])), (offset, offset))
    n_comp, group = connected_components(graph, directed=False)
    prov = np.concatenate(stats)
    seed = np.full(n_comp, np.iinfo(np.int64).max)
    row0, col0 = np.full(n_comp, height, np.int64), np.full(n_comp, width, np.int64)
    row1, col1 = np.zeros(n_comp, np.int64), np.zeros(n_comp, np.int64)
    area = np.zeros(n_comp, np.int64)
    for out, col, ufunc in [
        (seed, 0, np.minimum),
        (row0, 1, np.minimum),
        (col0, 2, np.minimum),
        (row1, 3, np.maximum),
        (col1, 4, np.maximum),
        (area, 5, np.add),
    ]:
        ufunc.at(out, group, prov[:, col])
    # connected_components numbers groups arbitrarily; renumber by seed raster order.
    order = np.argsort(seed, kind="stable")
    rank = np.empty(n_comp, np.int64)
    rank[order] = np.arange(1, n_comp + 1)
    row0, col0, row1, col1 = row0[order], col0[order], row1[order], col1[order]
    comps = Components(
        seed_row=seed[order] // width,
        seed_col=seed[order] % width,
        row0=row0,
        col0=col0,
        row1=row1,
        col1=col1,
        area=area[order],
        # The bbox is tight, so it reaches the mosaic border exactly when a pixel does.
        touches_edge=(row0 == 0) | (col0 == 0) | (row1 == height) | (col1 == width),
        height=height,
        width=width,
        connectivity=connectivity,
    )
    return _Pass(comps, rank[group], offsets, counts)


def label_components(
    read_mask: MaskReader,
    height: int,
    width: int,
    *,
    chunk: int = 2048,
    connectivity: int = 2,
    progress: Progress | None = None,
) -> Components:
    """Find the connected components of a mask read chunk by chunk, exactly.

    Parameters
    ----------
    read_mask : callable
        ``read_mask(window)`` returns the mask over a :class:`~rasterio.windows.Window`
        (bool or uint8, nonzero = foreground); map nodata to background before.
    height, width : int
        Mosaic shape (px).
    chunk : int
        Chunk side (px); peak memory grows with ``chunk²``, not with the mosaic.
    connectivity : {1, 2}
        1: pixels sharing an edge are connected (4-neighbour); 2: also those sharing a corner
        (8-neighbour).
    progress : callable, optional
        Called as ``progress(n_done_chunks, n_chunks)`` after each chunk.

    Returns
    -------
    Components
        Ids ``1..N`` in raster order of the seed pixels, as :func:`scipy.ndimage.label`
        numbers the whole image.

    Raises
    ------
    ValueError
        For a connectivity other than 1 or 2, or a read of the wrong shape.

    Examples
    --------
    >>> mask = np.array([[1, 0, 0, 1],
    ...                  [0, 1, 1, 0],
    ...                  [0, 0, 0, 0],
    ...                  [1, 1, 0, 1]], bool)
    >>> def read(window):
    ...     return mask[window.toslices()]
    >>> comps = label_components(read, 4, 4, chunk=2)
    >>> len(comps), comps.area.tolist(), comps.seed_col.tolist()
    (3, [4, 2, 1], [0, 0, 3])
    >>> len(label_components(read, 4, 4, chunk=2, connectivity=1))
    5
    """
    return _stream_labels(read_mask, height, width, chunk, connectivity, progress).components


#: ``write_labels(window, ids)`` stores the uint32 component ids of one chunk.
LabelWriter = Callable[[Window, np.ndarray], None]


def write_component_ids(
    read_mask: MaskReader,
    height: int,
    width: int,
    write_labels: LabelWriter,
    *,
    chunk: int = 2048,
    connectivity: int = 2,
    progress: Progress | None = None,
) -> Components:
    """Hand the component ids of a mask, chunk by chunk, to ``write_labels`` (0 = background).

    Two passes over the mask: :func:`label_components` finds the components, then each chunk is
    labelled again and its local labels are mapped to the global ids (an O(labels in the
    chunk) lookup), so memory stays bounded by the chunk size. Where the ids go (a GeoTIFF:
    :func:`olmap.crystals.label_raster`) is the caller's business.

    Parameters
    ----------
    read_mask : callable
        As for :func:`label_components`; it must return the same mask in both passes.
    height, width : int
        Mosaic shape (px).
    write_labels : callable
        ``write_labels(window, ids)`` with ``ids`` uint32 of the window's shape.
    chunk : int
        Chunk side (px).
    connectivity : {1, 2}
        1: 4-neighbour, 2: 8-neighbour.
    progress : callable, optional
        ``progress(n_done, n_total)``; both passes count, so ``n_total`` is twice the number
        of chunks.

    Returns
    -------
    Components
        The statistics of the ids written.

    Raises
    ------
    ValueError
        For a bad connectivity or chunk, too many components for uint32, or if the mask
        changed between the passes.

    Examples
    --------
    >>> mask = np.array([[1, 0, 1], [1, 0, 1]], bool)
    >>> out = np.zeros((2, 3), np.uint32)
    >>> def write(window, ids):
    ...     out[window.toslices()] = ids
    >>> n = len(write_component_ids(lambda w: mask[w.toslices()], 2, 3, write, chunk=2))
    >>> n, out.tolist()
    (2, [[1, 0, 2], [1, 0, 2]])
    """
    structure = _structure(connectivity)
    windows = block_windows(height, width, chunk)
    n_total = 2 * len(windows)
    result = _stream_labels(read_mask, height, width, chunk, connectivity, progress, n_total)
    n = len(result.components)
    if n > np.iinfo(np.uint32).max:
        raise ValueError(f"{n} components do not fit a uint32 label raster")
    final_ids = result.final_ids.astype(np.uint32)
    for k, (win, off, count) in enumerate(zip(windows, result.offsets, result.counts, strict=True)):
        labels, m = ndi.label(_read(read_mask, win), structure=structure)
        if m != count:
            raise ValueError(
                f"read_mask returned a different mask in the second pass ({m} labels in "
                f"window {tuple(map(int, win.flatten()))}, {count} before)"
            )
        lookup = np.concatenate([np.zeros(1, np.uint32), final_ids[off : off + m]])
        write_labels(win, lookup[labels])
        if progress is not None:
            progress(len(windows) + k + 1, n_total)
    return result.components


def component_pixels(
    mask_window: np.ndarray, seed_rc: tuple[int, int], connectivity: int = 2
) -> np.ndarray:
    """The pixels of one component, from the mask read over its bounding box.

    Exact although only the bbox is read: every pixel of a component lies inside its bbox, and
    so does every path of component pixels between them, so labelling the window joins all of
    the component and nothing else. Pixels of other components that share the bbox stay
    separate, because any path joining them to this one would be inside the window too.

    Parameters
    ----------
    mask_window : ndarray
        Mask over the component's :meth:`Components.bbox_window` (nonzero = foreground).
    seed_rc : (int, int)
        Seed pixel (px) relative to the window: ``(seed_row - row0, seed_col - col0)``.
    connectivity : {1, 2}
        As used to find the component.

    Returns
    -------
    ndarray of bool
        Shape of ``mask_window``; True on the component's pixels.

    Raises
    ------
    ValueError
        If the seed is background, or for a bad connectivity.

    Examples
    --------
    >>> window = np.array([[1, 1, 0], [0, 0, 1], [1, 0, 1]], bool)
    >>> component_pixels(window, (0, 0), connectivity=1).astype(int).tolist()
    [[1, 1, 0], [0, 0, 0], [0, 0, 0]]
    """
    labels, _ = ndi.label(np.asarray(mask_window) != 0, structure=_structure(connectivity))
    label = labels[seed_rc]
    if label == 0:
        raise ValueError(f"seed {tuple(seed_rc)} is background in the window")
    return labels == label


# --- n-D (volumes) -------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class ComponentsND:
    """Per-component statistics of an n-D labelled mask; index ``i`` is component ``i + 1``.

    Attributes
    ----------
    seed : ndarray (n, ndim) of int64
        First voxel of each component in C order (ids ``1..n`` follow this order, as
        :func:`scipy.ndimage.label` numbers the whole array).
    lower, upper : ndarray (n, ndim) of int64
        Bounding box, end exclusive.
    size : ndarray of int64
        Voxels per component.
    shape : tuple of int
    connectivity : int
    """

    seed: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    size: np.ndarray
    shape: tuple[int, ...]
    connectivity: int

    def __len__(self) -> int:
        return len(self.size)

    @property
    def touches_edge(self) -> np.ndarray:
        """True where the component reaches a face of the array (it may be cut there)."""
        return np.any(self.lower == 0, axis=1) | np.any(self.upper == np.array(self.shape), axis=1)


def _chunk_positions(shape, chunk):
    import itertools

    counts = [-(-s // c) for s, c in zip(shape, chunk, strict=True)]
    return counts, list(itertools.product(*(range(n) for n in counts)))


def _chunk_region(pos, shape, chunk):
    return tuple(
        slice(p * c, min(s, (p + 1) * c)) for p, c, s in zip(pos, chunk, shape, strict=True)
    )


def label_nd(
    read: Callable[[tuple[slice, ...]], np.ndarray],
    shape: tuple[int, ...],
    chunk: int | tuple[int, ...],
    *,
    connectivity: int = 1,
    write: Callable[[tuple[slice, ...], np.ndarray], None] | None = None,
    progress: Progress | None = None,
) -> ComponentsND:
    """Exact connected components of an n-D mask (a volume) read chunk by chunk.

    Chunks are labelled with :func:`scipy.ndimage.label` in C order; labels that touch across
    a chunk face (edges and corners too, as ``connectivity`` allows) are joined with a
    union-find (:func:`scipy.sparse.csgraph.connected_components`). Only the last plane of
    each chunk along each axis is kept while a later chunk may touch it, so memory is about
    one chunk plus one plane of the array. With ``write`` a second pass hands each chunk's
    final ids (uint32; 0 = background) to ``write(region, ids)``.

    Parameters
    ----------
    read : callable
        ``read(region)`` returns the mask over a tuple of slices (nonzero = foreground).
    shape : tuple of int
    chunk : int or tuple of int
    connectivity : int
        1 (faces) to ``ndim`` (faces, edges and corners), as :func:`scipy.ndimage.label`.
    write : callable, optional
    progress : callable, optional
        ``progress(done, total)`` over both passes.

    Examples
    --------
    >>> vol = np.zeros((4, 4, 4), bool)
    >>> vol[0, 0, 0] = vol[1, 1, 1] = vol[3, 3, 3] = True
    >>> read = lambda region: vol[region]
    >>> [len(label_nd(read, vol.shape, 2, connectivity=c)) for c in (1, 3)]
    [3, 2]
    """
    import itertools

    ndim = len(shape)
    chunk = (chunk,) * ndim if isinstance(chunk, int) else tuple(chunk)
    if not 1 <= connectivity <= ndim:
        raise ValueError(f"connectivity must be 1-{ndim}, got {connectivity}")
    structure = ndi.generate_binary_structure(ndim, connectivity)
    counts, positions = _chunk_positions(shape, chunk)
    order = {p: k for k, p in enumerate(positions)}
    total = len(positions) * (2 if write is not None else 1)
    offsets, numbers = [], []
    seeds, lowers, uppers, sizes, pairs = [], [], [], [], []
    last: dict[tuple[int, tuple[int, ...]], np.ndarray] = {}
    n = 0
    strides = np.cumprod((1, *shape[::-1]))[:-1][::-1]
    for k, pos in enumerate(positions):
        region = _chunk_region(pos, shape, chunk)
        labels, m = ndi.label(np.asarray(read(region)) != 0, structure=structure)
        if labels.shape != tuple(s.stop - s.start for s in region):
            raise ValueError(f"read returned {labels.shape} for region {region}")
        labels = labels.astype(np.int64)
        labels[labels > 0] += n
        offsets.append(n)
        numbers.append(m)
        start = np.array([s.start for s in region])
        if m:
            objs = ndi.find_objects(labels - n * (labels > 0))
            lowers.append(np.array([[s.start for s in o] for o in objs]) + start)
            uppers.append(np.array([[s.stop for s in o] for o in objs]) + start)
            flat = labels.ravel()
            ids, first = np.unique(flat, return_index=True)
            first = first[ids > 0]
            local = np.column_stack(np.unravel_index(first, labels.shape))
            seeds.append(local + start)
            sizes.append(np.bincount(flat - n * (flat > 0), minlength=m + 1)[1:])
        for a in range(ndim):
            if pos[a] > 0:
                plane = labels[(slice(None),) * a + (0,)]
                for delta in itertools.product(*([(-1, 0, 1)] * (ndim - a - 1))):
                    other = (
                        *pos[:a],
                        pos[a] - 1,
                        *(p + d for p, d in zip(pos[a + 1 :], delta, strict=True)),
                    )
                    if (a, other) not in last:
                        continue
                    oplane = last[(a, other)]
                    oregion = _chunk_region(other, shape, chunk)
                    pairs.extend(_plane_contacts(plane, region, oplane, oregion, a, connectivity))
            last[(a, pos)] = labels[(slice(None),) * a + (-1,)].copy()
        # planes no later chunk can touch are dropped (memory: about one plane of the array)
        for key in [key for key in last if _last_user(key, counts, order) < k + 1]:
            del last[key]
        n += m
        if progress is not None:
            progress(k + 1, total)
    if n == 0:
        empty = np.zeros((0, ndim), np.int64)
        comps = ComponentsND(empty, empty, empty, np.zeros(0, np.int64), tuple(shape), connectivity)
    else:
        seed = np.concatenate(seeds)
        edges = np.array(pairs, np.int64).reshape(-1, 2) - 1
        graph = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(n, n))
        _, group = connected_components(graph, directed=False)
        flat_seed = seed @ strides
        first_of_group = np.full(group.max() + 1, np.iinfo(np.int64).max)
        np.minimum.at(first_of_group, group, flat_seed)
        rank = np.empty_like(first_of_group)
        rank[np.argsort(first_of_group)] = np.arange(len(first_of_group))
        final = rank[group]  # 0-based final id of each provisional label
        g = len(first_of_group)
        lower = np.full((g, ndim), np.iinfo(np.int64).max)
        upper = np.zeros((g, ndim), np.int64)
        np.minimum.at(lower, final, np.concatenate(lowers))
        np.maximum.at(upper, final, np.concatenate(uppers))
        size = np.bincount(final, weights=np.concatenate(sizes), minlength=g).astype(np.int64)
        seed_out = np.column_stack(np.unravel_index(np.sort(first_of_group), shape))
        comps = ComponentsND(seed_out, lower, upper, size, tuple(shape), connectivity)
    if write is not None:
        lookup_all = (
            np.concatenate([[0], (final + 1).astype(np.uint32)]) if n else np.zeros(1, np.uint32)
        )
        for k, pos in enumerate(positions):
            region = _chunk_region(pos, shape, chunk)
            labels, m = ndi.label(np.asarray(read(region)) != 0, structure=structure)
            if m != numbers[k]:
                raise ValueError(f"read returned a different mask in the second pass at {region}")
            local = np.concatenate([[0], lookup_all[offsets[k] + 1 : offsets[k] + m + 1]]).astype(
                np.uint32
            )
            write(region, local[labels])
            if progress is not None:
                progress(len(positions) + k + 1, total)
    return comps


def _last_user(key, counts, order) -> int:
    """C-order index of the last chunk that may compare with plane ``key = (axis, pos)``."""
    a, pos = key
    user = list(pos)
    user[a] += 1
    if user[a] >= counts[a]:
        return -1  # no chunk after it along this axis
    for b in range(a + 1, len(pos)):
        user[b] = min(counts[b] - 1, pos[b] + 1)
    return order[tuple(user)]


def _plane_contacts(plane, region, oplane, oregion, axis, connectivity):
    """Label pairs touching across the face between ``plane`` (first plane of a chunk along
    ``axis``) and ``oplane`` (last plane of an earlier chunk)."""
    import itertools

    ndim = len(region)
    inplane = [b for b in range(ndim) if b != axis]
    out = []
    for d in itertools.product((-1, 0, 1), repeat=ndim - 1):
        if 1 + sum(x != 0 for x in d) > connectivity:
            continue
        sl_a, sl_b = [], []
        ok = True
        for b, db in zip(inplane, d, strict=True):
            # voxel u in plane (global g) touches v = g + db in oplane
            lo = max(region[b].start, oregion[b].start - db)
            hi = min(region[b].stop, oregion[b].stop - db)
            if hi <= lo:
                ok = False
                break
            sl_a.append(slice(lo - region[b].start, hi - region[b].start))
            sl_b.append(slice(lo + db - oregion[b].start, hi + db - oregion[b].start))
        if not ok:
            continue
        a_lab, b_lab = plane[tuple(sl_a)], oplane[tuple(sl_b)]
        both = (a_lab > 0) & (b_lab > 0)
        if both.any():
            out.extend(np.unique(np.column_stack([a_lab[both], b_lab[both]]), axis=0).tolist())
    return out

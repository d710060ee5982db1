"""Touching olivine crystals: one connected component of the mask, several crystals.

Crystals in a glomerocryst, or a microlite grown onto a phenocryst, form one component of the
olivine mask, and the paper counted them as one crystal (seed 002 sect. 3.9). Each crystal has
its own mg#, so its BSE grey level changes in a step where it meets another. olmap splits a
component along such steps: a watershed of the BSE gradient over-segments it, and adjacent
regions are merged back unless the mean gradient along their shared boundary is a step
(:func:`split_touching`). Cracks are bridged first, so they never split a crystal, and since
sharp zoning is a step too, pieces that are not convex enough to be crystals (rings, arcs) are
joined again (:func:`merge_concave`). Crystals of similar mg# show no step; a piece too
concave for one crystal is cut at its necks instead (:func:`split_concave`), and a small
crystal grown onto a larger one is cut off along the line between the two notches it makes in
their outline (:func:`split_at_notches`).
"""

from __future__ import annotations

import functools
import heapq
import itertools

import numpy as np
import shapely
import shapely.geometry
import shapely.ops
from rasterio import features
from scipy import ndimage as ndi
from scipy import sparse
from scipy.sparse import csgraph
from skimage import graph, morphology, segmentation

from olmap.core.filters import masked_gaussian
from olmap.crystals.measure import external_solid


def bse_gradient(bse: np.ndarray, crystal: np.ndarray, sigma_px: float) -> np.ndarray:
    """BSE gradient magnitude (grey levels per px) inside a crystal, blind to its outline.

    The smoothing is a normalised convolution over the crystal's pixels, so cracks, holes and
    the outline (darker epoxy or other minerals) make no gradient; pixels off the crystal take
    the crystal's values beside them.
    """
    image = np.where(np.isfinite(bse), bse, np.nan)
    valid = crystal & np.isfinite(image)
    if not valid.any():
        return np.zeros(crystal.shape)
    image = np.where(valid, image, np.nanmean(image[valid]))
    smooth = masked_gaussian(image, valid.astype(np.float64), sigma_px)
    # Sobel sums 8 x the central difference over three rows: /8 gives grey levels per px.
    return np.hypot(ndi.sobel(smooth, 0), ndi.sobel(smooth, 1)) / 8.0


def noise_sd(bse: np.ndarray, crystal: np.ndarray) -> float:
    """Standard deviation of the BSE noise inside a crystal (grey levels).

    From the differences of horizontal and vertical neighbours in the crystal's interior,
    robustly (median absolute deviation): zoning changes grey levels slowly and steps or
    cracks touch few pairs, so the differences are the noise's (variance 2σ²).
    """
    inner = ndi.binary_erosion(crystal) & np.isfinite(bse)
    diffs = [
        (bse[:, 1:] - bse[:, :-1])[inner[:, 1:] & inner[:, :-1]],
        (bse[1:, :] - bse[:-1, :])[inner[1:, :] & inner[:-1, :]],
    ]
    d = np.concatenate(diffs)
    if d.size < 16:
        return 0.0
    return float(1.4826 * np.median(np.abs(d - np.median(d))) / np.sqrt(2))


@functools.cache
def _unit_noise_gradient(sigma_px: float) -> float:
    """Median of :func:`bse_gradient` over white noise of sd 1 (its scale per grey level)."""
    noise = np.random.default_rng(0).normal(0.0, 1.0, (256, 256))
    return float(np.median(bse_gradient(noise, np.ones(noise.shape, bool), sigma_px)))


def noise_gradient(bse: np.ndarray, crystal: np.ndarray, sigma_px: float) -> float:
    """The median BSE gradient (grey levels per px) that a crystal's noise alone would make.

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> crystal = np.ones((200, 200), bool)
    >>> quiet, noisy = (150 + rng.normal(0, sd, crystal.shape) for sd in (3, 9))
    >>> ratio = noise_gradient(noisy, crystal, 0.7) / noise_gradient(quiet, crystal, 0.7)
    >>> bool(2.8 < ratio < 3.2)  # three times the noise, three times the gradient
    True
    """
    return noise_sd(bse, crystal) * _unit_noise_gradient(float(sigma_px))


def split_touching(
    crystal: np.ndarray,
    bse: np.ndarray,
    *,
    sigma_px: float = 0.7,
    h_min: float = 1.0,
    boundary_step: float = 2.0,
    noise_h: float | None = 1.0,
    noise_step: float | None = 2.0,
    close_cracks_px: int = 1,
    max_solidity_loss: float = 0.005,
    min_solidity: float = 0.6,
    shape_split_solidity: float | None = 0.9,
    shape_split_h_px: float = 1.0,
    shape_split_loss: float = 0.03,
    shape_split_min_pixels: int = 1000,
    notch_depth_px: float | None = None,
    notch_gap_ratio: float = 0.15,
    notch_min_solidity: float = 0.8,
    notch_max_part_pixels: int = 1000,
    min_piece_pixels: int = 1,
    step_image: np.ndarray | None = None,
    min_step: float | None = None,
) -> np.ndarray:
    """Label the crystals of one connected component along the BSE steps between them.

    Parameters
    ----------
    crystal : ndarray of bool (h, w)
        The component's pixels.
    bse : ndarray of float (h, w)
        BSE grey levels; NaN where there is no value.
    sigma_px : float
        Smoothing before the gradient (px).
    h_min : float
        Depth (grey levels per px) of the gradient minima that seed the over-segmentation.
    boundary_step : float
        Regions stay apart where the mean BSE gradient along their boundary exceeds this
        (grey levels per px): a step in mg# between crystals, not noise or gradual zoning.
    noise_h, noise_step : float or None
        ``h_min`` and ``boundary_step`` are raised to these multiples of the median gradient
        that the crystal's own BSE noise makes (:func:`noise_gradient`), so that noisier
        images are not cut along their noise (and the work stays bounded). None keeps the
        fixed values.
    close_cracks_px : int
        Radius (px) over which cracks are bridged, so that the two sides of a crack are
        neighbours and merge.
    max_solidity_loss, min_solidity : float
        Regions less solid than ``min_solidity`` (a ring or an arc of a zoned crystal), and
        regions whose union is about as convex as they are, are rejoined
        (:func:`merge_concave`): zoning steps, not crystal contacts, made them.
    shape_split_solidity, shape_split_h_px, shape_split_loss, shape_split_min_pixels
        Then pieces of at least ``shape_split_min_pixels`` px less solid than
        ``shape_split_solidity`` are cut at their necks (:func:`split_concave`): touching
        crystals without a BSE step. None skips this.
    notch_depth_px, notch_gap_ratio, notch_min_solidity, notch_max_part_pixels
        Then a small crystal grown onto a larger one is cut off between the notches it makes
        in the outline (:func:`split_at_notches`). None skips this.
    min_piece_pixels : int
        Pieces smaller than this join the neighbour they touch most (:func:`absorb_small`).
    step_image, min_step : ndarray of float (h, w) and float, optional
        Pieces of the gradient split whose levels in ``step_image`` (e.g. an mg# map, in which
        session drift is corrected) differ by less than ``min_step`` across their contact
        rejoin (:func:`confirm_steps`): the line between them was a ridge, not a step.
        Default: the BSE, with ``min_step`` the (noise-raised) ``boundary_step`` times 1 px.

    Returns
    -------
    ndarray of int32 (h, w)
        1..n on the crystal's pixels (n = 1: not split), 0 elsewhere.
    """
    crystal = np.asarray(crystal, bool)
    labels = crystal.astype(np.int32)
    if crystal.sum() < 16:
        return labels
    grad = bse_gradient(bse, crystal, sigma_px)
    noise = noise_gradient(bse, crystal, sigma_px)
    if noise_h is not None:
        h_min = max(h_min, noise_h * noise)
    if noise_step is not None:
        boundary_step = max(boundary_step, noise_step * noise)
    region = _bridged(crystal, close_cracks_px)
    seeds = morphology.h_minima(np.where(region, grad, grad.max()), h_min) & region
    markers, n = ndi.label(seeds)
    if n <= 1:
        # No BSE step to split along; the shape may still show two crystals.
        parts = region.astype(np.int32)
    else:
        parts = _merge_by_contrast(grad, markers, region, boundary_step)
        if parts.max() * min_piece_pixels > region.sum():
            # More pieces than crystals would fit: a texture (groundmass under the mask), not
            # touching crystals. Its specks join their neighbours first, so that the shape
            # steps below, whose work grows with the number of pieces, see crystal-sized ones.
            parts = absorb_small(parts, min_piece_pixels)
        if parts.max() > 1:
            level = bse if step_image is None else step_image
            parts = confirm_steps(parts, level, boundary_step if min_step is None else min_step)
        if parts.max() > 1:
            parts = merge_concave(parts, max_solidity_loss, min_solidity)
    if shape_split_solidity is not None:
        parts = split_concave(
            parts, shape_split_solidity, shape_split_h_px, shape_split_loss, shape_split_min_pixels
        )
    if min_piece_pixels > 1 and parts.max() > 1:
        parts = absorb_small(np.where(crystal, parts, 0), min_piece_pixels)
    if notch_depth_px is not None:
        # On whole pieces only: unabsorbed slivers would make notches of their own.
        parts = split_at_notches(
            np.where(crystal, parts, 0),
            notch_depth_px,
            notch_gap_ratio,
            notch_min_solidity,
            min_piece_pixels,
            notch_max_part_pixels,
        )
    labels[crystal] = parts[crystal]
    return _renumber(labels)


def _merge_by_contrast(
    grad: np.ndarray, markers: np.ndarray, region: np.ndarray, boundary_step: float
) -> np.ndarray:
    """Watershed of the gradient from ``markers``, merged back where boundaries are no step.

    Greedy hierarchical merging as :func:`skimage.graph.merge_hierarchical` does it (the
    boundary with the lowest mean gradient first; a merged region's boundary with a common
    neighbour takes the length-weighted mean), with the same order
    and result, but on plain dictionaries and a heap: skimage re-weights and re-queues every
    boundary of a merged region through networkx, which a large crystal's thousands of noise
    regions turn into minutes.
    """
    parts = segmentation.watershed(grad, markers, mask=region)
    rag = graph.rag_boundary(parts, grad)
    # Node 0 is the background around the crystal: merging through it would join crystals
    # that only share the outline's low gradient.
    if rag.has_node(0):
        rag.remove_node(0)
    nodes = list(rag.nodes)
    bounds: dict[int, dict[int, tuple[float, float]]] = {n: {} for n in nodes}
    version = dict.fromkeys(nodes, 0)
    heap = []
    for n1, n2, data in rag.edges(data=True):
        bounds[n1][n2] = bounds[n2][n1] = (data["weight"], data["count"])
        heap.append((data["weight"], n1, n2, 0, 0))
    heapq.heapify(heap)
    owner = {n: n for n in nodes}
    while heap and heap[0][0] < boundary_step:
        _, src, dst, v_src, v_dst = heapq.heappop(heap)
        if version.get(src) != v_src or version.get(dst) != v_dst:
            continue  # a side merged since this boundary was queued
        # src joins dst; boundaries with a common neighbour are joined (mean by length)
        mine, theirs = bounds.pop(src), bounds[dst]
        for k in (mine.keys() | theirs.keys()) - {src, dst}:
            w1, c1 = mine.get(k, (0.0, 0))
            w2, c2 = theirs.get(k, (0.0, 0))
            count = c1 + c2
            theirs[k] = bounds[k][dst] = ((c1 * w1 + c2 * w2) / count, count)
            bounds[k].pop(src, None)
        theirs.pop(src, None)
        del version[src]
        version[dst] += 1
        owner[src] = dst
        for k, (weight, _) in theirs.items():
            heapq.heappush(heap, (weight, dst, k, version[dst], version[k]))
    # Regions 1..n in the order of the surviving nodes (as merge_hierarchical numbers them).
    rank = {n: i for i, n in enumerate(n for n in nodes if owner[n] == n)}
    label_map = np.arange(parts.max() + 1)
    for n in nodes:
        root = n
        while owner[root] != root:
            root = owner[root]
        label_map[n] = rank[root]
    merged = label_map[parts]
    parts = np.zeros(region.shape, np.int32)
    _, inverse = np.unique(merged[region], return_inverse=True)
    parts[region] = inverse.astype(np.int32) + 1
    return parts


def confirm_steps(
    parts: np.ndarray,
    level: np.ndarray,
    min_step: float,
    band_px: tuple[float, float] = (1.5, 5.0),
) -> np.ndarray:
    """Rejoin adjacent pieces whose levels do not step across their contact.

    A line of high gradient is not always a step: a scan line's offset, a polishing scratch or
    a thin crack makes a ridge with the same level on both sides, and the gradient watershed
    cuts along it (issue 23: straight cuts from an inclusion to the outline along one BSE row).
    Two crystals differ in level on the whole of each side. For every pair of touching pieces,
    the medians of ``level`` over each piece's band ``band_px`` (px) away from the other
    (beyond the point-spread blur of the contact itself) are compared; pairs closer than
    ``min_step`` are joined (all at once, as connected components of the pair graph). A pair
    with fewer than 5 finite values in a band is left apart.

    Parameters
    ----------
    parts : ndarray of int (h, w)
        Pieces 1..n, 0 elsewhere.
    level : ndarray of float (h, w)
        BSE grey levels or mg#; NaN where unknown (cracks, off the map).
    min_step : float
        The smallest step between two crystals, in the units of ``level``.
    band_px : (float, float)
        Inner and outer distance (px) of the bands from the other piece.

    Returns
    -------
    ndarray of int32 (h, w)
        Pieces 1..m (m <= n).

    Examples
    --------
    >>> parts = np.repeat([[1] * 10 + [2] * 10], 12, axis=0)
    >>> ridge = np.full(parts.shape, 100.0)
    >>> ridge[:, 9:11] = 90.0  # a dark line between two equal halves
    >>> int(confirm_steps(parts, ridge, 2.0).max())
    1
    >>> step = np.where(parts == 1, 100.0, 110.0)
    >>> int(confirm_steps(parts, step, 2.0).max())
    2
    """
    contacts = _contacts(parts)
    if not contacts:
        return parts.astype(np.int32)
    lo, hi = band_px
    pad = int(np.ceil(hi)) + 1
    boxes = ndi.find_objects(parts)
    joined = []
    for i, j in contacts:
        bi, bj = boxes[i - 1], boxes[j - 1]
        window = tuple(
            slice(max(min(a.start, b.start) - pad, 0), min(max(a.stop, b.stop) + pad, n))
            for a, b, n in zip(bi, bj, parts.shape, strict=True)
        )
        local, values = parts[window], level[window]
        medians = []
        for me, other in ((i, j), (j, i)):
            away = ndi.distance_transform_edt(local != other)
            band = values[(local == me) & (away >= lo) & (away <= hi)]
            band = band[np.isfinite(band)]
            medians.append(np.median(band) if band.size >= 5 else np.nan)
        if abs(medians[0] - medians[1]) < min_step:  # False when a band is empty (NaN)
            joined.append((i, j))
    if not joined:
        return parts.astype(np.int32)
    n = int(parts.max())
    edges = np.array(joined)
    graph_ = sparse.coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), (n + 1, n + 1))
    _, component = csgraph.connected_components(graph_, directed=False)
    merged = np.where(parts > 0, component[parts] + 1, 0)
    return _renumber(merged)


def split_concave(
    parts: np.ndarray,
    below_solidity: float = 0.9,
    h_px: float = 1.0,
    max_solidity_loss: float = 0.03,
    min_pixels: int = 1000,
    close_cracks_px: int = 2,
) -> np.ndarray:
    """Cut pieces that are too concave to be one crystal at their necks.

    Touching crystals of similar mg# show no BSE step, but crystals are convex and two side
    by side make a concave union. A piece of at least ``min_pixels`` px less solid than
    ``below_solidity`` (both measured on its external outline: holes filled, cracks closed
    over ``close_cracks_px``) is cut by a watershed of its distance transform from
    the maxima deeper than ``h_px``; the cuts are then undone (:func:`merge_concave`) between
    parts whose union loses less than ``max_solidity_loss`` of solidity, so only cuts
    between clearly convex parts remain. Smaller pieces (microlites) are left alone: their
    outlines are too coarse in pixels for their necks to mean much.

    Parameters
    ----------
    parts : ndarray of int (h, w)
        Pieces 1..n, 0 = background.
    below_solidity, h_px, max_solidity_loss : float
    min_pixels : int
    close_cracks_px : int
        Radius (px) over which cracks open to the outline are closed (:func:`external_solid`).

    Returns
    -------
    ndarray of int32
        Pieces renumbered 1..m (m >= n).
    """
    out = parts.copy()
    next_id = int(parts.max()) + 1
    sizes = np.bincount(parts.ravel())
    for i, box in enumerate(ndi.find_objects(parts), start=1):
        if box is None or sizes[i] < min_pixels:
            continue
        piece = parts[box] == i  # each piece inside its bounding box
        # The shape is the external outline's: an inclusion or a crack is no neck, but
        # counted as a gap it lowers the solidity and draws the cut through itself (issue 23:
        # hexagons cut in two through their inclusion).
        solid = external_solid(piece, close_cracks_px)
        hull_area = _pixel_hulls(solid.astype(np.int32))[1][1]
        if hull_area == 0 or solid.sum() / hull_area >= below_solidity:
            continue
        dist = ndi.distance_transform_edt(np.pad(solid, 1))[1:-1, 1:-1]
        markers, n = ndi.label(morphology.h_maxima(dist, h_px) & solid)
        if n <= 1:
            continue
        cut = segmentation.watershed(-dist, markers, mask=solid)
        cut = merge_concave(cut, max_solidity_loss, 0.0) * piece
        local = out[box]  # a view
        for j in range(2, int(cut.max()) + 1):
            local[cut == j] = next_id
            next_id += 1
    return _renumber(out)


def _outline(piece: np.ndarray) -> shapely.Polygon | None:
    """The outer ring of a piece's largest polygon, in pixel coordinates (x = col, y = row)."""
    shapes = features.shapes(piece.astype(np.uint8), mask=piece, connectivity=8)
    polys = [shapely.Polygon(g["coordinates"][0]) for g, _ in shapes]
    if not polys:
        return None
    poly = max(polys, key=lambda g: g.area)
    return poly if poly.is_valid else shapely.make_valid(poly).buffer(0)


def _notch_points(
    poly: shapely.Polygon, outside: np.ndarray, min_depth_px: float, most: int
) -> list[np.ndarray]:
    """The deepest vertex of each notch (hull minus outline) at least ``min_depth_px`` deep.

    Only vertices on the component's outline count (a corner between two pieces is no
    crystal contact); ``outside`` is padded by one pixel (see :func:`_on_outline`).
    """
    hull = poly.convex_hull
    ring = np.asarray(poly.exterior.coords)[:-1]
    depth = shapely.distance(hull.exterior, shapely.points(ring))
    deep = [k for k in np.flatnonzero(depth >= min_depth_px) if _on_outline(ring[k], outside)]
    if len(deep) < 2:
        return []
    deep = np.asarray(deep)
    deep_points = shapely.points(ring[deep])
    points = []
    notches = hull.difference(poly)
    for notch in getattr(notches, "geoms", [notches]):
        if notch.is_empty or notch.area <= 0:
            continue
        near = shapely.distance(notch, deep_points) < 1e-6
        if near.any():
            k = deep[near][np.argmax(depth[deep[near]])]
            points.append((depth[k], ring[k]))
    points.sort(key=lambda t: -t[0])
    return [pt for _, pt in points[:most]]


def _on_outline(point: np.ndarray, outside: np.ndarray) -> bool:
    """Whether a pixel corner (x, y) touches a pixel outside the component.

    ``outside`` is padded by one pixel of True, so that the window's edge counts as outside:
    the pixels around corner (x, y) are rows y..y+1, columns x..x+1 of the padded array.
    """
    x, y = (int(v) for v in np.rint(point))
    return bool(outside[y : y + 2, x : x + 2].any())


def _notch_cuts(
    poly: shapely.Polygon,
    outside: np.ndarray,
    min_depth_px: float,
    min_gap_ratio: float,
    min_part_solidity: float,
    min_part_area: float,
    max_part_area: float,
) -> list[shapely.Polygon]:
    """The smaller sides of the straight cuts between two notches that qualify, best first."""
    points = _notch_points(poly, outside, min_depth_px, most=10)
    if len(points) < 2:
        return []
    hull_area = poly.convex_hull.area
    inside = poly.buffer(0.5)
    scored = []
    for p, q in itertools.combinations(points, 2):
        length = float(np.hypot(*(q - p)))
        if length == 0:
            continue
        u = (q - p) / length
        # Extended half a pixel past both notches, so the line crosses the outline.
        cut = shapely.LineString([p - 0.5 * u, q + 0.5 * u])
        if not inside.covers(shapely.LineString([p, q])):
            continue
        pieces = shapely.ops.split(poly, cut)
        if len(pieces.geoms) != 2:
            continue
        small, large = sorted(pieces.geoms, key=lambda g: g.area)
        if small.area < min_part_area or small.area > max_part_area:
            continue
        if min(g.area / g.convex_hull.area for g in (small, large)) < min_part_solidity:
            continue
        # A straight cut through one convex crystal leaves the two hulls filling the union's
        # hull; a crystal grown onto another leaves the notches on either side of it.
        gap = hull_area - small.convex_hull.area - large.convex_hull.area
        if gap / small.area > min_gap_ratio:
            scored.append((gap / small.area, small))
    return [g for _, g in sorted(scored, key=lambda t: -t[0])]


def _bridged(mask: np.ndarray, radius: int) -> np.ndarray:
    """``mask`` with gaps up to ``2 * radius`` px wide closed (the window's edge is open)."""
    if radius <= 0:
        return mask
    r = int(radius)
    return ndi.binary_closing(np.pad(mask, r), morphology.disk(r))[r:-r, r:-r] | mask


def _cut_pixels(piece: np.ndarray, side: shapely.Polygon) -> np.ndarray:
    """The piece's pixels whose centres lie in ``side``, as one 8-connected part."""
    moved = piece & (features.rasterize([side], out_shape=piece.shape, fill=0, dtype="uint8") == 1)
    parts, n = ndi.label(moved, np.ones((3, 3), bool))
    if n > 1:
        # A slanted cut can strand single pixels beyond it: they stay with the piece.
        moved = parts == np.bincount(parts.ravel())[1:].argmax() + 1
    return moved


def split_at_notches(
    parts: np.ndarray,
    min_depth_px: float = 1.5,
    min_gap_ratio: float = 0.15,
    min_part_solidity: float = 0.8,
    min_piece_pixels: int = 1,
    max_part_pixels: int = 1000,
    max_cuts: int = 8,
    bridge_px: int = 2,
) -> np.ndarray:
    """Cut a small crystal grown onto a larger one off along the line between its notches.

    A microlite on a phenocryst's edge, of about the same mg#, shows neither a BSE step nor a
    neck, and barely lowers the solidity of the union. But it makes two notches in the
    outline where its sides meet the phenocryst's, and the straight line between them
    separates two convex parts whose hulls leave those notches uncovered. For each piece,
    the deepest points of its (up to ten deepest) notches at least ``min_depth_px`` deep
    (from the convex hull) are paired, and the straight cut between a pair is kept when both
    parts are at least ``min_part_solidity`` solid, the smaller is a microlite of
    ``min_piece_pixels`` to ``max_part_pixels`` px, and the notches it leaves (the union's
    hull minus the parts' hulls) cover more than ``min_gap_ratio`` of the smaller part. A
    straight cut through one convex crystal leaves no such gap; a cut between crystals larger
    than microlites is left to the BSE and to :func:`split_concave`, as cracks and
    inclusions notch large crystals too. Only notches of the component's outline count (not
    corners between pieces), and gaps up to ``2 * bridge_px`` px wide are closed before the
    outline is read, so that the inside of a narrow crack is no notch. Cuts repeat on the
    parts, at most ``max_cuts`` per piece.

    Parameters
    ----------
    parts : ndarray of int (h, w)
        Pieces 1..n, 0 = background.
    min_depth_px, min_gap_ratio, min_part_solidity : float
    min_piece_pixels, max_part_pixels, max_cuts, bridge_px : int

    Returns
    -------
    ndarray of int32
        Pieces renumbered 1..m (m >= n).
    """
    out = parts.astype(np.int32, copy=True)
    outside = np.pad(~ndi.binary_fill_holes(_bridged(out > 0, bridge_px)), 1, constant_values=True)
    boxes = {i + 1: box for i, box in enumerate(ndi.find_objects(out)) if box is not None}
    queue = sorted(boxes)
    next_id = int(out.max()) + 1
    cuts: dict[int, int] = {}
    margin = max(bridge_px, 0) + 2
    while queue:
        i = queue.pop()
        if cuts.get(i, 0) >= max_cuts:
            continue
        # Each piece is worked on inside its bounding box (plus a margin for the bridging).
        r0, c0 = (max(b.start - margin, 0) for b in boxes[i])
        r1, c1 = (min(b.stop + margin, n) for b, n in zip(boxes[i], out.shape, strict=True))
        window = out[r0:r1, c0:c1]  # a view: cuts write through
        piece = window == i
        if piece.sum() < 2 * max(min_piece_pixels, 8):
            continue
        poly = _outline(ndi.binary_fill_holes(_bridged(piece, bridge_px)))
        if poly is None or poly.geom_type != "Polygon":
            continue
        # Polygon corners (x, y) of the window are rows/columns of `outside` shifted by r0/c0.
        sides = _notch_cuts(
            poly,
            outside[r0 : r1 + 2, c0 : c1 + 2],
            min_depth_px,
            min_gap_ratio,
            min_part_solidity,
            float(min_piece_pixels),
            float(max_part_pixels),
        )
        for side in sides:
            moved = _cut_pixels(piece, side)
            n_moved, n_kept = int(moved.sum()), int(piece.sum() - moved.sum())
            # In pixels, as catalogued: no part under the minimum area, the cut one a microlite.
            if min(n_moved, n_kept) < min_piece_pixels or n_moved > max_part_pixels:
                continue
            window[moved] = next_id
            boxes[next_id] = boxes[i]
            cuts[i] = cuts.get(i, 0) + 1
            cuts[next_id] = cuts[i]
            queue += [i, next_id]
            next_id += 1
            break
    return _renumber(out)


def _renumber(parts: np.ndarray) -> np.ndarray:
    """Labels 1..n in order of the old ones; 0 stays background (even if absent)."""
    out = np.zeros(parts.shape, np.int32)
    fg = parts > 0
    _, inverse = np.unique(parts[fg], return_inverse=True)
    out[fg] = inverse.astype(np.int32) + 1
    return out


def absorb_small(parts: np.ndarray, min_pixels: int) -> np.ndarray:
    """Join every piece under ``min_pixels`` to the neighbour it touches most.

    A split must not leave slivers smaller than a catalogued crystal: their pixels would
    belong to no crystal. Isolated small pieces (no neighbour) stay. Pieces are handled
    smallest first, each inside its bounding box, so the work grows with the pieces' boxes,
    not with their number times the crystal's area.
    """
    parts = parts.astype(np.int32, copy=True)
    while True:
        counts = np.bincount(parts.ravel())
        boxes = {i + 1: box for i, box in enumerate(ndi.find_objects(parts)) if box is not None}
        small = sorted((int(counts[i]), i) for i in boxes if counts[i] < min_pixels)
        moved = False
        for _, i in small:
            if i not in boxes:
                continue  # absorbed into another piece earlier in this pass
            # The box and a margin of one pixel hold the piece and the ring around it.
            window = tuple(
                slice(max(b.start - 1, 0), min(b.stop + 1, n))
                for b, n in zip(boxes[i], parts.shape, strict=True)
            )
            local = parts[window]  # a view: the relabelling writes through
            piece = local == i
            ring = ndi.binary_dilation(piece, np.ones((3, 3), bool)) & ~piece
            around = local[ring]
            around = around[(around > 0) & (around != i)]
            if around.size:
                into = int(np.bincount(around).argmax())
                local[piece] = into
                boxes[into] = tuple(
                    slice(min(a.start, b.start), max(a.stop, b.stop))
                    for a, b in zip(boxes[into], boxes.pop(i), strict=True)
                )
                moved = True
        if not moved:
            return _renumber(parts)


def _hull(points: np.ndarray) -> tuple[np.ndarray, float]:
    """Vertices (anticlockwise) and area of the convex hull of ``points`` (a line: area 0).

    GEOS through shapely: a quarter of the time of Qhull on the few dozen points of a
    region's or a union's hull, and the same exact area on pixel corners.
    """
    if len(points) < 3:
        return points, 0.0
    # A line through the points has their hull, and is made without a geometry per point.
    hull = shapely.convex_hull(shapely.linestrings(points))
    area = float(shapely.area(hull))
    if area <= 0:
        return points, 0.0
    return _anticlockwise(shapely.get_coordinates(hull)[:-1]), area


def _anticlockwise(vertices: np.ndarray) -> np.ndarray:
    """The vertices of a convex polygon (no three in a line), turned anticlockwise."""
    (x0, y0), (x1, y1), (x2, y2) = vertices[:3].tolist()
    turn = (x1 - x0) * (y2 - y1) - (y1 - y0) * (x2 - x1)
    return vertices if turn > 0 else vertices[::-1]


def _half_planes(hull: tuple[np.ndarray, float]) -> np.ndarray | None:
    """Outward edge normals and offsets ``(m, 3)`` of a hull of :func:`_hull` (its vertices
    anticlockwise); None for a degenerate hull (a line of pixels)."""
    vertices, hull_area = hull
    if hull_area <= 0:
        return None
    edges = np.roll(vertices, -1, axis=0) - vertices
    normals = np.stack([edges[:, 1], -edges[:, 0]], axis=1)
    return np.column_stack([normals, -np.sum(normals * vertices, axis=1)])


def _inside(points: np.ndarray, planes: np.ndarray | None) -> bool:
    """Whether all ``points`` lie in the hull of :func:`_half_planes`."""
    if planes is None:
        return False
    return bool((planes[:, :2] @ points.T + planes[:, 2:]).max() <= 1e-9)


def _pixel_hulls(parts: np.ndarray) -> dict[int, tuple[np.ndarray, float]]:
    """Convex hull (vertices, area) of every region's pixel squares, from its outer pixels.

    All regions in one vectorised GEOS call.
    """
    padded = np.pad(parts, 1)  # the window's border is an outline too
    outer = (ndi.grey_erosion(padded, size=3) != padded) | (
        ndi.grey_dilation(padded, size=3) != padded
    )
    r, c = np.nonzero(outer & (padded > 0))
    ids = padded[r, c]
    if ids.size == 0:
        return {}
    r, c = r - 1, c - 1
    order = np.argsort(ids, kind="stable")
    r, c, ids = r[order], c[order], ids[order]
    # The four corners of each outer pixel, region by region.
    corners = np.stack([np.c_[r + dr, c + dc] for dr in (0, 1) for dc in (0, 1)], axis=1)
    points = corners.reshape(-1, 2).astype(float)
    regions, first = np.unique(ids, return_index=True)
    bounds = np.r_[first, len(ids)] * 4  # each region's corners in `points`
    index = np.repeat(np.arange(len(regions)), np.diff(bounds))
    # A line through a region's corners has their hull (no geometry per point needed).
    hulls = shapely.convex_hull(shapely.linestrings(points, indices=index))
    areas = shapely.area(hulls)
    coords, which = shapely.get_coordinates(hulls, return_index=True)
    ends = np.searchsorted(which, np.arange(len(regions) + 1))
    out = {}
    for n, i in enumerate(regions.tolist()):
        if areas[n] > 0:
            out[i] = (_anticlockwise(coords[ends[n] : ends[n + 1] - 1]), float(areas[n]))
        else:  # a line of pixels
            out[i] = (points[bounds[n] : bounds[n + 1]], 0.0)
    return out


#: Neighbours whose pairs are queued again after a region merges (merge_concave): all of
#: a crystal's pieces; a region grown through a texture (a whole groundmass under one
#: mask, thousands of neighbours) would otherwise cost thousands of hulls per merge.
REQUEUE_LIMIT = 64

#: Directions of the support points that bound a union's hull from below (merge_concave).
_SUPPORT = np.stack([np.cos(np.arange(64) * np.pi / 32), np.sin(np.arange(64) * np.pi / 32)], 1)


def _support_points(vertices: np.ndarray) -> np.ndarray:
    """The vertex farthest in each :data:`_SUPPORT` direction, in order (64, 2)."""
    return vertices[np.argmax(vertices @ _SUPPORT.T, axis=0)]


def _union_support(mine: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Support points of the union of one region (64, 2) with each of others (n, 64, 2)."""
    farther = np.einsum("nkd,kd->nk", others - mine, _SUPPORT) > 0
    return np.where(farther[..., None], others, mine)


def _polygon_area(points: np.ndarray) -> np.ndarray:
    """Shoelace area of polygons (n, m, 2) whose vertices are in order around them.

    Support points of a convex set in directions of increasing angle lie in order on its
    hull, so their polygon is convex and its area is that of their hull: a lower bound of the
    whole hull's area.
    """
    x, y = points[..., 0], points[..., 1]
    return 0.5 * np.abs(np.sum(x * np.roll(y, -1, axis=-1) - y * np.roll(x, -1, axis=-1), -1))


def _contacts(parts: np.ndarray) -> dict[tuple[int, int], int]:
    """Shared boundary (4-neighbour pixel pairs) of every pair of adjacent regions."""
    pairs = []
    for a, b in ((parts[:, :-1], parts[:, 1:]), (parts[:-1, :], parts[1:, :])):
        touch = (a != b) & (a > 0) & (b > 0)
        pairs.append(np.c_[np.minimum(a[touch], b[touch]), np.maximum(a[touch], b[touch])])
    both = np.concatenate(pairs)
    if both.size == 0:
        return {}
    keys, counts = np.unique(both, axis=0, return_counts=True)
    return {(int(i), int(j)): int(n) for (i, j), n in zip(keys, counts, strict=True)}


def merge_concave(
    parts: np.ndarray, max_solidity_loss: float = 0.005, min_solidity: float = 0.6
) -> np.ndarray:
    """Join adjacent regions whose union is as convex as they are: pieces of one crystal.

    Crystals are convex; zoning steps cut a crystal into a core and rings, arcs or slivers.
    First every region less solid (area / convex-hull area) than ``min_solidity`` joins the
    neighbour it shares most boundary with. Then, greedily, the adjacent pair whose union
    loses least solidity against the more convex of the two is merged while that loss is
    below ``max_solidity_loss``: a sliver that fills the outline of its crystal. Two
    crystals side by side make a concave union and stay apart.

    Parameters
    ----------
    parts : ndarray of int (h, w)
        Regions 1..n, 0 = background.
    max_solidity_loss : float
    min_solidity : float

    Returns
    -------
    ndarray of int32
        Regions renumbered 1..m (m <= n).
    """
    parts = parts.astype(np.int32, copy=True)
    ids, counts = np.unique(parts[parts > 0], return_counts=True)
    area = {int(i): float(n) for i, n in zip(ids, counts, strict=True)}
    # The hull of a union is the hull of the two hulls' vertices: merges need no pixels.
    hulls = _pixel_hulls(parts)
    solidity = {i: area[i] / hulls[i][1] if hulls[i][1] > 0 else 1.0 for i in area}
    contact = _contacts(parts)
    adjacent: dict[int, set[int]] = {i: set() for i in area}
    for i, j in contact:
        adjacent[i].add(j)
        adjacent[j].add(i)
    owner = {i: i for i in area}  # region -> the region it was merged into

    def key(i: int, j: int) -> tuple[int, int]:
        return (i, j) if i < j else (j, i)

    def union_hull(i: int, j: int) -> tuple[np.ndarray, float]:
        return _hull(np.concatenate([hulls[i][0], hulls[j][0]]))

    def merge(i: int, j: int, hull: tuple[np.ndarray, float]) -> None:
        """Region ``j`` joins region ``i``."""
        area[i] += area.pop(j)
        hulls[i] = hull
        hulls.pop(j)
        solidity.pop(j)
        solidity[i] = area[i] / hull[1] if hull[1] > 0 else 1.0
        for k in adjacent.pop(j):
            if k == i:
                continue
            adjacent[k].discard(j)
            adjacent[k].add(i)
            adjacent[i].add(k)
            contact[key(i, k)] = contact.get(key(i, k), 0) + contact.pop(key(j, k), 0)
        adjacent[i].discard(j)
        contact.pop(key(i, j), None)
        owner[j] = i

    # No crystal is that concave: a ring or an arc of a zoned crystal joins the neighbour it
    # shares most boundary with, the least convex first. A heap keeps the next one at hand:
    # merges change only the merged region, so the work grows as n log n, not n².
    concave = [(solidity[i], i) for i in adjacent if solidity[i] < min_solidity and adjacent[i]]
    heapq.heapify(concave)
    while concave:
        value, i = heapq.heappop(concave)
        if i not in adjacent or solidity[i] != value or not adjacent[i]:
            continue  # merged away, or changed since it was queued
        j = max(adjacent[i], key=lambda k: contact.get(key(i, k), 0))
        merge(j, i, union_hull(i, j))
        if solidity[j] < min_solidity:
            heapq.heappush(concave, (solidity[j], j))

    # Then the adjacent pair whose union loses least solidity, while below the limit. Only
    # the pairs of the region just merged change; they are queued again (for a region with
    # more than REQUEUE_LIMIT neighbours, a texture rather than a crystal, the ones it shares
    # most boundary with; its other pairs are measured anew when their entries come up).
    # The union's hull is computed only for pairs that may qualify: each pair is first
    # queued with a lower bound of its loss from the hull of the two regions' extreme points
    # (_SUPPORT directions), which cannot exceed the union's hull; a pair whose bound comes
    # first is then measured exactly. Most pairs of touching crystals are far from convex
    # together and never are.
    version = dict.fromkeys(area, 0)
    extremes = {i: _support_points(hulls[i][0]) for i in area}
    planes = {i: _half_planes(hulls[i]) for i in area}
    unions: dict[tuple[int, int], tuple[np.ndarray, float]] = {}
    EXACT, BOUND = 0, 1
    pairs: list[tuple[float, int, int, int, int, int]] = []

    def queue(i: int, others: list[int]) -> None:
        if not others:
            return
        support = np.stack([extremes[k] for k in others])
        bound_area = _polygon_area(_union_support(extremes[i], support))
        for k, hull_area in zip(others, bound_area, strict=True):
            a, b = key(i, k)
            most = max(solidity[a], solidity[b])
            bound = most - (area[a] + area[b]) / hull_area if hull_area > 0 else -np.inf
            if bound < max_solidity_loss:
                heapq.heappush(pairs, (bound, BOUND, a, b, version[a], version[b]))

    def measure(i: int, j: int) -> None:
        # A region inside the other's hull leaves that hull as the union's (a sliver filling
        # a notch, the common case): no new hull needed.
        small, large = (i, j) if area[i] < area[j] else (j, i)
        if _inside(hulls[small][0], planes[large]):
            hull = hulls[large]
        elif _inside(hulls[large][0], planes[small]):
            hull = hulls[small]
        else:
            hull = union_hull(i, j)
        unions[(i, j)] = hull
        union_solidity = (area[i] + area[j]) / hull[1] if hull[1] > 0 else 1.0
        loss = max(solidity[i], solidity[j]) - union_solidity
        if loss < max_solidity_loss:
            heapq.heappush(pairs, (loss, EXACT, i, j, version[i], version[j]))

    for i in adjacent:
        queue(i, [j for j in adjacent[i] if j > i])
    while pairs:
        _, kind, i, j, vi, vj = heapq.heappop(pairs)
        if i not in area or j not in area:
            continue  # one side merged away
        if kind == BOUND or (vi, vj) != (version[i], version[j]):
            measure(i, j)  # a bound, or a side changed since: its loss now
            continue
        merge(i, j, unions.pop((i, j)))
        extremes[i] = _union_support(extremes[i], extremes.pop(j)[None])[0]
        planes[i] = _half_planes(hulls[i])
        del planes[j]
        version[i] += 1
        queue(i, sorted(adjacent[i], key=lambda k: -contact[key(i, k)])[:REQUEUE_LIMIT])

    lut = np.zeros(int(parts.max()) + 1, np.int32)
    for i in owner:
        root = i
        while owner[root] != root:
            root = owner[root]
        lut[i] = root
    return _renumber(lut[parts])

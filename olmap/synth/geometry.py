"""Analytic crystal shapes: convex polygons as half-planes, evaluated on any pixel window.

Coordinates are in pixels, ``x`` along columns and ``y`` along rows, pixel centres at
``(col + 0.5, row + 0.5)``. Because shapes are analytic, rendering one window gives exactly
the pixels a render of the whole section would give there.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.spatial import ConvexHull


@dataclass
class ConvexShape:
    """A convex polygon, optionally cut by extra half-planes (a broken crystal).

    Attributes
    ----------
    planes : ndarray (n, 3)
        Outward unit normals and offsets ``(nx, ny, c)``: a point is inside when
        ``nx*x + ny*y + c <= 0`` for every plane.
    cuts : ndarray (m, 3)
        Extra half-planes of the same form that cut a fragment out of the polygon. They bound
        the shape but do not change :meth:`depth` (zoning follows the original outline).
    vertices : ndarray (n, 2)
        Polygon vertices (x, y), counter-clockwise.
    """

    planes: np.ndarray
    vertices: np.ndarray
    cuts: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))

    @classmethod
    def from_points(cls, points: np.ndarray) -> ConvexShape:
        """Convex hull of ``points`` (n, 2)."""
        hull = ConvexHull(points)
        return cls(planes=hull.equations.copy(), vertices=points[hull.vertices].copy())

    @property
    def bbox(self) -> tuple[float, float, float, float]:
        """(xmin, ymin, xmax, ymax) in px."""
        (x0, y0), (x1, y1) = self.vertices.min(0), self.vertices.max(0)
        return float(x0), float(y0), float(x1), float(y1)

    @property
    def area(self) -> float:
        """Area of the uncut polygon in px² (shoelace)."""
        x, y = self.vertices[:, 0], self.vertices[:, 1]
        return float(0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))

    def depth(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Distance (px) from the polygon outline, positive inside, negative outside.

        For a convex polygon the inside distance to the outline is the smallest distance to
        its edge lines, exactly what a Euclidean distance transform of the crystal gives.
        """
        d = np.full(np.broadcast(x, y).shape, np.inf, dtype=np.float32)
        for nx, ny, c in self.planes:
            np.minimum(d, -(nx * x + ny * y + c), out=d)
        return d

    def inside(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mask of points inside the (possibly cut) shape, and their :meth:`depth`."""
        depth = self.depth(x, y)
        mask = depth > 0
        for nx, ny, c in self.cuts:
            mask &= (nx * x + ny * y + c) <= 0
        return mask, depth

    def max_depth(self) -> float:
        """Radius of the largest inscribed circle (px), by a two-level grid search."""
        x0, y0, x1, y1 = self.bbox
        best, span = None, max(x1 - x0, y1 - y0)
        cx, cy = 0.5 * (x0 + x1), 0.5 * (y0 + y1)
        for _ in range(3):
            g = np.linspace(-0.5, 0.5, 41) * span
            xx, yy = np.meshgrid(cx + g, cy + g)
            d = self.depth(xx, yy)
            i = int(np.argmax(d))
            best, cx, cy = float(d.flat[i]), float(xx.flat[i]), float(yy.flat[i])
            span /= 8
        return max(best or 0.0, 0.5)

    def chord(self, x: float, y: float, ux: float, uy: float) -> tuple[float, float]:
        """Parameters ``t0 < t1`` where the line ``(x, y) + t (ux, uy)`` enters and leaves."""
        t0, t1 = -np.inf, np.inf
        for nx, ny, c in np.vstack([self.planes, self.cuts]):
            denom = nx * ux + ny * uy
            num = -(nx * x + ny * y + c)
            if abs(denom) < 1e-12:
                if num < 0:
                    return 0.0, 0.0
                continue
            t = num / denom
            if denom > 0:
                t1 = min(t1, t)
            else:
                t0 = max(t0, t)
        return (float(t0), float(t1)) if t1 > t0 else (0.0, 0.0)

    def translated(self, dx: float, dy: float) -> ConvexShape:
        def shift(p: np.ndarray) -> np.ndarray:
            q = p.copy()
            q[:, 2] -= q[:, 0] * dx + q[:, 1] * dy
            return q

        return ConvexShape(shift(self.planes), self.vertices + [dx, dy], shift(self.cuts))


def rotate(points: np.ndarray, angle: float) -> np.ndarray:
    """Rotate (n, 2) points about the origin by ``angle`` radians."""
    c, s = np.cos(angle), np.sin(angle)
    return points @ np.array([[c, s], [-s, c]])


def _scaled_to_area(points: np.ndarray, area: float) -> np.ndarray:
    a = ConvexShape.from_points(points).area
    return points * np.sqrt(area / a)


def olivine_outline(rng: np.random.Generator, area: float) -> np.ndarray:
    """Euhedral olivine section: an elongated hexagon/octagon (faces {010}, {110}, {021}).

    Returns vertices (n, 2) centred on the origin, unrotated, of the requested area (px²).
    """
    aspect = rng.uniform(1.2, 2.2)
    b = 1.0
    a = aspect * b
    tip = rng.uniform(0.15, 0.55)  # half-width of the truncated ends, relative to b
    shoulder = rng.uniform(0.45, 0.8)  # where the prism faces end, relative to a
    pts = np.array(
        [
            [a, tip],
            [a * shoulder, b],
            [-a * shoulder, b],
            [-a, tip],
            [-a, -tip],
            [-a * shoulder, -b],
            [a * shoulder, -b],
            [a, -tip],
        ]
    )
    pts += rng.normal(0, 0.04, pts.shape)
    return _scaled_to_area(pts, area)


def prism_outline(
    rng: np.random.Generator, area: float, aspect: tuple[float, float], corner: tuple[float, float]
) -> np.ndarray:
    """Prismatic section (pyroxene, plagioclase lath): a rectangle with cut corners."""
    b = 1.0
    a = rng.uniform(*aspect) * b
    k = rng.uniform(*corner)
    pts = np.array(
        [
            [a, b * (1 - k)],
            [a - k * b, b],
            [-a + k * b, b],
            [-a, b * (1 - k)],
            [-a, -b * (1 - k)],
            [-a + k * b, -b],
            [a - k * b, -b],
            [a, -b * (1 - k)],
        ]
    )
    pts += rng.normal(0, 0.03, pts.shape)
    return _scaled_to_area(pts, area)


def equant_outline(rng: np.random.Generator, area: float) -> np.ndarray:
    """Equant grain (oxide, spinel): a slightly irregular square or hexagon."""
    n = int(rng.choice([4, 6]))
    ang = np.arange(n) * 2 * np.pi / n + rng.normal(0, 0.08, n)
    pts = np.column_stack([np.cos(ang), np.sin(ang)]) * rng.uniform(0.9, 1.1, (n, 1))
    return _scaled_to_area(pts, area)


def segment_distance(
    x: np.ndarray, y: np.ndarray, x0: float, y0: float, x1: float, y1: float
) -> np.ndarray:
    """Euclidean distance (px) from points to the segment (x0, y0)–(x1, y1)."""
    dx, dy = x1 - x0, y1 - y0
    length2 = dx * dx + dy * dy
    if length2 == 0:
        return np.hypot(x - x0, y - y0)
    t = np.clip(((x - x0) * dx + (y - y0) * dy) / length2, 0.0, 1.0)
    return np.hypot(x - (x0 + t * dx), y - (y0 + t * dy))

"""Grains of a synthetic section: each paints itself onto a window :class:`Canvas`.

A canvas holds the noise-free *truth* of one window: phase codes, nominal BSE grey, expected
EDS counts, olivine mg# and olivine instance ids. Grains are painted in draw order (later
grains cover earlier ones); every value depends only on global pixel coordinates.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np

from olmap.synth.geometry import ConvexShape, segment_distance
from olmap.synth.phases import (
    EDS_ELEMENTS,
    GLASS_OXIDES,
    GREY_EPOXY,
    PHASE_TABLE,
    Phase,
    eds_counts,
    grey_from_z,
    mean_atomic_number,
    plagioclase_oxides,
)

N_BANDS = len(EDS_ELEMENTS)
_GLASS_GREY = PHASE_TABLE.const_grey[Phase.GLASS]
_GLASS_EDS = PHASE_TABLE.const_eds[Phase.GLASS]
_NO_EDS = np.zeros(N_BANDS)


class Canvas:
    """Truth rasters of one window ``[row0, row0+height) x [col0, col0+width)``."""

    def __init__(self, row0: int, col0: int, height: int, width: int) -> None:
        self.row0, self.col0, self.height, self.width = row0, col0, height, width
        self.phase = np.full((height, width), Phase.GLASS, dtype=np.uint8)
        self.grey = np.full((height, width), _GLASS_GREY, dtype=np.float32)
        self.eds = np.empty((N_BANDS, height, width), dtype=np.float32)
        self.eds[:] = _GLASS_EDS.astype(np.float32)[:, None, None]
        self.mg = np.full((height, width), np.nan, dtype=np.float32)
        self.instance = np.zeros((height, width), dtype=np.uint32)

    def region(
        self, bbox: tuple[int, int, int, int]
    ) -> tuple[tuple[slice, slice], np.ndarray, np.ndarray] | None:
        """Slices of ``bbox = (r0, r1, c0, c1)`` inside the canvas and pixel-centre x, y (px)."""
        r0, r1 = max(bbox[0], self.row0), min(bbox[1], self.row0 + self.height)
        c0, c1 = max(bbox[2], self.col0), min(bbox[3], self.col0 + self.width)
        if r0 >= r1 or c0 >= c1:
            return None
        sl = (slice(r0 - self.row0, r1 - self.row0), slice(c0 - self.col0, c1 - self.col0))
        y = (np.arange(r0, r1, dtype=np.float64) + 0.5)[:, None]
        x = (np.arange(c0, c1, dtype=np.float64) + 0.5)[None, :]
        return sl, x, y

    def paint(
        self,
        sl: tuple[slice, slice],
        mask: np.ndarray,
        phase: Phase,
        grey: float | np.ndarray,
        eds: np.ndarray,
        mg: np.ndarray | None = None,
        instance: int = 0,
    ) -> None:
        """Set every truth raster on ``mask`` (a boolean array over ``sl``)."""
        self.phase[sl][mask] = phase
        g = self.grey[sl]
        g[mask] = grey[mask] if isinstance(grey, np.ndarray) else grey
        e = self.eds[(slice(None), *sl)]
        e[:, mask] = eds[:, mask] if eds.ndim == 3 else eds[:, None]
        m = self.mg[sl]
        m[mask] = mg[mask] if mg is not None else np.nan
        self.instance[sl][mask] = instance


def _bbox_from_extent(x0: float, y0: float, x1: float, y1: float) -> tuple[int, int, int, int]:
    return int(np.floor(y0)), int(np.ceil(y1)) + 1, int(np.floor(x0)), int(np.ceil(x1)) + 1


@dataclass
class Crack:
    """A crack or fracture: a polyline of ``width`` px, epoxy-filled (dark)."""

    points: np.ndarray  # (k, 2) x, y in px
    width: float
    grey: float

    def mask(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        d = np.full(np.broadcast(x, y).shape, np.inf)
        for (x0, y0), (x1, y1) in zip(self.points[:-1], self.points[1:], strict=True):
            np.minimum(d, segment_distance(x, y, x0, y0, x1, y1), out=d)
        return d < 0.5 * self.width


@dataclass
class Inclusion:
    """An elliptical inclusion (melt = glass, or a hole) inside a crystal."""

    x: float
    y: float
    a: float  # semi-axes, px
    b: float
    angle: float
    phase: Phase
    bubble: float = 0.0  # radius of a shrinkage bubble (px) in melt inclusions

    def masks(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        c, s = np.cos(self.angle), np.sin(self.angle)
        u, v = (x - self.x) * c + (y - self.y) * s, -(x - self.x) * s + (y - self.y) * c
        body = (u / self.a) ** 2 + (v / self.b) ** 2 <= 1.0
        bubble = np.hypot(u - 0.3 * self.a, v) <= self.bubble if self.bubble > 0 else None
        return body, bubble


@dataclass(kw_only=True)
class Grain(ABC):
    """Something painted on the canvas; ``bbox = (r0, r1, c0, c1)`` in pixels."""

    phase: Phase
    bbox: tuple[int, int, int, int]

    @abstractmethod
    def paint(self, canvas: Canvas) -> None:
        """Paint this grain's pixels inside the canvas window."""


@dataclass(kw_only=True)
class Vesicle(Grain):
    """A gas bubble filled with epoxy: a disc with a wavy outline."""

    x: float = 0.0
    y: float = 0.0
    radius: float = 1.0
    harmonics: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))  # (k, amp, phase)

    def paint(self, canvas: Canvas) -> None:
        reg = canvas.region(self.bbox)
        if reg is None:
            return
        sl, x, y = reg
        dx, dy = x - self.x, y - self.y
        theta = np.arctan2(dy, dx)
        r = np.full(theta.shape, self.radius)
        for k, amp, ph in self.harmonics:
            r += self.radius * amp * np.cos(k * theta + ph)
        mask = np.hypot(dx, dy) <= r
        canvas.paint(sl, mask, Phase.EPOXY, GREY_EPOXY, _NO_EDS)


@dataclass(kw_only=True)
class Crystal(Grain):
    """A convex crystal section with optional cracks and inclusions."""

    shape: ConvexShape | None = None
    cracks: list[Crack] = field(default_factory=list)
    inclusions: list[Inclusion] = field(default_factory=list)
    spinels: list[ConvexShape] = field(default_factory=list)
    instance: int = 0

    @abstractmethod
    def colour(
        self, x: np.ndarray, y: np.ndarray, depth: np.ndarray
    ) -> tuple[float | np.ndarray, np.ndarray, np.ndarray | None]:
        """Grey, EDS counts (band, ...) and mg# of the crystal at x, y."""

    def paint(self, canvas: Canvas) -> None:
        reg = canvas.region(self.bbox)
        if reg is None:
            return
        sl, x, y = reg
        assert self.shape is not None
        mask, depth = self.shape.inside(x, y)
        if not mask.any():
            return
        grey, eds, mg = self.colour(x, y, depth)
        canvas.paint(sl, mask, self.phase, grey, eds, mg, self.instance)
        for inc in self.inclusions:
            body, bubble = inc.masks(x, y)
            body &= mask
            if inc.phase == Phase.GLASS:
                canvas.paint(sl, body, Phase.GLASS, _GLASS_GREY, _GLASS_EDS, None, self.instance)
            else:
                canvas.paint(sl, body, Phase.CRACK, GREY_EPOXY, _NO_EDS, None, self.instance)
            if bubble is not None:
                canvas.paint(
                    sl, bubble & body, Phase.CRACK, GREY_EPOXY, _NO_EDS, None, self.instance
                )
        for sp in self.spinels:
            sm, _ = sp.inside(x, y)
            canvas.paint(
                sl,
                sm & mask,
                Phase.SPINEL,
                PHASE_TABLE.const_grey[Phase.SPINEL],
                PHASE_TABLE.const_eds[Phase.SPINEL],
                None,
                self.instance,
            )
        for crack in self.cracks:
            cm = crack.mask(x, y) & mask
            canvas.paint(sl, cm, Phase.CRACK, crack.grey, _NO_EDS, None, self.instance)


@dataclass(kw_only=True)
class Olivine(Crystal):
    """Olivine with mg# zoned as a function of normalised depth below its original outline.

    ``t = depth / max_depth`` runs from 0 at the outline to 1 at the centre; mg# is
    interpolated between ``knots_t`` and ``knots_mg``. Broken fragments keep the zoning of
    the crystal they were broken from.
    """

    phase: Phase = Phase.OLIVINE
    max_depth: float = 1.0
    knots_t: np.ndarray = field(default_factory=lambda: np.array([0.0, 1.0]))
    knots_mg: np.ndarray = field(default_factory=lambda: np.array([0.8, 0.8]))
    zoning: str = "none"
    size_class: str = ""
    broken: bool = False
    cluster: int = 0

    def mg_at(self, depth: np.ndarray) -> np.ndarray:
        t = np.clip(depth / self.max_depth, 0.0, 1.0)
        return np.interp(t, self.knots_t, self.knots_mg)

    def colour(self, x, y, depth):
        mg = self.mg_at(depth).astype(np.float32)
        return PHASE_TABLE.olivine_grey(mg), PHASE_TABLE.olivine_eds(mg), mg

    @property
    def mg_core(self) -> float:
        return float(self.knots_mg[-1])

    @property
    def mg_rim(self) -> float:
        return float(self.knots_mg[0])


@dataclass(kw_only=True)
class Clinopyroxene(Crystal):
    """Augite: BSE overlapping olivine, with sector zoning and two cleavages (~87°)."""

    phase: Phase = Phase.CLINOPYROXENE
    grey0: float = 110.0
    eds0: np.ndarray = field(default_factory=lambda: np.zeros(N_BANDS))
    sector_offsets: np.ndarray = field(default_factory=lambda: np.zeros(8))
    cleavage_angle: float = 0.0
    cleavage_spacing: float = 10.0
    cleavage_grey: float = 4.0
    oscillation: tuple[float, float] = (0.0, 10.0)  # amplitude (levels), period (px)

    def colour(self, x, y, depth):
        assert self.shape is not None
        # Sector zoning: each growth sector (nearest face) has its own composition.
        planes = self.shape.planes
        dist = np.stack([-(nx * x + ny * y + c) for nx, ny, c in planes])
        sector = np.argmin(dist, axis=0)
        grey = self.grey0 + self.sector_offsets[sector % len(self.sector_offsets)]
        amp, period = self.oscillation
        grey = grey + amp * np.sin(2 * np.pi * depth / period)
        for a in (self.cleavage_angle, self.cleavage_angle + np.deg2rad(87)):
            phase = (x * np.cos(a) + y * np.sin(a)) / self.cleavage_spacing
            line = np.abs(phase - np.round(phase)) < 0.6 / self.cleavage_spacing
            grey = grey - self.cleavage_grey * line
        return grey.astype(np.float32), self.eds0, None


@dataclass(kw_only=True)
class Orthopyroxene(Crystal):
    """Orthopyroxene: Mg-rich and Ca-poor, so it passes the EDS olivine rule (a confounder)."""

    phase: Phase = Phase.ORTHOPYROXENE
    grey0: float = 90.0
    eds0: np.ndarray = field(default_factory=lambda: np.zeros(N_BANDS))

    def colour(self, x, y, depth):
        return self.grey0, self.eds0, None


_AN_ENDS = (0.4, 0.9)
_PLAG_GREY = [float(grey_from_z(mean_atomic_number(plagioclase_oxides(a)))) for a in _AN_ENDS]
_PLAG_EDS = [eds_counts(plagioclase_oxides(a)) for a in _AN_ENDS]


def plagioclase_colour(an: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Grey and EDS counts of plagioclase of anorthite fraction ``an`` (linear in An)."""
    f = (np.asarray(an, dtype=np.float64) - _AN_ENDS[0]) / (_AN_ENDS[1] - _AN_ENDS[0])
    grey = _PLAG_GREY[0] + f * (_PLAG_GREY[1] - _PLAG_GREY[0])
    eds = _PLAG_EDS[0][:, None] + (_PLAG_EDS[1] - _PLAG_EDS[0])[:, None] * f.reshape(1, -1)
    return grey, eds.reshape((N_BANDS, *np.shape(an)))


@dataclass(kw_only=True)
class Plagioclase(Crystal):
    """Plagioclase lath with normal An zoning and fine oscillatory zoning."""

    phase: Phase = Phase.PLAGIOCLASE
    an_core: float = 0.8
    an_rim: float = 0.6
    max_depth: float = 1.0
    oscillation: tuple[float, float] = (0.02, 6.0)

    def colour(self, x, y, depth):
        t = np.clip(depth / self.max_depth, 0, 1)
        amp, period = self.oscillation
        an = (
            self.an_rim
            + (self.an_core - self.an_rim) * t
            + amp * np.sin(2 * np.pi * depth / period)
        )
        grey, eds = plagioclase_colour(an)
        return grey.astype(np.float32), eds.astype(np.float32), None


@dataclass(kw_only=True)
class Oxide(Crystal):
    """Equant Fe-Ti oxide (saturates the BSE detector) or free spinel."""

    phase: Phase = Phase.OXIDE

    def colour(self, x, y, depth):
        return PHASE_TABLE.const_grey[self.phase], PHASE_TABLE.const_eds[self.phase], None


def crystal_bbox(shape: ConvexShape) -> tuple[int, int, int, int]:
    """Pixel bbox (r0, r1, c0, c1) enclosing a shape."""
    return _bbox_from_extent(*shape.bbox)


def disc_bbox(x: float, y: float, r: float) -> tuple[int, int, int, int]:
    return _bbox_from_extent(x - r, y - r, x + r, y + r)


__all__ = [
    "GLASS_OXIDES",
    "Canvas",
    "Clinopyroxene",
    "Crack",
    "Crystal",
    "Grain",
    "Inclusion",
    "Olivine",
    "Orthopyroxene",
    "Oxide",
    "Plagioclase",
    "Vesicle",
    "crystal_bbox",
    "disc_bbox",
    "plagioclase_colour",
]

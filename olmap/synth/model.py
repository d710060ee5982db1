"""Sample the population of a synthetic section: every grain, session and scratch, from a seed.

The model is small (one record per crystal, a few tens of thousands for a whole section) and
fixes every pixel together with the seed; pixels are only ever rendered window by window
(:mod:`olmap.synth.render`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from olmap.synth.config import SizeClassDensity, SynthConfig
from olmap.synth.geometry import (
    ConvexShape,
    equant_outline,
    olivine_outline,
    prism_outline,
    rotate,
)
from olmap.synth.grains import (
    Clinopyroxene,
    Crack,
    Crystal,
    Grain,
    Inclusion,
    Olivine,
    Orthopyroxene,
    Oxide,
    Plagioclase,
    Vesicle,
    crystal_bbox,
    disc_bbox,
)
from olmap.synth.phases import (
    GREY_EPOXY,
    PHASE_TABLE,
    Phase,
    clinopyroxene_oxides,
    eds_counts,
    grey_from_z,
    mean_atomic_number,
)

#: Size classes of olivine by section area (seed 002, Table 2), µm².
SIZE_CLASS_LIMITS = {
    "microlite": (100.0, 1000.0),
    "microphenocryst": (1000.0, 10000.0),
    "phenocryst": (10000.0, np.inf),
}
MG_RANGE = (0.70, 0.92)  # issue 2: olivine mg# 0.70–0.92


def size_class(area_um2: float) -> str:
    """Size class of an olivine section of ``area_um2`` (seed 002, Table 2); '' below 100 µm²."""
    for name, (lo, hi) in SIZE_CLASS_LIMITS.items():
        if lo < area_um2 <= hi:
            return name
    return ""


def session_splits(n: int) -> list[str]:
    """Split of each session: about 60 % train, then validation, then test (seed 002 Table 1)."""
    if n == 1:
        return ["train"]
    if n == 2:
        return ["train", "test"]
    n_test = max(1, round(0.2 * n))
    n_val = max(1, round(0.2 * n))
    return ["train"] * (n - n_val - n_test) + ["val"] * n_val + ["test"] * n_test


@dataclass(frozen=True)
class Session:
    """One acquisition session: a strip of columns ``[col0, col1)`` and its instrument drift.

    Observed BSE = ``bse_gain`` * nominal + ``bse_offset``; observed EDS = ``eds_gain`` * nominal.
    """

    session: int
    col0: int
    col1: int
    split: str
    bse_gain: float
    bse_offset: float
    eds_gain: float


@dataclass(frozen=True)
class Scratch:
    """A polishing scratch: a shallow groove that darkens BSE along a segment."""

    x0: float
    y0: float
    x1: float
    y1: float
    width: float
    depth: float

    @property
    def bbox(self) -> tuple[int, int, int, int]:
        m = 3 * self.width
        return (
            int(np.floor(min(self.y0, self.y1) - m)),
            int(np.ceil(max(self.y0, self.y1) + m)),
            int(np.floor(min(self.x0, self.x1) - m)),
            int(np.ceil(max(self.x0, self.x1) + m)),
        )


@dataclass
class SectionModel:
    """All grains (in draw order), olivine crystals by id, sessions and scratches."""

    config: SynthConfig
    grains: list[Grain]
    olivines: list[Olivine]
    sessions: list[Session]
    scratches: list[Scratch]

    def __post_init__(self) -> None:
        self._grain_boxes = np.array([g.bbox for g in self.grains], dtype=np.int64).reshape(-1, 4)
        self._scratch_boxes = np.array([s.bbox for s in self.scratches], dtype=np.int64).reshape(
            -1, 4
        )
        self.session_edges = np.array([s.col0 for s in self.sessions] + [self.config.width])

    @staticmethod
    def _hits(boxes: np.ndarray, row0: int, col0: int, height: int, width: int) -> np.ndarray:
        return np.nonzero(
            (boxes[:, 1] > row0)
            & (boxes[:, 0] < row0 + height)
            & (boxes[:, 3] > col0)
            & (boxes[:, 2] < col0 + width)
        )[0]

    def grains_in(self, row0: int, col0: int, height: int, width: int) -> list[Grain]:
        """Grains whose bbox meets the window, in draw order."""
        return [self.grains[i] for i in self._hits(self._grain_boxes, row0, col0, height, width)]

    def scratches_in(self, row0: int, col0: int, height: int, width: int) -> list[Scratch]:
        return [
            self.scratches[i] for i in self._hits(self._scratch_boxes, row0, col0, height, width)
        ]

    def session_index(self, cols: np.ndarray) -> np.ndarray:
        """0-based session index of each column."""
        return np.clip(
            np.searchsorted(self.session_edges, cols, side="right") - 1, 0, len(self.sessions) - 1
        )


class _Placer:
    """Rejection sampling of crystal centres: not inside vesicles, large crystals apart."""

    def __init__(self, cfg: SynthConfig, rng: np.random.Generator) -> None:
        self.cfg, self.rng = cfg, rng
        self.ves = np.zeros((0, 3))  # x, y, r
        self.big = np.zeros((0, 3))

    def _free(self, x: float, y: float, r: float, apart: bool) -> bool:
        if len(self.ves):
            d = np.hypot(self.ves[:, 0] - x, self.ves[:, 1] - y)
            if np.any(d < self.ves[:, 2] + 0.3 * r):
                return False
        if apart and len(self.big):
            d = np.hypot(self.big[:, 0] - x, self.big[:, 1] - y)
            if np.any(d < 0.8 * (self.big[:, 2] + r)):
                return False
        return True

    def place(self, r: float, *, apart: bool, tries: int = 30) -> tuple[float, float] | None:
        w, h = self.cfg.width, self.cfg.height
        for _ in range(tries):
            x, y = self.rng.uniform(0, w), self.rng.uniform(0, h)
            if self._free(x, y, r, apart):
                if apart:
                    self.big = np.vstack([self.big, [x, y, r]])
                return x, y
        return None


def _log_uniform(rng: np.random.Generator, lo: float, hi: float, n: int) -> np.ndarray:
    return np.exp(rng.uniform(np.log(lo), np.log(hi), n))


def _sample_areas(
    rng: np.random.Generator, cfg: SynthConfig, pop: SizeClassDensity, *, at_least_one: bool = False
) -> np.ndarray:
    """Areas (µm²) of one population: Poisson count over the section, log-uniform sizes."""
    cap = 0.2 * (min(cfg.width, cfg.height) * cfg.pixel_size_um) ** 2
    lo, hi = pop.area_um2
    if lo >= cap:
        return np.zeros(0)
    n = int(rng.poisson(pop.per_mm2 * cfg.area_mm2))
    if at_least_one:
        n = max(n, 1)
    return _log_uniform(rng, lo, min(hi, cap), n)


def _random_point_inside(
    rng: np.random.Generator, shape: ConvexShape, min_depth: float
) -> tuple[float, float] | None:
    x0, y0, x1, y1 = shape.bbox
    for _ in range(20):
        x, y = rng.uniform(x0, x1), rng.uniform(y0, y1)
        inside, depth = shape.inside(np.array(x), np.array(y))
        if inside and depth > min_depth:
            return x, y
    return None


def _cracks(
    rng: np.random.Generator, cfg: SynthConfig, shape: ConvexShape, r_px: float, n: int
) -> list[Crack]:
    out = []
    for _ in range(n):
        start = _random_point_inside(rng, shape, 0.0)
        if start is None:
            continue
        theta = rng.uniform(0, 2 * np.pi)
        length = rng.uniform(0.6, 1.6) * r_px
        pts = [np.array(start)]
        for _ in range(4):
            theta += rng.normal(0, 0.35)
            pts.append(pts[-1] + length / 4 * np.array([np.cos(theta), np.sin(theta)]))
        width = max(0.8, cfg.um(rng.uniform(0.8, 2.0)))
        out.append(Crack(np.array(pts), width, GREY_EPOXY + rng.uniform(0, 25)))
    return out


def _inclusions(
    rng: np.random.Generator,
    cfg: SynthConfig,
    shape: ConvexShape,
    r_um: float,
    melt_per_um: float,
    hole_per_um: float,
) -> list[Inclusion]:
    out = []
    n_melt = rng.poisson(r_um * melt_per_um) if r_um > 15 else 0
    for _ in range(n_melt):
        a = cfg.um(min(rng.uniform(2, 10), 0.3 * r_um))
        at = _random_point_inside(rng, shape, a + cfg.um(2))
        if at is None:
            continue
        bubble = 0.35 * a if rng.random() < 0.4 else 0.0
        out.append(
            Inclusion(*at, a, a * rng.uniform(0.5, 1.0), rng.uniform(0, np.pi), Phase.GLASS, bubble)
        )
    for _ in range(rng.poisson(r_um * hole_per_um)):
        a = cfg.um(rng.uniform(1.5, 5.0))
        at = _random_point_inside(rng, shape, a + 1)
        if at is None:
            continue
        out.append(Inclusion(*at, a, a * rng.uniform(0.7, 1.0), rng.uniform(0, np.pi), Phase.CRACK))
    return out


def _zoning_knots(rng: np.random.Generator, zoning: str, cls: str) -> tuple[np.ndarray, np.ndarray]:
    """mg# knots over normalised depth t (0 = outline, 1 = centre) for a zoning type."""
    if zoning == "normal":
        if cls == "phenocryst":
            core, delta, w = (
                rng.uniform(0.84, 0.91),
                rng.uniform(0.05, 0.13),
                rng.uniform(0.3, 0.6),
            )
        else:
            core, delta, w = rng.uniform(0.78, 0.88), rng.uniform(0.02, 0.06), rng.uniform(0.3, 0.7)
        rim = max(core - delta, MG_RANGE[0])
        t = [0.0, 0.35 * w, 0.7 * w, w, 1.0]
        mg = [rim, rim + 0.45 * (core - rim), rim + 0.85 * (core - rim), core, core]
    elif zoning == "reverse":
        # Reverse rims span a third or more of the depth, as in crystals the paper's core/rim
        # rule (rim = dmax/2 >= d > b) recognises as reversely zoned.
        core, delta, w = rng.uniform(0.74, 0.82), rng.uniform(0.05, 0.10), rng.uniform(0.35, 0.65)
        rim = min(core + delta, MG_RANGE[1])
        t = [0.0, 0.35 * w, 0.7 * w, w, 1.0]
        mg = [rim, rim - 0.45 * (rim - core), rim - 0.85 * (rim - core), core, core]
    elif zoning == "complex":
        core, mantle, rim = (
            rng.uniform(0.76, 0.81),
            rng.uniform(0.86, 0.90),
            rng.uniform(0.74, 0.80),
        )
        t = [0.0, 0.1, 0.22, 0.42, 0.58, 1.0]
        mg = [rim, 0.5 * (rim + mantle), mantle, mantle, core, core]
    else:  # none
        if cls == "microlite":
            core = rng.uniform(0.70, 0.82)
        else:
            core = rng.uniform(0.80, 0.90)
        t, mg = [0.0, 1.0], [core - rng.uniform(-0.005, 0.005), core]
    return np.array(t), np.clip(np.array(mg), *MG_RANGE)


def _olivine(
    rng: np.random.Generator, cfg: SynthConfig, x: float, y: float, area_um2: float, cls: str
) -> Olivine:
    area_px = area_um2 / cfg.pixel_size_um**2
    pts = rotate(olivine_outline(rng, area_px), rng.uniform(0, np.pi)) + [x, y]
    shape = ConvexShape.from_points(pts)
    r_px = np.sqrt(area_px / np.pi)
    r_um = r_px * cfg.pixel_size_um
    if cls == "phenocryst":
        zoning = str(
            rng.choice(list(cfg.zoning_probabilities), p=list(cfg.zoning_probabilities.values()))
        )
    elif cls == "microphenocryst":
        zoning = "normal" if rng.random() < 0.6 else "none"
    else:
        zoning = "normal" if rng.random() < 0.3 else "none"
    knots_t, knots_mg = _zoning_knots(rng, zoning, cls)
    max_depth = shape.max_depth()
    broken = cls != "microlite" and rng.random() < cfg.broken_fraction
    if broken:
        # Cut the crystal with a line at a random distance from its centre: a fragment that
        # keeps the zoning of the crystal it came from (seed 002 sect. 5.2).
        phi = rng.uniform(0, 2 * np.pi)
        n = np.array([np.cos(phi), np.sin(phi)])
        c = -(n @ [x, y]) - rng.uniform(-0.1, 0.45) * max_depth
        shape.cuts = np.array([[n[0], n[1], c]])
    spinels = []
    for _ in range(rng.poisson(r_um / 70)):
        size = cfg.um(np.sqrt(rng.uniform(8, 60)))
        at = _random_point_inside(rng, shape, size + 1)
        if at is not None:
            sp = rotate(equant_outline(rng, size * size), rng.uniform(0, np.pi)) + at
            spinels.append(ConvexShape.from_points(sp))
    return Olivine(
        bbox=crystal_bbox(shape),
        shape=shape,
        cracks=_cracks(rng, cfg, shape, r_px, rng.poisson(r_um / 35)),
        inclusions=_inclusions(rng, cfg, shape, r_um, melt_per_um=1 / 45, hole_per_um=1 / 60),
        spinels=spinels,
        max_depth=max_depth,
        knots_t=knots_t,
        knots_mg=knots_mg,
        zoning=zoning,
        size_class=cls,
        broken=broken,
    )


def _clinopyroxene(
    rng: np.random.Generator, cfg: SynthConfig, x: float, y: float, area_um2: float
) -> Clinopyroxene:
    area_px = area_um2 / cfg.pixel_size_um**2
    pts = rotate(prism_outline(rng, area_px, (1.0, 1.6), (0.2, 0.5)), rng.uniform(0, np.pi))
    shape = ConvexShape.from_points(pts + [x, y])
    r_px = np.sqrt(area_px / np.pi)
    r_um = r_px * cfg.pixel_size_um
    ox = clinopyroxene_oxides(rng.uniform(0.72, 0.88), rng.uniform(18.0, 22.0))
    return Clinopyroxene(
        bbox=crystal_bbox(shape),
        shape=shape,
        cracks=_cracks(rng, cfg, shape, r_px, rng.poisson(r_um / 90)),
        inclusions=_inclusions(rng, cfg, shape, r_um, melt_per_um=1 / 80, hole_per_um=1 / 150),
        grey0=float(grey_from_z(mean_atomic_number(ox))),
        eds0=eds_counts(ox),
        sector_offsets=rng.normal(0, 2.0, 8),
        cleavage_angle=rng.uniform(0, np.pi),
        cleavage_spacing=max(3.0, cfg.um(rng.uniform(6, 14))),
        cleavage_grey=rng.uniform(1.5, 4),
        oscillation=(rng.uniform(0, 2.5), max(2.0, cfg.um(rng.uniform(4, 12)))),
    )


def _orthopyroxene(rng, cfg, x, y, area_um2) -> Orthopyroxene:
    area_px = area_um2 / cfg.pixel_size_um**2
    pts = rotate(prism_outline(rng, area_px, (1.8, 3.5), (0.1, 0.4)), rng.uniform(0, np.pi))
    shape = ConvexShape.from_points(pts + [x, y])
    r_px = np.sqrt(area_px / np.pi)
    mg = rng.uniform(0.78, 0.88)
    return Orthopyroxene(
        bbox=crystal_bbox(shape),
        shape=shape,
        cracks=_cracks(rng, cfg, shape, r_px, rng.poisson(r_px * cfg.pixel_size_um / 60)),
        grey0=PHASE_TABLE.orthopyroxene_grey(mg),
        eds0=PHASE_TABLE.orthopyroxene_eds(mg),
    )


def _plagioclase(rng, cfg, x, y, area_um2) -> Plagioclase:
    area_px = area_um2 / cfg.pixel_size_um**2
    pts = rotate(prism_outline(rng, area_px, (2.5, 6.0), (0.0, 0.3)), rng.uniform(0, np.pi))
    shape = ConvexShape.from_points(pts + [x, y])
    an_core = rng.uniform(0.65, 0.85)
    return Plagioclase(
        bbox=crystal_bbox(shape),
        shape=shape,
        an_core=an_core,
        an_rim=rng.uniform(0.5, an_core),
        max_depth=shape.max_depth(),
        oscillation=(rng.uniform(0, 0.03), max(2.0, cfg.um(rng.uniform(4, 10)))),
    )


def _oxide(rng, cfg, x, y, area_um2) -> Oxide:
    area_px = max(area_um2 / cfg.pixel_size_um**2, 2.0)
    pts = rotate(equant_outline(rng, area_px), rng.uniform(0, np.pi)) + [x, y]
    shape = ConvexShape.from_points(pts)
    return Oxide(bbox=crystal_bbox(shape), shape=shape)


def _sessions(cfg: SynthConfig, rng: np.random.Generator) -> list[Session]:
    k, w = cfg.sessions, cfg.width
    tile_w = cfg.acquisition_tile[1]
    edges = np.linspace(0, w, k + 1)
    if w / k >= tile_w:  # sessions acquire whole tiles
        edges = np.round(edges / tile_w) * tile_w
    edges = np.unique(np.clip(np.round(edges).astype(int), 0, w))
    edges[-1] = w
    if len(edges) != k + 1:
        raise ValueError(f"{w} px are too few columns for {k} sessions")
    splits = session_splits(k)
    return [
        Session(
            i + 1,
            int(edges[i]),
            int(edges[i + 1]),
            splits[i],
            float(rng.uniform(*cfg.bse_gain_range)),
            float(rng.uniform(*cfg.bse_offset_range)),
            float(rng.uniform(*cfg.eds_gain_range)),
        )
        for i in range(k)
    ]


def _vesicles(cfg: SynthConfig, rng: np.random.Generator, placer: _Placer) -> list[Vesicle]:
    target = cfg.vesicle_fraction * cfg.width * cfg.height
    d_lo, d_hi = cfg.vesicle_diameter_um
    d_hi = min(d_hi, 0.35 * min(cfg.width, cfg.height) * cfg.pixel_size_um)
    out: list[Vesicle] = []
    covered = 0.0
    while covered < target and d_hi > d_lo:
        r = cfg.um(float(_log_uniform(rng, d_lo, d_hi, 1)[0])) / 2
        x, y = rng.uniform(0, cfg.width), rng.uniform(0, cfg.height)
        harm = np.column_stack(
            [np.arange(2, 6), rng.normal(0, 0.05, 4), rng.uniform(0, 2 * np.pi, 4)]
        )
        out.append(
            Vesicle(
                phase=Phase.EPOXY,
                bbox=disc_bbox(x, y, r * 1.25),
                x=x,
                y=y,
                radius=r,
                harmonics=harm,
            )
        )
        placer.ves = np.vstack([placer.ves, [x, y, r]])
        covered += np.pi * r * r
    return out


def _scratches(cfg: SynthConfig, rng: np.random.Generator) -> list[Scratch]:
    main = rng.uniform(0, np.pi)  # polishing leaves sets of roughly parallel scratches
    out = []
    for _ in range(rng.poisson(cfg.scratches_per_mm2 * cfg.area_mm2)):
        a = main + rng.normal(0, 0.15) if rng.random() < 0.7 else rng.uniform(0, np.pi)
        half = cfg.um(rng.uniform(100, 800)) / 2
        x, y = rng.uniform(0, cfg.width), rng.uniform(0, cfg.height)
        dx, dy = half * np.cos(a), half * np.sin(a)
        out.append(
            Scratch(
                x - dx,
                y - dy,
                x + dx,
                y + dy,
                max(0.6, cfg.um(rng.uniform(0.6, 1.3))),
                rng.uniform(2, 7),
            )
        )
    return out


def build_model(cfg: SynthConfig) -> SectionModel:
    """Sample every grain, session and scratch of a section from ``cfg.seed``."""
    rng = np.random.default_rng([cfg.seed, 1])
    sessions = _sessions(cfg, rng)
    placer = _Placer(cfg, rng)
    vesicles = _vesicles(cfg, rng, placer)

    # Large crystals first, biggest first, kept apart from each other.
    large: list[tuple[str, float]] = []
    for kind, pop in [
        ("ol-phenocryst", cfg.olivine_phenocrysts),
        ("ol-microphenocryst", cfg.olivine_microphenocrysts),
    ]:
        large += [(kind, a) for a in _sample_areas(rng, cfg, pop, at_least_one=True)]
    for kind, pop in [
        ("cpx", cfg.cpx_phenocrysts),
        ("cpx", cfg.cpx_microphenocrysts),
        ("opx", cfg.orthopyroxene),
    ]:
        large += [(kind, a) for a in _sample_areas(rng, cfg, pop)]
    large.sort(key=lambda item: -item[1])

    crystals: list[Crystal] = []
    for kind, area in large:
        r_px = np.sqrt(area / np.pi) / cfg.pixel_size_um
        at = placer.place(r_px, apart=True)
        if at is None:
            continue
        if kind.startswith("ol-"):
            crystals.append(_olivine(rng, cfg, *at, area, kind[3:]))
            if rng.random() < cfg.cluster_fraction:
                # Glomerocryst: 1-2 companions touching the crystal.
                for _ in range(rng.integers(1, 3)):
                    a2 = area * rng.uniform(0.25, 1.0)
                    r2 = np.sqrt(a2 / np.pi) / cfg.pixel_size_um
                    phi = rng.uniform(0, 2 * np.pi)
                    dist = (r_px + r2) * rng.uniform(0.75, 0.95)
                    x2, y2 = at[0] + dist * np.cos(phi), at[1] + dist * np.sin(phi)
                    if rng.random() < 0.6:
                        crystals.append(
                            _olivine(rng, cfg, x2, y2, a2, size_class(a2) or "microlite")
                        )
                    else:
                        crystals.append(_clinopyroxene(rng, cfg, x2, y2, a2))
        elif kind == "cpx":
            crystals.append(_clinopyroxene(rng, cfg, *at, area))
        else:
            crystals.append(_orthopyroxene(rng, cfg, *at, area))

    small: list[Crystal] = []
    for pop, make in [
        (cfg.olivine_microlites, "ol"),
        (cfg.cpx_microlites, "cpx"),
        (cfg.oxides, "ox"),
    ]:
        for area in _sample_areas(rng, cfg, pop, at_least_one=make == "ol"):
            r_px = np.sqrt(area / np.pi) / cfg.pixel_size_um
            at = placer.place(r_px, apart=False, tries=5)
            if at is None:
                continue
            if make == "ol":
                small.append(_olivine(rng, cfg, *at, area, "microlite"))
            elif make == "cpx":
                small.append(_clinopyroxene(rng, cfg, *at, area))
            else:
                small.append(_oxide(rng, cfg, *at, area))
    plag = []
    for area in _sample_areas(rng, cfg, cfg.plagioclase):
        at = placer.place(np.sqrt(area / np.pi) / cfg.pixel_size_um, apart=False, tries=5)
        if at is not None:
            plag.append(_plagioclase(rng, cfg, *at, area))

    # Draw order: vesicles, then small grains, plagioclase, then large crystals (random
    # order within each group, so touching crystals overlap either way).
    small = [small[i] for i in rng.permutation(len(small))]
    crystals = [crystals[i] for i in rng.permutation(len(crystals))]
    ordered: list[Grain] = [*vesicles, *small, *plag, *crystals]
    olivines = [g for g in ordered if isinstance(g, Olivine)]
    for i, ol in enumerate(olivines, start=1):
        ol.instance = i
    return SectionModel(cfg, ordered, olivines, sessions, _scratches(cfg, rng))

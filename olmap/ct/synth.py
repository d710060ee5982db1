"""``olmap synth ct``: olmap's own synthetic 4D dehydration series, with exact truth.

An aggregate of anisotropic gypsum grains (a Voronoi tessellation of seeds in a stretched,
gently warped space: grains elongated along x with curved boundaries) with celestite crystals,
a little initial porosity and a few cracks, inside a cylindrical sample. Step by step, gypsum
reacts to bassanite from grain rims and cracks inward (a front at a distance ``F(t)`` from the
nearest boundary or crack, each grain at its own rate). Each reacted gypsum volume becomes
bassanite by the molar-volume ratio of seed 000 (section 3.7):

    V_bassanite / V_gypsum = (M_b / rho_b) / (M_g / rho_g) = (145.15 / 2731) / (172.17 / 2310)
                           = 0.7131

and the rest, 28.7 %, pore space: a fine pore network (a band-limited random field thresholded
at its 28.7 % quantile) inside the reacted rims. Celestite never changes.

The grey values imitate synchrotron CT (seed 000, section 2; seed 001): gypsum and bassanite
close in grey (about 1.5 noise sd apart), pores dark, celestite brightest, partial-volume blur,
noise whose sd grows along z (a vertical gradient), ring artefacts about the rotation axis,
beam-hardening cupping, and grey levels that drift from step to step (gain and offset).

Everything is a function of the voxel position (the grains, cracks, fields) or of a seeded
per-slab random stream (the noise), computed slab by slab: a 1024^3 step needs the memory of
one slab. Outputs (shared/CLI.md):

    OUT/t000/slice_0000.tif ...      grey slices per step (uint16 by default), voxel size tags
    OUT/truth/t000.zarr              truth labels per step (OME-Zarr, class metadata)
    OUT/truth/volumes.csv            voxels, volume and moles per phase per step
    OUT/scribbles/t000/z0012.tif     sparse scribbles on a few slices, as a person paints them
    OUT/metadata.json                every parameter and the grey model
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field
from scipy import ndimage as ndi
from scipy.spatial import cKDTree
from scipy.stats import norm

from olmap import __version__
from olmap.ct.classes import ClassFile, load_classes
from olmap.io.omezarr import create_ome_zarr, write_pyramid
from olmap.io.outputs import atomic_dir
from olmap.stream import BlockGrid, BlockJob, ZarrSink, run_blocks

#: Molar masses (g/mol) and densities (kg/m3) of seed 000 (PRIMER "3D CT mode").
GYPSUM_M, GYPSUM_RHO = 172.17, 2310.0
BASSANITE_M, BASSANITE_RHO = 145.15, 2731.0
#: Volume of bassanite per volume of gypsum reacted (molar volumes' ratio).
BASSANITE_PER_GYPSUM = (BASSANITE_M / BASSANITE_RHO) / (GYPSUM_M / GYPSUM_RHO)
OUTSIDE, PORE, GYPSUM, BASSANITE, CELESTITE = 0, 1, 2, 3, 4
PHASES = {PORE: "pore", GYPSUM: "gypsum", BASSANITE: "bassanite", CELESTITE: "celestite"}
CLASS_FILE = Path(__file__).resolve().parents[1] / "configs" / "ct" / "gypsum.yaml"
#: Slab thickness (z) of the generator; also the chunk depth of the truth volumes.
SLAB = 16


class SynthCtConfig(BaseModel):
    """Parameters of the synthetic series (defaults: the demo's)."""

    model_config = ConfigDict(extra="forbid")

    seed: int = 7
    size: tuple[int, int, int] = (256, 256, 256)
    steps: int = Field(default=6, ge=1, le=1000)
    dtype: str = Field(default="uint16", pattern="^(uint8|uint16|float32)$")
    voxel_size_um: float = Field(default=2.753, gt=0)  # seed 000's voxel size
    grain_spacing_vox: float = Field(default=48.0, gt=4)
    elongation: float = Field(default=1.7, ge=1)
    celestite_fraction: float = Field(default=0.03, ge=0, le=0.3)
    initial_porosity: float = Field(default=0.01, ge=0, le=0.3)
    cracks_per_grain: float = Field(default=0.01, ge=0)
    #: Share of the gypsum reacted at the last step (reaction progress grows linearly).
    final_reacted: float = Field(default=0.85, gt=0, lt=1)
    grey: dict[str, float] = Field(
        default_factory=lambda: {
            "outside": 0.10,
            "pore": 0.16,
            "gypsum": 0.50,
            "bassanite": 0.60,
            "celestite": 0.86,
        }
    )
    noise_sd: float = Field(default=0.035, ge=0)
    noise_gradient: float = Field(default=0.8, ge=0)
    blur_sigma_vox: float = Field(default=0.8, ge=0)
    cupping: float = Field(default=0.08, ge=0, lt=1)
    rings: int = Field(default=12, ge=0)
    ring_amplitude: float = Field(default=0.03, ge=0)
    drift_gain_sd: float = Field(default=0.04, ge=0)
    drift_offset_sd: float = Field(default=0.02, ge=0)
    scribble_slices: int = Field(default=10, ge=1, le=64)


@dataclass
class Scene:
    """The fixed geometry of the sample (all in voxel units), shared by every step."""

    config: SynthCtConfig
    seeds: np.ndarray  # (n, 3) in warped space
    rates: np.ndarray  # (n,) front speed factor per grain
    tree: cKDTree
    celestite: np.ndarray  # (m, 7): centre z, y, x, semi-axes a, b, c (axis-aligned), unused
    pores: np.ndarray  # (k, 4): centre z, y, x, radius
    cracks: np.ndarray  # (j, 7): centre z, y, x, normal nz, ny, nx, radius
    waves: np.ndarray  # (w, 4): kz, ky, kx, phase of the warp field
    pore_waves: np.ndarray  # (w, 4) of the reacted-rim pore network
    rings: np.ndarray  # (r, 2): radius, amplitude
    centre: tuple[float, float]
    radius: float
    front_sample: np.ndarray | None = None  # sorted front measures of sampled voxels

    def front_reaching(self, tau: float) -> float:
        """Front distance at progress ``tau`` (0-1): the quantile of the front measure that
        makes ``final_reacted * tau`` of the gypsum react."""
        share = self.config.final_reacted * tau
        return float(np.quantile(self.front_sample, share)) if share > 0 else -1.0


def make_scene(config: SynthCtConfig) -> Scene:
    """Draw the geometry of the sample from ``config.seed``."""
    rng = np.random.default_rng([config.seed, 2024])
    z, y, x = config.size
    spacing = config.grain_spacing_vox
    stretch = np.array([1.0, 1.0, 1.0 / config.elongation])
    lo = -np.array([spacing] * 3) * stretch
    hi = (np.array([z, y, x], float) + spacing) * stretch
    n = max(8, int(np.prod(hi - lo) / spacing**3 * config.elongation))
    seeds = rng.uniform(lo, hi, size=(n, 3))
    rates = rng.uniform(0.55, 1.45, n)
    centre = ((y - 1) / 2, (x - 1) / 2)
    radius = 0.46 * min(y, x)
    vol = z * math.pi * radius**2
    # Celestite: ellipsoids of 3-8 voxel semi-axes, until the target volume is reached.
    cel, total = [], 0.0
    while total < config.celestite_fraction * vol:
        a = rng.uniform(4, 10, 3)
        cel.append([rng.uniform(0, z), *_in_disc(rng, centre, radius), *a, 0.0])
        total += 4 / 3 * math.pi * a.prod()
    pores, total = [], 0.0
    while total < config.initial_porosity * vol:
        r = rng.uniform(1.2, 3.5)
        pores.append([rng.uniform(0, z), *_in_disc(rng, centre, radius), r])
        total += 4 / 3 * math.pi * r**3
    n_cracks = rng.poisson(config.cracks_per_grain * n) + 1
    normals = rng.normal(size=(n_cracks, 3))
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    cracks = np.column_stack(
        [
            rng.uniform(0, z, n_cracks),
            *np.array([_in_disc(rng, centre, radius * 0.8) for _ in range(n_cracks)]).T,
            normals,
            rng.uniform(0.5, 1.5, n_cracks) * spacing,
        ]
    )
    waves = _waves(rng, 12, wavelength=(30, 80))
    pore_waves = _waves(rng, 24, wavelength=(12, 24))
    ring_r = rng.uniform(0.05, 0.95, config.rings) * radius
    ring_a = rng.choice([-1, 1], config.rings) * rng.uniform(0.3, 1.0, config.rings)
    scene = Scene(
        config,
        seeds,
        rates,
        cKDTree(seeds),
        np.array(cel).reshape(-1, 7),
        np.array(pores).reshape(-1, 4),
        cracks,
        waves,
        pore_waves,
        np.column_stack([ring_r, ring_a * config.ring_amplitude]),
        centre,
        radius,
    )
    # The front measure over a sample of regions inside the cylinder sets the reaction
    # progress: a chosen share of the gypsum reacts at each step, whatever the geometry.
    fronts = []
    side = 24
    for _ in range(12):
        zc = rng.uniform(0, max(1, z - side))
        yc, xc = _in_disc(rng, centre, max(1.0, radius - side))
        zz, yy, xx = (
            np.arange(int(a), int(a) + side, dtype=np.float32)[sl]
            for a, sl in zip(
                (zc, yc - side / 2, xc - side / 2),
                ((slice(None), None, None), (None, slice(None), None), (None, None, slice(None))),
                strict=True,
            )
        )
        fronts.append(_front(scene, zz, yy, xx, (side, side, side))[3].ravel())
    scene.front_sample = np.sort(np.concatenate(fronts))
    return scene


def _in_disc(rng: np.random.Generator, centre: tuple[float, float], radius: float):
    r, t = radius * math.sqrt(rng.uniform()), rng.uniform(0, 2 * math.pi)
    return centre[0] + r * math.sin(t), centre[1] + r * math.cos(t)


def _waves(rng: np.random.Generator, n: int, wavelength: tuple[float, float]) -> np.ndarray:
    k = rng.normal(size=(n, 3))
    k /= np.linalg.norm(k, axis=1, keepdims=True)
    k *= (2 * math.pi / rng.uniform(*wavelength, n))[:, None]
    return np.column_stack([k, rng.uniform(0, 2 * math.pi, n)]).astype(np.float32)


def _field(waves: np.ndarray, zz, yy, xx) -> np.ndarray:
    """Sum of plane waves scaled to unit variance: a band-limited Gaussian-like field."""
    out = np.zeros(np.broadcast_shapes(zz.shape, yy.shape, xx.shape), np.float32)
    for kz, ky, kx, ph in waves:
        out += np.cos(kz * zz + ky * yy + kx * xx + ph)
    return out * np.float32(math.sqrt(2.0 / len(waves)))


def scene_labels(scene: Scene, region: tuple[slice, slice, slice], steps: list[int]):
    """Truth labels of ``region`` at each of ``steps`` (list of uint8 arrays)."""
    c = scene.config
    zs, ys, xs = (np.arange(s.start, s.stop, dtype=np.float32) for s in region)
    zz, yy, xx = zs[:, None, None], ys[None, :, None], xs[None, None, :]
    shape = (len(zs), len(ys), len(xs))
    r = np.sqrt((yy - scene.centre[0]) ** 2 + (xx - scene.centre[1]) ** 2)
    inside = np.broadcast_to(r <= scene.radius, shape)
    # Warped, stretched coordinates: curved, elongated grains.
    warp, to_boundary, to_crack, front = _front(scene, zz, yy, xx, shape)
    base = np.full(shape, GYPSUM, np.uint8)
    base[(to_boundary < 0.6) & (warp < -4.0)] = PORE  # open grain boundaries, in patches
    base[to_crack < 0.7] = PORE
    for cz, cy, cx, rad in scene.pores:
        if _near(region, (cz, cy, cx), rad):
            base[((zz - cz) ** 2 + (yy - cy) ** 2 + (xx - cx) ** 2) <= rad**2] = PORE
    celestite = np.zeros(shape, bool)
    for cz, cy, cx, a, b, cc, _ in scene.celestite:
        if _near(region, (cz, cy, cx), max(a, b, cc)):
            celestite |= ((zz - cz) / a) ** 2 + ((yy - cy) / b) ** 2 + ((xx - cx) / cc) ** 2 <= 1
    rim_pore = _field(scene.pore_waves, zz * 1.0, yy, xx) < norm.ppf(1 - BASSANITE_PER_GYPSUM)
    out = []
    for t in steps:
        tau = t / max(1, c.steps - 1)
        labels = base.copy()
        reacted = (labels == GYPSUM) & (front < scene.front_reaching(tau)) & (tau > 0)
        labels[reacted] = np.where(rim_pore[reacted], PORE, BASSANITE)
        labels[celestite] = CELESTITE
        labels[~inside] = OUTSIDE
        out.append(labels)
    return out


def _front(scene: Scene, zz, yy, xx, shape):
    """Warp field, distances to grain boundaries and cracks, and the reaction-front measure
    (distance to the nearest boundary or crack over the grain's rate) of a grid region."""
    warp = 4.0 * _field(scene.waves, zz, yy, xx)
    to_boundary, grain = _voronoi(scene, zz, yy, xx, warp)
    to_crack = np.full(shape, np.inf, np.float32)
    for cz, cy, cx, nz, ny, nx, rad in scene.cracks:
        normal = (zz - cz) * nz + (yy - cy) * ny + (xx - cx) * nx
        along = np.sqrt(np.maximum((zz - cz) ** 2 + (yy - cy) ** 2 + (xx - cx) ** 2 - normal**2, 0))
        d = np.where(along <= rad, np.abs(normal), np.inf)
        np.minimum(to_crack, d, out=to_crack)
    front = np.minimum(to_boundary, to_crack) / scene.rates[grain].astype(np.float32)
    return warp, to_boundary, to_crack, front


def _voronoi(scene: Scene, zz, yy, xx, warp) -> tuple[np.ndarray, np.ndarray]:
    """Distance (voxels, warped space) to the nearest grain boundary, and the grain index,
    by nearest seeds, in pieces of about a million voxels (bounded memory)."""
    shape = warp.shape
    to_boundary = np.empty(shape, np.float32)
    grain = np.empty(shape, np.int32)
    rows = max(1, 1_000_000 // (shape[0] * shape[2]))
    e = scene.config.elongation
    for r0 in range(0, shape[1], rows):
        sl = slice(r0, r0 + rows)
        w = warp[:, sl]
        sub = w.shape
        pts = np.stack(
            [
                np.broadcast_to(zz + w, sub),
                np.broadcast_to(yy[:, sl] + 0.7 * w, sub),
                np.broadcast_to((xx - 0.5 * w) / e, sub),
            ],
            axis=-1,
        ).reshape(-1, 3)
        dist, idx = scene.tree.query(pts, k=4, workers=-1)
        s = scene.seeds[idx]
        gap = np.linalg.norm(s[:, 1:] - s[:, :1], axis=-1)
        # The nearest of the bisector planes with the next 3 seeds: the cell boundary.
        d = ((dist[:, 1:] ** 2 - dist[:, :1] ** 2) / (2 * np.maximum(gap, 1e-6))).min(1)
        to_boundary[:, sl] = d.reshape(sub)
        grain[:, sl] = idx[:, 0].reshape(sub)
    return to_boundary, grain


def _near(region, centre, reach) -> bool:
    return all(s.start - reach <= c <= s.stop + reach for s, c in zip(region, centre, strict=True))


@dataclass(frozen=True)
class StepLook:
    """Grey model of one scan: phase levels after drift (gain, offset)."""

    gain: float
    offset: float


def step_looks(config: SynthCtConfig) -> list[StepLook]:
    rng = np.random.default_rng([config.seed, 77])
    return [
        StepLook(
            1.0 + (config.drift_gain_sd * rng.normal() if t else 0.0),
            config.drift_offset_sd * rng.normal() if t else 0.0,
        )
        for t in range(config.steps)
    ]


def grey_slab(
    scene: Scene, labels: np.ndarray, z0: int, crop: slice, look: StepLook, step: int
) -> np.ndarray:
    """Grey values (float, about 0-1) of a slab from its labels (with z halo)."""
    c = scene.config
    levels = np.array(
        [
            c.grey["outside"],
            c.grey["pore"],
            c.grey["gypsum"],
            c.grey["bassanite"],
            c.grey["celestite"],
        ],
        np.float32,
    )
    grey = levels[labels]
    if c.blur_sigma_vox > 0:
        grey = ndi.gaussian_filter(grey, c.blur_sigma_vox, mode="nearest")
    grey = grey[crop]
    nz, ny, nx = grey.shape
    yy = np.arange(ny, dtype=np.float32)[:, None] - scene.centre[0]
    xx = np.arange(nx, dtype=np.float32)[None, :] - scene.centre[1]
    r = np.sqrt(yy**2 + xx**2)
    rr = np.minimum(r / scene.radius, 1.0)
    grey *= 1.0 - c.cupping * (1.0 - rr**2)  # beam hardening: the centre reads darker
    for radius, amp in scene.rings:
        grey += amp * np.exp(-0.5 * ((r - radius) / 0.7) ** 2)
    zs = np.arange(z0, z0 + nz, dtype=np.float32)[:, None, None]
    sd = c.noise_sd * (1 + c.noise_gradient * zs / max(1, c.size[0] - 1))
    rng = np.random.default_rng([c.seed, 99, step, z0])
    grey += sd * rng.standard_normal(grey.shape, dtype=np.float32)
    return grey * look.gain + look.offset


def to_dtype(grey: np.ndarray, dtype: str) -> np.ndarray:
    """Scale grey (about 0-1) to the stored type: uint16 1000 + 50000 g, uint8 10 + 200 g."""
    if dtype == "float32":
        return grey.astype(np.float32)
    lo, span, top = (1000.0, 50000.0, 65535) if dtype == "uint16" else (10.0, 200.0, 255)
    return np.clip(np.rint(lo + span * grey), 0, top).astype(dtype)


def synth_ct(
    out_dir: str | Path,
    config: SynthCtConfig | None = None,
    *,
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
) -> dict:
    """Write the synthetic series of ``config`` to ``out_dir``; return its metadata.

    The folder appears complete or not at all; an interrupted run resumes slab by slab.
    """
    import tifffile

    config = config or SynthCtConfig()
    classes = load_classes(CLASS_FILE)
    scene = make_scene(config)
    looks = step_looks(config)
    _, y, x = config.size
    steps = list(range(config.steps))
    halo = int(4 * config.blur_sigma_vox + 0.5) if config.blur_sigma_vox > 0 else 0
    grid = BlockGrid(config.size, (SLAB, y, x), halo=(halo, 0, 0))
    res = (1e4 / config.voxel_size_um,) * 2
    with atomic_dir(out_dir, overwrite=overwrite, keep_partial=True) as tmp:
        truths = {}
        for t in steps:
            (tmp / f"t{t:03d}").mkdir(exist_ok=True)
            path = tmp / "truth" / f"t{t:03d}.zarr"
            if not path.exists():
                path.parent.mkdir(exist_ok=True)
                create_ome_zarr(
                    path,
                    config.size,
                    np.uint8,
                    voxel_size_um=config.voxel_size_um,
                    name=f"truth t{t:03d}",
                    chunks=(SLAB, 256, 256),
                    classes=classes.metadata(),
                )
            import zarr

            truths[t] = ZarrSink(zarr.open_array(str(path / "0"), mode="r+"))
        counts = np.zeros((len(grid), config.steps, 5), np.int64)

        def compute(block):
            labels = scene_labels(scene, block.outer, steps)
            out = []
            for t, lab in enumerate(labels):
                grey = grey_slab(scene, lab, block.inner[0].start, block.crop, looks[t], t)
                out.append((lab[block.crop], to_dtype(grey, config.dtype)))
            return out

        def write(block, result):
            for t, (lab, grey) in enumerate(result):
                truths[t].write(block.inner, lab)
                for k, zi in enumerate(range(block.inner[0].start, block.inner[0].stop)):
                    tifffile.imwrite(
                        tmp / f"t{t:03d}" / f"slice_{zi:04d}.tif",
                        grey[k],
                        resolution=res,
                        resolutionunit="CENTIMETER",
                    )
                counts[block.index, t] = np.bincount(lab.ravel(), minlength=5)[:5]

        fingerprint = json.dumps(
            {"olmap": __version__, "config": config.model_dump()}, sort_keys=True
        )
        job = BlockJob(grid, compute, write, str(out_dir), state={"counts": counts})
        run_blocks(job, checkpoint=tmp / "progress.npz", fingerprint=fingerprint, progress=progress)
        for t in steps:
            write_pyramid(tmp / "truth" / f"t{t:03d}.zarr", labels=True)
        table = volumes_table(counts.sum(0), config, classes)
        table.to_csv(tmp / "truth" / "volumes.csv", index=False)
        scribbles = write_scribbles(tmp, config, classes)
        meta = {
            "software": f"olmap {__version__}",
            "config": config.model_dump(),
            "classes": classes.metadata(),
            "bassanite_per_gypsum_volume": BASSANITE_PER_GYPSUM,
            "drift": [
                {"step": t, "gain": lk.gain, "offset": lk.offset} for t, lk in enumerate(looks)
            ],
            "scribble_slices": scribbles,
            "grey_scale": "uint16: 1000 + 50000 g; uint8: 10 + 200 g; float32: g",
            "layout": {
                "scans": "tNNN/slice_ZZZZ.tif",
                "truth": "truth/tNNN.zarr",
                "scribbles": "scribbles/tNNN/zZZZZ.tif",
            },
        }
        (tmp / "metadata.json").write_text(json.dumps(meta, indent=2))
        (tmp / "progress.npz").unlink(missing_ok=True)
    return meta


def volumes_table(counts: np.ndarray, config: SynthCtConfig, classes: ClassFile) -> pd.DataFrame:
    """Voxels, volume (µm3) and, where the class file gives them, moles per phase per step."""
    voxel_um3 = config.voxel_size_um**3
    rows = []
    for t in range(counts.shape[0]):
        sample = counts[t, 1:].sum()
        for code, name in PHASES.items():
            pc = classes.by_name(name)
            volume = counts[t, code] * voxel_um3
            moles = None
            if pc.density_kg_m3 and pc.molar_mass_g_mol:
                # µm3 -> m3 (1e-18) x kg/m3 -> kg x 1e3 g/kg / (g/mol)
                moles = volume * 1e-18 * pc.density_kg_m3 * 1e3 / pc.molar_mass_g_mol
            rows.append(
                {
                    "step": t,
                    "phase": name,
                    "code": code,
                    "voxels": int(counts[t, code]),
                    "volume_um3": volume,
                    "fraction": counts[t, code] / max(1, sample),
                    "moles": moles,
                }
            )
    return pd.DataFrame(rows)


def scribble_slices(config: SynthCtConfig) -> list[int]:
    """The z of the slices a person scribbles on: spread over the volume, not the very ends."""
    z = config.size[0]
    n = min(config.scribble_slices, z)
    return sorted({round(float(v)) for v in np.linspace(0.06 * (z - 1), 0.94 * (z - 1), n)})


def write_scribbles(folder: Path, config: SynthCtConfig, classes: ClassFile) -> list[int]:
    """Scribbles per step on :func:`scribble_slices`, drawn from the truth like a careful
    person: a few brush strokes (radius 1-2 px) well inside regions of each class."""
    import tifffile
    import zarr

    zs = scribble_slices(config)
    for t in range(config.steps):
        out = folder / "scribbles" / f"t{t:03d}"
        out.mkdir(parents=True, exist_ok=True)
        truth = zarr.open_array(str(folder / "truth" / f"t{t:03d}.zarr" / "0"), mode="r")
        for z in zs:
            rng = np.random.default_rng([config.seed, 5, t, z])
            labels = np.asarray(truth[z])
            tifffile.imwrite(out / f"z{z:04d}.tif", paint_strokes(labels, classes.codes, rng))
    return zs


def paint_strokes(
    labels: np.ndarray,
    codes: list[int],
    rng: np.random.Generator,
    *,
    target_px: int = 250,
    length: int = 30,
    brush: int = 1,
    max_strokes: int = 40,
) -> np.ndarray:
    """Brush strokes on one slice: per class, random walks (``length`` steps, a brush of
    radius ``brush`` px) until about ``target_px`` px of the class are painted.

    A careful person: every painted pixel has its 8 neighbours in the same class (they see
    the class around the brush), so strokes follow structures down to 3 px wide, such as the
    thin bassanite walls between pores, but never touch a boundary pixel.

    Examples
    --------
    >>> lab = np.zeros((40, 40), np.uint8); lab[:, :20] = 1; lab[:, 20:] = 2
    >>> s = paint_strokes(lab, [1, 2], np.random.default_rng(0))
    >>> sorted(np.unique(s).tolist()), bool(np.all((s == 0) | (s == lab)))
    ([0, 1, 2], True)
    """
    out = np.zeros(labels.shape, np.uint8)
    h, w = labels.shape
    for code in codes:
        sure = ndi.distance_transform_edt(labels == code) >= 1.5  # all 8 neighbours in class
        cand = np.argwhere(sure)
        painted, strokes = 0, 0
        while len(cand) and painted < target_px and strokes < max_strokes:
            strokes += 1
            pos = cand[rng.integers(len(cand))].astype(float)
            heading = rng.uniform(0, 2 * math.pi)
            for _ in range(length):
                r, c = round(float(pos[0])), round(float(pos[1]))
                if not (0 <= r < h and 0 <= c < w) or not sure[r, c]:
                    break
                box = (
                    slice(max(0, r - brush), r + brush + 1),
                    slice(max(0, c - brush), c + brush + 1),
                )
                new = sure[box] & (out[box] == 0)
                out[box][new] = code
                painted += int(new.sum())
                heading += rng.normal(0, 0.35)
                pos += (math.sin(heading), math.cos(heading))
    return out

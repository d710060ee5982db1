"""Write a synthetic thin section to disk, window by window, in bounded memory.

Files (``shared/CLI.md``): ``bse.tif``, ``eds.tif`` (bands Mg, Ca, Al, Fe, Si), ``sessions.csv``,
``epma.csv``, ``standards.csv``, ``section.json`` and the ground truth ``truth/olivine.tif``,
``truth/instances.tif``, ``truth/mgnum.tif``, ``truth/phases.tif``, ``truth/crystals.csv``,
``truth/epma_offsets.csv``, ``truth/drift.csv``.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from olmap import __version__
from olmap.errors import InputError
from olmap.io.outputs import atomic_dir, claim_outputs, partial_name
from olmap.io.raster import create_raster, update_raster
from olmap.io.resume import CHECKPOINT_NAME, Checkpoint
from olmap.io.tables import write_json, write_table
from olmap.stream import Block, BlockGrid, BlockJob, GeoTiffSink, run_blocks
from olmap.synth.config import SynthConfig
from olmap.synth.epma import epma_profiles, standards_table
from olmap.synth.model import SectionModel, build_model, size_class
from olmap.synth.phases import EDS_ELEMENTS, Phase
from olmap.synth.render import NOISE_TILE, ObservedWindow, render_observed

#: Default processing window (px); a multiple of the noise tile and of the GeoTIFF tile.
DEFAULT_WINDOW = 1024

log = logging.getLogger(__name__)

PHASE_CODES = {p.value: p.name.lower() for p in Phase}

# The rasters of a section: key -> (path inside the folder, create_raster arguments).
_OUTPUT_RASTERS: dict[str, tuple[str, dict]] = {
    "bse": ("bse.tif", {"dtype": "uint8", "band_names": ["BSE"]}),
    "eds": (
        "eds.tif",
        {
            "dtype": "uint16",
            "count": len(EDS_ELEMENTS),
            "band_names": list(EDS_ELEMENTS),
            "tags": {"units": "counts"},
        },
    ),
    "olivine": (
        "truth/olivine.tif",
        {
            "dtype": "uint8",
            "band_names": ["olivine"],
            "tags": {"classes": "0=background,1=olivine"},
        },
    ),
    "instances": (
        "truth/instances.tif",
        {
            "dtype": "uint32",
            "band_names": ["crystal_id"],
            "tags": {"meaning": "olivine crystal id (truth/crystals.csv), 0 elsewhere"},
        },
    ),
    "mgnum": (
        "truth/mgnum.tif",
        {"dtype": "float32", "band_names": ["mg_num"], "nodata": float("nan")},
    ),
    "phases": (
        "truth/phases.tif",
        {
            "dtype": "uint8",
            "band_names": ["phase"],
            "tags": {"classes": ",".join(f"{k}={v}" for k, v in PHASE_CODES.items())},
        },
    ),
}


def _output_arrays(obs: ObservedWindow) -> dict[str, np.ndarray]:
    """The (band, row, col) arrays written to each output raster for one window."""
    return {
        "bse": obs.bse[None],
        "eds": obs.eds,
        "olivine": (obs.phase == Phase.OLIVINE).astype(np.uint8)[None],
        "instances": obs.instance[None],
        "mgnum": obs.mg[None],
        "phases": obs.phase[None],
    }


class _CrystalStats:
    """Per-crystal sums accumulated over windows (index = instance id), checkpointable."""

    def __init__(self, n: int, arrays: dict[str, np.ndarray] | None = None) -> None:
        self.footprint = np.zeros(n, np.int64)
        self.olivine = np.zeros(n, np.int64)
        self.sum_row = np.zeros(n)
        self.sum_col = np.zeros(n)
        self.sum_mg = np.zeros(n)
        self.edge = np.zeros(n, bool)
        self.phases = np.zeros(len(Phase), np.int64)
        self.n = n
        for name, value in (arrays or {}).items():
            setattr(self, name, value.astype(getattr(self, name).dtype))

    def arrays(self) -> dict[str, np.ndarray]:
        """Copies of the accumulators (a consistent snapshot for a checkpoint)."""
        return {k: v.copy() for k, v in vars(self).items() if isinstance(v, np.ndarray)}

    def add(self, obs: ObservedWindow, row0: int, col0: int, height: int, width: int) -> None:
        inst = obs.instance.ravel().astype(np.int64)
        rows = np.repeat(np.arange(row0, row0 + obs.bse.shape[0]), obs.bse.shape[1])
        cols = np.tile(np.arange(col0, col0 + obs.bse.shape[1]), obs.bse.shape[0])
        self.footprint += np.bincount(inst, minlength=self.n)
        self.sum_row += np.bincount(inst, weights=rows + 0.5, minlength=self.n)
        self.sum_col += np.bincount(inst, weights=cols + 0.5, minlength=self.n)
        ol = obs.phase.ravel() == Phase.OLIVINE
        self.olivine += np.bincount(inst[ol], minlength=self.n)
        self.sum_mg += np.bincount(inst[ol], weights=obs.mg.ravel()[ol], minlength=self.n)
        self.phases += np.bincount(obs.phase.ravel(), minlength=len(Phase))
        h, w = obs.bse.shape
        border = []
        if row0 == 0:
            border.append(obs.instance[0])
        if col0 == 0:
            border.append(obs.instance[:, 0])
        if row0 + h == height:
            border.append(obs.instance[-1])
        if col0 + w == width:
            border.append(obs.instance[:, -1])
        for line in border:
            self.edge[np.unique(line)] = True


@dataclass
class SectionSummary:
    """What was written, for reports and the CLI summary."""

    out_dir: Path
    config: SynthConfig
    seconds: float
    phase_fractions: dict[str, float]
    crystals: pd.DataFrame
    sessions: pd.DataFrame
    n_profiles: int

    def class_counts(self) -> dict[str, int]:
        counts = self.crystals["size_class"].replace("", "below 100 µm²").value_counts()
        return {str(k): int(v) for k, v in counts.items()}

    def zoning_counts(self) -> dict[str, int]:
        ph = self.crystals[self.crystals["size_class"] == "phenocryst"]
        return {str(k): int(v) for k, v in ph["zoning"].value_counts().items()}


def _crystal_table(model: SectionModel, stats: _CrystalStats) -> pd.DataFrame:
    cfg = model.config
    px, px2 = cfg.pixel_size_um, cfg.pixel_size_um**2
    rows = []
    for ol in model.olivines:
        i = ol.instance
        n = stats.footprint[i]
        if n == 0:
            continue  # entirely covered by later grains: not visible, not a crystal
        area = n * px2
        col_c, row_c = stats.sum_col[i] / n, stats.sum_row[i] / n
        complex_mantle = float(ol.knots_mg[2]) if ol.zoning == "complex" else np.nan
        rows.append(
            {
                "id": i,
                "size_class": size_class(area),
                "zoning": ol.zoning,
                "mg_core": round(ol.mg_core, 5),
                "mg_rim": round(ol.mg_rim, 5),
                "mg_mantle": round(complex_mantle, 5),
                "mg_mean": round(stats.sum_mg[i] / stats.olivine[i], 5)
                if stats.olivine[i]
                else np.nan,
                "area_um2": round(area, 3),
                "olivine_area_um2": round(stats.olivine[i] * px2, 3),
                "centroid_x_um": round(col_c * px, 3),
                "centroid_y_um": round((cfg.height - row_c) * px, 3),
                "broken": ol.broken,
                "touches_edge": bool(stats.edge[i]),
                "session": model.sessions[
                    int(model.session_index(np.array([int(col_c)]))[0])
                ].session,
                "n_cracks": len(ol.cracks),
                "n_inclusions": len(ol.inclusions) + len(ol.spinels),
            }
        )
    return pd.DataFrame(rows)


def _sessions_table(model: SectionModel) -> tuple[pd.DataFrame, pd.DataFrame]:
    cfg = model.config
    px = cfg.pixel_size_um
    sessions = pd.DataFrame(
        [
            {
                "session": s.session,
                "x0_um": s.col0 * px,
                "y0_um": 0.0,
                "x1_um": s.col1 * px,
                "y1_um": cfg.height * px,
                "split": s.split,
            }
            for s in model.sessions
        ]
    )
    drift = pd.DataFrame(
        [
            {
                "session": s.session,
                "bse_gain": round(s.bse_gain, 6),
                "bse_offset": round(s.bse_offset, 6),
                "eds_gain": round(s.eds_gain, 6),
            }
            for s in model.sessions
        ]
    )
    return sessions, drift


def _open_writers(stack: ExitStack, folder: Path, cfg: SynthConfig, *, resume: bool) -> dict:
    """Output rasters inside the partial folder: created afresh, or reopened to resume."""
    if resume:
        return {
            key: stack.enter_context(update_raster(folder / rel))
            for key, (rel, _) in _OUTPUT_RASTERS.items()
        }
    common = {"height": cfg.height, "width": cfg.width, "pixel_size_um": cfg.pixel_size_um}
    specs = {key: dict(spec) for key, (_, spec) in _OUTPUT_RASTERS.items()}
    specs["bse"]["dtype"] = cfg.look.dtype
    return {
        key: stack.enter_context(
            create_raster(folder / rel, **specs[key], **common, atomic=False, overwrite=True)
        )
        for key, (rel, _) in _OUTPUT_RASTERS.items()
    }


def generate_section(
    out_dir: str | Path,
    config: SynthConfig,
    *,
    overwrite: bool = False,
    workers: int = 2,
    window: int = DEFAULT_WINDOW,
    progress: Callable[[int], None] | None = None,
) -> SectionSummary:
    """Generate a synthetic thin section with ground truth and write it to ``out_dir``.

    Pixels are rendered window by window (``window`` px, in ``workers`` threads) and
    streamed into tiled GeoTIFFs, so peak memory depends on the window, not on the section.
    The folder appears only when complete.

    Parameters
    ----------
    out_dir : path-like
        Output folder (must not exist, or be empty, unless ``overwrite``).
    config : SynthConfig
        Size, seed, sessions and physics.
    overwrite : bool
        Replace an existing folder.
    workers : int
        Threads rendering windows in parallel.
    window : int
        Processing window side in pixels (multiple of 256).
    progress : callable, optional
        Called with the number of pixels finished after each window (and once at the start
        with the pixels already written when resuming).

    Notes
    -----
    Interrupting (Ctrl-C, SIGTERM) stops at the next window boundary, saves a checkpoint in
    ``out_dir.partial`` and raises :class:`~olmap.io.resume.RunInterrupted`; calling again
    with the same config resumes from there. A partial folder of another config is discarded.

    Returns
    -------
    SectionSummary
    """
    if window % NOISE_TILE:
        raise ValueError(f"window must be a multiple of {NOISE_TILE} px, got {window}")
    with claim_outputs([out_dir], overwrite=overwrite):  # checked and locked before any work
        return _generate_section(out_dir, config, overwrite, workers, window, progress)


def _generate_section(
    out_dir: str | Path,
    config: SynthConfig,
    overwrite: bool,
    workers: int,
    window: int,
    progress: Callable[[int], None] | None,
) -> SectionSummary:
    t_start = time.perf_counter()
    cfg = config
    model = build_model(cfg)
    h, w = cfg.height, cfg.width
    grid = BlockGrid((h, w), window)
    fingerprint = json.dumps(
        {"olmap": __version__, "config": cfg.model_dump(mode="json"), "window": window},
        sort_keys=True,
    )
    partial = partial_name(out_dir)
    ckpt = Checkpoint.load(partial, fingerprint)
    if ckpt is None and partial.exists():
        shutil.rmtree(partial)  # left by another job or unusable: start afresh
    stats = _CrystalStats(len(model.olivines) + 1)

    with atomic_dir(out_dir, overwrite=overwrite, keep_partial=True) as tmp:
        (tmp / "truth").mkdir(exist_ok=True)
        with ExitStack() as stack:
            try:
                writers = _open_writers(stack, tmp, cfg, resume=ckpt is not None)
            except InputError:
                log.warning("%s: partial rasters unreadable; starting afresh", tmp)
                (tmp / CHECKPOINT_NAME).unlink(missing_ok=True)
                writers = _open_writers(stack, tmp, cfg, resume=False)

            def render(block: Block) -> ObservedWindow:
                (r0, r1), (c0, c1) = ((s.start, s.stop) for s in block.inner)
                return render_observed(model, r0, c0, r1 - r0, c1 - c0)

            def write(block: Block, obs: ObservedWindow) -> None:
                for key, array in _output_arrays(obs).items():
                    GeoTiffSink(writers[key], bands=list(range(1, len(array) + 1))).write(
                        block.inner, array
                    )
                stats.add(obs, block.inner[0].start, block.inner[1].start, h, w)

            state = {k: v for k, v in vars(stats).items() if isinstance(v, np.ndarray)}
            job = BlockJob(grid, render, write, str(out_dir), state=state)
            tables = {}

            def finish() -> None:
                # Tables come from the complete stats; written inside the partial folder, where
                # a failed earlier attempt may have left some (hence overwrite=True).
                stack.close()
                tables["crystals"] = _crystal_table(model, stats)
                tables["sessions"], drift = _sessions_table(model)
                tables["profiles"], profile_truth = epma_profiles(model)
                write_table(tables["crystals"], tmp / "truth" / "crystals.csv", overwrite=True)
                write_table(drift, tmp / "truth" / "drift.csv", overwrite=True)
                write_table(profile_truth, tmp / "truth" / "epma_offsets.csv", overwrite=True)
                write_table(tables["sessions"], tmp / "sessions.csv", overwrite=True)
                write_table(tables["profiles"], tmp / "epma.csv", overwrite=True)
                write_table(standards_table(model), tmp / "standards.csv", overwrite=True)

            # The checkpoint is saved only with the rasters closed (every window it lists is
            # on disk): on an interruption, or when the tables fail after the last window.
            run_blocks(
                job,
                checkpoint=tmp / CHECKPOINT_NAME,
                fingerprint=fingerprint,
                progress=progress,
                workers=workers,
                save_every_s=float("inf"),
                before_save=stack.close,
                finish=finish,
            )
        crystals, sessions, profiles = tables["crystals"], tables["sessions"], tables["profiles"]
        seconds = time.perf_counter() - t_start
        fractions = {Phase(i).name.lower(): float(c / (h * w)) for i, c in enumerate(stats.phases)}
        write_json(
            {
                "generator": "olmap.synth",
                "olmap_version": __version__,
                "config": cfg.model_dump(),
                "phase_codes": PHASE_CODES,
                "phase_fractions": fractions,
                "seconds": round(seconds, 2),
            },
            tmp / "section.json",
            overwrite=True,
        )

    return SectionSummary(
        Path(out_dir),
        cfg,
        seconds,
        fractions,
        crystals,
        sessions,
        profiles["profile_id"].nunique() if len(profiles) else 0,
    )

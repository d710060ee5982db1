"""``olmap mgmap``: an mg# map of every olivine pixel of a mosaic, streamed.

Data flow: olivine mask -> crystals (connected components, labelled chunk by chunk and joined
exactly across chunk borders: :mod:`olmap.core.components`) -> LOF outliers per crystal, each
read whole through its bounding box so a crystal cut by a chunk border is filtered exactly as
if the mosaic were one array -> BSE on the reference scale (session drift) -> smoothing over
the clean pixels -> calibration -> float32 mg# GeoTIFF (NaN off olivine and on outliers) and
a uint8 outlier mask (1 = outlier), written block by block.

Memory: one chunk of mask and BSE, the largest crystal's pixels, and 8 bytes per outlier
pixel (the sorted flat indices, ~1 % of olivine pixels).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from rasterio.windows import Window
from scipy import ndimage as ndi

from olmap import __version__
from olmap.composition.calibrate import BseDomain
from olmap.composition.config import MgMapConfig
from olmap.composition.drift import SessionDrift, correct_bse, session_index_grid
from olmap.composition.outliers import crystal_noise_sd, lof_outliers
from olmap.composition.psf import psf_reach_px, unmix_edges
from olmap.composition.regression import LinearCalibration
from olmap.core.components import component_pixels, label_components
from olmap.io.outputs import atomic_paths, claim_outputs
from olmap.io.raster import (
    ClassMaskSource,
    WindowSource,
    check_coregistered,
    create_raster,
    raster_inputs,
    sample_values,
)
from olmap.io.results import default_outliers_path
from olmap.io.resume import (
    Checkpoint,
    RunInterrupted,
    file_stamp,
    interrupts_deferred,
    progress_path,
)
from olmap.stream import Block, BlockGrid, BlockJob, GeoTiffSink, run_blocks

log = logging.getLogger(__name__)

#: progress(stage, done, total)
Progress = Callable[[str, int, int], None]


@dataclass
class MgMapResult:
    """What ``olmap mgmap`` wrote and found."""

    mg_path: Path
    outliers_path: Path
    crystals: int
    crystals_filtered: int  # crystals large enough for LOF
    olivine_pixels: int
    outlier_pixels: int
    unmapped: int  # olivine pixels without a BSE on the calibration's scale: nodata, or (with
    # drift correction) in no session or a session without standards; NaN in the map
    mg_quantiles: dict[str, float] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    noise_sd: float = float("nan")  # median BSE noise sd of the largest crystals (BSE units)
    smooth_sigma_px: float = 0.0  # the Gaussian applied (auto: from noise_sd)


def auto_smooth_sigma(
    slope: float, noise_sd: float, pixel_size_um: float, target_mg: float, max_um: float
) -> float:
    """Gaussian sd (px) that brings the per-pixel mg# noise down to ``target_mg``.

    A 2-D Gaussian of sd s averages white noise down by 1 / (2 sqrt(pi) s); the per-pixel
    mg# noise is ``|slope| * noise_sd``. At least 1 px (below it a discrete Gaussian averages
    less than the formula says; 1 px was the fixed default before) and at most ``max_um``
    (an EPMA spot's size: more would blur zoning the probe resolves), or 1 px if that is
    less.

    Examples
    --------
    >>> round(auto_smooth_sigma(-0.0025, 3.1, 1.0, 0.002, 1.5), 2)  # olmap's default look
    1.09
    >>> auto_smooth_sigma(-0.0046, 6.0, 0.4, 0.002, 1.5)  # low contrast, noisy: capped
    3.75
    """
    if not np.isfinite(noise_sd):
        return 1.0
    sigma = abs(slope) * noise_sd / (2 * np.sqrt(np.pi) * target_mg)
    return float(min(max(sigma, 1.0), max(1.0, max_um / pixel_size_um)))


def crystal_outliers(
    read_mask: Callable,
    read_bse: Callable,
    height: int,
    width: int,
    config: MgMapConfig,
    progress: Progress | None = None,
    *,
    start: int = 0,
    found: list[np.ndarray] | None = None,
    stop: Callable[[int, list[np.ndarray]], bool] | None = None,
) -> tuple[np.ndarray, int, int, float]:
    """Sorted flat indices (``row * width + col``) of the LOF outliers of every crystal.

    Parameters
    ----------
    read_mask, read_bse : callable
        ``read(window) -> ndarray``; the mask as bool (True = olivine), BSE as float with NaN
        where it has no value (nodata, or not on the reference scale).
    height, width : int
        Mosaic shape (px).
    config : MgMapConfig
    progress : callable, optional
    start : int
        Crystals (in id order, of those large enough) already done by an interrupted run.
    found : list of ndarray, optional
        Their outliers (flat indices), to continue from.
    stop : callable, optional
        ``stop(n_done, found) -> bool`` is asked after each crystal; True ends the loop early
        (the caller saves ``found`` and reports the interruption). It may also save progress.

    Returns
    -------
    flat : ndarray int64
    crystals : int
        Number of connected components.
    filtered : int
        Components with at least ``config.lof.min_pixels`` pixels.
    noise_sd : float
        Median BSE noise sd of the (up to 50) largest crystals (NaN: none).
    """
    lof = config.lof
    comps = label_components(
        read_mask,
        height,
        width,
        chunk=config.chunk,
        connectivity=config.connectivity,
        progress=(lambda d, t: progress("crystals", d, t)) if progress else None,
    )
    # A component larger than max_crystal_pixels is no crystal but a mis-segmented region:
    # it is left unfiltered (and never read whole), so memory stays bounded.
    chosen = np.flatnonzero(
        (comps.area >= lof.min_pixels) & (comps.area <= config.max_crystal_pixels)
    )
    skipped = np.flatnonzero(comps.area > config.max_crystal_pixels)
    for i in skipped:
        log.warning(
            "component at row %d, col %d has %d px (> max_crystal_pixels): not LOF-filtered",
            comps.seed_row[i],
            comps.seed_col[i],
            comps.area[i],
        )

    def read_crystal(i: int) -> tuple[np.ndarray, np.ndarray, int, int]:
        window = comps.bbox_window(int(i) + 1)
        r0, c0 = int(window.row_off), int(window.col_off)
        pix = component_pixels(
            read_mask(window),
            (int(comps.seed_row[i]) - r0, int(comps.seed_col[i]) - c0),
            config.connectivity,
        )
        return pix, read_bse(window), r0, c0

    # Noise of crystals too small to measure their own: the median of the largest ones
    # (recomputed identically on resume, so an interrupted run gives the same flags).
    section_sd = float("nan")
    if chosen.size:
        largest = chosen[np.argsort(-comps.area[chosen], kind="stable")[:50]]
        sds = [crystal_noise_sd(*read_crystal(int(i))[:2]) for i in largest]
        section_sd = float(np.nanmedian([sd for sd, pairs in sds if pairs] or [np.nan]))
    found = list(found or [])
    for n in range(start, chosen.size):
        i = chosen[n]
        pix, bse_window, r0, c0 = read_crystal(int(i))
        sd, pairs = crystal_noise_sd(pix, bse_window)
        if pairs < lof.min_noise_pairs and np.isfinite(section_sd):
            sd = section_sd
        # BSE nodata, or no session / no standards: no grey to judge (NaN in the map anyway).
        rr, cc = np.nonzero(pix & np.isfinite(bse_window))
        rows, cols = rr + r0, cc + c0
        flags = lof_outliers(
            rows,
            cols,
            bse_window[rr, cc],
            n_neighbors=lof.n_neighbors,
            bse_scale=lof.scale_for_noise(sd if np.isfinite(sd) else lof.min_noise_sd),
            threshold=lof.threshold,
            grid_stride=lof.grid_stride,
            max_fraction=lof.max_neighbor_fraction,
            min_pixels=lof.min_pixels,
        )
        found.append(rows[flags].astype(np.int64) * width + cols[flags])
        if progress:
            progress("outliers", n + 1, chosen.size)
        if stop is not None and stop(n + 1, found) and n + 1 < chosen.size:
            raise _Stopped(n + 1)
    flat = np.sort(np.concatenate(found)) if found else np.zeros(0, np.int64)
    return flat, len(comps), int(chosen.size), section_sd


class _Stopped(Exception):
    def __init__(self, done: int) -> None:
        self.done = done


def outlier_window(
    flat: np.ndarray, width: int, row0: int, col0: int, height: int, wwidth: int
) -> np.ndarray:
    """Boolean window of the outliers listed in the sorted flat indices ``flat``."""
    lo, hi = np.searchsorted(flat, [row0 * width, (row0 + height) * width])
    sel = flat[lo:hi]
    r, c = sel // width - row0, sel % width - col0
    keep = (c >= 0) & (c < wwidth)
    out = np.zeros((height, wwidth), dtype=bool)
    out[r[keep], c[keep]] = True
    return out


def smooth_over(values: np.ndarray, valid: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian mean of ``values`` over ``valid`` pixels (normalised convolution); NaN off it."""
    if sigma <= 0:
        return np.where(valid, values, np.nan)
    w = valid.astype(np.float64)
    num = ndi.gaussian_filter(np.where(valid, values, 0.0), sigma)
    den = ndi.gaussian_filter(w, sigma)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(valid, num / den, np.nan)


def mg_map(
    bse_path: str | Path,
    mask_path: str | Path,
    calibration: LinearCalibration,
    out_path: str | Path,
    *,
    outliers_path: str | Path | None = None,
    drift: SessionDrift | None = None,
    regions: pd.DataFrame | None = None,
    config: MgMapConfig | None = None,
    bse_domain: BseDomain | None = None,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> MgMapResult:
    """Write the mg# map and outlier mask of every olivine pixel of a mosaic.

    Parameters
    ----------
    bse_path, mask_path : path-like
        BSE mosaic and olivine mask (1 = olivine; 0 and 255 are not) on the same grid.
    calibration : LinearCalibration
        From ``olmap calibrate``, on the reference BSE scale when ``drift`` is given.
    out_path : path-like
        float32 mg# GeoTIFF (NaN where not olivine, on outliers, on BSE nodata, and, when
        drift is corrected, outside every session or in a session without standards).
    outliers_path : path-like, optional
        uint8 GeoTIFF, 1 = LOF outlier [default: ``OUT.outliers.tif`` beside ``out_path``].
    drift, regions : optional
        Session drift and the regions of ``sessions.csv`` (both or neither).
    config : MgMapConfig, optional
    bse_domain : BseDomain, optional
        The BSE the calibration was fitted on (:meth:`BseDomain.of` calibration.json): an
        image of another type or grey range is refused before any work, and the outline
        blur recorded with it (``psf_sigma_px``) is undone before the line, as the
        calibration did (:func:`olmap.composition.psf.unmix_edges`; none without it).
    overwrite : bool
    progress : callable, optional
        ``progress(stage, done, total)`` with stages crystals, outliers and map.
    """
    config = config or MgMapConfig()
    out_path = Path(out_path)
    outliers_path = Path(outliers_path or default_outliers_path(out_path))
    if (drift is None) != (regions is None):
        raise ValueError("give both drift and regions, or neither")
    outputs = [out_path, outliers_path]
    with claim_outputs(outputs, inputs=raster_inputs(bse_path, mask_path), overwrite=overwrite):
        return _mg_map(
            bse_path, mask_path, calibration, out_path, outliers_path, drift, regions, config,
            bse_domain, progress,
        )  # fmt: skip


def _mg_map(
    bse_path: str | Path,
    mask_path: str | Path,
    calibration: LinearCalibration,
    out_path: Path,
    outliers_path: Path,
    drift: SessionDrift | None,
    regions: pd.DataFrame | None,
    config: MgMapConfig,
    bse_domain: BseDomain | None,
    progress: Progress | None,
) -> MgMapResult:
    info = check_coregistered(bse_path, mask_path)
    h, w = info.shape
    sessions = list(regions["session"]) if regions is not None else []
    t0 = time.perf_counter()
    with (
        WindowSource(bse_path) as bse_src,
        ClassMaskSource(mask_path, config.mask_class) as mask_src,
    ):
        read_mask = mask_src.read
        if bse_domain is not None:
            olivine = sample_values(bse_src, where=read_mask)
            bse_domain.check(bse_path, info.dtype, olivine, calibration)

        def read_bse(window):
            """BSE as float64 on the scale the calibration was fitted on; NaN if unknown."""
            image, valid = bse_src.read(window)
            image = image.astype(np.float64)
            if valid is not None:
                image[~valid] = np.nan
            if drift is not None:
                r0, c0 = int(window.row_off), int(window.col_off)
                idx = session_index_grid(
                    regions, info.transform, r0, c0, int(window.height), int(window.width)
                )
                image = correct_bse(image, idx, drift, sessions)
            return image

        # The LOF stage is the long one: its progress is saved every minute and on Ctrl-C,
        # and the same command continues from there (the map itself takes seconds per Gpx).
        fingerprint = json.dumps(
            {
                "olmap": __version__,
                "bse": [str(Path(bse_path).resolve()), *file_stamp(bse_path)],
                "mask": [str(Path(mask_path).resolve()), *file_stamp(mask_path)],
                "config": config.model_dump(exclude={"smooth_sigma_px"}),
                "drift": drift.to_dict() if drift is not None else None,
                "regions": regions.to_dict(orient="records") if regions is not None else None,
            },
            sort_keys=True,
        )
        progress_file = progress_path(out_path)
        progress_file.parent.mkdir(parents=True, exist_ok=True)
        ckpt = Checkpoint.load(progress_file.parent, fingerprint, progress_file.name)
        start, found = 0, []
        if ckpt is not None and "outliers" in ckpt.arrays:
            start, found = ckpt.done, [ckpt.arrays["outliers"].astype(np.int64)]
        else:
            progress_file.unlink(missing_ok=True)  # a stale one must not outlive a fresh start
        last_save = [time.monotonic()]

        def save(done: int, so_far: list[np.ndarray]) -> None:
            arrays = {"outliers": np.concatenate(so_far) if so_far else np.zeros(0, np.int64)}
            Checkpoint(fingerprint, done, arrays).save(progress_file.parent, progress_file.name)
            last_save[0] = time.monotonic()

        with interrupts_deferred() as stop_flag:

            def stop(done: int, so_far: list[np.ndarray]) -> bool:
                if stop_flag or time.monotonic() - last_save[0] > 60:
                    save(done, so_far)
                return bool(stop_flag)

            try:
                flat, n_crystals, n_filtered, noise_sd = crystal_outliers(
                    read_mask, read_bse, h, w, config, progress,
                    start=start, found=found, stop=stop,
                )  # fmt: skip
            except _Stopped as exc:
                raise RunInterrupted(
                    f"{out_path}: interrupted after {exc.done} crystals; run the same command "
                    "again to resume"
                ) from None
        save(n_filtered, [flat])  # an interrupted map stage need not redo the LOF
        t1 = time.perf_counter()
        sigma = config.smooth_sigma_px
        if sigma is None:
            sigma = auto_smooth_sigma(
                calibration.slope,
                noise_sd,
                info.pixel_size_um or 1.0,
                config.smooth_target_mg,
                config.smooth_max_um,
            )
        psf = bse_domain.psf_sigma_px if bse_domain is not None else 0.0
        halo = int(np.ceil(4 * sigma + psf_reach_px(psf)))
        grid = BlockGrid((h, w), config.chunk, halo)
        counts = {"olivine": 0, "unmapped": 0}
        hist = np.zeros(1001, dtype=np.int64)  # mg# in 0.001 bins, for the quantiles
        raster = {"height": h, "width": w, "transform": info.transform}

        def compute(block: Block) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
            """mg#, outliers, olivine and BSE-less olivine of one block."""
            (r0, r1), (c0, c1) = ((s.start, s.stop) for s in block.outer)
            padded = Window(c0, r0, c1 - c0, r1 - r0)
            mask = read_mask(padded)
            outlier = outlier_window(flat, w, r0, c0, r1 - r0, c1 - c0) & mask
            bse = unmix_edges(read_bse(padded), mask, psf)
            valid = mask & ~outlier & np.isfinite(bse)
            mg = calibration(smooth_over(bse, valid, sigma))[block.crop]
            m = mask[block.crop]
            return mg, outlier[block.crop], m, m & ~np.isfinite(bse[block.crop])

        with (
            atomic_paths([out_path, outliers_path], overwrite=True) as (mg_tmp, outliers_tmp),
            create_raster(
                mg_tmp,
                dtype="float32",
                nodata=float("nan"),
                tags={"quantity": "mg_num", "calibration": f"{calibration}"},
                overwrite=True,
                atomic=False,
                **raster,
            ) as mg_ds,
            create_raster(
                outliers_tmp,
                dtype="uint8",
                tags={"values": "1 = LOF outlier (crack, hole, inclusion), 0 = not"},
                overwrite=True,
                atomic=False,
                **raster,
            ) as out_ds,
        ):
            mg_sink, outlier_sink = GeoTiffSink(mg_ds), GeoTiffSink(out_ds)

            def write(block: Block, result: tuple[np.ndarray, ...]) -> None:
                mg, outlier, olivine, unmapped = result
                mg_sink.write(block.inner, mg.astype(np.float32))
                outlier_sink.write(block.inner, outlier.astype(np.uint8))
                counts["olivine"] += int(olivine.sum())
                counts["unmapped"] += int(unmapped.sum())
                good = mg[np.isfinite(mg)]
                hist[:] += np.bincount(
                    np.clip(np.round(good * 1000), 0, 1000).astype(np.int64), minlength=1001
                )
                if progress:
                    progress("map", block.index + 1, len(grid))

            # Seconds per gigapixel: not resumable (the LOF stage is, above); Ctrl-C stops it
            # at a block boundary and the outputs are left as they were.
            run_blocks(BlockJob(grid, compute, write, str(out_path)), checkpoint=None)
    progress_file.unlink(missing_ok=True)
    t2 = time.perf_counter()
    cdf = np.cumsum(hist) / max(hist.sum(), 1)
    quantiles = {
        f"p{q}": float(np.searchsorted(cdf, q / 100) / 1000) if hist.sum() else float("nan")
        for q in (5, 50, 95)
    }
    return MgMapResult(
        mg_path=out_path,
        outliers_path=outliers_path,
        crystals=n_crystals,
        crystals_filtered=n_filtered,
        olivine_pixels=counts["olivine"],
        outlier_pixels=int(flat.size),
        unmapped=counts["unmapped"],
        mg_quantiles=quantiles,
        seconds={"outliers": round(t1 - t0, 2), "map": round(t2 - t1, 2)},
        noise_sd=noise_sd,
        smooth_sigma_px=round(float(sigma), 3),
    )

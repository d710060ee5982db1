"""``olmap predict``: a model over a whole mosaic, streamed in bounded memory, resumable.

The mosaic is cut into bands of rows; each band is predicted with overlapping windows
(:mod:`olmap.segment.blend`) and written block by block, so peak memory depends on the
window, band and batch size, not on the mosaic (docs/benchmarks.md). Outputs are built under
``NAME.partial``; a checkpoint beside the mask lists the finished blocks, so an interrupted
run (Ctrl-C) continues where it stopped when the same command is run again.

With ``dask`` the bands are split into runs of blocks that Dask distributed workers predict
on their own (each reads its windows from the mosaic file and loads the model file); the
client only writes the blocks they return.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack, closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rasterio.windows import Window

from olmap import __version__
from olmap.errors import InputError, OutputWriteError
from olmap.io.outputs import (
    claim_outputs,
    commit,
    is_write_failure,
    partial_name,
    write_failure,
)
from olmap.io.raster import (
    PROBABILITY_SCALE_TAG,
    WindowSource,
    check_single_band,
    create_raster,
    format_class_tag,
    raster_inputs,
    sample_values,
    update_raster,
)
from olmap.io.resume import (
    Checkpoint,
    file_stamp,
    progress_path,
)
from olmap.segment.blend import WindowPlan
from olmap.segment.checkpoint import ModelMeta, load_checkpoint
from olmap.segment.config import PREDICT_TILE, PredictConfig
from olmap.segment.infer import classify, n_prob_bands, predict_run, resolve_device
from olmap.segment.model import Segmenter
from olmap.segment.scale import GreyMapping, input_mapping
from olmap.stream import Block, BlockGrid, BlockJob, block_window, run_blocks
from olmap.stream.engine import fixed_mmap_threshold

log = logging.getLogger(__name__)

#: Mask value of pixels without data (shared/CLI.md: 255 = ignore/nodata).
NODATA = 255


@dataclass
class PredictResult:
    """What :func:`predict_mosaic` wrote and measured."""

    prob_path: Path
    mask_path: Path
    class_names: list[str]
    threshold: float
    pixels: int
    class_pixels: dict[str, int]
    nodata_pixels: int
    windows: int
    blocks: int
    resumed_blocks: int
    seconds: float
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def megapixels_per_second(self) -> float:
        done = self.pixels * (1 - self.resumed_blocks / max(self.blocks, 1))
        return done / 1e6 / max(self.seconds, 1e-9)


def finish_block(mean: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """uint8 probabilities (0-255), the class map and the valid pixels of a blended block.

    Parameters
    ----------
    mean : ndarray (P, h, w)
        Blended probabilities, NaN where no valid pixel was predicted.
    threshold : float
        dlth for one band (class 1 where ``p >= threshold``); more bands: argmax.

    Returns
    -------
    prob : ndarray (P, h, w) of uint8
        ``round(255 p)``, 0 where invalid.
    labels : ndarray (h, w) of uint8
        Class index per pixel, :data:`NODATA` where invalid.
    valid : ndarray (h, w) of bool
    """
    valid = ~np.isnan(mean[0])
    clean = np.where(valid, mean, 0.0)
    prob = np.rint(np.clip(clean, 0.0, 1.0) * 255).astype(np.uint8)
    labels = classify(clean, threshold)
    labels[~valid] = NODATA
    return prob, labels, valid


def predict_blocks(
    model: Segmenter,
    source: WindowSource,
    plan: WindowPlan,
    settings: PredictConfig,
    threshold: float,
    mapping: GreyMapping,
    run: list[Block],
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``(prob, labels, valid)`` of each block of a run (consecutive blocks of one band): the
    windows across the borders between its blocks are predicted once."""

    def read(window: Window) -> tuple[np.ndarray, np.ndarray | None]:
        image, valid = source.read(window)
        return mapping(image), valid  # on the model's grey scale

    rows, first, last = run[0].inner[0], run[0].inner[1], run[-1].inner[1]
    blocks = predict_run(
        model,
        plan,
        read,
        (rows.start, rows.stop),
        (first.start, last.stop),
        block_width=settings.block_width,
        blend=settings.blend,
        batch_size=settings.batch_size,
        flips=settings.flips,
        amp=settings.amp,
    )
    # closing(): the prefetch thread is stopped and joined before the source is closed
    with closing(blocks):
        for block in blocks:
            yield finish_block(block.mean, threshold)


@functools.lru_cache(maxsize=2)
def _worker_model(path: str, stamp: tuple[int, int], device: str) -> Segmenter:
    """The model of a checkpoint, loaded once per Dask worker process (keyed by file stamp)."""
    return load_checkpoint(path, device=resolve_device(device))[0]


def predict_run_task(
    model_path: str,
    stamp: tuple[int, int],
    bse: str,
    plan: WindowPlan,
    settings: PredictConfig,
    threshold: float,
    mapping: GreyMapping,
    run: list[Block],
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """One Dask task: the finished blocks of a run, predicted on the worker."""
    fixed_mmap_threshold()  # workers run many tasks: keep their heap from fragmenting
    model = _worker_model(model_path, stamp, settings.device)
    with WindowSource(bse) as source:
        return list(predict_blocks(model, source, plan, settings, threshold, mapping, run))


def _open_outputs(
    stack: ExitStack,
    prob_tmp: Path,
    mask_tmp: Path,
    *,
    resume: bool,
    height: int,
    width: int,
    transform: Any,
    meta: ModelMeta,
    n_bands: int,
    threshold: float,
    tags: dict[str, str],
) -> tuple[Any, Any]:
    if resume:
        return (
            stack.enter_context(update_raster(prob_tmp)),
            stack.enter_context(update_raster(mask_tmp)),
        )
    names = meta.class_names
    prob_names = [names[1]] if n_bands == 1 else names
    prob = stack.enter_context(
        create_raster(
            prob_tmp,
            height=height,
            width=width,
            count=n_bands,
            dtype="uint8",
            transform=transform,
            band_names=[f"p_{n}" for n in prob_names],
            tags={
                **tags,
                PROBABILITY_SCALE_TAG: repr(1 / 255),
                "classes": format_class_tag(dict(enumerate(names))),
                "threshold": threshold,
            },
            overwrite=True,
            atomic=False,
            tile=PREDICT_TILE,
            internal_mask=True,
        )
    )
    codes = {i: name for i, name in enumerate(names)}
    mask = stack.enter_context(
        create_raster(
            mask_tmp,
            height=height,
            width=width,
            dtype="uint8",
            transform=transform,
            band_names=["label"],
            nodata=NODATA,
            tags={
                **tags,
                "classes": format_class_tag({**codes, NODATA: "nodata"}),
                "threshold": threshold,
            },
            overwrite=True,
            atomic=False,
            tile=PREDICT_TILE,
        )
    )
    return prob, mask


class _PartialOutputs:
    """The two partial GeoTIFFs of a prediction, opened for writing when first needed.

    :meth:`sync` makes the finished blocks durable before the engine's checkpoint lists them:
    both files are closed (GDAL writes their blocks and directories) and flushed to disk;
    they are reopened by the next write. A run killed at any moment (even with SIGKILL) finds
    partial files that hold at least every block the checkpoint lists.
    """

    def __init__(self, prob: Path, mask: Path, create: dict[str, Any]) -> None:
        self.prob, self.mask = prob, mask
        self._create = create
        self._stack = ExitStack()
        self._datasets: tuple[Any, Any] | None = None

    def open(self, resume: bool) -> None:
        self._datasets = _open_outputs(
            self._stack, self.prob, self.mask, resume=resume, **self._create
        )

    @property
    def datasets(self) -> tuple[Any, Any]:
        if self._datasets is None:
            self.open(resume=True)
        return self._datasets

    def close(self) -> None:
        self._datasets = None
        self._stack.close()

    def sync(self) -> None:
        """Close the files and flush them to disk."""
        self.close()
        for path in (self.prob, self.mask):
            if path.exists():
                with open(path, "rb+") as f:
                    os.fsync(f.fileno())

    def discard(self, *more: Path) -> None:
        """Remove the partial files and ``more`` (a failed write cannot be resumed)."""
        self.close()
        for path in (self.prob, self.mask, *more):
            path.unlink(missing_ok=True)


def predict_mosaic(
    model_path: str | Path,
    bse: str | Path,
    out_prob: str | Path,
    out_mask: str | Path,
    settings: PredictConfig | None = None,
    *,
    dask: str | None = None,
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
) -> PredictResult:
    """Predict every pixel of a BSE mosaic and write probability and class GeoTIFFs.

    Parameters
    ----------
    model_path : path-like
        Checkpoint of ``olmap train``.
    bse : path-like
        One-band BSE mosaic (GeoTIFF, BigTIFF or VRT) of any size; pixels equal to its
        nodata value (or masked, or NaN) are skipped and written as nodata.
    out_prob : path-like
        uint8 probabilities, ``round(255 p)``: one band for a binary model (its class 1),
        else one per class; invalid pixels masked (internal GDAL mask).
    out_mask : path-like
        uint8 class map: 0/1 (binary, ``p >= threshold``) or the argmax class index; 255 =
        nodata; codes in its ``classes`` tag.
    settings : PredictConfig, optional
    dask : str, optional
        Address of a Dask distributed scheduler, or ``local:N`` for a local cluster of N
        worker processes.
    overwrite : bool
    progress : callable, optional
        Called with the pixels finished after each block (and once with those already done
        when resuming).

    Raises
    ------
    InputError
        Unreadable or multi-band BSE, bad settings, outputs that are inputs.
    OutputLockedError
        Another run is writing the same outputs.
    OutputWriteError
        The outputs could not be written (full disk); nothing appears under their names.
    RunInterrupted
        On Ctrl-C / SIGTERM, after the finished blocks are saved; run again to resume.
    """
    settings = settings or PredictConfig()
    model_path, bse = Path(model_path), Path(bse)
    out_prob, out_mask = Path(out_prob), Path(out_mask)
    inputs = [model_path, *raster_inputs(bse)]
    check_single_band(bse, "BSE mosaic")
    # The BSE is opened before the outputs: they are closed and reopened while it stays open
    # (rasterio's GDAL environments close in the reverse order of opening).
    with (
        claim_outputs([out_prob, out_mask], inputs=inputs, overwrite=overwrite),
        WindowSource(bse) as source,
    ):
        return _predict(
            model_path, source, out_prob, out_mask, settings, dask=dask, progress=progress
        )


def _predict(
    model_path: Path,
    source: WindowSource,
    out_prob: Path,
    out_mask: Path,
    settings: PredictConfig,
    *,
    dask: str | None,
    progress: Callable[[int], None] | None,
) -> PredictResult:
    info, bse = source.info, source.path
    device = resolve_device(settings.device)
    model, meta = load_checkpoint(model_path, device=device)
    threshold = meta.threshold if settings.threshold is None else settings.threshold
    mapping = input_mapping(meta, info.dtype, sample_values(source), settings.bse_scale, bse)
    if mapping.note:
        log.warning("%s: %s", bse, mapping.note)
    n_bands = n_prob_bands(model)
    plan = WindowPlan.over(info.height, info.width, settings.window, settings.step)
    grid = BlockGrid((info.height, info.width), (settings.band_rows, settings.block_width))
    # Batch size and device change nothing but float rounding: a resume may use others.
    same_result = settings.model_dump(exclude={"device", "batch_size", "save_every_s"})
    fingerprint = json.dumps(
        {
            "olmap": __version__,
            "model": [str(model_path.resolve()), *file_stamp(model_path)],
            "bse": [str(bse.resolve()), *file_stamp(bse)],
            "prob": str(out_prob.resolve()),
            "settings": same_result,
            "threshold": threshold,
            "grey": [mapping.gain, mapping.offset],
        },
        sort_keys=True,
    )
    prob_tmp, mask_tmp = partial_name(out_prob), partial_name(out_mask)
    progress_file = progress_path(out_mask)
    resume = prob_tmp.exists() and mask_tmp.exists()
    if not resume or Checkpoint.load(progress_file.parent, fingerprint, progress_file.name) is None:
        progress_file.unlink(missing_ok=True)  # a stale progress file never outlives a new start
        resume = False
    tags = {"software": f"olmap {__version__}", "model": model_path.name, "source": bse.name}
    partial = _PartialOutputs(
        prob_tmp,
        mask_tmp,
        {
            "height": info.height,
            "width": info.width,
            "transform": info.transform,
            "meta": meta,
            "n_bands": n_bands,
            "threshold": threshold,
            "tags": tags,
        },
    )
    # Per-block class counts, restored with the finished blocks when resuming.
    counts = np.zeros((len(grid), 257), np.int64)

    def write(block: Block, result: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
        prob, labels, valid = result
        prob_ds, mask_ds = partial.datasets
        window = block_window(block)
        prob_ds.write(prob, window=window)
        prob_ds.write_mask(valid.astype(np.uint8) * 255, window=window)
        mask_ds.write(labels, 1, window=window)
        counts[block.index] = np.bincount(labels.ravel(), minlength=257)[:257]

    if dask is None:
        run = functools.partial(predict_blocks, model, source, plan, settings, threshold, mapping)
        run_length = None  # whole bands: every window predicted once
    else:
        del model  # the workers load their own
        stamp = file_stamp(model_path)
        run = functools.partial(
            predict_run_task, str(model_path.resolve()), stamp, str(bse.resolve()), plan,
            settings, threshold, mapping,
        )  # fmt: skip
        # Runs of about four windows' width: enough work per task to amortise its overhead.
        run_length = max(1, -(-4 * settings.window // settings.block_width))
    job = BlockJob(
        grid, None, write, str(out_mask), state={"counts": counts},
        compute_run=run, run_length=run_length,
    )  # fmt: skip

    def finish() -> None:
        # Ctrl-C still deferred: both outputs appear, whole, or neither.
        partial.sync()
        commit([(prob_tmp, out_prob), (mask_tmp, out_mask)])

    try:
        try:
            partial.open(resume=resume)
        except InputError:
            if not resume:
                raise
            log.warning("%s: partial outputs unreadable; starting afresh", mask_tmp)
            partial.close()  # a half-reopened pair is closed before it is recreated
            progress_file.unlink(missing_ok=True)
            partial.open(resume=False)
        stats = run_blocks(
            job,
            checkpoint=progress_file,
            fingerprint=fingerprint,
            dask=dask,
            progress=progress,
            finish=finish,
            save_every_s=settings.save_every_s,
            before_save=partial.sync,
        )
    except (OutputWriteError, InputError):
        # Damaged outputs, or an input that would stop a rerun at the same block: nothing
        # to resume from (and the space back).
        partial.discard(progress_file)
        raise
    except BaseException as exc:
        partial.close()
        if is_write_failure(exc, out_mask):
            partial.discard(progress_file)
            raise write_failure(out_mask, exc) from exc
        raise
    resumed = stats.resumed
    seconds = stats.seconds
    counts = counts.sum(0)
    names = meta.class_names
    return PredictResult(
        prob_path=out_prob,
        mask_path=out_mask,
        class_names=names,
        threshold=threshold,
        pixels=info.height * info.width,
        class_pixels={name: int(counts[i]) for i, name in enumerate(names)},
        nodata_pixels=int(counts[NODATA]),
        windows=plan.n_windows,
        blocks=len(grid),
        resumed_blocks=resumed,
        seconds=seconds,
        settings={
            **settings.model_dump(),
            "stride": settings.step,
            "band": settings.band_rows,
            "device": str(device),
            "dask": dask,
        },
    )

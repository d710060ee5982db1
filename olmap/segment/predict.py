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
import itertools
import json
import logging
import os
import time
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
    RunInterrupted,
    file_stamp,
    interrupts_deferred,
    progress_path,
)
from olmap.segment.blend import WindowPlan, band_edges
from olmap.segment.checkpoint import ModelMeta, load_checkpoint
from olmap.segment.config import PREDICT_TILE, PredictConfig
from olmap.segment.infer import classify, n_prob_bands, predict_run, resolve_device
from olmap.segment.model import Segmenter
from olmap.segment.scale import GreyMapping, input_mapping
from olmap.stream.engine import dask_client, fixed_mmap_threshold

log = logging.getLogger(__name__)

#: Mask value of pixels without data (shared/CLI.md: 255 = ignore/nodata).
NODATA = 255


@dataclass(frozen=True)
class BlockGrid:
    """The blocks of a mosaic: ``bands`` x ``columns``, numbered row-major."""

    bands: list[tuple[int, int]]
    columns: list[tuple[int, int]]

    @classmethod
    def of(cls, height: int, width: int, settings: PredictConfig) -> BlockGrid:
        return cls(band_edges(height, settings.band_rows), band_edges(width, settings.block_width))

    def __len__(self) -> int:
        return len(self.bands) * len(self.columns)

    def runs(self, done: np.ndarray, max_blocks: int | None = None) -> list[tuple[int, int, int]]:
        """``(band, first column, last column + 1)`` of every run of blocks not yet done.

        A run is a maximal stretch of undone blocks of one band, cut every ``max_blocks``.
        """
        runs = []
        n = len(self.columns)
        for b in range(len(self.bands)):
            j = 0
            while j < n:
                if done[b * n + j]:
                    j += 1
                    continue
                k = j
                while k < n and not done[b * n + k] and (max_blocks is None or k - j < max_blocks):
                    k += 1
                runs.append((b, j, k))
                j = k
        return runs


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


def _predict_blocks(
    model: Segmenter,
    source: WindowSource,
    plan: WindowPlan,
    grid: BlockGrid,
    run: tuple[int, int, int],
    settings: PredictConfig,
    threshold: float,
    mapping: GreyMapping,
) -> Iterator[tuple[int, Window, np.ndarray, np.ndarray, np.ndarray]]:
    """``(block index, window, prob, labels, valid)`` of each block of one run."""
    b, j0, j1 = run

    def read(window: Window) -> tuple[np.ndarray, np.ndarray | None]:
        image, valid = source.read(window)
        return mapping(image), valid  # on the model's grey scale

    blocks = predict_run(
        model,
        plan,
        read,
        grid.bands[b],
        (grid.columns[j0][0], grid.columns[j1 - 1][1]),
        block_width=settings.block_width,
        blend=settings.blend,
        batch_size=settings.batch_size,
        flips=settings.flips,
        amp=settings.amp,
    )
    # closing(): the prefetch thread is stopped and joined before the source is closed
    with closing(blocks):
        for j, block in enumerate(blocks, start=j0):
            prob, labels, valid = finish_block(block.mean, threshold)
            yield b * len(grid.columns) + j, block.window, prob, labels, valid


@functools.lru_cache(maxsize=2)
def _worker_model(path: str, stamp: tuple[int, int], device: str) -> Segmenter:
    """The model of a checkpoint, loaded once per Dask worker process (keyed by file stamp)."""
    return load_checkpoint(path, device=resolve_device(device))[0]


def predict_run_task(
    model_path: str,
    stamp: tuple[int, int],
    bse: str,
    plan: WindowPlan,
    grid: BlockGrid,
    run: tuple[int, int, int],
    settings: PredictConfig,
    threshold: float,
    mapping: GreyMapping,
) -> list[tuple[int, Window, np.ndarray, np.ndarray, np.ndarray]]:
    """One Dask task: the finished blocks of a run, predicted on the worker."""
    fixed_mmap_threshold()  # workers run many tasks: keep their heap from fragmenting
    model = _worker_model(model_path, stamp, settings.device)
    with WindowSource(bse) as source:
        return list(_predict_blocks(model, source, plan, grid, run, settings, threshold, mapping))


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
    """The two partial GeoTIFFs of a prediction, open for writing, and their progress file.

    :meth:`save` makes the finished blocks durable: both files are closed (GDAL writes their
    blocks and directories), flushed to disk, then the progress file listing those blocks is
    written and the files are reopened. A run killed at any moment (even with SIGKILL) finds
    partial files that hold at least every block the progress file lists.
    """

    def __init__(self, prob: Path, mask: Path, progress_file: Path, fingerprint: str, create):
        self.prob, self.mask = prob, mask
        self.progress_file, self.fingerprint = progress_file, fingerprint
        self._create = create
        self._stack = ExitStack()
        self.datasets: tuple[Any, Any] | None = None
        self.saved = time.monotonic()

    def open(self, resume: bool) -> None:
        self.datasets = _open_outputs(
            self._stack, self.prob, self.mask, resume=resume, **self._create
        )

    def close(self) -> None:
        self.datasets = None
        self._stack.close()

    def save(self, counts: np.ndarray, done: np.ndarray) -> None:
        """Close, flush and reopen the files, then record ``done`` blocks (and their counts)."""
        self.close()
        for path in (self.prob, self.mask):
            with open(path, "rb+") as f:
                os.fsync(f.fileno())
        self.save_progress(counts, done)
        self.open(resume=True)

    def save_progress(self, counts: np.ndarray, done: np.ndarray) -> None:
        if done.any():
            Checkpoint(self.fingerprint, int(done.sum()), {"counts": counts}).save(
                self.progress_file.parent, self.progress_file.name
            )
        self.saved = time.monotonic()

    def discard(self) -> None:
        """Remove the partial files and the progress (a failed write cannot be resumed)."""
        self.close()
        for path in (self.prob, self.mask, self.progress_file):
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
    grid = BlockGrid.of(info.height, info.width, settings)
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
    ckpt = Checkpoint.load(progress_file.parent, fingerprint, progress_file.name)
    # Per-block class counts: a block is counted exactly when it is marked done.
    counts = np.zeros((len(grid), 257), np.int64)
    if (
        ckpt is not None
        and prob_tmp.exists()
        and mask_tmp.exists()
        and ckpt.arrays.get("counts", np.empty(0)).shape == counts.shape
    ):
        counts = ckpt.arrays["counts"].astype(np.int64)
    done = counts.sum(1) > 0
    resumed = int(done.sum())
    if not resumed:  # a stale progress file must never outlive a fresh start
        progress_file.unlink(missing_ok=True)
    areas = np.array([(r1 - r0) * (c1 - c0) for r0, r1 in grid.bands for c0, c1 in grid.columns])
    if resumed:
        log.warning("resuming %s: %d of %d blocks already written", mask_tmp, resumed, len(grid))
        if progress is not None:
            progress(int(areas[done].sum()))
    tags = {"software": f"olmap {__version__}", "model": model_path.name, "source": bse.name}
    t0 = time.perf_counter()
    partial = _PartialOutputs(
        prob_tmp,
        mask_tmp,
        progress_file,
        fingerprint,
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

    def record(index: int, window: Window, prob, labels, valid) -> None:
        prob_ds, mask_ds = partial.datasets
        prob_ds.write(prob, window=window)
        prob_ds.write_mask(valid.astype(np.uint8) * 255, window=window)
        mask_ds.write(labels, 1, window=window)
        block_counts = np.bincount(labels.ravel(), minlength=257)[:257]
        counts[index] = block_counts  # one assignment: counted and done together
        done[index] = True
        if progress is not None:
            progress(int(areas[index]))
        if time.monotonic() - partial.saved > settings.save_every_s and not done.all():
            partial.save(counts, done)

    with interrupts_deferred() as stop:
        try:
            try:
                partial.open(resume=resumed > 0)
            except InputError:
                if not resumed:
                    raise
                log.warning("%s: partial outputs unreadable; starting afresh", mask_tmp)
                partial.close()  # a half-reopened pair is closed before it is recreated
                counts[:], done[:], resumed = 0, False, 0
                progress_file.unlink(missing_ok=True)
                partial.open(resume=False)
            if dask is None:
                for run in grid.runs(done):
                    blocks = _predict_blocks(
                        model, source, plan, grid, run, settings, threshold, mapping
                    )
                    for item in blocks:
                        record(*item)
                        if stop and not done.all():
                            raise _interrupted(out_mask, done)
            else:
                del model  # the workers load their own
                _run_on_dask(
                    dask,
                    model_path,
                    bse,
                    plan,
                    grid,
                    done,
                    settings,
                    threshold,
                    mapping,
                    lambda item: record(*item),
                    stop,
                    out_mask,
                )
            partial.close()
        except (OutputWriteError, InputError):
            # Damaged outputs, or an input that would stop a rerun at the same block: nothing
            # to resume from (and the space back).
            partial.discard()
            raise
        except BaseException as exc:
            # Files are closed before the progress is saved: every block it lists is on disk.
            partial.close()
            if is_write_failure(exc, out_mask):
                partial.discard()
                raise write_failure(out_mask, exc) from exc
            try:
                partial.save_progress(counts, done)
            except OSError as save_exc:  # the run's own error matters more
                log.warning("%s: progress not saved (%s)", progress_file, save_exc)
            raise
        # Still deferring Ctrl-C: both outputs appear, whole, or neither.
        try:
            commit([(prob_tmp, out_prob), (mask_tmp, out_mask)])
        except OutputWriteError:
            partial.discard()
            raise
        progress_file.unlink(missing_ok=True)
    seconds = time.perf_counter() - t0
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


def _interrupted(out_mask: Path, done: np.ndarray) -> RunInterrupted:
    return RunInterrupted(
        f"{out_mask}: interrupted after {int(done.sum())} of {done.size} blocks; "
        "run the same command again to resume"
    )


def _run_on_dask(
    address: str,
    model_path: Path,
    bse: Path,
    plan: WindowPlan,
    grid: BlockGrid,
    done: np.ndarray,
    settings: PredictConfig,
    threshold: float,
    mapping: GreyMapping,
    record: Callable[[tuple], None],
    stop: Any,
    out_mask: Path,
) -> None:
    """Predict the undone runs on Dask workers; write blocks as their runs complete.

    At most two runs per worker are in flight, so the client holds a bounded number of
    finished blocks whatever the mosaic size.
    """
    from distributed import as_completed

    # Runs of about four windows' width: enough work per task to amortise its overhead.
    run_blocks = max(1, -(-4 * settings.window // settings.block_width))
    runs = grid.runs(done, max_blocks=run_blocks)
    client = dask_client(address)
    try:
        n_workers = max(1, len(client.scheduler_info().get("workers", {})))
        pending = iter(runs)
        stamp = file_stamp(model_path)

        def submit(run: tuple[int, int, int]) -> Any:
            return client.submit(
                predict_run_task,
                str(model_path.resolve()),
                stamp,
                str(bse.resolve()),
                plan,
                grid,
                run,
                settings,
                threshold,
                mapping,
                pure=False,
            )

        in_flight = {submit(r) for r in itertools.islice(pending, 2 * n_workers)}
        queue = as_completed(in_flight)
        for future in queue:
            in_flight.discard(future)
            for item in future.result():
                record(item)
            future.release()
            if stop and not done.all():
                for other in in_flight:
                    other.cancel()
                raise _interrupted(out_mask, done)
            nxt = next(pending, None)
            if nxt is not None:
                future = submit(nxt)
                in_flight.add(future)
                queue.add(future)
    finally:
        cluster = getattr(client, "cluster", None)
        client.close()
        if cluster is not None:
            cluster.close()

"""``run_blocks``: compute the blocks of a grid, write them, resume after an interruption.

Every windowed or chunked job of olmap has the same scaffolding: a grid of blocks, a function
that computes one block from its padded read, sinks the results are written to in the main
process, a checkpoint listing the finished blocks (with a fingerprint of the job, so a
checkpoint of another job is never resumed), Ctrl-C deferred to the next block boundary,
the outputs renamed into place only when complete, and optionally Dask distributed workers
computing blocks while the client writes them. It is written here once.
"""

from __future__ import annotations

import ctypes
import functools
import itertools
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from olmap.errors import InputError
from olmap.io.resume import Checkpoint, RunInterrupted, interrupts_deferred
from olmap.parallel import ordered_map
from olmap.stream.grid import Block, BlockGrid

log = logging.getLogger(__name__)


@dataclass
class BlockJob:
    """A streamed job: what to compute per block and how to store the result.

    Attributes
    ----------
    grid : BlockGrid
    compute : callable or None
        ``compute(block) -> result`` (None with ``compute_run``); runs on Dask workers with
        ``dask``, so it must then be picklable (a module-level function or a
        :func:`functools.partial` of one) and read its inputs itself.
    write : callable
        ``write(block, result)`` in the calling process: writes the result to the sinks and
        updates ``state``.
    name : str
        What the job writes (for messages), e.g. the output path.
    state : dict of str to ndarray
        Arrays accumulated by ``write`` (counts, sums) that a resumed run must get back.
    compute_run : callable, optional
        ``compute_run(blocks) -> iterable of results``, one per block in order, for jobs whose
        neighbouring blocks share work (overlapping windows across their border): the blocks
        still to do are grouped in *runs*, consecutive blocks along the last axis, and each
        run is one task. Used instead of ``compute`` when given.
    run_length : int, optional
        Most blocks per run (default: whole rows of the grid). Shorter runs spread better over
        Dask workers; longer ones share more work.
    """

    grid: BlockGrid
    compute: Callable[[Block], Any] | None
    write: Callable[[Block, Any], None]
    name: str
    state: dict[str, np.ndarray] = field(default_factory=dict)
    compute_run: Callable[[list[Block]], Iterable[Any]] | None = None
    run_length: int | None = None

    def runs(self, todo: list[Block]) -> list[list[Block]]:
        """``todo`` grouped in the tasks computed at once: runs of consecutive blocks along
        the last axis with ``compute_run``, else single blocks.

        Examples
        --------
        >>> job = BlockJob(BlockGrid((4, 6), 2), print, print, "x", compute_run=print)
        >>> [[b.index for b in run] for run in job.runs([job.grid[i] for i in (0, 1, 3, 5)])]
        [[0, 1], [3], [5]]
        """
        if self.compute_run is None:
            return [[b] for b in todo]
        runs: list[list[Block]] = []
        per_row = self.grid.counts[-1]
        for block in todo:
            last = runs[-1][-1] if runs else None
            if (
                last is not None
                and block.index == last.index + 1
                and block.index // per_row == last.index // per_row
                and (self.run_length is None or len(runs[-1]) < self.run_length)
            ):
                runs[-1].append(block)
            else:
                runs.append([block])
        return runs

    def task(self) -> Callable[[list[Block]], list[Any]]:
        """The picklable function computing a run's results (a list), e.g. on Dask workers."""
        if self.compute_run is None:
            if self.compute is None:
                raise ValueError(f"{self.name}: a job needs compute or compute_run")
            return functools.partial(_compute_one, self.compute)
        return functools.partial(_compute_list, self.compute_run)


def _compute_one(compute: Callable[[Block], Any], blocks: list[Block]) -> list[Any]:
    return [compute(blocks[0])]


def _compute_list(compute_run: Callable[[list[Block]], Iterable[Any]], blocks: list[Block]) -> list:
    results = iter(compute_run(blocks))
    try:
        return list(results)
    finally:
        _close(results)


def _close(results: Any) -> None:
    close = getattr(results, "close", None)
    if close is not None:
        close()


@dataclass
class RunStats:
    """What :func:`run_blocks` did: blocks computed now and blocks found done."""

    blocks: int
    computed: int
    resumed: int
    seconds: float


def run_blocks(
    job: BlockJob,
    *,
    checkpoint: str | Path | None,
    fingerprint: str = "",
    dask: str | None = None,
    progress: Callable[[int], None] | None = None,
    finish: Callable[[], None] | None = None,
    save_every_s: float = 30.0,
    workers: int = 1,
    before_save: Callable[[], None] | None = None,
) -> RunStats:
    """Compute and write every block of ``job`` not finished by an earlier run.

    Parameters
    ----------
    job : BlockJob
    checkpoint : path-like or None
        File of the progress (``.npz``); kept beside the partial outputs and removed when the
        job completes. None: nothing is saved (a job of seconds whose partial outputs are not
        kept); Ctrl-C still stops it at a block boundary.
    fingerprint : str
        Identifies the job (inputs, settings, outputs); a checkpoint with another is ignored.
    dask : str, optional
        Address of a Dask distributed scheduler, or ``local:N`` (a LocalCluster of N
        single-threaded worker processes).
    progress : callable, optional
        Called with the elements (px, voxels) finished after each block, and once with those
        already done when resuming.
    finish : callable, optional
        Run after the last block while Ctrl-C is still deferred (e.g. renaming the outputs
        into place), so that they appear whole or not at all.
    save_every_s : float
        Seconds between checkpoint saves while running.
    workers : int
        Blocks computed at once in threads of this process (without ``dask``); numpy, scipy
        and GDAL release the GIL, so filters run in parallel. Memory grows with it.
    before_save : callable, optional
        Run before every checkpoint save (flush or close the outputs), so that every block the
        checkpoint lists is on disk.

    Raises
    ------
    RunInterrupted
        On Ctrl-C / SIGTERM, after the blocks written so far are saved in the checkpoint.
    """
    checkpoint = Path(checkpoint) if checkpoint is not None else None
    grid = job.grid
    done = np.zeros(len(grid), bool)
    ckpt = None
    if checkpoint is not None:
        ckpt = Checkpoint.load(checkpoint.parent, fingerprint, checkpoint.name)
    if ckpt is not None and ckpt.arrays.get("done", np.empty(0)).shape == done.shape:
        done = ckpt.arrays["done"].astype(bool)
        for key, value in job.state.items():
            if key in ckpt.arrays and ckpt.arrays[key].shape == value.shape:
                value[...] = ckpt.arrays[key]
    resumed = int(done.sum())
    if resumed:
        log.warning("resuming %s: %d of %d blocks already written", job.name, resumed, len(done))
        if progress is not None:
            progress(sum(grid[i].size for i in np.flatnonzero(done)))
    elif checkpoint is not None:
        checkpoint.unlink(missing_ok=True)
    t0 = time.perf_counter()
    saved = time.monotonic()

    def save() -> None:
        if checkpoint is None:
            return
        if before_save is not None:
            before_save()
        Checkpoint(fingerprint, int(done.sum()), {"done": done, **job.state}).save(
            checkpoint.parent, checkpoint.name
        )

    def record(block: Block, result: Any) -> None:
        nonlocal saved
        job.write(block, result)
        done[block.index] = True
        if progress is not None:
            progress(block.size)
        if time.monotonic() - saved > save_every_s and not done.all():
            save()
            saved = time.monotonic()

    todo = [grid[int(i)] for i in np.flatnonzero(~done)]
    with interrupts_deferred() as stop:
        try:
            if dask is not None:
                _run_on_dask(dask, job, job.runs(todo), record, stop, done)
            elif job.compute_run is not None and workers == 1:
                for run in job.runs(todo):
                    # A run's blocks are written as they come (one block in memory at a time)
                    results = iter(job.compute_run(run))
                    try:
                        for block, result in zip(run, results, strict=True):
                            record(block, result)
                            if stop and not done.all():
                                raise _interrupted(job.name, done)
                    finally:
                        _close(results)  # a generator's threads stop before its inputs close
            else:
                task = job.task()
                for run, results in ordered_map(task, job.runs(todo), workers=workers, lookahead=1):
                    for block, result in zip(run, results, strict=True):
                        record(block, result)
                    if stop and not done.all():
                        raise _interrupted(job.name, done)
        except BaseException:
            if done.any() and checkpoint is not None:
                try:
                    save()
                except OSError as exc:  # the run's own error matters more
                    log.warning("%s: progress not saved (%s)", checkpoint, exc)
            raise
        if finish is not None:
            try:
                finish()
            except BaseException:
                save()  # every block is done: a rerun goes straight to ``finish``
                raise
        if checkpoint is not None:
            checkpoint.unlink(missing_ok=True)
    return RunStats(len(grid), len(todo), resumed, time.perf_counter() - t0)


def _interrupted(name: str, done: np.ndarray) -> RunInterrupted:
    return RunInterrupted(
        f"{name}: interrupted after {int(done.sum())} of {done.size} blocks; "
        "run the same command again to resume"
    )


def _run_on_dask(
    address: str,
    job: BlockJob,
    runs: list[list[Block]],
    record: Callable[[Block, Any], None],
    stop: Any,
    done: np.ndarray,
) -> None:
    """Compute ``runs`` on Dask workers, at most two runs per worker in flight, so the client
    holds a bounded number of results whatever the size of the data."""
    from distributed import as_completed

    client = dask_client(address)
    try:
        n_workers = max(1, len(client.scheduler_info().get("workers", {})))
        pending = iter(runs)
        task = job.task()
        submitted = {}

        def submit(run: list[Block]) -> Any:
            future = client.submit(task, run, pure=False)
            submitted[future.key] = run
            return future

        in_flight = {submit(b) for b in itertools.islice(pending, 2 * n_workers)}
        queue = as_completed(in_flight)
        for future in queue:
            in_flight.discard(future)
            for block, result in zip(submitted.pop(future.key), future.result(), strict=True):
                record(block, result)
            future.release()
            if stop and not done.all():
                for other in in_flight:
                    other.cancel()
                raise _interrupted(job.name, done)
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


def dask_client(address: str) -> Any:
    """A Dask distributed client for ``address`` or ``local:N`` (a local cluster of N
    single-threaded worker processes)."""
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:  # pragma: no cover - distributed is a dependency
        raise InputError("--dask needs the 'distributed' package") from exc
    kind, _, n = address.partition(":")
    if kind == "local":
        try:
            workers = int(n or os.cpu_count() or 1)
        except ValueError as exc:
            raise InputError(f"--dask {address}: expected local:N with N workers") from exc
        if workers < 1:
            raise InputError(f"--dask {address}: need at least one worker")
        # Workers start with Ctrl-C ignored (inherited): the client stops them cleanly after
        # saving progress, instead of every worker dying on the terminal's SIGINT.
        previous = _ignore_sigint()
        try:
            cluster = LocalCluster(
                n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
            )
        finally:
            _restore_sigint(previous)
        return Client(cluster)
    try:
        return Client(address, timeout="10s")
    except (OSError, TimeoutError) as exc:
        raise InputError(f"--dask {address}: no Dask scheduler reachable ({exc})") from exc


def _ignore_sigint() -> Any:
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGINT, signal.SIG_IGN)


def _restore_sigint(previous: Any) -> None:
    if previous is not None:
        signal.signal(signal.SIGINT, previous)


#: mallopt parameter (glibc malloc.h).
_M_MMAP_THRESHOLD = -3


def fixed_mmap_threshold(nbytes: int = 1 << 20) -> bool:
    """Make glibc return every allocation of ``nbytes`` or more to the system when freed.

    glibc raises its mmap threshold each time a large block is freed, after which blocks of
    window size (16 MB at 2,048 px) come from the heap, which fragments over thousands of
    windows: peak memory then creeps up with the mosaic size. A fixed threshold stops that.
    Returns whether it was set (False off glibc). Process-wide: ``olmap predict`` and
    ``olmap ct label`` call it; library users decide for their own process. It costs time:
    every large buffer is then mapped afresh (page faults), about 20 % on CPU
    (docs/benchmarks.md).
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, nbytes))
    except (OSError, AttributeError):
        return False

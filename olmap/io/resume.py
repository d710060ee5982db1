"""Resumable long runs: checkpoints kept beside partial outputs, and interrupts at safe points.

A long streaming job writes its outputs under ``NAME.partial`` (see :mod:`olmap.io.outputs`).
When it is interrupted (Ctrl-C, SIGTERM) it stops at the next window boundary, closes its files
cleanly and saves a :class:`Checkpoint`; the same command run again finds the checkpoint,
checks that it belongs to the same job (``fingerprint``) and continues where it stopped.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from olmap.errors import OlmapError
from olmap.io.outputs import partial_name

CHECKPOINT_NAME = "checkpoint.npz"
#: Suffix of the progress file kept beside a single-file output while it is built.
PROGRESS_SUFFIX = ".resume.npz"
log = logging.getLogger(__name__)


def file_stamp(path: str | Path) -> tuple[int, int]:
    """Size and modification time (ns) of a file: part of a job's fingerprint, so that a
    checkpoint of a job on an input that has changed since is not resumed."""
    st = Path(path).stat()
    return st.st_size, st.st_mtime_ns


def progress_path(out: str | Path) -> Path:
    """Where a job writing the single file ``out`` keeps its progress while it runs:
    beside the partial output (``OUT.partial`` + :data:`PROGRESS_SUFFIX`)."""
    partial = partial_name(out)
    return partial.with_name(partial.name + PROGRESS_SUFFIX)


class RunInterrupted(OlmapError):
    """A run stopped on request (Ctrl-C, SIGTERM) after saving a checkpoint.

    Deliberately not a ``KeyboardInterrupt``: the CLI reports it in one line with the way to
    resume instead of a bare "Aborted".
    """


@dataclass
class Checkpoint:
    """Progress of a windowed job: how many windows are done, plus named arrays of state.

    Attributes
    ----------
    fingerprint : str
        Identifies the job (e.g. its config as JSON); a checkpoint of another job is ignored.
    done : int
        Number of windows finished, in the job's fixed window order.
    arrays : dict of str to ndarray
        Accumulated state that must survive the interruption (sums, counts, ...).
    """

    fingerprint: str
    done: int = 0
    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    def save(self, folder: str | Path, name: str = CHECKPOINT_NAME) -> Path:
        """Write atomically to ``folder/name`` (default ``checkpoint.npz``)."""
        path = Path(folder) / name
        tmp = path.with_name(path.name + ".tmp")
        meta = json.dumps({"fingerprint": self.fingerprint, "done": self.done})
        try:
            with open(tmp, "wb") as f:
                np.savez(f, __meta__=np.array(meta), **self.arrays)
                f.flush()
                os.fsync(f.fileno())  # a checkpoint must not survive a crash half-written
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)  # a full disk gets its space back
            raise
        return path

    @classmethod
    def load(
        cls, folder: str | Path, fingerprint: str, name: str = CHECKPOINT_NAME
    ) -> Checkpoint | None:
        """The checkpoint ``folder/name`` if it exists, is readable and matches ``fingerprint``."""
        path = Path(folder) / name
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["__meta__"]))
                arrays = {k: data[k] for k in data.files if k != "__meta__"}
        except Exception as exc:  # truncated zip, bad JSON, missing key...: start afresh
            log.warning("%s: unreadable checkpoint ignored (%s)", path, exc)
            return None
        if meta.get("fingerprint") != fingerprint:
            return None
        return cls(fingerprint, int(meta["done"]), arrays)


class StopFlag:
    """Set by SIGINT/SIGTERM while :func:`interrupts_deferred` is active."""

    def __init__(self) -> None:
        self.signal: int | None = None

    def __bool__(self) -> bool:
        return self.signal is not None


@contextmanager
def interrupts_deferred() -> Iterator[StopFlag]:
    """Turn SIGINT/SIGTERM into a flag the job checks between windows.

    Outside the main thread signals cannot be caught; the flag then never sets and an
    interrupt arrives as usual.
    """
    flag = StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum: int, _frame: object) -> None:
        if flag:  # a second Ctrl-C stops at once
            raise KeyboardInterrupt
        flag.signal = signum

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for s, h in previous.items():
            signal.signal(s, h)

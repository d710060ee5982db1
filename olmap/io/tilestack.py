"""File names of a training dataset folder (``olmap dataset``, ``olmap ct train``).

A folder holds ``image.npy`` and ``labels.npy`` (stacks of N tiles, memory-mapped),
``manifest.csv`` and ``dataset.json``; folders of olmap before the CT mode named the grey
stack ``bse.npy``, and still load.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np

#: Grey tile stacks, newest name first (``bse.npy``: dataset folders before the CT mode).
IMAGE_FILES = ("image.npy", "bse.npy")


def image_file(folder: str | Path) -> Path:
    """The grey tile stack of a dataset folder: ``image.npy``, or the older ``bse.npy``.

    Examples
    --------
    >>> image_file("/nonexistent").name  # neither exists: the current name
    'image.npy'
    """
    folder = Path(folder)
    for name in IMAGE_FILES:
        if (folder / name).is_file():
            return folder / name
    return folder / IMAGE_FILES[0]


def open_npy_for_writing(path: Path, shape: tuple[int, ...], dtype: str) -> np.memmap:
    """A new ``.npy`` file mapped for writing, its blocks reserved on disk first.

    A memory map over a sparse file that the disk cannot fill kills the process with SIGBUS
    when a page is written; reserving the space up front fails with ENOSPC instead.
    """
    array = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
    if hasattr(os, "posix_fallocate"):
        with open(path, "rb+") as f:
            try:
                os.posix_fallocate(f.fileno(), 0, os.fstat(f.fileno()).st_size)
            except OSError as exc:
                if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):  # no fallocate here
                    raise
    return array

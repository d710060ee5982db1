"""File names of a training dataset folder (``olmap dataset``, ``olmap ct train``).

A folder holds ``image.npy`` and ``labels.npy`` (stacks of N tiles, memory-mapped),
``manifest.csv`` and ``dataset.json``; folders of olmap before the CT mode named the grey
stack ``bse.npy``, and still load.
"""

from __future__ import annotations

from pathlib import Path

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

"""Post-processing of a label volume: small isolated clusters removed, block by block.

Seed 000 removed isolated clusters below a size per class from its CNN labels (3D connected
components; 100 voxels for bassanite, 8 for pores). Here each block is read with a margin
(:data:`CLEAN_MARGIN` voxels) and cleaned by :func:`olmap.core.clusters.remove_small_clusters`;
a cluster touching the margin's cut faces may continue beyond them and is kept, so a cluster is
removed only when it lies whole within the block and its margin. That is exact for clusters
no longer than the margin; longer thin ones near a block face may stay.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from olmap.core.clusters import remove_small_clusters
from olmap.ct.classes import ClassFile
from olmap.io.volume import open_volume
from olmap.stream import BlockGrid
from olmap.stream.engine import fixed_mmap_threshold

#: Block (z, y, x) and margin of the cleaning pass (voxels): ~8 Mvoxel read per block.
CLEAN_BLOCK, CLEAN_MARGIN = (64, 256, 256), 16


def min_sizes(classes: ClassFile) -> dict[int, int]:
    """Code -> smallest cluster kept, for the classes whose ``min_voxels`` is above 1."""
    return {c.code: c.min_voxels for c in classes.classes if c.min_voxels > 1}


def clean_grid(
    shape: tuple[int, ...], block: tuple[int, ...] = CLEAN_BLOCK, margin: int = CLEAN_MARGIN
) -> BlockGrid:
    """The blocks of the cleaning pass over a volume of ``shape``."""
    return BlockGrid(shape, block, halo=margin)


class ClusterCleaner:
    """``compute`` of the cleaning job (picklable): a block of a label volume, cleaned.

    Returns the block's labels and no probabilities (:func:`olmap.ct.labeljob.run_label_job`).
    """

    def __init__(self, labels_path: str, min_size: Mapping[int, int]):
        self.labels_path, self.min_size = str(labels_path), dict(min_size)
        self._volume = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_volume": None}

    def __call__(self, block) -> tuple[np.ndarray, None]:
        if self._volume is None:
            fixed_mmap_threshold()
            self._volume = open_volume(self.labels_path, labels=True)
        labels = self._volume.read(block.outer)
        keep = np.zeros(labels.shape, bool)  # the cut faces (not the volume's own faces)
        for axis, (s, n) in enumerate(zip(block.outer, self._volume.shape, strict=True)):
            if s.start > 0:
                keep[(slice(None),) * axis + (0,)] = True
            if s.stop < n:
                keep[(slice(None),) * axis + (-1,)] = True
        cleaned, _ = remove_small_clusters(labels, self.min_size, keep=keep)
        return cleaned[block.crop], None

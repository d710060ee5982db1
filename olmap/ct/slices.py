"""Training tiles from volumes: slices of scans and their label volumes, as a dataset folder.

``olmap ct train`` trains the segmentation core of the 2D pipeline (:mod:`olmap.segment`) on
CT slices. It writes the slices into the dataset folder layout the core reads
(:func:`olmap.segment.data.open_tile_dataset`): ``image.npy`` and ``labels.npy`` stacks of
tiles, ``manifest.csv`` (one row per tile: scan, plane, slice, offset, split) and
``dataset.json`` with ``modality: ct``. Seed 000 trained its 2D U-Net on XY slices; XZ and YZ
slices (``planes="all"``) show the network the vertical structure as well.

Slices are read one at a time, so memory is one slice and the tile stacks are memory-mapped.
Whole slices go to validation (a share of them, spread through each scan), never tiles of a
slice that is also trained on: neighbouring tiles of one slice are nearly the same image.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from olmap import __version__
from olmap.core.codes import IGNORE
from olmap.ct.classes import ClassFile
from olmap.errors import InputError
from olmap.io.outputs import atomic_dir, check_free_space
from olmap.io.tilestack import open_npy_for_writing
from olmap.io.volume import Volume, open_volume

#: Plane name -> the volume axis held fixed (z for XY slices).
PLANE_AXIS = {"xy": 0, "xz": 1, "yz": 2}


@dataclass(frozen=True)
class SliceTile:
    """Where one training tile lies: scan, plane, slice index and offset in the slice."""

    scan: int
    plane: str
    index: int
    row: int
    col: int
    split: str


def tile_offsets(length: int, tile: int) -> list[int]:
    """Offsets of tiles of ``tile`` px covering ``length`` px; the last one flush with the end.

    Examples
    --------
    >>> tile_offsets(600, 256)
    [0, 256, 344]
    >>> tile_offsets(256, 256)
    [0]
    """
    if length <= tile:
        return [0]
    return [*range(0, length - tile, tile), length - tile]


def slice_indices(n: int, every: int, margin: int = 0) -> list[int]:
    """Every ``every``-th slice of ``n``, keeping ``margin`` slices from each end.

    Examples
    --------
    >>> slice_indices(10, 3)
    [0, 3, 6, 9]
    >>> slice_indices(10, 3, margin=2)
    [2, 5]
    """
    return list(range(margin, n - margin, every))


def val_slices(indices: Sequence[int], share: float) -> set[int]:
    """About ``share`` of ``indices`` for validation, evenly spread (not at random: a random
    draw can leave a whole end of the scan, with its own noise level, out of validation).

    Examples
    --------
    >>> sorted(val_slices(range(10), 0.2))
    [2, 7]
    """
    indices = list(indices)
    n_val = round(share * len(indices))
    if share > 0 and len(indices) > 1:
        n_val = min(max(n_val, 1), len(indices) - 1)
    if n_val == 0:
        return set()
    step = len(indices) / n_val
    return {indices[int(step * (k + 0.5))] for k in range(n_val)}


def plan_tiles(
    shapes: Sequence[tuple[int, int, int]],
    planes: Sequence[str],
    tile: int,
    every: int,
    val_share: float,
    margin: int = 0,
) -> list[SliceTile]:
    """The tiles of every scan, plane and chosen slice, with their split."""
    out = []
    for scan, shape in enumerate(shapes):
        for plane in planes:
            axis = PLANE_AXIS[plane]
            rows, cols = (n for a, n in enumerate(shape) if a != axis)
            indices = slice_indices(shape[axis], every, margin)
            held = val_slices(indices, val_share)
            row_offsets = tile_offsets(rows, tile)
            val_rows = 0  # one slice only (a 2D image): its last rows of tiles validate
            if len(indices) == 1 and val_share > 0 and len(row_offsets) > 1:
                val_rows = min(max(round(val_share * len(row_offsets)), 1), len(row_offsets) - 1)
            col_offsets = tile_offsets(cols, tile)
            for i in indices:
                for k, r in enumerate(row_offsets):
                    held_row = k >= len(row_offsets) - val_rows
                    split = "val" if i in held or held_row else "train"
                    out += [SliceTile(scan, plane, i, r, c, split) for c in col_offsets]
    return out


def read_slice(volume: Volume, plane: str, index: int) -> np.ndarray:
    """One 2D slice of ``volume`` (z, y, x): XY at z = index, XZ at y = index, YZ at x = index."""
    region = [slice(0, n) for n in volume.shape]
    region[PLANE_AXIS[plane]] = slice(index, index + 1)
    return np.squeeze(volume.read(tuple(region)), axis=PLANE_AXIS[plane])


@dataclass
class SliceDatasetSummary:
    """What :func:`write_slice_dataset` wrote."""

    folder: Path
    manifest: pd.DataFrame
    tile: int
    mean: float
    std: float

    def split_counts(self) -> dict[str, int]:
        return self.manifest["split"].value_counts().to_dict()


def _pairs(volumes: Sequence[str], labels: Sequence[str]) -> Iterator[tuple[Volume, Volume]]:
    if len(volumes) != len(labels) or not volumes:
        raise InputError(
            f"--volume and --labels pair up: got {len(volumes)} volume(s), {len(labels)} label "
            "volume(s)"
        )
    for v, lab in zip(volumes, labels, strict=True):
        grey, codes = open_volume(v), open_volume(lab, labels=True)
        if grey.shape != codes.shape:
            raise InputError(f"{lab}: labels {codes.shape} do not match the volume {grey.shape}")
        yield grey, codes


def write_slice_dataset(
    volumes: Sequence[str],
    labels: Sequence[str],
    classes: ClassFile,
    out: str | Path,
    *,
    planes: Literal["xy", "all"] = "xy",
    tile: int = 256,
    every: int = 1,
    val_share: float = 0.2,
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> SliceDatasetSummary:
    """Cut slices of each scan and its label volume into tiles of a training dataset folder.

    Parameters
    ----------
    volumes, labels : sequences of str
        Scans (any volume ``olmap ct info`` reads) and their label volumes of the same shape
        (codes of ``classes``; 0 = unlabelled, ignored in training).
    classes : ClassFile
        The phases (``configs/ct/*.yaml``).
    out : path
        Dataset folder to write (atomically).
    planes : {"xy", "all"}
        XY slices only (seed 000), or XY, XZ and YZ.
    tile : int
        Tile side in voxels (smaller slices give smaller tiles).
    every : int
        Use every ``every``-th slice of each plane.
    val_share : float
        Share of each scan's slices (whole slices) kept for validation; of a scan with one
        slice (a 2D image), that share of its rows of tiles (the last ones).

    Returns
    -------
    SliceDatasetSummary
    """
    pairs = list(_pairs(volumes, labels))
    plane_list = ["xy"] if planes == "xy" else list(PLANE_AXIS)
    # Tiles fit every slice: XY slices are Y x X; with XZ and YZ, Z counts too.
    sides = [n for grey, _ in pairs for n in (grey.shape if planes == "all" else grey.shape[1:])]
    side = min(tile, *sides)
    plan = plan_tiles([g.shape for g, _ in pairs], plane_list, side, every, val_share)
    if not any(t.split == "train" for t in plan) or not any(t.split == "val" for t in plan):
        raise InputError(
            f"{len(plan)} tiles: need slices to train on and to validate on "
            "(lower --every, or more slices)"
        )
    dtypes = {g.dtype for g, _ in pairs}
    dtype = dtypes.pop() if len(dtypes) == 1 else np.dtype(np.float32)
    lut = np.full(256, IGNORE, np.uint8)
    lut[classes.codes] = classes.codes
    check_free_space(Path(out).parent, len(plan) * side * side * (dtype.itemsize + 1), "tiles")
    if on_total is not None:
        on_total(len(plan))
    total = total_sq = count = 0.0
    with atomic_dir(out, overwrite=overwrite) as tmp:
        image = open_npy_for_writing(tmp / "image.npy", (len(plan), side, side), dtype.str)
        target = open_npy_for_writing(tmp / "labels.npy", (len(plan), side, side), "uint8")
        current, grey_s, code_s = None, None, None
        for k, t in enumerate(plan):
            if current != (t.scan, t.plane, t.index):
                grey, codes = pairs[t.scan]
                current = (t.scan, t.plane, t.index)
                grey_s = read_slice(grey, t.plane, t.index)
                code_s = read_slice(codes, t.plane, t.index)
                where = f"{labels[t.scan]} ({t.plane} slice {t.index})"
                classes.check_codes(code_s, where)
            window = (slice(t.row, t.row + side), slice(t.col, t.col + side))
            image[k] = grey_s[window]
            target[k] = lut[code_s[window]]
            if t.split == "train":
                g = np.asarray(grey_s[window], np.float64)
                total, total_sq, count = total + g.sum(), total_sq + (g * g).sum(), count + g.size
            if progress is not None:
                progress(1)
        image.flush()
        target.flush()
        del image, target
        mean = total / count
        std = float(np.sqrt(max(total_sq / count - mean * mean, 0.0)))
        manifest = pd.DataFrame(
            {
                "tile_id": range(len(plan)),
                "session": [Path(volumes[t.scan]).name for t in plan],
                "plane": [t.plane for t in plan],
                "slice": [t.index for t in plan],
                "row_off": [t.row for t in plan],
                "col_off": [t.col for t in plan],
                "split": [t.split for t in plan],
            }
        )
        manifest.to_csv(tmp / "manifest.csv", index=False)
        meta = {
            "software": f"olmap {__version__}",
            "modality": "ct",
            "volumes": [str(Path(v).resolve()) for v in volumes],
            "labels": [str(Path(v).resolve()) for v in labels],
            "classes": {str(c): n for c, n in zip(classes.codes, classes.names, strict=True)},
            "planes": plane_list,
            "every": every,
            "tile_rows": side,
            "tile_cols": side,
            "image_dtype": str(dtype),
            "n_tiles": len(plan),
            "tiles_per_split": manifest["split"].value_counts().to_dict(),
            "train_image_mean": mean,
            "train_image_std": std,
        }
        (tmp / "dataset.json").write_text(json.dumps(meta, indent=2) + "\n")
    return SliceDatasetSummary(Path(out), manifest, side, mean, std)

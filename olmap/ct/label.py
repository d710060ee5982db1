"""``olmap ct label``: a random forest over whole volumes, block by block, resumable.

Each block's features are computed from a read padded by their reach
(:func:`olmap.ct.features.feature_reach`), so block borders change nothing: the forest's labels
equal those of the whole volume at once (the tests check it). The boundary refinement (a marker
watershed over the voxels the forest is unsure of, on by default) floods the block grown by
:data:`REFINE_HALO`; a flood may in principle cross that halo, so refined labels equal the whole
volume's in all but about 1e-5 of the voxels (measured; the tests bound it). Blocks go through
the streaming engine (:func:`olmap.stream.run_blocks`): bounded memory, a checkpoint, Ctrl-C at
a block boundary, Dask workers with ``dask``. Outputs are OME-Zarr (labels with class names and
colours; per-class probabilities as uint8 ``round(255 p)`` on a channel axis) or a multi-page
TIFF of the labels.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from olmap import __version__
from olmap.core.watershed import (
    ELEVATION_SIGMA,
    elevation_reach,
    gradient_elevation,
    relabel_unsure_by_watershed,
)
from olmap.ct.features import sample_reference
from olmap.ct.forest import FittedForest, adjust_priors, predict_region, sample_posteriors
from olmap.ct.labeljob import LabelResult, run_label_job
from olmap.errors import InputError
from olmap.io.volume import open_volume, volume_stamp
from olmap.stream import BlockGrid
from olmap.stream.engine import fixed_mmap_threshold
from olmap.stream.grid import grow_region

log = logging.getLogger(__name__)


def default_block(shape: Sequence[int], dims: str) -> tuple[int, int, int]:
    """Blocks of about 2 million voxels: (32, 256, 256), or whole slices for 2D features.

    With the default features and two workers the peak stays near 1.2-1.25 GB whatever the volume
    (docs/benchmarks.md, "CT mode"); a block's features with their halo are ~300 MB.
    """
    z, y, x = shape
    if dims == "2d":
        rows = max(1, min(y, 2_000_000 // (16 * x)))
        return (min(z, 16), rows, x)
    return (min(z, 32), min(y, 256), min(x, 256))


@dataclass
class VolumeSpec:
    """How to open a volume (picklable: Dask workers open it themselves)."""

    path: str
    shape: tuple[int, int, int] | None = None
    dtype: str | None = None
    voxel_size_um: float | None = None

    def open(self, labels: bool = False):
        return open_volume(
            self.path,
            shape=self.shape,
            dtype=self.dtype,
            voxel_size_um=self.voxel_size_um,
            labels=labels,
        )


#: Voxels with a final probability below this are re-drawn by the watershed (``refine``).
#: Chosen on seed 1 of the synthetic series (0.6-0.8 within 0.001 Dice); docs/decisions.md.
MIN_CONFIDENCE = 0.7
#: Halo (voxels) of the forest's output around a block that the watershed floods over: a block
#: then differs from the whole volume's flood in ~1e-5 of its voxels (docs/decisions.md).
REFINE_HALO = 2


def refine_halo(dims: str) -> tuple[int, int, int]:
    """Halo (z, y, x) of the boundary refinement: none along z with per-slice features."""
    return (0 if dims == "2d" else REFINE_HALO, REFINE_HALO, REFINE_HALO)


class BlockLabeller:
    """``compute`` of the labelling job: features + forest on one block (picklable).

    With ``refine`` the forest labels the block grown by the grid's halo, and the voxels it is
    unsure of are re-drawn by a marker watershed over the grey gradient
    (:func:`olmap.core.watershed.relabel_unsure_by_watershed`); the block is then cropped.
    """

    def __init__(
        self,
        spec: VolumeSpec,
        model: FittedForest,
        reference: tuple[float, float],
        weights: np.ndarray | None = None,
        refine: bool = True,
    ):
        self.spec, self.model, self.reference = spec, model, reference
        self.weights = None if weights is None else np.asarray(weights, np.float32)
        self.refine = refine
        self._volume = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_volume": None}

    def __call__(self, block) -> tuple[np.ndarray, np.ndarray]:
        if self._volume is None:  # first block in this process (or Dask worker)
            fixed_mmap_threshold()  # blocks of ~100 MB: keep the heap from fragmenting
            self._volume = self.spec.open()
        region = block.outer if self.refine else block.inner
        prob = predict_region(self._volume, region, self.model, self.reference)
        shape = prob.shape[1:]
        prob = prob.reshape(len(prob), -1).T
        if self.weights is not None:  # the volume's own class proportions (adjust_priors)
            prob *= self.weights
            prob /= np.maximum(prob.sum(1, keepdims=True), 1e-12)
        labels = self.model.codes.astype(np.uint8)[prob.argmax(1)].reshape(shape)
        prob = prob.T.reshape(-1, *shape)
        if self.refine:
            labels = self._refined(labels, prob.max(0), block)[block.crop]
            prob = prob[(slice(None), *block.crop)]
        return labels, np.rint(prob * 255).astype(np.uint8)

    def _refined(self, labels: np.ndarray, confidence: np.ndarray, block) -> np.ndarray:
        """``labels`` over ``block.outer`` with the unsure voxels flooded from the sure ones."""
        per_slice = self.model.features.dims == "2d"
        r = elevation_reach()
        pads = (0 if per_slice else r, r, r)
        read, crop = grow_region(block.outer, self._volume.shape, pads)
        elevation = gradient_elevation(self._volume.read(read), per_slice=per_slice)[crop]
        return relabel_unsure_by_watershed(
            labels, confidence, elevation, MIN_CONFIDENCE, per_slice=per_slice
        )


def label_volume(
    model: FittedForest,
    volume: VolumeSpec,
    out: str | Path,
    *,
    out_prob: str | Path | None = None,
    fmt: str = "zarr",
    block: Sequence[int] | None = None,
    truth: str | Path | None = None,
    dask: str | None = None,
    workers: int = 1,
    priors: str = "volume",
    refine: bool = True,
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
    inputs: Sequence[str | Path] = (),
) -> LabelResult:
    """Label every voxel of ``volume`` with ``model``; write labels (and probabilities).

    Parameters
    ----------
    model : FittedForest
    volume : VolumeSpec
    out : path-like
        Label volume: OME-Zarr folder (``fmt="zarr"``) or multi-page TIFF (``"tiff"``).
    out_prob : path-like, optional
        Per-class probabilities (OME-Zarr, axes c, z, y, x; uint8 ``round(255 p)``).
    block : (z, y, x), optional
        Block shape (default :func:`default_block`); memory grows with it, not the volume.
    truth : path-like, optional
        A label volume to score the labels against (voxels with truth 0 are not scored).
    dask : str, optional
        Dask scheduler address or ``local:N``.
    workers : int
        Blocks computed at once in threads (without ``dask``); memory grows with it.
    priors : {"volume", "uniform"}
        ``volume``: the balanced forest's posteriors are moved to the volume's own class
        proportions, estimated by EM on a sample (:func:`olmap.ct.forest.adjust_priors`);
        ``uniform``: used as they are.
    refine : bool
        Re-draw the voxels the forest is unsure of (probability < :data:`MIN_CONFIDENCE`) by a
        marker watershed over the grey gradient; the probabilities written stay the forest's.
    inputs : sequence of path-like
        More inputs the outputs must not overwrite (scribbles, the forest file).

    Raises
    ------
    InputError
        Unreadable volume, a truth of another shape, bad block shape.
    RunInterrupted
        On Ctrl-C, after saving the finished blocks; the same command resumes.
    """
    if fmt not in ("zarr", "tiff"):  # before the priors' sample is read
        raise InputError(f"--format {fmt}: expected zarr or tiff")
    if priors not in ("volume", "uniform"):
        raise InputError(f"--priors {priors}: expected volume or uniform")
    out = Path(out)
    with volume.open() as vol:
        shape, voxel = vol.shape, vol.voxel_size_um
        reference = sample_reference(vol)
        src_stamp = volume_stamp(volume.path)
        weights = (
            adjust_priors(sample_posteriors(vol, model, reference)) if priors == "volume" else None
        )
    block = tuple(block) if block else default_block(shape, model.features.dims)
    if len(block) != 3 or min(block) < 1:
        raise InputError(f"--block {block}: expected three positive sizes Z,Y,X")
    grid = BlockGrid(shape, block, halo=refine_halo(model.features.dims) if refine else 0)
    codes = [int(c) for c in model.codes]
    fingerprint = {
        "olmap": __version__,
        "volume": [volume.path, *src_stamp],
        "model": [repr(model.forest.get_params()), model.features.model_dump(), codes],
        "trees": _tree_digest(model),
        "reference": reference,
        "weights": None if weights is None else [round(float(w), 9) for w in weights],
        "refine": [refine, MIN_CONFIDENCE, REFINE_HALO, ELEVATION_SIGMA],
    }
    # Blocks run in parallel threads (or Dask workers): one thread per forest each, instead
    # of joblib pools inside threads (which also warn on every call).
    for forest in (model.forest, model.context):
        if forest is not None and (workers > 1 or dask is not None):
            forest.set_params(n_jobs=1)
    result = run_label_job(
        grid,
        BlockLabeller(volume, model, reference, weights, refine),
        model.classes,
        codes,
        out,
        source=volume.path,
        voxel_size_um=voxel,
        fingerprint=fingerprint,
        out_prob=out_prob,
        fmt=fmt,
        truth=truth,
        dask=dask,
        workers=workers,
        overwrite=overwrite,
        progress=progress,
        inputs=inputs,
    )
    names = list(result.class_voxels)
    result.settings = {
        "block": list(block),
        "reference": list(reference),
        "prior_weights": None
        if weights is None
        else dict(zip(names, map(float, weights), strict=True)),
        "features": model.features.model_dump(),
        "halo": list(model.reach),
        "autocontext": model.context is not None,
        "refine": refine,
        "dask": dask,
        "workers": workers,
    }
    return result


def _tree_digest(model: FittedForest) -> str:
    """A digest of the fitted trees (two forests with the same settings differ by their data)."""
    import hashlib

    h = hashlib.sha256()
    for est in model.forest.estimators_:
        tree = est.tree_
        h.update(tree.threshold.tobytes())
        h.update(tree.feature.tobytes())
    return h.hexdigest()[:16]

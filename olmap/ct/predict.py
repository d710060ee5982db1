"""``olmap ct predict``: a model trained by ``olmap ct train`` segments whole volumes.

The volume goes through the streaming engine in slabs of whole XY slices; each slice is
segmented by the 2D pipeline's windowed predictor (:func:`olmap.segment.infer.predict_proba`:
overlapping windows, blended), so CT and SEM share one inference path as well as one model.
Labels and probabilities are written by :func:`olmap.ct.labeljob.run_label_job` (OME-Zarr,
resumable, Dask).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from olmap import __version__
from olmap.ct.classes import ClassFile
from olmap.ct.label import VolumeSpec
from olmap.ct.labeljob import LabelResult, run_label_job
from olmap.errors import InputError
from olmap.io.volume import volume_stamp
from olmap.stream import BlockGrid
from olmap.stream.engine import fixed_mmap_threshold

#: Slices per block by default: a block of 2016 x 2016 uint16 slices is ~65 MB of grey.
DEFAULT_SLAB = 8


@functools.lru_cache(maxsize=2)
def _model(path: str, stamp: tuple[int, ...], device: str):
    """The checkpoint's model, loaded once per process or Dask worker (keyed by file stamp)."""
    from olmap.segment.checkpoint import load_checkpoint
    from olmap.segment.infer import resolve_device

    return load_checkpoint(path, device=resolve_device(device))[0]


class SlicePredictor:
    """``compute`` of the prediction job: the model on every XY slice of a block (picklable)."""

    def __init__(
        self,
        spec: VolumeSpec,
        model_path: str,
        codes: Sequence[int],
        window: int,
        device: str,
        mapping=None,
    ):
        self.spec, self.model_path, self.window, self.device = spec, model_path, window, device
        self.mapping = mapping  # GreyMapping onto the training slices' grey scale
        self.codes = np.asarray(codes, np.uint8)
        self.stamp = tuple(volume_stamp(model_path))
        self._volume = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_volume": None}

    def __call__(self, block) -> tuple[np.ndarray, np.ndarray]:
        import torch

        from olmap.segment.infer import predict_proba

        if self._volume is None:
            fixed_mmap_threshold()
            self._volume = self.spec.open()
        model = _model(self.model_path, self.stamp, self.device)
        grey = self._volume.read(block.inner)
        if self.mapping is not None:
            grey = self.mapping(grey)  # float32 when it maps; as read when identity
        prob = np.empty((len(self.codes), *grey.shape), np.float32)
        with torch.inference_mode():
            for k, image in enumerate(grey):
                p = predict_proba(model, image, window=self.window, stride=self.window // 2)
                prob[:, k] = np.concatenate([1 - p, p]) if len(p) == 1 else p  # binary: 1 band
        labels = self.codes[prob.argmax(0)]
        return labels, np.rint(prob * 255).astype(np.uint8)


def sample_slices(volume, n: int = 8, step: int = 4) -> np.ndarray:
    """Grey values of ``n`` XY slices spread through ``volume``, every ``step``-th pixel: the
    same kind of sample as the whole training slices' percentiles (outside the sample too)."""
    z = volume.shape[0]
    picks = sorted({int(v) for v in np.linspace(0, z - 1, min(n, z))})
    full = tuple(slice(0, s) for s in volume.shape[1:])
    return np.concatenate(
        [volume.read((slice(k, k + 1), *full))[0, ::step, ::step].ravel() for k in picks]
    ).astype(np.float64)


def predict_volume(
    model_path: str | Path,
    volume: VolumeSpec,
    out: str | Path,
    classes: ClassFile,
    *,
    out_prob: str | Path | None = None,
    fmt: str = "zarr",
    slab: int = DEFAULT_SLAB,
    window: int = 512,
    grey_match: bool = False,
    truth: str | Path | None = None,
    device: str = "auto",
    dask: str | None = None,
    workers: int = 1,
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
) -> LabelResult:
    """Segment every XY slice of ``volume`` with an ``olmap ct train`` checkpoint.

    Parameters
    ----------
    model_path : path-like
        Checkpoint written by ``olmap ct train`` (its classes must be codes of ``classes``).
    volume : VolumeSpec
    out : path-like
        Label volume (OME-Zarr, or multi-page TIFF with ``fmt="tiff"``).
    classes : ClassFile
        The phases (names and colours of the label volume).
    slab : int
        Slices per block (memory grows with it).
    window : int
        Side of the windows the model sees (px); overlapping by half, blended.
    grey_match : bool
        Map the scan's grey levels linearly so that its 1st and 99th percentiles (of slices
        spread through it) fall on the training slices'. For a scanner's drift; off by default:
        in a reacting series the percentiles also move with the phases (measured on a later
        step of the synthetic series: gypsum Dice 0.69 -> 0.56). Off, grey levels are used as
        they are and refused when clearly on another scale.
    truth, out_prob, dask, workers, overwrite, progress
        As in :func:`olmap.ct.label.label_volume`.

    Raises
    ------
    InputError
        Unreadable model or volume, classes the class file does not know.
    """
    from olmap.segment.checkpoint import read_checkpoint

    model_path = Path(model_path)
    _, meta = read_checkpoint(model_path)
    codes = [int(c) for c, _ in meta.classes]
    unknown = [c for c in codes if c not in classes.codes]
    if unknown:
        raise InputError(
            f"{model_path}: class code {unknown[0]} is not in the class file "
            f"(codes {', '.join(map(str, classes.codes))})"
        )
    from olmap.segment.scale import input_mapping

    with volume.open() as vol:
        shape, voxel = vol.shape, vol.voxel_size_um
        sample = sample_slices(vol)
        mapping = input_mapping(
            meta, str(vol.dtype), sample, "auto" if grey_match else None, volume.path,
            option="--grey-match",
        )  # fmt: skip
    if slab < 1:
        raise InputError(f"--slab {slab}: expected a positive number of slices")
    grid = BlockGrid(shape, (min(slab, shape[0]), shape[1], shape[2]))
    fingerprint = {
        "olmap": __version__,
        "volume": [volume.path, *volume_stamp(volume.path)],
        "model": [str(model_path.resolve()), *volume_stamp(model_path)],
        "window": window,
        "grey": [mapping.gain, mapping.offset],
    }
    compute = SlicePredictor(volume, str(model_path.resolve()), codes, window, device, mapping)
    result = run_label_job(
        grid,
        compute,
        classes,
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
        inputs=[model_path],
    )
    result.settings = {"slab": slab, "window": window, "grey": mapping.note}
    return result

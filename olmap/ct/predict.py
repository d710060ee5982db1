"""``olmap ct predict``: a model trained by ``olmap ct train`` segments whole volumes.

The volume goes through the streaming engine in blocks. With ``planes="xy"`` a block is a slab
of whole XY slices, each segmented by the 2D pipeline's windowed predictor
(:func:`olmap.segment.infer.predict_proba`: overlapping windows, blended), so CT and SEM share
one inference path as well as one model. With ``planes="tri"`` (tri-planar) a block is a cube
read with a margin, and the model segments its XY, XZ and YZ slices; the three probabilities
are averaged (the margin gives the XZ and YZ slices context across the block's faces).
Labels and probabilities are written by :func:`olmap.ct.labeljob.run_label_job` (OME-Zarr,
resumable, Dask).
"""

from __future__ import annotations

import functools
import json
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from olmap import __version__
from olmap.ct.classes import ClassFile
from olmap.ct.clean import ClusterCleaner, clean_grid, min_sizes
from olmap.ct.label import VolumeSpec
from olmap.ct.labeljob import LabelResult, run_label_job
from olmap.ct.slices import PLANE_AXIS
from olmap.errors import InputError
from olmap.io.outputs import check_writable
from olmap.io.volume import volume_stamp
from olmap.stream import BlockGrid
from olmap.stream.engine import fixed_mmap_threshold

#: Slices per block by default: a block of 2016 x 2016 uint16 slices is ~65 MB of grey.
DEFAULT_SLAB = 8
#: Tri-planar blocks: cubes of this side, read with a margin of ``TRI_MARGIN`` voxels (the
#: context of the XZ/YZ slices across a block face; memory ~0.8 GB per block).
TRI_BLOCK, TRI_MARGIN = 256, 32
#: Pixels per forward pass when slices fit in one window (four 256² slices, one 512²): the
#: model's working memory is then the same for any slice size up to the window.
BATCH_PIXELS = 4 * 256 * 256
PLANES = {"xy": ("xy",), "tri": ("xy", "xz", "yz")}


@functools.lru_cache(maxsize=2)
def _model(path: str, stamp: tuple[int, ...], device: str):
    """The checkpoint's model, loaded once per process or Dask worker (keyed by file stamp).

    Channels-last: measured 1.6x faster on 2 CPU cores (batches of four 256² slices, the same
    labels; ``docs/benchmarks.md``), and the layout CUDA's autocast prefers.
    """
    import torch

    from olmap.segment.checkpoint import load_checkpoint
    from olmap.segment.infer import resolve_device

    model = load_checkpoint(path, device=resolve_device(device))[0]
    return model.to(memory_format=torch.channels_last)


def slices_proba(model, images: np.ndarray, window: int) -> np.ndarray:
    """Class probabilities ``(K, n, h, w)`` of a stack of 2D slices ``(n, h, w)``.

    Slices that fit in one window go through the model a few at a time (up to
    :data:`BATCH_PIXELS` per forward pass); larger ones through the windowed predictor,
    overlapping by half. A binary model's one band becomes two (background, class 1).
    """
    import torch

    from olmap.segment.infer import flip_averaged_probabilities, predict_proba

    images = np.asarray(images, np.float32)
    n, h, w = images.shape
    parts = []
    if max(h, w) <= window and not np.isnan(images).any():
        step = max(1, BATCH_PIXELS // (h * w))
        for k in range(0, n, step):
            batch = torch.from_numpy(np.ascontiguousarray(images[k : k + step]))[:, None]
            batch = batch.contiguous(memory_format=torch.channels_last)
            prob = flip_averaged_probabilities(model, batch, flips=False).cpu().numpy()
            parts.append(prob.transpose(1, 0, 2, 3))
    else:
        for image in images:
            p = predict_proba(model, image, window=window, stride=window // 2)
            parts.append(p[:, None])
    prob = np.concatenate(parts, axis=1)
    return np.concatenate([1 - prob, prob]) if len(prob) == 1 else prob


def plane_proba(
    model, grey: np.ndarray, axis: int, crop: tuple[slice, ...], window: int
) -> np.ndarray:
    """Probabilities of the ``crop`` region of ``grey`` (z, y, x) from its 2D slices across
    ``axis`` (0: XY, 1: XZ, 2: YZ), each slice seen whole (with the margin around ``crop``).

    Returns
    -------
    ndarray (K, *crop shape) of float32
    """
    keep = crop[axis]
    inplane = tuple(c for a, c in enumerate(crop) if a != axis)
    out = None
    for k0 in range(keep.start, keep.stop, 4):  # a few slices at a time (bounded memory)
        k1 = min(k0 + 4, keep.stop)
        images = np.moveaxis(grey[(slice(None),) * axis + (slice(k0, k1),)], axis, 0)
        prob = slices_proba(model, images, window)[:, :, inplane[0], inplane[1]]
        if out is None:
            shape = tuple(c.stop - c.start for c in crop)
            out = np.empty((len(prob), *shape), np.float32)
        dst = [slice(None)] * 4
        dst[axis + 1] = slice(k0 - keep.start, k1 - keep.start)
        out[tuple(dst)] = np.moveaxis(prob, 1, axis + 1)
    return out


class SlicePredictor:
    """``compute`` of the prediction job: the model on every slice of a block (picklable).

    ``planes``: ``("xy",)``, or ``("xy", "xz", "yz")`` for tri-planar prediction (the
    probabilities of the three averaged).
    """

    def __init__(
        self,
        spec: VolumeSpec,
        model_path: str,
        codes: Sequence[int],
        window: int,
        device: str,
        mapping=None,
        planes: Sequence[str] = ("xy",),
    ):
        self.spec, self.model_path, self.window, self.device = spec, model_path, window, device
        self.mapping = mapping  # GreyMapping onto the training slices' grey scale
        self.codes = np.asarray(codes, np.uint8)
        self.planes = tuple(planes)
        self.stamp = tuple(volume_stamp(model_path))
        self._volume = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_volume": None}

    def __call__(self, block) -> tuple[np.ndarray, np.ndarray]:
        import torch

        if self._volume is None:
            # Buffers under 64 MB (a forward pass's activations) are reused from the heap:
            # mapping each afresh (the engine's 1 MB) halved the model's speed; blocks are all
            # alike here, so the heap does not creep (docs/benchmarks.md).
            fixed_mmap_threshold(64 << 20)
            self._volume = self.spec.open()
        model = _model(self.model_path, self.stamp, self.device)
        grey = self._volume.read(block.outer)
        if self.mapping is not None:
            grey = self.mapping(grey)  # float32 when it maps; as read when identity
        prob = None
        with torch.inference_mode():
            for plane in self.planes:
                p = plane_proba(model, grey, PLANE_AXIS[plane], block.crop, self.window)
                prob = p if prob is None else prob + p
        if len(self.planes) > 1:
            prob /= len(self.planes)
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
    planes: str = "xy",
    cube: int = TRI_BLOCK,
    margin: int = TRI_MARGIN,
    grey_match: bool = False,
    clean: bool = True,
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
    planes : {"xy", "tri"}
        XY slices only (seed 000), or tri-planar: the XY, XZ and YZ slices of cubes of
        :data:`TRI_BLOCK` voxels (read with a margin of :data:`TRI_MARGIN`), probabilities
        averaged; about 3-5x the time of XY.
    cube, margin : int
        Tri-planar blocks: side of the cubes and the margin read around them (voxels).
    grey_match : bool
        Map the scan's grey levels linearly so that its 1st and 99th percentiles (of slices
        spread through it) fall on the training slices'. For a scanner's drift; off by default:
        in a reacting series the percentiles also move with the phases (measured on a later
        step of the synthetic series: gypsum Dice 0.69 -> 0.56). Off, grey levels are used as
        they are and refused when clearly on another scale.
    clean : bool
        Post-processing: remove isolated clusters smaller than each class's ``min_voxels``
        (:mod:`olmap.ct.clean`). The labels are first written to ``OUT-stem_raw.zarr`` (kept
        until the cleaned volume is complete, so an interrupted run resumes), then cleaned
        into ``out``; with ``truth``, ``settings["raw_truth_scores"]`` scores the raw labels.
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
    if planes not in PLANES:
        raise InputError(f"--planes {planes}: expected xy or tri")
    if planes == "xy":
        grid = BlockGrid(shape, (min(slab, shape[0]), shape[1], shape[2]))
    else:
        grid = BlockGrid(shape, cube, halo=margin)
    fingerprint = {
        "olmap": __version__,
        "volume": [volume.path, *volume_stamp(volume.path)],
        "model": [str(model_path.resolve()), *volume_stamp(model_path)],
        "window": window,
        "planes": planes,
        "grey": [mapping.gain, mapping.offset],
    }
    compute = SlicePredictor(
        volume, str(model_path.resolve()), codes, window, device, mapping, PLANES[planes]
    )
    job = {
        "classes": classes, "codes": codes, "source": volume.path, "voxel_size_um": voxel,
        "truth": truth, "dask": dask, "workers": workers,
    }  # fmt: skip
    sizes = min_sizes(classes) if clean else {}
    if not sizes:
        result = run_label_job(
            grid, compute, out=out, fingerprint=fingerprint, out_prob=out_prob, fmt=fmt,
            overwrite=overwrite, progress=progress, inputs=[model_path], **job,
        )  # fmt: skip
    else:
        result = _predict_then_clean(
            grid, compute, Path(out), sizes, fingerprint, out_prob, fmt, overwrite, progress,
            model_path, job,
        )  # fmt: skip
    result.settings = {
        **result.settings, "planes": planes, "slab": slab, "window": window,
        "grey": mapping.note, "min_voxels": {classes.names[classes.codes.index(c)]: n
                                             for c, n in sizes.items()},
    }  # fmt: skip
    return result


def _predict_then_clean(
    grid, compute, out, sizes, fingerprint, out_prob, fmt, overwrite, progress, model_path, job
) -> LabelResult:
    """The labels to ``OUT-stem_raw.zarr`` (reused when complete for the same fingerprint),
    cleaned into ``out``; the raw volume is removed when ``out`` is complete."""
    for path in (out, out_prob):
        if path is not None:  # the raw pass may replace its own files, never the user's
            check_writable(path, overwrite=overwrite)
    raw = out.with_name(f"{out.name.split('.')[0]}_raw.zarr")
    stamp_file = raw / "olmap_predict.json"
    stamp = json.dumps(fingerprint, sort_keys=True, default=str)
    reuse = stamp_file.is_file() and stamp_file.read_text() == stamp
    if not reuse:
        predicted = run_label_job(
            grid, compute, out=raw, fingerprint=fingerprint, out_prob=out_prob, fmt="zarr",
            overwrite=True, progress=progress, inputs=[model_path], **job,
        )  # fmt: skip
        stamp_file.write_text(stamp)
        (raw / "olmap_result.json").write_text(
            json.dumps({"confidence": predicted.confidence, "below": predicted.uncertain_share,
                        "seconds": predicted.seconds,
                        "truth": None if predicted.truth_scores is None
                        else predicted.truth_scores.to_dict()})
        )  # fmt: skip
    done = json.loads((raw / "olmap_result.json").read_text())
    cleaned = run_label_job(
        clean_grid(grid.shape), ClusterCleaner(str(raw / "0"), sizes), out=out,
        fingerprint={"raw": stamp, "min_voxels": sizes}, fmt=fmt, overwrite=overwrite,
        inputs=[raw], **job,
    )  # fmt: skip
    shutil.rmtree(raw)
    cleaned.confidence = done["confidence"]  # the network's confidence, per raw label
    cleaned.uncertain_share = done["below"]
    cleaned.seconds += done["seconds"]
    if done["truth"] is not None:
        cleaned.settings["raw_truth_scores"] = pd.DataFrame(done["truth"])
    return cleaned

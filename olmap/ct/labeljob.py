"""Write a label volume block by block: the output side shared by ``ct label`` and ``ct predict``.

A labelling job computes, per block of a :class:`olmap.stream.BlockGrid`, the labels (uint8
codes) and per-class probabilities (uint8, ``round(255 p)``) of the block's inner region. This
module creates the OME-Zarr outputs (labels with class names and colours; probabilities on a
channel axis), writes each block, counts voxels per code, scores against a truth volume, and
finishes atomically (pyramid, optional multi-page TIFF, rename) through the streaming engine
(:func:`olmap.stream.run_blocks`: checkpoint, Ctrl-C at a block boundary, Dask workers).
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from olmap import __version__
from olmap.ct.classes import ClassFile
from olmap.ct.metrics import confusion, scores_from_confusion
from olmap.errors import InputError
from olmap.io.omezarr import DEFAULT_CHUNKS, create_ome_zarr, write_multipage_tiff, write_pyramid
from olmap.io.outputs import MARKER, claim_outputs, commit, partial_name
from olmap.io.resume import progress_path
from olmap.io.volume import open_volume
from olmap.stream import BlockGrid, BlockJob, ZarrSink, run_blocks


@dataclass
class LabelResult:
    """What a labelling job (``ct label``, ``ct predict``) wrote and measured; ``settings``:
    what the command adds about how it labelled."""

    labels_path: Path
    prob_path: Path | None
    voxels: int
    class_voxels: dict[str, int]
    blocks: int
    resumed_blocks: int
    seconds: float
    truth_scores: pd.DataFrame | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    #: Mean winning probability of the voxels labelled each class (0-1).
    confidence: dict[str, float] = field(default_factory=dict)
    #: Share of voxels whose winning probability is below 0.5 (0-1).
    uncertain_share: float = 0.0

    @property
    def voxels_per_second(self) -> float:
        return self.voxels / max(self.seconds, 1e-9)

    def uncertainty(self) -> pd.DataFrame:
        """Per class: voxels, share, mean winning probability; a last row for the scan with
        the share of voxels whose winning probability is below 0.5 (the uncertainty summary)."""
        rows = [
            {
                "class": name,
                "voxels": n,
                "share": n / self.voxels,
                "mean_confidence": self.confidence.get(name, float("nan")),
            }
            for name, n in self.class_voxels.items()
        ]
        total_conf = sum(self.confidence.get(k, 0.0) * n for k, n in self.class_voxels.items() if n)
        rows.append(
            {
                "class": "all",
                "voxels": self.voxels,
                "share": 1.0,
                "mean_confidence": total_conf / max(self.voxels, 1),
                "below_0.5": self.uncertain_share,
            }
        )
        return pd.DataFrame(rows).set_index("class")


def run_label_job(
    grid: BlockGrid,
    compute: Callable,
    classes: ClassFile,
    codes: Sequence[int],
    out: str | Path,
    *,
    source: str,
    voxel_size_um: float | None,
    fingerprint: dict,
    out_prob: str | Path | None = None,
    fmt: str = "zarr",
    truth: str | Path | None = None,
    dask: str | None = None,
    workers: int = 1,
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
    inputs: Sequence[str | Path] = (),
) -> LabelResult:
    """Run ``compute(block) -> (labels, prob)`` over ``grid`` and write the label volume.

    Parameters
    ----------
    grid : BlockGrid
        Blocks of the volume (z, y, x).
    compute : callable
        Picklable (Dask); returns uint8 codes ``(z, y, x)`` and uint8 probabilities
        ``(len(codes), z, y, x)`` of ``block.inner`` (None: no probabilities, no ``out_prob``
        and no confidence).
    classes : ClassFile
        Names and colours written into the label volume's metadata.
    codes : sequence of int
        The code of each probability channel.
    out : path-like
        OME-Zarr folder (``fmt="zarr"``) or multi-page TIFF (``"tiff"``).
    source : str
        The scanned volume (recorded, and never overwritten).
    fingerprint : dict
        What makes a checkpoint resumable (model, settings); the outputs are added.
    out_prob, truth, dask, workers, overwrite, progress, inputs
        As in :func:`olmap.ct.label.label_volume`.

    Raises
    ------
    InputError
        A bad format or a truth volume of another shape.
    RunInterrupted
        On Ctrl-C, after saving the finished blocks; the same call resumes.
    """
    if fmt not in ("zarr", "tiff"):
        raise InputError(f"--format {fmt}: expected zarr or tiff")
    out = Path(out)
    shape = tuple(grid.shape)
    codes = [int(c) for c in codes]
    names = [classes.classes[classes.codes.index(c)].name for c in codes]
    truth_vol = None
    if truth is not None:
        truth_vol = open_volume(truth, labels=True)
        if tuple(truth_vol.shape) != shape:
            truth_vol.close()
            raise InputError(f"{truth}: truth of shape {truth_vol.shape}, the scan is {shape}")
    block = tuple(grid.block)
    with claim_outputs(
        [out, out_prob], inputs=[source.split(".h5:")[0], *inputs], overwrite=overwrite
    ):
        zarr_tmp = partial_name(out) if fmt == "zarr" else partial_name(out.with_suffix(".zarr"))
        prob_tmp = partial_name(out_prob) if out_prob is not None else None
        checkpoint = progress_path(out)
        stamp = {**fingerprint, "block": block, "out": [str(out.resolve()), str(out_prob)]}
        if not checkpoint.exists() or not zarr_tmp.exists() or (prob_tmp and not prob_tmp.exists()):
            checkpoint.unlink(missing_ok=True)
            chunks = tuple(
                min(c, b * max(1, c // b)) for c, b in zip(DEFAULT_CHUNKS, block, strict=True)
            )
            create_ome_zarr(
                zarr_tmp,
                shape,
                np.uint8,
                voxel_size_um=voxel_size_um,
                name=out.stem,
                chunks=chunks,
                classes=classes.metadata(),
                extra={"source": source, "software": f"olmap {__version__}"},
            )
            if prob_tmp is not None:
                create_ome_zarr(
                    prob_tmp,
                    (len(codes), *shape),
                    np.uint8,
                    voxel_size_um=voxel_size_um,
                    name=f"{out.stem} probabilities",
                    chunks=chunks,
                    channels=names,
                    extra={"probability_scale": 255, "codes": codes},
                )
        for folder in (zarr_tmp, prob_tmp):
            if folder is not None:  # lets --overwrite replace it later (olmap wrote it)
                (folder / MARKER).write_text("written by olmap; `--overwrite` may replace it\n")
        import zarr

        label_sink = ZarrSink(zarr.open_array(str(zarr_tmp / "0"), mode="r+"))
        prob_sink = ZarrSink(zarr.open_array(str(prob_tmp / "0"), mode="r+")) if prob_tmp else None
        counts = np.zeros((len(grid), 256), np.int64)
        conf = np.zeros((len(grid), len(codes), len(codes) + 1), np.int64)
        top_sum = np.zeros((len(grid), 256), np.float64)  # winning probability per label
        below = np.zeros(len(grid), np.int64)  # voxels whose winning probability < 0.5
        scored = np.zeros(len(grid), bool)  # blocks with probabilities

        def write(block, result) -> None:
            labels, prob = result
            label_sink.write(block.inner, labels)
            if prob_sink is not None:
                prob_sink.write(block.inner, prob)
            counts[block.index] = np.bincount(labels.ravel(), minlength=256)
            if prob is not None:
                top = prob.max(0).ravel()
                top_sum[block.index] = np.bincount(labels.ravel(), top, minlength=256) / 255
                below[block.index] = np.count_nonzero(top < 128)
                scored[block.index] = True
            if truth_vol is not None:
                conf[block.index] = confusion(truth_vol.read(block.inner), labels, codes)

        def finish() -> None:
            write_pyramid(zarr_tmp, labels=True)
            pairs = []
            if fmt == "tiff":
                tif_tmp = partial_name(out)
                with open_volume(zarr_tmp, labels=True) as labels_vol:
                    write_multipage_tiff(labels_vol, tif_tmp, voxel_size_um=voxel_size_um)
                pairs.append((tif_tmp, out))
            else:
                pairs.append((zarr_tmp, out))
            if prob_tmp is not None:
                pairs.append((prob_tmp, Path(out_prob)))
            commit(pairs)
            if fmt == "tiff":
                shutil.rmtree(zarr_tmp, ignore_errors=True)

        job = BlockJob(
            grid,
            compute,
            write,
            str(out),
            state={
                "counts": counts,
                "conf": conf,
                "top": top_sum,
                "below": below,
                "scored": scored,
            },
        )
        t0 = time.perf_counter()
        try:
            stats = run_blocks(
                job,
                checkpoint=checkpoint,
                fingerprint=json.dumps(stamp, sort_keys=True, default=str),
                dask=dask,
                progress=progress,
                finish=finish,
                workers=workers,
            )
        finally:
            if truth_vol is not None:
                truth_vol.close()
        seconds = time.perf_counter() - t0
    total = counts.sum(0)
    top_total = top_sum.sum(0)
    return LabelResult(
        labels_path=out,
        prob_path=Path(out_prob) if out_prob is not None else None,
        voxels=int(np.prod(shape)),
        class_voxels={n: int(total[c]) for n, c in zip(names, codes, strict=True)},
        truth_scores=scores_from_confusion(conf.sum(0), names) if truth is not None else None,
        blocks=stats.blocks,
        resumed_blocks=stats.resumed,
        seconds=seconds,
        confidence={
            n: float(top_total[c] / total[c]) if total[c] and scored.all() else float("nan")
            for n, c in zip(names, codes, strict=True)
        },
        uncertain_share=float(below.sum() / max(np.prod(shape), 1))
        if scored.all()
        else float("nan"),
    )

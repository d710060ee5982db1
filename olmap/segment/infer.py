"""Model predictions over overlapping windows: tiles, session regions, mosaics, CT slices.

:func:`predict_windows` runs the model on windows supplied by a reader (batched, the next
windows read in a background thread); :func:`predict_run` blends them into block means
(:mod:`olmap.segment.blend`, seed 002 sect. 3.6.3). :func:`predict_proba` does this for an
image held in memory; :mod:`olmap.segment.predict` streams mosaics from files.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import numpy as np
import torch
from rasterio.windows import Window

from olmap.errors import InputError
from olmap.parallel import prefetch
from olmap.segment.blend import Block, WindowPlan, accumulate_run, blend_weights, run_windows
from olmap.segment.model import Segmenter

#: ``read(window) -> (grey values (h, w), valid pixels (h, w) of bool or None for all)``
WindowReader = Callable[[Window], tuple[np.ndarray, np.ndarray | None]]
#: Mixed precision on CUDA (autocast dtype); CPU always computes in float32.
AMP_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": None}


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` -> CUDA if present, else Apple MPS, else CPU; other names as given."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise InputError(f"unknown device {name!r} (use auto, cpu, cuda, cuda:N or mps)") from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"device {name!r} requested but CUDA is not available here")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise InputError(f"device {name!r}: only {torch.cuda.device_count()} CUDA device(s)")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise InputError(f"device {name!r} requested but Apple MPS is not available here")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise InputError(f"unsupported device {name!r} (use auto, cpu, cuda, cuda:N or mps)")
    return device


@torch.inference_mode()
def predict_logits_batch(model: Segmenter, images: torch.Tensor, amp: str = "fp16") -> torch.Tensor:
    """Logits ``(B, K, H, W)`` for raw grey images ``(B, 1, H, W)`` on the model's device.

    On CUDA the batch is channels-last and runs under autocast in ``amp`` precision
    (fp16, bf16 or fp32); logits come back as float32.
    """
    device = next(model.parameters()).device
    x = images.to(device, dtype=torch.float32)
    if device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
        dtype = AMP_DTYPES[amp]
        if dtype is not None:
            with torch.autocast("cuda", dtype=dtype):
                return model(x)["out"].float()
    return model(x)["out"]


def flip_averaged_probabilities(
    model: Segmenter, images: torch.Tensor, flips: bool, amp: str = "fp16"
) -> torch.Tensor:
    """Probabilities of a batch, averaged over the four flips of each image if ``flips``."""
    views = ((), (-1,), (-2,), (-2, -1)) if flips else ((),)
    total = torch.zeros(())
    for dims in views:
        prob = model.probabilities(
            predict_logits_batch(model, images.flip(dims) if dims else images, amp)
        )
        total = total + (prob.flip(dims) if dims else prob)
    return total / len(views)


def n_prob_bands(model: Segmenter) -> int:
    """Probability bands per pixel: 1 for a binary model (class 1), else one per class."""
    return 1 if model.binary else model.n_classes


def predict_windows(
    model: Segmenter,
    windows: Iterable[Window],
    read: WindowReader,
    *,
    batch_size: int = 1,
    flips: bool = False,
    amp: str = "fp16",
    prefetch_depth: int = 2,
) -> Iterator[tuple[Window, np.ndarray | None, np.ndarray | None]]:
    """Probabilities of each window, in order, reading ahead while the model runs.

    Invalid pixels (nodata) are replaced by the model's mean grey value before prediction;
    a window without any valid pixel is not predicted (``None`` probabilities).

    Yields
    ------
    (Window, ndarray (P, h, w) of float32 or None, ndarray (h, w) of bool or None)
        The window, its probabilities, and its valid pixels (None: all valid).
    """
    fill = float(model.mean)
    reads = prefetch(((w, *read(w)) for w in windows), depth=prefetch_depth * batch_size)
    batch: list[tuple[Window, np.ndarray, np.ndarray | None]] = []

    def flush() -> Iterator[tuple[Window, np.ndarray | None, np.ndarray | None]]:
        images = torch.from_numpy(np.stack([img for _, img, _ in batch]))[:, None]
        prob = flip_averaged_probabilities(model, images, flips, amp).cpu().numpy()
        yield from ((w, p, v) for (w, _, v), p in zip(batch, prob, strict=True))
        batch.clear()

    try:
        for win, image, valid in reads:
            if valid is not None and not valid.any():
                if batch:
                    yield from flush()
                yield win, None, valid
                continue
            image = np.asarray(image, dtype=np.float32)
            if valid is not None and not valid.all():
                image = np.where(valid, image, np.float32(fill))
                batch.append((win, image, valid))
            else:
                batch.append((win, image, None))
            if len(batch) == batch_size:
                yield from flush()
        if batch:
            yield from flush()
    finally:
        reads.close()  # stop and join the reading thread before the caller closes its file


def predict_run(
    model: Segmenter,
    plan: WindowPlan,
    read: WindowReader,
    rows: tuple[int, int],
    cols: tuple[int, int],
    *,
    block_width: int,
    blend: str = "uniform",
    batch_size: int = 1,
    flips: bool = False,
    amp: str = "fp16",
) -> Iterator[Block]:
    """Blended probabilities of a run of the mosaic (rows x cols), block by block.

    Every window of ``plan`` that touches the run is predicted once; the yielded blocks
    hold the weighted mean of all of them (:func:`olmap.segment.blend.accumulate_run`).
    """
    schedule = run_windows(plan, rows, cols, block_width)
    windows = (w for block in schedule for w in block)
    yield from accumulate_run(
        plan,
        rows,
        cols,
        predict_windows(model, windows, read, batch_size=batch_size, flips=flips, amp=amp),
        n_bands=n_prob_bands(model),
        block_width=block_width,
        weights=blend_weights(plan.shape, blend),
    )


def predict_proba(
    model: Segmenter,
    image: np.ndarray,
    *,
    window: int = 1024,
    stride: int | None = None,
    batch_size: int = 1,
    flips: bool = False,
    blend: str = "uniform",
) -> np.ndarray:
    """Class probabilities of every pixel of a 2-D image held in memory.

    Parameters
    ----------
    model : Segmenter
        In eval mode.
    image : array (H, W)
        Raw grey values (as the model was trained on); NaN marks pixels without data.
    window : int
        Side of the square windows fed to the model (px); an image no larger is one window.
    stride : int, optional
        Step between windows (px); default ``window // 2``. Overlaps are averaged.
    batch_size : int
        Windows per forward pass.
    flips : bool
        Test-time augmentation: also predict each window flipped left-right, up-down and both,
        and average the four (4x the time; training used flips, so the model is symmetric in
        expectation and the average has less noise).
    blend : {"uniform", "gaussian"}
        How overlapping windows are weighted (:func:`olmap.segment.blend.blend_weights`).

    Returns
    -------
    ndarray (P, H, W) of float32
        ``P = 1`` for a binary model (probability of class 1), else one band per class;
        NaN where the image has no data.
    """
    image = np.asarray(image, dtype=np.float32)
    h, w = image.shape
    plan = WindowPlan.over(h, w, window, stride or max(window // 2, 1))
    nan = np.isnan(image)
    any_nan = bool(nan.any())

    def read(win: Window) -> tuple[np.ndarray, np.ndarray | None]:
        rs, cs = win.toslices()
        return image[rs, cs], (~nan[rs, cs] if any_nan else None)

    out = np.empty((n_prob_bands(model), h, w), np.float32)
    kwargs = {"batch_size": batch_size, "flips": flips, "blend": blend}
    for block in predict_run(model, plan, read, (0, h), (0, w), block_width=w, **kwargs):
        rs, cs = block.window.toslices()
        out[:, rs, cs] = block.mean
    return out


def classify(prob: np.ndarray, threshold: float) -> np.ndarray:
    """Class index per pixel: ``prob >= threshold`` for one band (binary), else argmax."""
    if prob.shape[0] == 1:
        return (prob[0] >= threshold).astype(np.uint8)
    return prob.argmax(0).astype(np.uint8)

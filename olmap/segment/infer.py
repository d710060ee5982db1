"""Model predictions on in-memory images: tiles, session regions, CT slices.

:func:`predict_proba` runs overlapping windows over an image held in memory and averages the
probabilities where windows overlap (seed 002 sect. 3.6.3). Mosaics too large for memory are
streamed window by window by the ``predict`` command, which calls this on each window.
"""

from __future__ import annotations

import numpy as np
import torch

from olmap.errors import InputError
from olmap.io.windows import sliding_windows
from olmap.segment.model import Segmenter


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
def predict_logits_batch(model: Segmenter, images: torch.Tensor) -> torch.Tensor:
    """Logits ``(B, K, H, W)`` for raw grey images ``(B, 1, H, W)`` on the model's device."""
    device = next(model.parameters()).device
    x = images.to(device, dtype=torch.float32)
    if device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cuda", dtype=torch.float16):
            return model(x)["out"].float()
    return model(x)["out"]


def flip_averaged_probabilities(
    model: Segmenter, images: torch.Tensor, flips: bool
) -> torch.Tensor:
    """Probabilities of a batch, averaged over the four flips of each image if ``flips``."""
    views = ((), (-1,), (-2,), (-2, -1)) if flips else ((),)
    total = torch.zeros(())
    for dims in views:
        prob = model.probabilities(
            predict_logits_batch(model, images.flip(dims) if dims else images)
        )
        total = total + (prob.flip(dims) if dims else prob)
    return total / len(views)


def predict_proba(
    model: Segmenter,
    image: np.ndarray,
    *,
    window: int = 1024,
    stride: int | None = None,
    batch_size: int = 1,
    flips: bool = False,
) -> np.ndarray:
    """Class probabilities of every pixel of a 2-D image.

    Parameters
    ----------
    model : Segmenter
        In eval mode.
    image : array (H, W)
        Raw grey values (as the model was trained on).
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

    Returns
    -------
    ndarray (P, H, W) of float32
        ``P = 1`` for a binary model (probability of class 1), else one band per class.
    """
    image = np.asarray(image, dtype=np.float32)
    h, w = image.shape
    win = (min(window, h), min(window, w))
    step = stride or max(window // 2, 1)
    wins = sliding_windows(h, w, win, (min(step, win[0]), min(step, win[1])))
    n_out = 1 if model.binary else model.n_classes
    total = np.zeros((n_out, h, w), dtype=np.float32)
    count = np.zeros((h, w), dtype=np.float32)
    for start in range(0, len(wins), batch_size):
        chunk = wins[start : start + batch_size]
        batch = np.stack(
            [
                image[
                    int(v.row_off) : int(v.row_off + v.height),
                    int(v.col_off) : int(v.col_off + v.width),
                ]
                for v in chunk
            ]
        )
        prob = flip_averaged_probabilities(model, torch.from_numpy(batch)[:, None], flips)
        prob = prob.cpu().numpy()
        for v, p in zip(chunk, prob, strict=True):
            rs = slice(int(v.row_off), int(v.row_off + v.height))
            cs = slice(int(v.col_off), int(v.col_off + v.width))
            total[:, rs, cs] += p
            count[rs, cs] += 1
    return total / count


def classify(prob: np.ndarray, threshold: float) -> np.ndarray:
    """Class index per pixel: ``prob >= threshold`` for one band (binary), else argmax."""
    if prob.shape[0] == 1:
        return (prob[0] >= threshold).astype(np.uint8)
    return prob.argmax(0).astype(np.uint8)

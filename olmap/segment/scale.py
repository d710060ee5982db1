"""Is a BSE image on the grey scale the model was trained on? Refuse, or rescale explicitly.

A model learns grey values as they were: trained on 16-bit BSE it finds no olivine in the same
image saved as 8-bit (a 257x smaller scale), and signed or floating-point images carry no scale
of their own. The checkpoint records the training tiles' data type and grey percentiles
(:class:`~olmap.segment.checkpoint.ModelMeta`); :func:`input_mapping` compares them with a sample
of the image and either accepts it as it is, applies the scale the user stated
(``--bse-scale FACTOR``: grey x FACTOR; ``--bse-scale auto``: the image's 1st and 99th
percentiles onto the training's), or refuses in one line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from olmap.errors import InputError
from olmap.segment.checkpoint import ModelMeta

#: Percentiles recorded for the training tiles and compared with an image's.
PERCENTILES = (1.0, 50.0, 99.0)
#: An image's grey spread (1st-99th percentile) more than this many times the training's, or
#: less than its inverse, is on another scale (8- vs 16-bit: 257x).
MAX_SPREAD_RATIO = 6.0

BseScale = float | Literal["auto"] | None


@dataclass(frozen=True)
class GreyMapping:
    """``grey for the model = gain * grey of the image + offset``; ``note`` says why."""

    gain: float = 1.0
    offset: float = 0.0
    note: str = ""

    @property
    def identity(self) -> bool:
        return self.gain == 1.0 and self.offset == 0.0

    def __call__(self, image: np.ndarray) -> np.ndarray:
        if self.identity:
            return image
        return (image * np.float32(self.gain) + np.float32(self.offset)).astype(np.float32)


def grey_percentiles(values: np.ndarray) -> tuple[float, float, float]:
    """:data:`PERCENTILES` of ``values`` (finite ones)."""
    finite = np.asarray(values, np.float64).ravel()
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return (float("nan"),) * 3
    return tuple(float(v) for v in np.percentile(finite, PERCENTILES))


def training_percentiles(meta: ModelMeta) -> tuple[float, float, float]:
    """The training tiles' percentiles; from mean and sd for checkpoints without them."""
    if meta.input_percentiles:
        return tuple(float(v) for v in meta.input_percentiles)
    z = 2.326  # the 1st and 99th percentiles of a normal distribution
    m, s = float(meta.input_mean), float(meta.input_std)
    return (m - z * s, m, m + z * s)


def _range(p: tuple[float, float, float]) -> str:
    return f"{p[0]:.4g}-{p[2]:.4g} (median {p[1]:.4g})"


def input_mapping(
    meta: ModelMeta,
    dtype: str,
    sample: np.ndarray,
    stated: BseScale,
    path: str | Path,
    option: str = "--bse-scale",
) -> GreyMapping:
    """How to put the image ``path`` (of ``dtype``; ``sample`` of its grey values) on the
    model's grey scale.

    Parameters
    ----------
    meta : ModelMeta
        The checkpoint's metadata (training data type and percentiles).
    dtype : str
        The image's data type.
    sample : ndarray
        Valid grey values from across the image (:func:`olmap.io.raster.sample_values`).
    stated : float, "auto" or None
        ``--bse-scale``: a factor, ``auto`` (match the percentiles), or None (check only).
    path : path-like
        The image, for messages.
    option : str
        The command's option for ``stated``, for messages (``ct predict``: ``--grey-match``).

    Raises
    ------
    InputError
        When the image's scale clearly differs from the training's and none was stated, or
        a signed or floating-point image of another type than the training's has no stated
        scale.
    """
    train = training_percentiles(meta)
    seen = grey_percentiles(sample)
    if isinstance(stated, int | float):
        return GreyMapping(float(stated), 0.0, f"grey x {float(stated):g} ({option})")
    if stated == "auto":
        if not np.isfinite(seen).all() or seen[2] <= seen[0]:
            raise InputError(f"{path}: too few distinct grey values to match ({option} auto)")
        gain = (train[2] - train[0]) / (seen[2] - seen[0])
        offset = train[0] - gain * seen[0]
        return GreyMapping(
            gain,
            offset,
            f"grey x {gain:.4g} {offset:+.4g} ({option} auto: {_range(seen)} onto the "
            f"training's {_range(train)})",
        )
    kind = np.dtype(dtype).kind
    trained = meta.input_dtype
    hint = "state its scale with --bse-scale FACTOR (grey x FACTOR) or --bse-scale auto"
    if kind in "if" and trained is not None and np.dtype(trained) != np.dtype(dtype):
        raise InputError(
            f"{path}: {dtype} BSE has no grey scale of its own and the model was trained on "
            f"{trained}; {hint}"
        )
    if not np.isfinite(seen).all():
        return GreyMapping()  # nothing valid to compare (all nodata): nothing to predict
    spread_t, spread_s = train[2] - train[0], seen[2] - seen[0]
    ratio = spread_s / spread_t if spread_t > 0 else float("inf")
    far = not (train[0] - spread_t <= seen[1] <= train[2] + spread_t)
    if far or not (1 / MAX_SPREAD_RATIO <= ratio <= MAX_SPREAD_RATIO):
        was = f"{trained} " if trained else ""
        raise InputError(
            f"{path}: grey levels {_range(seen)} ({dtype}) are on another scale than the "
            f"model's {was}training tiles {_range(train)}; {hint}"
        )
    return GreyMapping()

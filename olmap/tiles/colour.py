"""Display scales: grey stretches and colour maps from values to 8-bit RGBA (pure functions).

A :class:`ColourScale` maps a value range linearly onto the 256 entries of a matplotlib colour
map; invalid pixels (nodata, NaN) become transparent. The viewer's legends are drawn from the
same scale, so a colour on the map and on the legend always mean the same value.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from matplotlib import colormaps

from olmap.errors import InputError


@dataclass(frozen=True)
class ColourScale:
    """A linear map from ``[vmin, vmax]`` to a colour map.

    Attributes
    ----------
    cmap : str
        Matplotlib colour map name (``"gray"`` for BSE).
    vmin, vmax : float
        Values drawn with the first and last colour; values outside are clipped.
    label : str
        What the values are, with units (for legends).
    """

    cmap: str
    vmin: float
    vmax: float
    label: str = ""

    def __post_init__(self) -> None:
        if not (np.isfinite(self.vmin) and np.isfinite(self.vmax) and self.vmin < self.vmax):
            raise InputError(
                f"colour scale of {self.label or self.cmap!r} needs vmin < vmax, "
                f"got {self.vmin} and {self.vmax}"
            )
        if self.cmap not in colormaps:
            raise InputError(f"unknown colour map {self.cmap!r} (see matplotlib.colormaps)")

    def lut(self) -> npt.NDArray[np.uint8]:
        """The 256 x 4 RGBA lookup table of the colour map."""
        return colormaps[self.cmap](np.linspace(0.0, 1.0, 256), bytes=True)

    def css_stops(self, n: int = 11) -> list[str]:
        """``n`` evenly spaced colours of the scale as CSS hex strings (a legend gradient)."""
        lut = self.lut()
        idx = np.linspace(0, 255, n).round().astype(int)
        return ["#{:02x}{:02x}{:02x}".format(*lut[i, :3]) for i in idx]


def colour_index(values: npt.ArrayLike, scale: ColourScale) -> npt.NDArray[np.uint8]:
    """Index 0-255 into the scale's lookup table for each value (NaN gives 0)."""
    v = np.asarray(values, dtype=np.float32)
    t = (v - np.float32(scale.vmin)) * np.float32(255.0 / (scale.vmax - scale.vmin))
    return np.clip(np.nan_to_num(t, nan=0.0), 0, 255).round().astype(np.uint8)


def apply_colour_scale(
    values: npt.ArrayLike,
    scale: ColourScale,
    valid: npt.NDArray[np.bool_] | None = None,
    *,
    grey: bool = False,
) -> npt.NDArray[np.uint8]:
    """Colour each value; invalid or NaN pixels are fully transparent.

    Parameters
    ----------
    values : array_like, shape (h, w)
        Values in the scale's units.
    scale : ColourScale
    valid : ndarray of bool, shape (h, w), optional
        Pixels that hold data (None: all that are finite).
    grey : bool
        Return grey + alpha (2 bands) instead of RGBA (4 bands): half the bytes for BSE.

    Returns
    -------
    ndarray of uint8, shape (2 or 4, h, w)
        Band-first, as rasterio writes it.

    Examples
    --------
    >>> s = ColourScale("gray", 0.0, 1.0)
    >>> apply_colour_scale(np.array([[0.0, 0.5, np.nan]]), s, grey=True)[:, 0].tolist()
    [[0, 128, 0], [255, 255, 0]]
    """
    v = np.asarray(values, dtype=np.float32)
    if v.ndim != 2:
        raise ValueError(f"values must be 2-D, got shape {v.shape}")
    ok = np.isfinite(v)
    if valid is not None:
        ok &= valid
    idx = colour_index(v, scale)
    alpha = np.where(ok, np.uint8(255), np.uint8(0))
    if grey:
        level = scale.lut()[:, 0] if scale.cmap != "gray" else np.arange(256, dtype=np.uint8)
        out = np.stack([level[idx], alpha])
        out[0][~ok] = 0
        return out
    rgba = scale.lut()[idx]  # (h, w, 4)
    out = np.moveaxis(rgba, -1, 0).copy()
    out[3] = alpha
    out[:3, ~ok] = 0
    return out

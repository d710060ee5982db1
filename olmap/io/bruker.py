"""Bruker Esprit ``.bcf`` hypermaps through RosettaSciIO (optional extra ``olmap[bcf]``).

Memory: RosettaSciIO decodes a hypermap into one ``(row, col, channel)`` array, which is
what makes HyperSpy need gigabytes for a large map. olmap asks it to stop decoding just above
the highest line it needs (``cutoff_at_kV``; typically 7 keV of a 20-40 keV spectrum) and
exposes its ``downsample`` option (sums ``n x n`` pixels while decoding), then keeps only the
element maps. Measured peaks are in ``docs/masks.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from affine import Affine

from olmap.core.xray import (
    FWHM_MN_EV,
    KALPHA_KEV,
    channel_slices,
    element_maps_from_cube,
    line_window_kev,
)
from olmap.errors import InputError, InputFileNotFoundError, MissingExtraError
from olmap.io.eds import EdsArrays
from olmap.io.raster import micrometre_transform

#: Elements mapped when none are asked for (rock-forming, with Kα lines below 7 keV).
DEFAULT_ELEMENTS = ("Na", "Mg", "Al", "Si", "P", "K", "Ca", "Ti", "Cr", "Mn", "Fe")

_UNIT_TO_UM = {"µm": 1.0, "um": 1.0, "μm": 1.0, "nm": 1e-3, "mm": 1e3, "m": 1e6}


def _reader() -> Any:
    try:
        from rsciio.bruker import file_reader
    except ImportError as exc:
        raise MissingExtraError("rosettasciio", "bcf") from exc
    return file_reader


def _read(path: Path, **kwargs: Any) -> list[dict]:
    if not path.exists():
        raise InputFileNotFoundError(path, "Bruker hypermap")
    file_reader = _reader()
    try:
        return file_reader(str(path), **kwargs)
    except Exception as exc:  # the reader raises many types for damaged or foreign files
        text = str(exc).strip().splitlines()
        why = text[0] if text else type(exc).__name__
        raise InputError(f"{path}: not a readable Bruker .bcf hypermap ({why})") from exc


def _pixel_size_um(axis: dict, path: Path, given: float | None, downsample: int = 1) -> float:
    if given is not None:
        return given * downsample
    unit = str(axis.get("units", "")).strip()
    if unit not in _UNIT_TO_UM:
        raise InputError(
            f"{path}: pixel size is in {unit!r}, which olmap cannot convert to µm; "
            "give it with --pixel-size"
        )
    return float(axis["scale"]) * _UNIT_TO_UM[unit]


@dataclass(frozen=True)
class BcfImage:
    """One image channel of a hypermap (BSE, SE, ...)."""

    name: str
    data: np.ndarray
    transform: Affine


def read_bcf_element_maps(
    path: str | Path,
    *,
    elements: Sequence[str] | None = None,
    downsample: int = 1,
    fwhm_mn_ev: float = FWHM_MN_EV,
    width_fwhm: float = 1.0,
    pixel_size_um: float | None = None,
) -> EdsArrays:
    """Element count maps from a Bruker hypermap.

    Each map sums the counts within ``±width_fwhm · FWHM`` of the element's Kα line
    (:mod:`olmap.core.xray`).

    Parameters
    ----------
    path : path-like
        ``.bcf`` file.
    elements : sequence of str, optional
        Element symbols; :data:`DEFAULT_ELEMENTS` (those inside the spectrum) by default.
    downsample : int
        Sum ``downsample x downsample`` pixels while decoding (RosettaSciIO's option); the
        pixel size grows by the same factor.
    fwhm_mn_ev, width_fwhm : float
        Detector resolution at Mn Kα (eV) and half-width of the window in FWHM.
    pixel_size_um : float, optional
        Pixel side in µm at full resolution, for files without a spatial calibration.

    Returns
    -------
    EdsArrays
        ``uint32`` counts per element and the µm transform.
    """
    path = Path(path)
    if downsample < 1:
        raise InputError(f"downsample must be >= 1, got {downsample}")
    wanted = list(elements) if elements else None
    for el in wanted or ():
        if el not in KALPHA_KEV:
            raise InputError(
                f"{path}: no Kα line energy for {el!r} in olmap's line table "
                f"({', '.join(KALPHA_KEV)})"
            )
    asked = wanted or list(DEFAULT_ELEMENTS)
    top = max(line_window_kev(el, fwhm_mn_ev=fwhm_mn_ev, width_fwhm=width_fwhm)[1] for el in asked)
    # Decode only the channels up to the highest window: the cube is the memory peak.
    signals = _read(
        path,
        select_type="spectrum_image",
        downsample=downsample,
        cutoff_at_kV=round(top + 0.05, 3),
        lazy=False,
    )
    if not signals:
        raise InputError(f"{path}: holds no EDS hypermap")
    cube_signal = signals[0]
    cube = np.asarray(cube_signal["data"])
    row_axis, _, energy_axis = cube_signal["axes"]
    offset, scale = float(energy_axis["offset"]), float(energy_axis["scale"])
    if wanted is None:
        end = offset + scale * cube.shape[2]
        asked = [
            el
            for el in DEFAULT_ELEMENTS
            if line_window_kev(el, fwhm_mn_ev=fwhm_mn_ev, width_fwhm=width_fwhm)[1] <= end
        ]
    try:
        slices = channel_slices(
            asked,
            offset_kev=offset,
            scale_kev=scale,
            n_channels=cube.shape[2],
            fwhm_mn_ev=fwhm_mn_ev,
            width_fwhm=width_fwhm,
        )
    except ValueError as exc:
        raise InputError(f"{path}: {exc}") from exc
    maps = element_maps_from_cube(cube, slices)
    del cube, signals, cube_signal
    px = _pixel_size_um(row_axis, path, pixel_size_um, downsample)
    transform = micrometre_transform(row_axis["size"], px)
    return EdsArrays(maps=maps, transform=transform, path=path)


def block_mean(image: np.ndarray, factor: int) -> np.ndarray:
    """Mean of ``factor x factor`` blocks; partial blocks at the bottom/right edge average the
    pixels they have (as the hypermap reader sums them), so the grid matches a downsampled map.

    Examples
    --------
    >>> block_mean(np.arange(9.0).reshape(3, 3), 2).tolist()
    [[2.0, 3.5], [6.5, 8.0]]
    """
    if factor == 1:
        return image
    h, w = image.shape
    rows, cols = -(-h // factor), -(-w // factor)
    padded = np.full((rows * factor, cols * factor), np.nan)
    padded[:h, :w] = image
    return np.nanmean(padded.reshape(rows, factor, cols, factor), axis=(1, 3))


def read_bcf_images(
    path: str | Path, *, pixel_size_um: float | None = None, downsample: int = 1
) -> list[BcfImage]:
    """The image channels (BSE, SE, ...) stored beside the hypermap.

    With ``downsample`` > 1 each image is block-averaged onto the grid of element maps read
    with the same ``downsample``, so the two stay co-registered.
    """
    path = Path(path)
    images = []
    for signal in _read(path, select_type="image", lazy=False):
        data = np.asarray(signal["data"])
        if data.ndim != 2:
            continue
        row_axis = signal["axes"][0]
        name = str(signal.get("metadata", {}).get("General", {}).get("title", "image"))
        px = _pixel_size_um(row_axis, path, pixel_size_um) * downsample
        if downsample > 1:
            data = np.round(block_mean(data.astype(np.float64), downsample)).astype(data.dtype)
        transform = micrometre_transform(data.shape[0], px)
        images.append(BcfImage(name=name, data=data, transform=transform))
    return images

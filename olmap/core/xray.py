"""X-ray line energies and element maps from EDS spectrum cubes.

Kα energies are the weighted Kα1/Kα2 means of the standard tables (Bearden 1967, as tabulated
in the X-ray data booklet, LBNL 2009), in keV. The detector resolution follows the usual
square-root law of Si(Li)/SDD detectors (Fiori & Newbury 1978):
``FWHM(E)² = FWHM(Mn Kα)² + 2.49 eV · (E − 5894 eV)``, with FWHM(Mn Kα) = 130 eV, a typical
silicon-drift detector. An element's map sums the counts of the channels within
``±width_fwhm · FWHM`` of its line; HyperSpy's default integration window (2 FWHM wide) is
``width_fwhm = 1``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

#: Kα line energies in keV for the elements of rock-forming minerals (Bearden 1967).
KALPHA_KEV: dict[str, float] = {
    "C": 0.277,
    "N": 0.392,
    "O": 0.525,
    "F": 0.677,
    "Na": 1.041,
    "Mg": 1.254,
    "Al": 1.487,
    "Si": 1.740,
    "P": 2.013,
    "S": 2.307,
    "Cl": 2.622,
    "K": 3.313,
    "Ca": 3.691,
    "Sc": 4.090,
    "Ti": 4.510,
    "V": 4.952,
    "Cr": 5.414,
    "Mn": 5.898,
    "Fe": 6.403,
    "Co": 6.930,
    "Ni": 7.477,
    "Cu": 8.046,
    "Zn": 8.637,
}

#: FWHM of the Mn Kα peak in eV for a typical silicon-drift detector.
FWHM_MN_EV = 130.0
_MN_KALPHA_EV = 5894.0
_FANO_NOISE_EV = 2.49  # 2.5 · epsilon(3.8 eV) · Fano(0.12) · ..., Fiori & Newbury (1978)


def fwhm_ev(energy_kev: float, fwhm_mn_ev: float = FWHM_MN_EV) -> float:
    """Detector peak width (FWHM, eV) at ``energy_kev``.

    Examples
    --------
    >>> round(fwhm_ev(5.894), 1)
    130.0
    >>> round(fwhm_ev(1.254), 1)   # Mg Kα
    73.1
    """
    value = fwhm_mn_ev**2 + _FANO_NOISE_EV * (energy_kev * 1000.0 - _MN_KALPHA_EV)
    if value <= 0:
        raise ValueError(f"FWHM(Mn Kα) = {fwhm_mn_ev} eV is too small for {energy_kev} keV")
    return math.sqrt(value)


def line_window_kev(
    element: str, *, fwhm_mn_ev: float = FWHM_MN_EV, width_fwhm: float = 1.0
) -> tuple[float, float]:
    """Energy window ``(low, high)`` in keV that sums ``element``'s Kα line.

    Raises
    ------
    KeyError
        If the line table has no Kα energy for ``element``.
    """
    if element not in KALPHA_KEV:
        have = ", ".join(KALPHA_KEV)
        raise KeyError(f"no Kα line energy for {element!r} (olmap knows: {have})")
    energy = KALPHA_KEV[element]
    half = width_fwhm * fwhm_ev(energy, fwhm_mn_ev) / 1000.0
    return energy - half, energy + half


def channel_slices(
    elements: Sequence[str],
    *,
    offset_kev: float,
    scale_kev: float,
    n_channels: int,
    fwhm_mn_ev: float = FWHM_MN_EV,
    width_fwhm: float = 1.0,
) -> dict[str, slice]:
    """Channel range summed for each element, for an energy axis ``E = offset + i · scale``.

    Raises
    ------
    ValueError
        If an element's window lies outside the recorded spectrum.
    """
    if scale_kev <= 0:
        raise ValueError(f"energy scale must be > 0 keV per channel, got {scale_kev}")
    out = {}
    for el in elements:
        lo, hi = line_window_kev(el, fwhm_mn_ev=fwhm_mn_ev, width_fwhm=width_fwhm)
        first = max(0, math.ceil((lo - offset_kev) / scale_kev))
        last = min(n_channels, math.floor((hi - offset_kev) / scale_kev) + 1)
        if last <= first:
            top = offset_kev + n_channels * scale_kev
            raise ValueError(
                f"{el} Kα window {lo:.3f}-{hi:.3f} keV lies outside the spectrum "
                f"({offset_kev:.3f}-{top:.3f} keV)"
            )
        out[el] = slice(first, last)
    return out


def element_maps_from_cube(cube: np.ndarray, slices: Mapping[str, slice]) -> dict[str, np.ndarray]:
    """Sum a ``(row, col, channel)`` spectrum cube over each element's channel range.

    Returns
    -------
    dict of str to ndarray
        ``uint32`` count maps of shape ``(row, col)``.
    """
    if cube.ndim != 3:
        raise ValueError(f"expected a (row, col, channel) cube, got shape {cube.shape}")
    return {el: cube[:, :, s].sum(axis=2, dtype=np.uint32) for el, s in slices.items()}

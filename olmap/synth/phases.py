"""Phases of a basaltic-andesite thin section and what the SEM sees of them.

One table of oxide compositions drives both signals, so BSE and EDS stay physically
consistent:

* **BSE** brightness grows with the mass-weighted mean atomic number Z̄ of a phase
  (backscatter coefficient, e.g. Reed 2005, *Electron Microprobe Analysis and SEM*), mapped
  to grey levels by the detector's contrast/brightness (:data:`GREY_PER_Z`, :data:`GREY_AT_Z11`).
  Olivine Z̄ is linear in mg# across Fo70–Fo92, so BSE is linear in mg# (PRIMER step 5).
* **EDS** net counts of an element are proportional to its mass fraction
  (:data:`COUNTS_PER_WT_PERCENT`), plus a small continuum background.

Compositions are typical values for the phases of the sample described in seed 002, sect. 3.1
(high-Mg basaltic andesite, Klyuchevskoy).
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np

from olmap.core.mgnum import FEO_MOLAR_MASS, MGO_MOLAR_MASS


class Phase(IntEnum):
    """Codes of ``truth/phases.tif``."""

    EPOXY = 0  # vesicles and the space outside the rock (filled with epoxy)
    GLASS = 1  # groundmass glass, also melt inclusions
    PLAGIOCLASE = 2
    OLIVINE = 3
    CLINOPYROXENE = 4
    ORTHOPYROXENE = 5
    OXIDE = 6  # Fe-Ti oxide (titanomagnetite)
    SPINEL = 7  # Cr-spinel, mostly as inclusions in olivine
    CRACK = 8  # cracks and plucked holes inside crystals (epoxy-filled)


#: Colours for previews and legends (RGB 0–1).
PHASE_COLOURS: dict[Phase, tuple[float, float, float]] = {
    Phase.EPOXY: (0.05, 0.05, 0.05),
    Phase.GLASS: (0.55, 0.55, 0.55),
    Phase.PLAGIOCLASE: (0.85, 0.85, 0.95),
    Phase.OLIVINE: (0.35, 0.75, 0.25),
    Phase.CLINOPYROXENE: (0.15, 0.45, 0.75),
    Phase.ORTHOPYROXENE: (0.55, 0.35, 0.75),
    Phase.OXIDE: (0.95, 0.85, 0.1),
    Phase.SPINEL: (0.9, 0.25, 0.2),
    Phase.CRACK: (0.0, 0.0, 0.0),
}

#: Element maps of the EDS stack, in band order.
EDS_ELEMENTS: tuple[str, ...] = ("Mg", "Ca", "Al", "Fe", "Si")

# Atomic weight (g/mol) and atomic number of the elements used.
_ATOMS: dict[str, tuple[float, int]] = {
    "O": (15.999, 8),
    "Na": (22.990, 11),
    "Mg": (24.305, 12),
    "Al": (26.982, 13),
    "Si": (28.086, 14),
    "K": (39.098, 19),
    "Ca": (40.078, 20),
    "Ti": (47.867, 22),
    "Cr": (51.996, 24),
    "Mn": (54.938, 25),
    "Fe": (55.845, 26),
}
# Oxide -> (cation, cations per formula, oxygens per formula).
_OXIDES: dict[str, tuple[str, int, int]] = {
    "SiO2": ("Si", 1, 2),
    "TiO2": ("Ti", 1, 2),
    "Al2O3": ("Al", 2, 3),
    "Cr2O3": ("Cr", 2, 3),
    "FeO": ("Fe", 1, 1),
    "MnO": ("Mn", 1, 1),
    "MgO": ("Mg", 1, 1),
    "CaO": ("Ca", 1, 1),
    "Na2O": ("Na", 2, 1),
    "K2O": ("K", 2, 1),
}

#: Grey levels per unit of mean atomic number (detector contrast, tuned for silicates so that
#: olivine Fo92–Fo70 spans ~90 of 256 levels and Fe-Ti oxides saturate, as in olivine work).
GREY_PER_Z = 40.0
#: Grey level of a phase with Z̄ = 11 (detector brightness).
GREY_AT_Z11 = 50.0
#: Grey level of epoxy (Z̄ ~ 6, below the detector's useful range).
GREY_EPOXY = 8.0
#: EDS net counts per pixel per wt % of an element at the nominal beam current and dwell.
COUNTS_PER_WT_PERCENT = 3.0
#: EDS continuum background under each element window (counts per pixel).
EDS_BACKGROUND = 0.6
#: Mean atomic number of epoxy resin (C ~72 %, O ~21 %, H ~7 % by mass).
Z_EPOXY = 6.07


def element_mass_fractions(oxides: dict[str, float]) -> dict[str, float]:
    """Element mass fractions (sum 1) of a composition given as oxide wt %.

    Examples
    --------
    >>> f = element_mass_fractions({"MgO": 100.0})
    >>> round(f["Mg"], 3), round(f["O"], 3)
    (0.603, 0.397)
    """
    total = sum(oxides.values())
    if total <= 0:
        raise ValueError("composition has no mass")
    out: dict[str, float] = {}
    for oxide, wt in oxides.items():
        cation, n_cat, n_ox = _OXIDES[oxide]
        m_cat = n_cat * _ATOMS[cation][0]
        m_ox = n_ox * _ATOMS["O"][0]
        share = wt / total
        out[cation] = out.get(cation, 0.0) + share * m_cat / (m_cat + m_ox)
        out["O"] = out.get("O", 0.0) + share * m_ox / (m_cat + m_ox)
    return out


def mean_atomic_number(oxides: dict[str, float]) -> float:
    """Mass-weighted mean atomic number Z̄ of an oxide composition."""
    return sum(w * _ATOMS[el][1] for el, w in element_mass_fractions(oxides).items())


def grey_from_z(z: np.ndarray | float) -> np.ndarray | float:
    """Nominal BSE grey level (0–255 scale, unclipped) of a phase of mean atomic number ``z``."""
    return GREY_AT_Z11 + GREY_PER_Z * (np.asarray(z) - 11.0)


def eds_counts(oxides: dict[str, float]) -> np.ndarray:
    """Expected EDS net counts per pixel of :data:`EDS_ELEMENTS` for a composition."""
    frac = element_mass_fractions(oxides)
    return np.array([COUNTS_PER_WT_PERCENT * 100.0 * frac.get(el, 0.0) for el in EDS_ELEMENTS])


def _split_mgo_feo(total: float, mg_number: float) -> tuple[float, float]:
    """Split MgO+FeO wt % ``total`` so that the molar Mg/(Mg+Fe) is ``mg_number``."""
    w_mg = mg_number * MGO_MOLAR_MASS
    w_fe = (1.0 - mg_number) * FEO_MOLAR_MASS
    return total * w_mg / (w_mg + w_fe), total * w_fe / (w_mg + w_fe)


def olivine_oxides(mg_number: float) -> dict[str, float]:
    """Oxide wt % of volcanic olivine (Mg,Fe)2SiO4 of a given mg#, with its minor Ca, Al, Mn."""
    x = mg_number
    mgo = 2 * x * MGO_MOLAR_MASS
    feo = 2 * (1 - x) * FEO_MOLAR_MASS
    sio2 = 28.086 + 2 * 15.999
    total = mgo + feo + sio2
    # Minor elements typical of arc olivine: CaO ~0.2, MnO ~0.2, Al2O3 ~0.03 wt %.
    return {
        "SiO2": 100 * sio2 / total,
        "MgO": 100 * mgo / total,
        "FeO": 100 * feo / total,
        "CaO": 0.2,
        "MnO": 0.2,
        "Al2O3": 0.03,
    }


def clinopyroxene_oxides(mg_number: float, cao: float = 20.0) -> dict[str, float]:
    """Oxide wt % of augite; Ca content sets how Ca-rich (and how bright) it is."""
    mgo, feo = _split_mgo_feo(45.5 - cao, mg_number)
    return {"SiO2": 51.0, "TiO2": 0.5, "Al2O3": 3.0, "MgO": mgo, "FeO": feo, "CaO": cao}


def orthopyroxene_oxides(mg_number: float) -> dict[str, float]:
    """Oxide wt % of orthopyroxene (enstatite–ferrosilite)."""
    mgo, feo = _split_mgo_feo(42.5, mg_number)
    return {"SiO2": 54.0, "Al2O3": 1.5, "MgO": mgo, "FeO": feo, "CaO": 1.8, "MnO": 0.2}


def plagioclase_oxides(anorthite: float) -> dict[str, float]:
    """Oxide wt % of plagioclase of anorthite fraction ``anorthite`` (0–1)."""
    an = anorthite
    return {
        "SiO2": 68.7 - 25.5 * an,
        "Al2O3": 19.4 + 17.2 * an,
        "CaO": 20.1 * an,
        "Na2O": 11.8 * (1 - an),
        "FeO": 0.5,
        "MgO": 0.1,
    }


GLASS_OXIDES = {
    "SiO2": 61.0,
    "TiO2": 1.0,
    "Al2O3": 16.5,
    "FeO": 6.5,
    "MgO": 2.5,
    "CaO": 5.5,
    "Na2O": 4.2,
    "K2O": 1.8,
}  # evolved (andesitic) matrix glass
OXIDE_OXIDES = {"FeO": 78.0, "TiO2": 14.0, "Al2O3": 3.0, "MgO": 3.0, "Cr2O3": 1.0}
SPINEL_OXIDES = {"Cr2O3": 42.0, "Al2O3": 22.0, "MgO": 15.0, "FeO": 19.0, "TiO2": 0.5}
ALMANDINE_OXIDES = {"FeO": 43.3, "Al2O3": 20.5, "SiO2": 36.2}


class PhaseTable:
    """Precomputed grey levels and EDS counts, with mg#-dependent lookups for mafic phases.

    ``grey(phase)`` and ``eds(phase)`` give constants; ``olivine_grey(mg)`` etc. interpolate
    tables over mg# (vectorised, so a whole crystal is coloured in one call).
    """

    MG_GRID = np.linspace(0.5, 1.0, 101)

    def __init__(self) -> None:
        self.const_grey: dict[Phase, float] = {}
        self.const_eds: dict[Phase, np.ndarray] = {}
        for phase, ox in [
            (Phase.GLASS, GLASS_OXIDES),
            (Phase.OXIDE, OXIDE_OXIDES),
            (Phase.SPINEL, SPINEL_OXIDES),
        ]:
            self.const_grey[phase] = float(grey_from_z(mean_atomic_number(ox)))
            self.const_eds[phase] = eds_counts(ox)
        for phase in (Phase.EPOXY, Phase.CRACK):
            self.const_grey[phase] = GREY_EPOXY
            self.const_eds[phase] = np.zeros(len(EDS_ELEMENTS))
        grid = self.MG_GRID
        self._ol_grey = np.array([grey_from_z(mean_atomic_number(olivine_oxides(m))) for m in grid])
        self._ol_eds = np.array([eds_counts(olivine_oxides(m)) for m in grid])
        self._opx_grey = np.array(
            [grey_from_z(mean_atomic_number(orthopyroxene_oxides(m))) for m in grid]
        )
        self._opx_eds = np.array([eds_counts(orthopyroxene_oxides(m)) for m in grid])

    def olivine_grey(self, mg: np.ndarray) -> np.ndarray:
        """Nominal BSE grey of olivine of mg# ``mg``."""
        return np.interp(mg, self.MG_GRID, self._ol_grey)

    def olivine_eds(self, mg: np.ndarray) -> np.ndarray:
        """EDS counts (band, ...) of olivine of mg# ``mg``."""
        return np.stack(
            [np.interp(mg, self.MG_GRID, self._ol_eds[:, b]) for b in range(len(EDS_ELEMENTS))]
        )

    def orthopyroxene_grey(self, mg: float) -> float:
        return float(np.interp(mg, self.MG_GRID, self._opx_grey))

    def orthopyroxene_eds(self, mg: float) -> np.ndarray:
        return np.array(
            [np.interp(mg, self.MG_GRID, self._opx_eds[:, b]) for b in range(len(EDS_ELEMENTS))]
        )

    @staticmethod
    def composition_grey(oxides: dict[str, float]) -> float:
        return float(grey_from_z(mean_atomic_number(oxides)))


PHASE_TABLE = PhaseTable()

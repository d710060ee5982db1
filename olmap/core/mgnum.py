"""mg# (molar Mg/(Mg+Fe)) from microprobe oxide analyses."""

from __future__ import annotations

import numpy as np

MGO_MOLAR_MASS = 40.304  # g/mol (PRIMER step 5)
FEO_MOLAR_MASS = 71.844  # g/mol, FeO as total Fe (PRIMER step 5)


def mg_number_from_oxides(mgo_wt: np.ndarray | float, feo_wt: np.ndarray | float) -> np.ndarray:
    """mg# = Mg/(Mg+Fe) in moles from MgO and FeO (total Fe) in wt % (PRIMER step 5).

    Examples
    --------
    >>> round(float(mg_number_from_oxides(49.42, 9.19)), 4)  # San Carlos olivine, Fo90.6
    0.9055
    """
    mg = np.asarray(mgo_wt, dtype=float) / MGO_MOLAR_MASS
    fe = np.asarray(feo_wt, dtype=float) / FEO_MOLAR_MASS
    with np.errstate(invalid="ignore", divide="ignore"):
        return mg / (mg + fe)

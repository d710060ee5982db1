import numpy as np
import pytest

from olmap.core.mgnum import mg_number_from_oxides
from olmap.synth.phases import (
    EDS_BACKGROUND,
    EDS_ELEMENTS,
    PHASE_TABLE,
    clinopyroxene_oxides,
    eds_counts,
    mean_atomic_number,
    olivine_oxides,
    orthopyroxene_oxides,
    plagioclase_oxides,
)

MG, CA, AL = (EDS_ELEMENTS.index(e) for e in ("Mg", "Ca", "Al"))


def _rule(counts):
    c = counts + EDS_BACKGROUND
    return c[CA] / c[MG] < 0.1 and c[AL] / c[MG] < 0.1 and c[MG] > 30


def test_mg_number_from_oxides_matches_the_primer_formula():
    # PRIMER step 5: mg# = (MgO/40.304) / (MgO/40.304 + FeO/71.844)
    assert mg_number_from_oxides(49.0, 10.0) == pytest.approx(
        (49 / 40.304) / (49 / 40.304 + 10 / 71.844)
    )
    ox = olivine_oxides(0.85)
    assert mg_number_from_oxides(ox["MgO"], ox["FeO"]) == pytest.approx(0.85)


def test_forsterite_mean_atomic_number():
    # Mg2SiO4: Z = (2*24.305*12 + 28.086*14 + 4*15.999*8) / 140.69 = 10.58 (hand-computed)
    fo100 = {"MgO": 57.29, "SiO2": 42.71}
    assert mean_atomic_number(fo100) == pytest.approx(10.58, abs=0.02)


def test_olivine_bse_is_linear_in_mg_number_and_brighter_when_iron_rich():
    mg = np.linspace(0.70, 0.92, 23)
    grey = PHASE_TABLE.olivine_grey(mg)
    assert np.all(np.diff(grey) < 0)  # Fe-rich olivine is brighter
    fit = np.polyfit(mg, grey, 1)
    residual = grey - np.polyval(fit, mg)
    assert np.abs(residual).max() < 0.03 * (grey.max() - grey.min())


def test_eds_rule_separates_olivine_from_clinopyroxene_but_not_orthopyroxene():
    for mg in (0.70, 0.80, 0.92):
        assert _rule(eds_counts(olivine_oxides(mg)))
    for mg in (0.72, 0.80, 0.88):
        for cao in (18.0, 22.0):
            assert not _rule(eds_counts(clinopyroxene_oxides(mg, cao)))
    assert not _rule(eds_counts(plagioclase_oxides(0.7)))
    # orthopyroxene is Mg-rich and Ca-poor: the paper's rule cannot tell it from olivine
    assert _rule(eds_counts(orthopyroxene_oxides(0.85)))

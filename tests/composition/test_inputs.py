"""mg# from oxides, and the checks on epma.csv and standards.csv."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from olmap.composition.drift import correct_bse, fit_session_drift, session_index_grid
from olmap.core.mgnum import mg_number_from_oxides
from olmap.errors import InputError
from olmap.io.epma import read_profiles, read_standards
from olmap.io.raster import micrometre_transform


def test_mg_number_by_hand():
    # Fo90 olivine: MgO 49.42, FeO 9.79 wt % -> (49.42/40.304) / (49.42/40.304 + 9.79/71.844)
    mg, fe = 49.42 / 40.304, 9.79 / 71.844
    assert mg_number_from_oxides(49.42, 9.79) == pytest.approx(mg / (mg + fe), abs=1e-12)
    assert mg_number_from_oxides(49.42, 9.79) == pytest.approx(0.9000, abs=2e-4)
    np.testing.assert_allclose(mg_number_from_oxides([10.0, 0.0], [0.0, 10.0]), [1.0, 0.0])


def _write(tmp_path, text, name="epma.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_profiles_from_oxides_sorted_and_converted(tmp_path):
    path = _write(
        tmp_path,
        "profile_id,point,x_um,y_um,split,MgO,FeO\n"
        "A,2,1,1,calibration,45,15\nA,1,0,0,Calibration,49.42,9.79\nA,3,2,2,calibration,40,20\n",
    )
    df = read_profiles(path)
    assert df["point"].tolist() == [1, 2, 3]
    assert df["split"].unique().tolist() == ["calibration"]
    assert df["mg_num"].iloc[0] == pytest.approx(mg_number_from_oxides(49.42, 9.79))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("profile_id,point,x_um,y_um,split\nA,1,0,0,test\n", "mg_num column or MgO and FeO"),
        (
            "profile_id,point,x_um,y_um,split,mg_num\nA,1,0,0,train,0.8\n",
            "split 'train' is not one of",
        ),
        ("profile_id,point,x_um,y_um,split,mg_num\nA,1,0,0,test,0.8\nA,2,1,1,test,0.8\n", ">= 3"),
        (
            "profile_id,point,x_um,y_um,split,mg_num\nA,1,0,0,test,0.8\nA,1,1,1,test,0.8\n",
            "listed twice",
        ),
        ("profile_id,point,x_um,y_um,split,mg_num\nA,1,x,0,test,0.8\n", "line 2: x_um"),
        ("profile_id,point,x_um,y_um,split,mg_num\nA,1,0,0,test,1.3\n", "not in (0, 1)"),
        (
            "profile_id,point,x_um,y_um,split,mg_num\n"
            "A,1,0,0,test,0.8\nA,2,1,1,calibration,0.8\nA,3,2,2,test,0.8\n",
            "split between",
        ),
    ],
)
def test_bad_profiles_one_line(tmp_path, body, message):
    with pytest.raises(InputError, match=r"epma\.csv") as err:
        read_profiles(_write(tmp_path, body))
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_standards_need_two_references(tmp_path):
    path = _write(
        tmp_path,
        "session,standard,bse_measured,bse_reference\n1,ol,80,78\n",
        "standards.csv",
    )
    with pytest.raises(InputError, match="two standards"):
        read_standards(path)


def test_drift_recovered_and_removed():
    gain = {"1": 0.95, "2": 1.05}
    offset = {"1": 4.0, "2": -3.0}
    refs = [77.6, 234.6]
    rows = [
        {"session": s, "bse_measured": gain[s] * r + offset[s], "bse_reference": r}
        for s in gain
        for r in refs
    ]
    drift = fit_session_drift(pd.DataFrame(rows))
    for s in gain:
        assert drift.gain[s] == pytest.approx(gain[s])
        assert drift.offset[s] == pytest.approx(offset[s])
    # Two sessions side by side (columns 0-3 and 4-7): the same true grey reads differently.
    regions = pd.DataFrame(
        {"session": ["1", "2"], "x0_um": [0, 4], "y0_um": [0, 0], "x1_um": [4, 8], "y1_um": [4, 4]}
    )
    idx = session_index_grid(regions, micrometre_transform(4, 1.0), 0, 0, 4, 8)
    assert (idx[:, :4] == 0).all() and (idx[:, 4:] == 1).all()
    true = np.full((4, 8), 120.0)
    measured = np.where(idx == 0, 0.95 * true + 4.0, 1.05 * true - 3.0)
    np.testing.assert_allclose(correct_bse(measured, idx, drift, ["1", "2"]), true)
    # A pixel in no session cannot be corrected: NaN, never silently left as measured.
    idx[0, 0] = -1
    assert np.isnan(correct_bse(measured, idx, drift, ["1", "2"])[0, 0])


def test_shipped_configs_are_the_defaults():
    from pathlib import Path

    from olmap.composition.config import CalibrateConfig, MgMapConfig
    from olmap.io.config import load_config

    folder = Path(__file__).resolve().parents[2] / "configs" / "composition"
    assert load_config(CalibrateConfig, folder / "calibrate.yaml") == CalibrateConfig()
    assert load_config(MgMapConfig, folder / "mgmap.yaml") == MgMapConfig()
    with pytest.raises(InputError, match="n_neighbours"):
        load_config(MgMapConfig, None, lof={"n_neighbours": 5})

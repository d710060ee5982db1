"""olmap calibrate and mgmap on a synthetic section with session drift and misplaced lines."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import rasterio

from olmap.composition.calibrate import BseDomain, calibrate
from olmap.composition.config import CalibrateConfig, RegistrationConfig
from olmap.composition.regression import LinearCalibration

from ..conftest import run_olmap as olmap


def registration_errors(result, section_dir) -> pd.Series:
    """Distance (µm) between each profile's first point and where it truly was."""
    truth = pd.read_csv(section_dir / "truth" / "epma_offsets.csv")
    first = result.points.groupby("profile_id").first().reset_index().merge(truth, on="profile_id")
    dist = np.hypot(
        first["x_um_registered"] - first["x0_um"], first["y_um_registered"] - first["y0_um"]
    )
    return pd.Series(dist.to_numpy(), index=first["profile_id"])


def calibrate_section(section_dir, config: CalibrateConfig | None = None):
    """``calibrate`` on the test section with its standards and sessions."""
    return calibrate(
        section_dir / "bse.tif",
        section_dir / "truth" / "olivine.tif",
        section_dir / "epma.csv",
        standards_path=section_dir / "standards.csv",
        sessions_path=section_dir / "sessions.csv",
        config=config,
    )


@pytest.fixture(scope="module")
def calibrated(section_dir):
    return calibrate_section(section_dir)


def test_calibration_meets_the_paper(calibrated):
    test = calibrated.metrics["filtered"]["test"]
    assert test["rmse"] <= 0.006  # paper: 0.0096
    assert calibrated.metrics["filtered"]["calibration"]["r2"] >= 0.99  # paper: 0.995
    # Olivine BSE brightens as mg# falls (Fe is heavier than Mg).
    assert calibrated.calibration.slope < 0


def test_registration_relocates_lines(calibrated, section_dir):
    fixed = calibrate_section(
        section_dir, CalibrateConfig(registration=RegistrationConfig(enabled=False))
    )
    # The filtered line is the least-squares line of the filtered BSE, registered or not.
    cal_points = fixed.points[fixed.points["split"] == "calibration"]
    refit = LinearCalibration.fit(
        cal_points["bse_filtered"].to_numpy(float), cal_points["mg_num"].to_numpy(float)
    )
    assert fixed.calibration_filtered.slope == pytest.approx(refit.slope, rel=1e-4)
    assert fixed.calibration_filtered.intercept == pytest.approx(refit.intercept, rel=1e-4)
    given = registration_errors(fixed, section_dir)
    found = registration_errors(calibrated, section_dir)
    assert (fixed.profiles["shift_along_um"] == 0).all()
    assert found.mean() < given.mean()
    worst = given.idxmax()  # the line placed furthest off (3.6 µm) comes back within 1 µm
    assert given[worst] > 3 and found[worst] < 1.0
    # Each line's posterior sd along it is reported, and the errors are of that size.
    sd = calibrated.profiles.set_index("profile_id")["shift_along_sd_um"]
    assert ((sd > 0.05) & (sd < 2.0)).all()
    assert (found <= 3 * sd.loc[found.index] + 0.5).all()


def test_cli_calibrate_then_mgmap_as_documented(section_dir, tmp_path):
    d = section_dir
    for name in ("bse.tif", "epma.csv", "standards.csv", "sessions.csv"):
        (tmp_path / name).symlink_to(d / name)
    (tmp_path / "pred_mask.tif").symlink_to(d / "truth" / "olivine.tif")
    args = [
        "calibrate", "--bse", "bse.tif", "--mask", "pred_mask.tif", "--profiles", "epma.csv",
        "--standards", "standards.csv", "--sessions", "sessions.csv", "--out", "calibration.json",
    ]  # fmt: skip
    result = olmap(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for name in ("calibration.json", "calibration.png", "calibration.profiles.png",
                 "calibration.points.csv"):  # fmt: skip
        assert (tmp_path / name).stat().st_size > 0
    data = json.loads((tmp_path / "calibration.json").read_text())
    assert data["format"] == "olmap-calibration" and data["drift"]
    assert "RMSE10" in result.stdout

    again = olmap(*args, cwd=tmp_path)
    assert again.returncode == 1 and "--overwrite" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1

    result = olmap(
        "mgmap", "--bse", "bse.tif", "--mask", "pred_mask.tif", "--calibration",
        "calibration.json", "--out", "mgnum.tif", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    with rasterio.open(tmp_path / "mgnum.tif") as ds:
        mg = ds.read(1)
    with rasterio.open(d / "truth" / "mgnum.tif") as ds:
        truth = ds.read(1)
    with rasterio.open(tmp_path / "mgnum.outliers.tif") as ds:
        assert ds.read(1).max() <= 1
    ok = np.isfinite(mg) & np.isfinite(truth)
    assert ok.sum() > 0.9 * np.isfinite(truth).sum()
    assert np.sqrt(np.mean((mg[ok] - truth[ok]) ** 2)) <= 0.01


def test_cli_bad_profiles_one_line(section_dir, tmp_path):
    bad = tmp_path / "epma.csv"
    bad.write_text("profile_id,point,x_um,y_um,split\nA,1,0,0,test\n")
    result = olmap(
        "calibrate", "--bse", section_dir / "bse.tif", "--mask",
        section_dir / "truth" / "olivine.tif", "--profiles", bad, "--out", "c.json",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 1
    assert "epma.csv" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "c.json").exists()


def test_cli_mgmap_refuses_drift_on_a_calibration_without_it(section_dir, tmp_path):
    d = section_dir
    res = olmap(
        "calibrate", "--bse", d / "bse.tif", "--mask", d / "truth" / "olivine.tif",
        "--profiles", d / "epma.csv", "--out", "raw.json", "--no-register", cwd=tmp_path,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    # Standard JSON (no NaN): a line that was not registered has no shift sd.
    text = (tmp_path / "raw.json").read_text()
    profiles = json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in JSON"))["profiles"]
    assert all(p["shift_along_sd_um"] is None and p["shift_along_um"] == 0 for p in profiles)
    res = olmap(
        "mgmap", "--bse", d / "bse.tif", "--mask", d / "truth" / "olivine.tif",
        "--calibration", "raw.json", "--out", "mg.tif", "--standards", d / "standards.csv",
        "--sessions", d / "sessions.csv", cwd=tmp_path,
    )  # fmt: skip
    assert res.returncode == 1 and "fitted without standards" in res.stderr
    assert not (tmp_path / "mg.tif").exists()


def test_the_line_used_is_the_one_that_predicts_left_out_profiles_best(calibrated):
    loo = calibrated.loo_rmse
    assert set(loo) == {"filtered", "not_filtered"} and all(np.isfinite(list(loo.values())))
    best = min(loo, key=loo.get)
    assert calibrated.fit_used == best
    used = calibrated.calibration
    other = (
        calibrated.calibration_filtered
        if best == "not_filtered"
        else calibrated.calibration_not_filtered
    )
    assert used is not other
    doc = calibrated.to_json()
    assert doc["fit_used"] == best and doc["slope"] == used.slope
    assert doc["fit_choice"]["leave_one_profile_out_rmse"][best] == loo[best]


def test_fit_choice_can_be_forced(section_dir):
    forced = calibrate_section(section_dir, CalibrateConfig(fit_choice="not_filtered"))
    assert forced.fit_used == "not_filtered"
    assert forced.calibration.slope == forced.calibration_not_filtered.slope


def test_the_line_may_pass_through_the_olivine_standard(calibrated, section_dir):
    """San Carlos olivine (mg# 0.904) measured with the drift standards is a point of the line."""
    standards = pd.read_csv(section_dir / "standards.csv")
    ref = standards.loc[standards["standard"] == "san_carlos_olivine", "bse_reference"].median()
    anchor = calibrated.anchor
    assert anchor["standard"] == "san_carlos_olivine" and anchor["mg_num"] == 0.904
    assert anchor["bse"] == pytest.approx(ref)
    through = anchor["leave_one_profile_out_rmse"]
    # Used exactly when it predicts the left-out profiles better; then the line holds it.
    assert anchor["used"] == (min(through.values()) <= min(calibrated.loo_rmse.values()))
    if anchor["used"]:
        assert calibrated.calibration(np.array([ref]))[0] == pytest.approx(0.904, abs=1e-6)
    assert calibrated.to_json()["anchor"] == anchor
    for choice in ("never", "always"):
        forced = calibrate_section(section_dir, CalibrateConfig(anchor=choice))
        at_standard = forced.calibration(np.array([ref]))[0]
        if choice == "never":
            assert forced.anchor is None and abs(at_standard - 0.904) > 1e-6
        else:
            assert forced.anchor["used"] and at_standard == pytest.approx(0.904, abs=1e-6)


def test_the_point_spread_travels_from_calibrate_to_mgmap(calibrated, tmp_path):
    """calibrate estimates the outline blur (olmap's default look: 0.5 px); mgmap reads it."""
    assert calibrated.psf_sigma_px == pytest.approx(0.5, abs=0.25)
    path = tmp_path / "calibration.json"
    path.write_text(json.dumps(calibrated.to_json()))
    assert BseDomain.of(path).psf_sigma_px == calibrated.psf_sigma_px


def test_outliers_that_the_probe_saw_too_are_kept():
    """A steep zoning flank is sparse in BSE, but its mg# puts it on the line; a crack not."""
    from olmap.composition.calibrate import ProfileData, keep_points_on_the_line
    from olmap.composition.profiles import profile_outliers

    rng = np.random.default_rng(3)
    t = np.arange(60)
    mg = 0.84 + 0.06 / (1 + np.exp(-(t - 30) / 0.5))  # a sharp step of 0.06 mg# mid-profile
    line = LinearCalibration(-0.0025, 1.12)
    bse = (mg - line.intercept) / line.slope + rng.normal(0, 0.8, t.size)
    bse[10] -= 25.0  # a crack: dark BSE, the probe saw olivine of the profile's mg#
    found = profile_outliers(bse, n_neighbors=20, threshold=1.5)
    flagged = found.outlier.copy()
    assert flagged[10] and flagged[25:36].any()  # LOF flags the crack and the flank
    profile = ProfileData(
        "P1", "calibration", pd.DataFrame({"mg_num": mg}), t * 1.0, t * 0.0,
        np.zeros((1, 1)), np.zeros((1, 1)), 0, 0,
    )  # fmt: skip
    profile.samples = {
        "bse": bse,
        "bse_filtered": bse.copy(),
        "outlier": flagged,
        "off_mask": np.zeros(t.size, bool),
    }
    kept = keep_points_on_the_line([profile], line)
    assert kept == flagged.sum() - 1
    assert profile.samples["outlier"].tolist() == [i == 10 for i in t]
    # The crack is replaced from its neighbours; the flank keeps its measured BSE.
    assert abs(profile.samples["bse_filtered"][10] - (bse[9] + bse[11]) / 2) < 1e-9
    assert np.array_equal(profile.samples["bse_filtered"][25:36], bse[25:36])

import numpy as np
import pytest

from olmap.composition.drift import fit_session_drift
from olmap.synth.config import LookConfig, SynthConfig
from olmap.synth.epma import STANDARDS, standards_table
from olmap.synth.looks import random_look, random_look_config
from olmap.synth.model import build_model
from olmap.synth.phases import Phase
from olmap.synth.render import render_observed


def test_random_looks_are_reproducible_and_varied():
    looks = [random_look(s) for s in range(40)]
    assert random_look(7) == looks[7]
    contrasts = [lk.contrast for lk in looks]
    assert min(contrasts) < 0.7 and max(contrasts) > 1.3
    assert {lk.bit_depth for lk in looks} == {8, 16}
    glass = [lk.phase_shift["glass"] for lk in looks]
    assert min(glass) < -15 and max(glass) > 15
    base = SynthConfig(width=512, height=512)
    pixel = [random_look_config(base, s).pixel_size_um for s in range(40)]
    assert min(pixel) < 0.5 and max(pixel) > 1.5


def test_unknown_phase_in_a_look_is_refused():
    with pytest.raises(ValueError, match="unknown phase"):
        LookConfig(phase_shift={"olivinee": 3.0})


def test_random_look_windows_are_seamless():
    cfg = random_look_config(SynthConfig(width=512, height=512, seed=3, sessions=2), 11)
    model = build_model(cfg)
    whole = render_observed(model, 0, 0, 512, 512)
    assert whole.bse.dtype == np.dtype(cfg.look.dtype)
    part = render_observed(model, 256, 0, 256, 512)
    np.testing.assert_array_equal(part.bse, whole.bse[256:])


def _olivine_slope(look: LookConfig) -> float:
    cfg = SynthConfig(
        width=768,
        height=768,
        seed=5,
        sessions=1,
        bse_noise=0.0,
        bse_shot_noise=0.0,
        tile_offset_sd=0.0,
        tile_gain_sd=0.0,
        scratches_per_mm2=0.0,
        bse_gain_range=(1.0, 1.0),
        bse_offset_range=(0.0, 0.0),
        look=look,
    )
    obs = render_observed(build_model(cfg), 0, 0, 768, 768)
    inside = (obs.phase == Phase.OLIVINE) & np.isfinite(obs.mg)
    return float(np.polyfit(obs.mg[inside], obs.bse[inside].astype(float), 1)[0])


def test_contrast_and_bit_depth_scale_the_olivine_calibration():
    base = _olivine_slope(LookConfig())
    assert base < 0  # Fe-rich olivine is brighter
    assert _olivine_slope(LookConfig(contrast=0.6)) / base == pytest.approx(0.6, rel=0.05)
    sixteen = LookConfig(contrast=0.6, bit_depth=16, scale_16bit=100.0, offset_16bit=2000.0)
    assert _olivine_slope(sixteen) / base == pytest.approx(60.0, rel=0.05)


def test_standards_follow_the_look_and_the_session_drift():
    look = LookConfig(contrast=0.7, brightness=10.0, bit_depth=16, scale_16bit=150.0)
    cfg = SynthConfig(width=512, height=512, seed=2, sessions=2, look=look)
    model = build_model(cfg)
    table = standards_table(model)
    olivine = table[table["standard"] == "san_carlos_olivine"]["bse_reference"].iloc[0]
    assert olivine == pytest.approx(look.output_grey(STANDARDS["san_carlos_olivine"], "olivine"))
    drift = fit_session_drift(table)
    for s in model.sessions:
        # measured = gain * reference + offset on the 8-bit scale, times the 16-bit scale
        assert drift.gain[str(s.session)] == pytest.approx(s.bse_gain, abs=0.01)
        assert drift.offset[str(s.session)] == pytest.approx(150.0 * s.bse_offset, abs=200.0)

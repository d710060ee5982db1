import pytest

from olmap.ct.synth import SynthCtConfig, synth_ct


@pytest.fixture(scope="session")
def ct_series(tmp_path_factory):
    """A small synthetic dehydration series (3 steps of 24 x 72 x 72 voxels)."""
    out = tmp_path_factory.mktemp("ct") / "series"
    cfg = SynthCtConfig(seed=11, size=(24, 72, 72), steps=3, grain_spacing_vox=24.0)
    synth_ct(out, cfg)
    return out

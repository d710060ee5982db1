from pathlib import Path

import pytest

from olmap.errors import InputError, InputFileNotFoundError
from olmap.io.config import load_config
from olmap.synth.config import SynthConfig

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_shipped_synth_config_equals_the_code_defaults():
    assert load_config(SynthConfig, CONFIGS / "synth" / "basaltic-andesite.yaml") == SynthConfig()


def test_overrides_win_and_none_is_ignored():
    cfg = load_config(
        SynthConfig, CONFIGS / "synth" / "basaltic-andesite.yaml", seed=9, sessions=None
    )
    assert cfg.seed == 9 and cfg.sessions == 4


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("seed: [1\n", r"bad\.yaml: line 2: YAML syntax error"),
        ("sesions: 3\n", r"bad\.yaml: sesions: Extra inputs are not permitted"),
        ("sessions: many\n", r"bad\.yaml: sessions: Input should be a valid integer"),
        ("vesicle_fraction: 0.9\n", r"bad\.yaml: vesicle_fraction: Input should be less than 0.6"),
        ("- 1\n- 2\n", r"bad\.yaml: expected a mapping"),
    ],
)
def test_bad_config_files_give_one_clear_line(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(InputError, match=message):
        load_config(SynthConfig, path)


def test_missing_config_file(tmp_path):
    with pytest.raises(InputFileNotFoundError, match="config file not found"):
        load_config(SynthConfig, tmp_path / "nope.yaml")

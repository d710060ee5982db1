"""Shipped training configs validate and say what they claim."""

from __future__ import annotations

from pathlib import Path

import pytest

from olmap.errors import InputError
from olmap.io.config import load_config
from olmap.segment.config import TrainConfig

TRAIN = Path(__file__).resolve().parents[2] / "configs" / "train"


def test_paper_config_is_the_papers_setup() -> None:
    cfg = load_config(TrainConfig, TRAIN / "paper.yaml")
    assert cfg.architecture == "deeplabv3_resnet50" and cfg.optimizer == "sgd"
    assert cfg.dice_weight == 0 and cfg.crop is None and cfg.threshold == 0.1
    assert cfg.augment.rot90 and cfg.augment.flip_p == 0.5
    # Without --config, olmap train uses the same settings (DataLoader workers aside).
    assert TrainConfig(workers=cfg.workers) == cfg


def test_cpu_quick_config_is_small_and_time_bounded() -> None:
    cfg = load_config(TrainConfig, TRAIN / "cpu-quick.yaml")
    assert cfg.architecture == "deeplabv3_mobilenet_v3_large"
    assert cfg.crop == (256, 256) and cfg.max_minutes == 10 and cfg.bn_momentum == 0.1
    assert cfg.select_threshold and cfg.augment.gain_jitter > 0
    assert cfg.head == "init"  # the synthetic init's own class layers


def test_bad_values_name_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("crop: [16, 16]\n")
    with pytest.raises(InputError, match=r"bad\.yaml: .*too small"):
        load_config(TrainConfig, bad)
    bad.write_text("optimiser: adam\n")
    with pytest.raises(InputError, match=r"bad\.yaml: optimiser"):
        load_config(TrainConfig, bad)
    bad.write_text("aspp_pooling: 4\n")
    with pytest.raises(InputError, match=r"bad\.yaml: .*aspp_pooling 4"):
        load_config(TrainConfig, bad)


def test_ct_configs_pool_locally() -> None:
    """The CT configs use local image pooling (docs/ct.md); the 2D ones keep torchvision's."""
    assert load_config(TrainConfig, TRAIN / "ct-quick.yaml").aspp_pooling == 7
    assert load_config(TrainConfig, TRAIN / "ct-paper.yaml").aspp_pooling == 13
    assert load_config(TrainConfig, TRAIN / "cpu-quick.yaml").aspp_pooling == 0

"""Tiny training settings shared by the segmentation tests."""

from __future__ import annotations

from olmap.segment.config import AugmentConfig, TrainConfig


def tiny_config(**overrides) -> TrainConfig:
    """MobileNet DeepLabV3 on 64 px crops: a few seconds per epoch on one CPU core."""
    base = {
        "architecture": "deeplabv3_mobilenet_v3_large",
        "init": "none",
        "optimizer": "adamw",
        "lr": 1e-3,
        "batch_size": 4,
        "crop": (64, 64),
        "balanced_crops": 0.5,
        "steps_per_epoch": 10,
        "max_epochs": 3,
        "patience": 10,
        "dice_weight": 0.5,
        "device": "cpu",
        "augment": AugmentConfig(gain_jitter=0.08, offset_jitter=4.0),  # as cpu-quick.yaml
    }
    return TrainConfig(**{**base, **overrides})

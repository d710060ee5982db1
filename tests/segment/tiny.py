"""Tiny training settings shared by the segmentation tests."""

from __future__ import annotations

from olmap.segment.config import TrainConfig


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
    }
    return TrainConfig(**{**base, **overrides})

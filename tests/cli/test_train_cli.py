"""``olmap train`` and ``olmap evaluate`` as users call them (shared/CLI.md)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from olmap.io.raster import format_class_tag, write_raster
from olmap.segment.checkpoint import load_checkpoint

from ..conftest import run_olmap as olmap

TINY = {
    "architecture": "deeplabv3_mobilenet_v3_large",
    "optimizer": "adamw",
    "lr": 0.001,
    "batch_size": 4,
    "crop": [64, 64],
    "balanced_crops": 0.5,
    "steps_per_epoch": 4,
    "max_epochs": 2,
    "device": "cpu",
}


@pytest.fixture(scope="module")
def trained(olivine_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder of a user who ran ``olmap train`` once (random init, tiny config)."""
    work = tmp_path_factory.mktemp("train_cli")
    (work / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    res = olmap(
        "train", "--dataset", str(olivine_dataset), "--config", "tiny.yaml", "--out", "model.pt",
        "--init", "none", cwd=work,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "init:" in res.stderr and "random weights" in res.stderr
    assert "kept epoch" in res.stdout and "Threshold sweep" in res.stdout
    # issue 23: the domain check, the start before/after AdaBN, whether test-time flips pay
    out = " ".join(res.stdout.split())
    assert "domain check: validation vs training grey" in " ".join(res.stderr.split())
    assert "after BatchNorm re-estimation: training started from the" in out
    assert "test-time flips: validation IoU" in out
    return work


def test_train_writes_checkpoint_and_curves(trained: Path) -> None:
    _, meta = load_checkpoint(trained / "model.pt")
    assert meta.classes == [(0, "unclassified"), (1, "olivine")]
    assert meta.threshold == 0.1 and meta.init == "none"
    assert meta.train_config["crop"] == [64, 64]
    assert {"val", "test", "best_epoch"} <= set(meta.metrics)
    assert "olivine" in meta.metrics["val"]["overall"]["classes"]
    curves = pd.read_csv(trained / "model.curves.csv")
    assert list(curves.columns) == [
        "epoch", "steps", "train_loss", "val_loss", "val_iou_unclassified", "val_iou_olivine",
        "lr", "seconds",
    ]  # fmt: skip
    assert list(curves["epoch"]) == [1, 2]
    assert (trained / "model.curves.png").read_bytes()[:4] == b"\x89PNG"
    assert not (trained / "model.pt.resume").exists()


def test_train_refuses_to_overwrite_and_bad_configs(trained: Path, olivine_dataset: Path) -> None:
    res = olmap(
        "train",
        "--dataset",
        str(olivine_dataset),
        "--config",
        "tiny.yaml",
        "--out",
        "model.pt",
        cwd=trained,
    )
    assert res.returncode == 1 and "pass --overwrite" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    (trained / "bad.yaml").write_text("architecture: deeplabv3_vgg\n")
    res = olmap(
        "train",
        "--dataset",
        str(olivine_dataset),
        "--config",
        "bad.yaml",
        "--out",
        "other.pt",
        cwd=trained,
    )
    assert res.returncode == 1 and "bad.yaml: architecture" in res.stderr
    res = olmap("train", "--dataset", str(trained), "--out", "other.pt", cwd=trained)
    assert res.returncode == 1 and "image.npy missing" in res.stderr
    res = olmap(
        "train",
        "--dataset",
        str(olivine_dataset),
        "--config",
        "tiny.yaml",
        "--out",
        "other.pt",
        "--init",
        "coco",
        cwd=trained,
    )
    assert res.returncode == 1 and "no coco weights" in res.stderr
    assert "deeplabv3_mobilenet_v3_large-fc3c493d.pth" in res.stderr
    assert not (trained / "other.pt").exists()


def test_bad_checkpoints_are_refused(trained: Path, tmp_path: Path) -> None:
    from olmap.errors import InputError

    good = (trained / "model.pt").read_bytes()
    (tmp_path / "truncated.pt").write_bytes(good[: len(good) // 2])
    (tmp_path / "text.pt").write_text("not a checkpoint")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    payload = torch.load(trained / "model.pt", weights_only=True)
    payload["meta"]["architecture"] = "deeplabv3_resnet50"
    torch.save(payload, tmp_path / "mismatch.pt")
    payload["meta"]["architecture"] = "unet"
    torch.save(payload, tmp_path / "unknown.pt")
    payload = torch.load(trained / "model.pt", weights_only=True)
    payload["meta"]["input_std"] = "wide"
    torch.save(payload, tmp_path / "bad_meta.pt")
    payload = torch.load(trained / "model.pt", weights_only=True)
    name = next(k for k, v in payload["state_dict"].items() if v.is_floating_point())
    payload["state_dict"][name] = torch.full_like(payload["state_dict"][name], float("nan"))
    torch.save(payload, tmp_path / "nan.pt")  # once accepted: all nodata, exit 0
    torch.save({"format": "olmap-segmenter", "meta": Path("a")}, tmp_path / "hostile.pt")
    cases = {
        "truncated.pt": "not a readable model checkpoint",
        "text.pt": "not a readable model checkpoint",
        "other.pt": "not an olmap model checkpoint",
        "mismatch.pt": "weights do not match architecture deeplabv3_resnet50",
        "unknown.pt": "unknown architecture 'unet'",
        "missing.pt": "model checkpoint not found",
        "bad_meta.pt": r"damaged checkpoint metadata \(input_std = 'wide'\)",
        "nan.pt": "weight tensors hold NaN or infinite values",
        # never torch's advice to load with weights_only=False (that runs the file's code)
        "hostile.pt": "not a plain checkpoint: it holds Python objects",
    }
    for name, message in cases.items():
        with pytest.raises((InputError, FileNotFoundError), match=message):
            load_checkpoint(tmp_path / name)


def test_evaluate_as_documented(trained: Path, section_dir: Path, olivine_mask: Path) -> None:
    """A model's probabilities for a region, scored against the EDS labels per session."""
    from olmap.io.raster import read_raster
    from olmap.segment.infer import predict_proba

    model, _ = load_checkpoint(trained / "model.pt")
    bse = read_raster(section_dir / "bse.tif")[0]
    prob = predict_proba(model, bse, window=512)
    tag = {"classes": format_class_tag({0: "unclassified", 1: "olivine"}), "threshold": "0.1"}
    write_raster(trained / "prob.tif", prob, pixel_size_um=1.0, tags=tag, band_names=["olivine"])
    write_raster(
        trained / "pred_mask.tif", (prob[0] >= 0.1).astype(np.uint8), pixel_size_um=1.0, tags=tag
    )
    res = olmap(
        "evaluate", "--pred", "pred_mask.tif", "--ref", str(olivine_mask), "--sessions",
        str(section_dir / "sessions.csv"), "--json", "metrics.json", cwd=trained,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    report = json.loads((trained / "metrics.json").read_text())
    assert set(report["sessions"]) == {"1", "2", "3", "4"}
    assert "Per session" in res.stdout
    res = olmap(
        "evaluate", "--pred", "prob.tif", "--ref", str(section_dir / "truth" / "phases.tif"),
        "--json", "prob.json", "--plot", "sweep.png", cwd=trained,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    report = json.loads((trained / "prob.json").read_text())
    assert "clinopyroxene" in report["reference_breakdown"]
    assert 0 <= report["overall"]["classes"]["olivine"]["auc"] <= 1
    assert (trained / "sweep.png").exists() and "Best threshold" in res.stdout

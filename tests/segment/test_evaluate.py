"""Scoring prediction rasters against reference label maps, in blocks and per session."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn import metrics as skm

from olmap.errors import InputError, NotCoregisteredError
from olmap.io.raster import format_class_tag, read_raster, write_raster
from olmap.segment.evaluate import evaluate_rasters

PHASES = {0: "epoxy", 3: "olivine", 4: "clinopyroxene", 255: "ignore"}


@pytest.fixture
def rasters(tmp_path: Path) -> dict[str, Path]:
    """A 300 x 200 reference of phases and an olivine prediction, label map and probability."""
    rng = np.random.default_rng(1)
    ref = rng.choice([0, 3, 4], size=(300, 200), p=[0.6, 0.25, 0.15]).astype(np.uint8)
    ref[:5] = 255
    prob = np.clip(np.where(ref == 3, 0.7, 0.2) + 0.2 * rng.standard_normal(ref.shape), 0, 1)
    prob = np.round(prob, 3).astype(np.float32)
    tag = {"classes": format_class_tag({0: "unclassified", 1: "olivine", 255: "ignore"})}
    out = {
        "ref": write_raster(
            tmp_path / "ref.tif", ref, pixel_size_um=1.0, tags={"classes": format_class_tag(PHASES)}
        ),
        "mask": write_raster(
            tmp_path / "mask.tif", (prob >= 0.3).astype(np.uint8), pixel_size_um=1.0, tags=tag
        ),
        "prob": write_raster(
            tmp_path / "prob.tif", prob, pixel_size_um=1.0, tags=tag, band_names=["olivine"]
        ),
    }
    (tmp_path / "sessions.csv").write_text(
        "session,x0_um,y0_um,x1_um,y1_um,split\nA,0,0,100,300,train\nB,100,0,200,300,test\n"
    )
    return out


def test_label_map_scores_in_blocks_and_sessions(rasters, tmp_path: Path) -> None:
    report = evaluate_rasters(
        str(rasters["mask"]), str(rasters["ref"]), sessions_csv=str(tmp_path / "sessions.csv"),
        window=64,
    )  # fmt: skip
    ref = read_raster(rasters["ref"])[0]
    pred = read_raster(rasters["mask"])[0].astype(bool)
    keep = ref != 255
    truth = ref == 3
    iou = skm.jaccard_score(truth[keep], pred[keep])
    assert report["overall"]["classes"]["olivine"]["iou"] == pytest.approx(iou)
    assert report["reference_as_background"] == ["epoxy", "clinopyroxene"]
    cpx = ref == 4
    assert report["reference_breakdown"]["clinopyroxene"]["olivine"] == pytest.approx(
        pred[cpx].mean()
    )
    right = np.zeros_like(keep)
    right[:, 100:] = True  # session B: x 100-200 µm = columns 100-199
    iou_b = skm.jaccard_score(truth[keep & right], pred[keep & right])
    assert report["sessions"]["B"]["classes"]["olivine"]["iou"] == pytest.approx(iou_b)
    assert "threshold_sweep" not in report["overall"]  # labels only: no sweep
    assert "ignore" not in report["reference_breakdown"] and report["unscored_pixels"] == 0


def test_splits_pool_their_sessions(rasters, tmp_path: Path) -> None:
    sessions = tmp_path / "three.csv"
    sessions.write_text(
        "session,x0_um,y0_um,x1_um,y1_um,split\n"
        "A,0,0,60,300,train\nB,60,0,150,300,test\nC,150,0,200,300,test\n"
    )
    report = evaluate_rasters(
        str(rasters["mask"]), str(rasters["ref"]), sessions_csv=str(sessions), window=64
    )
    ref = read_raster(rasters["ref"])[0]
    pred = read_raster(rasters["mask"])[0].astype(bool)
    test = np.zeros(ref.shape, bool)
    test[:, 60:] = True
    keep = (ref != 255) & test
    pooled = skm.jaccard_score(ref[keep] == 3, pred[keep])
    assert report["splits"]["test"]["classes"]["olivine"]["iou"] == pytest.approx(pooled)
    assert report["splits"]["test"]["pixels"] == int(keep.sum())
    # pooled, not the mean of B and C
    b, c = (report["sessions"][k]["classes"]["olivine"]["iou"] for k in "BC")
    assert pooled != pytest.approx((b + c) / 2, abs=1e-6)
    cpx = (ref == 4) & test
    assert report["reference_breakdown_splits"]["test"]["clinopyroxene"][
        "olivine"
    ] == pytest.approx(pred[cpx].mean())
    assert set(report["splits"]) == {"train", "test"}


def test_probabilities_give_auc_and_sweep(rasters) -> None:
    report = evaluate_rasters(str(rasters["prob"]), str(rasters["ref"]), threshold=0.3, window=128)
    labels = evaluate_rasters(str(rasters["mask"]), str(rasters["ref"]))
    assert report["overall"]["classes"]["olivine"]["iou"] == pytest.approx(
        labels["overall"]["classes"]["olivine"]["iou"]
    )
    ref = read_raster(rasters["ref"])[0]
    prob = read_raster(rasters["prob"])[0]
    keep = ref != 255
    auc = skm.roc_auc_score(ref[keep] == 3, prob[keep])
    assert report["overall"]["classes"]["olivine"]["auc"] == pytest.approx(auc, abs=2e-3)
    sweep = report["overall"]["threshold_sweep"]["olivine"]
    assert [r["threshold"] for r in sweep][:4] == [0.01, 0.02, 0.05, 0.1]
    assert 0.3 <= report["best_threshold"]["olivine"] <= 0.6


def test_bad_inputs(rasters, tmp_path: Path) -> None:
    other = write_raster(
        tmp_path / "small.tif",
        np.zeros((10, 10), np.uint8),
        pixel_size_um=1.0,
        tags={"classes": "0=unclassified,1=olivine"},
    )
    with pytest.raises(NotCoregisteredError):
        evaluate_rasters(str(other), str(rasters["ref"]))
    unrelated = write_raster(
        tmp_path / "u.tif",
        np.zeros((300, 200), np.uint8),
        pixel_size_um=1.0,
        tags={"classes": "0=gypsum,1=pore"},
    )
    with pytest.raises(InputError, match="no class in common"):
        evaluate_rasters(str(rasters["ref"]), str(unrelated))
    untagged = write_raster(tmp_path / "n.tif", np.zeros((300, 200), np.uint8), pixel_size_um=1.0)
    with pytest.raises(InputError, match="no class list"):
        evaluate_rasters(str(untagged), str(rasters["ref"]))

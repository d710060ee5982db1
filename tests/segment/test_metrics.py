"""Scores from accumulated counts equal scikit-learn's on the same pixels."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from olmap.segment.metrics import ScoreAccumulator, best_threshold, binary_scores


@pytest.fixture
def three_class():
    rng = np.random.default_rng(3)
    ref = rng.integers(0, 3, size=(2, 40, 50))
    noise = rng.random(ref.shape) < 0.3
    pred = np.where(noise, rng.integers(0, 3, size=ref.shape), ref)
    ref[0, :3] = 255  # ignored pixels count for nothing
    return ref, pred


def test_counts_match_sklearn_in_windows(three_class) -> None:
    ref, pred = three_class
    acc = ScoreAccumulator(3)
    for r, p in zip(ref, pred, strict=True):  # two windows
        acc.update(r, p)
    keep = ref.ravel() != 255
    r, p = ref.ravel()[keep], pred.ravel()[keep]
    assert np.array_equal(acc.confusion, skm.confusion_matrix(r, p, labels=[0, 1, 2]))
    summary = acc.summary(["a", "b", "c"])
    assert summary["overall_accuracy"] == pytest.approx(skm.accuracy_score(r, p))
    assert summary["kappa"] == pytest.approx(skm.cohen_kappa_score(r, p))
    for cls, name in enumerate("abc"):
        s = summary["classes"][name]
        t, q = r == cls, p == cls
        assert s["iou"] == pytest.approx(skm.jaccard_score(t, q))
        assert s["dice"] == pytest.approx(skm.f1_score(t, q))
        assert s["precision"] == pytest.approx(skm.precision_score(t, q))
        assert s["recall"] == pytest.approx(skm.recall_score(t, q))
        assert s["specificity"] == pytest.approx(skm.recall_score(~t, ~q))
        assert s["kappa"] == pytest.approx(skm.cohen_kappa_score(t, q))
        vs = 1 - abs(int(q.sum()) - int(t.sum())) / (int(q.sum()) + int(t.sum()))
        assert s["volumetric_similarity"] == pytest.approx(vs)


def test_auc_and_sweep_from_histograms_match_sklearn() -> None:
    rng = np.random.default_rng(0)
    truth = rng.random((64, 64)) < 0.2
    prob = np.clip(np.where(truth, 0.6, 0.3) + 0.25 * rng.standard_normal(truth.shape), 0, 1)
    prob = np.round(prob, 3)  # exact at the histogram's 1/1000 resolution
    acc = ScoreAccumulator(2, prob_classes=[1])
    acc.update(truth.astype(int), (prob >= 0.5).astype(int), prob[None])
    assert acc.auc(0) == pytest.approx(skm.roc_auc_score(truth.ravel(), prob.ravel()), abs=2e-3)
    for row in acc.sweep(0, thresholds=(0.1, 0.35, 0.5, 0.9)):
        q = prob >= row["threshold"]
        assert row["iou"] == pytest.approx(skm.jaccard_score(truth.ravel(), q.ravel()))
    sweep = acc.sweep(0)
    best = best_threshold(sweep)
    assert max(r["iou"] for r in sweep) == next(r["iou"] for r in sweep if r["threshold"] == best)


def test_binary_scores_of_empty_classes_are_nan_not_errors() -> None:
    s = binary_scores(0, 0, 0, 100)
    assert np.isnan(s["iou"]) and np.isnan(s["precision"]) and s["specificity"] == 1.0

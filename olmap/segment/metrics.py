"""Segmentation scores accumulated window by window (bounded memory, any image size).

:class:`ScoreAccumulator` keeps a confusion matrix and, when probabilities are given, one
histogram of each class's probability among pixels of that class and among the others (1000
bins). Everything the ``evaluate`` command reports follows from these counts: per-class IoU,
Dice, precision, recall, specificity, volumetric similarity, Cohen's kappa, the ROC curve and
its AUC, and the IoU at any threshold that is a multiple of 1/1000 (exactly, not approximated).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from sklearn.metrics import auc

from olmap.segment.data import IGNORE_INDEX

#: Thresholds of the sweep (the paper's dlth = 0.1 among them, seed 002 sect. 4.1).
SWEEP_THRESHOLDS = (0.01, 0.02, 0.05, *np.round(np.arange(0.1, 0.951, 0.05), 2).tolist())
BINS = 1000


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den > 0 else float("nan")


def binary_scores(tp: int, fp: int, fn: int, tn: int) -> dict[str, float]:
    """Scores of one class against the rest from its four pixel counts.

    Volumetric similarity is ``1 - |FN - FP| / (2 TP + FP + FN)`` (Taha & Hanbury 2015):
    1 when the predicted area equals the reference area, whatever the overlap.
    """
    n = tp + fp + fn + tn
    po = _ratio(tp + tn, n)
    pe = _ratio((tp + fp) * (tp + fn) + (fn + tn) * (fp + tn), float(n) * n)
    return {
        "iou": _ratio(tp, tp + fp + fn),
        "dice": _ratio(2 * tp, 2 * tp + fp + fn),
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "specificity": _ratio(tn, tn + fp),
        "volumetric_similarity": 1 - _ratio(abs(fn - fp), 2 * tp + fp + fn),
        "kappa": _ratio(po - pe, 1 - pe),
        "false_positive_rate": _ratio(fp, fp + tn),
        "reference_px": tp + fn,
        "predicted_px": tp + fp,
    }


def cohen_kappa(confusion: np.ndarray) -> float:
    """Cohen's kappa of a multi-class confusion matrix (rows reference, columns prediction)."""
    n = confusion.sum()
    if n == 0:
        return float("nan")
    po = np.trace(confusion) / n
    pe = float((confusion.sum(0) * confusion.sum(1)).sum()) / float(n) ** 2
    return _ratio(po - pe, 1 - pe)


@dataclass
class ScoreAccumulator:
    """Pixel counts of a segmentation against a reference, updated window by window.

    Parameters
    ----------
    n_classes : int
        Number of classes (indices ``0 .. n_classes - 1``; ``IGNORE_INDEX`` skipped).
    prob_classes : sequence of int
        Classes whose probabilities :meth:`update` receives (binary model: ``[1]``).
    """

    n_classes: int
    prob_classes: Sequence[int] = ()
    confusion: np.ndarray = field(init=False)
    positive: np.ndarray = field(init=False)
    negative: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.confusion = np.zeros((self.n_classes, self.n_classes), dtype=np.int64)
        self.positive = np.zeros((len(self.prob_classes), BINS), dtype=np.int64)
        self.negative = np.zeros((len(self.prob_classes), BINS), dtype=np.int64)

    def update(
        self, reference: np.ndarray, predicted: np.ndarray, prob: np.ndarray | None = None
    ) -> None:
        """Add one window.

        Parameters
        ----------
        reference, predicted : int arrays (H, W)
            Class indices; pixels whose reference (or prediction) is not a class are skipped.
        prob : float array (P, H, W), optional
            Probabilities of ``prob_classes``, in [0, 1].
        """
        ref = np.asarray(reference).ravel().astype(np.int64)
        pred = np.asarray(predicted).ravel().astype(np.int64)
        valid = (ref < self.n_classes) & (ref != IGNORE_INDEX)
        valid &= (pred >= 0) & (pred < self.n_classes)
        k = self.n_classes
        self.confusion += np.bincount(ref[valid] * k + pred[valid], minlength=k * k).reshape(k, k)
        if prob is None or not len(self.prob_classes):
            return
        prob = np.asarray(prob).reshape(len(self.prob_classes), -1)
        for i, cls in enumerate(self.prob_classes):
            p = prob[i][valid]
            b = np.clip((np.nan_to_num(p) * BINS).astype(np.int64), 0, BINS - 1)
            is_cls = ref[valid] == cls
            self.positive[i] += np.bincount(b[is_cls], minlength=BINS)
            self.negative[i] += np.bincount(b[~is_cls], minlength=BINS)

    def merge(self, other: ScoreAccumulator) -> None:
        """Add another accumulator's counts (e.g. from another worker)."""
        self.confusion += other.confusion
        self.positive += other.positive
        self.negative += other.negative

    @property
    def n_pixels(self) -> int:
        return int(self.confusion.sum())

    def class_scores(self, cls: int) -> dict[str, float]:
        """:func:`binary_scores` of class index ``cls`` against the rest."""
        c = self.confusion
        tp = int(c[cls, cls])
        fp, fn = int(c[:, cls].sum()) - tp, int(c[cls].sum()) - tp
        return binary_scores(tp, fp, fn, int(c.sum()) - tp - fp - fn)

    def roc(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """False- and true-positive rates of ``prob_classes[i]`` at every bin edge."""
        tp = np.cumsum(self.positive[i][::-1])[::-1]  # pixels with p >= edge
        fp = np.cumsum(self.negative[i][::-1])[::-1]
        pos, neg = max(int(self.positive[i].sum()), 1), max(int(self.negative[i].sum()), 1)
        fpr = np.concatenate([fp / neg, [0.0]])
        tpr = np.concatenate([tp / pos, [0.0]])
        return fpr, tpr

    def auc(self, i: int) -> float:
        """Area under the ROC curve of ``prob_classes[i]`` (NaN if a side has no pixel)."""
        if self.positive[i].sum() == 0 or self.negative[i].sum() == 0:
            return float("nan")
        fpr, tpr = self.roc(i)
        return float(auc(fpr, tpr))

    def sweep(self, i: int, thresholds: Sequence[float] = SWEEP_THRESHOLDS) -> list[dict]:
        """Scores of ``prob_classes[i]`` when predicted where its probability >= threshold."""
        rows = []
        total = int(self.positive[i].sum() + self.negative[i].sum())
        for t in thresholds:
            edge = round(t * BINS)
            tp = int(self.positive[i][edge:].sum())
            fp = int(self.negative[i][edge:].sum())
            fn = int(self.positive[i].sum()) - tp
            rows.append({"threshold": float(t), **binary_scores(tp, fp, fn, total - tp - fp - fn)})
        return rows

    def summary(self, class_names: Sequence[str]) -> dict:
        """All scores as a JSON-ready dict: overall, per class, and threshold sweeps."""
        n = self.n_pixels
        per_class = {}
        for cls, name in enumerate(class_names):
            scores = self.class_scores(cls)
            if cls in self.prob_classes:
                scores["auc"] = self.auc(list(self.prob_classes).index(cls))
            per_class[name] = scores
        foreground = [per_class[name]["iou"] for name in class_names[1:]]
        out = {
            "pixels": n,
            "overall_accuracy": _ratio(np.trace(self.confusion), n),
            "kappa": cohen_kappa(self.confusion),
            "mean_iou": float(np.nanmean(foreground)) if foreground else float("nan"),
            "classes": per_class,
            "confusion": self.confusion.tolist(),
        }
        if len(self.prob_classes) and self.positive.sum() + self.negative.sum() > 0:
            out["threshold_sweep"] = {
                class_names[cls]: self.sweep(i) for i, cls in enumerate(self.prob_classes)
            }
        return out


def best_threshold(sweep: Sequence[dict], key: str = "iou") -> float:
    """Threshold of a sweep with the highest ``key`` (the lowest such threshold on ties)."""
    values = [(-np.nan_to_num(row[key], nan=-1.0), row["threshold"]) for row in sweep]
    return float(min(values)[1])

"""Segmentation scores per class from a confusion matrix (seed 000, Appendix C).

The confusion matrix is accumulated block by block (:func:`confusion`), so whole volumes are
scored in bounded memory; every score follows from it.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import pandas as pd


def confusion(truth: np.ndarray, pred: np.ndarray, codes: Sequence[int]) -> np.ndarray:
    """Counts ``m[i, j]`` of voxels of true class ``codes[i]`` predicted ``codes[j]``.

    Voxels whose truth is not in ``codes`` (0: unlabelled, outside) are not counted; a
    prediction outside ``codes`` counts in the extra last column.

    Examples
    --------
    >>> confusion(np.array([1, 1, 2, 0]), np.array([1, 2, 2, 1]), [1, 2]).tolist()
    [[1, 1, 0], [0, 1, 0]]
    """
    codes = list(codes)
    lut_t = np.full(256 if truth.dtype.itemsize == 1 else int(truth.max(initial=0)) + 1, -1)
    lut_p = np.full(256 if pred.dtype.itemsize == 1 else int(pred.max(initial=0)) + 1, len(codes))
    for i, c in enumerate(codes):
        if c < len(lut_t):
            lut_t[c] = i
        if c < len(lut_p):
            lut_p[c] = i
    t, p = lut_t[np.ravel(truth)], lut_p[np.ravel(pred)]
    keep = t >= 0
    n = len(codes)
    flat = np.bincount(t[keep] * (n + 1) + p[keep], minlength=n * (n + 1))
    return flat.reshape(n, n + 1)


def scores_from_confusion(m: np.ndarray, names: Sequence[str]) -> pd.DataFrame:
    """Dice, IoU, precision, recall, specificity, volumetric similarity and Cohen's kappa
    (one class against the rest) per class, plus a ``mean`` row.

    Examples
    --------
    >>> m = np.array([[8, 2, 0], [1, 9, 0]])
    >>> s = scores_from_confusion(m, ["a", "b"])
    >>> s.loc["a", "dice"].round(3), s.loc["b", "recall"].round(3)
    (np.float64(0.842), np.float64(0.9))
    """
    m = np.asarray(m, np.float64)
    total = m.sum()
    rows = {}
    for i, name in enumerate(names):
        tp = m[i, i]
        fn = m[i].sum() - tp
        fp = m[:, i].sum() - tp
        tn = total - tp - fn - fp
        t_pos, p_pos = tp + fn, tp + fp
        po = (tp + tn) / total if total else np.nan
        pe = (t_pos * p_pos + (total - t_pos) * (total - p_pos)) / total**2 if total else np.nan
        rows[name] = {
            "dice": 2 * tp / (t_pos + p_pos) if t_pos + p_pos else np.nan,
            "iou": tp / (tp + fn + fp) if tp + fn + fp else np.nan,
            "precision": tp / p_pos if p_pos else np.nan,
            "recall": tp / t_pos if t_pos else np.nan,
            "specificity": tn / (tn + fp) if tn + fp else np.nan,
            "volumetric_similarity": 1 - abs(p_pos - t_pos) / (t_pos + p_pos)
            if t_pos + p_pos
            else np.nan,
            "kappa": (po - pe) / (1 - pe) if pe < 1 else np.nan,
            "voxels_true": int(t_pos),
            "voxels_predicted": int(p_pos),
        }
    table = pd.DataFrame.from_dict(rows, orient="index")
    present = table[table.voxels_true > 0]
    mean = present.mean(numeric_only=True).to_dict()  # over the classes present in the truth
    mean["voxels_true"] = int(present.voxels_true.sum())
    mean["voxels_predicted"] = int(present.voxels_predicted.sum())
    return pd.concat([table, pd.DataFrame(mean, index=["mean"])])


def fit_thresholds(grey: np.ndarray, labels: np.ndarray, codes: Sequence[int]):
    """The global-threshold baseline: classes ordered by their median grey, thresholds midway
    between neighbouring medians, fitted on labelled voxels (``labels`` in ``codes``).

    Returns ``(ordered codes, thresholds)``; :func:`apply_thresholds` uses them.

    Examples
    --------
    >>> fit_thresholds(np.array([1.0, 2, 9, 10]), np.array([2, 2, 1, 1]), [1, 2])
    ([2, 1], [5.5])
    """
    medians = {c: float(np.median(grey[labels == c])) for c in codes if np.any(labels == c)}
    order = sorted(medians, key=medians.get)
    cuts = [(medians[a] + medians[b]) / 2 for a, b in itertools.pairwise(order)]
    return order, cuts


def apply_thresholds(grey: np.ndarray, order: Sequence[int], cuts: Sequence[float]) -> np.ndarray:
    """Class codes of ``grey`` from :func:`fit_thresholds`' ordered codes and thresholds."""
    return np.asarray(order, np.uint8)[np.searchsorted(np.asarray(cuts), grey, side="right")]

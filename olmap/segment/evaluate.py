"""``olmap evaluate``: score a segmentation against reference masks, overall and per session.

Two sources of predictions:

* :func:`evaluate_rasters` — a prediction raster against a reference label map, streamed in
  blocks (bounded memory). The prediction is either a label map (integer, with a ``classes``
  tag) or probabilities (float bands in [0, 1], or integers with a ``probability_scale`` tag
  as ``olmap predict`` writes them: one band = probability of class 1 of a binary model, else
  one band per class, named by band descriptions or the ``classes`` tag). Only
  probabilities give AUC and a threshold sweep.
* :func:`evaluate_tiles` — a model on tiles of a dataset folder (used by ``olmap train``).

Classes are matched by name. Reference classes the prediction does not know (e.g. the
phases of a synthetic section's ground truth against an olivine model) count as its
background, and :func:`evaluate_rasters` reports how each reference class was predicted
(``reference_breakdown``: e.g. the fraction of clinopyroxene predicted as olivine).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from rasterio.windows import Window

from olmap.core.windows import block_windows, region_window
from olmap.errors import InputError
from olmap.io.raster import (
    CLASSES_TAG,
    PROBABILITY_SCALE_TAG,
    check_coregistered,
    class_names,
    raster_info,
    read_raster,
    read_valid,
)
from olmap.io.sessions import read_sessions
from olmap.segment.data import IGNORE_INDEX, TileDataset, class_lut
from olmap.segment.infer import classify, predict_proba
from olmap.segment.metrics import ScoreAccumulator, best_threshold
from olmap.segment.model import Segmenter


def _prob_classes(n_classes: int) -> list[int]:
    return [1] if n_classes == 2 else list(range(n_classes))


@dataclass
class Scores:
    """Accumulators for the whole image and for each session."""

    names: list[str]
    overall: ScoreAccumulator
    sessions: dict[str, ScoreAccumulator]
    #: the sessions of each split (train, val, test, none) pooled
    splits: dict[str, ScoreAccumulator] = field(default_factory=dict)

    @classmethod
    def new(
        cls,
        names: Sequence[str],
        sessions: Sequence[str],
        with_prob: bool,
        splits: Sequence[str] = (),
    ) -> Scores:
        pc = _prob_classes(len(names)) if with_prob else []
        return cls(
            list(names),
            ScoreAccumulator(len(names), pc),
            {s: ScoreAccumulator(len(names), pc) for s in sessions},
            {s: ScoreAccumulator(len(names), pc) for s in splits},
        )

    def report(self, threshold: float | None) -> dict:
        """JSON-ready: overall scores (with sweep and best threshold), per session and split."""
        overall = self.overall.summary(self.names)
        out: dict = {"classes": self.names, "threshold": threshold, "overall": overall}
        sweeps = overall.get("threshold_sweep", {})
        if sweeps:
            out["best_threshold"] = {name: best_threshold(rows) for name, rows in sweeps.items()}
        for key, regions in (("sessions", self.sessions), ("splits", self.splits)):
            out[key] = {}
            for name, acc in regions.items():
                if acc.n_pixels:
                    summary = acc.summary(self.names)
                    summary.pop("threshold_sweep", None)  # one sweep: the whole image's
                    out[key][name] = summary
        return out


def evaluate_tiles(
    model: Segmenter,
    ds: TileDataset,
    tile_ids: Sequence[int],
    threshold: float,
    *,
    flips: bool = False,
) -> dict:
    """Scores of ``model`` on dataset tiles against their labels, overall and per session.

    Each tile is predicted whole (one window), as in validation during training; ``flips``
    averages the four flips of each tile (test-time augmentation, as ``olmap predict
    --flips``).
    """
    codes, names = zip(*ds.model_classes, strict=True)
    lut = class_lut(codes)
    session_of = ds.manifest.set_index("tile_id")["session"].astype(str)
    scores = Scores.new(names, sorted(set(session_of[list(tile_ids)])), with_prob=True)
    model.eval()
    for t in tile_ids:
        image = np.asarray(ds.image[t])
        prob = predict_proba(model, image, window=max(image.shape), flips=flips)
        pred = classify(prob, threshold)
        ref = lut[np.asarray(ds.labels[t])]
        scores.overall.update(ref, pred, prob)
        scores.sessions[session_of[t]].update(ref, pred, prob)
    return scores.report(threshold if len(names) == 2 else None)


@dataclass(frozen=True)
class PredictionSource:
    """How to read classes (and probabilities) from a prediction raster."""

    names: list[str]
    probability: bool
    codes: dict[int, int]  # label code -> class index (label maps only)
    scale: float = 1.0  # probability per stored value (1/255 for olmap predict's uint8)


def _prediction_source(path, info) -> PredictionSource:
    scale = 1.0
    if PROBABILITY_SCALE_TAG in info.tags:
        try:
            scale = float(info.tags[PROBABILITY_SCALE_TAG])
        except ValueError as exc:
            raise InputError(f"{path}: unreadable {PROBABILITY_SCALE_TAG} tag") from exc
    if np.issubdtype(np.dtype(info.dtype), np.floating) or PROBABILITY_SCALE_TAG in info.tags:
        if CLASSES_TAG in info.tags:
            named = class_names(info)
            names = [n for c, n in sorted(named.items()) if c != IGNORE_INDEX]
        elif info.count > 1 and all(info.band_names):
            names = list(info.band_names)
        else:
            names = ["background", info.band_names[0] or "class_1"]
        expected = 1 if len(names) == 2 else len(names)
        if info.count != expected:
            raise InputError(
                f"{path}: {info.count} probability bands for {len(names)} classes "
                f"(expected {expected})"
            )
        return PredictionSource(names, True, {}, scale)
    named = class_names(info)
    classes = sorted((c, n) for c, n in named.items() if c != IGNORE_INDEX)
    return PredictionSource(
        [n for _, n in classes], False, {c: i for i, (c, _) in enumerate(classes)}
    )


def evaluate_rasters(
    pred: str,
    ref: str,
    *,
    sessions_csv: str | None = None,
    threshold: float | None = None,
    window: int = 2048,
    progress: Callable[[int], None] | None = None,
) -> dict:
    """Scores of a prediction raster against a reference label map, in blocks.

    Parameters
    ----------
    pred : path
        Label map (integer, ``classes`` tag) or probabilities (float, see module docstring).
    ref : path
        Reference label map with a ``classes`` tag (255 / ``ignore`` pixels are skipped).
    sessions_csv : path, optional
        Sessions; scores are also given per session rectangle.
    threshold : float, optional
        Probability threshold of a binary model (default: the raster's ``threshold`` tag, else
        the paper's 0.1); multi-class probabilities use the most probable class.
    window : int
        Block side (px); memory is bounded by it.
    progress : callable, optional
        Called with the number of pixels done after each block.

    Returns
    -------
    dict
        ``classes``, ``threshold``, ``overall`` (scores, confusion, sweep when probabilities),
        ``best_threshold``, ``sessions``, ``splits`` (the sessions of each split pooled; a
        pixel in two overlapping sessions of one split counts twice) and
        ``reference_breakdown``.
    """
    info = check_coregistered(pred, ref)
    pinfo, rinfo = raster_info(pred), raster_info(ref)
    source = _prediction_source(pred, pinfo)
    ref_names = class_names(rinfo)
    names = source.names
    index = {n: i for i, n in enumerate(names)}
    ref_lut = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    as_background = []
    for code, name in ref_names.items():
        if code == IGNORE_INDEX or name == "ignore":
            continue
        if name in index:
            ref_lut[code] = index[name]
        else:
            ref_lut[code] = 0
            as_background.append(name)
    if len(as_background) == len([c for c in ref_names if c != IGNORE_INDEX]):
        raise InputError(
            f"{ref}: no class in common with {pred} (reference: "
            f"{', '.join(ref_names.values())}; prediction: {', '.join(names)})"
        )
    if threshold is None:
        threshold = float(pinfo.tags.get("threshold", 0.1))
    regions: dict[str, Window] = {}
    split_of: dict[str, str] = {}
    if sessions_csv is not None:
        for row in read_sessions(sessions_csv).itertuples():
            w = region_window(
                row.x0_um, row.y0_um, row.x1_um, row.y1_um, info.transform, info.shape
            )
            if w is not None:
                regions[str(row.session)] = w
                split_of[str(row.session)] = str(row.split)
    scores = Scores.new(
        names, list(regions), with_prob=source.probability, splits=sorted(set(split_of.values()))
    )
    pred_lut = class_lut(list(source.codes))  # codes in class order; others -> no class
    breakdown = np.zeros((256, len(names)), dtype=np.int64)
    split_breakdown = {s: np.zeros_like(breakdown) for s in scores.splits}
    unscored = 0  # labelled reference pixels whose prediction is no class (e.g. 255)
    for win in block_windows(info.height, info.width, window):
        ref_codes = read_raster(ref, window=win, bands=1)
        ref_idx = ref_lut[ref_codes]
        if source.probability:
            prob = read_raster(pred, window=win).astype(np.float32) * np.float32(source.scale)
            pred_idx = classify(np.nan_to_num(prob), threshold)
            # masked (nodata) probabilities are not predictions: unscored, like 255 in a mask
            missing = ~read_valid(pred, window=win) & (ref_idx != IGNORE_INDEX)
            unscored += int(missing.sum())
            ref_idx = np.where(missing, IGNORE_INDEX, ref_idx).astype(ref_idx.dtype)
        else:
            prob = None
            pred_idx = pred_lut[read_raster(pred, window=win, bands=1)]
        scores.overall.update(ref_idx, pred_idx, prob)
        scored = ref_idx != IGNORE_INDEX
        unscored += int((scored & (pred_idx >= len(names))).sum())
        breakdown += _breakdown_counts(ref_codes, ref_idx, pred_idx, len(names))
        for session, region in regions.items():
            try:
                inter = win.intersection(region)
            except Exception:  # rasterio raises WindowError when they do not overlap
                continue
            r = slice(
                int(inter.row_off - win.row_off), int(inter.row_off - win.row_off + inter.height)
            )
            c = slice(
                int(inter.col_off - win.col_off), int(inter.col_off - win.col_off + inter.width)
            )
            sub = None if prob is None else prob[:, r, c]
            scores.sessions[session].update(ref_idx[r, c], pred_idx[r, c], sub)
            scores.splits[split_of[session]].update(ref_idx[r, c], pred_idx[r, c], sub)
            split_breakdown[split_of[session]] += _breakdown_counts(
                ref_codes[r, c], ref_idx[r, c], pred_idx[r, c], len(names)
            )
        if progress is not None:
            progress(int(win.width * win.height))
    out = scores.report(threshold if source.probability and len(names) == 2 else None)
    out["prediction"] = "probabilities" if source.probability else "labels"
    out["unscored_pixels"] = unscored
    out["reference_as_background"] = as_background
    out["reference_breakdown"] = _breakdown_fractions(breakdown, ref_names, names)
    out["reference_breakdown_splits"] = {
        split: _breakdown_fractions(counts, ref_names, names)
        for split, counts in split_breakdown.items()
        if counts.any()
    }
    return out


def _breakdown_counts(
    ref_codes: np.ndarray, ref_idx: np.ndarray, pred_idx: np.ndarray, n_classes: int
) -> np.ndarray:
    """Counts (256 reference codes x predicted classes) of the scored pixels of a block."""
    ok = (ref_idx != IGNORE_INDEX) & (pred_idx < n_classes)
    return np.bincount(
        ref_codes[ok].astype(np.int64) * n_classes + pred_idx[ok], minlength=256 * n_classes
    ).reshape(256, n_classes)


def _breakdown_fractions(
    counts: np.ndarray, ref_names: dict[int, str], names: Sequence[str]
) -> dict[str, dict[str, float]]:
    """How each reference class was predicted (fractions of its scored pixels)."""
    return {
        ref_names[code]: {
            names[i]: float(counts[code, i] / counts[code].sum()) for i in range(len(names))
        }
        for code in sorted(ref_names)
        if counts[code].sum() > 0
    }

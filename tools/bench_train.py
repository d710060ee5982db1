#!/usr/bin/env python
"""Fine-tuning on CPU: how good is a model after a fixed time budget, from which start?

On a synthetic section pretraining never saw (seed 2026; pretraining used seeds 1000-1999),
the README workflow builds training data (``olmap masks`` with ``--rules``, by default
configs/rules/olivine.yaml (olivine against the rest); configs/rules/basalt.yaml gives one
class per mineral; ``olmap dataset``: sessions 1-2 train, 3 validation, 4 held out), then
``olmap train`` with configs/train/cpu-quick.yaml runs on ``--threads`` CPU threads, side by
side:

- from olmap's synthetic initialisation (``--init synthetic``, the default without network);
- from random weights (``--init none``), the same budget.

Each model then predicts the whole held-out session (1024 px windows, stride 512; olivine
where its probability reaches the model's threshold, or for multi-class models where olivine
is the most probable class) and is scored against the section's ground truth: olivine IoU,
the fraction of clinopyroxene predicted as olivine, and the IoU when the held-out session's
BSE gain drifts by +-6 % (grey values x 1.06 and x 0.94). Not a timed unit test: figures go
to docs/benchmarks.md.

Usage::

    python tools/bench_train.py --out bench-train --threads 2
    python tools/bench_train.py --out bench-train --threads 2 --rules configs/rules/basalt.yaml
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from _bench import machine

from olmap.core.windows import region_window
from olmap.io.raster import raster_info, read_raster
from olmap.io.sessions import read_sessions
from olmap.segment.checkpoint import load_checkpoint
from olmap.segment.infer import classify, predict_proba

REPO = Path(__file__).resolve().parents[1]
OLMAP = [sys.executable, "-m", "olmap"]
OLIVINE, CPX = 3, 4  # codes in truth/phases.tif
#: Crystal footprints (µm²): microlites, microphenocrysts, phenocrysts (docs/synthetic-data.md).
SIZE_CLASSES_UM2 = (("<1000", 0, 1000), ("1000-10000", 1000, 10_000), (">10000", 10_000, 1e12))


def sh(*args: str) -> None:
    subprocess.run([*OLMAP, "-q", *args], check=True)


def recall_by_size(pred: np.ndarray, truth: np.ndarray, instances: np.ndarray) -> dict:
    """Olivine recall over crystals grouped by footprint area (px = µm² at 1 µm/px)."""
    ids, inverse = np.unique(instances, return_inverse=True)
    inverse = inverse.reshape(instances.shape)
    footprint = np.bincount(inverse.ravel())
    olivine = np.bincount(inverse.ravel(), weights=truth.ravel())
    found = np.bincount(inverse.ravel(), weights=(pred & truth).ravel())
    out = {}
    for name, lo, hi in SIZE_CLASSES_UM2:
        sel = (ids > 0) & (footprint >= lo) & (footprint < hi)
        if olivine[sel].sum():
            out[name] = {
                "crystals": int(sel.sum()),
                "recall": round(float(found[sel].sum() / olivine[sel].sum()), 4),
            }
    return out


def held_out_scores(
    model_path: Path, section: Path, mask: Path, threshold: float | None, device: str = "cpu"
) -> dict:
    """Scores of a model on the test session against the ground truth, with BSE drift."""
    info = raster_info(section / "bse.tif")
    sessions = read_sessions(section / "sessions.csv")
    row = sessions[sessions["split"] == "test"].iloc[0]
    win = region_window(row.x0_um, row.y0_um, row.x1_um, row.y1_um, info.transform, info.shape)
    bse = read_raster(section / "bse.tif", window=win, bands=1).astype(np.float32)
    phases = read_raster(section / "truth" / "phases.tif", window=win, bands=1)
    labels = read_raster(mask, window=win, bands=1)
    instances = read_raster(section / "truth" / "instances.tif", window=win, bands=1)
    model, meta = load_checkpoint(model_path, device=device)
    t = meta.threshold if threshold is None else threshold
    # Binary models: olivine probability >= threshold; multi-class: most probable class.
    names = meta.class_names
    olivine_index = names.index("olivine")
    olivine_code = meta.classes[olivine_index][0]

    def olivine_pixels(prob: np.ndarray, th: float) -> np.ndarray:
        if len(names) == 2:
            return classify(prob, th).astype(bool)
        return prob.argmax(0) == olivine_index

    truth = phases == OLIVINE
    out = {"session": str(row.session), "pixels": int(truth.size), "threshold": t}
    if len(names) > 2:
        out["threshold"] = "argmax"
    for name, gain in (("nominal", 1.0), ("gain_x1.06", 1.06), ("gain_x0.94", 0.94)):
        image = np.clip(bse * gain, 0, np.iinfo(info.dtype).max)  # 8- or 16-bit BSE
        t0 = time.perf_counter()
        prob = predict_proba(model, image, window=1024, stride=512)
        seconds = time.perf_counter() - t0
        pred = olivine_pixels(prob, t)
        iou = float((pred & truth).sum() / (pred | truth).sum())
        scores = {"olivine_iou_truth": round(iou, 4)}
        if name == "nominal":
            known = labels != 255
            lab = labels == olivine_code
            scores["olivine_iou_eds_labels"] = round(
                float((pred & lab & known).sum() / ((pred | lab) & known).sum()), 4
            )
            scores["cpx_as_olivine"] = round(float(pred[phases == CPX].mean()), 5)
            scores["recall_by_crystal_size"] = recall_by_size(pred, truth, instances)
            scores["non_olivine_as_olivine"] = round(float(pred[~truth].mean()), 5)
            scores["predict_s_per_mpx"] = round(seconds / (truth.size / 1e6), 2)
            sweep, cpx_sweep = {}, {}
            for th in (0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.8, 0.9):  # on the olivine probability
                p = prob[olivine_index if len(names) > 2 else 0] >= th  # binary: one band
                sweep[str(th)] = round(float((p & truth).sum() / (p | truth).sum()), 4)
                cpx_sweep[str(th)] = round(float(p[phases == CPX].mean()), 5)
            scores["iou_by_threshold"] = sweep
            scores["cpx_as_olivine_by_threshold"] = cpx_sweep
            flipped = olivine_pixels(
                predict_proba(model, image, window=1024, stride=512, flips=True), t
            )
            scores["olivine_iou_truth_flip_averaged"] = round(
                float((flipped & truth).sum() / (flipped | truth).sum()), 4
            )
        out[name] = scores
    nominal = out["nominal"]["olivine_iou_truth"]
    out["worst_drift_loss_points"] = round(
        100 * max(nominal - out[k]["olivine_iou_truth"] for k in ("gain_x1.06", "gain_x0.94")), 2
    )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("bench-train"))
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--config", type=Path, default=REPO / "configs" / "train" / "cpu-quick.yaml")
    ap.add_argument("--inits", default="synthetic,none")
    ap.add_argument(
        "--rules",
        type=Path,
        default=REPO / "configs" / "rules" / "olivine.yaml",
        help="EDS rules of the training labels (basalt.yaml: one class per mineral)",
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    section = out / "section"
    # The olivine rules keep the original file names; other label sets get their own.
    tag = "" if args.rules.stem == "olivine" else f"-{args.rules.stem}"
    mask, dataset = section / f"mask{tag}.tif", out / f"dataset{tag}"
    if not (section / "bse.tif").exists():
        sh(
            "synth",
            "section",
            str(section),
            "--seed",
            str(args.seed),
            "--size",
            f"{args.size}x{args.size}",
        )
    if not mask.exists():
        sh(
            "masks",
            "--eds",
            str(section / "eds.tif"),
            "--bse",
            str(section / "bse.tif"),
            "--rules",
            str(args.rules),
            "--out",
            str(mask),
        )
    if not dataset.exists():
        sh(
            "dataset",
            "--bse",
            str(section / "bse.tif"),
            "--labels",
            str(mask),
            "--sessions",
            str(section / "sessions.csv"),
            "--out",
            str(dataset),
        )
    results = {
        "machine": machine(),
        "threads": args.threads,
        "config": str(args.config),
        "rules": str(args.rules),
    }
    for init in filter(None, args.inits.split(",")):
        model = out / f"model-{init}{tag}.pt"
        env_threads = {"OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
        t0 = time.perf_counter()
        subprocess.run(
            [
                *OLMAP,
                "-q",
                "train",
                "--dataset",
                str(dataset),
                "--config",
                str(args.config),
                "--init",
                init,
                "--out",
                str(model),
                "--overwrite",
            ],
            check=True,
            env={**os.environ, **env_threads},
        )
        wall = time.perf_counter() - t0
        _, meta = load_checkpoint(model)
        m = meta.metrics
        results[init] = {
            "wall_minutes": round(wall / 60, 2),
            "train_minutes": round(m["train_minutes"], 2),
            "epochs": m["epochs"],
            "best_epoch": m["best_epoch"],
            "stop_reason": m["stop_reason"],
            "val_tiles_iou": round(m["val"]["overall"]["classes"]["olivine"]["iou"], 4),
            "test_tiles_iou_eds_labels": round(
                m["test"]["overall"]["classes"]["olivine"]["iou"], 4
            ),
            "held_out": held_out_scores(model, section, mask, None),
        }
        print(json.dumps({init: results[init]}, indent=2), flush=True)
    (out / f"bench_train{tag}.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

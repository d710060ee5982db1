#!/usr/bin/env python
"""The whole chain on sections of instrument looks never used in development (issue 23).

For each section (``--sections``, default three: seeds 7101-7103 with look seeds from
``olmap.synth.looks.FOREIGN_LOOK_SEEDS``, the first 8-bit and 16-bit looks among them and one
more; never used to pretrain, select or tune anything), as a user runs it:

1. ``olmap synth section S --look random --look-seed L`` (4,096² px, four sessions);
2. ``olmap masks`` (configs/rules/olivine.yaml) -> ``olmap dataset`` (sessions 1-2 train,
   3 validation, 4 held out) -> ``olmap train --config configs/train/cpu-quick.yaml``
   (``--init``: default the shipped synthetic initialisation; <= 10 min on 2 CPU threads);
3. the held-out session scored against the truth, as ``tools/bench_train.py`` scores it:
   olivine IoU and the share of clinopyroxene called olivine, for the fine-tuned model and
   for the initialisation alone (zero-shot: its olivine probability, normalised with the
   training tiles' mean and sd as fine-tuning starts);
4. ``olmap calibrate`` and ``olmap mgmap`` with the true mask: test RMSE of the line used,
   filtered and unfiltered test RMSE, the leave-one-profile-out choice, mg# map RMSE against
   ``truth/mgnum.tif`` on olivine 2 px from its outline;
5. ``olmap predict`` over the whole section, then ``olmap crystals`` from the predicted mask
   (share of true crystals matched with IoU >= 0.5, phenocryst zoning accuracy) and from the
   true mask (share of catalogue crystals that match a true crystal).

Prints one table per section and writes ``OUT/bench_foreign_look.json``. Not a timed unit
test; figures go to docs/benchmarks.md.

Usage::

    python tools/bench_foreign_look.py --out bench-foreign
    python tools/bench_foreign_look.py --out bench-foreign --init model.pt --sections 7101:900003
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
import torch
from _bench import machine
from bench_train import CPX, OLIVINE, held_out_scores
from eval_crystals import evaluate as evaluate_catalogue
from eval_crystals import instance_maps
from scipy import ndimage as ndi

from olmap.core.windows import region_window
from olmap.crystals.evaluate import match_instances
from olmap.io.raster import raster_info, read_raster
from olmap.io.sessions import read_sessions
from olmap.segment.checkpoint import read_checkpoint
from olmap.segment.data import open_tile_dataset
from olmap.segment.infer import predict_proba
from olmap.segment.job import synthetic_init_model
from olmap.synth.config import SynthConfig
from olmap.synth.looks import FOREIGN_LOOK_SEEDS, random_look

REPO = Path(__file__).resolve().parents[1]
OLMAP = [sys.executable, "-m", "olmap", "-q"]
SHIPPED = REPO / "olmap" / "segment" / "weights" / "deeplabv3_mobilenet_v3_large-synthetic.pt"


def sh(*args: str, env: dict | None = None) -> None:
    subprocess.run([*OLMAP, *map(str, args)], check=True, env=env)


def default_sections(n: int = 3) -> list[tuple[int, int]]:
    """(section seed, look seed): the first 8-bit and first 16-bit foreign looks, then more.

    Chosen by bit depth alone, before any figure was seen.
    """
    looks = iter(FOREIGN_LOOK_SEEDS)
    picked: list[int] = []
    for want in (8, 16):
        picked.append(next(s for s in looks if random_look(s).bit_depth == want))
    picked += [next(looks) for _ in range(max(0, n - 2))]
    return [(7101 + i, look) for i, look in enumerate(picked[:n])]


def zero_shot_held_out(init: Path, section: Path, dataset: Path) -> dict:
    """The initialisation alone on the held-out session: its olivine probability >= 0.5.

    Normalised with the training tiles' mean and sd, as ``olmap train`` starts from it; the
    nine phases' probabilities summed into olivine / the rest as cpu-quick's ``head: init``.
    """
    ds = open_tile_dataset(dataset)
    sample = np.asarray(ds.image[np.asarray(ds.split("train"))[:256]], dtype=np.float64)
    architecture = read_checkpoint(init)[1].architecture
    model, _ = synthetic_init_model(["unclassified", "olivine"], architecture, path=init)
    model.mean.fill_(float(sample.mean()))
    model.std.fill_(float(sample.std()))
    info = raster_info(section / "bse.tif")
    row = read_sessions(section / "sessions.csv").query("split == 'test'").iloc[0]
    win = region_window(row.x0_um, row.y0_um, row.x1_um, row.y1_um, info.transform, info.shape)
    bse = read_raster(section / "bse.tif", window=win, bands=1).astype(np.float32)
    phases = read_raster(section / "truth" / "phases.tif", window=win, bands=1)
    prob = predict_proba(model, bse, window=1024, stride=512)
    pred = prob[-1] >= 0.5  # binary models give the olivine band (last) alone or after the rest
    truth = phases == OLIVINE
    return {
        "olivine_iou_truth": round(float((pred & truth).sum() / (pred | truth).sum()), 4),
        "cpx_as_olivine": round(float(pred[phases == CPX].mean()), 5),
    }


def map_rmse(mg_path: Path, section: Path) -> float:
    """mg# RMSE against the truth on olivine at least 2 px from its outline."""
    with rasterio.open(mg_path) as f:
        pred = f.read(1)
    with rasterio.open(section / "truth" / "mgnum.tif") as f:
        true = f.read(1)
    with rasterio.open(section / "truth" / "olivine.tif") as f:
        inner = ndi.distance_transform_edt(f.read(1) == 1) >= 2
    ok = inner & np.isfinite(pred) & np.isfinite(true)
    return round(float(np.sqrt(np.mean((pred[ok] - true[ok]) ** 2))), 5)


def catalogue_precision(section: Path, catalogue: gpd.GeoDataFrame) -> float:
    """Share of catalogue crystals that match a true crystal (IoU >= 0.5)."""
    true_ids, pred_ids = instance_maps(section, catalogue)
    m = match_instances(true_ids, pred_ids)  # for each catalogue crystal, its best true one
    m = m.reindex(catalogue["id"].to_numpy())
    return round(float((m["iou"].fillna(0) >= 0.5).mean()), 4)


def composition(section: Path, work: Path) -> dict:
    cal = work / "calibration.json"
    common = ["--standards", section / "standards.csv", "--sessions", section / "sessions.csv"]
    true_mask = section / "truth" / "olivine.tif"
    sh("calibrate", "--bse", section / "bse.tif", "--mask", true_mask, "--profiles",
       section / "epma.csv", *common, "--out", cal, "--overwrite")  # fmt: skip
    sh("mgmap", "--bse", section / "bse.tif", "--mask", true_mask, "--calibration", cal,
       *common, "--out", work / "mgnum.tif", "--overwrite")  # fmt: skip
    doc = json.loads(cal.read_text())
    m = doc["metrics"]
    return {
        "fit_used": doc["fit_used"],
        "leave_one_profile_out_rmse": doc["fit_choice"]["leave_one_profile_out_rmse"],
        "test_rmse_used": m[doc["fit_used"]].get("test", {}).get("rmse"),
        "test_rmse_filtered": m["filtered"].get("test", {}).get("rmse"),
        "test_rmse_not_filtered": m["not_filtered"].get("test", {}).get("rmse"),
        "profiles": len(doc["profiles"]),
        "outliers": sum(p["outliers"] for p in doc["profiles"]),
        "points": sum(p["points"] for p in doc["profiles"]),
        "map_rmse_true_mask": map_rmse(work / "mgnum.tif", section),
    }


def crystals(section: Path, work: Path, model: Path, threads: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    pred_mask = work / "pred_mask.tif"
    if not pred_mask.exists():
        sh("predict", "--model", model, "--bse", section / "bse.tif", "--out-prob",
           work / "prob.tif", "--out-mask", pred_mask, "--overwrite", env=env)  # fmt: skip
    out = {}
    for name, mask in (
        ("predicted_mask", pred_mask),
        ("true_mask", section / "truth" / "olivine.tif"),
    ):
        cat_dir = work / f"catalogue-{name}"
        sh("crystals", "--bse", section / "bse.tif", "--mask", mask, "--mgmap",
           work / "mgnum.tif", "--out", cat_dir, "--overwrite")  # fmt: skip
        cat = gpd.read_file(cat_dir / "crystals.gpkg", layer="crystals")
        res = evaluate_catalogue(section, cat)
        out[name] = {
            "true_crystals_matched": res["matched"],
            "zoning_accuracy": res["zoning_accuracy"],
            "phenocrysts_matched": res["phenocrysts_matched"],
            "catalogue_crystals_matching_truth": catalogue_precision(section, cat),
            "catalogued": res["catalogued"],
        }
    return out


def run_section(seed: int, look: int, args: argparse.Namespace) -> dict:
    section = args.out / f"s{seed}-look{look}"
    work = args.out / f"s{seed}-look{look}-{args.init.stem}"
    work.mkdir(parents=True, exist_ok=True)
    if not (section / "bse.tif").exists():
        sh("synth", "section", section, "--seed", seed, "--size", f"{args.size}x{args.size}",
           "--look", "random", "--look-seed", look)  # fmt: skip
    cfg = SynthConfig.model_validate(json.loads((section / "section.json").read_text())["config"])
    mask, dataset = section / "mask.tif", section / "dataset"
    if not mask.exists():
        sh("masks", "--eds", section / "eds.tif", "--bse", section / "bse.tif", "--rules",
           REPO / "configs" / "rules" / "olivine.yaml", "--out", mask)  # fmt: skip
    if not dataset.exists():
        sh("dataset", "--bse", section / "bse.tif", "--labels", mask, "--sessions",
           section / "sessions.csv", "--out", dataset)  # fmt: skip
    result: dict = {
        "seed": seed,
        "look_seed": look,
        "bit_depth": cfg.look.bit_depth,
        "contrast": round(cfg.look.contrast, 3),
        "pixel_size_um": round(cfg.pixel_size_um, 3),
        "bse_noise": round(cfg.bse_noise, 2),
    }
    if not args.skip_train:
        model = work / "model.pt"
        env = {
            **os.environ,
            "OMP_NUM_THREADS": str(args.threads),
            "MKL_NUM_THREADS": str(args.threads),
        }
        t0 = time.perf_counter()
        if not model.exists():
            sh("train", "--dataset", dataset, "--config", args.config, "--init", args.init,
               "--out", model, env=env)  # fmt: skip
        _, meta = read_checkpoint(model)
        m = meta.metrics
        result["train"] = {
            "wall_minutes": round((time.perf_counter() - t0) / 60, 2),
            "train_minutes": round(m["train_minutes"], 2),
            "epochs": m["epochs"],
            "start": m.get("start"),
            "domain_shift": m.get("domain_shift"),
            "val_iou_eds_labels": round(m["val"]["overall"]["classes"]["olivine"]["iou"], 4),
        }
        result["zero_shot"] = zero_shot_held_out(args.init, section, dataset)
        held = held_out_scores(model, section, mask, None)
        nominal = held["nominal"]
        result["fine_tuned"] = {
            "olivine_iou_truth": nominal["olivine_iou_truth"],
            "cpx_as_olivine": nominal["cpx_as_olivine"],
            "threshold": held["threshold"],
            "olivine_iou_eds_labels": nominal["olivine_iou_eds_labels"],
            "flip_averaged_iou": nominal["olivine_iou_truth_flip_averaged"],
            "iou_by_threshold": nominal["iou_by_threshold"],
            "cpx_as_olivine_by_threshold": nominal["cpx_as_olivine_by_threshold"],
            "gain_x1.06_iou": held["gain_x1.06"]["olivine_iou_truth"],
        }
    result["composition"] = composition(section, work)
    if not args.skip_train:
        result["crystals"] = crystals(section, work, work / "model.pt", args.threads)
    print(json.dumps(result, indent=2), flush=True)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("bench-foreign"))
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--init", type=Path, default=SHIPPED, help="initialisation checkpoint")
    ap.add_argument("--config", type=Path, default=REPO / "configs" / "train" / "cpu-quick.yaml")
    ap.add_argument(
        "--sections",
        nargs="*",
        help="SEED:LOOK_SEED pairs [default: three foreign looks, see the module docstring]",
    )
    ap.add_argument("--skip-train", action="store_true", help="composition only")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    pairs = (
        [tuple(int(x) for x in s.split(":")) for s in args.sections]
        if args.sections
        else default_sections()
    )
    results = {"machine": machine(), "threads": args.threads, "init": str(args.init)}
    results["sections"] = [run_section(seed, look, args) for seed, look in pairs]
    path = args.out / f"bench_foreign_look-{args.init.stem}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

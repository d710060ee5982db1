"""The random forest of ``olmap ct label`` on real micro-CT: the Zeiss Versa sandstone.

Five XY slices (z = 0, 50, ..., 200) with the author's 4-class masks
(../shared/realdata/ct-sandstone, README there). Scribbles are painted from the masks of two
slices by the same careful painter as olmap's synthetic series (a few hundred pixels per
class, strokes that never touch a boundary pixel); the forest (2D features: the slices are
50 apart) labels all five, and Dice is measured on the other three against the masks, with
the global-threshold baseline fitted on the same scribbles beside it.

With ``--cnn``, seed 000's second step as a user runs it: ``olmap ct train`` learns the
forest's labels of the two scribbled slices (``configs/train/ct-quick.yaml``: 2 CPU cores,
<= 10 min; validation on the last rows of tiles of each slice), ``olmap ct predict`` labels
all five slices, and the CNN is scored on the same three slices beside the forest.

Usage::

    python tools/bench_ct_sandstone.py ../shared/realdata/ct-sandstone --train 0,2 [--cnn]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import tifffile

from olmap.ct.classes import load_classes
from olmap.ct.features import FeatureConfig
from olmap.ct.forest import ForestConfig, read_scribbles, train_forest
from olmap.ct.label import VolumeSpec, label_volume
from olmap.ct.metrics import apply_thresholds, confusion, fit_thresholds, scores_from_confusion
from olmap.ct.synth import paint_strokes
from olmap.io.volume import open_volume

REPO = Path(__file__).resolve().parents[1]
#: Mask colours of the data set (README): code = index + 1.
COLOURS = [(0, 0, 255), (255, 0, 0), (0, 255, 0), (255, 255, 0)]


def mask_codes(rgb: np.ndarray) -> np.ndarray:
    """Class codes 1-4 of an RGB mask (0 where a colour is not one of the four)."""
    out = np.zeros(rgb.shape[:2], np.uint8)
    for k, colour in enumerate(COLOURS, start=1):
        out[np.all(rgb == colour, axis=-1)] = k
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", type=Path, help="ct-sandstone folder (images/, masks/)")
    ap.add_argument("--train", default="0,2", help="indices (0-4) of the scribbled slices")
    ap.add_argument("--seed", type=int, default=0, help="seed of the painter and the forest")
    ap.add_argument("--target-px", type=int, default=300, help="painted px per class per slice")
    ap.add_argument("--sigmas", default="1,2,4")
    ap.add_argument("--priors", default="volume", help="volume or uniform (olmap ct label)")
    ap.add_argument("--no-autocontext", action="store_true", help="one forest only")
    ap.add_argument("--no-refine", action="store_true", help="the forest's labels, no watershed")
    ap.add_argument("--cnn", action="store_true", help="also train and score olmap's CNN")
    ap.add_argument("--cnn-config", default=str(REPO / "configs" / "train" / "ct-quick.yaml"))
    ap.add_argument("--out", type=Path, default=None, help="write the scores as JSON here")
    args = ap.parse_args()
    images = sorted((args.data / "images").glob("*.tif"))
    masks = [args.data / "masks" / p.name for p in images]
    train = [int(i) for i in args.train.split(",")]
    classes = load_classes(REPO / "configs" / "ct" / "sandstone.yaml")
    truth = np.stack([mask_codes(tifffile.imread(m)) for m in masks])
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "scan").mkdir()
        (tmp / "scribbles").mkdir()
        for z, p in enumerate(images):
            tifffile.imwrite(tmp / "scan" / f"slice_{z:04d}.tif", tifffile.imread(p))
        rng = np.random.default_rng(args.seed)
        for z in train:
            s = paint_strokes(truth[z], classes.codes, rng, target_px=args.target_px)
            tifffile.imwrite(tmp / "scribbles" / f"z{z:04d}.tif", s)
        fc = FeatureConfig(dims="2d", sigmas=tuple(float(s) for s in args.sigmas.split(",")))
        with open_volume(tmp / "scan") as vol:
            scribbles = read_scribbles(tmp / "scribbles", vol.shape, classes)
            model = train_forest(
                [(vol, scribbles)],
                classes,
                fc,
                ForestConfig(seed=args.seed),
                autocontext=not args.no_autocontext,
            )
            grey = vol.read()
        label_volume(
            model,
            VolumeSpec(str(tmp / "scan")),
            tmp / "labels.zarr",
            workers=2,
            priors=args.priors,
            refine=not args.no_refine,
        )
        with open_volume(tmp / "labels.zarr", labels=True) as lab:
            pred = lab.read()
        if args.cnn:
            cnn, cnn_seconds = train_and_predict_cnn(tmp, grey, pred, train, args)
    test = [z for z in range(len(images)) if z not in train]
    codes = classes.codes
    forest = scores_from_confusion(confusion(truth[test], pred[test], codes), classes.names)
    on = np.isin(scribbles.z, train)
    order, cuts = fit_thresholds(
        grey[scribbles.z[on], scribbles.y[on], scribbles.x[on]].astype(float),
        scribbles.code[on],
        codes,
    )
    base = apply_thresholds(grey[test].astype(float), order, cuts)
    threshold = scores_from_confusion(confusion(truth[test], base, codes), classes.names)
    methods = {"forest": forest, "threshold": threshold}
    if args.cnn:
        cnn_conf = confusion(truth[test], cnn[test], codes)
        methods["cnn"] = scores_from_confusion(cnn_conf, classes.names)
        print(f"CNN: trained and predicted in {cnn_seconds:.0f} s")
    table = pd.concat(methods, names=["method", "class"])
    px = pd.Series(scribbles.code).value_counts().sort_index()
    print(f"scribbles on slices {train}: {len(scribbles)} px ({dict(px)})")
    print(f"scored on slices {test} against the masks:")
    print(table[["dice", "iou", "precision", "recall", "kappa"]].round(3).to_string())
    if args.out:
        args.out.write_text(
            json.dumps(
                {
                    "train": train,
                    "test": test,
                    "dice": {"/".join(k): v for k, v in table["dice"].round(4).items()},
                },
                indent=1,
            )
        )


def train_and_predict_cnn(
    tmp: Path, grey: np.ndarray, forest: np.ndarray, train: list[int], args
) -> tuple[np.ndarray, float]:
    """``olmap ct train`` on the forest's labels of the ``train`` slices, then ``olmap ct
    predict`` on the whole scan (tmp/scan): the CNN's labels of every slice, and the seconds."""
    olmap = [sys.executable, "-m", "olmap.cli.main"]
    classes = str(REPO / "configs" / "ct" / "sandstone.yaml")
    pairs = []
    for z in train:
        tifffile.imwrite(tmp / f"grey{z}.tif", grey[z])
        tifffile.imwrite(tmp / f"forest{z}.tif", forest[z])
        pairs += ["--volume", str(tmp / f"grey{z}.tif"), "--labels", str(tmp / f"forest{z}.tif")]
    t0 = time.perf_counter()
    subprocess.run(
        [*olmap, "ct", "train", *pairs, "--classes", classes, "--config", args.cnn_config,
         "--out", str(tmp / "cnn.pt"), "--seed", str(args.seed)],
        check=True,
    )  # fmt: skip
    subprocess.run(
        [*olmap, "ct", "predict", "--model", str(tmp / "cnn.pt"), "--volume", str(tmp / "scan"),
         "--out", str(tmp / "cnn.zarr"), "--classes", classes],
        check=True,
    )  # fmt: skip
    seconds = time.perf_counter() - t0
    with open_volume(tmp / "cnn.zarr", labels=True) as lab:
        return lab.read(), seconds


if __name__ == "__main__":
    main()

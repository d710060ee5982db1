#!/usr/bin/env python
"""Benchmark ``olmap predict``: peak RSS and speed against mosaic size, and the border effect.

1. Synthetic mosaics (``olmap synth section``, seed 7) of each ``--sizes``; on each, in
   separate processes (peak RSS = the process's own ``ru_maxrss``):
   - ``olmap predict`` (streamed, default window 2048 / stride 1024 unless given);
   - the baseline, whole-image in-memory inference with the same windows: MONAI's
     ``sliding_window_inference`` (``--baseline-sizes``; overlap = 1 - stride / window,
     uniform weights, always on CPU), which holds the image and the whole output in memory.
2. Border effect on one section with ground truth (``--border-size``): patch-wise prediction
   without overlap (the paper's "PW", stride = window) against olmap's overlapping windows,
   IoU against the true olivine mask overall and within 32 px of the PW window borders.

The model is olmap's shipped synthetic initialisation read as an olivine model
(:func:`olmap.segment.job.synthetic_init_model`): no training, so anyone can rerun this.

Usage::

    pip install -e '.[bench]'   # MONAI for the baseline
    python tools/bench_predict.py --sizes 4000 8000 16000 --baseline-sizes 4000 8000 \
        --border-windows --out bench-out
    python tools/bench_predict.py --sizes --baseline-sizes --border-size 4096 \
        --border-windows 512 2048 --out bench-out
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from _bench import machine, run, size_row

MONAI = """
import sys, time
import numpy as np, torch
from monai.inferers import sliding_window_inference
from olmap.io.raster import read_raster, write_raster, raster_info
from olmap.segment.checkpoint import load_checkpoint
model_path, bse, out, window, stride = sys.argv[1:6]
window, stride = int(window), int(stride)
model, meta = load_checkpoint(model_path)
image = torch.from_numpy(read_raster(bse, bands=1).astype(np.float32))[None, None]
with torch.inference_mode():
    prob = sliding_window_inference(
        image, (window, window), 1,
        lambda x: model.probabilities(model(x)["out"]),
        overlap=1 - stride / window, mode="constant",
    )
mask = (prob[0, 0].numpy() >= meta.threshold).astype(np.uint8)
info = raster_info(bse)
write_raster(out, mask, transform=info.transform, overwrite=True)
"""


def make_model(path: Path) -> None:
    from olmap.segment.checkpoint import save_checkpoint
    from olmap.segment.job import synthetic_init_model

    model, meta = synthetic_init_model(["unclassified", "olivine"])
    save_checkpoint(path, model, meta, overwrite=True)


def border_band(shape: tuple[int, int], window: int, reach: int = 32):
    """Pixels within ``reach`` px of an inner border of the non-overlapping window grid."""
    import numpy as np

    from olmap.core.windows import sliding_windows

    near = np.zeros(shape, bool)
    for win in sliding_windows(*shape, window, window):
        r0, c0 = int(win.row_off), int(win.col_off)
        r1, c1 = r0 + int(win.height), c0 + int(win.width)
        for edge in (r0, r1):
            if 0 < edge < shape[0]:
                near[max(edge - reach, 0) : edge + reach, c0:c1] = True
        for edge in (c0, c1):
            if 0 < edge < shape[1]:
                near[r0:r1, max(edge - reach, 0) : edge + reach] = True
    return near


def border_effect(section: Path, model_path: Path, windows: list[int]) -> list[dict]:
    """IoU vs truth of PW (no overlap) and olmap (overlap) predictions, overall and near the
    PW window borders."""
    import numpy as np

    from olmap.io.raster import read_raster
    from olmap.segment.checkpoint import load_checkpoint
    from olmap.segment.infer import predict_proba

    model, meta = load_checkpoint(model_path)
    image = read_raster(section / "bse.tif", bands=1).astype(np.float32)
    truth = read_raster(section / "truth" / "olivine.tif", bands=1) == 1

    def iou(pred, where):
        p, t = pred[where], truth[where]
        return round(float((p & t).sum() / max((p | t).sum(), 1)), 4)

    rows = []
    for window in windows:
        near = border_band(image.shape, window)
        runs = {
            f"PW {window} (stride {window}, no overlap)": (window, window, "uniform"),
            f"olmap {window} / {window // 2} uniform": (window, window // 2, "uniform"),
            f"olmap {window} / {window // 2} gaussian": (window, window // 2, "gaussian"),
        }
        for name, (size, stride, blend) in runs.items():
            t0 = time.perf_counter()
            prob = predict_proba(model, image, window=size, stride=stride, blend=blend)
            pred = prob[0] >= meta.threshold
            rows.append(
                {
                    "method": name,
                    "pw_grid": window,
                    "iou_overall": iou(pred, np.ones_like(near)),
                    "iou_within_32px_of_pw_borders": iou(pred, near),
                    "iou_elsewhere": iou(pred, ~near),
                    "border_fraction": round(float(near.mean()), 3),
                    "seconds": round(time.perf_counter() - t0, 1),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="*", default=[4000, 8000, 16000])
    ap.add_argument("--baseline-sizes", type=int, nargs="*", default=[4000, 8000, 16000])
    ap.add_argument("--window", type=int, default=2048)
    ap.add_argument("--stride", type=int, default=1024)
    ap.add_argument("--border-size", type=int, default=4096)
    ap.add_argument("--border-windows", type=int, nargs="*", default=[512, 2048])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", type=Path, default=Path("bench-out"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    model = args.out / "init-olivine.pt"
    make_model(model)
    olmap = [sys.executable, "-m", "olmap", "--quiet"]
    results: dict = {"machine": machine(), "window": args.window, "stride": args.stride}
    results["runs"] = []
    for n in sorted(set(args.sizes) | set(args.baseline_sizes)):
        section = args.out / f"section_{n}"
        if not (section / "bse.tif").exists():
            run([*olmap, "synth", "section", str(section), "--seed", "7", "--size", f"{n}x{n}"])
        bse = section / "bse.tif"
        if n in args.sizes:
            res = run(
                [
                    *olmap,
                    "predict",
                    "--model",
                    str(model),
                    "--bse",
                    str(bse),
                    "--out-prob",
                    str(args.out / f"prob_{n}.tif"),
                    "--out-mask",
                    str(args.out / f"mask_{n}.tif"),
                    "--window",
                    str(args.window),
                    "--stride",
                    str(args.stride),
                    "--device",
                    args.device,
                    "--overwrite",
                ]
            )
            row = size_row("olmap predict (streamed)", n, res)
            results["runs"].append(row)
            print(json.dumps(row), flush=True)
        if n in args.baseline_sizes:
            out = args.out / f"mask_monai_{n}.tif"
            res = run(
                [sys.executable, "-c", MONAI, str(model), str(bse), str(out)]
                + [str(args.window), str(args.stride)]
            )
            row = size_row("MONAI sliding_window_inference, whole image in memory", n, res)
            results["runs"].append(row)
            print(json.dumps(row), flush=True)
            if n in args.sizes:
                import numpy as np

                from olmap.io.raster import read_raster

                a = read_raster(args.out / f"mask_{n}.tif", bands=1)
                b = read_raster(out, bands=1)
                results.setdefault("agreement_with_monai", {})[str(n)] = round(
                    float((a == b).mean()), 6
                )
                print("agreement", n, results["agreement_with_monai"][str(n)], flush=True)
                del a, b, np
    if args.border_windows:
        section = args.out / f"section_{args.border_size}"
        if not (section / "bse.tif").exists():
            n = args.border_size
            run([*olmap, "synth", "section", str(section), "--seed", "7", "--size", f"{n}x{n}"])
        results["border_effect"] = border_effect(section, model, args.border_windows)
    (args.out / "bench_predict.json").write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out / 'bench_predict.json'}")


if __name__ == "__main__":
    main()

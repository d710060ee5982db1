#!/usr/bin/env python
"""How fast can training read a tile? Memory-mapped .npy stacks vs the alternatives.

Builds ``olmap dataset`` from a synthetic section (generated if missing), then reads every
tile (BSE + labels) in random order, as a shuffling DataLoader does, from

- the memory-mapped ``bse.npy`` / ``labels.npy`` stacks olmap writes;
- windows of the compressed, tiled GeoTIFF mosaic (read on the fly, one open per tile as in a
  DataLoader worker);
- one PNG file per tile (the common alternative, lossless, viewable).

Usage::

    python tools/bench_dataset.py --size 4096 --out bench-out
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
from _bench import machine
from PIL import Image
from rasterio.windows import Window

from olmap.io.raster import read_raster

REPO = Path(__file__).resolve().parents[1]


def timed(read, ids) -> float:
    t0 = time.perf_counter()
    for i in ids:
        read(i)
    return (time.perf_counter() - t0) / len(ids) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path("bench-out"))
    args = ap.parse_args()
    section = args.out / f"section_{args.size}"
    olmap = [sys.executable, "-m", "olmap", "-q"]
    if not (section / "eds.tif").exists():
        subprocess.run([*olmap, "synth", "section", str(section), "--seed", "7", "--size",
                        f"{args.size}x{args.size}", "--overwrite"], check=True)  # fmt: skip
    mask, dataset = args.out / f"mask_{args.size}.tif", args.out / f"dataset_{args.size}"
    subprocess.run(
        [
            *olmap,
            "masks",
            "--eds",
            str(section / "eds.tif"),
            "--rules",
            str(REPO / "configs/rules/olivine.yaml"),
            "--out",
            str(mask),
            "--bse",
            str(section / "bse.tif"),
            "--overwrite",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    subprocess.run([*olmap, "dataset", "--bse", str(section / "bse.tif"), "--labels", str(mask),
                    "--sessions", str(section / "sessions.csv"), "--out", str(dataset),
                    "--overwrite"], check=True, stdout=subprocess.DEVNULL)  # fmt: skip
    manifest = pd.read_csv(dataset / "manifest.csv")
    bse = np.load(dataset / "image.npy", mmap_mode="r")
    labels = np.load(dataset / "labels.npy", mmap_mode="r")
    windows = [Window(r.col_off, r.row_off, r.width, r.height) for r in manifest.itertuples()]
    png = Path(tempfile.mkdtemp(dir=args.out))
    for i in range(len(manifest)):
        Image.fromarray(np.asarray(bse[i])).save(png / f"{i}_bse.png")
        Image.fromarray(np.asarray(labels[i])).save(png / f"{i}_lab.png")
    readers = {
        "memory-mapped .npy stacks (olmap)": lambda i: (np.array(bse[i]), np.array(labels[i])),
        "GeoTIFF mosaic windows": lambda i: (
            read_raster(section / "bse.tif", window=windows[i], bands=1),
            read_raster(mask, window=windows[i], bands=1),
        ),
        "one PNG per tile": lambda i: (
            np.asarray(Image.open(png / f"{i}_bse.png")),
            np.asarray(Image.open(png / f"{i}_lab.png")),
        ),
    }
    rng = np.random.default_rng(0)
    results: dict = {"machine": machine(), "tiles": len(manifest), "ms_per_tile": {}}
    for name, read in readers.items():
        best = min(timed(read, rng.permutation(len(manifest))) for _ in range(args.repeats))
        results["ms_per_tile"][name] = round(best, 3)
        print(f"{name}: {best:.3f} ms per tile (BSE + labels)", flush=True)
    sizes = {
        "npy_mb": round(sum((dataset / f).stat().st_size for f in ("image.npy", "labels.npy"))
                        / 2**20, 1),
        "png_mb": round(sum(f.stat().st_size for f in png.iterdir()) / 2**20, 1),
    }  # fmt: skip
    results.update(sizes)
    print(sizes)
    (args.out / "bench_dataset.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

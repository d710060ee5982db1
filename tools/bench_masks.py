#!/usr/bin/env python
"""Benchmark ``olmap masks``: wall time and peak RSS against size, and an in-memory baseline.

Sections are generated first (``olmap synth section``, not timed here). Each measured run is a
separate process whose own peak RSS comes from ``os.wait4``. The baseline, run side by side,
reads the whole EDS stack and BSE into memory and labels them in one call
(``classify_window`` on the full extent): what a non-streaming tool does.

Usage::

    python tools/bench_masks.py --sizes 4096 8192 16384 --baseline 4096 8192 --out bench-out
    python tools/bench_masks.py --sizes 4096 8192 --baseline --rules olivine olivine-paper

``--rules`` names files of ``configs/rules/``: several are run side by side (e.g. the relative
units of ``olivine.yaml``, which add a sampling pass for the reference levels, against the raw
counts of ``olivine-paper.yaml``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from _bench import machine, run, size_row

REPO = Path(__file__).resolve().parents[1]
RULES = REPO / "configs" / "rules"

BASELINE = """
import sys
from olmap.io.raster import raster_info, read_raster
from olmap.masks.label import classify_window
from olmap.masks.normalise import reference_levels
from olmap.masks.rules import load_rules
section = sys.argv[1]
rules = load_rules(sys.argv[2])
info = raster_info(section + "/eds.tif")
stack = read_raster(section + "/eds.tif")
counts = dict(zip(info.band_names, stack))
if rules.units == "relative":
    counts = reference_levels({e: v.ravel() for e, v in counts.items()}).apply(counts)
bse = read_raster(section + "/bse.tif", bands=1)
labels, stats = classify_window(counts, rules, bse=bse)
print(stats.pixels[1])
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[4096, 8192, 16384])
    ap.add_argument("--baseline", type=int, nargs="*", default=[4096, 8192])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rules", nargs="+", default=["olivine"], help="names in configs/rules/")
    ap.add_argument("--out", type=Path, default=Path("bench-out"))
    args = ap.parse_args()
    olmap = [sys.executable, "-m", "olmap", "--quiet"]
    results: dict = {"machine": machine(), "rules": args.rules, "runs": []}
    for n in sorted(set(args.sizes) | set(args.baseline)):
        section = args.out / f"section_{n}"
        if not (section / "eds.tif").exists():
            run([*olmap, "synth", "section", str(section), "--seed", "7", "--size", f"{n}x{n}",
                 "--overwrite"])  # fmt: skip
        rows = []
        for name in args.rules:
            rules = RULES / f"{name}.yaml"
            if n in args.sizes:
                res = run(
                    [*olmap, "masks", "--eds", str(section / "eds.tif"), "--rules", str(rules),
                     "--out", str(args.out / f"mask_{n}.tif"), "--bse", str(section / "bse.tif"),
                     "--workers", str(args.workers), "--overwrite"]
                )  # fmt: skip
                rows.append((f"olmap masks {name} (streamed, 2,048 px windows)", res))
            if n in args.baseline:
                res = run([sys.executable, "-c", BASELINE, str(section), str(rules)])
                rows.append((f"{name}: whole image in memory (baseline)", res))
        for method, res in rows:
            row = size_row(method, n, res)
            results["runs"].append(row)
            print(json.dumps(row), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_masks.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

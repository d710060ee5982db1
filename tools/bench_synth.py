#!/usr/bin/env python
"""Benchmark ``olmap synth section``: wall time and peak RSS against section size.

Each run is a separate ``olmap`` process; its peak RSS comes from ``os.wait4`` (the child's
own ``ru_maxrss``), so runs do not contaminate each other. The baseline, run side by side,
renders a whole section in memory at once (what a non-streaming generator does).

Usage::

    python tools/bench_synth.py --sizes 4096 8192 20000 --baseline 4096 --out bench-out
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from _bench import machine, run, size_row

BASELINE = """
import sys
from olmap.synth.config import SynthConfig
from olmap.synth.model import build_model
from olmap.synth.render import render_observed
n = int(sys.argv[1])
model = build_model(SynthConfig(width=n, height=n, seed=7, sessions=4))
obs = render_observed(model, 0, 0, n, n)
print(obs.bse.mean())
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[4096, 8192, 20000])
    ap.add_argument(
        "--baseline",
        type=int,
        nargs="*",
        default=[4096],
        help="sizes to also render whole-in-memory (the baseline)",
    )
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("bench-out"))
    ap.add_argument("--keep", action="store_true", help="keep the generated sections")
    args = ap.parse_args()
    olmap = [sys.executable, "-m", "olmap", "--quiet"]
    results = {
        "machine": machine(),
        "runs": [],
    }
    for n in args.sizes:
        out = args.out / f"synth_{n}"
        res = run(
            [
                *olmap,
                "synth",
                "section",
                str(out),
                "--seed",
                "7",
                "--size",
                f"{n}x{n}",
                "--workers",
                str(args.workers),
                "--overwrite",
            ]
        )
        size_mb = sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) / 2**20
        row = {**size_row("olmap streamed", n, res), "output_mb": round(size_mb, 1)}
        results["runs"].append(row)
        print(json.dumps(row), flush=True)
        if not args.keep:
            shutil.rmtree(out)
    for n in args.baseline:
        res = run([sys.executable, "-c", BASELINE, str(n)])
        row = size_row("whole section in memory (baseline, no file output)", n, res)
        results["runs"].append(row)
        print(json.dumps(row), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_synth.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

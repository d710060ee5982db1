#!/usr/bin/env python
"""Rule masks on real element maps against the authors' phase classes (issue 22, docs/masks.md).

For each sample folder (per-element text maps + ``phases.tif``) and each shipped rule file,
prints the share of each of the authors' classes given each olmap class and the IoU of classes
named in both, twice: over the pixels the authors classified, and counting the pixels they
left unclassified as "not this class" (a stricter IoU).

Usage::

    python tools/eval_realdata_masks.py ../shared/realdata/stkitts/SK392D \
        --legend tools/legends/stkitts-SK392D.yaml
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from olmap.io.eds import open_eds
from olmap.io.legend import canonical_class_name, read_legend
from olmap.io.raster import raster_info, read_raster
from olmap.masks.rules import load_rules
from olmap.masks.stream import build_label_map

RULES = Path(__file__).resolve().parents[1] / "configs" / "rules"


def evaluate(folder: Path, legend: Path, rules_file: Path, tmp: Path) -> None:
    rules = load_rules(rules_file)
    out = tmp / f"{folder.name}-{rules_file.stem}.tif"
    ref = folder / "phases.tif"
    result = build_label_map(
        open_eds([folder], elements=rules.elements), rules, out, reference=ref, legend=legend,
        overwrite=True,
    )  # fmt: skip
    print(f"\n== {folder.name}  {rules_file.name}")
    for ref_name, row in result.confusion.fractions().items():
        parts = sorted(row.items(), key=lambda kv: -kv[1])
        print(f"  {ref_name:22s}", ", ".join(f"{n} {100 * f:.2f}%" for n, f in parts if f >= 1e-4))
    labels = read_raster(out, bands=1)
    codes = read_raster(ref, bands=1).astype(np.float64)
    nodata = raster_info(ref).nodata
    names = {c: canonical_class_name(n) for c, n in read_legend(legend).items()}
    for name, iou in result.confusion.iou().items():
        truth = np.isin(codes, [c for c, n in names.items() if n == canonical_class_name(name)])
        mask = labels == rules.codes[name]
        strict = (truth & mask).sum() / max((truth | mask).sum(), 1)
        left = (mask & (codes == nodata)).sum()
        print(f"  IoU {name}: {iou:.4f} (classified pixels); {strict:.4f} counting the "
              f"{left:,} px of it the authors left unclassified as errors")  # fmt: skip
    for key, n in result.stats.rejected.items():
        print(f"  rejected {key}: {n:,} px")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--legend", type=Path, required=True)
    ap.add_argument("--rules", nargs="+", default=["olivine-paper", "olivine", "basalt"])
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.rules:
            evaluate(args.folder, args.legend, RULES / f"{name}.yaml", Path(tmp))


if __name__ == "__main__":
    main()

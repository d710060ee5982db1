#!/usr/bin/env python
"""Accuracy of EDS rule masks against the synthetic truth, step by step (docs/masks.md).

For each synthetic section (generated if missing) and each variant of the olivine rules —
the paper's rule alone, + crack masking, + boundary growth, the full ``olivine-paper.yaml``,
``olivine.yaml`` (relative units, orthopyroxene rejected), and the
olivine class of the multi-class ``basalt.yaml`` — prints IoU against ``truth/olivine.tif``
and the share of clinopyroxene, orthopyroxene, spinel and crack pixels labelled olivine.

Usage::

    python tools/eval_rule_masks.py --seeds 7 3 11 --size 4096 --out bench-out
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from olmap.io.eds import open_eds
from olmap.io.raster import read_raster
from olmap.masks.rules import RuleSet, load_rules
from olmap.masks.stream import build_label_map

REPO = Path(__file__).resolve().parents[1]
RULES = REPO / "configs" / "rules"


def variants() -> dict[str, tuple[RuleSet, str]]:
    full = load_rules(RULES / "olivine-paper.yaml")
    olivine = full.classes[0]
    paper = olivine.model_copy(update={"grow": None, "min_size_px": 0})

    def with_class(cls, ignore):
        return full.model_copy(update={"classes": (cls,), "ignore": ignore})

    return {
        "paper rule (Ca/Mg, Al/Mg < 0.1, Mg > 30)": (with_class(paper, None), "olivine"),
        "+ cracks ignored (BSE < 60)": (with_class(paper, full.ignore), "olivine"),
        "+ boundary growth (2 px)": (
            with_class(paper.model_copy(update={"grow": olivine.grow}), full.ignore),
            "olivine",
        ),
        "olivine-paper.yaml (+ specks <= 10 px removed)": (full, "olivine"),
        "olivine.yaml (relative units, opx rejected)": (
            load_rules(RULES / "olivine.yaml"),
            "olivine",
        ),
        "basalt.yaml, olivine class (opx first)": (load_rules(RULES / "basalt.yaml"), "olivine"),
    }


def evaluate(section: Path, rules: RuleSet, name: str, out: Path) -> dict:
    result = build_label_map(
        open_eds([section / "eds.tif"]), rules, out, bse=section / "bse.tif", overwrite=True,
        reference=section / "truth" / "phases.tif", workers=2,
    )  # fmt: skip
    labels = read_raster(out, bands=1)
    truth = read_raster(section / "truth" / "olivine.tif", bands=1) == 1
    mask = labels == rules.codes[name]
    fr = result.confusion.fractions()
    return {
        "iou": float((mask & truth).sum() / (mask | truth).sum()),
        **{f"{p}_as_olivine": fr[p][name] for p in ("clinopyroxene", "orthopyroxene", "spinel")},
        "crack_as_olivine": fr["crack"][name],
        "crack_ignored": fr["crack"]["ignore"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[7, 3, 11])
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--out", type=Path, default=Path("bench-out"))
    args = ap.parse_args()
    rows = []
    for seed in args.seeds:
        section = args.out / f"section_{args.size}_seed{seed}"
        if not (section / "eds.tif").exists():
            subprocess.run(
                [sys.executable, "-m", "olmap", "-q", "synth", "section", str(section),
                 "--seed", str(seed), "--size", f"{args.size}x{args.size}", "--overwrite"],
                check=True, stdout=subprocess.DEVNULL,
            )  # fmt: skip
        for label, (rules, name) in variants().items():
            row = {
                "seed": seed,
                "variant": label,
                **evaluate(section, rules, name, args.out / "eval_mask.tif"),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    print("\n| variant | IoU (mean, min) | cpx as olivine | opx as olivine | cracks as olivine |")
    print("|---|---|---|---|---|")
    for label in variants():
        sel = [r for r in rows if r["variant"] == label]
        iou = np.array([r["iou"] for r in sel])

        def pct(key, sel=sel):
            return f"{100 * np.mean([r[key] for r in sel]):.2f} %"

        print(
            f"| {label} | {iou.mean():.3f} ({iou.min():.3f}) | {pct('clinopyroxene_as_olivine')}"
            f" | {pct('orthopyroxene_as_olivine')} | {pct('crack_as_olivine')} |"
        )
    (args.out / "eval_rule_masks.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()

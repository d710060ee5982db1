#!/usr/bin/env python
"""Benchmark ``olmap crystals``: accuracy against synthetic truth, speed and memory.

1. **Accuracy** on each ``--section`` (default: the four sections of
   ``tools/bench_mgmap.py`` under ``bench-out/sections/``, generated when missing) with its
   true olivine mask and an mg# map made by olmap itself (``calibrate`` + ``mg_map`` with the
   drift correction): share of true crystals (> 100 µm²) matched by a catalogue crystal with
   IoU >= 0.5, size-class accuracy of the matched ones, zoning accuracy of the matched true
   phenocrysts; with the split of touching crystals and without it (the paper's one crystal
   per component). ``--pred SECTION=MASK`` adds a predicted mask (e.g. ``olmap predict``).
2. **Speed side by side** on ``--speed-section`` (default the 8,192² one): olmap (chunked
   labelling, crystals read one by one; with and without the split) against a
   straightforward in-memory loop (``scipy.ndimage.label`` on the whole mask,
   ``skimage.measure.regionprops`` and a distance transform per crystal, the same core/rim
   ratio and outline polygons), each in its own process: wall time and peak RSS.
3. **Full resolution at scale** (``--big SIDE``, default 20,000 px = 400 megapixels; 0 skips):
   a synthetic section of that size is generated under ``bench-out/sections/`` when missing
   (~3.5 min, 1.7 GB) and catalogued with its true mask: wall time and peak RSS.

Usage::

    PYTHONPATH=tools .venv/bin/python tools/bench_crystals.py
    PYTHONPATH=tools .venv/bin/python tools/bench_crystals.py --big 0 --pred s4096-seed7=pred.tif
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from _bench import machine, run

HERE = Path(__file__).resolve().parent


def olmap_mgmap(section: Path, work: Path) -> Path:
    """An mg# map of ``section`` by olmap itself (true mask, drift-corrected calibration)."""
    from olmap.composition.calibrate import calibrate
    from olmap.composition.mgmap import mg_map

    out = work / f"{section.name}.mgnum.tif"
    if out.exists():
        return out
    mask = section / "truth" / "olivine.tif"
    cal = calibrate(
        section / "bse.tif",
        mask,
        section / "epma.csv",
        standards_path=section / "standards.csv",
        sessions_path=section / "sessions.csv",
    )
    mg_map(
        section / "bse.tif",
        mask,
        cal.calibration,
        out,
        drift=cal.drift,
        regions=cal.sessions,
        overwrite=True,
    )
    return out


def accuracy(section: Path, mask: Path, mgmap: Path | None, split: bool) -> dict:
    from eval_crystals import evaluate

    from olmap.crystals.catalogue import crystal_catalogue
    from olmap.crystals.config import CrystalsConfig

    t0 = time.perf_counter()
    res = crystal_catalogue(
        section / "bse.tif",
        mask,
        mgmap_path=mgmap,
        sessions_path=section / "sessions.csv",
        config=CrystalsConfig(split_touching=split),
    )
    out = evaluate(section, res.catalogue)
    out["seconds"] = round(time.perf_counter() - t0, 2)
    return out


#: The child's own peak RSS: ru_maxrss of a child (what _bench.run reports) keeps the high-water
#: mark of the parent it was forked from, which here holds several sections' rasters.
VMHWM = r"""
def vmhwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
"""

BASELINE = (
    VMHWM
    + r"""
import json, sys, time
import numpy as np, rasterio
from rasterio import features
from scipy import ndimage as ndi
from skimage import measure
t0 = time.perf_counter()
section = sys.argv[1]
with rasterio.open(section + "/truth/olivine.tif") as src:
    mask = src.read(1) == 1
    transform = src.transform
with rasterio.open(section + "/bse.tif") as src:
    bse = src.read(1).astype(np.float32)
labels, n = ndi.label(mask, structure=np.ones((3, 3), bool))
rows = []
for region in measure.regionprops(labels, intensity_image=bse):
    if region.area <= 100:
        continue
    image = region.image
    d = ndi.distance_transform_edt(np.pad(image, 1))[1:-1, 1:-1]
    dmax = d.max()
    core, rim = image & (d > dmax / 2), image & (d <= dmax / 2) & (d > 2)
    grey = region.image_intensity
    r = grey[core].mean() / grey[rim].mean() if core.any() and rim.any() else float("nan")
    r0, c0, _, _ = region.bbox
    shapes = list(features.shapes(image.astype(np.uint8), mask=image,
                                  transform=transform @ transform.translation(c0, r0)))
    rows.append((region.label, region.area, region.perimeter, region.solidity,
                 region.orientation, r, len(shapes)))
print(json.dumps({"crystals": len(rows), "components": int(n),
                  "seconds_inside": round(time.perf_counter() - t0, 2), "vmhwm_mb": vmhwm()}))
"""
)

OLMAP = (
    VMHWM
    + r"""
import json, sys
from olmap.crystals.catalogue import crystal_catalogue
from olmap.crystals.config import CrystalsConfig
section, split = sys.argv[1], sys.argv[2] == "1"
mg = sys.argv[3] if len(sys.argv) > 3 else None
res = crystal_catalogue(section + "/bse.tif", section + "/truth/olivine.tif", mgmap_path=mg,
                        config=CrystalsConfig(split_touching=split))
print(json.dumps({"crystals": len(res.catalogue), "components": res.components,
                  "seconds_inside": round(res.seconds, 2), "vmhwm_mb": vmhwm()}))
"""
)


def timed(code: str, *args: str) -> dict:
    res = run([sys.executable, "-W", "ignore", "-c", code, *args])
    res.update(json.loads(res.pop("stdout").splitlines()[-1]))
    res["peak_rss_mb"] = res.pop("vmhwm_mb")
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--section", type=Path, action="append", help="repeatable")
    ap.add_argument("--pred", action="append", default=[], help="SECTION_NAME=MASK.tif")
    ap.add_argument("--speed-section", type=Path, default=Path("bench-out/sections/s8192-seed11"))
    ap.add_argument("--big", type=int, default=20000, help="side (px) of the large run; 0 skips")
    ap.add_argument("--out", type=Path, default=Path("bench-out/bench_crystals.json"))
    ap.add_argument("--skip-accuracy", action="store_true", help="only the speed runs")
    args = ap.parse_args()
    sys.path.insert(0, str(HERE))
    from bench_mgmap import default_sections

    sections = args.section or default_sections(Path("bench-out/sections"))
    work = args.out.parent / "bench_crystals_work"
    work.mkdir(parents=True, exist_ok=True)
    result: dict = {"machine": machine(), "accuracy": {}, "speed": {}}

    for section in [] if args.skip_accuracy else sections:
        mg = olmap_mgmap(section, work)
        mask = section / "truth" / "olivine.tif"
        for split in (True, False):
            key = f"{section.name} true mask" + ("" if split else ", no split")
            result["accuracy"][key] = accuracy(section, mask, mg, split)
            print(key, json.dumps({k: v for k, v in result["accuracy"][key].items()
                                   if k != "zoning_confusion"}), flush=True)  # fmt: skip
    for item in [] if args.skip_accuracy else args.pred:
        name, mask = item.split("=", 1)
        section = next(s for s in sections if s.name == name)
        mg = olmap_mgmap(section, work)
        key = f"{name} predicted mask ({Path(mask).name})"
        result["accuracy"][key] = accuracy(section, Path(mask), None, True)
        print(key, json.dumps(result["accuracy"][key]), flush=True)

    s = str(args.speed_section)
    for name, code, extra in (
        ("olmap, split", OLMAP, [s, "1"]),
        ("olmap, no split", OLMAP, [s, "0"]),
        ("in-memory regionprops loop", BASELINE, [s]),
    ):
        result["speed"][name] = timed(code, *extra)
        print(name, result["speed"][name], flush=True)
    base = result["speed"]["in-memory regionprops loop"]
    for name in ("olmap, split", "olmap, no split"):
        r = result["speed"][name]
        r["time_ratio_vs_loop"] = round(r["seconds"] / base["seconds"], 2)
        r["rss_ratio_vs_loop"] = round(r["peak_rss_mb"] / base["peak_rss_mb"], 3)

    if args.big:
        from olmap.synth.config import SynthConfig
        from olmap.synth.section import generate_section

        big = Path("bench-out/sections") / f"s{args.big}-seed7"
        if not (big / "section.json").exists():
            print(f"generating {big}", flush=True)
            generate_section(
                big, SynthConfig(width=args.big, height=args.big, seed=7, sessions=4), workers=2
            )
        key = f"olmap, split, {args.big}² ({args.big**2 / 1e6:.0f} Mpx)"
        result["speed"][key] = timed(OLMAP, str(big), "1", str(big / "truth" / "mgnum.tif"))
        print(key, result["speed"][key], flush=True)

    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

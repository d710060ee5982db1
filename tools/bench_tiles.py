"""Benchmark ``olmap tiles``: the two pyramid engines side by side, and the whole site.

Each measurement runs in its own process (wall time, the process's own peak RSS):

1. ``cog``: the BSE display COG (grey + alpha, overviews), the input of both engines;
2. ``vips`` and ``rasterio``: the XYZ pyramid of that COG with ``write_xyz_vips`` (libvips
   dzsave, Google layout) and ``write_xyz_rasterio`` (tiles read from the COG's overviews);
3. ``site-vips`` / ``site-rasterio``: the whole ``olmap tiles`` command (BSE, probability
   and mg# layers, the catalogue) with each engine.

A section of olmap's generator provides the inputs: its ``bse.tif``; its true mg# map
(``truth/mgnum.tif``) stands in for ``olmap mgmap``'s and a probability raster made from
its true olivine mask for ``olmap predict``'s (the tiler reads them as any float map and uint8
probability raster); its true crystals, vectorised by ``olmap crystals`` from the true mask,
form the catalogue. Only the speed and memory of the tiling are measured here.

Usage::

    python tools/bench_tiles.py --section bench-out/sections/s20000-seed7 \
        --work bench-out/bench_tiles --json bench-out/bench_tiles.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

from _bench import machine, run

PY = sys.executable
OLMAP = [PY, "-m", "olmap", "-q"]

COG = """
import sys
from olmap.tiles.config import TilesConfig
from olmap.tiles.site import _write_display_cog, display_scale
from olmap.io.cog import read_decimated
from pathlib import Path
raw, out = Path(sys.argv[1]), Path(sys.argv[2])
cfg = TilesConfig()
values, valid = read_decimated(raw)
scale = display_scale("bse", values, valid, cfg)
_write_display_cog(raw, out, scale, grey=True, config=cfg, progress=lambda n: None)
"""

PYRAMID = """
import sys
from olmap.io.xyz import write_xyz_rasterio, write_xyz_vips
engine, cog, out = sys.argv[1:4]
if engine == "vips":
    spec = write_xyz_vips(cog, out)
else:
    spec = write_xyz_rasterio(cog, out, workers=int(sys.argv[4]))
print(spec.n_tiles())
"""

PROB = """
import sys
import numpy as np
from olmap.io.raster import create_raster, raster_info, WindowSource, PROBABILITY_SCALE_TAG
from olmap.core.windows import block_windows
from scipy import ndimage as ndi
mask, out = sys.argv[1:3]
info = raster_info(mask)
with WindowSource(mask) as src, create_raster(out, height=info.height, width=info.width,
        dtype="uint8", transform=info.transform, band_names=["p_olivine"],
        tags={PROBABILITY_SCALE_TAG: repr(1 / 255)}) as ds:
    for w in block_windows(info.height, info.width, 2048):
        m, _ = src.read(w)
        p = ndi.gaussian_filter((m == 1).astype(np.float32), 1.5)
        ds.write((p * 255).round().astype("uint8")[None], window=w)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--section", type=Path, required=True)
    parser.add_argument("--work", type=Path, default=Path("bench-out/bench_tiles"))
    parser.add_argument("--json", type=Path, default=Path("bench-out/bench_tiles.json"))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--skip-site", action="store_true", help="Only the engines.")
    args = parser.parse_args()
    work, sec = args.work, args.section
    work.mkdir(parents=True, exist_ok=True)
    results = work / "results"
    results.mkdir(exist_ok=True)
    # Inputs of the site (made once, not timed).
    bse = sec / "bse.tif"
    if not (results / "prob.tif").exists():
        subprocess.run(
            [PY, "-c", PROB, str(sec / "truth/olivine.tif"), str(results / "prob.tif")], check=True
        )
    if not (results / "catalogue").exists():
        subprocess.run(
            [
                *OLMAP,
                "crystals",
                "--bse",
                str(bse),
                "--mask",
                str(sec / "truth/olivine.tif"),
                "--mgmap",
                str(sec / "truth/mgnum.tif"),
                "--out",
                str(results / "catalogue"),
            ],
            check=True,
        )
    rows = {"machine": machine(), "section": str(sec)}
    raw = work / "bse_raw.tif"
    if not raw.exists():
        subprocess.run(
            [
                PY,
                "-c",
                "import sys; from olmap.io.cog import copy_cog; copy_cog(sys.argv[1], sys.argv[2])",
                str(bse),
                str(raw),
            ],
            check=True,
        )
    display = work / "bse_rgb.tif"
    display.unlink(missing_ok=True)
    rows["cog"] = run([PY, "-c", COG, str(raw), str(display)])
    print("display COG", rows["cog"], flush=True)
    for engine in ("vips", "rasterio"):
        out = work / f"tiles_{engine}"
        shutil.rmtree(out, ignore_errors=True)
        res = run([PY, "-c", PYRAMID, engine, str(display), str(out), str(args.workers)])
        res["tiles"] = int(res.pop("stdout"))
        res["megabytes"] = round(
            sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) / 1e6, 1
        )
        rows[engine] = res
        print(engine, res, flush=True)
        shutil.rmtree(out, ignore_errors=True)
    if not args.skip_site:
        for engine in ("vips", "rasterio"):
            site = work / f"site_{engine}"
            res = run(
                [
                    *OLMAP,
                    "tiles",
                    "--bse",
                    str(bse),
                    "--prob",
                    str(results / "prob.tif"),
                    "--mgnum",
                    str(sec / "truth/mgnum.tif"),
                    "--catalogue",
                    str(results / "catalogue/crystals.gpkg"),
                    "--backend",
                    engine,
                    "--out",
                    str(site),
                    "--overwrite",
                ]
            )
            res["stdout"] = " ".join(res["stdout"].split())
            rows[f"site-{engine}"] = res
            print(f"site-{engine}", res, flush=True)
            shutil.rmtree(site, ignore_errors=True)
    args.json.write_text(json.dumps(rows, indent=2))
    print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()

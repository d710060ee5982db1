"""Time ``olmap crystals`` on one very large crystal (issue 21: it once ran for > 15 min).

Either one zoned, cracked phenocryst SIZE px long alone, or (``--bse``) a mask holding one
SIZE x SIZE px square over a section's BSE (the section's grains, glass and cracks under one
mask: thousands of pieces to split and measure); optionally with added Gaussian noise. The
baseline is the
same command with ``--no-split`` (one crystal per component, the paper's method), run side by
side. Each run is its own process; peak RSS is its own.

Example::

    PYTHONPATH=tools .venv/bin/python tools/bench_big_crystal.py \\
        --bse bench-out/sections/s4096-seed2026/bse.tif --size 2000 --noise 0 6
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from _bench import machine, run
from rasterio.windows import Window

from olmap.io.raster import raster_info, read_raster, write_raster


def zoned_crystal(side: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """One elliptical phenocryst ``size`` px long: normal zoning (a brighter rim), a crack
    across it, 3 grey levels of noise, on a darker groundmass; its mask."""
    yy, xx = np.mgrid[:side, :side]
    r = np.hypot((yy - side / 2) / (0.5 * size), (xx - side / 2) / (0.4 * size))
    mask = r < 1
    crack = (np.abs(yy - xx - 0.1 * size) < 1.5) & (r < 0.8)
    grey = np.where(mask, 110 + 30 * r**2, 70.0) + np.random.default_rng(1).normal(0, 3, r.shape)
    grey[crack] = 20
    return grey.astype(np.float32), (mask & ~crack).astype(np.uint8)


def write_inputs(bse: Path | None, size: int, noise_sd: float, out: Path) -> tuple[Path, Path]:
    """A (size + 64)² crop of ``bse`` with a mask holding one size² square crystal on it (the
    section's grains under one mask), or without ``bse`` one zoned crystal; plus noise."""
    side = size + 64
    if bse is None:
        grey, mask = zoned_crystal(side, size)
    else:
        if min(raster_info(bse).shape) < side:
            raise SystemExit(f"{bse}: smaller than {side} px")
        grey = read_raster(bse, window=Window(0, 0, side, side))[0].astype(np.float32)
        mask = np.zeros((side, side), np.uint8)
        mask[32 : 32 + size, 32 : 32 + size] = 1
    grey += np.random.default_rng(0).normal(0, noise_sd, grey.shape) if noise_sd else 0
    bse_out = write_raster(out / "bse.tif", np.clip(grey, 0, 255).astype(np.uint8), pixel_size_um=1)
    mask_out = write_raster(
        out / "mask.tif", mask, pixel_size_um=1, tags={"classes": "0=background,1=olivine"}
    )
    return bse_out, mask_out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--bse", type=Path, help="a section's 8-bit BSE (default: one zoned crystal alone)"
    )
    parser.add_argument("--size", type=int, default=2000, help="crystal side in px")
    parser.add_argument("--noise", type=float, nargs="+", default=[0.0], help="added noise sd")
    args = parser.parse_args()
    print(f"# {machine()}", file=sys.stderr)
    olmap = [sys.executable, "-m", "olmap", "crystals"]
    for sd in args.noise:
        with tempfile.TemporaryDirectory() as tmp:
            bse, mask = write_inputs(args.bse, args.size, sd, Path(tmp))
            for method, extra in (("one crystal per component (baseline)", ["--no-split"]),
                                  ("split (default)", [])):  # fmt: skip
                out = Path(tmp) / f"cat{len(extra)}"
                res = run([*olmap, "--bse", str(bse), "--mask", str(mask), "--out", str(out),
                           *extra])  # fmt: skip
                summary = json.loads((out / "summary.json").read_text())
                row = {k: v for k, v in res.items() if k != "stdout"}
                row.update(method=method, size=args.size, noise_sd=sd,
                           crystals=summary.get("crystals"))  # fmt: skip
                print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""Peak memory of reading element maps from Bruker .bcf hypermaps: olmap vs a full decode.

For each of hyperspy 1.6.5's real test hypermaps (fetched into ``.cache/testdata`` by the test
helper), three child processes, each measured with ``os.wait4``:

- *imports only*: Python + numpy + RosettaSciIO loaded, nothing read (the floor);
- *full cube*: RosettaSciIO decodes the whole spectrum cube (all channels), then element
  windows are summed (what loading with HyperSpy and integrating lines does);
- *olmap*: ``read_bcf_element_maps``, which decodes only up to the highest line.

Usage::

    python tools/bench_bcf.py --elements Mg Ca Al Fe Si --out bench-out
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from _bench import machine, run

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.realdata import bruker_dir

FILES = [
    "P45_the_default_job.bcf",
    "bcf_v2_50x50px.bcf",
    "30x30_instructively_packed_16bit_compressed.bcf",
    "bcf-edx-ebsd.bcf",
]

IMPORTS = "import numpy, rsciio.bruker, olmap.io.bruker; print(0)"
FULL = """
import sys, numpy as np
from rsciio.bruker import file_reader
from olmap.core.xray import channel_slices, element_maps_from_cube
s = file_reader(sys.argv[1], select_type="spectrum_image", lazy=False)[0]
e = s["axes"][2]
cube = s["data"]
sl = channel_slices(sys.argv[2].split(","), offset_kev=e["offset"], scale_kev=e["scale"],
                    n_channels=cube.shape[2])
maps = element_maps_from_cube(cube, sl)
print(cube.nbytes)
"""
OLMAP = """
import sys
from olmap.io.bruker import read_bcf_element_maps
m = read_bcf_element_maps(sys.argv[1], elements=sys.argv[2].split(","))
print(sum(a.nbytes for a in m.maps.values()))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--elements", nargs="+", default=["Mg", "Ca", "Al", "Fe", "Si"])
    ap.add_argument("--out", type=Path, default=Path("bench-out"))
    args = ap.parse_args()
    folder = bruker_dir()
    elements = ",".join(args.elements)
    floor = run([sys.executable, "-c", IMPORTS])["peak_rss_mb"]
    results: dict = {"machine": machine(), "imports_only_mb": floor, "files": []}
    for name in FILES:
        path = str(folder / name)
        full = run([sys.executable, "-c", FULL, path, elements])
        ours = run([sys.executable, "-c", OLMAP, path, elements])
        row = {
            "file": name,
            "file_mb": round((folder / name).stat().st_size / 2**20, 2),
            "full_cube_mb": round(int(full["stdout"]) / 2**20, 1),
            "full_peak_mb": full["peak_rss_mb"],
            "olmap_peak_mb": ours["peak_rss_mb"],
            "full_above_floor_mb": round(full["peak_rss_mb"] - floor, 1),
            "olmap_above_floor_mb": round(ours["peak_rss_mb"] - floor, 1),
            "full_seconds": full["seconds"],
            "olmap_seconds": ours["seconds"],
        }
        results["files"].append(row)
        print(json.dumps(row), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_bcf.json").write_text(json.dumps(results, indent=2))
    print(f"imports only: {floor} MB")


if __name__ == "__main__":
    main()

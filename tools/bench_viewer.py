"""Benchmark the viewer in headless Chromium: load time and redraw time with many crystals.

Serves a site with ``olmap serve``, opens it in Debian's Chromium (Playwright), and measures

* ``load_ms``: navigation to the crystals drawn (``window.olmapViewer`` ready, one frame);
* ``zoom_ms``: one zoom step in or out, from ``setZoom`` to the redrawn frame (the canvas of
  outlines is redrawn on every zoom; Leaflet re-simplifies every outline in view);
* ``pan_ms``: a pan of half the window, to the redrawn frame.

Medians of repeated steps, at the whole-section view (every crystal in view) and at full
resolution. Frame times above ~100 ms are visible as stutter.

Usage::

    python tools/bench_viewer.py SITE_DIR [--json bench-out/bench_viewer.json]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
from pathlib import Path

from _bench import machine
from playwright.sync_api import sync_playwright

ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

STEP = """async ([kind, arg]) => {
  const v = window.olmapViewer, map = v.map;
  const frame = () => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
  const t0 = performance.now();
  const done = new Promise(r => map.once(kind === "zoom" ? "zoomend" : "moveend", r));
  if (kind === "zoom") map.setZoom(arg, {animate: false});
  else map.panBy([arg, 0], {animate: false});
  await done; await frame();
  return performance.now() - t0;
}"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("site", type=Path)
    parser.add_argument("--json", type=Path, default=Path("bench-out/bench_viewer.json"))
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    cmd = [sys.executable, "-m", "olmap", "serve", str(args.site), "--port", "0"]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as srv:
        try:
            url = re.search(r"http://\S+/", srv.stdout.readline()).group(0)
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
                page = browser.new_page(viewport={"width": 1600, "height": 1000})
                page.goto(url)
                page.wait_for_function("() => window.olmapViewer !== undefined")
                load_ms = page.evaluate(
                    "() => new Promise(r => requestAnimationFrame(() => r(performance.now())))"
                )
                n = page.evaluate("window.olmapViewer.crystalCount()")
                z0 = page.evaluate("window.olmapViewer.map.getZoom()")
                zmax = page.evaluate("window.OLMAP_SITE.max_zoom")
                res = {
                    "machine": machine(),
                    "site": str(args.site),
                    "crystals": n,
                    "load_ms": round(load_ms),
                }
                for name, zoom in (("whole section", z0), ("full resolution", zmax)):
                    page.evaluate(
                        f"() => {{ window.olmapViewer.map.setZoom({zoom}, {{animate: false}}); }}"
                    )
                    page.wait_for_function(
                        "() => [...document.querySelectorAll('.leaflet-tile')]"
                        ".every(t => t.complete)",
                        timeout=120_000,
                    )
                    zooms = []
                    for _ in range(args.repeats):
                        zooms.append(page.evaluate(STEP, ["zoom", zoom + 1]))
                        zooms.append(page.evaluate(STEP, ["zoom", zoom]))
                    pans = [
                        page.evaluate(STEP, ["pan", 800 * (-1) ** i])
                        for i in range(2 * args.repeats)
                    ]
                    res[name] = {
                        "zoom": zoom,
                        "zoom_ms": round(statistics.median(zooms)),
                        "zoom_ms_max": round(max(zooms)),
                        "pan_ms": round(statistics.median(pans)),
                        "pan_ms_max": round(max(pans)),
                    }
                browser.close()
        finally:
            srv.terminate()
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()

"""The viewer in a real browser: Debian's headless Chromium, driven by Playwright, loads a site
from ``olmap serve``.

Chromium is installed by ``make test`` (and so by CI's ``.ci/run``) from Debian's packages;
Playwright only drives it (no browser download). Without it this test fails and says so.
The screenshot goes to ``OLMAP_SCREENSHOT_DIR`` when set (else the test's temporary folder).
"""

from __future__ import annotations

import os
import subprocess
import sys
from io import BytesIO
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
from affine import Affine
from PIL import Image
from playwright.sync_api import sync_playwright
from shapely.geometry import box

from olmap.io.raster import write_raster
from olmap.io.results import find_results
from olmap.io.vector import read_catalogue
from olmap.tiles.site import build_site

CHROMIUM = Path(os.environ.get("OLMAP_CHROMIUM", "/usr/bin/chromium"))
# As the machine's notes say: no background traffic to Google hosts from a closed network.
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture()
def page(tmp_path):
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} not found: `make test` installs Debian's chromium")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 860})
            yield context.new_page()
        finally:
            browser.close()


def _settle(page):
    page.wait_for_load_state("networkidle")
    page.wait_for_function(
        "() => [...document.querySelectorAll('.leaflet-tile')].every(t => t.complete)"
    )


def test_viewer_loads_tiles_and_crystals_and_opens_popups(page, served, results_dir, tmp_path):
    failed, errors = [], []
    page.on("requestfailed", lambda r: failed.append(f"{r.url} ({r.failure})"))
    page.on(
        "response", lambda r: failed.append(f"{r.url} ({r.status})") if r.status >= 400 else None
    )
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)

    page.goto(served)
    _settle(page)
    assert page.locator(".olmap-tiles-bse img.leaflet-tile-loaded").count() >= 1

    # Every crystal of the catalogue is a polygon; the filter lists them by group.
    cat = read_catalogue(results_dir / "catalogue" / "crystals.gpkg")
    assert page.evaluate("window.olmapViewer.crystalCount()") == len(cat)
    counts = page.locator(".olmap-filter .count").all_inner_texts()
    assert sum(int(c.replace(",", "")) for c in counts) == len(cat)

    # Switch layers: probability as the base, mg# over it; its legend appears.
    page.get_by_label("Olivine probability").check()
    page.get_by_label("mg#").check()
    _settle(page)
    for key in ("prob", "mgnum"):
        assert page.locator(f".olmap-tiles-{key} img.leaflet-tile-loaded").count() >= 1, key
    assert page.locator(".olmap-legend [data-layer=mgnum] .bar").is_visible()
    assert page.locator(".olmap-legend [data-layer=prob]").count() == 1

    # Click the largest crystal at full resolution: its popup names it, with its crop.
    largest = cat.loc[cat["area_um2"].idxmax()]
    point = largest.geometry.representative_point()
    page.evaluate(
        "([x, y, z]) => { window.olmapViewer.map.setView([y, x], z, {animate: false}); }",
        [point.x, point.y, 2],
    )
    _settle(page)
    x, y = page.evaluate("([x, y]) => window.olmapViewer.pagePoint(x, y)", [point.x, point.y])
    page.mouse.click(x, y)
    popup = page.locator(".leaflet-popup-content")
    popup.wait_for()
    assert popup.locator(".crystal-id").inner_text() == str(largest["id"])
    assert f"{largest['area_um2']:,.0f}" in popup.inner_text()
    crop = popup.locator("img")
    crop.wait_for()
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=crop.element_handle())
    scale = page.locator(".olmap-scale").inner_text()
    assert scale.endswith(("µm", "mm"))

    page.wait_for_timeout(500)  # the popup's fade-in and auto-pan end
    shots = Path(os.environ.get("OLMAP_SCREENSHOT_DIR", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=shots / "viewer.png")
    assert (shots / "viewer.png").stat().st_size > 10_000

    # The class filter hides a group's polygons.
    page.keyboard.press("Escape")
    n_microlites = int((cat["class"] == "microlite").sum())
    page.locator('input[data-group="microlite"]').uncheck()
    visible = page.evaluate(
        "() => window.olmapViewer.groups.filter(g => window.olmapViewer.map.hasLayer(g))"
        ".reduce((n, g) => n + g.getLayers().length, 0)"
    )
    assert visible == len(cat) - n_microlites

    # Zoom out to the whole section and back in: every tile request is answered.
    page.evaluate("() => { window.olmapViewer.map.setZoom(0, {animate: false}); }")
    _settle(page)
    assert failed == [] and errors == []
    assert page.evaluate("window.olmapViewer.tileErrors.length") == 0


def test_tiles_and_outlines_line_up_at_any_pixel_size_and_origin(page, tmp_path):
    """0.5 µm pixels, the section's corner at (100, 40) µm: a bright square in the BSE and
    the crystal drawn over it must land on the same screen pixels."""
    h, w, px, x0, y0 = 600, 900, 0.5, 100.0, 40.0
    bse = np.full((h, w), 30, np.uint8)
    bse[200:260, 500:580] = 220  # rows/cols in px
    transform = Affine(px, 0, x0, 0, -px, y0 + h * px)
    write_raster(tmp_path / "bse.tif", bse, transform=transform)
    # The square in µm: x 100 + 500*0.5 .. 100 + 580*0.5, y top - 260*0.5 .. top - 200*0.5.
    top = y0 + h * px
    square = box(x0 + 250, top - 130, x0 + 290, top - 100)
    cat = gpd.GeoDataFrame({"id": [7], "class": ["microlite"], "zoning": [""]}, geometry=[square])
    (tmp_path / "catalogue").mkdir()
    cat.to_parquet(tmp_path / "catalogue" / "crystals.parquet")
    site = tmp_path / "site"
    build_site(find_results(tmp_path), site)
    cmd = [sys.executable, "-m", "olmap", "serve", str(site), "--port", "0"]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as srv:
        try:
            url = srv.stdout.readline().split(" at ")[1].split()[0]
            page.goto(url)
            page.evaluate(
                "([x, y]) => { window.olmapViewer.map.setView([y, x], 3, {animate: false}); }",
                [square.centroid.x, square.centroid.y],
            )
            _settle(page)
            page.locator('input[data-group="microlite"]').uncheck()  # see the tile itself

            def grey(x_um, y_um):
                x, y = page.evaluate("([x, y]) => window.olmapViewer.pagePoint(x, y)", [x_um, y_um])
                shot = page.screenshot(clip={"x": x, "y": y, "width": 1, "height": 1})
                return Image.open(BytesIO(shot)).convert("L").getpixel((0, 0))

            # Just inside and just outside each edge of the square (1 µm = 4 screen px here).
            c = square.centroid
            assert grey(c.x, c.y) > 180
            for dx, dy in ((18, 0), (-18, 0), (0, 13), (0, -13)):
                assert grey(c.x + dx, c.y + dy) > 180, (dx, dy)
            for dx, dy in ((22, 0), (-22, 0), (0, 17), (0, -17)):
                assert grey(c.x + dx, c.y + dy) < 80, (dx, dy)
            # The outline is where the tile shows the square: a click inside opens crystal 7.
            page.locator('input[data-group="microlite"]').check()
            x, y = page.evaluate(
                "([x, y]) => window.olmapViewer.pagePoint(x, y)", [c.x + 15, c.y + 10]
            )
            page.mouse.click(x, y)
            page.locator(".leaflet-popup-content .crystal-id").wait_for()
            assert page.locator(".leaflet-popup-content .crystal-id").inner_text() == "7"
        finally:
            srv.terminate()

"""``olmap tiles`` and ``olmap serve``: the offline viewer of a section."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from olmap.cli._console import progress_bar, stderr, stdout
from olmap.cli._options import Overwrite
from olmap.io.config import load_config
from olmap.io.outputs import claim_outputs
from olmap.io.results import find_results
from olmap.io.serve import make_server, server_url
from olmap.tiles.config import TilesConfig
from olmap.tiles.site import LAYER_TITLES, build_site


def tiles(
    results_dir: Annotated[
        Path | None,
        typer.Argument(
            help="Result folder holding bse.tif (or section/bse.tif), prob.tif, mgnum.tif and "
            "catalogue/ (as olmap's commands name them).",
            show_default=False,
        ),
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="Site folder to write.")] = Path("site"),
    bse: Annotated[
        Path | None, typer.Option("--bse", help="BSE mosaic (overrides the folder's).")
    ] = None,
    prob: Annotated[
        Path | None, typer.Option("--prob", help="Probability raster of olmap predict.")
    ] = None,
    mgnum: Annotated[Path | None, typer.Option("--mgnum", help="mg# map of olmap mgmap.")] = None,
    catalogue: Annotated[
        Path | None,
        typer.Option("--catalogue", help="crystals.gpkg, .parquet or .geojson of olmap crystals."),
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="YAML of tile parameters (configs/tiles/).")
    ] = None,
    backend: Annotated[
        str | None,
        typer.Option("--backend", help="Pyramid engine: vips (libvips dzsave) or rasterio."),
    ] = None,
    mg_range: Annotated[
        tuple[float, float] | None,
        typer.Option(
            "--mg-range", help="mg# colour range LOW HIGH [default: 1st-99th percentile]."
        ),
    ] = None,
    title: Annotated[str | None, typer.Option("--title", help="Title shown in the viewer.")] = None,
    workers: Annotated[
        int | None,
        typer.Option("--workers", min=1, max=64, help="Threads of the rasterio engine."),
    ] = None,
    overwrite: Overwrite = False,
) -> None:
    """Cloud-optimised GeoTIFFs, XYZ tiles and an offline web viewer of a section.

    For BSE, olivine probability and mg# (those present) it writes cog/LAYER.tif (values),
    cog/LAYER_rgb.tif (colours) and tiles/LAYER/{z}/{y}/{x}.png (zoom 0: the whole section in
    one tile), then the crystal catalogue as outlines coloured by class and zoning, and
    index.html with Leaflet (vendored: no network needed). Open OUT/index.html in a
    browser, or run olmap serve OUT. Ctrl-C keeps the finished layers; the same command
    continues.

    Example: olmap tiles results/ --out site/
    """
    settings = load_config(TilesConfig, config, backend=backend, mg_range=mg_range, workers=workers)
    files = find_results(results_dir, bse=bse, prob=prob, mgnum=mgnum, catalogue=catalogue)
    claim = claim_outputs([out], inputs=[*files.paths(), config], overwrite=overwrite)
    missing = [LAYER_TITLES[k] for k in ("prob", "mgnum") if getattr(files, k) is None]
    if missing or files.catalogue is None:
        what = missing + ([] if files.catalogue is not None else ["crystal catalogue"])
        stderr.print(f"[yellow]note:[/] no {', '.join(what)} found; the viewer shows the rest")
    with claim, progress_bar("tiles", total=None) as advance:
        result = build_site(
            files, out, settings, title=title, overwrite=overwrite, progress=advance.stage
        )
    scales = ", ".join(
        f"{LAYER_TITLES[k]} {s.vmin:.4g}-{s.vmax:.4g}" for k, s in result.scales.items()
    )
    stdout.print(
        f"{len(result.layers)} layers ({scales}), zoom 0-{result.spec.max_zoom}, "
        f"{result.tiles:,} tiles, {result.crystals:,} crystals; {result.seconds:.1f} s"
        + (f" (resumed: {', '.join(result.resumed)} done before)" if result.resumed else "")
    )
    stdout.print(f"Viewer: {result.out / 'index.html'}", soft_wrap=True)  # a path: never wrapped
    stdout.print(f"Serve it with: olmap serve {out}", soft_wrap=True)


def serve(
    site: Annotated[Path, typer.Argument(help="Site folder written by olmap tiles.")],
    port: Annotated[
        int, typer.Option("--port", min=0, max=65535, help="TCP port (0: any free port).")
    ] = 8000,
    host: Annotated[
        str, typer.Option("--host", help="Interface to listen on (default: this machine only).")
    ] = "127.0.0.1",
) -> None:
    """Serve a viewer site over HTTP and print its URL; Ctrl-C stops.

    Example: olmap serve site/ --port 8000
    """
    server = make_server(site, host=host, port=port)
    stdout.print(f"Serving {site} at {server_url(server)} (Ctrl-C stops)", soft_wrap=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        stderr.print("stopped")
    finally:
        server.server_close()

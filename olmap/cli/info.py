"""``olmap info``: what olmap sees in a raster (shape, pixel size, bands)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from olmap.cli._console import stdout
from olmap.io.raster import micrometre_transform, raster_info


def info(
    path: Annotated[Path, typer.Argument(help="GeoTIFF, VRT, or a plain TIFF/PNG image.")],
    pixel_size: Annotated[
        float | None,
        typer.Option(
            "--pixel-size",
            min=0.001,
            max=1000.0,
            help="Pixel size in µm (for images without a georeference).",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (machine-readable).")] = False,
) -> None:
    """Show a raster's shape, data type, pixel size in µm, bands and extent.

    Example: olmap info bse.tif      (or: olmap info tile_001.png --pixel-size 1.0)
    """
    ri = raster_info(path)
    size = pixel_size if pixel_size is not None else ri.pixel_size_um
    transform = micrometre_transform(ri.height, size) if pixel_size is not None else ri.transform
    record = {
        "path": str(path),
        "height": ri.height,
        "width": ri.width,
        "bands": ri.count,
        "dtype": ri.dtype,
        "pixel_size_um": size,
        "band_names": list(ri.band_names),
        "nodata": ri.nodata,
        "transform": list(transform)[:6],
        "extent_um": None if size is None else [0.0, 0.0, ri.width * size, ri.height * size],
        "tags": ri.tags,
    }
    if as_json:
        typer.echo(json.dumps(record))
        return
    stdout.print(f"[bold]{path}[/]: {ri.width} x {ri.height} px, {ri.count} band(s) of {ri.dtype}")
    if size is None:
        stdout.print("pixel size: unknown (no georeference; give --pixel-size in µm)")
    else:
        stdout.print(
            f"pixel size: {size:g} µm; extent {ri.width * size:g} x {ri.height * size:g} µm"
        )
    if any(ri.band_names):
        stdout.print("bands: " + ", ".join(b or "(unnamed)" for b in ri.band_names))
    if ri.nodata is not None:
        stdout.print(f"nodata: {ri.nodata}")

"""``olmap mosaic``: acquisition tiles -> one mosaic (VRT or BigTIFF), with a seam report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from olmap.cli._console import stderr, stdout
from olmap.cli._options import Overwrite
from olmap.mosaic.build import MosaicResult, build_mosaic
from olmap.mosaic.layout import ORDERS


def print_mosaic_report(result: MosaicResult) -> None:
    """Mosaic size, and how much tiles differ where they overlap (stdout)."""
    stdout.print(
        f"Mosaic {result.path}: {result.width} x {result.height} px at "
        f"{result.pixel_size_um:g} µm/px from {len(result.placements)} tiles"
    )
    seams = result.seams
    if len(seams):
        diff = seams["brightness_difference"].abs()
        ratio = seams["contrast_ratio"]
        worst = seams.loc[diff.idxmax()]
        stdout.print(
            f"Seams ({len(seams)} overlaps): brightness difference median "
            f"{diff.median():.2f}, max {diff.max():.2f} grey levels ({worst['tile_a']} vs "
            f"{worst['tile_b']}); contrast ratio {ratio.min():.3f}-{ratio.max():.3f}"
        )
        if result.equalised:
            after = seams["brightness_difference_after"].abs()
            stdout.print(
                f"Equalised: gains {result.gains.min():.3f}-{result.gains.max():.3f}, offsets "
                f"{result.offsets.min():.2f}-{result.offsets.max():.2f}; brightness difference "
                f"left: median {after.median():.2f}, max {after.max():.2f}"
            )
        elif diff.max() > 2:
            stderr.print(
                "[yellow]note:[/] tiles differ by more than 2 grey levels in their overlaps; "
                "seams bias the BSE -> mg# calibration. --equalise corrects them.",
                soft_wrap=True,
            )
    for note in result.notes:
        stderr.print(f"[yellow]note:[/] {note}", soft_wrap=True)
    stdout.print(f"Wrote {result.path}, {result.seams_path} and {result.tiles_path}")


def mosaic(
    tiles_dir: Annotated[Path, typer.Argument(help="Folder of tile images (one band each).")],
    out: Annotated[
        Path, typer.Option("--out", help="Output mosaic: .vrt (no pixel copy) or .tif (BigTIFF).")
    ],
    rows: Annotated[
        int | None, typer.Option("--rows", min=1, help="Tile rows of the grid.")
    ] = None,
    cols: Annotated[
        int | None, typer.Option("--cols", min=1, help="Tile columns of the grid.")
    ] = None,
    overlap: Annotated[
        str,
        typer.Option(
            "--overlap",
            help="Neighbour overlap: px (64), fraction of a tile (0.1), VxH px, or auto "
            "(phase correlation).",
        ),
    ] = "auto",
    order: Annotated[
        str, typer.Option("--order", help=f"Acquisition order: {', '.join(ORDERS)}.")
    ] = "row",
    snake: Annotated[
        bool, typer.Option("--snake", help="Serpentine order (same as --order snake).")
    ] = False,
    positions: Annotated[
        Path | None,
        typer.Option(
            "--positions", help="CSV file,x_um,y_um: stage position of each tile's top-left."
        ),
    ] = None,
    y_down: Annotated[
        bool,
        typer.Option("--y-down", help="Positions CSV: y grows downwards (default: up, map units)."),
    ] = False,
    pixel_size: Annotated[
        float | None,
        typer.Option("--pixel-size", min=1e-6, help="Pixel size in µm [default: the tiles']."),
    ] = None,
    equalise: Annotated[
        bool,
        typer.Option("--equalise", help="Correct tile brightness/contrast so overlaps agree."),
    ] = False,
    overwrite: Overwrite = False,
) -> None:
    """Assemble acquisition tiles into one mosaic and report seams between tiles.

    Tiles come in acquisition order (natural file-name order) on a grid (--rows, --cols,
    --overlap, --order) or at stage positions (--positions: columns file, x_um, y_um of each
    tile's top-left corner, y up as in olmap's map units unless --y-down). Neighbours meet half-way
    through their overlap. Brightness and contrast differences in every overlap are reported
    (they bias the BSE -> mg# calibration): per overlap in OUT's .seams.csv, per tile in its
    .tiles.csv. --equalise fits one gain and offset per tile so overlaps agree (applied by GDAL
    when the VRT is read).

    Example: olmap mosaic tiles/ --rows 10 --cols 12 --out mosaic.vrt
    """
    if snake:
        order = "snake"
    result = build_mosaic(
        tiles_dir,
        out,
        rows=rows,
        cols=cols,
        overlap=_overlap(overlap, tiles_dir, positions),
        order=order,
        positions=positions,
        pixel_size_um=pixel_size,
        y_down=y_down,
        equalise_tiles=equalise,
        overwrite=overwrite,
    )
    print_mosaic_report(result)


def _overlap(text: str, tiles_dir: Path, positions: Path | None) -> tuple[int, int] | None:
    """``auto`` -> None; ``64`` or ``48x64`` px; ``0.1`` = that fraction of the tile side."""
    text = text.strip().lower()
    if text == "auto" or positions is not None:
        return None
    try:
        if "x" in text:
            v, h = (int(p) for p in text.split("x"))
            return v, h
        value = float(text)
    except ValueError as exc:
        raise typer.BadParameter(
            f"{text!r}: give px (64), a fraction (0.1), VxH (48x64) or auto", param_hint="--overlap"
        ) from exc
    if value < 0:
        raise typer.BadParameter("must not be negative", param_hint="--overlap")
    if value < 1:  # a fraction of the tile
        from olmap.io.raster import raster_info
        from olmap.mosaic.build import find_tiles

        shape = raster_info(find_tiles(tiles_dir)[0]).shape
        return int(np.rint(value * shape[0])), int(np.rint(value * shape[1]))
    return int(value), int(value)

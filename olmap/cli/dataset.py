"""``olmap dataset``: training tiles + manifest from BSE and a label map, split by session."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from rich.table import Table

from olmap.cli._console import progress_bar, stderr, stdout
from olmap.cli._options import Overwrite
from olmap.dataset.build import DEFAULT_TILE, DatasetSummary, build_dataset
from olmap.synth.config import parse_size


def _size(value: str | None, option: str) -> tuple[int, int] | None:
    """``WIDTHxHEIGHT`` -> (rows, cols)."""
    if value is None:
        return None
    try:
        width, height = parse_size(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=option) from exc
    return height, width


def print_dataset_summary(summary: DatasetSummary) -> None:
    """The per-session table (like the paper's Table 1) and split totals."""
    sessions = summary.sessions
    share_cols = [c for c in sessions.columns if c.endswith("_pct") and c != "ignore_pct"]
    table = Table(
        "session",
        "split",
        "tiles",
        *(c.removesuffix("_pct") + " %" for c in share_cols),
        "ignore %",
        title=f"Training tiles per session ({summary.out_dir})",
    )

    def pct(value: float) -> str:
        return "-" if pd.isna(value) else f"{value:.2f}"

    # Records, not itertuples: class names may hold spaces or hyphens ("Fe-Ti oxide").
    for d in sessions.to_dict("records"):
        table.add_row(
            str(d["session"]),
            d["split"],
            str(d["n_tiles"]),
            *(pct(d[c]) for c in share_cols),
            pct(d["ignore_pct"]),
        )
    stdout.print(table)
    counts = summary.split_counts()
    stdout.print(
        "Tiles per split: "
        + ", ".join(f"{s} {counts.get(s, 0)}" for s in ("train", "val", "test"))
        + f"; skipped (under-labelled) {summary.skipped}; "
        f"train BSE mean {summary.bse_mean:.2f}, std {summary.bse_std:.2f}"
    )
    for note in summary.notes:
        stderr.print(f"[yellow]note:[/] {note}", soft_wrap=True)


def dataset(
    bse: Annotated[Path, typer.Option("--bse", help="BSE mosaic (GeoTIFF).")],
    labels: Annotated[
        Path, typer.Option("--labels", help="Label map from olmap masks, same grid.")
    ],
    sessions: Annotated[
        Path,
        typer.Option("--sessions", help="sessions.csv: session,x0_um,y0_um,x1_um,y1_um,split."),
    ],
    out: Annotated[Path, typer.Option("--out", help="Output folder (created).")],
    tile: Annotated[
        str, typer.Option("--tile", help="Tile WIDTHxHEIGHT in px (the microscope's frame).")
    ] = f"{DEFAULT_TILE[1]}x{DEFAULT_TILE[0]}",
    stride: Annotated[
        str | None,
        typer.Option(
            "--stride",
            help="Step WIDTHxHEIGHT between tiles (default: the tile size; the last tile of a "
            "row/column is moved back to the session's edge and may overlap its neighbour).",
        ),
    ] = None,
    min_labelled: Annotated[
        float,
        typer.Option(
            "--min-labelled", min=0.0, max=1.0, help="Skip tiles with less labelled area."
        ),
    ] = 0.5,
    overwrite: Overwrite = False,
) -> None:
    """Cut BSE + label tiles inside each session and split them by session (never per tile).

    Writes OUT/image.npy and OUT/labels.npy (memory-mapped tile stacks), manifest.csv (tile_id,
    window, µm bounds, session, split, class fractions), sessions.csv (per-session table like
    the paper's Table 1), dataset.json, layout.png and examples.png.

    Example: olmap dataset --bse bse.tif --labels mask.tif --sessions sessions.csv --out dataset/
    """
    tile_rc = _size(tile, "--tile")
    stride_rc = _size(stride, "--stride")
    with progress_bar("dataset", total=None, unit="tiles") as advance:
        summary = build_dataset(
            bse,
            labels,
            sessions,
            out,
            tile=tile_rc or DEFAULT_TILE,
            stride=stride_rc,
            min_labelled=min_labelled,
            overwrite=overwrite,
            progress=advance,
            on_total=advance.set_total,
        )
    print_dataset_summary(summary)
    stdout.print(f"Wrote {out}: {len(summary.manifest)} tiles")

"""Options shared by several commands, defined once (rasterio's ``rio/options.py`` pattern)."""

from __future__ import annotations

from typing import Annotated

import typer

Overwrite = Annotated[
    bool, typer.Option("--overwrite", help="Replace existing outputs (never done without it).")
]
Workers = Annotated[int, typer.Option("--workers", min=1, max=256, help="Parallel worker threads.")]
Seed = Annotated[
    int, typer.Option("--seed", min=0, help="Random seed; the same seed gives the same data.")
]
MaskClass = Annotated[
    str | None,
    typer.Option(
        "--class",
        help="Class of the mask to use, by name in its class list (e.g. olivine of a "
        "multi-class label map) [default: olivine, or mask_class of --config].",
        show_default=False,
    ),
]
Device = Annotated[str | None, typer.Option("--device", help="auto, cpu, cuda, cuda:N or mps.")]
MaxMinutes = Annotated[
    float | None, typer.Option("--max-minutes", min=0.01, help="Stop training after this time.")
]

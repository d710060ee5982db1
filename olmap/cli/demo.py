"""``olmap demo``: the main job on built-in synthetic data."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Annotated

import typer

from olmap.cli._console import STATE, progress_bar, stderr, stdout
from olmap.cli._options import Overwrite, Seed, Workers
from olmap.cli.synth import print_section_summary, size_option
from olmap.io.outputs import atomic_dir, check_writable
from olmap.plots.previews import write_section_previews
from olmap.synth.config import SynthConfig
from olmap.synth.section import generate_section


def demo(
    out: Annotated[Path, typer.Option("--out", help="Output folder.")] = Path("olmap-demo"),
    seed: Seed = 7,
    size: Annotated[str, typer.Option("--size", help="WIDTHxHEIGHT of the section.")] = "4096x4096",
    workers: Workers = 2,
    overwrite: Overwrite = False,
) -> None:
    """Demo on a built-in synthetic section: generate, preview, summarise.

    Writes OUT/section (a synthetic section with ground truth) and OUT/previews/*.png, then
    prints a summary. Later versions run the whole pipeline here.

    Example: olmap demo --out olmap-demo
    """
    width, height = size_option(size)
    cfg = SynthConfig(width=width, height=height, seed=seed, sessions=4)
    section_dir, previews_dir = out / "section", out / "previews"
    for path in (section_dir, previews_dir):  # fail before any work (an unfinished
        check_writable(path, overwrite=overwrite)  # section.partial resumes instead)
    with progress_bar("synthetic section", total=width * height / 1e6, unit="Mpx") as advance:
        summary = generate_section(
            section_dir,
            cfg,
            overwrite=overwrite,
            workers=workers,
            progress=lambda n: advance(n / 1e6),
        )
    with stderr.status("writing previews", spinner="dots") if not STATE.quiet else nullcontext():
        with atomic_dir(previews_dir, overwrite=overwrite) as tmp:
            written = write_section_previews(section_dir, tmp)
        previews = [previews_dir / p.name for p in written]
    print_section_summary(summary)
    stdout.print("[bold]Previews:[/]")
    for p in previews:
        stdout.print(f"  {p}")

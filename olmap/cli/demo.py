"""``olmap demo``: the main job on built-in synthetic data."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Annotated

import typer

from olmap.cli import calibrate as calibrate_cmd
from olmap.cli import crystals as crystals_cmd
from olmap.cli import masks as masks_cmd
from olmap.cli import predict as predict_cmd
from olmap.cli import tiles as tiles_cmd
from olmap.cli._console import STATE, progress_bar, stderr, stdout
from olmap.cli._options import Overwrite, Seed, Workers
from olmap.cli.synth import print_section_summary, size_option
from olmap.io.outputs import atomic_dir, check_writable
from olmap.plots.previews import write_section_previews
from olmap.synth.config import SynthConfig
from olmap.synth.section import generate_section

#: The repository's configs/ (rule files), beside the package in a source checkout.
CONFIGS = Path(__file__).resolve().parents[2] / "configs"
#: olmap's synthetic pretraining (docs/models.md), shipped in the package.
SHIPPED_MODEL = (
    Path(__file__).resolve().parents[1]
    / "segment"
    / "weights"
    / "deeplabv3_mobilenet_v3_large-synthetic.pt"
)


def _step(title: str) -> None:
    if not STATE.quiet:
        stdout.rule(f"[bold]{title}")


def demo(
    out: Annotated[Path, typer.Option("--out", help="Output folder.")] = Path("olmap-demo"),
    seed: Seed = 7,
    size: Annotated[str, typer.Option("--size", help="WIDTHxHEIGHT of the section.")] = "4096x4096",
    workers: Workers = 2,
    overwrite: Overwrite = False,
) -> None:
    """Demo on a built-in synthetic section: from EDS and BSE to crystals and a web viewer.

    Generates OUT/section (a synthetic section with ground truth) and OUT/previews/*.png,
    then runs the stages on it: the paper's EDS olivine rule (OUT/mask.tif), the BSE -> mg#
    calibration against the EPMA profiles (OUT/calibration.json), the mg# map
    (OUT/mgnum.tif), the crystal catalogue (OUT/catalogue/) and the tiled viewer (OUT/site/),
    and prints where the viewer is. The viewer's olivine probability layer comes from BSE
    alone, predicted by the model olmap ships (its synthetic pretraining, not fine-tuned on
    this section: OUT/prob.tif). Fine-tuning (olmap train) is left out to keep the demo short;
    on a synthetic section EDS covers the whole mosaic, so the EDS mask drives the catalogue.

    Example: olmap demo --out olmap-demo
    """
    width, height = size_option(size)
    cfg = SynthConfig(width=width, height=height, seed=seed, sessions=4)
    section_dir, previews_dir = out / "section", out / "previews"
    stage_outputs = [
        out / "mask.tif",
        out / "prob.tif",
        out / "pred_labels.tif",
        out / "calibration.json",
        out / "mgnum.tif",
        out / "catalogue",
        out / "site",
    ]
    for path in (section_dir, previews_dir, *stage_outputs):  # fail before any work (an
        check_writable(path, overwrite=overwrite)  # unfinished section.partial resumes instead)
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
    bse, mask = section_dir / "bse.tif", out / "mask.tif"
    _step("olivine mask from EDS (olmap masks)")
    masks_cmd.masks(
        eds=[str(section_dir / "eds.tif")],
        rules=CONFIGS / "rules" / "olivine.yaml",
        out=mask,
        bse=bse,
        workers=workers,
        overwrite=overwrite,
    )
    _step("olivine probability from BSE, shipped synthetic model (olmap predict)")
    predict_cmd.predict(
        model=SHIPPED_MODEL,
        bse=bse,
        out_prob=out / "prob.tif",
        out_mask=out / "pred_labels.tif",
        overwrite=overwrite,
    )
    _step("BSE -> mg# calibration (olmap calibrate)")
    calibrate_cmd.calibrate(
        bse=bse,
        mask=mask,
        profiles=section_dir / "epma.csv",
        out=out / "calibration.json",
        standards=section_dir / "standards.csv",
        sessions=section_dir / "sessions.csv",
        overwrite=overwrite,
    )
    _step("mg# map (olmap mgmap)")
    calibrate_cmd.mgmap(
        bse=bse,
        mask=mask,
        calibration=out / "calibration.json",
        out=out / "mgnum.tif",
        overwrite=overwrite,
    )
    _step("crystal catalogue (olmap crystals)")
    crystals_cmd.crystals(
        bse=bse,
        mask=mask,
        out=out / "catalogue",
        mgmap=out / "mgnum.tif",
        sessions=section_dir / "sessions.csv",
        crops=True,
        overwrite=overwrite,
    )
    _step("maps and viewer (olmap tiles)")
    tiles_cmd.tiles(
        results_dir=out, out=out / "site", title=f"olmap demo (seed {seed})", overwrite=overwrite
    )

"""``olmap masks``: label maps from EDS element maps by element-ratio rules."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from olmap.cli._console import progress_bar, stderr, stdout
from olmap.cli._options import Overwrite, Workers
from olmap.io.eds import open_eds
from olmap.io.outputs import claim_outputs
from olmap.io.raster import raster_inputs
from olmap.masks.rules import IGNORE, UNCLASSIFIED, load_rules
from olmap.masks.stream import DEFAULT_WINDOW, MaskResult, build_label_map


def report_path(out: Path) -> Path:
    """Where the JSON report of ``olmap masks --out OUT`` goes (``OUT`` stem + .report.json)."""
    return out.with_name(out.stem + ".report.json")


def print_mask_report(result: MaskResult) -> None:
    """Per-class pixel counts, rule overlaps and clean-up effects (stdout)."""
    stats = result.stats
    total = max(stats.total, 1)
    names = [n for c, n in stats.class_names.items() if c not in (UNCLASSIFIED, IGNORE)]
    classes = Table("code", "class", "pixels", "%", title=f"Label map {result.path}")
    for code, name in stats.class_names.items():
        n = stats.pixels.get(code, 0)
        classes.add_row(str(code), name, f"{n:,}", f"{100 * n / total:.3f}")
    stdout.print(classes)

    steps = Table(
        "class", "matched", "+grown", "-small", "+holes", title="Rule matches and clean-up (px)"
    )
    for i, name in enumerate(names):
        steps.add_row(
            name,
            f"{stats.matched[i]:,}",
            f"{stats.grown[i]:,}",
            f"{stats.removed[i]:,}",
            f"{stats.filled[i]:,}",
        )
    stdout.print(steps)
    stdout.print(
        f"Pixels matching more than one class: {stats.multi_matched:,} "
        "(the first class in the rule file wins)"
    )
    if stats.multi_matched:
        pairs = Table("kept (earlier)", "lost (later)", "pixels", title="Rule overlaps")
        for i in range(len(names)):
            for j in range(i + 1, len(names)):
                if stats.overlap[i, j]:
                    pairs.add_row(names[i], names[j], f"{stats.overlap[i, j]:,}")
        stdout.print(pairs)
    stdout.print(
        f"Ignored (255): {stats.ignored_cracks:,} px dark in BSE (cracks/holes), "
        f"{stats.ignored_nodata:,} px without EDS data"
    )
    if result.confusion is not None:
        table = Table("reference class", "labelled as (% of its pixels)", title="Confusion")
        for ref_name, row in result.confusion.fractions().items():
            parts = sorted(row.items(), key=lambda kv: -kv[1])
            table.add_row(
                ref_name, ", ".join(f"{name} {100 * f:.2f}" for name, f in parts if f >= 1e-4)
            )
        stdout.print(table)
        for name, iou in result.confusion.iou().items():
            stdout.print(f"IoU {name} vs reference: {iou:.4f}")
    for note in result.notes:
        stderr.print(f"[yellow]note:[/] {note}", soft_wrap=True)


def masks(
    eds: Annotated[
        list[str],
        typer.Option(
            "--eds",
            help="EDS stack (bands named Mg, Ca, ...), a Bruker .bcf, or ELEMENT=FILE (repeat).",
        ),
    ],
    rules: Annotated[
        Path, typer.Option("--rules", help="Rule file (YAML), e.g. configs/rules/olivine.yaml.")
    ],
    out: Annotated[Path, typer.Option("--out", help="Output label map (GeoTIFF, uint8).")],
    bse: Annotated[
        Path | None,
        typer.Option("--bse", help="BSE mosaic on the same grid: checked, and masks cracks."),
    ] = None,
    reference: Annotated[
        Path | None,
        typer.Option(
            "--reference",
            help="Label map to compare with (e.g. truth/phases.tif of a synthetic section).",
        ),
    ] = None,
    window: Annotated[
        int, typer.Option("--window", min=64, max=16384, help="Window side in px.")
    ] = DEFAULT_WINDOW,
    bcf_downsample: Annotated[
        int, typer.Option("--bcf-downsample", min=1, max=64, help="Sum n x n pixels of a .bcf.")
    ] = 1,
    workers: Workers = 2,
    overwrite: Overwrite = False,
) -> None:
    """Label map from EDS element maps by element-ratio rules (first matching class wins).

    Writes OUT (0 unclassified, class codes, 255 ignore; listed in its metadata) and a JSON
    report beside it (mask.tif -> mask.report.json), and prints per-class pixel counts,
    pixels matched by several classes, and clean-up effects. Works window by window on maps
    larger than RAM.

    Example: olmap masks --eds eds.tif --rules configs/rules/olivine.yaml --out mask.tif --bse bse.tif
    """  # noqa: E501
    rule_set = load_rules(rules)
    report = report_path(out)
    eds_files = [str(e).partition("=")[2] or e for e in eds]
    inputs = [rules, *raster_inputs(bse, reference, *eds_files)]
    with claim_outputs([out, report], inputs=inputs, overwrite=overwrite):
        source = open_eds(eds, elements=rule_set.elements, bcf_downsample=bcf_downsample)
        height, width = source.shape
        with progress_bar("masks", total=height * width / 1e6, unit="Mpx") as advance:
            result = build_label_map(
                source,
                rule_set,
                out,
                bse=bse,
                reference=reference,
                window=window,
                workers=workers,
                report=report,
                overwrite=overwrite,
                progress=lambda n: advance(n / 1e6),
            )
    print_mask_report(result)
    stdout.print(f"Wrote {out} and {report}")

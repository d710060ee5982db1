"""``olmap masks``: label maps from EDS element maps by element-ratio rules."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from olmap.cli._console import progress_bar, stderr, stdout
from olmap.cli._options import Overwrite, Workers
from olmap.io.eds import open_eds
from olmap.io.element_maps import element_map_files
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

    if result.references is not None:
        levels = Table("element", "counts = 1", "reference", title="Relative units (this map)")
        for el, level in result.references.levels.items():
            levels.add_row(el, f"{level:,.4g}", result.references.basis[el])
        stdout.print(levels)
    steps = Table(
        "class",
        "matched",
        "-earlier",
        "+grown",
        "-small",
        "+holes",
        title="Rule matches and clean-up (px; -earlier: also matched by an earlier class)",
    )
    for i, name in enumerate(names):
        steps.add_row(
            name,
            f"{stats.matched[i]:,}",
            f"{stats.lost[i]:,}",
            f"{stats.grown[i]:,}",
            f"{stats.removed[i]:,}",
            f"{stats.filled[i]:,}",
        )
    stdout.print(steps)
    for key, n in stats.rejected.items():
        cls, entry = key.split(": ", 1)
        stdout.print(
            f"{cls}: {n:,} px that pass its rules rejected as {entry} "
            "(counts pooled over its candidate pixels nearby)"
        )
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
            help="EDS stack (bands named Mg, Ca, ...), a folder of per-element maps (Mg.txt, "
            "'Mg K series.csv', Mg.tif, ...), a Bruker .bcf, or ELEMENT=FILE (repeat).",
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
            help="Label map to compare with (truth/phases.tif of a synthetic section, or a "
            "lab's own classification with --legend).",
        ),
    ] = None,
    legend: Annotated[
        Path | None,
        typer.Option(
            "--legend",
            help="Codes of --reference -> class names (YAML '4: olivine' or CSV code,name); "
            "then any integer type; aliases such as opx, cpx, plag understood.",
        ),
    ] = None,
    pixel_size: Annotated[
        float | None,
        typer.Option(
            "--pixel-size", min=1e-6, help="Pixel size in µm of a folder of text/PNG maps."
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

    Rule files with `units: relative` (all shipped ones but olivine-paper.yaml) divide each
    element map by its level in a reference phase of the same map first, so that thresholds
    hold on any instrument (docs/masks.md).

    Example: olmap masks --eds eds.tif --rules configs/rules/olivine.yaml --out mask.tif --bse bse.tif

    Example: olmap masks --eds SK392D/ --rules configs/rules/basalt.yaml --out labels.tif --reference phases.tif --legend legend.yaml
    """  # noqa: E501
    rule_set = load_rules(rules)
    report = report_path(out)
    eds_files = [str(e).partition("=")[2] or e for e in eds]
    folders = [Path(e) for e in eds_files if Path(e).is_dir()]
    inputs = [
        rules,
        *raster_inputs(bse, reference, *[e for e in eds_files if not Path(e).is_dir()]),
    ]
    inputs += [p for f in folders for p in element_map_files(f)]
    if legend is not None:
        inputs.append(legend)
    with claim_outputs([out, report], inputs=inputs, overwrite=overwrite):
        source = open_eds(
            eds,
            elements=rule_set.elements,
            bcf_downsample=bcf_downsample,
            pixel_size_um=pixel_size,
        )
        height, width = source.shape
        with progress_bar("masks", total=height * width / 1e6, unit="Mpx") as advance:
            result = build_label_map(
                source,
                rule_set,
                out,
                bse=bse,
                reference=reference,
                legend=legend,
                window=window,
                workers=workers,
                report=report,
                overwrite=overwrite,
                progress=lambda n: advance(n / 1e6),
            )
    print_mask_report(result)
    stdout.print(f"Wrote {out} and {report}")

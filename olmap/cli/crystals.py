"""``olmap crystals``: the crystal catalogue of a segmented section."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from olmap.cli._console import progress_bar, stdout
from olmap.cli._options import MaskClass, Overwrite
from olmap.crystals.catalogue import (
    CatalogueResult,
    check_rule_attributes,
    crystal_catalogue,
    write_crystals,
)
from olmap.crystals.classify import load_class_rules
from olmap.crystals.config import CrystalsConfig
from olmap.errors import InputError
from olmap.io.config import load_config
from olmap.io.outputs import claim_outputs
from olmap.io.raster import raster_info, raster_inputs
from olmap.io.results import default_outliers_path
from olmap.plots.crystals import class_counts


def print_report(result: CatalogueResult, written: dict[str, Path], out: Path) -> None:
    cat = result.catalogue
    table = Table("group", "crystals", "area µm²", "mean mg#", title="Crystals")
    counts = class_counts(cat)
    groups = cat.assign(
        group=cat["class"].where(cat["zoning"] == "", cat["class"] + " (" + cat["zoning"] + ")")
    )
    for row in counts.itertuples():
        mg = groups.loc[groups["group"] == row.group, "mg_mean"].mean()
        table.add_row(
            row.group,
            f"{row.count:,}",
            f"{row.area_um2_total:,.0f}",
            "-" if mg != mg else f"{mg:.3f}",
        )
    stdout.print(table)
    stdout.print(
        f"{result.components:,} components of the mask -> {len(cat):,} crystals "
        f"({result.too_small:,} under the minimum area"
        + (f", {result.too_large:,} too large to measure" if result.too_large else "")
        + f"); {int(cat['touches_edge'].sum()) if len(cat) else 0:,} touch the mosaic edge; "
        f"{result.seconds:.1f} s"
    )
    files = sorted(p.name for p in written.values() if p.resolve().parent == out)
    stdout.print(f"Wrote {out}/ ({', '.join(files)}, stats/)")


def crystals(
    bse: Annotated[Path, typer.Option("--bse", help="BSE mosaic (GeoTIFF or VRT).")],
    mask: Annotated[
        Path, typer.Option("--mask", help="Olivine mask on the same grid (1 = olivine).")
    ],
    out: Annotated[Path, typer.Option("--out", help="Output folder (the catalogue).")],
    mgmap: Annotated[
        Path | None,
        typer.Option("--mgmap", help="mg# map of olmap mgmap: mg# attributes and complex zoning."),
    ] = None,
    outliers: Annotated[
        Path | None,
        typer.Option(
            "--outliers", help="Outlier mask (uint8, 1 = outlier) [default: MGMAP.outliers.tif]."
        ),
    ] = None,
    sessions: Annotated[
        Path | None,
        typer.Option("--sessions", help="sessions.csv: the session of each crystal."),
    ] = None,
    classes: Annotated[
        Path | None,
        typer.Option(
            "--classes",
            help="Class rules (YAML) [default: the paper's Table 2, configs/classes/olivine.yaml].",
        ),
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="YAML of catalogue parameters.")
    ] = None,
    connectivity: Annotated[
        int | None,
        typer.Option("--connectivity", min=1, max=2, help="1: 4-neighbour, 2: 8-neighbour."),
    ] = None,
    min_area: Annotated[
        float | None,
        typer.Option("--min-area", min=0.0, help="Smallest crystal catalogued (µm²)."),
    ] = None,
    split: Annotated[
        bool | None,
        typer.Option(
            "--split/--no-split",
            help="Split touching crystals along BSE steps (--no-split: one per component, as "
            "the paper) [default: split, or split_touching of --config].",
            show_default=False,
        ),
    ] = None,
    qupath: Annotated[
        bool, typer.Option("--qupath", help="Also crystals.qupath.geojson in pixel units.")
    ] = False,
    crops: Annotated[
        bool,
        typer.Option("--crops", help="Also a BSE crop per crystal, a folder per class and zoning."),
    ] = False,
    mask_class: MaskClass = None,
    overwrite: Overwrite = False,
) -> None:
    """Catalogue every olivine crystal: outline, size, shape, core/rim zoning, mg#, class.

    Crystals are the connected components of the mask (labelled chunk by chunk, joined
    exactly across chunk borders), split where touching crystals meet in a BSE step. Core
    and rim come from the distance to the external outline (holes and cracks do not make
    rims); r = mean BSE(core) / mean BSE(rim) gives the zoning, and the classes follow the
    paper's Table 2 (editable: --classes). Writes crystals.gpkg (layer "crystals"),
    crystals.geojson, crystals.csv, crystals.parquet, overview.png and stats/.

    Example: olmap crystals --bse bse.tif --mask pred_mask.tif --mgmap mgnum.tif --out catalogue/
    """
    settings = load_config(
        CrystalsConfig,
        config,
        split_touching=split,
        connectivity=connectivity,
        min_area_um2=min_area,
        mask_class=mask_class,
    )
    rules = load_class_rules(classes) if classes is not None else None
    if rules is not None:
        try:
            check_rule_attributes(rules, settings)
        except InputError as exc:
            raise InputError(f"{classes}: {exc}") from exc
    inputs = [*raster_inputs(bse, mask, mgmap, outliers), sessions, classes, config]
    if mgmap is not None and outliers is None:
        inputs.append(default_outliers_path(mgmap))
    # Checked and locked before the work, not after.
    with (
        claim_outputs([out], inputs=inputs, overwrite=overwrite),
        progress_bar("crystals", total=None) as advance,
    ):
        result = crystal_catalogue(
            bse,
            mask,
            mgmap_path=mgmap,
            outliers_path=outliers,
            sessions_path=sessions,
            config=settings,
            rules=rules,
            progress=advance.stage,
        )
        written = write_crystals(
            result,
            out,
            bse_path=bse,
            transform=raster_info(bse).transform,
            qupath=qupath,
            crops=crops,
            overwrite=overwrite,
            progress=advance.stage,
        )
    print_report(result, written, Path(out).resolve())

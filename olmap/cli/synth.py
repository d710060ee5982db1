"""``olmap synth``: synthetic data with ground truth."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from olmap.cli._console import progress_bar, stdout
from olmap.cli._options import Overwrite, Seed, Workers
from olmap.io.config import load_config
from olmap.synth.config import SynthConfig, parse_size
from olmap.synth.looks import random_look_config
from olmap.synth.section import SectionSummary, generate_section

app = typer.Typer(help="Generate synthetic data with ground truth.", no_args_is_help=True)


def size_option(value: str) -> tuple[int, int]:
    try:
        return parse_size(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--size") from exc


def print_section_summary(summary: SectionSummary) -> None:
    """Human-readable summary of a generated section (stdout)."""
    from rich.table import Table

    cfg = summary.config
    stdout.print(
        f"[bold]Synthetic section[/] {summary.out_dir}: {cfg.width} x {cfg.height} px at "
        f"{cfg.pixel_size_um:g} µm/px ({cfg.area_mm2:.1f} mm²), seed {cfg.seed}, "
        f"{summary.seconds:.1f} s"
    )
    phases = Table("phase", "area %", title="Modal composition (truth)")
    for name, frac in summary.phase_fractions.items():
        phases.add_row(name, f"{100 * frac:.2f}")
    crystals = Table("olivine class", "crystals", title="Olivine crystals (truth)")
    for name, n in summary.class_counts().items():
        crystals.add_row(name, str(n))
    for name, n in summary.zoning_counts().items():
        crystals.add_row(f"phenocrysts, {name} zoning", str(n))
    sessions = Table("session", "x range (µm)", "split", title="Acquisition sessions")
    for row in summary.sessions.itertuples():
        sessions.add_row(str(row.session), f"{row.x0_um:g}-{row.x1_um:g}", row.split)
    stdout.print(phases, crystals, sessions)
    stdout.print(f"EPMA profiles: {summary.n_profiles}")


@app.command("section")
def section(
    out_dir: Annotated[Path, typer.Argument(help="Output folder (created).")],
    seed: Annotated[
        int | None, typer.Option("--seed", min=0, help="Random seed (default 0).")
    ] = None,
    size: Annotated[
        str | None, typer.Option("--size", help="WIDTHxHEIGHT in pixels (default 4096x4096).")
    ] = None,
    sessions: Annotated[
        int | None,
        typer.Option(
            "--sessions", min=1, max=64, help="Acquisition sessions, column strips (default 4)."
        ),
    ] = None,
    pixel_size: Annotated[
        float | None,
        typer.Option("--pixel-size", min=0.001, max=20.0, help="Pixel size in µm (default 1.0)."),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", help="YAML of generator parameters (configs/synth/*.yaml)."),
    ] = None,
    look: Annotated[
        str,
        typer.Option(
            "--look",
            help="default: olmap's demo look; random: instrument, noise, pixel size and "
            "texture drawn from --look-seed (docs/synthetic-data.md).",
        ),
    ] = "default",
    look_seed: Annotated[
        int | None,
        typer.Option("--look-seed", min=0, help="Seed of the random look (default: --seed)."),
    ] = None,
    workers: Workers = 2,
    overwrite: Overwrite = False,
) -> None:
    """Generate a synthetic thin section (BSE, EDS, sessions, EPMA, standards, truth).

    Written window by window, so a 20,000 x 20,000 section needs well under 2 GB of RAM.
    Options override the values of --config (--pixel-size also the random look's).

    Example: olmap synth section demo_section --seed 7 --size 4096x4096 --sessions 4

    Another instrument's look: olmap synth section s5 --seed 5 --size 2048x2048 --look random
    """
    if look not in ("default", "random"):
        raise typer.BadParameter(f"--look must be default or random, got {look!r}")
    overrides = {"seed": seed, "sessions": sessions, "pixel_size_um": pixel_size}
    if size is not None:
        overrides["width"], overrides["height"] = size_option(size)
    cfg = load_config(SynthConfig, config, **overrides)
    if look == "random":
        cfg = random_look_config(cfg, cfg.seed if look_seed is None else look_seed)
        if pixel_size is not None:
            cfg = SynthConfig.model_validate({**cfg.model_dump(), "pixel_size_um": pixel_size})
    total = cfg.width * cfg.height / 1e6
    with progress_bar("synth section", total=total, unit="Mpx") as advance:
        summary = generate_section(
            out_dir, cfg, overwrite=overwrite, workers=workers, progress=lambda n: advance(n / 1e6)
        )
    print_section_summary(summary)


@app.command("tiles")
def tiles(
    bse: Annotated[Path, typer.Argument(help="One-band mosaic to cut (e.g. section/bse.tif).")],
    out_dir: Annotated[Path, typer.Argument(help="Output folder of tiles (created).")],
    rows: Annotated[int, typer.Option("--rows", min=1, help="Tile rows.")] = 3,
    cols: Annotated[int, typer.Option("--cols", min=1, help="Tile columns.")] = 4,
    overlap: Annotated[
        int, typer.Option("--overlap", min=0, help="Overlap of neighbours in px.")
    ] = 64,
    order: Annotated[
        str, typer.Option("--order", help="Acquisition order: row, snake, column, column-snake.")
    ] = "snake",
    seam: Annotated[
        float,
        typer.Option("--seam", min=0.0, help="SD of each tile's brightness offset (grey levels)."),
    ] = 0.0,
    gain: Annotated[
        float, typer.Option("--gain", min=0.0, help="SD of each tile's contrast gain around 1.")
    ] = 0.0,
    jitter: Annotated[
        float, typer.Option("--jitter", min=0.0, help="SD of stage position errors (µm).")
    ] = 0.0,
    seed: Seed = 0,
    overwrite: Overwrite = False,
) -> None:
    """Cut a mosaic into overlapping acquisition tiles, with seams, to test `olmap mosaic`.

    Writes tile_000.tif ... in acquisition order, positions.csv (stage positions in µm) and
    truth/tiles.csv (grid cell, exact position, gain and offset of every tile).

    Example: olmap synth tiles demo_section/bse.tif demo_tiles --rows 3 --cols 4 --overlap 64 --seam 3
    """  # noqa: E501
    from olmap.synth.tiles import cut_tiles

    cut = cut_tiles(
        bse,
        out_dir,
        rows=rows,
        cols=cols,
        overlap=(overlap, overlap),
        order=order,
        offset_sd=seam,
        gain_sd=gain,
        jitter_um=jitter,
        seed=seed,
        overwrite=overwrite,
    )
    th, tw = cut.tile_shape
    stdout.print(
        f"Wrote {rows * cols} tiles of {th} x {tw} px ({order} order, overlap {overlap} px) "
        f"to {cut.out_dir}; they cover the top-left {cut.mosaic_shape[0]} x "
        f"{cut.mosaic_shape[1]} px of {bse}"
    )


@app.command("ct")
def ct(
    out_dir: Annotated[Path, typer.Argument(help="Output folder of the series (created).")],
    seed: Annotated[int, typer.Option("--seed", min=0, help="Random seed.")] = 7,
    size: Annotated[str, typer.Option("--size", help="ZxYxX in voxels.")] = "256x256x256",
    steps: Annotated[
        int, typer.Option("--steps", min=1, max=1000, help="Scans in the series.")
    ] = 6,
    dtype: Annotated[str, typer.Option("--dtype", help="uint8, uint16 or float32.")] = "uint16",
    voxel_size: Annotated[
        float, typer.Option("--voxel-size", min=0.001, help="Voxel size in µm.")
    ] = 2.753,
    overwrite: Overwrite = False,
) -> None:
    """Generate a synthetic 4D micro-CT series of gypsum dehydrating to bassanite, with truth.

    Per step: a folder of TIFF slices (tNNN/), truth labels (truth/tNNN.zarr), scribbles on a
    few slices (scribbles/tNNN/); truth/volumes.csv (voxels and moles per phase per step) and
    metadata.json. Written slab by slab, so a 1024^3 step needs well under 2 GB of RAM.

    Example: olmap synth ct demo_ct --seed 7 --size 256x256x256 --steps 6
    """
    from olmap.ct.synth import SynthCtConfig, synth_ct

    try:
        shape = tuple(int(v) for v in size.lower().replace(",", "x").split("x"))
        if len(shape) != 3 or min(shape) < 8:
            raise ValueError
    except ValueError:
        raise typer.BadParameter(
            f"expected ZxYxX of at least 8 each, got {size!r}", param_hint="--size"
        ) from None
    cfg = SynthCtConfig(seed=seed, size=shape, steps=steps, dtype=dtype, voxel_size_um=voxel_size)
    with progress_bar("synth ct", total=shape[0] * shape[1] * shape[2] / 1e6, unit="Mvox") as adv:
        meta = synth_ct(out_dir, cfg, overwrite=overwrite, progress=lambda n: adv(n / 1e6))
    stdout.print(
        f"[bold]Synthetic CT series[/] {out_dir}: {steps} steps of {size} {dtype} voxels at "
        f"{voxel_size:g} µm, seed {seed}; scribbles on slices {meta['scribble_slices']}"
    )
    import pandas as pd

    table = pd.read_csv(Path(out_dir) / "truth" / "volumes.csv")
    frac = table.pivot(index="step", columns="phase", values="fraction")
    stdout.print("phase fractions of the sample (truth):")
    stdout.print((100 * frac).round(1).to_string())

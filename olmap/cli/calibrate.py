"""``olmap calibrate`` and ``olmap mgmap``: BSE -> mg# against EPMA profiles, then the map."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from olmap.cli._console import progress_bar, stdout
from olmap.cli._options import MaskClass, Overwrite
from olmap.composition.calibrate import (
    BseDomain,
    CalibrationResult,
    calibration_outputs,
    load_calibration,
    load_drift,
    write_calibration,
)
from olmap.composition.calibrate import (
    calibrate as run_calibrate,
)
from olmap.composition.config import CalibrateConfig, MgMapConfig
from olmap.composition.mgmap import MgMapResult, mg_map
from olmap.errors import InputError
from olmap.io.config import load_config
from olmap.io.outputs import claim_outputs
from olmap.io.raster import raster_inputs
from olmap.io.results import default_outliers_path

Standards = Annotated[
    Path | None,
    typer.Option(
        "--standards",
        help="standards.csv (session,standard,bse_measured,bse_reference): session drift.",
    ),
]
Sessions = Annotated[
    Path | None,
    typer.Option("--sessions", help="sessions.csv: which session acquired which region."),
]


def _shift(value: float, sd: float) -> str:
    """``+1.25 ± 0.40`` (µm); just the value where the line was not registered."""
    return f"{value:+.2f}" if sd != sd else f"{value:+.2f} ± {sd:.2f}"


def print_calibration_report(result: CalibrationResult, outputs: dict[str, Path]) -> None:
    """The paper's Table 4 (filtered / not filtered) and the per-profile relocation."""
    c = result.calibration
    stdout.print(
        f"mg# = {c.slope:.6f} * BSE + {c.intercept:.5f}  "
        f"({result.fit_used.replace('_', ' ')}: {result.fit_reason})"
    )
    if result.anchor is not None:
        a = result.anchor
        stdout.print(f"{a['standard']} (mg# {a['mg_num']}, BSE {a['bse']:.2f}): {a['reason']}")
    table = Table("", "R²", "RMSE", "RMSE10", "RMSEsh", "RMSEsh10", "points", title="Table 4")
    for name, by_split in result.metrics.items():
        for split, m in by_split.items():
            table.add_row(
                f"{name.replace('_', ' ')} {split}",
                f"{m['r2']:.4f}",
                *(f"{m[k]:.4f}" for k in ("rmse", "rmse10", "rmse_sh", "rmse_sh10")),
                f"{m['n']:,}",
            )
    stdout.print(table)
    prof = Table(
        "profile",
        "split",
        "points",
        "outliers",
        "noise sd",
        "shift along µm",
        "shift across µm",
        "RMSE",
        title="Profiles (shift applied to the given positions ± posterior sd)",
    )
    for row in result.profiles.itertuples():
        prof.add_row(
            row.profile_id,
            row.split,
            str(row.points),
            f"{row.outliers}{' (capped)' if row.outliers_capped else ''}",
            f"{row.noise_sd:.3g}",
            _shift(row.shift_along_um, row.shift_along_sd_um),
            _shift(row.shift_across_um, row.shift_across_sd_um),
            f"{row.rmse:.4f}",
        )
    stdout.print(prof)
    stdout.print("Wrote " + ", ".join(str(p) for p in outputs.values()))


def calibrate(
    bse: Annotated[Path, typer.Option("--bse", help="BSE mosaic (GeoTIFF or VRT).")],
    mask: Annotated[Path, typer.Option("--mask", help="Olivine mask on the same grid.")],
    profiles: Annotated[
        Path,
        typer.Option(
            "--profiles",
            help="epma.csv: profile_id,point,x_um,y_um,split + mg_num or MgO,FeO (wt %).",
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="Output calibration JSON.")],
    standards: Standards = None,
    sessions: Sessions = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="YAML of calibration parameters.")
    ] = None,
    register: Annotated[
        bool,
        typer.Option(
            "--register/--no-register",
            help="Relocate each EPMA line on the BSE image, or keep the given positions.",
        ),
    ] = True,
    mask_class: MaskClass = None,
    overwrite: Overwrite = False,
) -> None:
    """Calibrate BSE grey level against EPMA mg#: mg# = slope * BSE + intercept.

    BSE is sampled along every EPMA profile (lines relocated automatically; LOF outliers
    replaced by interpolation), put on the reference scale of the standards when
    --standards and --sessions are given, fitted on the calibration profiles and tested on
    the test profiles (R², RMSE, RMSE10, RMSEsh, RMSEsh10; seed paper Table 4). Writes the
    JSON, OUT.png (fit), OUT.profiles.png and OUT.points.csv.

    Example: olmap calibrate --bse bse.tif --mask pred_mask.tif --profiles epma.csv --standards standards.csv --sessions sessions.csv --out calibration.json
    """  # noqa: E501
    outputs = calibration_outputs(out)
    inputs = [*raster_inputs(bse, mask), profiles, standards, sessions, config]
    with claim_outputs(outputs.values(), inputs=inputs, overwrite=overwrite):
        settings = load_config(CalibrateConfig, config, mask_class=mask_class)
        if not register:
            registration = settings.registration.model_copy(update={"enabled": False})
            settings = settings.model_copy(update={"registration": registration})
        with progress_bar("calibrate", total=None) as advance:
            result = run_calibrate(
                bse,
                mask,
                profiles,
                standards_path=standards,
                sessions_path=sessions,
                config=settings,
                progress=advance.describe,
            )
        write_calibration(result, outputs, overwrite=overwrite)
    print_calibration_report(result, outputs)


def print_mgmap_report(result: MgMapResult) -> None:
    q = result.mg_quantiles
    stdout.print(
        f"{result.crystals:,} crystals ({result.crystals_filtered:,} large enough for LOF), "
        f"{result.olivine_pixels:,} olivine pixels, {result.outlier_pixels:,} outliers "
        f"({100 * result.outlier_pixels / max(result.olivine_pixels, 1):.2f} %)"
    )
    stdout.print(
        f"BSE noise sd {result.noise_sd:.3g} (median of the largest crystals); "
        f"smoothing sd {result.smooth_sigma_px:.2f} px"
    )
    if result.unmapped:
        stdout.print(
            f"{result.unmapped:,} olivine pixels have no BSE on the calibration's scale "
            "(BSE nodata, or in no session / a session without standards): NaN"
        )
    stdout.print(
        f"mg# 5/50/95 %: {q.get('p5', float('nan')):.3f} / {q.get('p50', float('nan')):.3f} / "
        f"{q.get('p95', float('nan')):.3f}; LOF {result.seconds['outliers']:.1f} s, "
        f"map {result.seconds['map']:.1f} s"
    )
    stdout.print(f"Wrote {result.mg_path} and {result.outliers_path}")


def mgmap(
    bse: Annotated[Path, typer.Option("--bse", help="BSE mosaic (GeoTIFF or VRT).")],
    mask: Annotated[Path, typer.Option("--mask", help="Olivine mask on the same grid.")],
    calibration: Annotated[
        Path, typer.Option("--calibration", help="calibration.json of olmap calibrate.")
    ],
    out: Annotated[Path, typer.Option("--out", help="Output mg# GeoTIFF (float32, NaN).")],
    standards: Standards = None,
    sessions: Sessions = None,
    out_outliers: Annotated[
        Path | None,
        typer.Option("--out-outliers", help="Outlier mask (uint8) [default: OUT.outliers.tif]."),
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="YAML of mgmap parameters.")
    ] = None,
    smooth: Annotated[
        float | None,
        typer.Option(
            "--smooth",
            min=0.0,
            max=8.0,
            help="Gaussian sd over clean pixels (px) [default: from the BSE noise].",
        ),
    ] = None,
    mask_class: MaskClass = None,
    overwrite: Overwrite = False,
) -> None:
    """Map mg# over every olivine pixel: LOF outliers per crystal, then the calibration.

    Crystals are the connected components of the mask, labelled chunk by chunk and joined
    exactly across chunk borders; each is filtered whole with the Local Outlier Factor on
    (row, col, BSE) (seed paper sect. 3.8). BSE goes on the reference scale with the session
    drift (from --standards/--sessions, else the one stored in the calibration). Writes a
    float32 mg# map (NaN off olivine and on outliers) and a uint8 outlier mask.

    Example: olmap mgmap --bse bse.tif --mask pred_mask.tif --calibration calibration.json --out mgnum.tif
    """  # noqa: E501
    outputs = [out, out_outliers or default_outliers_path(out)]
    inputs = [*raster_inputs(bse, mask), calibration, standards, sessions, config]
    with claim_outputs(outputs, inputs=inputs, overwrite=overwrite):
        settings = load_config(MgMapConfig, config, mask_class=mask_class)
        if smooth is not None:
            settings = settings.model_copy(update={"smooth_sigma_px": smooth})
        result = _mgmap(bse, mask, calibration, outputs, standards, sessions, settings, overwrite)
    print_mgmap_report(result)


def _mgmap(
    bse: Path,
    mask: Path,
    calibration: Path,
    outputs: list[Path],
    standards: Path | None,
    sessions: Path | None,
    settings: MgMapConfig,
    overwrite: bool,
) -> MgMapResult:
    cal, drift, regions = load_calibration(calibration)
    if standards is not None or sessions is not None:
        if drift is None:
            # The line was fitted on BSE as measured: correcting drift now would shift mg#.
            raise InputError(
                f"{calibration}: fitted without standards, so --standards/--sessions cannot be "
                "applied; calibrate again with --standards and --sessions"
            )
        drift, regions = load_drift(standards, sessions)
    with progress_bar("mgmap", total=None) as advance:
        return mg_map(
            bse,
            mask,
            cal,
            outputs[0],
            outliers_path=outputs[1],
            drift=drift,
            regions=regions,
            config=settings,
            bse_domain=BseDomain.of(calibration),
            overwrite=overwrite,
            progress=advance.stage,
        )

"""``olmap predict``: a trained model over a whole BSE mosaic, streamed window by window."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from olmap.cli._console import progress_bar, stdout
from olmap.cli._options import Overwrite
from olmap.io.raster import check_single_band
from olmap.segment.blend import BLENDS
from olmap.segment.config import PredictConfig

if TYPE_CHECKING:
    from olmap.segment.predict import PredictResult

# torch is imported when a command runs, not when the CLI starts: `olmap tiles` and the
# other commands that need no model stay light (torch alone takes ~640 MB of RSS).
AMP_NAMES = ("fp16", "bf16", "fp32")


def print_predict_report(result: PredictResult) -> None:
    """Pixels per class, nodata, windows and throughput (stdout)."""
    valid = max(result.pixels - result.nodata_pixels, 1)
    table = Table("class", "pixels", "% of valid", title=f"Predicted {result.mask_path}")
    for name, n in result.class_pixels.items():
        table.add_row(name, f"{n:,}", f"{100 * n / valid:.2f}")
    table.add_row("nodata", f"{result.nodata_pixels:,}", "")
    stdout.print(table)
    s = result.settings
    stdout.print(
        f"{result.windows:,} windows of {s['window']} px, stride {s['stride']} px, "
        f"{s['blend']} blending, threshold {result.threshold:g}, on {s['device']}"
        + (f" via Dask {s['dask']}" if s["dask"] else "")
        + f"; {result.seconds:.1f} s ({result.megapixels_per_second:.2f} Mpx/s)"
        + (f"; resumed after {result.resumed_blocks} blocks" if result.resumed_blocks else "")
    )
    stdout.print(f"Wrote {result.prob_path} and {result.mask_path}")


def predict(
    model: Annotated[Path, typer.Option("--model", help="Checkpoint of olmap train (.pt).")],
    bse: Annotated[
        Path, typer.Option("--bse", help="BSE mosaic: GeoTIFF, BigTIFF or VRT, any size.")
    ],
    out_prob: Annotated[
        Path,
        typer.Option("--out-prob", help="Output probabilities (uint8 GeoTIFF, p = value/255)."),
    ],
    out_mask: Annotated[
        Path,
        typer.Option("--out-mask", help="Output mask / label map (uint8 GeoTIFF, 255 nodata)."),
    ],
    window: Annotated[
        int, typer.Option("--window", min=32, max=16384, help="Window side LW = LH in px.")
    ] = 2048,
    stride: Annotated[
        int | None,
        typer.Option("--stride", min=1, help="Step between windows in px [default: window/2]."),
    ] = None,
    threshold: Annotated[
        float | None,
        typer.Option(
            "--threshold",
            min=0.0,
            max=1.0,
            help="dlth of a binary model [default: the checkpoint's; the paper used 0.1].",
        ),
    ] = None,
    device: Annotated[
        str, typer.Option("--device", help="auto, cpu, cuda, cuda:N or mps.")
    ] = "auto",
    dask: Annotated[
        str | None,
        typer.Option(
            "--dask",
            help="Dask scheduler ADDRESS (tcp://host:8786), or local:N for N local workers.",
        ),
    ] = None,
    blend: Annotated[
        str,
        typer.Option("--blend", help=f"Overlap weighting: {' or '.join(BLENDS)}."),
    ] = "uniform",
    batch: Annotated[int, typer.Option("--batch", min=1, help="Windows per forward pass.")] = 1,
    band: Annotated[
        int | None,
        typer.Option(
            "--band", min=512, help="Rows per band (multiple of 512) [default: 4 x window]."
        ),
    ] = None,
    flips: Annotated[
        bool, typer.Option("--flips", help="Average the 4 flips of each window (4x time).")
    ] = False,
    amp: Annotated[
        str, typer.Option("--amp", help=f"Precision on CUDA: {', '.join(AMP_NAMES)}.")
    ] = "fp16",
    bse_scale: Annotated[
        str | None,
        typer.Option(
            "--bse-scale",
            help="BSE on another grey scale than the training's: FACTOR (grey x FACTOR, e.g. "
            "257 for 8-bit BSE and a 16-bit model) or auto (match the grey percentiles) "
            "[default: check the scale, refuse a clearly different one].",
            show_default=False,
        ),
    ] = None,
    save_every: Annotated[
        float,
        typer.Option(
            "--save-every",
            min=0.1,
            help="Seconds between saves of the finished blocks (a kill loses at most this).",
        ),
    ] = 20.0,
    overwrite: Overwrite = False,
) -> None:
    """Segment a whole BSE mosaic with a trained model, window by window.

    Overlapping windows (WINDOW px, moved by STRIDE) are predicted and their probabilities
    averaged, so no pixel is judged from a window border (seed paper sect. 3.6.3); every
    pixel is covered the same way up to the mosaic edges. Memory depends on the window, band
    and batch size, never on the mosaic size. Nodata areas are skipped and written as nodata.
    Outputs appear only when complete; Ctrl-C stops at the next block, and the same command
    run again resumes there (after a kill -9 or a power cut: from the last save, every
    --save-every seconds).

    Example: olmap predict --model model.pt --bse bse.tif --out-prob prob.tif --out-mask pred_mask.tif --window 2048 --stride 1024
    """  # noqa: E501
    settings = PredictConfig(
        window=window,
        stride=stride,
        threshold=threshold,
        blend=blend,
        band=band,
        batch_size=batch,
        flips=flips,
        amp=amp,
        device=device,
        bse_scale=bse_scale,
        save_every_s=save_every,
    )
    from olmap.segment.predict import predict_mosaic
    from olmap.stream.engine import fixed_mmap_threshold

    info = check_single_band(bse, "BSE mosaic")
    fixed_mmap_threshold()  # peak memory must not creep up with the mosaic (docs/inference.md)
    with progress_bar("predict", total=info.height * info.width / 1e6, unit="Mpx") as advance:
        result = predict_mosaic(
            model,
            bse,
            out_prob,
            out_mask,
            settings,
            dask=dask,
            overwrite=overwrite,
            progress=lambda n: advance(n / 1e6),
        )
    print_predict_report(result)

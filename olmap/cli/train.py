"""``olmap train``: fine-tune DeepLabV3 on a dataset folder; ``olmap evaluate``: score masks."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from olmap.cli._console import STATE, progress_bar, stderr, stdout
from olmap.cli._options import Device, MaxMinutes, Overwrite
from olmap.io.config import load_config
from olmap.io.outputs import atomic_path, claim_outputs
from olmap.io.raster import raster_info, raster_inputs
from olmap.io.resume import interrupts_deferred
from olmap.io.tables import write_json
from olmap.plots.training import write_threshold_sweep
from olmap.segment.config import TrainConfig

if TYPE_CHECKING:  # torch is imported when a command runs (see olmap/cli/predict.py)
    from olmap.segment.domain import DomainShift
    from olmap.segment.job import InitChoice
    from olmap.segment.train import EpochRecord


def _fmt(value: float, digits: int = 4) -> str:
    return (
        "-"
        if value is None or (isinstance(value, float) and math.isnan(value))
        else f"{value:.{digits}f}"
    )


def print_scores(report: dict, title: str) -> None:
    """Per-class scores (overall) and per-session IoU of an evaluation report (stdout)."""
    overall = report["overall"]
    table = Table(
        "class", "IoU", "Dice", "prec.", "recall", "spec.", "kappa", "VS", "AUC",
        title=f"{title}: overall accuracy {_fmt(overall['overall_accuracy'])}, "
        f"kappa {_fmt(overall['kappa'])}, {overall['pixels']:,} px",
    )  # fmt: skip
    table.columns[0].no_wrap = True
    keys = ("iou", "dice", "precision", "recall", "specificity", "kappa", "volumetric_similarity")
    for name, s in overall["classes"].items():
        table.add_row(name, *(_fmt(s[k], 3) for k in keys), _fmt(s.get("auc", float("nan")), 3))
    stdout.print(table)
    names = report["classes"][1:]
    for key, label in (("sessions", "session"), ("splits", "split")):
        if not report.get(key):
            continue
        table = Table(label, "pixels", "OA", *(f"IoU {n}" for n in names), title=f"Per {label}")
        for region, s in report[key].items():
            table.add_row(
                region,
                f"{s['pixels']:,}",
                _fmt(s["overall_accuracy"]),
                *(_fmt(s["classes"][n]["iou"]) for n in names),
            )
        stdout.print(table)
    # A sweep is a choice only for a binary model; multi-class predictions take the argmax.
    sweeps = overall.get("threshold_sweep", {}) if len(report["classes"]) == 2 else {}
    for name, rows in sweeps.items():
        sweep = Table("threshold", "IoU", "precision", "recall", title=f"Threshold sweep: {name}")
        for r in rows:
            sweep.add_row(
                f"{r['threshold']:g}", _fmt(r["iou"]), _fmt(r["precision"]), _fmt(r["recall"])
            )
        stdout.print(sweep)
        best = report.get("best_threshold", {}).get(name)
        if best is not None:
            stdout.print(
                f"Best threshold for {name}: {best:g} (IoU-maximising on these data; "
                "the paper chose 0.1 for robustness to BSE drift)"
            )


#: Below this validation IoU (against the labels, e.g. EDS masks) a class is called out of the
#: model's depth: olmap's own sections give 0.89-0.93 with cpu-quick.
OUT_OF_DEPTH_IOU = 0.7


def print_start_and_depth(metrics: dict) -> None:
    """The validation IoU before training and after AdaBN, and a warning per weak class."""
    start = metrics.get("start") or {}
    classes = metrics.get("val", {}).get("overall", {}).get("classes", {})
    names = list(classes)[1:]  # the first class is the background
    if start:
        zero, adapted = start["zero_shot"], start["batchnorm_adapted"]
        kept = "re-estimated" if start.get("kept") == "batchnorm_adapted" else "initial"
        stdout.print(
            f"validation loss {_fmt(zero['val_loss'], 3)} at the start (zero-shot), "
            f"{_fmt(adapted['val_loss'], 3)} after BatchNorm re-estimation: training started "
            f"from the {kept} statistics",
            soft_wrap=True,
        )
        for name in names:
            stdout.print(
                f"{name}: validation IoU {_fmt(zero.get(f'iou_{name}', float('nan')), 3)} at "
                f"the start, {_fmt(adapted.get(f'iou_{name}', float('nan')), 3)} after "
                f"BatchNorm re-estimation (both at the config's threshold), "
                f"{_fmt(classes[name]['iou'], 3)} trained",
                soft_wrap=True,
            )
    flips = metrics.get("flips")
    if flips:
        verdict = (
            "they pay: predict with 'olmap predict --flips' (4x the time)"
            if flips["recommended"]
            else "they do not pay"
        )
        stdout.print(
            f"test-time flips: validation IoU {_fmt(flips['val_iou'], 3)} -> "
            f"{_fmt(flips['val_iou_flips'], 3)}; {verdict}",
            soft_wrap=True,
        )
    for name in names:
        iou = classes[name]["iou"]
        if iou == iou and iou < OUT_OF_DEPTH_IOU:
            stderr.print(
                f"[yellow]warning:[/] {name}: validation IoU {iou:.3f} against the labels is "
                f"below {OUT_OF_DEPTH_IOU}: the model is out of its depth on these sections. "
                "Check the labels (olmap masks --reference), train longer or on more sessions, "
                "or on a GPU (configs/train/paper.yaml); predictions will need checking",
                soft_wrap=True,
            )


def train(
    dataset: Annotated[Path, typer.Option("--dataset", help="Dataset folder ('olmap dataset').")],
    out: Annotated[Path, typer.Option("--out", help="Model checkpoint to write (.pt).")],
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="Training config (YAML), e.g. configs/train/cpu-quick.yaml; default: the "
            "paper's settings (configs/train/paper.yaml).",
        ),
    ] = None,
    init: Annotated[
        str | None,
        typer.Option(
            "--init",
            help="Starting weights: auto, synthetic, coco, imagenet, none, or a checkpoint PATH.",
        ),
    ] = None,
    weights: Annotated[
        Path | None,
        typer.Option(
            "--weights", help="torchvision weights file (COCO DeepLabV3 or ImageNet backbone)."
        ),
    ] = None,
    device: Device = None,
    max_minutes: MaxMinutes = None,
    workers: Annotated[
        int | None, typer.Option("--workers", min=0, max=64, help="DataLoader worker processes.")
    ] = None,
    seed: Annotated[int | None, typer.Option("--seed", min=0, help="Random seed.")] = None,
    overwrite: Overwrite = False,
) -> None:
    """Fine-tune DeepLabV3 on BSE tiles of a dataset folder; write one checkpoint.

    Trains on the train split, stops early on the validation loss (keeping the best epoch),
    scores the kept model on the val and test tiles, and writes OUT (weights + classes,
    normalisation, threshold, config and scores) with OUT-stem.curves.csv/.png beside it.
    Interrupted (Ctrl-C), the same command resumes from the last finished epoch. Without
    COCO/ImageNet weights in the torch cache, training starts from olmap's synthetic
    pretraining, and says so.

    Example: olmap train --dataset dataset/ --config configs/train/cpu-quick.yaml --out model.pt
    """
    cfg = load_config(
        TrainConfig,
        config,
        init=init,
        device=device,
        max_minutes=max_minutes,
        workers=workers,
        seed=seed,
    )
    # Claimed before any work (the library claims the curves beside it too).
    claim = claim_outputs([out], inputs=[dataset, config, weights], overwrite=overwrite)
    run_training(dataset, cfg, out, claim, weights=weights, overwrite=overwrite)


def run_training(dataset: Path, cfg: TrainConfig, out: Path, claim, *, weights, overwrite) -> None:
    """Train on a dataset folder with progress on screen, then print the scores (``olmap
    train`` and ``olmap ct train``); ``claim`` holds OUT from the caller's first check."""
    from olmap.segment.job import train_from_dataset

    try:
        modality = json.loads((Path(dataset) / "dataset.json").read_text()).get("modality")
    except (OSError, ValueError):
        modality = None  # the library names the missing or broken file

    def on_init(choice: InitChoice) -> None:
        colour = "yellow" if choice.kind in ("synthetic", "none") else "green"
        stderr.print(f"[{colour}]init:[/] {choice.note}", soft_wrap=True)

    def on_domain(shift: DomainShift) -> None:
        stderr.print(f"domain check: {shift.summary()}", soft_wrap=True)
        if shift.large:
            stderr.print(
                "[yellow]warning:[/] the validation sessions look unlike the training sessions "
                "(another detector setting or a strong drift?): the validation scores measure "
                "that shift as well as the model",
                soft_wrap=True,
            )

    def on_epoch(r: EpochRecord) -> None:
        if STATE.quiet:
            return
        # SEM: class 0 is the background of the masks; CT: every class is a phase (pores too).
        shown = list(r.val_iou.items())[0 if modality == "ct" else 1 :]
        ious = ", ".join(f"{k} {_fmt(v, 3)}" for k, v in shown)
        phase = " (probing: class layers only)" if r.probing else ""
        stderr.print(
            f"epoch {r.epoch}{phase}: train loss {r.train_loss:.4f}, val loss {r.val_loss:.4f}, "
            f"val IoU {ious} ({r.seconds:.0f} s)",
            soft_wrap=True,
        )

    with (
        claim,
        interrupts_deferred() as stop,
        progress_bar("training", total=None, unit="steps") as bar,
    ):

        def on_step(step: int, loss: float, iou: float) -> None:
            bar(1)
            bar.describe(
                f"training: loss {loss:.3f}" + ("" if math.isnan(iou) else f", IoU {iou:.2f}")
            )

        def on_resume(done: int) -> None:
            stderr.print(f"resuming: {done} epoch(s) done before the interruption", soft_wrap=True)

        report = train_from_dataset(
            dataset,
            cfg,
            out,
            weights=weights,
            overwrite=overwrite,
            on_init=on_init,
            on_step=on_step,
            on_epoch=on_epoch,
            on_resume=on_resume,
            on_domain=on_domain,
            stop=stop,
        )
    fit = report.fit
    stdout.print(
        f"Trained {cfg.architecture} on {report.n_train} tiles ({report.n_val} validation): "
        f"{len(fit.history)} epochs, kept epoch {fit.best_epoch} (val loss "
        f"{fit.best_val_loss:.4f}), stopped by {fit.stop_reason.replace('_', ' ')}, "
        f"{fit.seconds / 60:.1f} min"
        + (f", resumed at epoch {fit.resumed_from + 1}" if fit.resumed_from else ""),
        soft_wrap=True,
    )
    if report.head_groups and report.head_classes and report.class_names:
        sums = "; ".join(
            f"{name} = {' + '.join(report.head_classes[i] for i in group)}"
            for name, group in zip(report.class_names, report.head_groups, strict=True)
        )
        stdout.print(f"Class layers: the init's own (head: init); {sums}", soft_wrap=True)
    elif report.matched_classes:
        stdout.print(
            f"Class layer started from the init's {', '.join(report.matched_classes)}",
            soft_wrap=True,
        )
    for split in ("val", "test"):
        if split in report.metrics:
            threshold = report.metrics["threshold"]
            print_scores(report.metrics[split], f"{split} tiles (threshold {threshold:g})")
    print_start_and_depth(report.metrics)
    stdout.print(
        f"Wrote {report.model}, {report.curves_csv} and {report.curves_png}", soft_wrap=True
    )


def evaluate(
    pred: Annotated[
        Path,
        typer.Option("--pred", help="Predicted label map, or probabilities (float bands)."),
    ],
    ref: Annotated[Path, typer.Option("--ref", help="Reference label map (classes tag).")],
    sessions: Annotated[
        Path | None, typer.Option("--sessions", help="sessions.csv: also score each session.")
    ] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write all scores to this JSON file.")
    ] = None,
    threshold: Annotated[
        float | None,
        typer.Option("--threshold", min=0.0, max=1.0, help="Probability threshold (binary)."),
    ] = None,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="Threshold sweep plot (PNG; probabilities only).")
    ] = None,
    window: Annotated[
        int, typer.Option("--window", min=64, max=16384, help="Block side in px.")
    ] = 2048,
    overwrite: Overwrite = False,
) -> None:
    """Score a segmentation against reference masks: per class, overall and per session.

    Prints IoU, Dice, precision, recall, specificity, Cohen's kappa, volumetric similarity
    and (for probabilities) AUC with a threshold sweep that helps choose the threshold (the
    paper's dlth, 0.1). Classes are matched by name; reference classes the prediction does not
    know count as its background, and how each of them was predicted is listed (e.g. the
    fraction of clinopyroxene predicted as olivine). Works in blocks on mosaics of any size.

    Example: olmap evaluate --pred pred_mask.tif --ref ref_mask.tif --sessions sessions.csv --json metrics.json
    """  # noqa: E501
    outputs = [p for p in (json_out, plot) if p is not None]
    inputs = [*raster_inputs(pred, ref), sessions]
    with claim_outputs(outputs, inputs=inputs, overwrite=overwrite):  # before any work
        _evaluate(pred, ref, sessions, json_out, plot, threshold, window, overwrite)


def _evaluate(
    pred: Path,
    ref: Path,
    sessions: Path | None,
    json_out: Path | None,
    plot: Path | None,
    threshold: float | None,
    window: int,
    overwrite: bool,
) -> None:
    from olmap.segment.evaluate import evaluate_rasters

    info = raster_info(ref)
    with progress_bar("evaluate", total=info.height * info.width / 1e6, unit="Mpx") as advance:
        report = evaluate_rasters(
            str(pred),
            str(ref),
            sessions_csv=None if sessions is None else str(sessions),
            threshold=threshold,
            window=window,
            progress=lambda n: advance(n / 1e6),
        )
    print_scores(report, f"{pred} vs {ref}")
    if report["unscored_pixels"]:
        stderr.print(
            f"[yellow]note:[/] {report['unscored_pixels']:,} labelled reference pixels have no "
            f"prediction in {pred} (nodata, or codes outside its classes tag) and are not scored",
            soft_wrap=True,
        )
    breakdown = Table(
        "reference class", "predicted as (% of its pixels)", title="Reference classes"
    )
    for ref_name, row in report["reference_breakdown"].items():
        parts = sorted(row.items(), key=lambda kv: -kv[1])
        breakdown.add_row(ref_name, ", ".join(f"{n} {100 * f:.2f}" for n, f in parts if f >= 1e-4))
    stdout.print(breakdown)
    if json_out is not None:
        write_json(report, json_out, overwrite=overwrite)
        stdout.print(f"Wrote {json_out}")
    if plot is not None:
        sweeps = report["overall"].get("threshold_sweep")
        if not sweeps:
            stderr.print("[yellow]note:[/] no threshold sweep for a label map; --plot skipped")
        else:
            with atomic_path(plot, overwrite=overwrite) as tmp:
                write_threshold_sweep(sweeps, tmp, chosen=report["threshold"])
            stdout.print(f"Wrote {plot}")

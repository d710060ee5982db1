"""Pictures of training and evaluation: loss and IoU curves, the threshold sweep."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd


def write_training_curves(curves: pd.DataFrame, path: str | Path, *, best_epoch: int) -> Path:
    """Training and validation loss, and validation IoU per class, against the epoch.

    The kept (best-validation-loss) epoch is marked with a dotted line.
    """
    fig, (ax_loss, ax_iou) = plt.subplots(1, 2, figsize=(10, 3.8))
    ax_loss.plot(curves["epoch"], curves["train_loss"], "o-", ms=3, label="train")
    ax_loss.plot(curves["epoch"], curves["val_loss"], "o-", ms=3, label="validation")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="Loss")
    for column in [c for c in curves.columns if c.startswith("val_iou_")]:
        ax_iou.plot(
            curves["epoch"], curves[column], "o-", ms=3, label=column.removeprefix("val_iou_")
        )
    ax_iou.set(xlabel="epoch", ylabel="IoU", ylim=(0, 1), title="Validation IoU per class")
    for ax in (ax_loss, ax_iou):
        ax.axvline(best_epoch, color="grey", ls=":", lw=1, label=f"kept (epoch {best_epoch})")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)
    return Path(path)


def write_threshold_sweep(
    sweeps: Mapping[str, Sequence[Mapping[str, float]]],
    path: str | Path,
    *,
    chosen: float | None = None,
) -> Path:
    """IoU, precision and recall of each class against the probability threshold."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, rows in sweeps.items():
        t = [r["threshold"] for r in rows]
        line = ax.plot(t, [r["iou"] for r in rows], "o-", ms=3, label=f"{name} IoU")[0]
        ax.plot(
            t,
            [r["precision"] for r in rows],
            "--",
            color=line.get_color(),
            lw=1,
            label=f"{name} precision",
        )
        ax.plot(
            t,
            [r["recall"] for r in rows],
            ":",
            color=line.get_color(),
            lw=1,
            label=f"{name} recall",
        )
    if chosen is not None:
        ax.axvline(chosen, color="grey", lw=1, label=f"threshold {chosen:g}")
    ax.set(
        xlabel="probability threshold",
        ylabel="score",
        ylim=(0, 1.02),
        xlim=(0, 1),
        title="Threshold sweep",
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)
    return Path(path)

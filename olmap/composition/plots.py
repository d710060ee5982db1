"""Pictures of the BSE -> mg# calibration: the fit (seed 002 Fig. 7) and the profiles (Fig. 8)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from olmap.composition.regression import LinearCalibration
from olmap.io.outputs import atomic_path


def write_calibration_plot(
    points: pd.DataFrame,
    calibrations: dict[str, LinearCalibration],
    metrics: dict[str, dict[str, dict[str, float]]],
    path: str | Path,
    *,
    bse_scale: str = "as measured",
    overwrite: bool = False,
) -> Path:
    """EPMA mg# against BSE: calibration and test points, outliers, and the fitted line.

    Left: BSE as sampled (outliers in red) with the line fitted to it; right: after outlier
    replacement, with the line fitted to that (``calibrations`` keys not_filtered, filtered).
    """
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), sharey=True)
    span = np.array([points["bse"].min(), points["bse"].max()])
    for ax, column, name in zip(
        axes, ("bse", "bse_filtered"), ("not_filtered", "filtered"), strict=True
    ):
        for split, colour in (("calibration", "tab:blue"), ("test", "tab:orange")):
            sel = points["split"] == split
            ax.scatter(
                points.loc[sel, column],
                points.loc[sel, "mg_num"],
                s=6,
                c=colour,
                alpha=0.6,
                label=split,
            )
        if column == "bse":
            out = points["outlier"].astype(bool)
            ax.scatter(
                points.loc[out, "bse"],
                points.loc[out, "mg_num"],
                s=14,
                facecolors="none",
                edgecolors="red",
                label="outlier",
            )
        cal = calibrations[name]
        ax.plot(
            span,
            cal(span),
            "k-",
            lw=1,
            label=f"mg# = {cal.slope:.5f} BSE + {cal.intercept:.4f}",
        )
        by_split = metrics.get(name, {})
        split = "test" if "test" in by_split else "calibration"
        title = name.replace("_", " ")
        if by_split.get(split):
            m = by_split[split]
            title += f": {split} RMSE {m['rmse']:.4f}, R² {m['r2']:.4f}"
        ax.set(xlabel=f"BSE (grey level, {bse_scale})", title=title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0].set_ylabel("EPMA mg#")
    fig.tight_layout()
    with atomic_path(path, overwrite=overwrite) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return Path(path)


def write_profile_plots(
    points: pd.DataFrame, path: str | Path, *, overwrite: bool = False, columns: int = 4
) -> Path:
    """Per profile: EPMA mg# (black) and mg# predicted from BSE (red) against point number."""
    ids = list(dict.fromkeys(points["profile_id"]))
    rows = max(1, int(np.ceil(len(ids) / columns)))
    fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 2.4 * rows), squeeze=False)
    for ax, pid in zip(axes.ravel(), ids, strict=False):
        p = points[points["profile_id"] == pid]
        ax.plot(p["point"], p["mg_num"], "k.-", lw=0.8, ms=3, label="EPMA")
        ax.plot(p["point"], p["mg_pred"], "r.-", lw=0.8, ms=3, label="BSE")
        out = p["outlier"].astype(bool)
        ax.plot(p.loc[out, "point"], p.loc[out, "mg_pred"], "o", mfc="none", mec="red", ms=5)
        rmse = float(np.sqrt(np.mean((p["mg_num"] - p["mg_pred"]) ** 2)))
        ax.set_title(f"{pid} ({p['split'].iloc[0]}), RMSE {rmse:.4f}", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in axes.ravel()[len(ids) :]:
        ax.axis("off")
    axes[0, 0].legend(fontsize=7)
    fig.supxlabel("point", fontsize=9)
    fig.supylabel("mg#", fontsize=9)
    fig.tight_layout()
    with atomic_path(path, overwrite=overwrite) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return Path(path)

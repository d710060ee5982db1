"""Pictures of a training dataset: where the tiles lie, and what a few of them look like."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.patches import Patch, Rectangle

from olmap.io.raster import raster_info, read_raster
from olmap.io.tilestack import image_file

SPLIT_COLOURS = {"train": "#1f77b4", "val": "#ff7f0e", "test": "#2ca02c"}


def write_layout_plot(
    bse: str | Path, manifest: pd.DataFrame, path: str | Path, *, max_side: int = 1200
) -> Path:
    """The mosaic (decimated) with every tile outlined in its split's colour."""
    info = raster_info(bse)
    scale = min(1.0, max_side / max(info.height, info.width))
    shape = (max(1, round(info.height * scale)), max(1, round(info.width * scale)))
    image = read_raster(bse, bands=1, out_shape=shape)
    fig, ax = plt.subplots(figsize=(8, 8 * shape[0] / shape[1] + 0.6))
    ax.imshow(image, cmap="gray", interpolation="nearest")
    for row in manifest.itertuples():
        colour = SPLIT_COLOURS.get(row.split, "white")
        ax.add_patch(
            Rectangle(
                (row.col_off * scale, row.row_off * scale),
                row.width * scale,
                row.height * scale,
                fill=False,
                lw=0.6,
                ec=colour,
            )
        )
    for session, group in manifest.groupby("session", sort=False):
        # Name each session at the middle of its tiles, so the split boundaries read at a glance.
        x = (group["col_off"] + group["width"] / 2).mean() * scale
        y = (group["row_off"] + group["height"] / 2).mean() * scale
        ax.text(x, y, f"session {session}", color="white", ha="center", va="center",
                fontsize=9, bbox={"facecolor": "black", "alpha": 0.5, "lw": 0})  # fmt: skip
    counts = manifest["split"].value_counts()
    ax.legend(
        handles=[
            Patch(color=c, label=f"{s} ({counts.get(s, 0)} tiles)")
            for s, c in SPLIT_COLOURS.items()
        ],
        loc="upper left",
        bbox_to_anchor=(1.01, 1),
        frameon=False,
    )
    ax.set_title("Training tiles by split")
    ax.set_axis_off()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return Path(path)


def write_tile_examples(
    dataset_dir: str | Path,
    manifest: pd.DataFrame,
    classes: Mapping[str, int],
    path: str | Path,
    *,
    per_split: int = 4,
) -> Path:
    """A grid of tiles (rows = splits): BSE with class outlines, the richest tiles first."""
    folder = Path(dataset_dir)
    bse = np.load(image_file(folder), mmap_mode="r")
    labels = np.load(folder / "labels.npy", mmap_mode="r")
    splits = [s for s in SPLIT_COLOURS if (manifest["split"] == s).any()]
    first = next(iter(classes), None)
    fig, axes = plt.subplots(
        len(splits), per_split, figsize=(3 * per_split, 2.2 * len(splits)), squeeze=False
    )
    colours = plt.get_cmap("tab10")
    for r, split in enumerate(splits):
        rows = manifest[manifest["split"] == split]
        if first is not None:
            rows = rows.sort_values(f"{first}_fraction", ascending=False)
        for c in range(per_split):
            ax = axes[r, c]
            ax.set_axis_off()
            if c >= len(rows):
                continue
            tile = rows.iloc[c]
            i = int(tile["tile_id"])
            ax.imshow(bse[i], cmap="gray", interpolation="nearest")
            for k, code in enumerate(classes.values()):
                if (labels[i] == code).any():
                    ax.contour(labels[i] == code, levels=[0.5], colors=[colours(k)], linewidths=0.7)
            if (labels[i] == 255).any():
                ax.contour(labels[i] == 255, levels=[0.5], colors=["red"], linewidths=0.5)
            ax.set_title(f"{split} · session {tile['session']} · #{i}", fontsize=8)
    handles = [Patch(color=colours(k), label=name) for k, name in enumerate(classes)]
    handles.append(Patch(color="red", label="ignore (255)"))
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)

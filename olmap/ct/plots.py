"""A picture of one slice: grey values, the scribbles painted on it, and the labels."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.patches import Patch

from olmap.ct.classes import ClassFile
from olmap.io.outputs import atomic_path


def _cmap(classes: ClassFile) -> tuple[ListedColormap, int]:
    top = max(classes.codes)
    colours = ["#ffffff"] * (top + 1)  # 0 (unlabelled, outside): white
    for c in classes.classes:
        colours[c.code] = c.colour
    return ListedColormap(colours), top


def write_slice_figure(
    grey: np.ndarray,
    labels: np.ndarray,
    classes: ClassFile,
    path: str | Path,
    *,
    scribbles: np.ndarray | None = None,
    title: str = "",
) -> Path:
    """PNG of a slice: grey values, grey with scribbles, and the labels (class colours)."""
    cmap, top = _cmap(classes)
    panels = 3 if scribbles is not None else 2
    fig, axes = plt.subplots(1, panels, figsize=(4.2 * panels, 4.6), constrained_layout=True)
    lo, hi = np.percentile(grey, [0.5, 99.5])
    axes[0].imshow(grey, cmap="gray", vmin=lo, vmax=hi)
    axes[0].set_title("grey values")
    k = 1
    if scribbles is not None:
        axes[1].imshow(grey, cmap="gray", vmin=lo, vmax=hi)
        shown = np.ma.masked_equal(scribbles, 0)
        axes[1].imshow(shown, cmap=cmap, vmin=0, vmax=top, interpolation="nearest")
        axes[1].set_title(f"scribbles ({int((scribbles > 0).sum())} px)")
        k = 2
    axes[k].imshow(labels, cmap=cmap, vmin=0, vmax=top, interpolation="nearest")
    axes[k].set_title("labels")
    for ax in axes:
        ax.set_axis_off()
    fig.legend(
        handles=[Patch(color=c.colour, label=c.name) for c in classes.classes],
        loc="outside lower center",
        ncol=len(classes.classes),
        frameon=False,
    )
    if title:
        fig.suptitle(title)
    with atomic_path(path, overwrite=True) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    return Path(path)

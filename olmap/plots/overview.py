"""The whole section with every crystal outlined in its group's colour (seed 002 Fig. 9B)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import shapely
from affine import Affine
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from rasterio.enums import Resampling

from olmap.io.raster import open_raster
from olmap.plots.crystals import crystal_group, group_colours


def plot_overview(
    catalogue: pd.DataFrame, bse_path: str | Path, path: str | Path, *, max_side: int = 2400
) -> Path:
    """Write a PNG of the BSE mosaic (decimated to ``max_side`` px) with crystal outlines.

    Parameters
    ----------
    catalogue : GeoDataFrame
        ``class``, ``zoning`` and outlines in µm.
    bse_path : path-like
    path : path-like
        PNG to write.
    max_side : int
        Longest side of the picture (px); the mosaic is read decimated, never whole.
    """
    with open_raster(bse_path) as ds:
        scale = max(ds.height, ds.width) / max_side
        factor = max(1.0, scale)
        shape = (max(1, round(ds.height / factor)), max(1, round(ds.width / factor)))
        grey = ds.read(1, out_shape=shape, resampling=Resampling.average).astype(np.float32)
        transform: Affine = ds.transform @ Affine.scale(ds.width / shape[1], ds.height / shape[0])
    finite = grey[np.isfinite(grey)]
    lo, hi = np.percentile(finite, [1, 99]) if finite.size else (0.0, 1.0)
    fig = Figure(figsize=(10, 10 * shape[0] / shape[1] + 0.6), dpi=shape[1] / 10)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.imshow(grey, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
    groups = crystal_group(catalogue) if len(catalogue) else pd.Series([], dtype=object)
    colours = group_colours(groups.unique())
    # On BSE the paper's own colours read best (Fig. 9B): white for no zoning, yellow for
    # normal (the statistics plots, on white, use grey and gold).
    paper = {"phenocryst (none)": "#ffffff", "phenocryst (normal)": "#ffff00"}
    colours.update({g: c for g, c in paper.items() if g in colours})
    inverse = ~transform
    handles = []
    for group, colour in colours.items():
        chosen = catalogue.geometry[(groups == group).to_numpy()]
        rings = [
            np.asarray(ring.coords)
            for geom in chosen
            for poly in getattr(geom, "geoms", [geom])
            for ring in [poly.exterior]
            if isinstance(poly, shapely.Polygon)
        ]
        lines = []
        for ring in rings:
            cols, rows = inverse @ (ring[:, 0], ring[:, 1])
            lines.append(np.c_[np.asarray(cols) - 0.5, np.asarray(rows) - 0.5])
        # A dark halo keeps every colour visible on bright and dark grains alike.
        ax.add_collection(LineCollection(lines, colors="black", linewidths=1.4, alpha=0.6))
        ax.add_collection(LineCollection(lines, colors=colour, linewidths=0.7))
        handles.append(Line2D([], [], color=colour, label=f"{group} ({len(chosen):,})"))
    ax.set_xlim(-0.5, shape[1] - 0.5)
    ax.set_ylim(shape[0] - 0.5, -0.5)
    ax.set_axis_off()
    if handles:
        ax.legend(handles=handles, loc="lower right", fontsize=8, framealpha=0.8)
    path = Path(path)
    fig.savefig(path)
    return path

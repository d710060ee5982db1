"""PNG previews of a section folder, read decimated so memory stays bounded."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import ListedColormap
from matplotlib.patches import Patch
from rasterio.windows import Window

from olmap.io.raster import raster_info, read_raster
from olmap.synth.phases import PHASE_COLOURS, Phase


def _decimated_shape(height: int, width: int, max_side: int) -> tuple[int, int]:
    scale = min(1.0, max_side / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def _stretch(band: np.ndarray, lo: float = 1, hi: float = 99.5) -> np.ndarray:
    a, b = np.percentile(band, [lo, hi])
    return np.clip((band.astype(np.float32) - a) / max(b - a, 1e-6), 0, 1)


def eds_composite(eds: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
    """RGB composite of an EDS stack: Mg red, Ca green, Al blue (olivine shows red)."""
    idx = [names.index(el) for el in ("Mg", "Ca", "Al")]
    return np.dstack([_stretch(eds[i]) for i in idx])


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def _phase_image(ax: plt.Axes, phases: np.ndarray) -> None:
    cmap = ListedColormap([PHASE_COLOURS[p] for p in Phase])
    ax.imshow(phases, cmap=cmap, vmin=-0.5, vmax=len(Phase) - 0.5, interpolation="nearest")
    ax.legend(
        handles=[Patch(color=PHASE_COLOURS[p], label=p.name.lower()) for p in Phase],
        loc="upper left",
        bbox_to_anchor=(1.01, 1),
        fontsize=8,
        frameon=False,
    )


def write_section_previews(
    section: str | Path, out_dir: str | Path, *, max_side: int = 1400, zoom: int = 640
) -> list[Path]:
    """Write overview and full-resolution zoom PNGs of a synthetic (or real) section folder.

    Parameters
    ----------
    section : path-like
        Folder with ``bse.tif``, ``eds.tif`` and, for synthetic sections, ``truth/``.
    out_dir : path-like
        Where the PNGs go (created).
    max_side : int
        Longest side of the overview images in pixels (rasters are read decimated).
    zoom : int
        Side of the full-resolution crop around the largest phenocryst (px).

    Returns
    -------
    list of Path
        The PNG files written.
    """
    section, out_dir = Path(section), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    info = raster_info(section / "bse.tif")
    shape = _decimated_shape(info.height, info.width, max_side)
    extent = (0, info.width * (info.pixel_size_um or 1), 0, info.height * (info.pixel_size_um or 1))
    written = []

    bse = read_raster(section / "bse.tif", bands=1, out_shape=shape)
    fig, ax = plt.subplots(figsize=(8, 8 * shape[0] / shape[1]))
    ax.imshow(bse, cmap="gray", vmin=0, vmax=255, extent=extent)
    ax.set(title="BSE mosaic", xlabel="x (µm)", ylabel="y (µm)")
    written.append(_save(fig, out_dir / "bse.png"))

    eds_path = section / "eds.tif"
    if eds_path.exists():
        eds_info = raster_info(eds_path)
        eds = read_raster(eds_path, out_shape=shape)
        fig, ax = plt.subplots(figsize=(8, 8 * shape[0] / shape[1]))
        ax.imshow(eds_composite(eds, eds_info.band_names), extent=extent)
        ax.set(
            title="EDS composite: Mg (red), Ca (green), Al (blue)", xlabel="x (µm)", ylabel="y (µm)"
        )
        written.append(_save(fig, out_dir / "eds_rgb.png"))

    truth = section / "truth"
    if (truth / "phases.tif").exists():
        phases = read_raster(truth / "phases.tif", bands=1, out_shape=shape)
        mg = read_raster(truth / "mgnum.tif", bands=1, out_shape=shape)
        fig, axes = plt.subplots(1, 2, figsize=(16, 7 * shape[0] / shape[1]))
        fig.subplots_adjust(wspace=0.45)
        _phase_image(axes[0], phases)
        axes[0].set_title("True phases")
        im = axes[1].imshow(np.ma.masked_invalid(mg), cmap="viridis", vmin=0.70, vmax=0.92)
        axes[1].set_facecolor("0.85")
        axes[1].set_title("True olivine mg#")
        fig.colorbar(im, ax=axes[1], fraction=0.046, label="mg#")
        for a in axes:
            a.set_xticks([]), a.set_yticks([])
        written.append(_save(fig, out_dir / "truth.png"))

    crystals = truth / "crystals.csv"
    if crystals.exists() and eds_path.exists():
        written.append(_zoom(section, out_dir, pd.read_csv(crystals), info, zoom))
    return written


def _zoom(section: Path, out_dir: Path, crystals: pd.DataFrame, info, zoom: int) -> Path:
    """Full-resolution BSE / EDS / truth crop centred on the largest phenocryst."""
    px = info.pixel_size_um or 1.0
    big = crystals.sort_values("area_um2").iloc[-1]
    col = int(big["centroid_x_um"] / px)
    row = int(info.height - big["centroid_y_um"] / px)
    size_r, size_c = min(zoom, info.height), min(zoom, info.width)
    r0 = int(np.clip(row - size_r // 2, 0, info.height - size_r))
    c0 = int(np.clip(col - size_c // 2, 0, info.width - size_c))
    win = Window(c0, r0, size_c, size_r)
    bse = read_raster(section / "bse.tif", bands=1, window=win)
    eds_info = raster_info(section / "eds.tif")
    eds = read_raster(section / "eds.tif", window=win)
    phases = read_raster(section / "truth" / "phases.tif", bands=1, window=win)
    fig, axes = plt.subplots(1, 3, figsize=(18, 6.4))
    axes[0].imshow(bse, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    axes[0].set_title(f"BSE, full resolution (crystal {int(big['id'])}: {big['zoning']} zoning)")
    axes[1].imshow(eds_composite(eds, eds_info.band_names), interpolation="nearest")
    axes[1].set_title("EDS Mg/Ca/Al (blurred, Poisson counts)")
    _phase_image(axes[2], phases)
    axes[2].set_title("True phases")
    for a in axes:
        a.set_xticks([]), a.set_yticks([])
    return _save(fig, out_dir / "zoom.png")

"""Per-crystal BSE crops with the outline drawn, one folder per group (the paper's catalogue)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from affine import Affine
from PIL import Image
from rasterio import features
from rasterio.windows import Window
from scipy import ndimage as ndi

from olmap.io.raster import WindowSource, window_affine
from olmap.plots.crystals import GROUP_COLOURS, crystal_group


def _folder_name(group: str) -> str:
    """``phenocryst (normal)`` -> ``phenocryst_normal``: a safe folder name."""
    return re.sub(r"[^A-Za-z0-9]+", "_", group).strip("_") or "unnamed"


def _rgb(colour: str) -> tuple[int, int, int]:
    colour = colour.lstrip("#")
    return tuple(int(colour[i : i + 2], 16) for i in (0, 2, 4))  # type: ignore[return-value]


def _stretch(image: np.ndarray) -> np.ndarray:
    """Grey levels to 0-255 between the 1st and 99th percentile of the crop."""
    finite = image[np.isfinite(image)]
    if finite.size == 0:
        return np.zeros(image.shape, np.uint8)
    lo, hi = np.percentile(finite, [1, 99])
    scaled = (np.nan_to_num(image, nan=lo) - lo) / max(hi - lo, 1e-9)
    return (np.clip(scaled, 0, 1) * 255).astype(np.uint8)


def write_crystal_crops(
    catalogue: pd.DataFrame,
    bse_path: str | Path,
    transform: Affine,
    out_dir: str | Path,
    *,
    margin_px: int = 8,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Write ``out_dir/<group>/<id>.png``: the crystal's BSE with its outline in its colour.

    Parameters
    ----------
    catalogue : GeoDataFrame
        ``id``, ``class``, ``zoning``, bbox columns (µm) and geometry (µm).
    bse_path : path-like
    transform : Affine
        The mosaic's transform (µm).
    out_dir : path-like
    margin_px : int
        Context around the bounding box (px).
    progress : callable, optional
        ``progress(done, total)``.

    Returns
    -------
    int
        Number of crops written.
    """
    out_dir = Path(out_dir)
    groups = crystal_group(catalogue)
    inverse = ~transform
    n = 0
    with WindowSource(bse_path) as src:
        h, w = src.info.shape
        for i, (row, group) in enumerate(zip(catalogue.itertuples(), groups, strict=True), 1):
            ca, ra = inverse @ (row.bbox_xmin_um, row.bbox_ymax_um)
            cb, rb = inverse @ (row.bbox_xmax_um, row.bbox_ymin_um)
            c0 = max(0, int(np.floor(min(ca, cb))) - margin_px)
            r0 = max(0, int(np.floor(min(ra, rb))) - margin_px)
            c1 = min(w, int(np.ceil(max(ca, cb))) + margin_px)
            r1 = min(h, int(np.ceil(max(ra, rb))) + margin_px)
            window = Window(c0, r0, c1 - c0, r1 - r0)
            grey = _stretch(src.read(window)[0])
            inside = features.rasterize(
                [(row.geometry, 1)],
                out_shape=grey.shape,
                transform=window_affine(window, transform),
                dtype="uint8",
            ).astype(bool)
            outline = inside & ~ndi.binary_erosion(inside)
            rgb = np.repeat(grey[..., None], 3, axis=2)
            rgb[outline] = _rgb(GROUP_COLOURS.get(group, "#7f7f7f"))
            folder = out_dir / _folder_name(group)
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rgb).save(folder / f"{row.id}.png")
            n += 1
            if progress:
                progress(i, len(catalogue))
    return n

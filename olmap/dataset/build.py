"""Write a training dataset: tiles of BSE + labels, a manifest and a per-session table.

Layout of the output folder (see ``docs/masks.md``)::

    dataset/
      image.npy       (N, tile_rows, tile_cols) BSE tiles, the mosaic's dtype (bse.npy in older
                      folders; both load)
      labels.npy      (N, tile_rows, tile_cols) uint8 labels (255 = ignore)
      manifest.csv    one row per tile: tile_id (= row in the arrays), window, µm bounds,
                      session, split, labelled and per-class fractions
      sessions.csv    per-session table like the paper's Table 1
      dataset.json    classes, tile size, stride, pixel size, sources, BSE statistics of the
                      training tiles (for input normalisation)
      layout.png      the mosaic with every tile outlined in its split's colour
      examples.png    a few tiles per split with their labels outlined

Tiles are stored as memory-mapped ``.npy`` arrays: measured, reading a tile from them is ~100x
faster than decoding a PNG file or a window of the compressed mosaic (docs/benchmarks.md), and
the folder is self-contained (it can be copied to a GPU machine without the mosaic).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from olmap import __version__
from olmap.core.codes import IGNORE, UNCLASSIFIED
from olmap.core.windows import region_window
from olmap.dataset.tiles import (
    session_table,
    split_overlaps,
    tile_fractions,
    tile_windows,
)
from olmap.errors import InputError
from olmap.io.outputs import atomic_dir, check_free_space, claim_outputs
from olmap.io.raster import (
    check_coregistered,
    check_single_band,
    class_names,
    raster_info,
    raster_inputs,
    read_raster,
)
from olmap.io.sessions import read_sessions
from olmap.io.tilestack import open_npy_for_writing
from olmap.plots.dataset import write_layout_plot, write_tile_examples

#: Training tile (rows, cols): the microscope's 512 x 338 px frames (PRIMER, paper sect. 2).
DEFAULT_TILE = (338, 512)

#: Leading columns of ``manifest.csv``; one ``<class>_fraction`` column per class follows.
MANIFEST_COLUMNS = (
    "tile_id",
    "row_off",
    "col_off",
    "height",
    "width",
    "x0_um",
    "y0_um",
    "x1_um",
    "y1_um",
    "session",
    "split",
    "labelled_fraction",
)


@dataclass
class DatasetSummary:
    """What :func:`build_dataset` wrote."""

    out_dir: Path
    manifest: pd.DataFrame
    sessions: pd.DataFrame
    classes: dict[str, int]
    skipped: int
    bse_mean: float
    bse_std: float
    notes: list[str]

    def split_counts(self) -> dict[str, int]:
        return self.manifest["split"].value_counts().to_dict()


def build_dataset(
    bse: str | Path,
    labels: str | Path,
    sessions: str | Path,
    out_dir: str | Path,
    *,
    tile: tuple[int, int] = DEFAULT_TILE,
    stride: tuple[int, int] | None = None,
    min_labelled: float = 0.5,
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> DatasetSummary:
    """Cut co-registered BSE and label maps into training tiles, split by session.

    Parameters
    ----------
    bse, labels : path-like
        BSE mosaic and label map (``olmap masks``) on one grid.
    sessions : path-like
        ``sessions.csv``; tiles are cut inside each session's rectangle only, and take its
        split (``none`` sessions are left out).
    out_dir : path-like
        Output folder (appears when complete).
    tile : (int, int)
        Tile (rows, cols) in px; default 338 x 512, the microscope's frame.
    stride : (int, int), optional
        Step between tiles (rows, cols); the tile size by default. The last tile of each row
        and column is moved back to the session's edge, so it may overlap its neighbour.
    min_labelled : float
        Tiles whose labelled (non-255) fraction is below this are skipped (no EDS there).
    overwrite : bool
    progress : callable, optional
        Called with 1 after each tile written.
    on_total : callable, optional
        Called once with the number of tiles, when known.

    Raises
    ------
    InputError
        If the rasters do not share one grid, sessions of different splits overlap, or no
        tile fits.
    """
    if not 0.0 <= min_labelled <= 1.0:
        raise InputError(f"min_labelled must be in [0, 1], got {min_labelled}")
    stride = stride or tile
    if stride[0] > tile[0] or stride[1] > tile[1] or min(stride) < 1:
        raise InputError(
            f"stride {stride[1]}x{stride[0]} px must be between 1 and the tile size "
            f"{tile[1]}x{tile[0]} px"
        )
    inputs = [*raster_inputs(bse, labels), sessions]
    with claim_outputs([out_dir], inputs=inputs, overwrite=overwrite):
        return _build_dataset(
            bse, labels, sessions, out_dir, tile, stride, min_labelled, overwrite, progress,
            on_total,
        )  # fmt: skip


def _build_dataset(
    bse: str | Path,
    labels: str | Path,
    sessions: str | Path,
    out_dir: str | Path,
    tile: tuple[int, int],
    stride: tuple[int, int],
    min_labelled: float,
    overwrite: bool,
    progress: Callable[[int], None] | None,
    on_total: Callable[[int], None] | None,
) -> DatasetSummary:
    info = check_coregistered(labels, bse)
    check_single_band(bse, "BSE image")
    if info.pixel_size_um is None:
        raise InputError(f"{labels}: no µm georeference; write it with olmap (CLI.md transform)")
    names = class_names(raster_info(labels))
    classes = {n: c for c, n in names.items() if c not in (UNCLASSIFIED, IGNORE)}
    table = read_sessions(sessions)

    regions, notes = [], []
    for row in table.itertuples():
        win = region_window(row.x0_um, row.y0_um, row.x1_um, row.y1_um, info.transform, info.shape)
        if win is None:
            notes.append(f"session {row.session} lies outside the image: no tiles")
            continue
        if row.split != "none" and (win.height < tile[0] or win.width < tile[1]):
            notes.append(
                f"session {row.session} is {int(win.width)}x{int(win.height)} px, smaller than "
                f"the {tile[1]}x{tile[0]} px tile: no tiles (use a smaller --tile)"
            )
        regions.append((row.session, row.split, win))
    clash = split_overlaps(regions)
    if clash:
        a, b = clash[0]
        raise InputError(
            f"{sessions}: sessions {a} and {b} overlap but belong to different splits; "
            "tiles would leak between train/val/test"
        )

    # Pass 1: which tiles have enough labelled pixels (labels are small uint8 reads).
    candidates = []
    skipped = 0
    for session, split, region in regions:
        if split == "none":
            continue
        windows = tile_windows(region, tile, stride)
        kept = 0
        for win in windows:
            lab = read_raster(labels, window=win, bands=1)
            fr = tile_fractions(lab, classes)
            # A tile with no labelled pixel teaches nothing, whatever min_labelled says.
            if fr["labelled_fraction"] < min_labelled or fr["labelled_fraction"] == 0:
                continue
            candidates.append((session, split, win, fr))
            kept += 1
        skipped += len(windows) - kept
        if windows and not kept:
            notes.append(
                f"session {session}: all {len(windows)} tiles have less than "
                f"{min_labelled:.0%} (or no) labelled pixels (no EDS there?)"
            )
    if not candidates:
        raise InputError(
            f"{sessions}: no {tile[1]}x{tile[0]} px tile fits inside a train/val/test session "
            f"with >= {min_labelled:.0%} labelled pixels ({'; '.join(notes) or 'no sessions'})"
        )

    px = info.pixel_size_um
    rows = []
    for i, (session, split, win, fr) in enumerate(candidates):
        r0, c0 = int(win.row_off), int(win.col_off)
        (x0, y1), (x1, y0) = (
            info.transform @ (c0, r0),
            info.transform @ (c0 + tile[1], r0 + tile[0]),
        )
        rows.append(
            {
                "tile_id": i,
                "row_off": r0,
                "col_off": c0,
                "height": tile[0],
                "width": tile[1],
                "x0_um": round(x0, 6),
                "y0_um": round(y0, 6),
                "x1_um": round(x1, 6),
                "y1_um": round(y1, 6),
                "session": session,
                "split": split,
                **{k: round(float(v), 6) for k, v in fr.items()},
            }
        )
    manifest = pd.DataFrame(rows)
    per_session = session_table(manifest, classes, sessions=table[["session", "split"]])

    bse_dtype = raster_info(bse).dtype
    n = len(candidates)
    if on_total is not None:
        on_total(n)
    total, total_sq, count = 0.0, 0.0, 0
    tile_bytes = tile[0] * tile[1] * (np.dtype(bse_dtype).itemsize + 1)
    check_free_space(out_dir, n * tile_bytes, f"{n:,} tiles of BSE and labels")
    with atomic_dir(out_dir, overwrite=overwrite) as tmp:
        bse_arr = open_npy_for_writing(tmp / "image.npy", (n, *tile), bse_dtype)
        lab_arr = open_npy_for_writing(tmp / "labels.npy", (n, *tile), "uint8")
        for i, (_, split, win, _) in enumerate(candidates):
            grey = read_raster(bse, window=win, bands=1)
            bse_arr[i] = grey
            lab_arr[i] = read_raster(labels, window=win, bands=1)
            if split == "train":
                g = grey.astype(np.float64)
                total, total_sq, count = total + g.sum(), total_sq + (g * g).sum(), count + g.size
            if progress is not None:
                progress(1)
        bse_arr.flush()
        lab_arr.flush()
        del bse_arr, lab_arr
        mean = total / count if count else float("nan")
        std = float(np.sqrt(max(total_sq / count - mean * mean, 0.0))) if count else float("nan")
        manifest.to_csv(tmp / "manifest.csv", index=False)
        per_session.to_csv(tmp / "sessions.csv", index=False)
        meta = {
            "software": f"olmap {__version__}",
            "bse": str(Path(bse).resolve()),
            "labels": str(Path(labels).resolve()),
            "sessions": str(Path(sessions).resolve()),
            "classes": {str(c): n for c, n in names.items()},
            "tile_rows": tile[0],
            "tile_cols": tile[1],
            "stride_rows": stride[0],
            "stride_cols": stride[1],
            "min_labelled": min_labelled,
            "pixel_size_um": px,
            "image_dtype": bse_dtype,
            "n_tiles": n,
            "tiles_per_split": manifest["split"].value_counts().to_dict(),
            "train_image_mean": mean,
            "train_image_std": std,
        }
        (tmp / "dataset.json").write_text(json.dumps(meta, indent=2) + "\n")
        write_layout_plot(bse, manifest, tmp / "layout.png")
        write_tile_examples(tmp, manifest, classes, tmp / "examples.png")
    return DatasetSummary(Path(out_dir), manifest, per_session, classes, skipped, mean, std, notes)

"""Where training tiles lie and what they contain (pure functions; no file access)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from rasterio.windows import Window

from olmap.core.codes import IGNORE
from olmap.core.windows import sliding_windows


def tile_windows(region: Window, tile: tuple[int, int], stride: tuple[int, int]) -> list[Window]:
    """Full-size tiles ``(rows, cols)`` inside ``region``, moved by ``stride``.

    The last tile of each row/column is snapped to the region's edge (so the region is
    covered); a region smaller than one tile gives no tile.
    """
    th, tw = tile
    if region.height < th or region.width < tw:
        return []
    local = sliding_windows(int(region.height), int(region.width), (th, tw), stride)
    return [
        Window(int(region.col_off) + int(w.col_off), int(region.row_off) + int(w.row_off), tw, th)
        for w in local
    ]


def split_overlaps(regions: Sequence[tuple[str, str, Window]]) -> list[tuple[str, str]]:
    """Pairs of sessions whose windows overlap while belonging to different splits.

    Parameters
    ----------
    regions : sequence of (session, split, Window)
    """
    bad = []
    for i, (s1, p1, w1) in enumerate(regions):
        for s2, p2, w2 in regions[i + 1 :]:
            if p1 == p2 or "none" in (p1, p2):
                continue
            rows = min(w1.row_off + w1.height, w2.row_off + w2.height) - max(w1.row_off, w2.row_off)
            cols = min(w1.col_off + w1.width, w2.col_off + w2.width) - max(w1.col_off, w2.col_off)
            if rows > 0 and cols > 0:
                bad.append((s1, s2))
    return bad


def tile_fractions(labels: np.ndarray, class_codes: Mapping[str, int]) -> dict[str, float]:
    """Labelled fraction of a tile and each class's share of its labelled pixels.

    Returns
    -------
    dict
        ``labelled_fraction`` (pixels that are not 255 / all pixels) and
        ``<class>_fraction`` (class pixels / labelled pixels; 0 if nothing is labelled).
    """
    counts = np.bincount(labels.ravel(), minlength=256)
    labelled = int(counts.sum() - counts[IGNORE])
    out = {"labelled_fraction": labelled / labels.size}
    for name, code in class_codes.items():
        out[f"{name}_fraction"] = counts[code] / labelled if labelled else 0.0
    return out


def session_table(
    manifest: pd.DataFrame,
    class_codes: Mapping[str, int],
    *,
    sessions: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Per-session summary like the paper's Table 1: tiles, class shares, split.

    Class shares are pixel-weighted over the session's labelled pixels, in percent. Sessions
    listed in ``sessions`` (columns ``session``, ``split``) that have no tile get a row with
    0 tiles and empty shares, so a session that gave nothing is visible.
    """
    rows = []
    for (session, split), group in manifest.groupby(["session", "split"], sort=False):
        labelled = (group["labelled_fraction"] * group["height"] * group["width"]).to_numpy()
        row = {"session": session, "split": split, "n_tiles": len(group)}
        for name in class_codes:
            share = group[f"{name}_fraction"].to_numpy()
            row[f"{name}_pct"] = round(100 * float((share * labelled).sum() / labelled.sum()), 3)
        row["ignore_pct"] = round(100 * (1 - float(group["labelled_fraction"].mean())), 3)
        rows.append(row)
    if sessions is not None:
        by_session = {r["session"]: r for r in rows}
        rows = [
            by_session.get(s.session, {"session": s.session, "split": s.split, "n_tiles": 0})
            for s in sessions.itertuples(index=False)
        ]
    return pd.DataFrame(rows, columns=_table_columns(class_codes))


def _table_columns(class_codes: Mapping[str, int]) -> list[str]:
    return ["session", "split", "n_tiles", *(f"{n}_pct" for n in class_codes), "ignore_pct"]

"""Acquisition sessions (``sessions.csv``): regions in µm with their train/val/test split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from olmap.errors import InputError
from olmap.io.tables import read_table

SESSION_COLUMNS = ("session", "x0_um", "y0_um", "x1_um", "y1_um", "split")
#: Allowed values of the ``split`` column; ``none`` excludes a region from the dataset.
SPLITS = ("train", "val", "test", "none")


def read_sessions(path: str | Path) -> pd.DataFrame:
    """Read and check ``sessions.csv`` (``session,x0_um,y0_um,x1_um,y1_um,split``).

    Raises
    ------
    InputError
        Naming the file and row for a missing column, an unknown split, a repeated session,
        non-numeric coordinates or an empty rectangle.
    """
    # Session names are text: "01" and "1" are different sessions.
    df = read_table(path, required=SESSION_COLUMNS, dtype={"session": str, "split": str})
    if df.empty:
        raise InputError(f"{path}: no sessions listed")
    df["split"] = df["split"].astype(str).str.strip().str.lower()
    df["session"] = df["session"].astype(str).str.strip()
    bad = df[~df["split"].isin(SPLITS)]
    if not bad.empty:
        row = bad.index[0] + 2
        raise InputError(
            f"{path}: line {row}: split {bad['split'].iloc[0]!r} is not one of {', '.join(SPLITS)}"
        )
    dupes = df["session"][df["session"].duplicated()]
    if not dupes.empty:
        raise InputError(f"{path}: session {str(dupes.iloc[0])!r} is listed twice")
    for col in ("x0_um", "y0_um", "x1_um", "y1_um"):
        values = pd.to_numeric(df[col], errors="coerce")
        bad = ~np.isfinite(values.to_numpy(dtype=float))
        if bad.any():
            row = int(bad.argmax()) + 2
            raise InputError(f"{path}: line {row}: {col} is not a finite number")
        df[col] = values.astype(float)
    empty = (df["x1_um"] <= df["x0_um"]) | (df["y1_um"] <= df["y0_um"])
    if empty.any():
        row = int(empty.to_numpy().argmax()) + 2
        raise InputError(f"{path}: line {row}: need x0_um < x1_um and y0_um < y1_um")
    return df.reset_index(drop=True)


def session_index_points(regions: pd.DataFrame, x_um: np.ndarray, y_um: np.ndarray) -> np.ndarray:
    """Index into ``regions`` of the session containing each point (-1: none)."""
    out = np.full(len(x_um), -1, dtype=np.int64)
    for k in range(len(regions) - 1, -1, -1):
        r = regions.iloc[k]
        inside = (x_um >= r["x0_um"]) & (x_um < r["x1_um"]) & (y_um >= r["y0_um"])
        out[inside & (y_um < r["y1_um"])] = k
    return out

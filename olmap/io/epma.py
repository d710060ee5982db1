"""Microprobe inputs: EPMA profiles (``epma.csv``) and BSE reference standards (``standards.csv``).

Column contracts are in ``shared/CLI.md``; every problem is reported as one line naming the
file, the line and the fix.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from olmap.core.mgnum import mg_number_from_oxides
from olmap.errors import InputError
from olmap.io.tables import read_table

PROFILE_COLUMNS = ("profile_id", "point", "x_um", "y_um", "split")
#: Allowed values of the ``split`` column of ``epma.csv``.
PROFILE_SPLITS = ("calibration", "test")
STANDARD_COLUMNS = ("session", "standard", "bse_measured", "bse_reference")


def _numeric(df: pd.DataFrame, column: str, path: Path) -> None:
    values = pd.to_numeric(df[column], errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(values)
    if bad.any():
        row = int(bad.argmax()) + 2
        raise InputError(f"{path}: line {row}: {column} is not a finite number")
    df[column] = values


def read_profiles(path: str | Path) -> pd.DataFrame:
    """Read and check EPMA profiles: ``profile_id,point,x_um,y_um,split`` + mg# or oxides.

    mg# comes from an ``mg_num`` column, or else from ``MgO`` and ``FeO`` (wt %, FeO as total
    Fe) by :func:`~olmap.core.mgnum.mg_number_from_oxides`; when both are present the
    given ``mg_num`` is used.

    Returns
    -------
    DataFrame
        ``profile_id`` (str), ``point`` (int), ``x_um``, ``y_um`` (map µm), ``split``
        (calibration | test), ``mg_num``, sorted by profile then point.

    Raises
    ------
    InputError
        Missing columns, no mg# source, non-numeric values, an unknown split, a repeated
        point, a profile with fewer than 3 points or split between calibration and test, or
        mg# outside (0, 1).
    """
    path = Path(path)
    df = read_table(path, required=PROFILE_COLUMNS, dtype={"profile_id": str, "split": str})
    if df.empty:
        raise InputError(f"{path}: no EPMA points listed")
    if "mg_num" not in df.columns and not {"MgO", "FeO"} <= set(df.columns):
        raise InputError(f"{path}: needs an mg_num column or MgO and FeO columns (wt %)")
    for col in ("point", "x_um", "y_um"):
        _numeric(df, col, path)
    if "mg_num" in df.columns:
        _numeric(df, "mg_num", path)
    else:
        for col in ("MgO", "FeO"):
            _numeric(df, col, path)
        df["mg_num"] = mg_number_from_oxides(df["MgO"], df["FeO"])
    out_of_range = ~((df["mg_num"] > 0) & (df["mg_num"] < 1))
    if out_of_range.any():
        row = int(out_of_range.to_numpy().argmax()) + 2
        raise InputError(f"{path}: line {row}: mg# {df['mg_num'].iloc[row - 2]:.4g} not in (0, 1)")
    df["profile_id"] = df["profile_id"].astype(str).str.strip()
    df["split"] = df["split"].astype(str).str.strip().str.lower()
    bad = ~df["split"].isin(PROFILE_SPLITS)
    if bad.any():
        row = int(bad.to_numpy().argmax()) + 2
        raise InputError(
            f"{path}: line {row}: split {df['split'].iloc[row - 2]!r} is not one of "
            f"{', '.join(PROFILE_SPLITS)}"
        )
    df["point"] = df["point"].astype(int)
    dupes = df.duplicated(["profile_id", "point"])
    if dupes.any():
        row = int(dupes.to_numpy().argmax()) + 2
        raise InputError(
            f"{path}: line {row}: point {df['point'].iloc[row - 2]} of profile "
            f"{df['profile_id'].iloc[row - 2]!r} is listed twice"
        )
    for pid, group in df.groupby("profile_id", sort=False):
        if len(group) < 3:
            raise InputError(f"{path}: profile {pid!r} has {len(group)} point(s); need >= 3")
        if group["split"].nunique() > 1:
            raise InputError(f"{path}: profile {pid!r} is split between calibration and test")
    df = df.sort_values(["profile_id", "point"], kind="stable").reset_index(drop=True)
    return df[[*PROFILE_COLUMNS, "mg_num"]]


def read_standards(path: str | Path) -> pd.DataFrame:
    """Read and check ``standards.csv``: ``session,standard,bse_measured,bse_reference``.

    Raises
    ------
    InputError
        Missing columns, non-numeric values, or a session with fewer than two standards
        (a gain and an offset need two).
    """
    path = Path(path)
    df = read_table(path, required=STANDARD_COLUMNS, dtype={"session": str, "standard": str})
    if df.empty:
        raise InputError(f"{path}: no standards listed")
    df["session"] = df["session"].astype(str).str.strip()
    for col in ("bse_measured", "bse_reference"):
        _numeric(df, col, path)
    for session, group in df.groupby("session", sort=False):
        if group["bse_reference"].nunique() < 2:
            raise InputError(
                f"{path}: session {session!r} needs two standards with different reference "
                "BSE values to fix a gain and an offset"
            )
    return df.reset_index(drop=True)

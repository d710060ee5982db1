"""Tabular inputs and outputs (CSV) with clear errors and atomic writes."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from olmap.errors import InputError, InputFileNotFoundError
from olmap.io.outputs import atomic_path


def write_table(df: pd.DataFrame, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write a CSV atomically (temporary name, then rename)."""
    with atomic_path(path, overwrite=overwrite) as tmp:
        df.to_csv(tmp, index=False)
    return Path(path)


def write_json(data: Any, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write JSON atomically, indented for humans."""
    with atomic_path(path, overwrite=overwrite) as tmp:
        tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    return Path(path)


def read_table(
    path: str | Path, *, required: Iterable[str] = (), dtype: dict[str, Any] | None = None
) -> pd.DataFrame:
    """Read a CSV and check that it has the ``required`` columns.

    Raises
    ------
    InputError
        Naming the file and the missing columns, or the parse problem.
    """
    path = Path(path)
    if not path.exists():
        raise InputFileNotFoundError(path, "table")
    try:
        df = pd.read_csv(path, dtype=dtype)
    except (
        pd.errors.ParserError,
        pd.errors.EmptyDataError,
        UnicodeDecodeError,
        ValueError,  # a dtype that does not fit the column
    ) as exc:
        raise InputError(f"{path}: not a readable CSV table ({str(exc).splitlines()[0]})") from exc
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise InputError(
            f"{path}: missing column(s) {', '.join(missing)} "
            f"(has: {', '.join(map(str, df.columns))})"
        )
    return df

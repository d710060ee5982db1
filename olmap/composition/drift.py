"""Session drift of the BSE signal, corrected with reference standards (seed 002 sect. 5.1.2).

Each session records ``bse = gain * reference + offset`` for standards of known reference
grey; two standards of contrasting BSE fix both. Dividing it out maps every session onto the
reference scale, so one calibration serves all of them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from affine import Affine

from olmap.errors import InputError


@dataclass(frozen=True)
class SessionDrift:
    """Per-session linear BSE drift: ``measured = gain * reference + offset``."""

    gain: dict[str, float]
    offset: dict[str, float]

    def to_dict(self) -> dict[str, dict[str, float]]:
        return {s: {"gain": self.gain[s], "offset": self.offset[s]} for s in self.gain}

    @classmethod
    def from_dict(cls, data: dict[str, dict[str, float]]) -> SessionDrift:
        return cls(
            {s: float(v["gain"]) for s, v in data.items()},
            {s: float(v["offset"]) for s, v in data.items()},
        )


def fit_session_drift(standards: pd.DataFrame) -> SessionDrift:
    """Least-squares gain and offset of each session from its standards.

    Parameters
    ----------
    standards : DataFrame
        ``session, bse_measured, bse_reference`` (grey levels), at least two distinct
        references per session (``olmap.io.epma.read_standards`` checks this).

    Examples
    --------
    >>> df = pd.DataFrame({"session": ["a", "a"], "bse_measured": [85.0, 245.0],
    ...                    "bse_reference": [80.0, 240.0]})
    >>> drift = fit_session_drift(df)
    >>> round(drift.gain["a"], 6), round(drift.offset["a"], 6)
    (1.0, 5.0)
    """
    gain, offset = {}, {}
    for session, group in standards.groupby("session", sort=False):
        ref = group["bse_reference"].to_numpy(float)
        meas = group["bse_measured"].to_numpy(float)
        slope, intercept = np.polyfit(ref, meas, 1)
        if slope <= 0:
            raise InputError(f"standards of session {session!r} give a non-positive BSE gain")
        gain[str(session)], offset[str(session)] = float(slope), float(intercept)
    return SessionDrift(gain, offset)


def correct_bse(
    bse: np.ndarray, session_index: np.ndarray, drift: SessionDrift, sessions: list[str]
) -> np.ndarray:
    """BSE on the reference scale: ``(bse - offset) / gain`` of each pixel's session.

    Pixels in no session (``session_index == -1``) or in a session without standards become
    NaN: they cannot be put on the reference scale.
    """
    gain = np.array([drift.gain.get(s, np.nan) for s in sessions] + [np.nan])
    offset = np.array([drift.offset.get(s, np.nan) for s in sessions] + [np.nan])
    return (bse.astype(np.float64) - offset[session_index]) / gain[session_index]


def check_sessions_have_standards(sessions: list[str], drift: SessionDrift, where: str) -> None:
    """Raise one line when one of ``sessions`` has no standards."""
    missing = [s for s in sessions if s not in drift.gain]
    if missing:
        raise InputError(f"{where}: no standards for session(s) {', '.join(missing)}")


def session_index_grid(
    regions: pd.DataFrame, transform: Affine, row0: int, col0: int, height: int, width: int
) -> np.ndarray:
    """Index into ``regions`` of the session covering each pixel of a window (-1: none).

    ``regions`` has ``x0_um, y0_um, x1_um, y1_um`` (``sessions.csv``); a pixel belongs to the
    first region that contains its centre.
    """
    cols = col0 + np.arange(width) + 0.5
    rows = row0 + np.arange(height) + 0.5
    x = transform.c + transform.a * cols
    y = transform.f + transform.e * rows
    out = np.full((height, width), -1, dtype=np.int64)
    for k in range(len(regions) - 1, -1, -1):  # reversed: the first listed region wins
        r = regions.iloc[k]
        in_x = (x >= r["x0_um"]) & (x < r["x1_um"])
        in_y = (y >= r["y0_um"]) & (y < r["y1_um"])
        if in_x.any() and in_y.any():
            out[np.ix_(in_y, in_x)] = k
    return out

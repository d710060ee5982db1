"""Compare crystal instances with a reference: one-to-one matching by IoU."""

from __future__ import annotations

import numpy as np
import pandas as pd


def match_instances(pred_ids: np.ndarray, true_ids: np.ndarray) -> pd.DataFrame:
    """Best-overlapping predicted instance of every reference instance.

    Parameters
    ----------
    pred_ids, true_ids : ndarray of int (same shape)
        Instance label images, 0 = none.

    Returns
    -------
    DataFrame
        Indexed by reference id (sorted): ``pred_id`` (0 where nothing overlaps), ``iou``.
        With IoU >= 0.5 a match is one-to-one: two instances cannot both cover more than
        half of the union with a third.

    Examples
    --------
    >>> t = np.array([[1, 1, 0, 2], [1, 1, 0, 2]])
    >>> p = np.array([[5, 5, 5, 0], [5, 5, 0, 0]])
    >>> match_instances(p, t).round(2).to_dict("list")
    {'pred_id': [5, 0], 'iou': [0.8, 0.0]}
    """
    t, p = np.ravel(true_ids), np.ravel(pred_ids)
    t_area = pd.Series(t[t > 0]).value_counts()
    p_area = pd.Series(p[p > 0]).value_counts()
    both = (t > 0) & (p > 0)
    pairs = pd.DataFrame({"t": t[both], "p": p[both]}).value_counts().rename("inter").reset_index()
    pairs["iou"] = pairs["inter"] / (
        t_area.loc[pairs["t"]].to_numpy() + p_area.loc[pairs["p"]].to_numpy() - pairs["inter"]
    )
    best = pairs.sort_values("iou", kind="stable").groupby("t").tail(1).set_index("t")
    out = pd.DataFrame(index=t_area.index.sort_values())
    out["pred_id"] = best["p"].reindex(out.index).fillna(0).astype(np.int64)
    out["iou"] = best["iou"].reindex(out.index).fillna(0.0)
    return out

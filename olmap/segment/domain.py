"""How far validation tiles are from training tiles: a domain-shift check for ``olmap train``.

A model fine-tuned on some sessions is judged on others; when the others look different
(another detector setting, a drifted session, a 16-bit export of another contrast) the
validation figures say less about the training and more about the shift. This compares the
grey values of the two splits in units of the training tiles' sd, overall and on the pixels
of each labelled class, so the user sees the shift before reading the scores.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: A median shift beyond this many training sd, or a spread ratio beyond this factor, is
#: called a shift worth a warning (olmap's session drift, +-6 % gain and +-5 levels, stays
#: well within: ~0.1 sd).
MAX_SHIFT_SD = 0.5
MAX_SPREAD_RATIO = 1.5


@dataclass(frozen=True)
class DomainShift:
    """Grey-level distance of the validation tiles from the training tiles.

    Attributes
    ----------
    median_shift_sd : float
        (validation median - training median) / training sd, over all valid pixels.
    spread_ratio : float
        Validation 1st-99th percentile range / the training's.
    class_shift_sd : dict
        The same median shift over the pixels labelled as each class.
    """

    median_shift_sd: float
    spread_ratio: float
    class_shift_sd: dict[str, float] = field(default_factory=dict)

    @property
    def large(self) -> bool:
        """True when the shift is beyond :data:`MAX_SHIFT_SD` or :data:`MAX_SPREAD_RATIO`."""
        shifts = [self.median_shift_sd, *self.class_shift_sd.values()]
        ratio = self.spread_ratio
        return any(abs(s) > MAX_SHIFT_SD for s in shifts if np.isfinite(s)) or (
            np.isfinite(ratio) and not 1 / MAX_SPREAD_RATIO <= ratio <= MAX_SPREAD_RATIO
        )

    def summary(self) -> str:
        """One line for the terminal."""
        parts = [
            f"median {self.median_shift_sd:+.2f} sd",
            f"spread x{self.spread_ratio:.2f}",
            *(f"{name} {s:+.2f} sd" for name, s in self.class_shift_sd.items() if np.isfinite(s)),
        ]
        return "validation vs training grey: " + ", ".join(parts)


def domain_shift(
    train_bse: np.ndarray,
    train_labels: np.ndarray,
    val_bse: np.ndarray,
    val_labels: np.ndarray,
    classes: dict[int, str],
) -> DomainShift:
    """Compare the grey values of validation tiles with those of training tiles.

    Parameters
    ----------
    train_bse, val_bse : ndarray
        Tiles (any shape) of each split; NaN is left out.
    train_labels, val_labels : ndarray
        Class codes of the same pixels (``ignore`` = unlabelled).
    classes : dict
        Class code -> name, of the classes to compare (leave the ignore code out).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> a = rng.normal(100, 10, (4, 64, 64)); b = 1.2 * a + 15  # another gain and offset
    >>> labels = np.zeros(a.shape, np.uint8)
    >>> shift = domain_shift(a, labels, b, labels, {0: "rock"})
    >>> round(shift.median_shift_sd, 1), round(shift.spread_ratio, 2), shift.large
    (3.5, 1.2, True)
    """
    train = np.asarray(train_bse, np.float64)
    val = np.asarray(val_bse, np.float64)
    t_ok, v_ok = np.isfinite(train), np.isfinite(val)
    if not t_ok.any() or not v_ok.any():
        return DomainShift(float("nan"), float("nan"))
    t1, t50, t99 = np.percentile(train[t_ok], [1, 50, 99])
    v1, v50, v99 = np.percentile(val[v_ok], [1, 50, 99])
    sd = max(float(train[t_ok].std()), 1e-12)
    per_class = {}
    for code, name in classes.items():
        t_sel = t_ok & (np.asarray(train_labels) == code)
        v_sel = v_ok & (np.asarray(val_labels) == code)
        if t_sel.sum() >= 100 and v_sel.sum() >= 100:
            per_class[name] = float((np.median(val[v_sel]) - np.median(train[t_sel])) / sd)
    spread = (v99 - v1) / (t99 - t1) if t99 > t1 else float("nan")
    return DomainShift(float((v50 - t50) / sd), float(spread), per_class)

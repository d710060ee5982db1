"""Counts in relative units: every element map divided by its level in a reference phase that
the map itself contains, so that rule thresholds mean the same on any instrument and session.

Raw X-ray counts depend on beam current, dwell time and detector efficiency, per element and per
session (the St Kitts maps: Mg sensitivity differs about 2x between two sessions of one lab).
Dividing each element by a level measured in the same map cancels all of that: a rule file
with ``units: relative`` gives the same mask when any element map is scaled by any factor
(tested). The reference levels (docs/masks.md, "Relative units"):

* **Si** — its median in the map's plagioclase (Al-rich pixels with little Mg and Fe), whose
  Si varies less than that of glass; without plagioclase, the most common Si level of the map
  (the felsic matrix). Olivine has ~0.7-0.85 of it, pyroxenes ~1.0-1.2.
* **Mg, Fe** — their median in the map's Mg-richest phase (pixels with at least 0.6 x the
  99.9th percentile of Mg): olivine where there is olivine, else orthopyroxene, clinopyroxene.
  So ``Si/(Mg+Fe)`` is about half the phase's Si (relative to plagioclase) for that phase:
  ~0.3-0.43 for olivine, ~0.5-0.6 for orthopyroxene — the stoichiometric factor of two between
  (Mg,Fe)2SiO4 and (Mg,Fe)SiO3, read without knowing any element's sensitivity.
* **every other element** — its 99th percentile: the level of the map's richest abundant
  phase in that element (plagioclase or clinopyroxene for Ca and Al).

Only non-empty pixels count (holes and epoxy have almost no X-rays): pixels whose sum of
``counts / 99th percentile`` over the elements is at least 0.2.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from rasterio.windows import Window
from scipy import ndimage as ndi

from olmap.core.windows import block_windows
from olmap.errors import InputError
from olmap.parallel import ordered_map

#: Pixels sampled at most to find the reference levels (a regular grid over the map).
MAX_SAMPLES = 1_000_000
#: A pixel is empty (hole, epoxy) when the sum of its counts relative to each element's 99th
#: percentile is below this.
EMPTY_BELOW = 0.2
#: The Mg-rich reference phase: pixels with at least this fraction of the 99.9th percentile of Mg.
MG_RICH_FRACTION = 0.6
#: Plagioclase, the Si reference: Al >= PLAG_AL (relative to Al's 99th percentile) and
#: Mg + Fe (relative) <= PLAG_MAFIC x Al (glass has ~0.7-0.9, plagioclase ~0.05-0.3); used when
#: at least PLAG_MIN_SHARE of the non-empty pixels (and 100) are such.
PLAG_AL = 0.65
PLAG_MAFIC = 0.5
PLAG_MIN_SHARE = 0.005


@dataclass(frozen=True)
class ReferenceLevels:
    """Counts that become 1 in relative units, per element, and how each was found.

    Attributes
    ----------
    levels : dict of str to float
        Element -> counts per pixel of its reference.
    basis : dict of str to str
        Element -> what the reference is (for reports).
    sampled_px, nonempty_px : int
        Pixels sampled, and how many of them were not empty.
    """

    levels: dict[str, float]
    basis: dict[str, str]
    sampled_px: int
    nonempty_px: int

    def apply(self, counts: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Counts in relative units (float32)."""
        return {
            el: np.asarray(v, dtype=np.float32) / np.float32(self.levels[el])
            for el, v in counts.items()
        }

    def as_dict(self) -> dict:
        return {
            "levels_counts": {e: float(v) for e, v in self.levels.items()},
            "basis": dict(self.basis),
            "sampled_px": self.sampled_px,
            "nonempty_px": self.nonempty_px,
        }


def _mode(values: np.ndarray) -> float:
    """Most common value of a positive sample (smoothed 256-bin histogram above 0.3 x P99.5)."""
    top = float(np.percentile(values, 99.5))
    hist, edges = np.histogram(values, bins=256, range=(0.0, top))
    hist = ndi.gaussian_filter1d(hist.astype(np.float64), 3)
    hist[edges[:-1] < 0.3 * top] = 0  # oxides and mixed edge pixels are not the matrix
    i = int(np.argmax(hist))
    return float((edges[i] + edges[i + 1]) / 2)


def _si_reference(v: Mapping[str, np.ndarray], levels: Mapping[str, float]) -> tuple[float, str]:
    """Si of the map's plagioclase where it has some, else its most common Si level.

    Plagioclase (Al-rich pixels with little Mg + Fe) is in nearly every basalt and andesite,
    and its Si (21-28 wt%) varies less than that of glass (24-35 wt%): a silicic glass as the
    reference would put orthopyroxene at olivine's Si.
    """
    if "Al" in v and ("Mg" in v or "Fe" in v):
        al = v["Al"] / levels["Al"]
        mafic = sum(v[e] / levels[e] for e in ("Mg", "Fe") if e in v)
        plag = (al >= PLAG_AL) & (mafic <= PLAG_MAFIC * al)
        if plag.sum() >= max(100, PLAG_MIN_SHARE * plag.size):
            share = 100 * plag.mean()
            return float(np.median(v["Si"][plag])), (
                f"median in the map's plagioclase (Al-rich, Mg-Fe-poor: {share:.1f} % of pixels)"
            )
    return _mode(v["Si"]), "most common Si level (the felsic matrix: glass, feldspar)"


def reference_levels(samples: Mapping[str, np.ndarray], *, source: str = "EDS") -> ReferenceLevels:
    """Reference level of every element from a sample of the map's pixels.

    Parameters
    ----------
    samples : mapping of str to ndarray
        Counts per element at the same sampled pixels (1-D, any numeric dtype).
    source : str
        Named in errors.

    Raises
    ------
    InputError
        When an element has no counts, or the map is (almost) empty.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> ol = {"Si": 55, "Mg": 80, "Fe": 30}; px = {"Si": 85, "Mg": 5, "Fe": 15}
    >>> s = {e: rng.poisson(np.r_[[ol[e]] * 200, [px[e]] * 800]) for e in ol}
    >>> ref = reference_levels(s)
    >>> round(ref.levels["Si"] / 85, 1), round(ref.levels["Mg"] / 80, 1)
    (1.0, 1.0)
    """
    values = {e: np.asarray(v, dtype=np.float32) for e, v in samples.items()}
    top = {e: float(np.percentile(v, 99)) if v.size else 0.0 for e, v in values.items()}
    empty = [e for e, t in top.items() if not t > 0]
    if empty:
        raise InputError(
            f"{source}: no counts in the {', '.join(empty)} map(s) (99th percentile 0); "
            "relative units need counts in every element a rule reads"
        )
    signal = sum(v / top[e] for e, v in values.items())
    nonempty = signal >= EMPTY_BELOW
    n = int(nonempty.sum())
    if n < 100:
        raise InputError(f"{source}: only {n} non-empty pixels; too few to find reference levels")
    v = {e: x[nonempty] for e, x in values.items()}
    levels: dict[str, float] = {}
    basis: dict[str, str] = {}
    if "Mg" in v:
        mg = v["Mg"]
        rich = mg >= MG_RICH_FRACTION * np.percentile(mg, 99.9)
        share = 100 * rich.mean()
        for e in ("Mg", "Fe"):
            if e in v:
                levels[e] = float(np.median(v[e][rich]))
                basis[e] = f"median in the map's Mg-richest phase ({share:.1f} % of pixels)"
    for e, x in v.items():
        if e not in levels and e != "Si":
            levels[e] = float(np.percentile(x, 99))
            basis[e] = "99th percentile (the richest abundant phase)"
    if "Si" in v:
        levels["Si"], basis["Si"] = _si_reference(v, levels)
    zero = [e for e, lv in levels.items() if not lv > 0]
    if zero:
        raise InputError(f"{source}: reference level of {', '.join(zero)} is 0 counts")
    return ReferenceLevels(levels, basis, sampled_px=int(signal.size), nonempty_px=n)


def sample_stride(height: int, width: int, max_samples: int = MAX_SAMPLES) -> int:
    """Step (px, both axes) of the regular sampling grid: every pixel of maps up to
    ``max_samples`` pixels."""
    return max(1, int(np.ceil(np.sqrt(height * width / max_samples))))


def sample_counts(
    read: Callable[[Window, Sequence[str]], tuple[dict[str, np.ndarray], np.ndarray | None]],
    shape: tuple[int, int],
    elements: Sequence[str],
    *,
    window: int = 2048,
    workers: int = 1,
) -> dict[str, np.ndarray]:
    """Counts of ``elements`` on a regular grid of pixels (without pixels lacking data).

    ``read(window, elements)`` is an EDS source's reader. Memory: one window at a time plus
    the samples (at most :data:`MAX_SAMPLES` per element).
    """
    height, width = shape
    step = sample_stride(height, width)
    # Windows aligned to the step so that the grid is the same whatever the window size.
    side = max(step, window // step * step)

    def one(win: Window) -> dict[str, np.ndarray]:
        counts, missing = read(win, elements)
        keep = (slice(None, None, step), slice(None, None, step))
        ok = None if missing is None else ~missing[keep]
        out = {}
        for e in elements:
            x = counts[e][keep]
            out[e] = (x[ok] if ok is not None else x.ravel()).ravel()
        return out

    parts = [p for _, p in ordered_map(one, block_windows(height, width, side), workers=workers)]
    return {e: np.concatenate([p[e] for p in parts]) for e in elements}

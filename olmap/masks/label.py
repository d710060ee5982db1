"""Label maps from EDS counts: rule evaluation, precedence, growth, clean-up, crack masking.

Pure functions on numpy arrays; :mod:`olmap.masks.stream` applies them window by window. The
steps of :func:`classify_window`, in order:

1. *match* — every class's rules on every pixel, then its ``reject`` entries on counts pooled
   over nearby candidates (:func:`class_matches`, :func:`reject_pooled`);
2. *precedence* — the first class in file order that matches wins (:func:`label_by_precedence`);
   pixels matching several classes are counted, pair by pair, so rule-order effects are visible;
3. *grow* — unclassified pixels near a class that pass its looser boundary rules join it;
4. *clean-up* — objects of at most ``min_size_px`` px are removed, unclassified holes of at
   most ``fill_holes_px`` px are filled;
5. *ignore* — classified pixels that BSE shows as cracks/holes, and pixels without EDS data,
   become 255.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi
from skimage import morphology

from olmap.masks.rules import IGNORE, UNCLASSIFIED, Condition, MineralRule, RuleSet


def ratio_rule_mask(
    counts: Mapping[str, np.ndarray], conditions: Sequence[Condition]
) -> np.ndarray:
    """Pixels where every condition holds (the paper's olivine test is one such call).

    Parameters
    ----------
    counts : mapping of str to ndarray
        EDS counts per element symbol, all of one shape.
    conditions : sequence of Condition

    Returns
    -------
    ndarray of bool

    Examples
    --------
    >>> import numpy as np
    >>> from olmap.masks.rules import Condition
    >>> counts = {"Mg": np.array([60, 60, 0]), "Ca": np.array([3, 30, 0])}
    >>> rule = [Condition.parse("Ca/Mg < 0.1"), Condition.parse("Mg > 30")]
    >>> ratio_rule_mask(counts, rule).tolist()    # Mg = 0: Ca/Mg is infinite
    [True, False, False]
    """
    if not conditions:
        raise ValueError("a class needs at least one condition")
    mask = conditions[0].evaluate(counts)
    for cond in conditions[1:]:
        mask &= cond.evaluate(counts)
    return mask


def reject_pooled(
    match: np.ndarray, counts: Mapping[str, np.ndarray], rule: MineralRule
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Remove the pixels of ``match`` that a ``reject`` entry of ``rule`` claims.

    Each entry's conditions are tested at every matched pixel on counts pooled over the matched
    pixels of a ``(2 r + 1)²`` box around it (``r = rule.reject_pool_px``): a ratio of sums,
    which averages Poisson noise ~``2 r + 1`` times down without mixing in the neighbouring
    phases (only the class's own candidates are pooled). An entry earlier in the file claims a
    pixel first.

    Returns
    -------
    kept : ndarray of bool
    rejected : dict of str to ndarray of bool
        Pixels rejected by each entry.
    """
    if not rule.reject or not match.any():
        return match, {name: np.zeros_like(match) for name in rule.reject}
    size = 2 * rule.reject_pool_px + 1
    weight = match.astype(np.float32)

    def pooled(elements: tuple[str, ...]) -> np.ndarray:
        total = sum(np.asarray(counts[e], dtype=np.float32) for e in elements)
        return ndi.uniform_filter(total * weight, size=size, mode="nearest")

    n = ndi.uniform_filter(weight, size=size, mode="nearest")
    free = match.copy()
    rejected: dict[str, np.ndarray] = {}
    for name, conditions in rule.reject.items():
        claim = free.copy()
        for cond in conditions:
            num = pooled(cond.numerator)
            den = pooled(cond.denominator) if cond.denominator else n
            value = np.divide(num, den, out=np.full_like(num, np.inf), where=den > 0)
            claim &= cond.compare(value)
        free &= ~claim
        rejected[name] = claim
    return free, rejected


def class_matches(
    counts: Mapping[str, np.ndarray], rules: RuleSet, nodata: np.ndarray | None = None
) -> tuple[np.ndarray, list[dict[str, np.ndarray]]]:
    """Which classes' rules hold at each pixel, after rejections (:func:`reject_pooled`).

    Returns
    -------
    matches : ndarray of bool, shape (n_classes, row, col)
    rejected : list of dict of str to ndarray
        Per class, the pixels its ``reject`` entries removed.
    """
    matches, rejected = [], []
    for rule in rules.classes:
        match = ratio_rule_mask(counts, rule.rules)
        if nodata is not None:
            match &= ~nodata
        match, gone = reject_pooled(match, counts, rule)
        matches.append(match)
        rejected.append(gone)
    return np.stack(matches), rejected


def label_by_precedence(matches: np.ndarray, codes: Sequence[int]) -> np.ndarray:
    """uint8 label map: each pixel gets the code of the first matching class, else 0.

    Parameters
    ----------
    matches : ndarray of bool, shape (n_classes, row, col)
    codes : sequence of int
        Label value of each class, in precedence order.
    """
    labels = np.full(matches.shape[1:], UNCLASSIFIED, dtype=np.uint8)
    # Assign in reverse so that earlier classes overwrite later ones: first match wins.
    for match, code in zip(matches[::-1], list(codes)[::-1], strict=True):
        labels[match] = code
    return labels


@dataclass
class LabelStats:
    """Pixel counts of one or more windows, summable over windows.

    Attributes
    ----------
    class_names : dict of int to str
        Label value -> class name (``unclassified`` and ``ignore`` included).
    pixels : dict of int to int
        Final pixels per label value.
    matched : ndarray, shape (n_classes,)
        Pixels each class's rules matched, before precedence.
    overlap : ndarray, shape (n_classes, n_classes)
        ``overlap[i, j]``: pixels matched by both class i and class j (i != j); such a pixel
        went to the earlier class.
    multi_matched : int
        Pixels matched by two or more classes.
    grown, removed, filled : ndarray, shape (n_classes,)
        Pixels added by boundary growth, removed as small objects, added as filled holes.
    ignored_cracks, ignored_nodata : int
        Classified pixels set to 255 because BSE shows a crack/hole; pixels without EDS data.
    lost : ndarray, shape (n_classes,)
        Pixels a class matched that an earlier class also matched (they went to it).
    rejected : dict of str to int
        ``"class: entry"`` -> pixels that entry of the class's ``reject`` took away.
    passed : dict of str to int
        ``"class: condition"`` -> pixels passing each plain (non-ratio) threshold, to warn
        about thresholds that exclude almost nothing.
    """

    class_names: dict[int, str]
    pixels: dict[int, int]
    matched: np.ndarray
    overlap: np.ndarray
    multi_matched: int = 0
    grown: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    removed: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    filled: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    ignored_cracks: int = 0
    ignored_nodata: int = 0
    lost: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    rejected: dict[str, int] = field(default_factory=dict)
    passed: dict[str, int] = field(default_factory=dict)

    @classmethod
    def empty(cls, rules: RuleSet) -> LabelStats:
        n = len(rules.classes)
        zeros = np.zeros(n, np.int64)
        return cls(
            class_names=rules.class_names,
            pixels={code: 0 for code in rules.class_names},
            matched=zeros.copy(),
            overlap=np.zeros((n, n), np.int64),
            grown=zeros.copy(),
            removed=zeros.copy(),
            filled=zeros.copy(),
            lost=zeros.copy(),
            rejected={f"{c.name}: {name}": 0 for c in rules.classes for name in c.reject},
            passed={
                f"{c.name}: {cond}": 0
                for c in rules.classes
                for cond in c.rules
                if not cond.is_ratio and cond.op in (">", ">=")
            },
        )

    def __iadd__(self, other: LabelStats) -> LabelStats:
        for code, n in other.pixels.items():
            self.pixels[code] = self.pixels.get(code, 0) + n
        self.matched += other.matched
        self.overlap += other.overlap
        self.multi_matched += other.multi_matched
        self.grown += other.grown
        self.removed += other.removed
        self.filled += other.filled
        self.ignored_cracks += other.ignored_cracks
        self.ignored_nodata += other.ignored_nodata
        self.lost += other.lost
        for key, n in other.rejected.items():
            self.rejected[key] = self.rejected.get(key, 0) + n
        for key, n in other.passed.items():
            self.passed[key] = self.passed.get(key, 0) + n
        return self

    @property
    def total(self) -> int:
        return int(sum(self.pixels.values()))

    @property
    def classified(self) -> int:
        """Pixels with a class (neither unclassified nor ignore)."""
        return int(sum(n for c, n in self.pixels.items() if c not in (UNCLASSIFIED, IGNORE)))

    def as_dict(self) -> dict:
        """JSON-ready summary (class names as keys)."""
        names = [n for c, n in self.class_names.items() if c not in (UNCLASSIFIED, IGNORE)]
        return {
            "pixels": {self.class_names[c]: int(n) for c, n in self.pixels.items()},
            "matched_before_precedence": dict(zip(names, self.matched.tolist(), strict=True)),
            "multi_matched_pixels": int(self.multi_matched),
            "overlap": {
                f"{names[i]} & {names[j]}": int(self.overlap[i, j])
                for i in range(len(names))
                for j in range(i + 1, len(names))
                if self.overlap[i, j]
            },
            "grown": dict(zip(names, self.grown.tolist(), strict=True)),
            "removed_small": dict(zip(names, self.removed.tolist(), strict=True)),
            "filled_holes": dict(zip(names, self.filled.tolist(), strict=True)),
            "ignored_cracks": int(self.ignored_cracks),
            "ignored_nodata": int(self.ignored_nodata),
            "lost_to_earlier_classes": dict(zip(names, self.lost.tolist(), strict=True)),
            "rejected_px": {k: int(v) for k, v in self.rejected.items()},
            "plain_threshold_passes_px": {k: int(v) for k, v in self.passed.items()},
        }


def _disk(radius: int) -> np.ndarray:
    return morphology.disk(radius).astype(bool)


def grow_class(
    labels: np.ndarray, code: int, candidates: np.ndarray, distance_px: int
) -> np.ndarray:
    """Unclassified ``candidates`` within ``distance_px`` (Euclidean) of class ``code``.

    Returns the pixels to add (bool); only pixels of the original class seed the growth,
    so the result does not depend on the order pixels are visited.
    """
    seeds = labels == code
    if not seeds.any():
        return np.zeros_like(seeds)
    near = ndi.binary_dilation(seeds, structure=_disk(distance_px))
    return near & candidates & (labels == UNCLASSIFIED)


def classify_window(
    counts: Mapping[str, np.ndarray],
    rules: RuleSet,
    *,
    bse: np.ndarray | None = None,
    nodata: np.ndarray | None = None,
    inner: tuple[slice, slice] | None = None,
    crack_levels: Mapping[int, float] | None = None,
) -> tuple[np.ndarray, LabelStats]:
    """Label map of one window of EDS counts by a rule set.

    Parameters
    ----------
    counts : mapping of str to ndarray
        Counts per element (every element of ``rules.elements``), one shape ``(row, col)``.
    rules : RuleSet
    bse : ndarray, optional
        BSE grey levels on the same grid; needed for ``rules.ignore`` (crack masking).
    nodata : ndarray of bool, optional
        Pixels without EDS data; labelled 255.
    inner : (slice, slice), optional
        The part of the window that counts in the statistics (the window without its halo;
        see :attr:`RuleSet.halo_px`). The whole window by default.
    crack_levels : mapping of int to float, optional
        Class code -> BSE level (in the units of ``bse``) below which its pixels are cracks;
        needed for ``ignore.bse_below_share`` (:func:`olmap.masks.stream.crack_levels` measures
        it on the whole map). Default: ``ignore.bse_below`` for every class.

    Returns
    -------
    labels : ndarray of uint8
        Class codes (``rules.codes``), 0 unclassified, 255 ignore.
    stats : LabelStats
        Pixel counts inside ``inner``.
    """
    inner = inner or (slice(None), slice(None))
    codes = list(rules.codes.values())
    stats = LabelStats.empty(rules)

    matches, rejected = class_matches(counts, rules, nodata)
    for rule, gone in zip(rules.classes, rejected, strict=True):
        for name, px in gone.items():
            stats.rejected[f"{rule.name}: {name}"] = int(px[inner].sum())
    has_data = np.ones(matches.shape[1:], bool) if nodata is None else ~nodata
    for rule in rules.classes:
        for cond in rule.rules:
            key = f"{rule.name}: {cond}"
            if key in stats.passed:
                stats.passed[key] = int((cond.evaluate(counts) & has_data)[inner].sum())
    core = matches[(slice(None), *inner)]
    stats.matched = core.sum(axis=(1, 2), dtype=np.int64)
    earlier = np.zeros(core.shape[1:], bool)
    for i in range(len(codes)):
        stats.lost[i] = int((core[i] & earlier).sum())
        earlier |= core[i]
    del earlier
    n_match = core.sum(axis=0, dtype=np.int16)
    stats.multi_matched = int((n_match > 1).sum())
    if stats.multi_matched:
        flat = core.reshape(len(codes), -1)[:, (n_match > 1).ravel()].astype(np.int64)
        stats.overlap = flat @ flat.T
        np.fill_diagonal(stats.overlap, 0)
    labels = label_by_precedence(matches, codes)
    del matches, core

    for i, (rule, code) in enumerate(zip(rules.classes, codes, strict=True)):
        if rule.grow is None:
            continue
        candidates = ratio_rule_mask(counts, rule.grow.rules)
        if nodata is not None:
            candidates &= ~nodata
        added = grow_class(labels, code, candidates, rule.grow.distance_px)
        labels[added] = code
        stats.grown[i] = int(added[inner].sum())

    for i, (rule, code) in enumerate(zip(rules.classes, codes, strict=True)):
        if rule.min_size_px:
            member = labels == code
            kept = morphology.remove_small_objects(member, max_size=rule.min_size_px)
            removed = member & ~kept
            labels[removed] = UNCLASSIFIED
            stats.removed[i] = int(removed[inner].sum())
        if rule.fill_holes_px:
            member = labels == code
            closed = morphology.remove_small_holes(member, max_size=rule.fill_holes_px)
            filled = closed & ~member & (labels == UNCLASSIFIED)
            if nodata is not None:
                filled &= ~nodata
            labels[filled] = code
            stats.filled[i] = int(filled[inner].sum())

    if rules.ignore is not None and bse is not None:
        if crack_levels is None:
            if rules.ignore.bse_below is None:
                raise ValueError("ignore.bse_below_share needs the map's crack_levels")
            crack_levels = dict.fromkeys(codes, rules.ignore.bse_below)
        classified = labels != UNCLASSIFIED
        level = np.full(256, -np.inf, np.float32)
        for code, value in crack_levels.items():
            level[code] = value
        crack = classified & (bse < level[labels])
        if rules.ignore.dilate_px:
            crack = ndi.binary_dilation(crack, structure=_disk(rules.ignore.dilate_px))
            crack &= classified
        labels[crack] = IGNORE
        stats.ignored_cracks = int(crack[inner].sum())
    if nodata is not None:
        labels[nodata] = IGNORE
        stats.ignored_nodata = int(nodata[inner].sum())

    values, n = np.unique(labels[inner], return_counts=True)
    stats.pixels.update({int(v): int(k) for v, k in zip(values, n, strict=True)})
    return labels, stats

"""Build a label map from EDS maps window by window (bounded memory, any mosaic size).

Each window is read with a halo of :attr:`RuleSet.halo_px` pixels so that growth and the size
filters see the same neighbourhood as on the whole image; only the inner part is written and
counted. The result therefore does not depend on the window size (tested).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rasterio.windows import Window

from olmap import __version__
from olmap.core.windows import block_windows, halo_window
from olmap.errors import InputError
from olmap.io.eds import EdsSource
from olmap.io.legend import canonical_class_name, read_legend
from olmap.io.outputs import atomic_paths
from olmap.io.raster import (
    check_grid,
    check_single_band,
    class_names,
    create_raster,
    format_class_tag,
    raster_inputs,
    read_raster,
    unsigned_grey_scale,
)
from olmap.io.tables import write_json
from olmap.masks.label import LabelStats, classify_window, ratio_rule_mask
from olmap.masks.normalise import ReferenceLevels, reference_levels, sample_counts
from olmap.masks.rules import IGNORE, UNCLASSIFIED, RuleSet
from olmap.parallel import ordered_map

#: A plain threshold passing at least this share of the pixels with data gets a warning.
WARN_PASS_SHARE = 0.85

#: Default window side (px): ~2,048² px x (5 bands + labels + masks) stays under ~300 MB.
DEFAULT_WINDOW = 2048


@dataclass
class Confusion:
    """Pixel counts of a label map against a reference label map (e.g. synthetic truth).

    Attributes
    ----------
    counts : ndarray, shape (n_reference_rows, 256)
        ``counts[t, p]``: pixels of reference row ``t`` with label ``p``.
    reference_names : dict of int to str
        Row -> reference class name.
    label_names : dict of int to str
    """

    counts: np.ndarray
    reference_names: dict[int, str]
    label_names: dict[int, str]

    def fractions(self) -> dict[str, dict[str, float]]:
        """Per reference class: fraction of its pixels given each label."""
        out = {}
        for t, tname in self.reference_names.items():
            total = self.counts[t].sum()
            if total:
                out[tname] = {
                    pname: float(self.counts[t, p] / total) for p, pname in self.label_names.items()
                }
        return out

    def iou(self) -> dict[str, float]:
        """IoU of every class named in both maps (ignored pixels count as not the class)."""
        ref_rows: dict[str, list[int]] = {}
        for row, name in self.reference_names.items():
            ref_rows.setdefault(canonical_class_name(name), []).append(row)
        out = {}
        for p, name in self.label_names.items():
            rows = ref_rows.get(canonical_class_name(name))
            if rows and p not in (UNCLASSIFIED, IGNORE):
                inter = self.counts[rows, p].sum()
                labelled = self.counts[list(self.reference_names), p].sum()  # nodata left out
                union = self.counts[rows].sum() + labelled - inter
                out[name] = float(inter / union) if union else float("nan")
        return out


#: Pseudo-element under which the BSE grey is sampled beside the EDS counts.
_BSE = "_bse"
#: The map's dark level (resin in cracks, holes and vesicles): this percentile of its BSE.
DARK_PERCENTILE = 0.1
#: Classes with fewer sampled pixels get no crack masking (their median would be noise).
MIN_CLASS_SAMPLES = 50


@dataclass
class CrackLevels:
    """BSE levels below which a class's pixels are cracks (``ignore.bse_below_share``).

    Attributes
    ----------
    levels : dict of int to float
        Class code -> BSE level, in the grey levels of the BSE image.
    dark : float
        The map's dark level (its :data:`DARK_PERCENTILE` th BSE percentile).
    medians : dict of str to float
        Class name -> median BSE of the sampled pixels that pass the class's rules.
    """

    levels: dict[int, float]
    dark: float
    medians: dict[str, float]

    def as_dict(self) -> dict:
        return {
            "dark": round(self.dark, 3),
            "class_median": {n: round(v, 3) for n, v in self.medians.items()},
            "level": {str(c): round(v, 3) for c, v in self.levels.items()},
        }


def crack_levels(
    eds: EdsSource,
    bse: str | Path,
    rules: RuleSet,
    references: ReferenceLevels | None,
    *,
    window: int = DEFAULT_WINDOW,
    workers: int = 1,
) -> CrackLevels:
    """Measure each class's crack level on the whole map, for ``ignore.bse_below_share``.

    On a regular grid of pixels (:func:`~olmap.masks.normalise.sample_counts`), the dark level
    is a low percentile of the BSE (resin fills cracks, holes and vesicles) and each class's
    grey is the median BSE of the pixels that pass its rules; a pixel of the class is a crack
    below ``dark + share * (median - dark)``. Both ends scale with the detector's gain and
    black level, so one share holds on 8- and 16-bit BSE of any contrast.
    """
    assert rules.ignore is not None and rules.ignore.bse_below_share is not None

    def read(win: Window, elements) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
        counts, missing = eds.read(win, [e for e in elements if e != _BSE])
        counts[_BSE] = read_raster(bse, window=win, bands=1).astype(np.float64)
        return counts, missing

    sample = sample_counts(read, eds.shape, [*rules.elements, _BSE], window=window, workers=workers)
    grey = sample.pop(_BSE)
    if references is not None:
        sample = references.apply(sample)
    dark = float(np.percentile(grey, DARK_PERCENTILE)) if grey.size else 0.0
    levels, medians = {}, {}
    share = rules.ignore.bse_below_share
    for rule, code in zip(rules.classes, rules.codes.values(), strict=True):
        inside = grey[ratio_rule_mask(sample, rule.rules)]
        if inside.size >= MIN_CLASS_SAMPLES:
            medians[rule.name] = float(np.median(inside))
            levels[code] = dark + share * (medians[rule.name] - dark)
    return CrackLevels(levels, dark, medians)


@dataclass
class MaskResult:
    """What :func:`build_label_map` wrote and counted."""

    path: Path
    stats: LabelStats
    confusion: Confusion | None = None
    notes: list[str] = field(default_factory=list)
    references: ReferenceLevels | None = None
    units: str = "counts"
    cracks: CrackLevels | None = None

    def as_dict(self) -> dict:
        out = {"output": str(self.path), "units": self.units, **self.stats.as_dict()}
        if self.references is not None:
            out["reference_levels"] = self.references.as_dict()
        if self.cracks is not None:
            out["crack_levels"] = self.cracks.as_dict()
        if self.confusion is not None:
            out["reference_fractions"] = self.confusion.fractions()
            out["reference_iou"] = self.confusion.iou()
        if self.notes:
            out["notes"] = self.notes
        return out


def check_elements(rules: RuleSet, eds: EdsSource) -> None:
    """Raise :class:`InputError` if a rule reads an element the EDS data lack."""
    have = set(eds.elements)
    for rule in rules.classes:
        missing = [el for el in rule.elements if el not in have]
        if missing:
            raise InputError(
                f"{rules.source or 'rules'}: class {rule.name!r} needs {', '.join(missing)}, "
                f"but the EDS data ({eds.description}) have only {', '.join(eds.elements)}"
            )


def build_label_map(
    eds: EdsSource,
    rules: RuleSet,
    out: str | Path,
    *,
    bse: str | Path | None = None,
    reference: str | Path | None = None,
    legend: str | Path | None = None,
    window: int = DEFAULT_WINDOW,
    workers: int = 1,
    report: str | Path | None = None,
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
) -> MaskResult:
    """Classify every pixel of an EDS map by a rule set and write a uint8 label GeoTIFF.

    Parameters
    ----------
    eds : EdsRasters or EdsArrays
        Element maps (see :func:`olmap.io.eds.open_eds`).
    rules : RuleSet
    out : path-like
        Output GeoTIFF (written under a temporary name, renamed when complete). Codes as in
        ``rules.codes``, 0 unclassified, 255 ignore; listed in its ``classes`` tag.
    bse : path-like, optional
        BSE mosaic on the same grid; checked for co-registration; enables crack masking.
    reference : path-like, optional
        A label map on the same grid to compare with: uint8 with a ``classes`` tag (e.g.
        ``truth/phases.tif`` of a synthetic section), or any integer codes with ``legend``.
    legend : path-like, optional
        Codes of ``reference`` -> class names (YAML or CSV, :func:`olmap.io.legend.read_legend`);
        the raster may then be of any integer type (or float holding whole numbers, with
        its nodata value skipped).
    window : int
        Window side in px; memory grows with ``(window + 2 * halo)²``.
    workers : int
        Threads.
    report : path-like, optional
        Also write :meth:`MaskResult.as_dict` as JSON there; the map and the report appear
        together or not at all.
    overwrite : bool
    progress : callable, optional
        Called with the number of pixels done after each window.

    Raises
    ------
    InputError
        For missing elements, grids that do not match, bad counts, or when no pixel matches
        any class (nothing is written then).
    """
    inputs = raster_inputs(*eds.paths, bse, reference)  # a VRT's sources are inputs too
    if legend is not None:
        inputs.append(Path(legend))
    outputs = [out, report] if report is not None else [out]
    with atomic_paths(outputs, inputs=[*inputs, rules.source], overwrite=overwrite) as tmps:
        result = _label_map(eds, rules, tmps[0], bse, reference, legend, window, workers, progress)
        result.path = Path(out)
        if report is not None:
            write_json(result.as_dict(), tmps[1], overwrite=True)
    return result


def _label_map(
    eds: EdsSource,
    rules: RuleSet,
    out: Path,
    bse: str | Path | None,
    reference: str | Path | None,
    legend: str | Path | None,
    window: int,
    workers: int,
    progress: Callable[[int], None] | None,
) -> MaskResult:
    check_elements(rules, eds)
    grey_scale = 1.0
    if bse is not None:
        bse_info = check_single_band(bse, "BSE image")
        if rules.ignore is not None and rules.ignore.bse_below is not None:  # 8-bit levels
            grey_scale = unsigned_grey_scale(bse_info, f"ignore.bse_below of {rules.source}")
    ref_rows = None
    if reference is not None:
        ref_rows = ReferenceRows.open(reference, legend)
    elif legend is not None:
        raise InputError(f"{legend}: a legend describes --reference; give the label map too")
    height, width = eds.shape
    notes: list[str] = list(getattr(eds, "notes", []))
    for path in (bse, reference):
        if path is not None:
            check_grid(path, eds.shape, eds.transform, f"the EDS grid of {eds.description}")
    if rules.ignore is not None and bse is None:
        notes.append(
            f"{rules.source}: crack masking (ignore.bse_below) needs the BSE image; "
            "give --bse to apply it"
        )
    halo = rules.halo_px
    elements = rules.elements
    levels = None
    if rules.units == "relative":
        sample = sample_counts(eds.read, eds.shape, elements, window=window, workers=workers)
        levels = reference_levels(sample, source=eds.description)
    cracks = None
    if rules.ignore is not None and rules.ignore.bse_below_share is not None and bse is not None:
        cracks = crack_levels(eds, bse, rules, levels, window=window, workers=workers)

    def process(win: Window) -> tuple[np.ndarray, LabelStats, np.ndarray | None]:
        padded, inner = halo_window(win, halo, height, width)
        counts, missing = eds.read(padded, elements)
        if levels is not None:
            counts = levels.apply(counts)
        grey = None
        if bse is not None:
            grey = read_raster(bse, window=padded, bands=1) * grey_scale
        labels, stats = classify_window(
            counts,
            rules,
            bse=grey,
            nodata=missing,
            inner=inner,
            crack_levels=None if cracks is None else cracks.levels,
        )
        labels = labels[inner]
        confusion = None
        if ref_rows is not None:
            rows = ref_rows.read(win)
            confusion = np.bincount((rows * 256 + labels).ravel(), minlength=ref_rows.n_rows * 256)
        return labels, stats, confusion

    total = LabelStats.empty(rules)
    conf = np.zeros(ref_rows.n_rows * 256, np.int64) if ref_rows is not None else None
    tags = {
        "classes": format_class_tag(rules.class_names),
        "rules": rules.source,
        "software": f"olmap {__version__}",
    }
    with create_raster(
        out,
        height=height,
        width=width,
        dtype="uint8",
        transform=eds.transform,
        band_names=["label"],
        nodata=IGNORE,
        tags=tags,
        overwrite=True,
        atomic=False,
    ) as ds:
        windows = block_windows(height, width, window)
        for win, (labels, stats, confusion) in ordered_map(process, windows, workers=workers):
            ds.write(labels, 1, window=win)
            total += stats
            if conf is not None and confusion is not None:
                conf += confusion
            if progress is not None:
                progress(int(win.width * win.height))
        rejected = sum(total.rejected.values())
        if total.classified == 0 and rejected:
            # A real answer, not a failure: e.g. an andesite whose Mg-rich grains are all
            # orthopyroxene has no olivine. The map is written; the note says why it is empty.
            notes.append(
                f"no pixel classified: all {rejected:,} px that passed the rules were "
                "rejected (" + ", ".join(f"{k} {v:,}" for k, v in total.rejected.items() if v) + ")"
            )
        elif total.classified == 0:
            if total.matched.sum() == 0:
                unit = "relative units" if rules.units == "relative" else "counts"
                why = (
                    "no pixel of {} matched any class "
                    f"(are the maps counts, and the thresholds in {unit}?)"
                )
            else:
                why = (
                    "every pixel of {} that matched a class was removed by clean-up or masked as "
                    "a crack (ignore.bse_below)"
                )
            raise InputError(
                f"{rules.source or 'rules'}: {why.format(eds.description)}; nothing written"
            )
    confusion_result = None
    if conf is not None and ref_rows is not None:
        confusion_result = Confusion(
            conf.reshape(ref_rows.n_rows, 256), ref_rows.names, rules.class_names
        )
    notes += report_notes(rules, total)
    return MaskResult(Path(out), total, confusion_result, notes, levels, rules.units, cracks)


def report_notes(rules: RuleSet, stats: LabelStats) -> list[str]:
    """Notes that keep the report truthful: empty classes and why, idle thresholds."""
    notes = []
    for i, (name, code) in enumerate(rules.codes.items()):
        if stats.pixels.get(code, 0):
            continue
        matched, lost = int(stats.matched[i]), int(stats.lost[i])
        if matched == 0:
            notes.append(f"class {name!r} matched no pixel")
            continue
        why = (
            [f"{lost:,} went to earlier classes (the first class in the file wins)"] if lost else []
        )
        if matched > lost:
            why.append(f"{matched - lost:,} were removed by clean-up or masked as cracks")
        notes.append(f"class {name!r} matched {matched:,} px but kept none: " + "; ".join(why))
    with_data = max(stats.total - stats.ignored_nodata, 1)
    for key, n in stats.passed.items():
        if n >= WARN_PASS_SHARE * with_data:
            cls, cond = key.split(": ", 1)
            unit = "relative units" if rules.units == "relative" else "counts"
            notes.append(
                f"{rules.source or 'rules'}: rule {cond!r} of class {cls!r} passes "
                f"{100 * n / with_data:.0f} % of the map's pixels, so it excludes almost "
                f"nothing (thresholds in {unit}; is it meant for this map's count level?)"
            )
    return notes


@dataclass
class ReferenceRows:
    """A reference label map read as rows of the confusion matrix.

    With a legend, each listed code gets a row, then one row for codes the legend does not
    list; pixels equal to the raster's nodata value are left out. Without one, the raster
    must be uint8 with a ``classes`` tag, and rows are its codes.
    """

    path: Path
    names: dict[int, str]
    codes: np.ndarray | None  # sorted legend codes; None: rows are the uint8 codes
    nodata: float | None

    @property
    def n_rows(self) -> int:
        return 256 if self.codes is None else len(self.codes) + 2

    @classmethod
    def open(cls, path: str | Path, legend: str | Path | None) -> ReferenceRows:
        info = check_single_band(path, "reference label map")
        if legend is None:
            if info.dtype != "uint8":
                raise InputError(
                    f"{path}: a {info.dtype} reference label map needs --legend (a YAML or CSV "
                    "of code: class name); only uint8 maps with a classes tag read without one"
                )
            return cls(Path(path), class_names(info), None, None)
        codes_names = read_legend(legend)
        codes = np.array(sorted(codes_names), dtype=np.float64)
        names = {i: codes_names[int(c)] for i, c in enumerate(codes)}
        names[len(codes)] = "(codes not in the legend)"
        return cls(Path(path), names, codes, info.nodata)

    def read(self, win: Window) -> np.ndarray:
        """Row index of every pixel of ``win`` (``n_rows - 1``: nodata, not counted)."""
        values = read_raster(self.path, window=win, bands=1)
        if self.codes is None:
            return values.astype(np.int64)
        values = values.astype(np.float64)
        skip = np.isnan(values)
        if self.nodata is not None:
            skip |= np.isnan(values) if np.isnan(self.nodata) else values == self.nodata
        bad = ~skip & (values != np.round(values))
        if bad.any():
            r, c = np.argwhere(bad)[0]
            raise InputError(
                f"{self.path}: value {values[r, c]:g} at row {int(win.row_off) + r}, col "
                f"{int(win.col_off) + c} is not an integer class code"
            )
        idx = np.searchsorted(self.codes, values)
        idx = np.clip(idx, 0, len(self.codes) - 1)
        listed = self.codes[idx] == values
        rows = np.where(listed, idx, len(self.codes))
        rows[skip] = len(self.codes) + 1
        return rows.astype(np.int64)

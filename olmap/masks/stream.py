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
from olmap.errors import InputError
from olmap.io.eds import EdsSource
from olmap.io.outputs import atomic_paths
from olmap.io.raster import (
    check_grid,
    check_single_band,
    class_names,
    create_raster,
    format_class_tag,
    raster_info,
    raster_inputs,
    read_raster,
    unsigned_grey_scale,
)
from olmap.io.tables import write_json
from olmap.io.windows import block_windows, halo_window
from olmap.masks.label import LabelStats, classify_window
from olmap.masks.rules import IGNORE, UNCLASSIFIED, RuleSet
from olmap.parallel import ordered_map

#: Default window side (px): ~2,048² px x (5 bands + labels + masks) stays under ~300 MB.
DEFAULT_WINDOW = 2048


@dataclass
class Confusion:
    """Pixel counts of a label map against a reference label map (e.g. synthetic truth).

    Attributes
    ----------
    counts : ndarray, shape (256, 256)
        ``counts[t, p]``: pixels with reference value ``t`` and label ``p``.
    reference_names, label_names : dict of int to str
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
        ref_codes = {name: code for code, name in self.reference_names.items()}
        out = {}
        for p, name in self.label_names.items():
            if name in ref_codes and p not in (UNCLASSIFIED, IGNORE):
                t = ref_codes[name]
                inter = self.counts[t, p]
                union = self.counts[t].sum() + self.counts[:, p].sum() - inter
                out[name] = float(inter / union) if union else float("nan")
        return out


@dataclass
class MaskResult:
    """What :func:`build_label_map` wrote and counted."""

    path: Path
    stats: LabelStats
    confusion: Confusion | None = None
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        out = {"output": str(self.path), **self.stats.as_dict()}
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
        A label map with a ``classes`` tag on the same grid (e.g. ``truth/phases.tif`` of a
        synthetic section) to compare with.
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
    outputs = [out, report] if report is not None else [out]
    with atomic_paths(outputs, inputs=[*inputs, rules.source], overwrite=overwrite) as tmps:
        result = _label_map(eds, rules, tmps[0], bse, reference, window, workers, progress)
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
    window: int,
    workers: int,
    progress: Callable[[int], None] | None,
) -> MaskResult:
    check_elements(rules, eds)
    grey_scale = 1.0
    if bse is not None:
        bse_info = check_single_band(bse, "BSE image")
        if rules.ignore is not None:  # bse_below is in 8-bit grey levels
            grey_scale = unsigned_grey_scale(bse_info, f"ignore.bse_below of {rules.source}")
    if reference is not None:
        ref_info = check_single_band(reference, "reference label map")
        if ref_info.dtype != "uint8":
            raise InputError(
                f"{reference}: reference label maps must be uint8 class codes, not {ref_info.dtype}"
            )
    height, width = eds.shape
    notes: list[str] = []
    for path in (bse, reference):
        if path is not None:
            check_grid(path, eds.shape, eds.transform, f"the EDS grid of {eds.description}")
    if rules.ignore is not None and bse is None:
        notes.append(
            f"{rules.source}: crack masking (ignore.bse_below) needs the BSE image; "
            "give --bse to apply it"
        )
    ref_names = class_names(raster_info(reference)) if reference is not None else None
    halo = rules.halo_px
    elements = rules.elements

    def process(win: Window) -> tuple[np.ndarray, LabelStats, np.ndarray | None]:
        padded, inner = halo_window(win, halo, height, width)
        counts, missing = eds.read(padded, elements)
        grey = None
        if bse is not None:
            grey = read_raster(bse, window=padded, bands=1) * grey_scale
        labels, stats = classify_window(counts, rules, bse=grey, nodata=missing, inner=inner)
        labels = labels[inner]
        confusion = None
        if reference is not None:
            ref = read_raster(reference, window=win, bands=1).astype(np.int64)
            confusion = np.bincount((ref * 256 + labels).ravel(), minlength=65536)
        return labels, stats, confusion

    total = LabelStats.empty(rules)
    conf = np.zeros(65536, np.int64) if reference is not None else None
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
        if total.classified == 0:
            if total.matched.sum() == 0:
                why = (
                    "no pixel of {} matched any class "
                    "(are the maps counts, and the thresholds in counts?)"
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
    if conf is not None and ref_names is not None:
        confusion_result = Confusion(conf.reshape(256, 256), ref_names, rules.class_names)
    notes += [
        f"class {name!r} matched no pixel"
        for name, code in rules.codes.items()
        if total.pixels.get(code, 0) == 0
    ]
    return MaskResult(Path(out), total, confusion_result, notes)

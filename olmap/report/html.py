"""The run report: one self-contained HTML page of a run's results.

It gathers what the stages wrote (scores, training curves, calibration, catalogue
statistics, plots) from the results folder and renders ``report.html`` with the figures
embedded as data URIs: the page can be mailed or archived alone. Links point to the viewer
and the exported files beside it.
"""

from __future__ import annotations

import base64
import io
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

import pandas as pd
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from PIL import Image

from olmap import __version__
from olmap.io.outputs import atomic_path
from olmap.pipeline.provenance import now
from olmap.pipeline.stages import RunLayout
from olmap.segment.config import output_paths

#: Longest side (px) of the classified-map thumbnail embedded in the page.
THUMBNAIL_PX = 1400


@dataclass(frozen=True)
class Figure:
    """An embedded image: a data URI, its caption and the file it came from."""

    uri: str
    caption: str
    source: str


def image_data_uri(path: str | Path, max_side: int | None = None) -> str:
    """A PNG as a ``data:`` URI, shrunk to ``max_side`` px (longest side) if larger."""
    path = Path(path)
    if max_side is None:
        return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()
    with Image.open(path) as im:
        im = im.convert("RGB")
        im.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        im.save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _figure(path: Path, caption: str, out: Path, max_side: int | None = None) -> Figure | None:
    if not path.is_file():
        return None
    return Figure(image_data_uri(path, max_side), caption, _rel(path, out))


def _rel(path: Path, out: Path) -> str:
    try:
        return path.resolve().relative_to(out.resolve()).as_posix()
    except ValueError:
        return path.resolve().as_uri()


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _num(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}"


def segmentation_rows(report: dict, target: str = "olivine") -> list[dict]:
    """Per split, then per session: pixels, IoU, Dice, precision and recall of ``target``.

    Parameters
    ----------
    report : dict
        ``olmap evaluate --json`` output (``splits`` and ``sessions`` when scored by
        session).
    """
    rows = []
    order = {"train": 0, "val": 1, "test": 2, "none": 3}
    splits = dict(sorted(report.get("splits", {}).items(), key=lambda kv: order.get(kv[0], 9)))
    groups = (("split", splits), ("session", report.get("sessions", {})))
    for kind, group in groups:
        for name, scores in group.items():
            s = scores["classes"].get(target)
            if s is None:
                continue
            rows.append(
                {
                    "name": f"{name} split" if kind == "split" else f"session {name}",
                    "pixels": f"{scores['pixels']:,}",
                    "iou": _num(s["iou"]),
                    "dice": _num(s["dice"]),
                    "precision": _num(s["precision"]),
                    "recall": _num(s["recall"]),
                }
            )
    s = report["overall"]["classes"].get(target)
    if s is not None:
        rows.append(
            {
                "name": "whole section",
                "pixels": f"{report['overall']['pixels']:,}",
                "iou": _num(s["iou"]),
                "dice": _num(s["dice"]),
                "precision": _num(s["precision"]),
                "recall": _num(s["recall"]),
            }
        )
    return rows


def held_out_iou(report: dict, target: str = "olivine") -> tuple[float | None, str]:
    """IoU of ``target`` on the test split (sessions never trained or validated on).

    Falls back to the whole section when the sessions have no test split (e.g. a section
    scored with a model trained elsewhere). Returns the IoU and what it was computed on.
    """
    test = report.get("splits", {}).get("test")
    if test is not None and target in test["classes"]:
        return test["classes"][target]["iou"], "test sessions"
    s = report["overall"]["classes"].get(target)
    return (None if s is None else s["iou"]), "whole section"


def confusions(report: dict, target: str = "olivine") -> list[dict]:
    """Share of each other reference class predicted as ``target`` (test split if any)."""
    split = report.get("reference_breakdown_splits", {}).get("test")
    breakdown = split if split else report.get("reference_breakdown", {})
    rows = []
    for ref_class, predicted in breakdown.items():
        if ref_class in (target, "ignore") or target not in predicted:
            continue
        rows.append({"class": ref_class, "as_target": f"{100 * predicted[target]:.2f} %"})
    return rows


def _calibration(cal: dict | None) -> dict | None:
    if cal is None:
        return None
    rows = []
    for name, by_split in cal.get("metrics", {}).items():
        for split, m in by_split.items():
            rows.append(
                {
                    "name": f"{name.replace('_', ' ')}, {split}",
                    "r2": _num(m["r2"], 4),
                    "rmse": _num(m["rmse"], 4),
                    "rmse10": _num(m["rmse10"], 4),
                    "rmse_sh": _num(m["rmse_sh"], 4),
                    "rmse_sh10": _num(m["rmse_sh10"], 4),
                    "n": f"{m['n']:,}",
                }
            )
    return {
        "equation": f"mg# = {cal['slope']:.6f} × BSE + {cal['intercept']:.5f}",
        "scale": cal.get("bse_scale", ""),
        "rows": rows,
    }


def _training(curves_csv: Path) -> dict | None:
    if not curves_csv.is_file():
        return None
    curves = pd.read_csv(curves_csv)
    if curves.empty or not {"epoch", "val_loss"} <= set(curves) or curves["val_loss"].isna().all():
        return None
    best = curves.loc[curves["val_loss"].idxmin()]
    iou_cols = [c for c in curves.columns if c.startswith("val_iou_")]
    return {
        "epochs": len(curves),
        "best_epoch": int(best["epoch"]),
        "best_val_loss": _num(best["val_loss"], 4),
        "best_val_iou": ", ".join(
            f"{c.removeprefix('val_iou_')} {_num(best[c])}" for c in iou_cols
        ),
        "minutes": _num(curves["seconds"].sum() / 60, 1) if "seconds" in curves else "–",
    }


def _counts(catalogue: Path) -> list[dict]:
    path = catalogue / "stats" / "counts.csv"
    if not path.is_file():
        return []
    counts = pd.read_csv(path, keep_default_na=False)
    return [
        {
            "group": r["group"],
            "count": f"{int(r['count']):,}",
            "area": f"{float(r['area_um2_total']):,.0f}",
            "share": f"{100 * float(r['fraction_of_crystals']):.1f} %",
        }
        for r in counts.to_dict("records")
    ]


def _links(layout: RunLayout) -> list[dict]:
    out = layout.out
    candidates = [
        (layout.site / "index.html", "web viewer (open in a browser, or: olmap serve site)"),
        (layout.catalogue / "crystals.gpkg", "crystal catalogue, GeoPackage (layer crystals)"),
        (layout.catalogue / "crystals.geojson", "crystal catalogue, GeoJSON"),
        (layout.catalogue / "crystals.csv", "crystal catalogue, CSV"),
        (layout.catalogue / "crystals.parquet", "crystal catalogue, Parquet"),
        (layout.catalogue / "stats", "catalogue statistics (CSV and PNG)"),
        (layout.mgnum, "mg# map (float32 GeoTIFF)"),
        (layout.prob, "olivine probability (uint8 GeoTIFF, p = value/255)"),
        (layout.pred_mask, "predicted olivine mask"),
        (layout.mask, "EDS olivine labels"),
        (layout.model, "trained model"),
        (layout.calibration, "BSE -> mg# calibration"),
        (layout.evaluation, "scores against the EDS labels"),
        (layout.evaluation_reference, "scores against the reference"),
        (layout.run_json, "provenance: versions, inputs, parameters, timings"),
        (layout.params, "each stage's parameters (--config files)"),
    ]
    return [
        {"href": _rel(p, out) + ("/" if p.is_dir() else ""), "label": label}
        for p, label in candidates
        if p.exists()
    ]


def build_report(
    layout: RunLayout,
    record: dict,
    *,
    name: str,
    model: Path | None = None,
    outputs: Iterable[Path] | None = None,
    overwrite: bool = True,
) -> Path:
    """Write ``report.html`` of a run from the files in its results folder.

    Parameters
    ----------
    layout : RunLayout
        The results folder.
    record : dict
        The run's provenance (``run.json``): stage timings, versions.
    name : str
        The project's name (the page title).
    model : path, optional
        The checkpoint used (to find its training curves beside it when it was reused).
    outputs : iterable of path, optional
        The files and folders this run's stages make: only these are read and linked (a
        results folder may still hold files of an earlier run with other stages, e.g. a
        calibration from before EPMA was dropped). Default: whatever is there.
    overwrite : bool
        Replace an existing report.

    Returns
    -------
    Path
        The report.
    """
    out = layout.out
    model = model or layout.model
    curves_csv, curves_png, _ = output_paths(model)
    made = None if outputs is None else {Path(p).resolve() for p in outputs}
    if made is not None:
        made |= {layout.run_json.resolve(), layout.params.resolve()}  # the run's own records
        if model != layout.model:
            made |= {curves_csv.resolve(), curves_png.resolve()}  # beside the reused model

    def here(path: Path) -> Path | None:
        """``path`` if this run made it (or is inside a folder it made), else None."""
        p = path.resolve()
        return path if made is None or any(p == m or m in p.parents for m in made) else None

    def figure(path: Path, caption: str, max_side: int | None = None) -> Figure | None:
        return _figure(path, caption, out, max_side) if here(path) else None

    def read(path: Path) -> dict | None:
        return _read_json(path) if here(path) else None

    scores = []
    for path, against in (
        (layout.evaluation_reference, "the independent reference"),
        (layout.evaluation, "the EDS labels"),
    ):
        report = read(path)
        if report is None:
            continue
        iou, where = held_out_iou(report)
        scores.append(
            {
                "against": against,
                "source": _rel(path, out),
                "held_out_iou": _num(iou),
                "held_out_where": where,
                "rows": segmentation_rows(report),
                "confusions": confusions(report),
            }
        )
    catalogue = layout.catalogue
    summary = read(catalogue / "summary.json") or {}
    figures = {
        "curves": figure(curves_png, "Training curves (loss and validation IoU)"),
        "calibration": figure(layout.calibration.with_suffix(".png"), "BSE -> mg# calibration"),
        "map": figure(
            catalogue / "overview.png",
            "Classified crystals on the BSE mosaic",
            max_side=THUMBNAIL_PX,
        ),
        "sizes": figure(catalogue / "stats" / "size_distribution.png", "Crystal size distribution"),
        "mg": figure(catalogue / "stats" / "mg_histogram.png", "mg# histograms"),
    }
    stages = [
        {
            "name": name_,
            "status": s.get("status", ""),
            "seconds": _num(s.get("wall_s"), 1),
            "peak": _num(s.get("peak_rss_mb"), 0),
            "ran_at": s.get("ran_at", ""),
        }
        for name_, s in record.get("stages", {}).items()
        if name_ != "report" and name_ in record.get("stage_order", [name_])
    ]
    env = Environment(
        loader=FileSystemLoader(str(files("olmap") / "report" / "templates")),
        autoescape=select_autoescape(["html", "j2"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    html = env.get_template("report.html.j2").render(
        name=name,
        generated=now(),
        version=__version__,
        scores=scores,
        training=_training(curves_csv) if here(curves_csv) else None,
        model=_rel(model, out),
        model_reused=model != layout.model,
        calibration=_calibration(read(layout.calibration)),
        counts=_counts(catalogue) if here(catalogue) else [],
        crystals=summary.get("crystals"),
        components=summary.get("components"),
        figures=figures,
        stages=stages,
        links=[link for link in _links(layout) if here(out / link["href"])],
        versions=record.get("versions", {}),
    )
    with atomic_path(layout.report, overwrite=overwrite) as tmp:
        tmp.write_text(html, encoding="utf-8")
    return layout.report

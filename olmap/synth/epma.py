"""Microprobe (EPMA) rim-to-rim profiles and BSE reference standards of a synthetic section."""

from __future__ import annotations

import numpy as np
import pandas as pd

from olmap.core.mgnum import mg_number_from_oxides
from olmap.synth.grains import Olivine
from olmap.synth.model import SectionModel
from olmap.synth.phases import (
    ALMANDINE_OXIDES,
    PHASE_TABLE,
    Phase,
    olivine_oxides,
)
from olmap.synth.render import render_truth

#: Reference standards with contrasting BSE (seed 002 sect. 5.1.2: "standard samples with
#: contrasting BSE intensity at the beginning and at the end of the session").
#: San Carlos olivine mg# 0.904 (Jarosewich et al. 1980, cited in seed 002 sect. 3.2).
STANDARDS = {
    "san_carlos_olivine": float(PHASE_TABLE.olivine_grey(0.904)),
    "almandine": PHASE_TABLE.composition_grey(ALMANDINE_OXIDES),
}
_MIN_POINTS = 10


def _to_um(
    model: SectionModel, x_px: np.ndarray, y_px: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates (from the top-left corner) to map µm (origin bottom-left, y up)."""
    px = model.config.pixel_size_um
    return x_px * px, (model.config.height - y_px) * px


def _profile(model: SectionModel, ol: Olivine, rng: np.random.Generator) -> dict | None:
    cfg = model.config
    assert ol.shape is not None
    cx, cy = ol.shape.vertices.mean(0)
    theta = rng.uniform(0, np.pi)
    u = np.array([np.cos(theta), np.sin(theta)])
    t0, t1 = ol.shape.chord(cx, cy, *u)
    step = cfg.um(cfg.epma_step_um)
    ts = np.arange(t0 + step / 2, t1, step)
    if ts.size < _MIN_POINTS:
        return None
    x, y = cx + ts * u[0], cy + ts * u[1]
    r0, r1 = int(np.floor(y.min())), int(np.floor(y.max())) + 1
    c0, c1 = int(np.floor(x.min())), int(np.floor(x.max())) + 1
    truth = render_truth(model, r0, c0, r1 - r0, c1 - c0)
    ri, ci = np.floor(y).astype(int) - r0, np.floor(x).astype(int) - c0
    # Analysts place points on clean olivine: skip cracks, inclusions and covering grains.
    keep = (truth.phase[ri, ci] == Phase.OLIVINE) & (truth.instance[ri, ci] == ol.instance)
    if keep.sum() < _MIN_POINTS:
        return None
    x, y = x[keep], y[keep]
    _, depth = ol.shape.inside(x, y)
    mg_true = ol.mg_at(depth)
    # The analyst relocates the line on the BSE image imperfectly (seed 002 sect. 3.3).
    along = rng.normal(0, cfg.epma_relocation_um[0])
    across = rng.normal(0, cfg.epma_relocation_um[1])
    v = np.array([-u[1], u[0]])
    shift_px = (along * u + across * v) / cfg.pixel_size_um
    x_um, y_um = _to_um(model, x + shift_px[0], y + shift_px[1])
    ox = [olivine_oxides(m) for m in mg_true]
    mgo = np.array([o["MgO"] for o in ox]) * (
        1 + rng.normal(0, cfg.epma_relative_precision[0], x.size)
    )
    feo = np.array([o["FeO"] for o in ox]) * (
        1 + rng.normal(0, cfg.epma_relative_precision[1], x.size)
    )
    sio2 = np.array([o["SiO2"] for o in ox]) * (1 + rng.normal(0, 0.005, x.size))
    tx_um, ty_um = _to_um(model, x, y)
    return {
        "points": pd.DataFrame(
            {
                "point": np.arange(1, x.size + 1),
                "x_um": x_um.round(3),
                "y_um": y_um.round(3),
                "SiO2": sio2.round(3),
                "MgO": mgo.round(3),
                "FeO": feo.round(3),
                "mg_num": mg_number_from_oxides(mgo, feo).round(5),
            }
        ),
        "truth": {
            "crystal_id": ol.instance,
            "along_um": round(along, 4),
            "across_um": round(across, 4),
            "direction_deg": round(float(np.degrees(theta)), 3),
            "x0_um": round(float(tx_um[0]), 3),
            "y0_um": round(float(ty_um[0]), 3),
            "x1_um": round(float(tx_um[-1]), 3),
            "y1_um": round(float(ty_um[-1]), 3),
            "mg_true_min": round(float(mg_true.min()), 5),
            "mg_true_max": round(float(mg_true.max()), 5),
        },
    }


def epma_profiles(model: SectionModel) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rim-to-rim EPMA profiles across unbroken phenocrysts, split calibration/test.

    By default about half of the phenocrysts are profiled, and at least 3 crystals when the
    section has them (the largest microphenocrysts stand in when a small section has too few
    phenocrysts); a tiny section may have none. With 2 or more profiles, a third (at least
    one) are test profiles.

    Returns
    -------
    profiles : DataFrame
        ``profile_id, point, x_um, y_um, split, SiO2, MgO, FeO, mg_num`` (wt %, mg# in moles).
    truth : DataFrame
        Per profile: crystal id, the relocation error applied (µm along and across the line),
        the true end points and mg# range.
    """
    cfg = model.config
    rng = np.random.default_rng([cfg.seed, 3])
    margin = 20

    def fits(ol: Olivine) -> bool:
        return (
            not ol.broken
            and ol.bbox[0] >= margin
            and ol.bbox[2] >= margin
            and ol.bbox[1] <= cfg.height - margin
            and ol.bbox[3] <= cfg.width - margin
        )

    candidates = [ol for ol in model.olivines if ol.size_class == "phenocryst" and fits(ol)]
    wanted = cfg.epma_profiles if cfg.epma_profiles is not None else max(3, len(candidates) // 2)
    if len(candidates) < wanted:
        # Small sections: analysts then also profile the largest microphenocrysts.
        extra = sorted(
            (ol for ol in model.olivines if ol.size_class == "microphenocryst" and fits(ol)),
            key=lambda ol: -ol.shape.area,
        )
        candidates += extra[: wanted - len(candidates)]
    order = rng.permutation(len(candidates))
    rows, truth = [], []
    for i in order:
        if len(truth) >= wanted:
            break
        prof = _profile(model, candidates[i], rng)
        if prof is None:
            continue
        pid = f"P{len(truth) + 1:02d}"
        prof["points"].insert(0, "profile_id", pid)
        rows.append(prof["points"])
        truth.append({"profile_id": pid, **prof["truth"]})
    n = len(truth)
    n_test = 0 if n < 2 else max(1, round(n / 3))
    splits = ["calibration"] * (n - n_test) + ["test"] * n_test
    split_of = {t["profile_id"]: s for t, s in zip(truth, splits, strict=True)}
    columns = ["profile_id", "point", "x_um", "y_um", "split", "SiO2", "MgO", "FeO", "mg_num"]
    truth_columns = [
        "profile_id",
        "split",
        "crystal_id",
        "along_um",
        "across_um",
        "direction_deg",
        "x0_um",
        "y0_um",
        "x1_um",
        "y1_um",
        "mg_true_min",
        "mg_true_max",
    ]
    if not rows:  # too small a section for any profile: empty tables, with their headers
        return pd.DataFrame(columns=columns), pd.DataFrame(columns=truth_columns)
    profiles = pd.concat(rows, ignore_index=True)
    profiles["split"] = profiles["profile_id"].map(split_of)
    truth_df = pd.DataFrame(truth)
    truth_df["split"] = truth_df["profile_id"].map(split_of)
    return profiles[columns], truth_df[truth_columns]


def standards_table(model: SectionModel) -> pd.DataFrame:
    """BSE of the reference standards as measured in each session (ROI means, under drift)."""
    rng = np.random.default_rng([model.config.seed, 4])
    look = model.config.look
    rows = []
    for s in model.sessions:
        for name, nominal in STANDARDS.items():
            # The look's detector maps the standard as it maps the rock: the San Carlos
            # olivine moves with olivine, the garnet with no phase shift.
            phase = "olivine" if name == "san_carlos_olivine" else None
            ref = float(look.output_grey(nominal, phase)) if not look.is_default else nominal
            noise = rng.normal(0, 0.15)
            if look.bit_depth == 16:  # drift and noise act on the 8-bit scale, then scaled
                ref8 = (ref - look.offset_16bit) / look.scale_16bit
                measured = (s.bse_gain * ref8 + s.bse_offset + noise) * look.scale_16bit
                measured += look.offset_16bit
            else:
                measured = s.bse_gain * ref + s.bse_offset + noise
            rows.append(
                {
                    "session": s.session,
                    "standard": name,
                    "bse_measured": round(measured, 3),
                    "bse_reference": round(ref, 3),
                }
            )
    return pd.DataFrame(rows)

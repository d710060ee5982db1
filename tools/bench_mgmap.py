#!/usr/bin/env python
"""Benchmark ``olmap calibrate`` and ``olmap mgmap`` on synthetic sections with ground truth.

For each ``--section`` (made by ``olmap synth section``):

1. Calibration with the true olivine mask: with session drift correction (standards +
   sessions), without it, and with drift correction but registration disabled. Test and
   calibration metrics (filtered and not), and the registration error per profile: distance
   (µm) between the first point's position (registered, and as given in epma.csv) and its
   true position (``truth/epma_offsets.csv``), for zoned (true mg# range > 0.02) and flat
   profiles.
2. LOF quality of ``mg_map`` on a *segmentation-like* mask (true olivine plus the cracks and
   plucked holes inside olivine crystals, as a CNN predicts them) with the drift-corrected
   calibration: recall on the crack/hole pixels, false positives on clean olivine (olivine
   whose 8 neighbours are olivine), mg# RMSE against ``truth/mgnum.tif`` and coverage on clean
   olivine, LOF throughput and map time.
3. First section only: olmap's subgrid LOF (``grid_stride=4``) against scikit-learn's LOF on
   all pixels (``grid_stride=1``), both with the configured k (LofConfig: 800, at most a
   quarter of the crystal's pixels) and threshold 1.5, side by side on the same crystals
   (default: every phenocryst and microphenocryst plus 200 random microlites), and
   scikit-learn's default k = 20 for reference: time, flag agreement, recall on cracks and
   false positives on clean olivine, and how cost grows with crystal size (log-log slope,
   size bins; plot ``bench_mgmap_cost.png`` beside ``--out``; per-crystal rows in
   ``<out>.crystals.csv``). scikit-learn's LOF holds n x k distances: ~3 GB at k = 800 on
   a 90 000 px phenocryst, the peak of this script.

BLAS/OpenMP run single-threaded by default (``--threads``): with the default threads on a
shared 2-core machine, small-crystal LOF timings varied up to 8x from run to run.

Usage::

    python tools/bench_mgmap.py
    python tools/bench_mgmap.py --section bench-out/sections/s4096-seed7 --speed-crystals 50
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
from _bench import machine
from rasterio.windows import Window
from scipy import ndimage as ndi

#: Synthetic sections measured by default (name, seed, side in px), generated under
#: ``bench-out/sections/`` when missing: the training benchmark's section, the demo's, a
#: larger one and the test suite's.
DEFAULT_SECTIONS = [
    ("s4096-seed2026", 2026, 4096),
    ("s4096-seed7", 7, 4096),
    ("s8192-seed11", 11, 8192),
    ("s1024-seed1", 1, 1024),
]


def default_sections(root: Path) -> list[Path]:
    from olmap.synth.config import SynthConfig
    from olmap.synth.section import generate_section

    out = []
    for name, seed, side in DEFAULT_SECTIONS:
        folder = root / name
        if not (folder / "section.json").exists():
            print(f"generating {folder} (seed {seed}, {side} px)", flush=True)
            generate_section(folder, SynthConfig(width=side, height=side, seed=seed, sessions=4))
        out.append(folder)
    return out


ZONED = 0.02  # true mg# range above which a profile counts as zoned
BINS = [("<1e3", 0, 1e3), ("1e3-1e4", 1e3, 1e4), ("1e4-1e5", 1e4, 1e5), (">1e5", 1e5, np.inf)]
EIGHT = np.ones((3, 3), bool)


def rnd(x, n=4):
    return None if x is None or not np.isfinite(x) else round(float(x), n)


# -- 1. calibration -------------------------------------------------------------------------


def distance_stats(d: np.ndarray) -> dict:
    if d.size == 0:
        return {"n": 0}
    return {
        "n": int(d.size),
        "median_um": rnd(np.median(d), 3),
        "max_um": rnd(d.max(), 3),
        "within_1um": rnd(np.mean(d <= 1.0), 3),
    }


def registration_errors(
    points: pd.DataFrame, offsets: pd.DataFrame, profiles: pd.DataFrame
) -> dict:
    """Distance of the first point (registered and as given) to its true position."""
    first = points[points["point"] == points.groupby("profile_id")["point"].transform("min")]
    df = first.merge(offsets, on="profile_id", suffixes=("", "_true"))
    df = df.merge(profiles[["profile_id", "shift_along_sd_um"]], on="profile_id")
    df["zoned"] = (df["mg_true_max"] - df["mg_true_min"]) > ZONED
    reg = np.hypot(df["x_um_registered"] - df["x0_um"], df["y_um_registered"] - df["y0_um"])
    given = np.hypot(df["x_um"] - df["x0_um"], df["y_um"] - df["y0_um"])
    # Along-line component: the line's direction from its first to its last given point.
    last = points[points["point"] == points.groupby("profile_id")["point"].transform("max")]
    last = last.set_index("profile_id").loc[df["profile_id"]]
    u = np.c_[last["x_um"].to_numpy() - df["x_um"], last["y_um"].to_numpy() - df["y_um"]]
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    along_reg = np.abs(
        (df["x_um_registered"] - df["x0_um"]) * u[:, 0]
        + (df["y_um_registered"] - df["y0_um"]) * u[:, 1]
    )
    along_given = np.abs(
        (df["x_um"] - df["x0_um"]) * u[:, 0] + (df["y_um"] - df["y0_um"]) * u[:, 1]
    )
    out = {}
    zoned = df["zoned"].to_numpy()
    for name, sel in (("all", np.ones(len(df), bool)), ("zoned", zoned), ("flat", ~zoned)):
        out[name] = {
            "registered": distance_stats(reg.to_numpy()[sel]),
            "given": distance_stats(given.to_numpy()[sel]),
            "registered_along": distance_stats(along_reg.to_numpy()[sel]),
            "given_along": distance_stats(along_given.to_numpy()[sel]),
        }
    out["per_profile"] = [
        {
            "profile_id": r.profile_id,
            "zoned": bool(r.zoned),
            "given_um": rnd(g, 3),
            "registered_um": rnd(d, 3),
            "registered_along_um": rnd(al, 3),
            "along_sd_um": rnd(r.shift_along_sd_um, 3),
        }
        for r, g, d, al in zip(df.itertuples(), given, reg, along_reg, strict=True)
    ]
    return out


def bench_calibration(section: Path) -> tuple[dict, dict]:
    from olmap.composition.calibrate import calibrate
    from olmap.composition.config import CalibrateConfig, RegistrationConfig

    offsets = pd.read_csv(section / "truth" / "epma_offsets.csv", dtype={"profile_id": str})
    mask = section / "truth" / "olivine.tif"
    drift_files = {
        "standards_path": section / "standards.csv",
        "sessions_path": section / "sessions.csv",
    }
    runs = {
        "drift": (drift_files, CalibrateConfig()),
        "no_drift": ({}, CalibrateConfig()),
        "drift_no_registration": (
            drift_files,
            CalibrateConfig(registration=RegistrationConfig(enabled=False)),
        ),
    }
    out, kept = {}, {}
    for name, (files, config) in runs.items():
        t0 = time.perf_counter()
        res = calibrate(section / "bse.tif", mask, section / "epma.csv", config=config, **files)
        seconds = time.perf_counter() - t0
        out[name] = {
            "slope": res.calibration.slope,
            "intercept": res.calibration.intercept,
            "metrics": {
                f: {s: {k: rnd(v, 5) for k, v in m.items()} for s, m in splits.items()}
                for f, splits in res.metrics.items()
            },
            "registration_error": registration_errors(res.points, offsets, res.profiles),
            "profiles": len(res.profiles),
            "seconds": round(seconds, 2),
        }
        if name in ("drift", "no_drift"):
            kept[name] = res
        m = out[name]["metrics"]["filtered"].get("test", {})
        e = out[name]["registration_error"]["all"]["registered"]
        print(
            f"  calibrate {name}: test rmse {m.get('rmse')}, r2 {m.get('r2')}; "
            f"first-point error median {e.get('median_um')} µm ({seconds:.1f} s)",
            flush=True,
        )
    return out, kept


# -- 2. LOF quality of mg_map ---------------------------------------------------------------


def load_model(section: Path):
    from olmap.synth.config import SynthConfig
    from olmap.synth.model import build_model

    meta = json.loads((section / "section.json").read_text())
    return build_model(SynthConfig(**meta["config"]))


def segmentation_like_mask(section: Path, model) -> np.ndarray:
    """True olivine, plus crack/hole pixels whose centre lies inside an olivine's shape."""
    from olmap.io.raster import read_raster
    from olmap.synth.phases import Phase

    seg = read_raster(section / "truth" / "olivine.tif", bands=1) == 1
    crack = read_raster(section / "truth" / "phases.tif", bands=1) == Phase.CRACK
    h, w = seg.shape
    for ol in model.olivines:
        r0, r1, c0, c1 = ol.bbox
        r0, r1, c0, c1 = max(r0, 0), min(r1, h), max(c0, 0), min(c1, w)
        if r0 >= r1 or c0 >= c1:
            continue
        sub = crack[r0:r1, c0:c1]
        if not sub.any():
            continue
        y = (np.arange(r0, r1, dtype=np.float64) + 0.5)[:, None]
        x = (np.arange(c0, c1, dtype=np.float64) + 0.5)[None, :]
        inside, _ = ol.shape.inside(x, y)
        seg[r0:r1, c0:c1] |= sub & inside
    return seg


def bench_mgmap(section: Path, seg_path: Path, work: Path, cal) -> dict:
    from olmap.composition.mgmap import mg_map
    from olmap.io.raster import read_raster
    from olmap.synth.phases import Phase

    out_path = work / "mg.tif"
    res = mg_map(
        section / "bse.tif",
        seg_path,
        cal.calibration,
        out_path,
        outliers_path=work / "mg.outliers.tif",
        drift=cal.drift,
        regions=cal.sessions,
        overwrite=True,
    )
    # Counts over row blocks (mg# and truth as float32 would be 0.5 GB on 8k x 8k).
    seg = read_raster(seg_path, bands=1) == 1
    phases = read_raster(section / "truth" / "phases.tif", bands=1)
    h = seg.shape[0]
    n = dict.fromkeys(("crack", "crack_flagged", "clean", "clean_flagged", "clean_finite"), 0)
    # Size class of each pixel's crystal (truth/crystals.csv by instance id): 0 = none.
    crystals = pd.read_csv(section / "truth" / "crystals.csv")
    classes = ["microlite", "microphenocryst", "phenocryst"]
    lut = np.zeros(int(crystals["id"].max()) + 1, np.int64)
    lut[crystals["id"].to_numpy()] = [
        classes.index(c) + 1 if c in classes else 0 for c in crystals["size_class"]
    ]
    by_class = np.zeros((len(classes) + 1, 4), np.int64)  # crack, flagged, clean, flagged
    sq, n_rmse = 0.0, 0
    block = 1024
    for r0 in range(0, h, block):
        r1 = min(h, r0 + block)
        a0, a1 = max(0, r0 - 1), min(h, r1 + 1)
        ol = phases[a0:a1] == Phase.OLIVINE
        clean = ndi.binary_erosion(ol, EIGHT, border_value=0)[r0 - a0 : r0 - a0 + (r1 - r0)]
        win = Window(0, r0, seg.shape[1], r1 - r0)
        flagged = read_raster(res.outliers_path, window=win, bands=1) == 1
        mg = read_raster(out_path, window=win, bands=1)
        truth = read_raster(section / "truth" / "mgnum.tif", window=win, bands=1)
        crack = seg[r0:r1] & (phases[r0:r1] == Phase.CRACK)
        inst = read_raster(section / "truth" / "instances.tif", window=win, bands=1)
        cls = lut[np.minimum(inst, lut.size - 1)]
        del inst
        for j, sel in enumerate((crack, crack & flagged, clean, clean & flagged)):
            by_class[:, j] += np.bincount(cls[sel], minlength=len(classes) + 1)
        n["crack"] += int(crack.sum())
        n["crack_flagged"] += int((crack & flagged).sum())
        n["clean"] += int(clean.sum())
        n["clean_flagged"] += int((clean & flagged).sum())
        n["clean_finite"] += int((clean & np.isfinite(mg)).sum())
        both = clean & np.isfinite(mg) & np.isfinite(truth)
        sq += float(((mg[both].astype(np.float64) - truth[both]) ** 2).sum())
        n_rmse += int(both.sum())
    del seg, phases
    lof_s = res.seconds["outliers"]
    return {
        "crystals": res.crystals,
        "crystals_filtered": res.crystals_filtered,
        "olivine_pixels": res.olivine_pixels,
        "outlier_pixels": res.outlier_pixels,
        "crack_pixels": n["crack"],
        "clean_pixels": n["clean"],
        "recall": rnd(n["crack_flagged"] / max(n["crack"], 1)),
        "false_positive_rate": rnd(n["clean_flagged"] / max(n["clean"], 1), 5),
        "by_size_class": {
            c: {
                "crack_pixels": int(by_class[j + 1, 0]),
                "recall": rnd(by_class[j + 1, 1] / max(by_class[j + 1, 0], 1)),
                "clean_pixels": int(by_class[j + 1, 2]),
                "false_positive_rate": rnd(by_class[j + 1, 3] / max(by_class[j + 1, 2], 1), 5),
            }
            for j, c in enumerate(classes)
        },
        "mg_rmse_clean": rnd(np.sqrt(sq / n_rmse) if n_rmse else np.nan, 5),
        "coverage_clean": rnd(n["clean_finite"] / max(n["clean"], 1)),
        "lof_seconds": lof_s,
        "lof_pixels_per_s": round(res.olivine_pixels / lof_s) if lof_s > 0 else None,
        "map_seconds": res.seconds["map"],
        "mg_quantiles": res.mg_quantiles,
    }


# -- 3. olmap LOF vs scikit-learn LOF -------------------------------------------------------


def choose_crystals(model, n: int | None, seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    if n is None:
        large = [o for o in model.olivines if o.size_class in ("phenocryst", "microphenocryst")]
        small = [o for o in model.olivines if o.size_class not in ("phenocryst", "microphenocryst")]
        pick = rng.choice(len(small), size=min(200, len(small)), replace=False)
        return large + [small[i] for i in sorted(pick)]
    pick = rng.choice(len(model.olivines), size=min(n, len(model.olivines)), replace=False)
    return [model.olivines[i] for i in sorted(pick)]


def crystal_pixels(section: Path, seg_path: Path, ol, shape: tuple[int, int]):
    """Pixels of one crystal in the segmentation-like mask (its instance and its cracks)."""
    from olmap.io.raster import read_raster
    from olmap.synth.phases import Phase

    h, w = shape
    r0, r1, c0, c1 = ol.bbox
    r0, r1, c0, c1 = max(r0 - 1, 0), min(r1 + 1, h), max(c0 - 1, 0), min(c1 + 1, w)
    win = Window(c0, r0, c1 - c0, r1 - r0)
    seg = read_raster(seg_path, window=win, bands=1) == 1
    inst = read_raster(section / "truth" / "instances.tif", window=win, bands=1)
    phases = read_raster(section / "truth" / "phases.tif", window=win, bands=1)
    bse = read_raster(section / "bse.tif", window=win, bands=1)
    pix = seg & (inst == ol.instance)
    clean = ndi.binary_erosion(phases == Phase.OLIVINE, EIGHT, border_value=0)
    rr, cc = np.nonzero(pix)
    return (
        rr + r0,
        cc + c0,
        bse[rr, cc],
        phases[rr, cc] == Phase.CRACK,
        clean[rr, cc],
    )


def bench_speed(section: Path, seg_path: Path, model, n: int | None) -> tuple[dict, pd.DataFrame]:
    from olmap.composition.config import LofConfig
    from olmap.composition.outliers import _subgrid_stride, lof_outliers
    from olmap.io.raster import raster_info

    lof = LofConfig()
    shape = raster_info(section / "bse.tif").shape
    methods = {
        "olmap": {"n_neighbors": lof.n_neighbors, "grid_stride": 4},
        "sklearn": {"n_neighbors": lof.n_neighbors, "grid_stride": 1},
        "sklearn_k20": {"n_neighbors": 20, "grid_stride": 1},
    }
    rows = []
    chosen = choose_crystals(model, n)
    for i, ol in enumerate(chosen):
        r, c, bse, crack, clean = crystal_pixels(section, seg_path, ol, shape)
        if r.size < lof.min_pixels:
            continue
        row = {
            "instance": ol.instance,
            "size_class": ol.size_class or "microlite",
            "pixels": int(r.size),
            "crack": int(crack.sum()),
            "clean": int(clean.sum()),
            # The subgrid olmap fits on (it falls back to 1 on crystals under ~1600 px).
            "olmap_stride": _subgrid_stride(
                r, c, min(lof.n_neighbors, max(5, int(lof.max_neighbor_fraction * r.size))), 4
            ),
        }
        flags = {}
        for name, kw in methods.items():
            t0 = time.perf_counter()
            flags[name] = lof_outliers(
                r, c, bse, threshold=lof.threshold, min_pixels=lof.min_pixels, **kw
            )
            row[f"{name}_s"] = time.perf_counter() - t0
            row[f"{name}_flagged"] = int(flags[name].sum())
            row[f"{name}_crack_flagged"] = int((flags[name] & crack).sum())
            row[f"{name}_clean_flagged"] = int((flags[name] & clean).sum())
        row["agree"] = int((flags["olmap"] == flags["sklearn"]).sum())
        rows.append(row)
        if (i + 1) % 50 == 0 or i + 1 == len(chosen):
            print(f"  speed: {i + 1}/{len(chosen)} crystals", flush=True)
    df = pd.DataFrame(rows)
    summary = summarize_speed(df, methods)
    # Memory of each method on the largest crystal (numpy allocations, traced apart from the
    # timed runs: scikit-learn's LOF holds n x k distances and indices).
    by_id = {o.instance: o for o in chosen}
    big = by_id[int(df.loc[df["pixels"].idxmax(), "instance"])]
    r, c, bse, _, _ = crystal_pixels(section, seg_path, big, shape)
    for name, kw in methods.items():
        tracemalloc.start()
        lof_outliers(r, c, bse, threshold=lof.threshold, min_pixels=lof.min_pixels, **kw)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        summary["methods"][name]["peak_mb_largest_crystal"] = round(peak / 2**20, 1)
    summary["largest_crystal_pixels"] = int(r.size)
    return summary, df


def summarize_speed(df: pd.DataFrame, methods: dict) -> dict:
    px = int(df["pixels"].sum())
    out: dict = {
        "crystals": len(df),
        "pixels": px,
        "crack_pixels": int(df["crack"].sum()),
        "clean_pixels": int(df["clean"].sum()),
        "agreement_olmap_vs_sklearn": rnd(df["agree"].sum() / px, 5),
        "crystals_all_flags_equal": int((df["agree"] == df["pixels"]).sum()),
        "crystals_olmap_stride4": int((df["olmap_stride"] == 4).sum()),
        "methods": {},
    }
    logp = np.log(df["pixels"].to_numpy(float))
    big = df["olmap_stride"].to_numpy() == 4
    for name, kw in methods.items():
        t = df[f"{name}_s"].to_numpy(float)
        logt = np.log(t)
        out["methods"][name] = {
            **kw,
            "seconds": round(float(t.sum()), 2),
            "pixels_per_s": round(px / t.sum()),
            "recall": rnd(df[f"{name}_crack_flagged"].sum() / max(df["crack"].sum(), 1)),
            "false_positive_rate": rnd(
                df[f"{name}_clean_flagged"].sum() / max(df["clean"].sum(), 1), 5
            ),
            "flagged_fraction": rnd(df[f"{name}_flagged"].sum() / px, 5),
            "loglog_slope": rnd(np.polyfit(logp, logt, 1)[0], 3),
            "loglog_slope_stride4": rnd(np.polyfit(logp[big], logt[big], 1)[0], 3)
            if big.sum() >= 3
            else None,
        }
    out["speed_ratio_sklearn_over_olmap"] = rnd(df["sklearn_s"].sum() / df["olmap_s"].sum(), 2)
    bins = []
    for label, lo, hi in BINS:
        sel = df[(df["pixels"] >= lo) & (df["pixels"] < hi)]
        if sel.empty:
            continue
        b = {
            "bin": label,
            "crystals": len(sel),
            "pixels": int(sel["pixels"].sum()),
            "agreement": rnd(sel["agree"].sum() / sel["pixels"].sum(), 5),
        }
        for name in methods:
            b[f"{name}_s"] = round(float(sel[f"{name}_s"].sum()), 3)
            b[f"{name}_ms_per_crystal"] = round(1e3 * float(sel[f"{name}_s"].mean()), 2)
            b[f"{name}_recall"] = rnd(
                sel[f"{name}_crack_flagged"].sum() / max(sel["crack"].sum(), 1)
            )
        b["crack_pixels"] = int(sel["crack"].sum())
        b["ratio"] = rnd(b["sklearn_s"] / b["olmap_s"], 2)
        bins.append(b)
    out["size_bins"] = bins
    return out


def plot_cost(df: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for name, label, colour in (
        ("sklearn", "scikit-learn LOF, all pixels, k = 800", "tab:red"),
        ("olmap", "olmap subgrid LOF (stride 4), k = 800", "tab:blue"),
        ("sklearn_k20", "scikit-learn LOF, k = 20 (default)", "tab:grey"),
    ):
        ax.loglog(df["pixels"], df[f"{name}_s"], ".", ms=4, color=colour, label=label, alpha=0.7)
    ax.set_xlabel("pixels per crystal")
    ax.set_ylabel("seconds per crystal")
    ax.set_title("LOF cost per crystal")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# -- report ---------------------------------------------------------------------------------


def markdown(results: dict) -> str:
    lines = [
        f"Machine: {results['machine']}, processor {results['processor'] or 'n/a'!r}, "
        f"{results['cpus']} CPUs, {results['threads'] or 'default'} thread(s); "
        f"total {results['seconds']:.0f} s, "
        f"peak RSS {results['peak_rss_mb']:.0f} MB.",
        "",
        "Calibration (true olivine mask; test profiles, filtered / not filtered RMSE; "
        "first-point error vs true position, median / max µm, fraction within 1 µm):",
        "",
        "| section | run | test RMSE | test RMSE10 | test R² | calib. RMSE | "
        "error zoned | error flat | given zoned | given flat | along zoned (given) | "
        "along flat (given) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def err(e):
        if not e.get("n"):
            return "–"
        return f"{e['median_um']:.2f} / {e['max_um']:.2f} ({e['within_1um']:.0%}, n={e['n']})"

    for s in results["sections"]:
        for run, c in s["calibration"].items():
            f = c["metrics"]["filtered"]
            nf = c["metrics"]["not_filtered"]
            t, tn, k = f.get("test", {}), nf.get("test", {}), f.get("calibration", {})
            e = c["registration_error"]
            lines.append(
                f"| {s['name']} | {run} | {t.get('rmse')} / {tn.get('rmse')} | "
                f"{t.get('rmse10')} | {t.get('r2')} | {k.get('rmse')} | "
                f"{err(e['zoned']['registered'])} | {err(e['flat']['registered'])} | "
                f"{err(e['zoned']['given'])} | {err(e['flat']['given'])} | "
                f"{err(e['zoned']['registered_along'])} ({err(e['zoned']['given_along'])}) | "
                f"{err(e['flat']['registered_along'])} ({err(e['flat']['given_along'])}) |"
            )
    lines += [
        "",
        "mg# map on a segmentation-like mask (true olivine + cracks/holes inside olivine), "
        "drift-corrected calibration:",
        "",
        "| section | olivine px | crack px | LOF recall | false pos. (clean) | "
        "mg# RMSE (clean) | without drift correction | coverage | LOF px/s | LOF s | map s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in results["sections"]:
        m = s["mgmap"]
        raw = s.get("mgmap_no_drift", {}).get("mg_rmse_clean", "")
        lines.append(
            f"| {s['name']} | {m['olivine_pixels']:,} | {m['crack_pixels']:,} | "
            f"{m['recall']:.4f} | {m['false_positive_rate']:.4f} | {m['mg_rmse_clean']} | {raw} | "
            f"{m['coverage_clean']:.4f} | {m['lof_pixels_per_s']:,} | {m['lof_seconds']} | "
            f"{m['map_seconds']} |"
        )
    lines += [
        "",
        "LOF recall on crack/hole pixels (false positives on clean olivine) by size class of the "
        "crystal:",
        "",
        "| section | microlite | microphenocryst | phenocryst |",
        "|---|---|---|---|",
    ]
    for s in results["sections"]:
        cells = [
            f"{c['recall']:.3f} ({c['false_positive_rate']:.4f}; {c['crack_pixels']:,} px)"
            for c in s["mgmap"]["by_size_class"].values()
        ]
        lines.append(f"| {s['name']} | {' | '.join(cells)} |")
    sp = next((s["speed"] for s in results["sections"] if s.get("speed")), None)
    if sp:
        lines += [
            "",
            f"LOF side by side on {sp['crystals']} crystals ({sp['pixels']:,} px, "
            f"{sp['crack_pixels']:,} crack px) of {sp['section']}: agreement olmap vs "
            f"scikit-learn {sp['agreement_olmap_vs_sklearn']:.4%} of pixels, "
            f"speed ratio {sp['speed_ratio_sklearn_over_olmap']}x; olmap fits on the stride-4 "
            f"subgrid in {sp['crystals_olmap_stride4']} of them (plain LOF below ~1600 px).",
            "",
            "| method | k | seconds | px/s | recall (cracks) | false pos. (clean) | "
            "log-log slope (all / stride-4 crystals) | peak MB, largest crystal |",
            "|---|---|---|---|---|---|---|---|",
        ]
        names = {
            "olmap": "olmap subgrid LOF (stride 4)",
            "sklearn": "scikit-learn LOF, all pixels",
            "sklearn_k20": "scikit-learn LOF, all pixels",
        }
        for name, m in sp["methods"].items():
            lines.append(
                f"| {names[name]} | {m['n_neighbors']} | {m['seconds']} | "
                f"{m['pixels_per_s']:,} | {m['recall']:.4f} | {m['false_positive_rate']:.4f} | "
                f"{m['loglog_slope']} / {m['loglog_slope_stride4']} | "
                f"{m['peak_mb_largest_crystal']} ({sp['largest_crystal_pixels']:,} px) |"
            )
        lines += [
            "",
            "| pixels per crystal | crystals | pixels | olmap ms/crystal | "
            "scikit-learn ms/crystal | ratio | agreement | recall olmap / sklearn / k=20 |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for b in sp["size_bins"]:
            lines.append(
                f"| {b['bin']} | {b['crystals']} | {b['pixels']:,} | "
                f"{b['olmap_ms_per_crystal']} | {b['sklearn_ms_per_crystal']} | "
                f"{b['ratio']} | {b['agreement']:.4%} | {b['olmap_recall']} / "
                f"{b['sklearn_recall']} / {b['sklearn_k20_recall']} ({b['crack_pixels']:,} px) |"
            )
    return "\n".join(lines)


def main() -> None:
    from olmap.io.raster import raster_info, write_raster

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--section", type=Path, action="append", help="repeatable")
    ap.add_argument("--out", type=Path, default=Path("bench-out/bench_mgmap.json"))
    ap.add_argument(
        "--speed-crystals",
        type=int,
        default=None,
        help="crystals of the first section for the LOF side by side (random; 0 = skip) "
        "[default: all phenocrysts and microphenocrysts plus 200 random microlites]",
    )
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="BLAS/OpenMP threads (threadpoolctl) for the whole run; 0 = the libraries' "
        "default [default: 1, so LOF timings compare single-threaded and do not depend on "
        "other load on a shared machine]",
    )
    args = ap.parse_args()
    if args.threads > 0:
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.threads)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sections = args.section or default_sections(args.out.parent / "sections")
    t_start = time.perf_counter()
    results: dict = {
        "machine": machine(),
        "processor": platform.processor(),
        "cpus": os.cpu_count(),
        "threads": args.threads or None,
        "sections": [],
    }
    for i, section in enumerate(sections):
        name = section.name if section.name != "section" else section.parent.name
        print(f"{section}:", flush=True)
        work = args.out.parent / "bench_mgmap_work" / f"{i}_{name}"
        work.mkdir(parents=True, exist_ok=True)
        info = raster_info(section / "bse.tif")
        entry: dict = {"name": name, "path": str(section), "shape": list(info.shape)}
        entry["calibration"], cals = bench_calibration(section)

        t0 = time.perf_counter()
        model = load_model(section)
        seg = segmentation_like_mask(section, model)
        seg_path = write_raster(
            work / "seg_like.tif", seg.astype(np.uint8), transform=info.transform, overwrite=True
        )
        del seg
        entry["seg_mask_seconds"] = round(time.perf_counter() - t0, 1)
        entry["mgmap"] = bench_mgmap(section, seg_path, work, cals["drift"])
        print(f"  mgmap: {json.dumps({k: v for k, v in entry['mgmap'].items()})}", flush=True)
        # The same map from a calibration without the standards: one line for every session.
        (work / "no_drift").mkdir(exist_ok=True)
        entry["mgmap_no_drift"] = bench_mgmap(
            section, seg_path, work / "no_drift", cals["no_drift"]
        )
        print(f"  mgmap without drift correction: rmse {entry['mgmap_no_drift']['mg_rmse_clean']}")

        if i == 0 and args.speed_crystals != 0:
            speed, df = bench_speed(section, seg_path, model, args.speed_crystals)
            speed["section"] = name
            entry["speed"] = speed
            df.to_csv(args.out.with_suffix(".crystals.csv"), index=False)
            plot_cost(df, args.out.parent / "bench_mgmap_cost.png")
            print(f"  speed: {json.dumps(speed['methods'])}", flush=True)
        results["sections"].append(entry)
    results["seconds"] = round(time.perf_counter() - t_start, 1)
    results["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"\nwrote {args.out}\n")
    print(markdown(results))


if __name__ == "__main__":
    main()

"""Memory and speed of the CT commands, each against a whole-volume-in-memory baseline.

``memory``: peak RSS and wall time of ``olmap ct convert`` and ``olmap ct label`` (a saved forest
applied, default settings) on volumes of each size, beside the in-memory baseline of
``convert`` (all slices read into one array, written to zarr at once). The volumes are a 256³
step of olmap's series repeated 2x2x2 (512³) or 4x4x4 (1024³) as uint16 TIFF slices: memory
and speed do not depend on the content, and the generator needs about an hour of 2 cores for a
1024³ step. ``--label-blocks N`` stops ``ct label`` after N blocks (Ctrl-C semantics: the run
is resumable) where a whole 1024³ run does not fit the session.

``speed``: on a 256³ step, the forest's labelling (features + forest, whole command; one stage,
two stages, and the default two stages + boundary refinement) against the in-memory
scikit-image + scikit-learn baseline (``skimage.feature.multiscale_basic_features`` on the whole
volume, a ``RandomForestClassifier`` of the same size on the same scribbles, ``predict`` on
every voxel): voxels/s and peak RSS, both on this machine's 2 cores.

``predict``: ``olmap ct predict`` (a checkpoint of ``olmap ct train``; default settings, the
cleaning pass included; ``--planes tri`` up to ``--tri-max``) on volumes of each size (the
same repeated slices), against the in-memory baseline: the whole volume read into one array,
every slice through the same model and windowed predictor, labels kept in memory. Voxels/s
and peak RSS.

Every run is a fresh process measured by ``/usr/bin/time`` (peak RSS of the process).

Usage::

    python tools/bench_ct.py memory --sizes 512,1024 --work /tmp/ctbench --forest forest.pkl
    python tools/bench_ct.py speed --series /tmp/s256 --step 2
    python tools/bench_ct.py predict --sizes 256,512 --work /tmp/ctbench --model ct_model.pt \
        --source /tmp/s256/t002
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

OLMAP = [sys.executable, "-m", "olmap", "-q"]


def measured(cmd: list[str], stop_after: int | None = None) -> dict:
    """Run ``cmd`` under /usr/bin/time; its peak RSS (MB) and wall time (s). With
    ``stop_after`` the command gets SIGINT once its checkpoint lists that many blocks."""
    import signal
    import time

    import numpy as np
    import psutil

    with tempfile.NamedTemporaryFile("r", suffix=".time") as t:
        proc = subprocess.Popen(
            ["/usr/bin/time", "-f", "%M %e", "-o", t.name, *cmd],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        if stop_after is not None:
            out = Path(cmd[cmd.index("--out") + 1])
            ckpt = out.with_name(out.name + ".partial.resume.npz")
            while proc.poll() is None:
                time.sleep(5)
                try:
                    with np.load(ckpt) as z:
                        blocks = int(z["done"].sum())
                except (OSError, KeyError, ValueError):
                    continue
                if blocks >= stop_after:  # Ctrl-C to olmap (the child of /usr/bin/time)
                    for child in psutil.Process(proc.pid).children():
                        child.send_signal(signal.SIGINT)
                    break
        _, err = proc.communicate()
        stopped = stop_after is not None and "interrupted after" in err
        if proc.returncode != 0 and not stopped:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{err[-2000:]}")
        kb, sec = open(t.name).read().split()[-2:]
    res = {"peak_rss_mb": int(kb) / 1024, "seconds": float(sec)}
    if stopped:
        res["stopped"] = err.split("interrupted after")[1].split(";")[0].strip()
    return res


def tile_volume(source: Path, out: Path, n: int) -> None:
    """A uint16 TIFF slice folder of ``n``³ voxels: ``source`` (a slice folder) repeated."""
    import numpy as np
    import tifffile

    from olmap.io.volume import open_volume

    out.mkdir(parents=True)
    with open_volume(source) as v:
        z, y, x = v.shape
        for k in range(n):
            s = v.read((slice(k % z, k % z + 1), slice(0, y), slice(0, x)))[0]
            tile = np.tile(s, (-(-n // y), -(-n // x)))[:n, :n]
            tifffile.imwrite(out / f"slice_{k:04d}.tif", tile)


BASELINE_CONVERT = """
import sys, tifffile, zarr, numpy as np
from pathlib import Path
files = sorted(Path(sys.argv[1]).glob('*.tif'))
vol = tifffile.imread(files)                      # the whole volume in memory
zarr.create_array(
    sys.argv[2], shape=vol.shape, chunks=(64, 256, 256), dtype=vol.dtype, overwrite=True
)[:] = vol
"""

BASELINE_LABEL = """
import sys, numpy as np, tifffile
from pathlib import Path
from skimage.feature import multiscale_basic_features
from sklearn.ensemble import RandomForestClassifier
vol = tifffile.imread(sorted(Path(sys.argv[1]).glob('*.tif'))).astype(np.float32)
lo, hi = np.percentile(vol, [0.5, 99.5]); vol = (vol - lo) / (hi - lo)
feats = multiscale_basic_features(vol, intensity=True, edges=True, texture=True,
                                  sigma_min=1, sigma_max=4, num_sigma=3, workers=2)
labels = np.zeros(vol.shape, np.uint8)
for f in Path(sys.argv[2]).glob('z*.tif'):
    labels[int(f.stem[1:])] = tifffile.imread(f)
on = labels > 0
rf = RandomForestClassifier(64, min_samples_leaf=2, class_weight='balanced', n_jobs=-1,
                            random_state=0).fit(feats[on], labels[on])
pred = rf.predict(feats.reshape(-1, feats.shape[-1])).reshape(vol.shape).astype(np.uint8)
np.save(sys.argv[3], pred)
"""


BASELINE_PREDICT = """
import sys, numpy as np, tifffile, torch
from pathlib import Path
from olmap.segment.checkpoint import load_checkpoint
from olmap.segment.infer import predict_proba
vol = tifffile.imread(sorted(Path(sys.argv[1]).glob('*.tif')))   # the whole volume in memory
model = load_checkpoint(sys.argv[2])[0]
labels = np.empty(vol.shape, np.uint8)
with torch.inference_mode():
    for k, image in enumerate(vol):
        labels[k] = predict_proba(model, image, window=512, stride=256).argmax(0)
np.save(sys.argv[3], labels)
"""


def predict(args: argparse.Namespace) -> dict:
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    out = {}
    for n in [int(v) for v in args.sizes.split(",")]:
        scan = work / f"tiled{n}"
        if not scan.exists():
            tile_volume(args.source, scan, n)
        cmd = [*OLMAP, "ct", "predict", "--model", str(args.model), "--volume", str(scan)]
        row = {"voxels": n**3}
        row["predict"] = measured([*cmd, "--out", str(work / f"p{n}.zarr"), "--overwrite"])
        if n <= args.tri_max:
            row["predict_tri"] = measured(
                [*cmd, "--planes", "tri", "--out", str(work / f"t{n}.zarr"), "--overwrite"]
            )
        base = [sys.executable, "-c", BASELINE_PREDICT, str(scan), str(args.model)]
        row["predict_in_memory"] = measured([*base, str(work / "b.npy")])
        for key in ("predict", "predict_tri", "predict_in_memory"):
            if key in row:
                row[key]["voxels_per_s"] = n**3 / row[key]["seconds"]
        out[n] = row
        print(n, json.dumps(row), flush=True)
    return out


def memory(args: argparse.Namespace) -> dict:
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    out = {}
    for n in [int(v) for v in args.sizes.split(",")]:
        scan = work / f"tiled{n}"
        if not scan.exists():
            tile_volume(args.source, scan, n)
        convert = [*OLMAP, "ct", "convert", str(scan), "--out", str(work / f"c{n}.zarr")]
        label = [*OLMAP, "ct", "label", "--volume", str(scan), "--model", str(args.forest)]
        label += ["--out", str(work / f"l{n}.zarr")]
        row = {"voxels": n**3, "convert": measured([*convert, "--overwrite"])}
        stop = args.label_blocks if n > args.full_label_max else None
        row["label"] = measured([*label, "--overwrite"], stop_after=stop)
        if n <= args.baseline_max:
            row["convert_in_memory"] = measured(
                [sys.executable, "-c", BASELINE_CONVERT, str(scan), str(work / f"b{n}.zarr")]
            )
        out[n] = row
        print(n, json.dumps(row), flush=True)
    return out


def speed(args: argparse.Namespace) -> dict:
    scan = args.series / f"t{args.step:03d}"
    scribbles = args.series / "scribbles" / f"t{args.step:03d}"
    classes = Path(__file__).resolve().parents[1] / "configs" / "ct" / "gypsum.yaml"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)

        def label(out: str, *options: str) -> dict:
            return measured(
                [*OLMAP, "ct", "label", "--volume", str(scan), "--scribbles", str(scribbles),
                 "--classes", str(classes), "--out", str(tmp / out), *options]
            )  # fmt: skip

        ours = label("l.zarr", "--no-autocontext", "--no-refine")
        ours_ac = label("l2.zarr", "--no-refine")
        ours_default = label("l3.zarr")  # auto-context and the boundary refinement
        base = measured(
            [sys.executable, "-c", BASELINE_LABEL, str(scan), str(scribbles), str(tmp / "b.npy")]
        )
    from olmap.io.volume import open_volume

    with open_volume(scan) as v:
        n = v.info.nbytes // v.dtype.itemsize
    res = {
        "voxels": n,
        "olmap_one_stage": ours,
        "olmap_autocontext": ours_ac,
        "olmap_default": ours_default,
        "in_memory_skimage_sklearn": base,
    }
    for r in (ours, ours_ac, ours_default, base):
        r["voxels_per_s"] = n / r["seconds"]
    print(json.dumps(res, indent=1))
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="what", required=True)
    m = sub.add_parser("memory")
    m.add_argument("--sizes", default="512,1024")
    m.add_argument("--work", type=Path, required=True)
    m.add_argument(
        "--forest", type=Path, required=True, help="a forest of olmap ct label --save-model"
    )
    m.add_argument("--baseline-max", type=int, default=512, help="largest in-memory baseline")
    m.add_argument("--source", type=Path, required=True, help="a 256^3 slice folder to repeat")
    m.add_argument("--label-blocks", type=int, default=24, help="blocks of a partial ct label")
    m.add_argument("--full-label-max", type=int, default=512, help="largest full ct label run")
    m.add_argument("--out", type=Path)
    s = sub.add_parser("speed")
    s.add_argument("--series", type=Path, required=True)
    s.add_argument("--step", type=int, default=2)
    s.add_argument("--out", type=Path)
    p = sub.add_parser("predict")
    p.add_argument("--sizes", default="256,512")
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--model", type=Path, required=True, help="a checkpoint of olmap ct train")
    p.add_argument("--source", type=Path, required=True, help="a 256^3 slice folder to repeat")
    p.add_argument("--tri-max", type=int, default=256, help="largest --planes tri run")
    p.add_argument("--out", type=Path)
    args = ap.parse_args()
    res = {"memory": memory, "speed": speed, "predict": predict}[args.what](args)
    if getattr(args, "out", None):
        args.out.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()

"""``olmap ct``: the 3D CT mode (volumes of a 4D micro-CT series)."""

from __future__ import annotations

import json
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated

import typer

from olmap.cli._console import progress_bar, stdout
from olmap.cli._options import Device, MaxMinutes, Overwrite

app = typer.Typer(
    help=(
        "The 3D CT mode: micro-CT volumes and 4D series into phase labels (docs/ct.md).\n\n"
        "Examples:\n\n"
        "olmap synth ct demo_ct --seed 7 --size 256x256x256 --steps 6\n\n"
        "olmap ct info demo_ct/t002\n\n"
        "olmap ct convert demo_ct/t002 --out t002.zarr --voxel-size 2.753\n\n"
        "olmap ct label --volume demo_ct/t002 --scribbles demo_ct/scribbles/t002 "
        "--classes configs/ct/gypsum.yaml --out rf_labels.zarr --save-model forest.pkl\n\n"
        "olmap ct train --volume demo_ct/t002 --labels rf_labels.zarr --classes "
        "configs/ct/gypsum.yaml --config configs/train/ct-quick.yaml --out ct_model.pt\n\n"
        "olmap ct predict --model ct_model.pt --volume demo_ct/t005 --out labels.zarr\n\n"
        "olmap ct predict --model ct_model.pt --series demo_ct --out labels/ --planes tri"
    ),
    no_args_is_help=True,
)

Shape = Annotated[
    str | None,
    typer.Option(
        "--shape", help="Z,Y,X of a raw binary volume (with --dtype).", show_default=False
    ),
]
Dtype = Annotated[
    str | None,
    typer.Option("--dtype", help="Voxel type of a raw volume: uint8, uint16 or float32."),
]
VoxelSize = Annotated[
    float | None,
    typer.Option("--voxel-size", min=0.0, help="Voxel size in µm (overrides the metadata)."),
]
Dask = Annotated[
    str | None,
    typer.Option(
        "--dask", help="Dask scheduler address, or local:N for a local cluster of N workers."
    ),
]


def parse_triple(value: str | None, option: str) -> tuple[int, int, int] | None:
    """``"64,256,256"`` or ``"64x256x256"`` -> ``(64, 256, 256)``."""
    if value is None:
        return None
    parts = value.replace("x", ",").split(",")
    try:
        out = tuple(int(p) for p in parts)
    except ValueError:
        out = ()
    if len(out) != 3 or min(out) < 1:
        raise typer.BadParameter(
            f"expected Z,Y,X as three positive integers, got {value!r}", param_hint=option
        )
    return out  # type: ignore[return-value]


def _spec(volume: str, shape: str | None, dtype: str | None, voxel_size: float | None):
    from olmap.ct.label import VolumeSpec

    return VolumeSpec(str(volume), parse_triple(shape, "--shape"), dtype, voxel_size)


@app.command("info")
def info(
    volume: Annotated[
        str, typer.Argument(help="Volume: TIFF folder, TIFF, file.h5:/path, zarr, raw.")
    ],
    shape: Shape = None,
    dtype: Dtype = None,
    voxel_size: VoxelSize = None,
) -> None:
    """Shape, type, voxel size, chunks and a grey-value summary of a volume (reads a sample).

    Example: olmap ct info demo_ct/t000
    """
    from rich.table import Table

    from olmap.ct.convert import describe_volume

    summary = describe_volume(_spec(volume, shape, dtype, voxel_size))
    i = summary.info
    size = f"{i.voxel_size_um:g} µm" if i.voxel_size_um else "unknown (use --voxel-size)"
    stdout.print(f"[bold]{i.path}[/] ({i.kind})")
    stdout.print(
        f"shape (z, y, x) {' x '.join(map(str, i.shape))}, {i.dtype.name}, "
        f"{i.nbytes / 2**30:.2f} GiB; voxel {size}; chunks {' x '.join(map(str, i.chunks))}"
    )
    pct = Table(
        *summary.percentiles, title=f"grey values ({summary.sampled_voxels:,} sampled voxels)"
    )
    pct.add_row(*(f"{v:.6g}" for v in summary.percentiles.values()))
    stdout.print(pct)
    counts, edges = summary.histogram
    top = max(1, counts.max())
    for c, lo, hi in zip(counts, edges[:-1], edges[1:], strict=True):
        stdout.print(f"{lo:>12.6g} - {hi:<12.6g} {'#' * round(40 * c / top)}")


@app.command("convert")
def convert(
    volume: Annotated[str, typer.Argument(help="Volume to convert (any format olmap reads).")],
    out: Annotated[
        Path, typer.Option("--out", help="Output: a .zarr folder, or .tif with --format tiff.")
    ],
    fmt: Annotated[
        str, typer.Option("--format", help="zarr (OME-Zarr) or tiff (multi-page).")
    ] = "zarr",
    voxel_size: VoxelSize = None,
    shape: Shape = None,
    dtype: Dtype = None,
    dask: Dask = None,
    overwrite: Overwrite = False,
) -> None:
    """Convert a volume to OME-Zarr (multiscale, chunked, compressed) in bounded memory.

    Example: olmap ct convert demo_ct/t000 --out t000.zarr --voxel-size 2.753

    Raw binary: olmap ct convert scan.raw --shape 2016,2016,2016 --dtype uint16 --out scan.zarr
    """
    from olmap.ct.convert import convert_volume

    spec = _spec(volume, shape, dtype, voxel_size)
    with spec.open() as vol:
        total = vol.info.nbytes / vol.dtype.itemsize / 1e6
    with progress_bar("ct convert", total=total, unit="Mvox") as advance:
        info = convert_volume(
            spec, out, fmt=fmt, overwrite=overwrite, dask=dask, progress=lambda n: advance(n / 1e6)
        )
    stdout.print(
        f"{out}: {' x '.join(map(str, info.shape))} {info.dtype.name}, "
        f"voxel {info.voxel_size_um or 'unknown'} µm"
    )


@app.command("label")
def label(
    volumes: Annotated[
        list[str],
        typer.Option(
            "--volume", help="Scan to learn from; repeat with --scribbles. The first is labelled."
        ),
    ],
    out: Annotated[
        Path, typer.Option("--out", help="Label volume (.zarr, or .tif with --format tiff).")
    ],
    classes: Annotated[
        Path | None, typer.Option("--classes", help="Class file (configs/ct/*.yaml).")
    ] = None,
    scribbles: Annotated[
        list[str] | None,
        typer.Option(
            "--scribbles",
            help="Scribbles of the matching --volume: a label volume or a folder of slices "
            "named by z (z0012.tif).",
        ),
    ] = None,
    model: Annotated[
        Path | None, typer.Option("--model", help="Apply a saved forest instead of training.")
    ] = None,
    save_model: Annotated[
        Path | None,
        typer.Option("--save-model", help="Save the fitted forest (e.g. forest.pkl)."),
    ] = None,
    out_prob: Annotated[
        Path | None, typer.Option("--out-prob", help="Per-class probabilities (OME-Zarr).")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="zarr or tiff.")] = "zarr",
    features: Annotated[str, typer.Option("--features", help="3d, or 2d (per slice).")] = "3d",
    sigmas: Annotated[
        str, typer.Option("--sigmas", help="Feature scales in voxels, comma-separated.")
    ] = "1,2,4",
    trees: Annotated[
        int, typer.Option("--trees", min=1, max=1000, help="Trees in the forest.")
    ] = 64,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Random seed of the forest.")] = 0,
    block: Annotated[
        str | None,
        typer.Option(
            "--block", help="Block Z,Y,X in voxels [default: 32,256,256] (memory grows with it)."
        ),
    ] = None,
    truth: Annotated[
        Path | None, typer.Option("--truth", help="Truth labels to score the result against.")
    ] = None,
    workers: Annotated[
        int, typer.Option("--workers", min=1, max=64, help="Blocks at once (threads).")
    ] = 2,
    autocontext: Annotated[
        bool,
        typer.Option(
            "--autocontext/--no-autocontext",
            help="A second forest that also reads the first one's smoothed probabilities.",
        ),
    ] = True,
    priors: Annotated[
        str,
        typer.Option(
            "--priors",
            help="volume: correct the balanced forest to the scan's own class proportions "
            "(EM on a sample); uniform: as trained.",
        ),
    ] = "volume",
    refine: Annotated[
        bool,
        typer.Option(
            "--refine/--no-refine",
            help="Re-draw the voxels the forest is unsure of (p < 0.7) by a marker watershed "
            "over the grey gradient: boundaries on the steepest grey step.",
        ),
    ] = True,
    voxel_size: VoxelSize = None,
    shape: Shape = None,
    dtype: Dtype = None,
    dask: Dask = None,
    overwrite: Overwrite = False,
) -> None:
    """Random-forest labels of a whole volume from sparse scribbles (seed 000's first step).

    Features at several scales (intensity, gradient, Laplacian, local sd, Hessian) train a
    class-balanced random forest on the scribbled voxels; it labels the first --volume block by
    block (bounded memory, resumable), and the voxels it is unsure of are re-drawn by a marker
    watershed over the grey gradient (--no-refine: the forest's own labels). Held-out strokes
    score the forest and a global-threshold baseline; written beside the labels as
    OUT_scores.csv, with OUT_importance.csv.

    Example: olmap ct label --volume demo_ct/t002 --scribbles demo_ct/scribbles/t002 --classes configs/ct/gypsum.yaml --out rf_labels.zarr --save-model forest.pkl

    Two scans, one forest: add --volume demo_ct/t004 --scribbles demo_ct/scribbles/t004

    Apply a saved forest: olmap ct label --volume demo_ct/t005 --model forest.pkl --out t005_labels.zarr
    """  # noqa: E501
    from olmap.ct.classes import load_classes
    from olmap.ct.features import FeatureConfig
    from olmap.ct.forest import (
        ForestConfig,
        load_forest,
        read_scribbles,
        save_forest,
        train_forest,
    )
    from olmap.ct.label import label_volume
    from olmap.errors import InputError
    from olmap.io.outputs import atomic_path, check_writable

    scribbles = scribbles or []
    specs = [_spec(v, shape, dtype, voxel_size) for v in volumes]
    side = {k: side_file(out, k) for k in ("scores", "importance")}
    check_writable(out, overwrite=overwrite)
    if model is not None:
        if scribbles:
            raise InputError("--model applies a saved forest; give either --model or --scribbles")
        fitted = load_forest(model)
        if classes is not None:
            mine = load_classes(classes)
            if mine.codes != fitted.classes.codes:
                raise InputError(
                    f"{classes}: codes {mine.codes}, the forest was trained on "
                    f"{fitted.classes.codes}"
                )
    else:
        if classes is None:
            raise InputError("--classes is needed to train a forest (e.g. configs/ct/gypsum.yaml)")
        if len(scribbles) != len(volumes):
            raise InputError(
                f"{len(volumes)} --volume but {len(scribbles)} --scribbles: give them in pairs"
            )
        class_file = load_classes(classes)
        try:
            fcfg = FeatureConfig(dims=features, sigmas=tuple(float(s) for s in sigmas.split(",")))
        except ValueError as exc:
            raise typer.BadParameter(
                str(exc).splitlines()[0], param_hint="--features/--sigmas"
            ) from exc
        if save_model is not None:
            check_writable(save_model, overwrite=overwrite)
        with ExitStack() as stack:
            pairs = []
            for spec, scrib in zip(specs, scribbles, strict=True):
                vol = stack.enter_context(spec.open())
                pairs.append((vol, read_scribbles(scrib, vol.shape, class_file)))
            n_px = sum(len(s) for _, s in pairs)
            with progress_bar("training the forest", total=None):
                fitted = train_forest(
                    pairs,
                    class_file,
                    fcfg,
                    ForestConfig(trees=trees, seed=seed),
                    autocontext=autocontext,
                )
        stages = "two stages (auto-context)" if autocontext else "one stage"
        stdout.print(
            f"forest: {trees} trees, {stages}, on {n_px:,} scribbled voxels of {len(specs)} scan(s)"
        )
        if fitted.scores is not None:
            stdout.print(
                _scores_table("held-out strokes: forest vs global threshold (Dice)", fitted.scores)
            )
            with atomic_path(side["scores"], overwrite=True) as tmp:
                fitted.scores.to_csv(tmp, index_label=["method", "class"])
        with atomic_path(side["importance"], overwrite=True) as tmp:
            fitted.importance.to_csv(tmp, index=False)
        if save_model is not None:
            save_forest(fitted, save_model)
            stdout.print(f"forest saved: {save_model}")
    with specs[0].open() as vol:
        total = vol.info.nbytes / vol.dtype.itemsize / 1e6
    with progress_bar("ct label", total=total, unit="Mvox") as advance:
        result = label_volume(
            fitted,
            specs[0],
            out,
            out_prob=out_prob,
            fmt=fmt,
            block=parse_triple(block, "--block"),
            truth=truth,
            dask=dask,
            workers=workers,
            priors=priors,
            refine=refine,
            overwrite=overwrite,
            progress=lambda n: advance(n / 1e6),
            inputs=[*scribbles, *([model] if model else [])],
        )
    preview = _preview(specs[0], result.labels_path, fitted.classes, scribbles[:1], out)
    _print_result(result, truth, out)
    stdout.print(f"preview: {preview}")


def side_file(out: Path, kind: str) -> Path:
    """``OUT_<kind>.csv`` beside the output ``out`` (``labels.zarr`` -> ``labels_<kind>.csv``)."""
    return out.with_name(f"{out.name.split('.')[0]}_{kind}.csv")


def _print_result(result, truth: Path | None, out: Path) -> None:
    """The label volume's voxels per phase and speed, the uncertainty summary (printed and
    OUT_uncertainty.csv); with ``truth``, the scores (table and OUT_truth_scores.csv)."""
    from olmap.io.outputs import atomic_path

    share = ", ".join(
        f"{k} {100 * v / result.voxels:.1f} %" for k, v in result.class_voxels.items()
    )
    stdout.print(
        f"{result.labels_path}: {result.voxels:,} voxels in {result.seconds:.1f} s "
        f"({result.voxels_per_second / 1e6:.2f} Mvox/s); {share}",
        soft_wrap=True,
    )
    conf = ", ".join(f"{k} {v:.2f}" for k, v in result.confidence.items())
    stdout.print(
        f"confidence (mean winning probability): {conf}; "
        f"{100 * result.uncertain_share:.1f} % of voxels below 0.5",
        soft_wrap=True,
    )
    with atomic_path(side_file(out, "uncertainty"), overwrite=True) as tmp:
        result.uncertainty().to_csv(tmp)
    if result.truth_scores is not None:
        stdout.print(_scores_table(f"against {truth}", result.truth_scores))
        with atomic_path(side_file(out, "truth_scores"), overwrite=True) as tmp:
            result.truth_scores.to_csv(tmp, index_label="class")


def _preview(spec, labels_path: Path, classes, scribbles: list[str], out: Path) -> Path:
    """OUT_preview.png: the middle scribbled slice (else the middle slice) of the labels."""
    import numpy as np

    from olmap.ct.forest import read_scribbles
    from olmap.ct.plots import write_slice_figure
    from olmap.io.volume import open_volume

    with spec.open() as vol:
        scrib = read_scribbles(scribbles[0], vol.shape, classes) if scribbles else None
        z = scrib.slices[len(scrib.slices) // 2] if scrib is not None else vol.shape[0] // 2
        region = (slice(z, z + 1), slice(None), slice(None))
        grey = vol.read(region)[0]
    with open_volume(labels_path, labels=True) as lab:
        labels = lab.read(region)[0]
    painted = None
    if scrib is not None:
        painted = np.zeros(grey.shape, np.uint8)
        on = scrib.z == z
        painted[scrib.y[on], scrib.x[on]] = scrib.code[on]
    path = out.with_name(out.name.split(".")[0] + "_preview.png")
    return write_slice_figure(grey, labels, classes, path, scribbles=painted, title=f"z = {z}")


def _scores_table(title: str, scores):
    """A rich table of Dice/IoU/precision/recall/kappa/VS per class (and method)."""
    from rich.table import Table

    cols = ["dice", "iou", "precision", "recall", "kappa", "volumetric_similarity"]
    table = Table("", *[c.replace("volumetric_similarity", "VS") for c in cols], title=title)
    for key, row in scores.iterrows():
        name = " / ".join(map(str, key)) if isinstance(key, tuple) else str(key)
        table.add_row(name, *(f"{row[c]:.3f}" for c in cols))
    return table


@app.command("train")
def train(
    volumes: Annotated[
        list[str], typer.Option("--volume", help="Scan to learn from; repeat with --labels.")
    ],
    labels: Annotated[
        list[str],
        typer.Option(
            "--labels",
            help="Label volume of the matching --volume (the forest's, or a user's; 0 = "
            "unlabelled).",
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="Model checkpoint to write (.pt).")],
    classes: Annotated[
        Path, typer.Option("--classes", help="Class file (configs/ct/*.yaml).")
    ] = Path("configs/ct/gypsum.yaml"),
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="Training config (YAML): configs/train/ct-quick.yaml (2 CPU cores, <= 10 min, "
            "the default) or configs/train/ct-paper.yaml (GPU).",
        ),
    ] = None,
    planes: Annotated[
        str, typer.Option("--planes", help="Training slices: xy, or all (XY, XZ and YZ).")
    ] = "xy",
    every: Annotated[
        int, typer.Option("--every", min=1, help="Use every N-th slice of each plane.")
    ] = 2,
    tile: Annotated[int, typer.Option("--tile", min=32, help="Tile side in voxels.")] = 256,
    val_share: Annotated[
        float,
        typer.Option("--val-share", min=0.0, max=0.9, help="Share of slices kept to validate."),
    ] = 0.2,
    dataset: Annotated[
        Path | None,
        typer.Option(
            "--dataset",
            help="Where the training slices go (default: OUT-stem_slices/ beside OUT); an "
            "existing one from the same inputs is reused (resume).",
        ),
    ] = None,
    init: Annotated[
        str | None,
        typer.Option(
            "--init",
            help="Starting weights: auto, none, coco, imagenet, synthetic, "
            "or a checkpoint PATH (auto: olmap's CT pretraining, never the SEM one).",
        ),
    ] = None,
    device: Device = None,
    max_minutes: MaxMinutes = None,
    seed: Annotated[int | None, typer.Option("--seed", min=0, help="Random seed.")] = None,
    overwrite: Overwrite = False,
) -> None:
    """Train the segmentation core of the 2D pipeline on slices of scans and label volumes.

    Seed 000's second step: a CNN learns from the random forest's labels (olmap ct label) and
    then segments every scan of the series. Slices (XY, or XY/XZ/YZ with --planes all) are cut
    into tiles of a dataset folder (whole slices held out for validation), and the same
    training as olmap train runs on it: the same checkpoint format, early stopping, resume
    after Ctrl-C, curves and per-class scores.

    Example: olmap ct train --volume demo_ct/t002 --labels rf_labels.zarr --classes
    configs/ct/gypsum.yaml --config configs/train/ct-quick.yaml --out ct_model.pt
    """
    from olmap.cli.train import run_training
    from olmap.ct.classes import load_classes
    from olmap.io.config import load_config
    from olmap.io.outputs import claim_outputs
    from olmap.segment.config import TrainConfig

    if planes not in ("xy", "all"):
        raise typer.BadParameter(f"{planes!r}: xy or all", param_hint="--planes")
    class_file = load_classes(classes)
    if config is None:
        from olmap.pipeline.config import builtin_configs

        config = builtin_configs() / "train" / "ct-quick.yaml"
    cfg = load_config(
        TrainConfig, config, init=init, device=device, max_minutes=max_minutes, seed=seed
    )
    dataset = dataset or out.with_name(f"{out.stem}_slices")
    claim = claim_outputs([out], inputs=[*volumes, *labels, classes, config], overwrite=overwrite)
    from olmap.io.volume import volume_stamp

    request = {
        "planes": planes, "every": every, "tile": tile, "val_share": val_share,
        "stamps": [volume_stamp(v) for v in [*volumes, *labels]],
    }  # fmt: skip
    if _same_slices(dataset, volumes, labels, request):
        stdout.print(f"Reusing the training slices in {dataset}", soft_wrap=True)
    else:
        from olmap.ct.slices import write_slice_dataset

        with progress_bar("slicing", total=None, unit="tiles") as bar:
            summary = write_slice_dataset(
                volumes, labels, class_file, dataset, planes=planes, tile=tile, every=every,
                val_share=val_share, overwrite=overwrite, progress=bar, on_total=bar.set_total,
            )  # fmt: skip
        counts = summary.split_counts()
        stdout.print(
            f"Wrote {dataset}: {counts.get('train', 0)} training and {counts.get('val', 0)} "
            f"validation tiles of {summary.tile} px",
            soft_wrap=True,
        )
        (dataset / "request.json").write_text(json.dumps(request) + "\n")
    run_training(dataset, cfg, out, claim, weights=None, overwrite=overwrite)


def _same_slices(dataset: Path, volumes, labels, request: dict) -> bool:
    """True when ``dataset`` holds slices of these inputs cut as ``request`` says."""
    try:
        meta = json.loads((dataset / "dataset.json").read_text())
        done = json.loads((dataset / "request.json").read_text())
    except (OSError, ValueError):
        return False
    same_inputs = meta.get("volumes") == [str(Path(v).resolve()) for v in volumes] and meta.get(
        "labels"
    ) == [str(Path(v).resolve()) for v in labels]
    return same_inputs and done == request


@app.command("predict")
def predict(
    model: Annotated[Path, typer.Option("--model", help="Checkpoint from olmap ct train.")],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            help="Label volume (.zarr, or .tif with --format tiff); with --series a folder "
            "(one label volume per scan, named like the scan).",
        ),
    ],
    volume: Annotated[
        str | None, typer.Option("--volume", help="Scan to segment.", show_default=False)
    ] = None,
    series: Annotated[
        Path | None,
        typer.Option(
            "--series",
            help="A folder of scans in time order (t000/, t001.tif, ...): each is segmented.",
            show_default=False,
        ),
    ] = None,
    classes: Annotated[
        Path, typer.Option("--classes", help="Class file (configs/ct/*.yaml).")
    ] = Path("configs/ct/gypsum.yaml"),
    out_prob: Annotated[
        Path | None, typer.Option("--out-prob", help="Per-class probabilities (OME-Zarr).")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="zarr or tiff.")] = "zarr",
    planes: Annotated[
        str,
        typer.Option(
            "--planes",
            help="xy (XY slices), or tri: XY, XZ and YZ slices, probabilities averaged "
            "(about 3-5x the time).",
        ),
    ] = "xy",
    slab: Annotated[int, typer.Option("--slab", min=1, help="XY slices per block.")] = 8,
    window: Annotated[
        int, typer.Option("--window", min=32, help="Window side the model sees (px).")
    ] = 512,
    grey_match: Annotated[
        bool,
        typer.Option(
            "--grey-match/--no-grey-match",
            help="Map the scan's 1st-99th grey percentiles onto the training slices' (a "
            "scanner's drift; in a reacting series the phases move them too).",
        ),
    ] = False,
    clean: Annotated[
        bool,
        typer.Option(
            "--clean/--no-clean",
            help="Post-processing: remove isolated clusters smaller than each class's "
            "min_voxels in the class file (3D connected components; seed 000).",
        ),
    ] = True,
    truth: Annotated[
        Path | None,
        typer.Option(
            "--truth",
            help="Truth labels to score the result against (with --series a folder of them, "
            "named like the scans).",
        ),
    ] = None,
    device: Device = "auto",
    shape: Shape = None,
    dtype: Dtype = None,
    voxel_size: VoxelSize = None,
    dask: Dask = None,
    overwrite: Overwrite = False,
) -> None:
    """Segment a whole volume or series with a model from olmap ct train, slab by slab (resumable).

    Every XY slice goes through the 2D pipeline's windowed predictor (overlapping windows,
    blended); with --planes tri the XZ and YZ slices too, the three probabilities averaged.
    Labels (and with --out-prob the probabilities) are written to OME-Zarr chunk by
    chunk; isolated clusters smaller than the class file's min_voxels are then removed
    (--no-clean keeps them). OUT_uncertainty.csv: the mean winning probability per class and
    the share of voxels below 0.5. With --truth, Dice and IoU per class against a label
    volume, also written as OUT_truth_scores.csv.

    Example: olmap ct predict --model ct_model.pt --volume demo_ct/t005 --out t005_cnn.zarr

    Example: olmap ct predict --model ct_model.pt --series demo_ct --out labels/ --truth
    demo_ct/truth
    """
    from olmap.ct.classes import load_classes

    if (volume is None) == (series is None):
        raise typer.BadParameter("give one scan (--volume) or a series (--series)")
    class_file = load_classes(classes)
    settings = {
        "out_prob": out_prob, "fmt": fmt, "slab": slab, "window": window, "planes": planes,
        "grey_match": grey_match, "clean": clean, "device": device, "dask": dask,
        "overwrite": overwrite,
    }  # fmt: skip
    if volume is not None:
        _predict_one(model, _spec(volume, shape, dtype, voxel_size), out, class_file, truth,
                     settings)  # fmt: skip
        return
    from olmap.errors import InputError
    from olmap.io.volume import list_series

    if out_prob is not None:
        raise typer.BadParameter("--out-prob is for one --volume", param_hint="--out-prob")
    scans = list_series(series)
    truths = {p.name.split(".")[0]: p for p in list_series(truth)} if truth else {}
    missing = [s.name for s in scans if truth is not None and s.name.split(".")[0] not in truths]
    if missing:  # before any scan is segmented
        raise InputError(f"{truth}: no truth volume named like {missing[0]}")
    out.mkdir(parents=True, exist_ok=True)
    suffix = ".tif" if fmt == "tiff" else ".zarr"
    for k, scan in enumerate(scans, start=1):
        stem = scan.name.split(".")[0]
        target = out / f"{stem}{suffix}"
        stdout.print(f"[{k}/{len(scans)}] {scan}", soft_wrap=True)
        if target.exists() and not overwrite:
            stdout.print(f"{target} exists: kept (--overwrite to redo it)", soft_wrap=True)
            continue
        spec = _spec(str(scan), shape, dtype, voxel_size)
        _predict_one(model, spec, target, class_file, truths.get(stem), settings)
    summary = _series_summary(out, [s.name.split(".")[0] for s in scans])
    if summary is not None:
        stdout.print(f"series summary: {summary}", soft_wrap=True)


def _predict_one(model: Path, spec, out: Path, class_file, truth: Path | None, settings) -> None:
    """``ct predict`` of one scan, with its printed result and side files."""
    from olmap.ct.predict import predict_volume

    with spec.open() as vol:
        total = vol.info.nbytes / vol.dtype.itemsize / 1e6
    with progress_bar("ct predict", total=total, unit="Mvox") as advance:
        result = predict_volume(
            model, spec, out, class_file, truth=truth, progress=lambda n: advance(n / 1e6),
            **settings,
        )  # fmt: skip
    if result.settings["grey"]:
        stdout.print(f"grey: {result.settings['grey']}", soft_wrap=True)
    if result.settings["min_voxels"]:
        sizes = ", ".join(f"{k} < {v}" for k, v in result.settings["min_voxels"].items())
        stdout.print(f"post-processing: isolated clusters removed ({sizes} voxels)", soft_wrap=True)
    raw = result.settings.get("raw_truth_scores")
    if raw is not None:
        dice = " / ".join(f"{v:.3f}" for v in raw["dice"])
        stdout.print(
            f"Dice before post-processing ({' / '.join(raw.index)}): {dice}", soft_wrap=True
        )
    _print_result(result, truth, out)


def _series_summary(out: Path, stems: list[str]) -> Path | None:
    """OUT/series_summary.csv: per scan and class, the voxels, share, confidence and (where
    scored) Dice, gathered from each scan's side files; printed as a table."""
    import pandas as pd
    from rich.table import Table

    from olmap.io.outputs import atomic_path

    frames = []
    for stem in stems:
        unc = out / f"{stem}_uncertainty.csv"
        if not unc.is_file():
            continue
        frame = pd.read_csv(unc, index_col="class")
        scores = out / f"{stem}_truth_scores.csv"
        if scores.is_file():
            frame["dice"] = pd.read_csv(scores, index_col="class")["dice"]
        frames.append(frame.reset_index().assign(scan=stem))
    if not frames:
        return None  # no scan has its side files (all kept from an older run)
    table = pd.concat(frames, ignore_index=True).set_index(["scan", "class"])
    path = out / "series_summary.csv"
    with atomic_path(path, overwrite=True) as tmp:
        table.to_csv(tmp)
    col = "dice" if "dice" in table else "share"
    order = list(dict.fromkeys(table.index.get_level_values("class")))  # the class file's
    wide = table[col].unstack("class")[order]
    view = Table("scan", *[c for c in wide.columns if c != "all"], "below 0.5",
                 title=f"{'Dice' if col == 'dice' else 'share'} per class")  # fmt: skip
    below = table["below_0.5"].xs("all", level="class")
    for scan, row in wide.iterrows():
        cells = [f"{row[c]:.3f}" for c in wide.columns if c != "all"]
        view.add_row(str(scan), *cells, f"{100 * below.get(scan, float('nan')):.1f} %")
    stdout.print(view)
    return path

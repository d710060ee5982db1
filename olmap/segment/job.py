"""``olmap train``: fine-tune a model on a dataset folder and write one checkpoint.

Order of work: open the dataset (``olmap dataset``), build the model for its classes with the
training tiles' grey-value statistics, choose the starting weights (:func:`resolve_init`), fit
with early stopping on the validation tiles (resumable), score the best epoch on the
validation and test tiles, then write ``model.pt`` and its curves (``<stem>.curves.csv`` and
``.png``) beside it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from olmap import __version__
from olmap.errors import InputError
from olmap.io.outputs import atomic_paths, claim_outputs
from olmap.io.resume import StopFlag, file_stamp
from olmap.io.tables import write_table
from olmap.plots.training import write_training_curves
from olmap.segment.checkpoint import ModelMeta, build_model, read_checkpoint, save_checkpoint
from olmap.segment.config import TrainConfig, output_paths
from olmap.segment.data import IGNORE_INDEX, input_statistics, open_tile_dataset
from olmap.segment.domain import DomainShift, domain_shift
from olmap.segment.evaluate import evaluate_tiles
from olmap.segment.infer import resolve_device
from olmap.segment.model import (
    ARCHITECTURES,
    Segmenter,
    find_pretrained,
    label_set_groups,
    load_pretrained,
    read_state_dict,
    transfer_weights,
)
from olmap.segment.scale import grey_percentiles
from olmap.segment.train import EpochRecord, FitResult, fit

log = logging.getLogger(__name__)

#: Folder of the synthetic initialisations shipped with olmap (docs/models.md).
WEIGHTS_DIR = Path(__file__).parent / "weights"


def synthetic_init_file(architecture: str, modality: str = "sem") -> Path:
    """Where olmap keeps its synthetic initialisation of ``architecture`` for ``modality``:
    ``<architecture>-synthetic.pt`` (SEM BSE, ``olmap synth section``) or
    ``<architecture>-ct-synthetic.pt`` (CT slices, ``olmap synth ct``); docs/models.md."""
    tag = "" if modality == "sem" else f"-{modality}"
    return WEIGHTS_DIR / f"{architecture}{tag}-synthetic.pt"


@dataclass(frozen=True)
class InitChoice:
    """Starting weights: ``kind`` is synthetic, coco, imagenet, none or checkpoint."""

    kind: str
    path: Path | None
    note: str


def _weights_kind(path: Path) -> str:
    """ "coco" for a whole torchvision DeepLabV3 state dict, else "imagenet" (a backbone)."""
    keys = read_state_dict(path, "torchvision weights")
    return "coco" if any(k.startswith("backbone.") for k in keys) else "imagenet"


def resolve_init(
    init: str, architecture: str, weights: Path | None = None, modality: str = "sem"
) -> InitChoice:
    """Decide where training starts; never silently.

    Parameters
    ----------
    init : str
        ``auto`` (COCO, else ImageNet, from ``weights`` or the torch cache, else olmap's
        synthetic initialisation), ``coco``, ``imagenet``, ``synthetic``, ``none`` (random),
        or the path of an olmap checkpoint.
    architecture : str
        Model architecture.
    weights : path, optional
        A torchvision weights file (COCO DeepLabV3 or ImageNet backbone) to use instead of the
        torch cache.
    modality : {"sem", "ct"}
        What the images are (a dataset's ``modality``): ``synthetic`` (and ``auto`` without
        COCO/ImageNet weights) means olmap's synthetic pretraining of that modality
        (:func:`synthetic_init_file`); a CT model never starts from the SEM one unless its
        path is given.

    Raises
    ------
    InputError
        If the requested weights are not available, with where they were looked for.
    """
    cache = Path(torch.hub.get_dir()) / "checkpoints"
    if init == "auto":
        if weights is not None:
            kind = _weights_kind(weights)
            return InitChoice(kind, weights, f"starting from {kind} weights {weights}")
        for kind in ("coco", "imagenet"):
            path = find_pretrained(architecture, kind)
            if path is not None:
                return InitChoice(kind, path, f"starting from {kind} weights {path}")
        # Each modality its own synthetic pretraining: never SEM BSE weights for CT slices.
        synthetic = synthetic_init_file(architecture, modality)
        what = "synthetic" if modality == "sem" else f"synthetic {modality}"
        if synthetic.is_file():
            return InitChoice(
                "synthetic",
                synthetic,
                f"no COCO or ImageNet weights for {architecture} in {cache} (no download "
                f"here); starting from olmap's {what} pretraining (--init to choose)",
            )
        return InitChoice(
            "none",
            None,
            f"no COCO, ImageNet or {what} weights for {architecture} (looked in {cache} "
            f"and {WEIGHTS_DIR}); starting from random weights",
        )
    if init in ("coco", "imagenet"):
        path = find_pretrained(architecture, init, weights)
        if path is None:
            spec = ARCHITECTURES[architecture]
            names = [
                Path(str(w.url)).name for w in ((spec.coco,) if init == "coco" else spec.imagenet)
            ]
            raise InputError(
                f"no {init} weights for {architecture}: put {' or '.join(names)} in {cache} "
                "or pass --weights PATH"
            )
        return InitChoice(init, path, f"starting from {init} weights {path}")
    if init == "synthetic":
        path = synthetic_init_file(architecture, modality)
        if not path.is_file():
            available = sorted(p.name for p in WEIGHTS_DIR.glob("*-synthetic.pt"))
            raise InputError(
                f"no synthetic initialisation for {architecture} ({path} missing; "
                f"available: {', '.join(available) or 'none'})"
            )
        what = "synthetic" if modality == "sem" else f"synthetic {modality}"
        return InitChoice("synthetic", path, f"starting from olmap's {what} pretraining {path}")
    if init == "none":
        return InitChoice("none", None, "starting from random weights (--init none)")
    path = Path(init)
    if not path.is_file():
        raise InputError(
            f"--init {init}: not auto, synthetic, coco, imagenet, none or an existing checkpoint"
        )
    return InitChoice("checkpoint", path, f"starting from checkpoint {path}")


def synthetic_init_model(
    class_names: list[str],
    architecture: str = "deeplabv3_mobilenet_v3_large",
    path: Path | None = None,
) -> tuple[Segmenter, ModelMeta]:
    """olmap's shipped synthetic initialisation as a model for ``class_names``, untrained.

    Its phase probabilities are summed into the requested classes (:func:`label_set_groups`):
    ``["unclassified", "olivine"]`` gives a binary olivine model. Used by benchmarks and tests
    of inference that need a model with real, spatially varied predictions. ``path``: another
    pretraining checkpoint of the same kind (e.g. a candidate initialisation).
    """
    path = path or synthetic_init_file(architecture)
    state, init_meta = read_checkpoint(path)
    head = init_meta.head_classes or init_meta.class_names
    meta = ModelMeta(
        architecture,
        list(enumerate(class_names)),
        init_meta.input_mean,
        init_meta.input_std,
        threshold=0.5,
        aux_loss=False,
        decoder=init_meta.decoder,
        head_classes=head,
        head_groups=label_set_groups(class_names, head),
        init=f"synthetic ({path.name}), not fine-tuned",
    )
    model = build_model(meta)
    result = model.load_state_dict(
        {k: v.float() for k, v in state.items() if not k.startswith("net.aux_classifier.")},
        strict=False,
    )
    missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
    if missing or result.unexpected_keys:
        example = (missing or result.unexpected_keys)[0]
        raise InputError(f"{path}: weights do not fit {architecture} (e.g. {example})")
    return model.eval(), meta


def apply_init(model: Segmenter, choice: InitChoice, class_names: list[str]) -> list[str]:
    """Load ``choice``'s weights into ``model``; return the classes matched by name (if any).

    Raises
    ------
    InputError
        If the weights do not belong to ``model``'s architecture.
    """
    if choice.kind in ("coco", "imagenet"):
        load_pretrained(model, choice.kind, choice.path)
        return []
    if choice.kind in ("synthetic", "checkpoint"):
        state, meta = read_checkpoint(choice.path)
        if meta.architecture != model.architecture:
            raise InputError(
                f"{choice.path}: a {meta.architecture} checkpoint cannot start a "
                f"{model.architecture} model; choose architecture {meta.architecture} or "
                "another --init"
            )
        if model.refine is None and any(k.startswith("refine.") for k in state):
            log.warning(
                "%s: its refine decoder is not used (the config says decoder: none)", choice.path
            )
        return transfer_weights(model, state, meta.head_classes or meta.class_names, class_names)
    return []


#: Test-time flips are recommended when they raise the validation IoU by at least this much
#: (they cost 4x the prediction time).
FLIPS_PAY = 0.005


def flip_gain(plain: dict, flipped: dict) -> dict:
    """Validation IoU without and with test-time flips, and whether the flips pay.

    ``plain`` and ``flipped`` are :func:`evaluate_tiles` reports of the same tiles; the IoU is
    the mean over the classes after the background (the mineral of a binary model).
    """

    def iou(report: dict) -> float:
        classes = list(report["overall"]["classes"].values())[1:]
        return float(np.nanmean([c["iou"] for c in classes]))

    before, after = iou(plain), iou(flipped)
    return {"val_iou": before, "val_iou_flips": after, "recommended": after - before >= FLIPS_PAY}


def grouped_head(
    cfg: TrainConfig, choice: InitChoice, class_names: list[str]
) -> tuple[list[str] | None, list[list[int]] | None]:
    """Head classes and groups for ``head: init`` (:func:`label_set_groups`), else Nones.

    ``head: init`` needs an olmap checkpoint with at least three classes, among them every
    label class but the background; otherwise the model gets new class layers, with a warning
    (a config such as cpu-quick then still fine-tunes a binary checkpoint or COCO weights).
    """
    if cfg.head == "new":
        return None, None
    names = {"none": "random weights", "coco": "COCO weights", "imagenet": "ImageNet weights"}
    if choice.kind not in ("synthetic", "checkpoint"):
        log.warning("head: init: %s have no classes to keep; new class layers", names[choice.kind])
        return None, None
    _, meta = read_checkpoint(choice.path)
    head = meta.head_classes or meta.class_names
    try:
        if len(head) < 3:
            raise InputError(f"it has only the classes {', '.join(head)}")
        return head, label_set_groups(class_names, head)
    except InputError as exc:
        log.warning("head: init: %s: %s; new class layers", choice.path, exc)
        return None, None


def model_for(
    cfg: TrainConfig,
    n_classes: int,
    mean: float,
    std: float,
    *,
    head_classes: list[str] | None = None,
    head_groups: list[list[int]] | None = None,
) -> Segmenter:
    """A fresh :class:`Segmenter` as ``cfg`` describes it (architecture, heads, BatchNorm)."""
    return Segmenter(
        cfg.architecture,
        n_classes,
        mean=mean,
        std=std,
        aux_loss=cfg.aux_loss,
        bn_momentum=cfg.bn_momentum,
        decoder=cfg.decoder,
        aspp_pooling=cfg.aspp_pooling,
        head_classes=head_classes,
        head_groups=head_groups,
    )


def fresh_modules(model: Segmenter, choice: InitChoice) -> tuple[str, ...] | None:
    """Prefixes of the parameters that ``choice`` leaves at their fresh initialisation, besides
    the class layers; None when everything is fresh (random weights: nothing to probe).

    Linear probing trains these with the class layers: frozen at random they would feed the
    class layers meaningless features.
    """
    if choice.kind == "none":
        return None
    fresh = []
    if choice.kind == "imagenet":  # backbone only: the ASPP head is new
        fresh += ["net.classifier.", "net.aux_classifier."]
    source: set[str] = set()
    if choice.kind in ("synthetic", "checkpoint"):
        source = set(read_checkpoint(choice.path)[0])
        if model.net.aux_classifier is not None and not any(
            k.startswith("net.aux_classifier.") for k in source
        ):
            fresh.append("net.aux_classifier.")
    if model.refine is not None and not any(k.startswith("refine.") for k in source):
        fresh.append("refine.")
    return tuple(fresh)


@dataclass
class TrainReport:
    """What ``olmap train`` did and wrote."""

    model: Path
    curves_csv: Path
    curves_png: Path
    init: InitChoice
    matched_classes: list[str]
    fit: FitResult
    metrics: dict
    n_train: int
    n_val: int
    class_names: list[str] | None = None
    head_classes: list[str] | None = None
    head_groups: list[list[int]] | None = None


def train_from_dataset(
    dataset_dir: str | Path,
    cfg: TrainConfig,
    out: str | Path,
    *,
    weights: Path | None = None,
    overwrite: bool = False,
    on_init: Callable[[InitChoice], None] | None = None,
    on_step: Callable[[int, float, float], None] | None = None,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    on_resume: Callable[[int], None] | None = None,
    on_domain: Callable[[DomainShift], None] | None = None,
    stop: StopFlag | None = None,
) -> TrainReport:
    """Fine-tune a model on a dataset folder and write the checkpoint and its curves.

    Parameters
    ----------
    dataset_dir : path
        Folder written by ``olmap dataset`` (train and val splits needed; test optional).
    cfg : TrainConfig
        Training settings.
    out : path
        Checkpoint to write (``.pt``).
    weights : path, optional
        torchvision weights file (see :func:`resolve_init`).
    overwrite : bool
        Replace an existing checkpoint and curves.
    on_init, on_step, on_epoch, on_resume : callables, optional
        Progress reporting.
    on_domain : callable, optional
        Called before training with the validation tiles' grey-level distance from the
        training tiles (:func:`olmap.segment.domain.domain_shift`).
    stop : StopFlag, optional
        Interrupt request (the run then resumes from its last epoch when started again).
    """
    out = Path(out)
    init_file = Path(cfg.init) if Path(cfg.init).is_file() else None
    with claim_outputs(
        output_paths(out)[:2] + (out,),
        inputs=[Path(dataset_dir), weights, init_file],
        overwrite=overwrite,
    ):
        return _train_from_dataset(
            Path(dataset_dir), cfg, out, weights, on_init, on_step, on_epoch, on_resume, stop,
            on_domain,
        )  # fmt: skip


def _train_from_dataset(
    dataset_dir: Path,
    cfg: TrainConfig,
    out: Path,
    weights: Path | None,
    on_init: Callable[[InitChoice], None] | None,
    on_step: Callable[[int, float, float], None] | None,
    on_epoch: Callable[[EpochRecord], None] | None,
    on_resume: Callable[[int], None] | None,
    stop: StopFlag | None,
    on_domain: Callable[[DomainShift], None] | None = None,
) -> TrainReport:
    curves_csv, curves_png, resume_file = output_paths(out)
    resolve_device(cfg.device)  # an unavailable device fails before any work
    ds = open_tile_dataset(dataset_dir)
    names = [name for _, name in ds.model_classes]
    train_ids, val_ids, test_ids = ds.split("train"), ds.split("val"), ds.split("test")
    if not train_ids or not val_ids:
        raise InputError(
            f"{ds.folder}: needs train and val tiles (has {len(train_ids)} train, "
            f"{len(val_ids)} val); mark sessions as val in sessions.csv"
        )
    if cfg.steps_per_epoch is None and len(train_ids) < 2:
        raise InputError(f"{ds.folder}: one training tile; set steps_per_epoch to draw crops")
    labelled = [t for t in val_ids if (np.asarray(ds.labels[t]) != IGNORE_INDEX).any()]
    if not labelled:
        raise InputError(
            f"{ds.folder}: the val tiles have no labelled pixel; nothing to validate on"
        )
    mean, std = input_statistics(ds.meta, ds.image, train_ids)
    # At most 256 tiles of each split: enough for percentiles, bounded in memory.
    t_pick, v_pick = np.asarray(train_ids)[:256], np.asarray(val_ids)[:256]
    shift = domain_shift(
        ds.image[t_pick],
        ds.labels[t_pick],
        ds.image[v_pick],
        ds.labels[v_pick],
        dict(ds.model_classes),
    )
    if on_domain is not None:
        on_domain(shift)
    percentiles = grey_percentiles(np.asarray(ds.image[np.asarray(train_ids)[:256]]))
    choice = resolve_init(cfg.init, cfg.architecture, weights, ds.modality)
    if on_init is not None:
        on_init(choice)
    head_classes, head_groups = grouped_head(cfg, choice, list(names))
    torch.manual_seed(cfg.seed)  # the fresh weights (all, or the class layers) start the same
    model = model_for(
        cfg, len(names), mean, std, head_classes=head_classes, head_groups=head_groups
    )
    matched = apply_init(model, choice, list(names))
    fresh = fresh_modules(model, choice)
    if fresh is None and cfg.probe_epochs:
        log.warning("random weights: no linear probing (probe_epochs %d ignored)", cfg.probe_epochs)
        cfg = cfg.model_copy(update={"probe_epochs": 0})
    elif head_groups is not None and not fresh and cfg.probe_epochs:
        # The init's own class layers and nothing new: nothing to probe (docs/segmentation.md).
        log.info("head: init: no linear probing (the class layers are the initialisation's)")
        cfg = cfg.model_copy(update={"probe_epochs": 0})
    train = ds.samples("train", cfg, train=True, fill=mean, sd=std)
    val = ds.samples("val", cfg, train=False)
    # The resume fingerprint: the data (rebuilt in place -> other sizes/times) and the start.
    stamps = {
        p.name: list(file_stamp(p))
        for p in (ds.image_file, ds.folder / "labels.npy", ds.folder / "manifest.csv")
    }
    job = {"dataset": str(ds.folder.resolve()), "files": stamps, "init": str(choice.path)}
    if head_groups is not None:
        job["head"] = [head_classes, head_groups]
    result = fit(
        model,
        train,
        val,
        cfg,
        list(names),
        resume_file=resume_file,
        job=job,
        on_step=on_step,
        on_epoch=on_epoch,
        on_resume=on_resume,
        stop=stop,
        probe_also=fresh or (),
    )
    threshold = cfg.threshold
    val_scores = evaluate_tiles(model, ds, val_ids, threshold)
    selected = cfg.select_threshold and len(names) == 2
    if selected:
        threshold = val_scores["best_threshold"][names[1]]
        if threshold != cfg.threshold:
            val_scores = evaluate_tiles(model, ds, val_ids, threshold)
    metrics = {
        "flips": flip_gain(val_scores, evaluate_tiles(model, ds, val_ids, threshold, flips=True)),
        "domain_shift": asdict(shift),
        "start": result.extra.get("start", {}),
        "best_epoch": result.best_epoch,
        "epochs": len(result.history),
        "stop_reason": result.stop_reason,
        "train_minutes": result.seconds / 60,
        "threshold": threshold,
        "threshold_source": "validation IoU" if selected else "config",
        "val": val_scores,
    }
    if test_ids:
        metrics["test"] = evaluate_tiles(model, ds, test_ids, threshold)
    meta = ModelMeta(
        architecture=cfg.architecture,
        classes=list(ds.model_classes),
        input_mean=mean,
        input_std=std,
        threshold=threshold,
        aux_loss=cfg.aux_loss,
        decoder=cfg.decoder,
        aspp_pooling=cfg.aspp_pooling,
        head_classes=model.head_classes,
        head_groups=model.head_groups,
        init=choice.kind if choice.path is None else f"{choice.kind}:{choice.path.name}",
        train_config=cfg.model_dump(mode="json"),
        metrics=metrics,
        olmap_version=__version__,
        input_dtype=ds.image_dtype,
        input_percentiles=list(percentiles),
    )
    curves = pd.DataFrame([r.row() for r in result.history])
    # The checkpoint and its curves appear together (the claim checked --overwrite).
    with atomic_paths([curves_csv, curves_png, out], overwrite=True) as (csv, png, pt):
        write_table(curves, csv, overwrite=True)
        write_training_curves(curves, png, best_epoch=result.best_epoch)
        save_checkpoint(pt, model.cpu(), meta, overwrite=True)
    resume_file.unlink(missing_ok=True)
    return TrainReport(
        out,
        curves_csv,
        curves_png,
        choice,
        matched,
        result,
        metrics,
        len(train_ids),
        len(val_ids),
        list(names),
        model.head_classes,
        model.head_groups,
    )

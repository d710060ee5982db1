"""Fine-tuning loop: mini-batch SGD/AdamW, validation each epoch, early stopping, resume.

:func:`fit` trains a :class:`~olmap.segment.model.Segmenter` on :class:`TileSamples`, keeps the
weights of the epoch with the lowest validation loss (seed 002 sect. 3.6.2: early termination
on the validation cross-entropy) and stops after ``patience`` epochs without improvement, at
``max_epochs`` or after ``max_minutes``. After every epoch it saves its whole state (weights,
optimiser, history, best weights) to a resume file; running the same job again continues from
there, drawing exactly the samples an uninterrupted run would have drawn.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from olmap.errors import InputError
from olmap.io.outputs import is_write_failure, write_failure
from olmap.io.resume import RunInterrupted, StopFlag
from olmap.segment.config import TrainConfig
from olmap.segment.data import TileSamples
from olmap.segment.infer import resolve_device
from olmap.segment.losses import segmentation_loss
from olmap.segment.metrics import ScoreAccumulator
from olmap.segment.model import CLASS_LAYERS, Segmenter

log = logging.getLogger(__name__)

#: Weight of the auxiliary head's loss (torchvision's segmentation reference recipe).
AUX_WEIGHT = 0.5


@dataclass
class EpochRecord:
    """One row of the training curves."""

    epoch: int
    steps: int
    train_loss: float
    val_loss: float
    val_iou: dict[str, float]
    lr: float
    seconds: float
    probing: bool = False  # linear probing: only the class layers (and fresh modules) trained

    def row(self) -> dict[str, float]:
        out = {
            "epoch": self.epoch,
            "steps": self.steps,
            "train_loss": self.train_loss,
            "val_loss": self.val_loss,
        }
        out.update({f"val_iou_{k}": v for k, v in self.val_iou.items()})
        out.update({"lr": self.lr, "seconds": self.seconds})
        return out


@dataclass
class FitResult:
    """What :func:`fit` did: the curves, the best epoch and why it stopped."""

    history: list[EpochRecord]
    best_epoch: int
    best_val_loss: float
    stop_reason: str
    seconds: float
    resumed_from: int = 0
    extra: dict = field(default_factory=dict)


def split_parameters(model: torch.nn.Module) -> tuple[list, list]:
    """Parameters of the body and of the class layers (``CLASS_LAYERS``) of ``model``."""
    body, heads = [], []
    for name, param in model.named_parameters():
        (heads if name.startswith(CLASS_LAYERS) else body).append(param)
    return body, heads


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD with momentum (the paper) or AdamW, from ``cfg``.

    Two parameter groups, the body then the class layers, so that linear probing
    (``cfg.probe_epochs``) can train the class layers alone at their own rate.
    """
    groups = [{"params": group} for group in split_parameters(model)]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        )
    return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)


def make_scheduler(
    optimizer: torch.optim.Optimizer, cfg: TrainConfig
) -> torch.optim.lr_scheduler.LRScheduler:
    """Per-epoch learning rates: ``probe_lr`` for the class layers during the probing epochs,
    then ``lr``, constant or cosine-decayed to 0 at ``max_epochs`` (counted from epoch 0)."""

    def schedule(epoch: int) -> float:
        if cfg.lr_schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * epoch / cfg.max_epochs))
        return 1.0

    def heads(epoch: int) -> float:
        return cfg.probe_lr / cfg.lr if epoch < cfg.probe_epochs else schedule(epoch)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, [schedule, heads])


def predicted_classes(logits: torch.Tensor, threshold: float) -> torch.Tensor:
    """Class indices from logits: sigmoid >= threshold (binary) or argmax."""
    if logits.shape[1] == 1:
        return (torch.sigmoid(logits[:, 0]) >= threshold).long()
    return logits.argmax(1)


@torch.no_grad()
def validate(
    model: Segmenter,
    samples: TileSamples,
    cfg: TrainConfig,
    device: torch.device,
) -> tuple[float, ScoreAccumulator]:
    """Mean loss and pixel counts of ``model`` (eval mode) on every validation sample."""
    model.eval()
    loader = DataLoader(samples, batch_size=cfg.batch_size, shuffle=False, num_workers=0)
    scores = ScoreAccumulator(model.n_classes)
    total, pixels = 0.0, 0
    for image, target in loader:
        image, target = image.to(device), target.to(device)
        with torch.autocast(device.type, enabled=cfg.amp and device.type == "cuda"):
            logits = model(image)["out"]
        n = int((target != 255).sum())
        if n:
            total += float(segmentation_loss(logits, target, dice_weight=cfg.dice_weight)) * n
            pixels += n
        pred = predicted_classes(logits.float(), cfg.threshold)
        scores.update(target.cpu().numpy(), pred.cpu().numpy())
    return (total / pixels if pixels else float("nan")), scores


def adapt_batchnorm(
    model: Segmenter,
    train: TileSamples,
    val: TileSamples,
    cfg: TrainConfig,
    device: torch.device,
    class_names: list[str],
) -> dict:
    """Re-estimate BatchNorm statistics on the training tiles before any step (AdaBN).

    The re-estimated statistics are kept only when they lower the validation loss: on two
    foreign-look sections (issue 23) they raised it, so the initialisation's own are restored
    there. Returns the validation loss and per-class IoU before (``zero_shot``) and after
    (``batchnorm_adapted``), and which statistics were ``kept``, so the user sees how far
    the initialisation was from their data and how much of the gap the statistics closed.
    """

    def scores() -> dict[str, float]:
        loss, conf = validate(model, val, cfg, device)
        ious = {n: conf.class_scores(i)["iou"] for i, n in enumerate(class_names)}
        return {"val_loss": float(loss), **{f"iou_{n}": float(v) for n, v in ious.items()}}

    before = scores()
    initial = {k: v.detach().clone() for k, v in model.state_dict().items()}
    recalibrate_batchnorm(model, train, cfg, device)
    after = scores()
    kept = "batchnorm_adapted" if after["val_loss"] < before["val_loss"] else "zero_shot"
    if kept == "zero_shot":
        model.load_state_dict(initial)
    return {"zero_shot": before, "batchnorm_adapted": after, "kept": kept}


@torch.no_grad()
def recalibrate_batchnorm(
    model: Segmenter,
    samples: TileSamples,
    cfg: TrainConfig,
    device: torch.device,
    *,
    n_batches: int = 32,
) -> int:
    """Recompute every BatchNorm layer's running statistics for the model's final weights.

    During training the running statistics are a moving average over past weights; when
    the weights still change fast (few steps, or a best epoch picked from the middle) they lag
    behind and eval-mode predictions differ from what training saw (issue 4 measured a
    collapse). Averaging the batch statistics of ``n_batches`` training batches with the final
    weights fixed ("precise BN") removes the lag. Dropout stays off, as at inference.
    Returns the number of batches used.
    """
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return 0
    momenta = [m.momentum for m in norms]
    model.eval()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
        m.train()
    samples.set_epoch(cfg.max_epochs)  # a fixed draw, distinct from every training epoch
    saved = [
        (m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone())
        for m in norms
    ]
    drop_last = len(samples) > cfg.batch_size  # BatchNorm needs > 1 value; keep a short set
    loader = DataLoader(samples, batch_size=cfg.batch_size, shuffle=False, drop_last=drop_last)
    used = 0
    for image, _ in loader:
        if used >= n_batches:
            break
        model(image.to(device))
        used += 1
    for m, momentum, (mean, var, count) in zip(norms, momenta, saved, strict=True):
        m.momentum = momentum
        if used == 0:  # nothing seen: keep the training-time statistics
            m.running_mean.copy_(mean)
            m.running_var.copy_(var)
            m.num_batches_tracked.copy_(count)
    model.eval()
    return used


#: Settings that may change between an interrupted run and its resumption: the time budget
#: (to extend it), DataLoader workers and the device name (they do not change what is drawn).
# adapt_batchnorm acts before the first step only, so a resumed run is the same either way
# (and runs interrupted before the option existed still resume).
RESUMABLE_CHANGES = ("max_minutes", "workers", "device", "adapt_batchnorm")


def _fingerprint(cfg: TrainConfig, device: torch.device, extra: dict) -> str:
    # head: new is left out so that runs interrupted before the option existed still resume.
    config = cfg.model_dump(
        mode="json", exclude=set(RESUMABLE_CHANGES) | ({"head"} if cfg.head == "new" else set())
    )
    return json.dumps({"config": config, "device": device.type, **extra}, sort_keys=True)


def _save_state(path: Path, state: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())  # a resume file must not survive a crash half-written
    except Exception as exc:
        failed = is_write_failure(exc, tmp)  # before the removal frees space
        tmp.unlink(missing_ok=True)
        if failed:
            raise write_failure(path, exc) from exc
        raise
    os.replace(tmp, path)


def _load_state(path: Path, fingerprint: str) -> dict | None:
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated by a crash: start afresh, say so
        log.warning("%s: unreadable resume file ignored (%s)", path, exc)
        return None
    if not isinstance(state, dict) or state.get("fingerprint") != fingerprint:
        log.warning("%s: resume file of another training job ignored", path)
        return None
    return state


def fit(
    model: Segmenter,
    train: TileSamples,
    val: TileSamples,
    cfg: TrainConfig,
    class_names: list[str],
    *,
    resume_file: Path | None = None,
    job: dict | None = None,
    on_step: Callable[[int, float, float], None] | None = None,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    on_resume: Callable[[int], None] | None = None,
    stop: StopFlag | None = None,
    probe_also: tuple[str, ...] = (),
) -> FitResult:
    """Train ``model`` in place; on return it holds the best epoch's weights, in eval mode.

    Parameters
    ----------
    model : Segmenter
        Initialised model (pretrained or not).
    train, val : TileSamples
        Training samples (augmented) and validation samples (not augmented).
    cfg : TrainConfig
        Optimiser, schedule, stopping and device settings.
    class_names : list of str
        Names of the model classes, for the curves.
    resume_file : path, optional
        Where the per-epoch state is kept; an existing file of the same job (``job`` and
        ``cfg`` identical) is resumed.
    job : dict, optional
        JSON-able description of the data, part of the resume fingerprint.
    on_step : callable(step, loss, batch_iou), optional
        Called after every optimiser step (progress display).
    on_epoch : callable(EpochRecord), optional
        Called after every validation.
    on_resume : callable(int), optional
        Called with the number of finished epochs when a resume file is taken up.
    stop : StopFlag, optional
        When set (Ctrl-C, SIGTERM), training stops at the next step and raises
        :class:`RunInterrupted`; the resume file holds the last finished epoch.
    probe_also : tuple of str
        Prefixes of parameters that start fresh (not from the initial weights): they train,
        BatchNorm in training mode, during the linear-probing epochs too.
    """
    device = resolve_device(cfg.device)
    cuda = device.type == "cuda"
    model.to(device)
    if cuda and cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, cfg)
    scheduler = make_scheduler(optimizer, cfg)
    probed = (*CLASS_LAYERS, *probe_also)
    frozen_in_probe = [p for n, p in model.named_parameters() if not n.startswith(probed)]
    fresh_modules = [m for n, m in model.named_modules() if probe_also and n.startswith(probe_also)]
    scaler = torch.amp.GradScaler("cuda", enabled=cuda and cfg.amp)
    fingerprint = _fingerprint(cfg, device, job or {})
    history: list[EpochRecord] = []
    best_state, best_loss, best_epoch, bad_epochs = None, float("inf"), -1, 0
    start_epoch, elapsed = 0, 0.0
    state = _load_state(resume_file, fingerprint) if resume_file is not None else None
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if state["scaler"]:  # empty when saved with AMP off
            scaler.load_state_dict(state["scaler"])
        history = [EpochRecord(**r) for r in state["history"]]
        best_state, best_loss = state["best_state"], float(state["best_loss"])
        best_epoch, bad_epochs = int(state["best_epoch"]), int(state["bad_epochs"])
        start_epoch, elapsed = int(state["epoch"]), float(state["elapsed"])
        if on_resume is not None:
            on_resume(start_epoch)
    positive = 1 if len(class_names) == 2 else None
    budget = cfg.max_minutes * 60 if cfg.max_minutes else float("inf")
    stop_reason = "max_epochs"
    t_start = time.perf_counter() - elapsed
    extra: dict = {}
    if state is None and cfg.adapt_batchnorm:
        extra["start"] = adapt_batchnorm(model, train, val, cfg, device, class_names)
    step = sum(r.steps for r in history)
    try:
        for epoch in range(start_epoch, cfg.max_epochs):
            probing = epoch < cfg.probe_epochs  # linear probing: the class layers alone
            if epoch == cfg.probe_epochs:
                bad_epochs = 0  # fine-tuning gets its full patience; probing never stops early
            if not probing and best_epoch >= 0 and bad_epochs >= cfg.patience:
                stop_reason = "early_stopping"
                break
            # the budget counts the BatchNorm adaptation too, but one epoch is always validated
            if history and time.perf_counter() - t_start >= budget:
                stop_reason = "time_limit"
                break
            torch.manual_seed(cfg.seed * 100_003 + epoch)  # dropout: reproducible per epoch
            train.set_epoch(epoch)
            loader = DataLoader(
                train,
                batch_size=cfg.batch_size,
                shuffle=False,  # the samples draw their own order from (seed, epoch)
                drop_last=len(train) > cfg.batch_size,
                num_workers=cfg.workers,
                pin_memory=cuda,
            )
            for param in frozen_in_probe:
                param.requires_grad_(not probing)
            model.train(not probing)  # probing: BatchNorm statistics and dropout as initialised
            for module in fresh_modules if probing else ():
                module.train()
            losses, steps, t_epoch = [], 0, time.perf_counter()
            for image, target in loader:
                if stop:
                    raise RunInterrupted(
                        f"training stopped at epoch {epoch + 1}; run the same command again to "
                        f"resume from epoch {epoch + 1}"
                    )
                image = image.to(device, non_blocking=True)
                target = target.to(device, non_blocking=True)
                if cuda and cfg.channels_last:
                    image = image.contiguous(memory_format=torch.channels_last)
                with torch.autocast(device.type, enabled=cuda and cfg.amp):
                    out = model(image)
                    loss = segmentation_loss(out["out"], target, dice_weight=cfg.dice_weight)
                    if "aux" in out:
                        aux = segmentation_loss(out["aux"], target, dice_weight=cfg.dice_weight)
                        loss = loss + AUX_WEIGHT * aux
                if not torch.isfinite(loss):
                    raise InputError(
                        f"training diverged at epoch {epoch + 1} (loss {float(loss)}); "
                        "lower the learning rate (lr) in the config"
                    )
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                losses.append(float(loss.detach()))
                steps += 1
                step += 1
                if on_step is not None:
                    batch = ScoreAccumulator(model.n_classes)
                    pred = predicted_classes(out["out"].detach().float(), cfg.threshold)
                    batch.update(target.cpu().numpy(), pred.cpu().numpy())
                    iou = batch.class_scores(positive)["iou"] if positive else np.nan
                    on_step(step, losses[-1], iou)
                if time.perf_counter() - t_start >= budget:
                    break
            val_loss, scores = validate(model, val, cfg, device)
            if not np.isfinite(val_loss):
                raise InputError(
                    f"validation loss is {val_loss} at epoch {epoch + 1}: the validation tiles "
                    "have no labelled pixel, or the model diverged (lower lr)"
                )
            record = EpochRecord(
                epoch=epoch + 1,
                steps=steps,
                train_loss=float(np.mean(losses)) if losses else float("nan"),
                val_loss=val_loss,
                val_iou={n: scores.class_scores(i)["iou"] for i, n in enumerate(class_names)},
                # the class layers' learning rate (the body's, too, after probing)
                lr=float(optimizer.param_groups[1]["lr"]),
                seconds=time.perf_counter() - t_epoch,
                probing=probing,
            )
            scheduler.step()
            history.append(record)
            if val_loss < best_loss:
                best_loss, best_epoch, bad_epochs = val_loss, epoch + 1, 0
                best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            else:
                bad_epochs += 1
            if on_epoch is not None:
                on_epoch(record)
            if resume_file is not None:
                _save_state(
                    resume_file,
                    {
                        "fingerprint": fingerprint,
                        "epoch": epoch + 1,
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(),
                        "scaler": scaler.state_dict(),
                        "history": [r.__dict__ for r in history],
                        "best_state": best_state,
                        "best_loss": best_loss,
                        "best_epoch": best_epoch,
                        "bad_epochs": bad_epochs,
                        "elapsed": time.perf_counter() - t_start,
                    },
                )
        else:
            stop_reason = "max_epochs"
    finally:  # interrupted or not, the caller gets a trainable model back
        for param in frozen_in_probe:
            param.requires_grad_(True)
    if best_state is None:
        raise InputError("training ended before the first validation; raise max_minutes")
    model.load_state_dict(best_state)
    if best_epoch > cfg.probe_epochs:  # a probed-only body keeps the statistics it was probed with
        recalibrate_batchnorm(model, train, cfg, device)
    model.to(memory_format=torch.contiguous_format).eval()
    return FitResult(
        history=history,
        best_epoch=best_epoch,
        best_val_loss=best_loss,
        stop_reason=stop_reason,
        seconds=time.perf_counter() - t_start,
        resumed_from=start_epoch,
        extra=extra,
    )

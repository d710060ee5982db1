"""Train olmap's synthetic initialisation: DeepLabV3 on many synthetic sections.

The paper started from COCO weights (seed 002 sect. 3.6.1); machines without network cannot
fetch them, and from scratch a few CPU minutes are not enough (issue 4). This script trains
DeepLabV3 on BSE of olmap's own synthetic sections (varied seeds, noise and drift) to segment
every phase of the ground truth (epoxy, glass, plagioclase, olivine, clinopyroxene,
orthopyroxene, oxide, spinel, crack), and stores the result in fp16 in the package
(``olmap/segment/weights/<architecture>-synthetic.pt``). ``olmap train --init synthetic`` starts
from it; the class layer is mapped by class name onto the new task.

The exact commands that made the shipped file (four stages, each continuing the last with
``--init``), its seeds, time and figures are in docs/models.md. Usage::

    python tools/pretrain_synthetic.py --out model.pt --init previous.pt \\
        --architecture deeplabv3_mobilenet_v3_large --decoder refine --sections 16 \\
        --size 2048 --epochs 40 --schedule cosine --lr 5e-4 --minutes 75
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

from olmap.io.raster import class_names, raster_info, read_raster
from olmap.segment.checkpoint import ModelMeta, read_checkpoint, save_checkpoint
from olmap.segment.config import AugmentConfig, TrainConfig
from olmap.segment.data import TileSamples
from olmap.segment.job import model_for
from olmap.segment.model import transfer_weights
from olmap.segment.train import fit
from olmap.synth.config import SynthConfig
from olmap.synth.looks import FOREIGN_LOOK_SEEDS, random_look_config
from olmap.synth.section import generate_section

#: Seeds of the pretraining sections; validation uses VAL_SEED. Benchmarks and tests use other
#: seeds (the demo 7, tools/bench_train.py 2026), so they are never seen in pretraining.
FIRST_SEED, VAL_SEED = 1000, 1999


def section_arrays(
    folder: Path, cfg: SynthConfig, standardise: tuple[float, float] | None = None
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Generate one section into ``folder``; return its BSE, truth phases and phase names.

    ``standardise = (mean, sd)``: the BSE is returned as float32 with that mean and sd (a
    random look's 16-bit or low-contrast grey put on one scale, as ``olmap train`` puts a
    user's tiles on one scale with their own mean and sd).
    """
    generate_section(folder, cfg, workers=2)
    bse = read_raster(folder / "bse.tif")[0]
    if standardise is not None:
        b = bse.astype(np.float32)
        bse = (b - b.mean()) / max(float(b.std()), 1e-6) * standardise[1] + standardise[0]
    phases_path = folder / "truth" / "phases.tif"
    phases = read_raster(phases_path)[0]
    names = class_names(raster_info(phases_path))
    shutil.rmtree(folder)  # ~20 MB a section on disk: only the arrays are kept
    return bse, phases, [names[c] for c in sorted(names)]


def varied_config(seed: int, size: int) -> SynthConfig:
    """Section ``seed`` with noise, tile steps and session drift drawn around the defaults."""
    rng = np.random.default_rng(seed)
    return SynthConfig(
        width=size,
        height=size,
        seed=seed,
        sessions=4,
        bse_noise=float(rng.uniform(1.5, 4.5)),
        bse_shot_noise=float(rng.uniform(0.015, 0.05)),
        bse_psf_um=float(rng.uniform(0.3, 0.9)),
        tile_offset_sd=float(rng.uniform(0.5, 2.0)),
        bse_gain_range=(0.9, 1.1),
        bse_offset_range=(-8.0, 8.0),
    )


def section_config(seed: int, size: int, looks: str) -> SynthConfig:
    """The pretraining section ``seed``: the default look's drift and noise varied, or a
    random instrument look (``olmap.synth.looks``; look seed = section seed, never one of
    the foreign-look benchmark's)."""
    cfg = varied_config(seed, size)
    if looks == "random":
        assert seed not in FOREIGN_LOOK_SEEDS
        cfg = random_look_config(cfg, seed)
    return cfg


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--architecture", default="deeplabv3_mobilenet_v3_large")
    parser.add_argument("--decoder", choices=["none", "refine"], default="refine")
    parser.add_argument("--sections", type=int, default=8, help="training sections")
    parser.add_argument("--size", type=int, default=2048, help="section side (px)")
    parser.add_argument("--minutes", type=float, default=50.0, help="training time budget")
    parser.add_argument(
        "--epochs", type=int, default=10_000, help="epochs (of --steps-per-epoch batches)"
    )
    parser.add_argument("--schedule", choices=["constant", "cosine"], default="constant")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--steps-per-epoch", type=int, default=100)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers")
    parser.add_argument(
        "--gen-workers", type=int, default=1, help="processes generating sections in parallel"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--looks",
        choices=["default", "random"],
        default="default",
        help="random: every section (validation too) in its own instrument look, its BSE "
        "standardised to the mean and sd of --init's training tiles (issue 23)",
    )
    parser.add_argument(
        "--init", type=Path, default=None, help="continue from an olmap checkpoint (same classes)"
    )
    args = parser.parse_args()

    torch.set_num_threads(max(torch.get_num_threads(), 1))
    t0 = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="olmap-pretrain-"))
    seeds = [FIRST_SEED + i for i in range(args.sections)]
    standardise = None
    if args.looks == "random":
        if args.init is None:
            raise SystemExit("--looks random continues a model: give --init")
        init_meta = read_checkpoint(args.init)[1]
        standardise = (float(init_meta.input_mean), float(init_meta.input_std))
    try:
        # Sections are independent: on a many-core machine (a lent GPU's host) they are
        # generated in parallel processes; the arrays come back in seed order either way.
        with ProcessPoolExecutor(max_workers=max(args.gen_workers, 1)) as pool:
            futures = [
                pool.submit(
                    section_arrays,
                    work / f"s{seed}",
                    section_config(seed, args.size, args.looks),
                    standardise,
                )
                for seed in [*seeds, VAL_SEED]
            ]
            results = []
            try:
                for seed, future in zip([*seeds, VAL_SEED], futures, strict=True):
                    results.append(future.result())
                    print(f"section {seed}: {time.perf_counter() - t0:.0f} s", flush=True)
            except BaseException:
                pool.shutdown(cancel_futures=True)  # one failed: do not wait for the rest
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    bse_list = [bse for bse, _, _ in results]
    phase_list = [phases for _, phases, _ in results]
    names = results[0][2]
    bse_all, phases_all = np.stack(bse_list), np.stack(phase_list)
    n_train = len(seeds)
    train_ids = list(range(n_train))
    mean = float(bse_all[:n_train].mean()) if standardise is None else standardise[0]
    std = float(bse_all[:n_train].std()) if standardise is None else standardise[1]
    codes = list(range(len(names)))
    cfg = TrainConfig(
        architecture=args.architecture,
        decoder=args.decoder,
        init="none",
        optimizer="adamw",
        lr=args.lr,
        weight_decay=1e-4,
        batch_size=args.batch_size,
        crop=(args.crop, args.crop),
        balanced_crops=0.5,
        steps_per_epoch=args.steps_per_epoch,
        max_epochs=args.epochs,
        lr_schedule=args.schedule,
        patience=10_000,  # the time budget ends pretraining; the best validation epoch is kept
        max_minutes=args.minutes,
        dice_weight=0.5,
        augment=AugmentConfig(gain_jitter=0.1, offset_jitter=6.0),
        device=args.device,
        workers=args.workers,
        seed=args.seed,
    )
    train = TileSamples(
        bse_all,
        phases_all,
        codes,
        train_ids,
        crop=cfg.crop,
        augment_cfg=cfg.augment,
        balanced=cfg.balanced_crops,
        length=cfg.steps_per_epoch * cfg.batch_size,
        seed=cfg.seed,
        fill=mean,
    )
    # Validation: the held-out section cut into 512 px squares (batches of equal shape).
    side = min(512, args.size)
    corners = [
        (r, c)
        for r in range(0, args.size - side + 1, side)
        for c in range(0, args.size - side + 1, side)
    ]
    val_bse = np.stack([bse_all[n_train, r : r + side, c : c + side] for r, c in corners])
    val_lab = np.stack([phases_all[n_train, r : r + side, c : c + side] for r, c in corners])
    val = TileSamples(val_bse, val_lab, codes, list(range(len(val_bse))), seed=cfg.seed)
    model = model_for(cfg, len(names), mean, std)
    if args.init is not None:
        state, init_meta = read_checkpoint(args.init)
        transfer_weights(model, state, init_meta.head_classes or init_meta.class_names, names)

    def on_epoch(r) -> None:
        ol = r.val_iou.get("olivine", float("nan"))
        print(
            f"epoch {r.epoch}: train {r.train_loss:.4f} val {r.val_loss:.4f} "
            f"olivine IoU {ol:.3f} mIoU {np.nanmean(list(r.val_iou.values())):.3f} "
            f"({time.perf_counter() - t0:.0f} s)",
            flush=True,
        )

    resume = args.out.with_name(args.out.name + ".resume")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result = fit(
        model,
        train,
        val,
        cfg,
        names,
        resume_file=resume,
        job={"sections": seeds},
        on_epoch=on_epoch,
    )
    best = result.history[result.best_epoch - 1]
    meta = ModelMeta(
        architecture=args.architecture,
        classes=[(c, n) for c, n in zip(codes, names, strict=True)],
        input_mean=mean,
        input_std=std,
        threshold=cfg.threshold,
        decoder=args.decoder,
        init="none" if args.init is None else f"checkpoint:{args.init.name}",
        train_config=cfg.model_dump(mode="json"),
        metrics={
            "pretraining": {
                "sections": seeds,
                "validation_section": VAL_SEED,
                "looks": args.looks,
                "size_px": args.size,
                "best_epoch": result.best_epoch,
                "epochs": len(result.history),
                "steps": sum(r.steps for r in result.history),
                "val_loss": best.val_loss,
                "val_iou": best.val_iou,
                "minutes": result.seconds / 60,
                "device": str(next(model.parameters()).device),
                "threads": torch.get_num_threads(),
            }
        },
    )
    save_checkpoint(args.out, model.cpu(), meta, half=True, overwrite=True)
    resume.unlink(missing_ok=True)
    print(json.dumps(meta.metrics, indent=2))
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()

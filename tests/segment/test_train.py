"""Training a tiny model for a few steps on CPU: the loss falls, BatchNorm statistics converge,
checkpoints round-trip, several classes train, and interrupted training resumes exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from olmap.errors import InputError
from olmap.io.raster import read_raster
from olmap.io.resume import RunInterrupted, StopFlag
from olmap.segment.checkpoint import ModelMeta, load_checkpoint, save_checkpoint
from olmap.segment.data import TileSamples, input_statistics, open_tile_dataset
from olmap.segment.infer import predict_proba
from olmap.segment.job import FLIPS_PAY, InitChoice, grouped_head, train_from_dataset
from olmap.segment.model import Segmenter
from olmap.segment.train import adapt_batchnorm, fit, recalibrate_batchnorm
from tests.segment.tiny import tiny_config


def new_model(ds, cfg) -> Segmenter:
    mean, std = input_statistics(ds.meta, ds.image, ds.split("train"))
    torch.manual_seed(0)
    return Segmenter(cfg.architecture, len(ds.model_classes), mean=mean, std=std)


def fit_on(ds, model: Segmenter, cfg, **kwargs):
    """``fit`` on the dataset's train and val samples, with its class names."""
    names = [n for _, n in ds.model_classes]
    return fit(
        model,
        ds.samples("train", cfg, train=True),
        ds.samples("val", cfg, train=False),
        cfg,
        names,
        **kwargs,
    )


@pytest.fixture(scope="module")
def trained(olivine_dataset: Path):
    """A binary model trained for 6 epochs x 10 steps, with its per-step losses."""
    ds = open_tile_dataset(olivine_dataset)
    # torchvision's momentum 0.01: only the recalibration after training makes eval mode right
    cfg = tiny_config(max_epochs=6, bn_momentum=0.01)
    model = new_model(ds, cfg)
    losses: list[float] = []
    result = fit_on(
        ds,
        model,
        cfg,
        on_step=lambda s, loss, iou: losses.append(loss),
    )
    return ds, cfg, model, losses, result


def test_loss_falls(trained) -> None:
    _, _, _, losses, result = trained
    assert len(losses) == 60
    # Epoch means, not 10-step means: single batches of 4 crops range 0.5-2.1, so the
    # 10-step ratio was 0.64-0.77 over seeds and thread counts against a 0.7 threshold (a
    # flaky test). The best later epoch's mean was 0.57-0.70 of the first's.
    epochs = [r.train_loss for r in result.history]
    assert min(epochs[1:]) < 0.8 * epochs[0]
    assert 1 <= result.best_epoch <= 6
    assert result.best_val_loss == min(r.val_loss for r in result.history)


def test_eval_and_train_mode_predictions_agree(trained) -> None:
    """After training, eval-mode predictions (BatchNorm running statistics) must be as good as
    train-mode ones (batch statistics) on training-like data. Trained at torchvision's
    momentum 0.01, the running statistics lag behind the weights and, without the
    recalibration ``fit`` ends with, eval-mode IoU collapses: measured 0.0 against 0.53 here
    (issue 4 saw 0.0 against 0.33)."""
    ds, cfg, model, _, _ = trained
    batch = ds.samples("train", cfg, train=True)
    batch.set_epoch(99)  # training-like samples that training never drew
    images = torch.stack([batch[i][0] for i in range(16)])
    target = torch.stack([batch[i][1] for i in range(16)])
    labelled, olivine = target != 255, target == 1

    def iou(logits: torch.Tensor) -> float:
        pred = logits[:, 0] > 0
        return float((pred & olivine & labelled).sum() / ((pred | olivine) & labelled).sum())

    model.eval()
    with torch.no_grad():
        eval_iou = iou(model(images)["out"])
        for m in model.modules():  # batch statistics, but no dropout
            if isinstance(m, torch.nn.BatchNorm2d):
                m.train()
        train_iou = iou(model(images)["out"])
    model.eval()
    assert train_iou > 0.3
    assert eval_iou > 0.8 * train_iou


def test_checkpoint_round_trips_to_identical_predictions(trained, tmp_path: Path) -> None:
    ds, cfg, model, _, _ = trained
    meta = ModelMeta(
        architecture=cfg.architecture,
        classes=ds.model_classes,
        input_mean=float(model.mean),
        input_std=float(model.std),
        threshold=0.3,
        train_config=cfg.model_dump(mode="json"),
        metrics={"val": {"iou": 0.5}},
    )
    tile = np.asarray(ds.image[ds.split("test")[0]])
    before = predict_proba(model.eval(), tile, window=128)
    path = save_checkpoint(tmp_path / "m.pt", model, meta)
    loaded, loaded_meta = load_checkpoint(path)
    assert np.array_equal(predict_proba(loaded, tile, window=128), before)
    assert loaded_meta.classes == ds.model_classes and loaded_meta.threshold == 0.3
    assert loaded_meta.train_config["architecture"] == cfg.architecture
    assert float(loaded.mean) == pytest.approx(float(model.mean))
    half = save_checkpoint(tmp_path / "half.pt", model, meta, half=True)
    assert half.stat().st_size < 0.6 * path.stat().st_size
    assert np.abs(predict_proba(load_checkpoint(half)[0], tile, window=128) - before).max() < 0.05


def test_four_class_model_trains(section_dir: Path) -> None:
    """Epoxy, glass, olivine and clinopyroxene from the ground truth: a CT-like N-class task."""
    bse = read_raster(section_dir / "bse.tif")[0][None, :512, :512]
    phases = read_raster(section_dir / "truth" / "phases.tif")[0][None, :512, :512]
    codes = [0, 1, 3, 4]  # other phases -> ignored
    cfg = tiny_config(max_epochs=5, crop=(96, 96))
    train = TileSamples(
        bse,
        phases,
        codes,
        [0],
        crop=cfg.crop,
        augment_cfg=cfg.augment,
        balanced=0.5,
        length=80,
        seed=0,
    )
    val = TileSamples(bse, phases, codes, [0])
    torch.manual_seed(0)
    model = Segmenter(cfg.architecture, 4, mean=float(bse.mean()), std=float(bse.std()))
    losses: list[float] = []
    result = fit(
        model,
        train,
        val,
        cfg,
        ["epoxy", "glass", "olivine", "clinopyroxene"],
        on_step=lambda s, loss, iou: losses.append(loss),
    )
    # What holds on any machine. Five tiny epochs on one tile do not converge reliably: the
    # restored best epoch's olivine IoU was 0.19-0.45 over seeds and thread counts (0.19 is
    # "all olivine"), so an IoU threshold here failed by chance (issue: a flaky test).
    # Measured over 6 runs: the loss ratio 0.59-0.76.
    assert np.mean(losses[-8:]) < 0.85 * np.mean(losses[:8])
    prob = predict_proba(model, bse[0], window=256)
    assert prob.shape == (4, 512, 512)
    assert np.allclose(prob.sum(0), 1, atol=1e-4)
    assert set(result.history[0].val_iou) == {"epoxy", "glass", "olivine", "clinopyroxene"}
    assert all(len(r.val_iou) == 4 for r in result.history)


def test_interrupted_training_resumes_exactly(olivine_dataset: Path, tmp_path: Path) -> None:
    ds = open_tile_dataset(olivine_dataset)
    # epoch 1 probes (class layers only), then all: the resume crosses that boundary too
    cfg = tiny_config(max_epochs=3, steps_per_epoch=4, probe_epochs=1)

    def run(stop_at: int | None, resume: Path | None):
        model = new_model(ds, cfg)
        flag = StopFlag()

        def on_step(step, loss, iou):
            if step == stop_at:
                flag.signal = 2  # as if Ctrl-C arrived during step 10 (epoch 3)

        result = fit_on(
            ds,
            model,
            cfg,
            resume_file=resume,
            on_step=on_step,
            stop=flag,
        )
        return model, result

    reference, ref_result = run(None, None)
    resume = tmp_path / "m.pt.resume"
    with pytest.raises(RunInterrupted, match="resume from epoch 3"):
        run(10, resume)
    assert resume.exists()
    resumed, result = run(None, resume)
    assert result.resumed_from == 2
    assert [r.epoch for r in result.history] == [1, 2, 3]
    for (k, a), b in zip(
        reference.state_dict().items(), resumed.state_dict().values(), strict=True
    ):
        assert torch.allclose(a.float(), b.float(), atol=1e-5), k
    assert result.best_val_loss == pytest.approx(ref_result.best_val_loss, rel=1e-5)


def test_recalibration_with_fewer_samples_than_a_batch(olivine_dataset: Path) -> None:
    ds = open_tile_dataset(olivine_dataset)
    cfg = tiny_config(batch_size=8)
    model = new_model(ds, cfg)
    few = TileSamples(ds.image, ds.labels, [0, 1], ds.split("train")[:3])  # 3 < 8
    bn = model.net.backbone["0"][1]
    assert recalibrate_batchnorm(model, few, cfg, torch.device("cpu")) == 1
    assert not torch.equal(bn.running_mean, torch.zeros_like(bn.running_mean))
    assert not model.training and bn.momentum == 0.1


def test_fresh_runs_are_reproducible(olivine_dataset: Path, tmp_path: Path) -> None:
    cfg = tiny_config(max_epochs=1, steps_per_epoch=2)
    states = []
    for name in ("a.pt", "b.pt"):
        torch.manual_seed(len(name) + len(states))  # whatever the global state was before
        train_from_dataset(olivine_dataset, cfg, tmp_path / name)
        states.append(load_checkpoint(tmp_path / name)[0].state_dict())
    for key, value in states[0].items():
        assert torch.equal(value, states[1][key]), key


def test_early_stopping_and_time_limit(olivine_dataset: Path) -> None:
    ds = open_tile_dataset(olivine_dataset)
    cfg = tiny_config(max_epochs=50, patience=1, steps_per_epoch=2, lr=0.05)
    result = fit_on(
        ds,
        new_model(ds, cfg),
        cfg,
    )
    assert result.stop_reason == "early_stopping" and len(result.history) < 50
    assert len(result.history) - result.best_epoch == 1  # patience 1: one epoch without gain
    cfg = tiny_config(max_epochs=50, patience=50, max_minutes=0.001)
    result = fit_on(
        ds,
        new_model(ds, cfg),
        cfg,
    )
    assert result.stop_reason == "time_limit" and len(result.history) == 1


def test_aux_head_trains_and_is_saved(olivine_dataset: Path, tmp_path: Path) -> None:
    cfg = tiny_config(max_epochs=1, steps_per_epoch=2, aux_loss=True)
    train_from_dataset(olivine_dataset, cfg, tmp_path / "aux.pt")
    model, meta = load_checkpoint(tmp_path / "aux.pt")
    assert meta.aux_loss and model.net.aux_classifier is not None
    # test-time flips: the validation IoU with and without, and whether they pay
    flips = meta.metrics["flips"]
    assert flips["val_iou"] == meta.metrics["val"]["overall"]["classes"]["olivine"]["iou"]
    assert flips["recommended"] == (flips["val_iou_flips"] - flips["val_iou"] >= FLIPS_PAY)


def test_refine_decoder_trains_and_round_trips(olivine_dataset: Path, tmp_path: Path) -> None:
    cfg = tiny_config(max_epochs=1, steps_per_epoch=3, decoder="refine")
    train_from_dataset(olivine_dataset, cfg, tmp_path / "refine.pt")
    model, meta = load_checkpoint(tmp_path / "refine.pt")
    assert meta.decoder == "refine" and model.refine is not None
    assert model.refine.out.weight.abs().sum() > 0  # trained away from its zero start
    tile = np.asarray(open_tile_dataset(olivine_dataset).image[0])
    before = predict_proba(model, tile, window=128)
    again, _ = load_checkpoint(save_checkpoint(tmp_path / "again.pt", model, meta))
    assert np.array_equal(predict_proba(again, tile, window=128), before)


def test_cosine_schedule_decays_per_epoch(olivine_dataset: Path) -> None:
    ds = open_tile_dataset(olivine_dataset)
    cfg = tiny_config(max_epochs=2, steps_per_epoch=1, lr_schedule="cosine")
    result = fit_on(
        ds,
        new_model(ds, cfg),
        cfg,
    )
    assert [r.lr for r in result.history] == pytest.approx([1e-3, 0.5e-3])


def test_linear_probing_trains_the_class_layers_alone_first(olivine_dataset: Path) -> None:
    """LP-FT: during the probing epoch the body (weights and BatchNorm statistics) does not
    move and the class layers learn at probe_lr; afterwards everything trains at lr."""
    ds = open_tile_dataset(olivine_dataset)
    # without the BatchNorm adaptation, which moves the statistics once before probing
    cfg = tiny_config(
        max_epochs=2, steps_per_epoch=2, probe_epochs=1, probe_lr=5e-3, adapt_batchnorm=False
    )
    model = new_model(ds, cfg)
    snapshots = [{k: v.clone() for k, v in model.state_dict().items()}]
    fit_on(
        ds,
        model,
        cfg,
        on_epoch=lambda r: snapshots.append({k: v.clone() for k, v in model.state_dict().items()}),
    )
    start, probed, tuned = snapshots
    body = ["net.backbone.0.0.weight", "net.backbone.0.1.running_mean", "net.classifier.1.weight"]
    head = "net.classifier.4.weight"
    assert all(torch.equal(start[k], probed[k]) for k in body)
    assert not torch.equal(start[head], probed[head])
    assert not any(torch.equal(probed[k], tuned[k]) for k in body)
    assert all(p.requires_grad for p in model.parameters())  # handed back trainable


def test_probing_never_stops_early_and_fresh_modules_train(olivine_dataset: Path) -> None:
    """Probing epochs that do not improve (a tiny probe_lr) do not trigger early stopping;
    fine-tuning then gets its full patience. A fresh decoder trains during probing."""
    ds = open_tile_dataset(olivine_dataset)
    cfg = tiny_config(
        max_epochs=5,
        steps_per_epoch=1,
        probe_epochs=3,
        probe_lr=1e-12,
        patience=1,
        decoder="refine",
    )
    mean, std = input_statistics(ds.meta, ds.image, ds.split("train"))
    torch.manual_seed(0)
    model = Segmenter(cfg.architecture, 2, mean=mean, std=std, decoder="refine")
    before = model.refine.fuse[0][0].weight.clone()
    after_probing: list[torch.Tensor] = []

    def on_epoch(record) -> None:
        if record.epoch == 1:
            after_probing.append(model.refine.fuse[0][0].weight.clone())

    result = fit_on(
        ds,
        model,
        cfg,
        on_epoch=on_epoch,
        probe_also=("refine.",),
    )
    assert [r.probing for r in result.history][:4] == [True, True, True, False]
    assert len(result.history) >= 4
    assert not torch.equal(after_probing[0], before)  # the fresh decoder learnt while probing


def test_interrupted_probing_hands_back_a_trainable_model(olivine_dataset: Path) -> None:
    ds = open_tile_dataset(olivine_dataset)
    cfg = tiny_config(max_epochs=3, steps_per_epoch=2, probe_epochs=2)
    model = new_model(ds, cfg)
    flag = StopFlag()

    def on_step(step, loss, iou):
        flag.signal = 2  # Ctrl-C during the first (probing) epoch

    with pytest.raises(RunInterrupted):
        fit_on(
            ds,
            model,
            cfg,
            on_step=on_step,
            stop=flag,
        )
    assert all(p.requires_grad for p in model.parameters())


def test_probing_learning_rates_are_recorded(olivine_dataset: Path) -> None:
    ds = open_tile_dataset(olivine_dataset)
    cfg = tiny_config(
        max_epochs=3, steps_per_epoch=1, probe_epochs=1, probe_lr=5e-3, lr_schedule="cosine"
    )
    result = fit_on(
        ds,
        new_model(ds, cfg),
        cfg,
    )
    assert [r.lr for r in result.history] == pytest.approx([5e-3, 0.75e-3, 0.25e-3])


def test_flip_averaging_is_the_mean_of_the_flipped_predictions(trained) -> None:
    ds, cfg, _, _, _ = trained
    # An untrained model: its predictions are not flip-symmetric on any machine (a trained
    # one that collapsed to "no olivine" everywhere made the last assertion fail by chance).
    torch.manual_seed(0)
    model = new_model(ds, cfg)
    tile = np.asarray(ds.image[ds.split("test")[0]], dtype=np.float32)
    # Batch-norm statistics of this tile (untouched ones flatten the output to a constant)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None
    with torch.no_grad():
        model.train()(torch.from_numpy(np.stack([tile, tile.T]))[:, None])
    model.eval()
    views = [(lambda a: a), np.fliplr, np.flipud, lambda a: a[::-1, ::-1]]
    expected = np.mean(
        [f(predict_proba(model, np.ascontiguousarray(f(tile)), window=128)[0]) for f in views],
        axis=0,
    )
    got = predict_proba(model, tile, window=128, flips=True)[0]
    assert np.allclose(got, expected, atol=1e-5)
    assert not np.allclose(got, predict_proba(model, tile, window=128)[0], atol=1e-3)


def test_threshold_selected_on_validation_tiles(olivine_dataset: Path, tmp_path: Path) -> None:
    cfg = tiny_config(max_epochs=1, steps_per_epoch=3, select_threshold=True)
    report = train_from_dataset(olivine_dataset, cfg, tmp_path / "t.pt")
    _, meta = load_checkpoint(tmp_path / "t.pt")
    sweep = report.metrics["val"]["overall"]["threshold_sweep"]["olivine"]
    best = max(r["iou"] for r in sweep)
    chosen = next(r for r in sweep if r["threshold"] == meta.threshold)
    assert chosen["iou"] == best and report.metrics["threshold"] == meta.threshold
    assert report.metrics["val"]["threshold"] == meta.threshold


def test_head_init_trains_the_initialisations_own_classes(
    olivine_dataset: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """head: init keeps a multi-phase head; olivine = its olivine, the rest = the others."""
    phases = ["epoxy", "olivine", "clinopyroxene", "glass"]
    torch.manual_seed(8)
    source = Segmenter("deeplabv3_mobilenet_v3_large", 4, mean=90.0, std=30.0)
    meta = ModelMeta(source.architecture, list(enumerate(phases)), 90.0, 30.0)
    init = save_checkpoint(tmp_path / "phases.pt", source, meta)
    cfg = tiny_config(max_epochs=2, steps_per_epoch=2, init=str(init), head="init", probe_epochs=1)
    report = train_from_dataset(olivine_dataset, cfg, tmp_path / "g.pt")
    assert not any(r.probing for r in report.fit.history)  # nothing new to probe
    model, meta = load_checkpoint(tmp_path / "g.pt")
    assert meta.head_classes == phases and meta.head_groups == [[0, 2, 3], [1]]
    assert model.binary and model.net.classifier[4].out_channels == 4
    assert not torch.equal(model.net.classifier[4].weight, source.net.classifier[4].weight)
    tile = np.asarray(open_tile_dataset(olivine_dataset).image[0])
    prob = predict_proba(model, tile, window=128)
    assert prob.shape == (1, *tile.shape) and 0 <= prob.min() and prob.max() <= 1
    again, _ = load_checkpoint(save_checkpoint(tmp_path / "again.pt", model, meta))
    assert np.array_equal(predict_proba(again, tile, window=128), prob)
    # A model trained this way starts the next one: its head classes, not its task's.
    cfg = tiny_config(max_epochs=1, steps_per_epoch=1, init=str(tmp_path / "g.pt"), head="init")
    train_from_dataset(olivine_dataset, cfg, tmp_path / "g2.pt")
    assert load_checkpoint(tmp_path / "g2.pt")[1].head_classes == phases
    # Binary or random starts have no phases to keep: new class layers, said.
    binary = Segmenter(source.architecture, 2)
    meta = ModelMeta(source.architecture, [(0, "unclassified"), (1, "olivine")], 90.0, 30.0)
    choice = InitChoice("checkpoint", save_checkpoint(tmp_path / "b.pt", binary, meta), "")
    cfg = tiny_config(head="init")
    assert grouped_head(cfg, choice, ["unclassified", "olivine"]) == (None, None)
    assert "it has only the classes unclassified, olivine; new class layers" in caplog.text
    choice = InitChoice("checkpoint", init, "")
    assert grouped_head(cfg, choice, ["unclassified", "garnet"]) == (None, None)
    assert "garnet are not among the initialisation's classes" in caplog.text
    none = InitChoice("none", None, "random weights")
    assert grouped_head(cfg, none, ["unclassified", "olivine"]) == (None, None)
    assert "random weights have no classes to keep" in caplog.text


def test_unknown_label_codes_are_refused_when_the_dataset_opens(
    olivine_dataset: Path, tmp_path: Path
) -> None:
    """Once found only after an epoch of training."""
    import shutil

    ds = shutil.copytree(olivine_dataset, tmp_path / "ds")
    labels = np.load(ds / "labels.npy")
    labels[3, :5, :7] = 7  # dataset.json lists 0 and 1 (255 = ignore)
    np.save(ds / "labels.npy", labels)
    with pytest.raises(InputError, match=r"labels\.npy: label code 7 on 35 pixels is not among"):
        open_tile_dataset(ds)


def test_batchnorm_is_adapted_to_the_new_data_before_training(trained) -> None:
    """AdaBN: before the first step the BatchNorm statistics are re-estimated on the user's
    training tiles, so statistics from another domain (here: shifted running means and
    variances, as when the initialisation saw another instrument) leave no trace: the same
    weights score the same after the adaptation whatever statistics they came with, while
    their zero-shot scores (reported too) differ."""
    import copy

    ds, cfg, model, _, _ = trained
    foreign = copy.deepcopy(model)
    for m in foreign.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean += 2.0 * m.running_var.sqrt()
            m.running_var *= 9.0
    cfg1 = cfg.model_copy(update={"max_epochs": 1, "steps_per_epoch": 1, "lr": 1e-12})
    start = fit_on(ds, foreign, cfg1).extra["start"]
    own = fit_on(ds, copy.deepcopy(model), cfg1).extra["start"]
    assert start["zero_shot"] != own["zero_shot"]
    assert start["batchnorm_adapted"] == pytest.approx(own["batchnorm_adapted"], rel=1e-4)
    assert start["batchnorm_adapted"] != start["zero_shot"]
    off = fit_on(ds, copy.deepcopy(model), cfg1.model_copy(update={"adapt_batchnorm": False}))
    assert "start" not in off.extra


def test_batchnorm_adaptation_is_kept_only_when_the_validation_loss_falls(trained) -> None:
    """The re-estimated statistics replace the incoming ones only when they lower the
    validation loss; otherwise the model is handed back exactly as it came."""
    import copy

    ds, cfg, model, _, _ = trained
    names = [n for _, n in ds.model_classes]
    train, val = ds.samples("train", cfg, train=True), ds.samples("val", cfg, train=False)
    kept = set()
    for shift, scale in ((0.0, 1.0), (2.0, 9.0), (-1.0, 0.25)):
        m = copy.deepcopy(model)
        for bn in m.modules():
            if isinstance(bn, torch.nn.BatchNorm2d):
                bn.running_mean += shift * bn.running_var.sqrt()
                bn.running_var *= scale
        before = {k: v.clone() for k, v in m.state_dict().items()}
        start = adapt_batchnorm(m, train, val, cfg, torch.device("cpu"), names)
        fell = start["batchnorm_adapted"]["val_loss"] < start["zero_shot"]["val_loss"]
        assert start["kept"] == ("batchnorm_adapted" if fell else "zero_shot")
        unchanged = all(torch.equal(before[k], v) for k, v in m.state_dict().items())
        assert unchanged == (not fell)
        kept.add(start["kept"])
    assert kept == {"batchnorm_adapted", "zero_shot"}  # both branches were exercised

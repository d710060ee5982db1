"""The model factory and its starting points: torchvision's weights API with files the tests
write into a temporary torch cache, olmap's synthetic initialisation, and clear refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision.models as tvm
import torchvision.models.segmentation as tvs

from olmap.errors import InputError
from olmap.segment.checkpoint import ModelMeta, load_checkpoint, save_checkpoint
from olmap.segment.job import (
    InitChoice,
    apply_init,
    fresh_modules,
    resolve_init,
    synthetic_init_file,
)
from olmap.segment.model import (
    Segmenter,
    cached_weights_file,
    label_set_groups,
    transfer_weights,
)

MOBILENET = "deeplabv3_mobilenet_v3_large"


@pytest.fixture
def torch_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty torch hub cache; no synthetic initialisation either."""
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    monkeypatch.setattr("olmap.segment.job.WEIGHTS_DIR", tmp_path / "no-weights")
    yield tmp_path / "hub" / "checkpoints"
    torch.hub.set_dir(old)


@pytest.mark.parametrize(("n_classes", "outputs"), [(2, 1), (4, 4)])
def test_one_grey_channel_in_n_classes_out(n_classes: int, outputs: int) -> None:
    model = Segmenter(MOBILENET, n_classes, mean=100.0, std=20.0).eval()
    with torch.no_grad():
        logits = model(torch.full((2, 1, 70, 90), 100.0))["out"]
    assert logits.shape == (2, outputs, 70, 90)
    assert model.binary == (n_classes == 2)
    assert float(model.mean) == 100.0 and float(model.std) == 20.0
    assert all(m.momentum == 0.1 for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))


def test_coco_weights_from_the_torch_cache(torch_cache: Path) -> None:
    torch.manual_seed(1)
    coco = tvs.deeplabv3_mobilenet_v3_large(
        weights=None, weights_backbone=None, num_classes=21, aux_loss=True
    )
    path = cached_weights_file(tvs.DeepLabV3_MobileNet_V3_Large_Weights.COCO_WITH_VOC_LABELS_V1)
    assert path.parent == torch_cache
    torch.save(coco.state_dict(), path)
    choice = resolve_init("auto", MOBILENET)
    assert (choice.kind, choice.path) == ("coco", path)
    model = Segmenter(MOBILENET, 2)
    head_before = model.net.classifier[4].weight.clone()
    apply_init(model, choice, ["unclassified", "olivine"])
    assert torch.equal(model.net.backbone["0"][0].weight, coco.backbone["0"][0].weight)
    assert torch.equal(
        model.net.classifier[0].project[0].weight, coco.classifier[0].project[0].weight
    )
    assert torch.equal(model.net.classifier[4].weight, head_before)  # COCO's 21 classes: not ours


def test_imagenet_backbone_from_a_weights_file(torch_cache: Path, tmp_path: Path) -> None:
    torch.manual_seed(2)
    backbone = tvm.mobilenet_v3_large(weights=None)
    path = tmp_path / "mobilenet_imagenet.pth"
    # Third-party files often lack BatchNorm step counters; they are not needed.
    state = {k: v for k, v in backbone.state_dict().items() if "num_batches_tracked" not in k}
    torch.save(state, path)
    choice = resolve_init("auto", MOBILENET, weights=path)
    assert choice.kind == "imagenet"
    model = Segmenter(MOBILENET, 3)
    apply_init(model, choice, ["a", "b", "c"])
    assert torch.equal(
        model.net.backbone["4"].block[0][0].weight, backbone.features[4].block[0][0].weight
    )
    with pytest.raises(InputError, match="not imagenet weights for deeplabv3_resnet50"):
        apply_init(Segmenter("deeplabv3_resnet50", 2), choice, ["a", "b"])


def test_missing_or_bad_weights_are_said_not_silent(torch_cache: Path, tmp_path: Path) -> None:
    choice = resolve_init("auto", MOBILENET)
    assert choice.kind == "none" and "no COCO, ImageNet or synthetic weights" in choice.note
    with pytest.raises(InputError, match=r"no imagenet weights .* mobilenet_v3_large-"):
        resolve_init("imagenet", MOBILENET)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"\x00" * 100)
    with pytest.raises(InputError, match=r"junk\.pth: not a readable PyTorch weights file"):
        resolve_init("auto", MOBILENET, weights=junk)
    with pytest.raises(InputError, match="not auto, synthetic"):
        resolve_init("cocoa", MOBILENET)


def test_synthetic_init_maps_the_class_layer_by_name(
    torch_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A multi-phase source starts a binary olivine model: logit = w_ol - mean(w_others)."""
    monkeypatch.setattr("olmap.segment.job.WEIGHTS_DIR", tmp_path)
    phases = ["epoxy", "glass", "olivine", "clinopyroxene"]
    torch.manual_seed(3)
    source = Segmenter(MOBILENET, 4, mean=80.0, std=30.0)
    meta = ModelMeta(MOBILENET, list(enumerate(phases)), 80.0, 30.0)
    save_checkpoint(synthetic_init_file(MOBILENET), source, meta, half=True)
    choice = resolve_init("auto", MOBILENET)
    assert choice.kind == "synthetic" and "no COCO or ImageNet weights" in choice.note
    # A CT model starts from the CT pretraining, never from the SEM one, and says which.
    ct = resolve_init("auto", MOBILENET, modality="ct")
    assert (ct.kind, ct.path) == ("none", None) and "synthetic ct weights" in ct.note
    with pytest.raises(InputError, match=r"ct-synthetic\.pt missing"):
        resolve_init("synthetic", MOBILENET, modality="ct")
    ct_file = synthetic_init_file(MOBILENET, "ct")
    save_checkpoint(ct_file, source, meta, half=True)
    ct = resolve_init("auto", MOBILENET, modality="ct")
    assert ct.path == ct_file != choice.path and "synthetic ct pretraining" in ct.note
    target = Segmenter(MOBILENET, 2, mean=70.0, std=25.0)
    assert apply_init(target, choice, ["unclassified", "olivine"]) == ["olivine"]
    w = source.net.classifier[4].weight.half().float()
    expected = w[2] - w[[0, 1, 3]].mean(0)
    assert torch.allclose(target.net.classifier[4].weight[0], expected, atol=1e-6)
    assert float(target.mean) == 70.0  # the new data's normalisation is kept
    body = source.net.backbone["0"][0].weight.half().float()
    assert torch.equal(target.net.backbone["0"][0].weight, body)
    with pytest.raises(InputError, match="cannot start a deeplabv3_resnet50 model"):
        apply_init(Segmenter("deeplabv3_resnet50", 2), choice, ["unclassified", "olivine"])


def test_transfer_keeps_named_rows_for_multi_class_targets() -> None:
    torch.manual_seed(4)
    source = Segmenter(MOBILENET, 3)
    target = Segmenter(MOBILENET, 3)
    fresh = target.net.classifier[4].weight[1].clone()
    matched = transfer_weights(
        target, source.state_dict(), ["bg", "olivine", "cpx"], ["bg", "pore", "olivine"]
    )
    assert matched == ["bg", "olivine"]
    assert torch.equal(target.net.classifier[4].weight[2], source.net.classifier[4].weight[1])
    assert torch.equal(target.net.classifier[4].weight[1], fresh)  # "pore": unknown, untouched


def test_aux_head_starts_fresh_from_a_source_without_one() -> None:
    torch.manual_seed(5)
    source = Segmenter(MOBILENET, 2)
    target = Segmenter(MOBILENET, 2, aux_loss=True)
    assert transfer_weights(target, source.state_dict(), ["bg", "olivine"], ["bg", "olivine"]) == [
        "olivine"
    ]
    assert torch.equal(target.net.classifier[4].weight, source.net.classifier[4].weight)
    assert target.net.aux_classifier is not None


def test_a_new_refine_decoder_starts_with_the_plain_models_predictions() -> None:
    """The decoder's last layer starts at zero: DeepLabV3 weights keep their predictions."""
    torch.manual_seed(6)
    phases = ["epoxy", "glass", "olivine"]
    plain = Segmenter(MOBILENET, 3, mean=90.0, std=30.0).eval()
    refined = Segmenter(MOBILENET, 3, mean=90.0, std=30.0, decoder="refine", aux_loss=True)
    assert transfer_weights(refined, plain.state_dict(), phases, phases) == phases
    image = torch.rand(2, 1, 75, 98) * 200  # odd sizes: every stage rounds differently
    with torch.no_grad():
        out = refined.eval()(image)
        assert torch.equal(out["out"], plain(image)["out"])
    assert out["aux"].shape == out["out"].shape == (2, 3, 75, 98)
    resnet = Segmenter("deeplabv3_resnet50", 2, decoder="refine").eval()
    with torch.no_grad():
        assert resnet(image)["out"].shape == (2, 1, 75, 98)
    with pytest.raises(InputError, match="unknown decoder 'unet'"):
        Segmenter(MOBILENET, 2, decoder="unet")


def test_refine_decoder_draws_detail_finer_than_the_output_stride() -> None:
    """A pattern of 2 px cells is invisible at DeepLabV3-MobileNet's 1/16 output resolution;
    the decoder's full-resolution layer resolves it (measured over three seeds after 60
    steps: IoU >= 0.999 against <= 0.003)."""
    gen = torch.Generator().manual_seed(7)
    cells = torch.rand(16, 1, 32, 32, generator=gen) < 0.4
    target = cells.repeat_interleave(2, 2).repeat_interleave(2, 3)  # 2 x 2 px cells, 64 px
    image = 100 + 40 * target.float() + 5 * torch.randn(target.shape, generator=gen)

    def trained_iou(decoder: str) -> float:
        torch.manual_seed(8)
        model = Segmenter(MOBILENET, 2, mean=116.0, std=20.0, decoder=decoder)
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        for step in range(60):
            batch = slice(4 * (step % 4), 4 * (step % 4) + 4)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                model(image[batch])["out"], target[batch].float()
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            pred = model.train()(image[:8])["out"] > 0  # batch statistics: no recalibration
        truth = target[:8]
        return float((pred & truth).sum() / (pred | truth).sum())

    plain, refined = trained_iou("none"), trained_iou("refine")
    assert refined > 0.9
    assert plain < 0.5


def test_fresh_modules_are_those_the_init_lacks(tmp_path: Path) -> None:
    """Linear probing trains them too; with random weights there is nothing to probe."""
    plain = tmp_path / "plain.pt"
    meta = ModelMeta(MOBILENET, [(0, "bg"), (1, "olivine")], 0.0, 1.0)
    save_checkpoint(plain, Segmenter(MOBILENET, 2), meta)
    refined = Segmenter(MOBILENET, 2, decoder="refine", aux_loss=True)
    from_plain = InitChoice("checkpoint", plain, "")
    assert fresh_modules(refined, from_plain) == ("net.aux_classifier.", "refine.")
    assert fresh_modules(Segmenter(MOBILENET, 2), from_plain) == ()
    assert fresh_modules(refined, InitChoice("none", None, "")) is None
    imagenet = fresh_modules(Segmenter(MOBILENET, 2), InitChoice("imagenet", plain, ""))
    assert imagenet == ("net.classifier.", "net.aux_classifier.")


def test_a_decoder_left_unused_is_said(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "refined.pt"
    meta = ModelMeta(MOBILENET, [(0, "bg"), (1, "olivine")], 0.0, 1.0, decoder="refine")
    save_checkpoint(path, Segmenter(MOBILENET, 2, decoder="refine"), meta)
    apply_init(Segmenter(MOBILENET, 2), InitChoice("checkpoint", path, ""), ["bg", "olivine"])
    assert "refine decoder is not used" in caplog.text


def test_label_set_groups_give_the_background_what_no_class_names() -> None:
    phases = ["epoxy", "glass", "olivine", "clinopyroxene", "crack"]
    assert label_set_groups(["unclassified", "olivine"], phases) == [[0, 1, 3, 4], [2]]
    assert label_set_groups(["unclassified", "olivine", "clinopyroxene"], phases) == [
        [0, 1, 4],
        [2],
        [3],
    ]
    assert label_set_groups(["epoxy", "olivine"], phases) == [[0, 1, 3, 4], [2]]
    with pytest.raises(InputError, match="garnet are not among"):
        label_set_groups(["unclassified", "olivine", "garnet"], phases)
    with pytest.raises(InputError, match="no class of the initialisation is left"):
        label_set_groups(["unclassified", "a", "b"], ["a", "b"])


@pytest.mark.parametrize("targets", [["unclassified", "olivine"], ["bg", "olivine", "cpx"]])
def test_grouped_head_outputs_the_summed_probabilities(targets: list[str]) -> None:
    """Label-set merging: the model's classes are sums of its head's softmax probabilities."""
    torch.manual_seed(6)
    head = ["epoxy", "olivine", "cpx", "glass"]
    plain = Segmenter(MOBILENET, 4, mean=90.0, std=30.0, decoder="refine").eval()
    groups = label_set_groups(targets, head)
    grouped = Segmenter(
        MOBILENET,
        len(targets),
        mean=90.0,
        std=30.0,
        decoder="refine",
        head_classes=head,
        head_groups=groups,
    ).eval()
    assert transfer_weights(grouped, plain.state_dict(), head, targets) == head
    image = torch.rand(2, 1, 64, 64) * 200
    with torch.no_grad():
        p_head = plain.probabilities(plain(image)["out"])
        p = grouped.probabilities(grouped(image)["out"])
    expected = torch.stack([p_head[:, g].sum(1) for g in groups], 1)
    if grouped.binary:
        assert p.shape == (2, 1, 64, 64)
        expected = expected[:, 1:]
    assert torch.allclose(p, expected, atol=1e-6)


def test_grouped_heads_must_partition_the_head() -> None:
    for groups in ([[0], [1]], [[0, 1], [1, 2]], [[0, 1, 2], []], [1, [0, 2]], [["x"], [0]]):
        with pytest.raises(InputError, match="do not split"):
            Segmenter(MOBILENET, 2, head_classes=["a", "b", "c"], head_groups=groups)
    with pytest.raises(InputError, match="at least 3 classes"):
        Segmenter(MOBILENET, 2, head_classes=["a", "b"], head_groups=[[0], [1]])


def test_local_aspp_pooling_sees_its_neighbourhood_only(tmp_path: Path) -> None:
    """Global image pooling makes every output depend on the whole input; a k x k window of
    feature cells (``aspp_pooling``) only on the cells within k // 2, with the same weights
    (the init loads into either), and the checkpoint keeps the choice."""
    torch.manual_seed(0)
    features = torch.randn(1, 960, 12, 12)
    changed = features.clone()
    changed[..., 6:, 6:] += 5.0  # cells at least 6 from the corner (0, 0)
    branches = {}
    for k in (0, 5):
        torch.manual_seed(1)
        model = Segmenter(MOBILENET, 4, aspp_pooling=k).eval()
        pool = model.net.classifier[0].convs[-1]
        with torch.no_grad():
            branches[k] = (pool(features), pool(changed))
        assert branches[k][0].shape == (1, 256, 12, 12)
    assert not torch.allclose(branches[0][0][..., 0, 0], branches[0][1][..., 0, 0])
    assert torch.equal(branches[5][0][..., :3, :3], branches[5][1][..., :3, :3])
    assert not torch.equal(branches[5][0][..., 4:, 4:], branches[5][1][..., 4:, 4:])

    glob = Segmenter(MOBILENET, 4)
    local = Segmenter(MOBILENET, 4, aspp_pooling=5)
    local.load_state_dict(glob.state_dict())  # no parameter added or removed
    meta = ModelMeta(MOBILENET, [(1, "a"), (2, "b"), (3, "c"), (4, "d")], 0.0, 1.0)
    meta.aspp_pooling = 5
    path = save_checkpoint(tmp_path / "m.pt", local.eval(), meta)
    loaded, loaded_meta = load_checkpoint(path)
    assert loaded_meta.aspp_pooling == 5 and loaded.aspp_pooling == 5
    image = torch.rand(1, 1, 96, 96)
    with torch.no_grad():
        assert torch.allclose(loaded(image)["out"], local(image)["out"], atol=1e-5)
    with pytest.raises(InputError, match="odd"):
        Segmenter(MOBILENET, 4, aspp_pooling=4)

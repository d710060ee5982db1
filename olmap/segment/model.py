"""The segmentation model: torchvision DeepLabV3 on one grey channel, N classes.

:class:`Segmenter` wraps a torchvision DeepLabV3 so that callers pass raw grey values
``(B, 1, H, W)`` and receive logits ``(B, K, H, W)``: it normalises with statistics of the
training tiles (stored as buffers, so they travel inside every checkpoint) and replicates the
channel three times, as the paper feeds BSE into a network pretrained on RGB images (seed 002
sect. 3.6.1). With two classes (background + one mineral) the model has one output, the logit
of the mineral, trained with binary cross-entropy like the paper's; with more, one output per
class and softmax.

Starting points (:func:`pretrained_state`): COCO_WITH_VOC_LABELS weights of the whole
DeepLabV3 or ImageNet weights of its backbone, through torchvision's weights API, read from the
local torch cache or a file the user gives; torchvision's downloader is never called (olmap
runs without network).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision.models as tvm
import torchvision.models.segmentation as tvs
from torch import nn

from olmap.errors import InputError, InputFileNotFoundError, first_line

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ArchitectureSpec:
    """How to build one DeepLabV3 variant and where its pretrained weights come from."""

    builder: object
    coco: object  # torchvision WeightsEnum member of the whole segmentation model
    imagenet: tuple[object, ...]  # backbone classification weights, preferred first
    backbone_prefix: str  # prefix of backbone keys in the classification model's state dict
    low_level: tuple[str, int]  # backbone layer at 1/4 resolution and its channels (decoder)


ARCHITECTURES: dict[str, ArchitectureSpec] = {
    "deeplabv3_resnet50": ArchitectureSpec(
        tvs.deeplabv3_resnet50,
        tvs.DeepLabV3_ResNet50_Weights.COCO_WITH_VOC_LABELS_V1,
        (tvm.ResNet50_Weights.IMAGENET1K_V1, tvm.ResNet50_Weights.IMAGENET1K_V2),
        "",
        ("layer1", 256),
    ),
    "deeplabv3_resnet101": ArchitectureSpec(
        tvs.deeplabv3_resnet101,
        tvs.DeepLabV3_ResNet101_Weights.COCO_WITH_VOC_LABELS_V1,
        (tvm.ResNet101_Weights.IMAGENET1K_V1, tvm.ResNet101_Weights.IMAGENET1K_V2),
        "",
        ("layer1", 256),
    ),
    "deeplabv3_mobilenet_v3_large": ArchitectureSpec(
        tvs.deeplabv3_mobilenet_v3_large,
        tvs.DeepLabV3_MobileNet_V3_Large_Weights.COCO_WITH_VOC_LABELS_V1,
        (
            tvm.MobileNet_V3_Large_Weights.IMAGENET1K_V1,
            tvm.MobileNet_V3_Large_Weights.IMAGENET1K_V2,
        ),
        "features.",
        ("3", 24),
    ),
}

#: Index of the last (class) convolution in torchvision's ``DeepLabHead`` / ``FCNHead``.
HEAD_KEYS = ("classifier.4.", "aux_classifier.4.")
#: Keys of every layer with one output per class, in a Segmenter's state dict.
CLASS_LAYERS = ("net.classifier.4.", "net.aux_classifier.4.", "refine.out.")
#: Decoders: "none" (torchvision's DeepLabV3) or "refine" (:class:`RefineDecoder`).
DECODERS = ("none", "refine")


def _conv_bn_relu(c_in: int, c_out: int, kernel: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class RefineDecoder(nn.Module):
    """Correction of upsampled DeepLabV3 logits from 1/4- and full-resolution detail.

    The 256 ASPP features (1/8 or 1/16 resolution) and the low-level backbone features (1/4)
    are reduced to 32 channels each, fused by two 3x3 convolutions at 1/4 resolution, then
    8 of the fused channels are upsampled to full resolution, joined by the normalised grey
    image and passed through one 3x3 convolution, so that thin dark cracks (1-2 px) can be cut
    out of a crystal. The output layer is zero-initialised: a new decoder changes nothing.
    Measured on 2 CPU threads (MobileNetV3, ``tools/bench_decoder.py``): +27 % time per training
    step (batch of 8 x 256² px), +35 % inference time.

    Parameters
    ----------
    low_channels : int
        Channels of the low-level backbone features.
    n_outputs : int
        Logits per pixel (as the DeepLabV3 head).
    """

    def __init__(self, low_channels: int, n_outputs: int) -> None:
        super().__init__()
        self.context = _conv_bn_relu(256, 32, 1)
        self.low = _conv_bn_relu(low_channels, 32, 1)
        self.fuse = nn.Sequential(_conv_bn_relu(64, 32, 3), _conv_bn_relu(32, 8, 3))
        self.full = _conv_bn_relu(9, 8, 3)
        self.out = nn.Conv2d(8, n_outputs, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(
        self, features: torch.Tensor, low: torch.Tensor, grey: torch.Tensor
    ) -> torch.Tensor:
        """Logit correction ``(B, K, H, W)`` at the resolution of ``grey`` ``(B, 1, H, W)``."""
        context = F.interpolate(
            self.context(features), size=low.shape[-2:], mode="bilinear", align_corners=False
        )
        fused = self.fuse(torch.cat([context, self.low(low)], dim=1))
        fused = F.interpolate(fused, size=grey.shape[-2:], mode="bilinear", align_corners=False)
        return self.out(self.full(torch.cat([fused, grey], dim=1)))


def n_outputs(n_classes: int) -> int:
    """Model outputs for ``n_classes`` classes: one logit for a binary task, else one each."""
    if n_classes < 2:
        raise InputError(f"a segmentation model needs at least 2 classes, got {n_classes}")
    return 1 if n_classes == 2 else n_classes


def label_set_groups(target_classes: list[str], head_classes: list[str]) -> list[list[int]]:
    """Which classes of a multi-class head make up each target class (label-set merging).

    A target class takes the head class of the same name; the first target class (the
    background, e.g. "unclassified") also takes every head class no target class names. With
    a head of the nine synthetic phases and the targets ``["unclassified", "olivine"]``, olivine
    is the head's olivine and the background is the other eight phases.

    Parameters
    ----------
    target_classes : list of str
        Class names of the task, the background first.
    head_classes : list of str
        Class names of the head's outputs.

    Returns
    -------
    list of list of int
        For each target class, the indices of its head classes (a partition of the head).

    Raises
    ------
    InputError
        If a target class other than the background has no head class of its name, or the
        background is left with none.
    """
    index = {name: i for i, name in enumerate(head_classes)}
    missing = [n for n in target_classes[1:] if n not in index]
    if missing:
        raise InputError(
            f"classes {', '.join(missing)} are not among the initialisation's classes "
            f"({', '.join(head_classes)})"
        )
    groups = [[index[n]] if n in index else [] for n in target_classes]
    claimed = {i for g in groups for i in g}
    groups[0] += [i for i in range(len(head_classes)) if i not in claimed]
    if not groups[0]:
        raise InputError(
            f"no class of the initialisation is left for the background {target_classes[0]!r}"
        )
    return groups


class Segmenter(nn.Module):
    """DeepLabV3 on raw single-channel images.

    Parameters
    ----------
    architecture : str
        Key of :data:`ARCHITECTURES`.
    n_classes : int
        Classes including the background (2 = binary: one output channel).
    mean, std : float
        Grey-value statistics of the training tiles, for input normalisation.
    aux_loss : bool
        Build torchvision's auxiliary FCN head (used in training only).
    bn_momentum : float
        Momentum of every BatchNorm layer (see ``TrainConfig.bn_momentum``).
    decoder : {"none", "refine"}
        "refine" adds :class:`RefineDecoder` (full-resolution logits; see the module notes).
    aspp_pooling : int
        The ASPP's image-pooling branch: 0 pools the whole input (torchvision's DeepLabV3);
        ``k > 0`` averages a ``k`` x ``k`` window of feature cells around each position
        (cells of 16 px for MobileNetV3, 8 px for ResNet-50), so that a prediction depends on
        its surroundings only, not on how large the window or slice it was cut from is. The
        same weights either way.
    head_classes, head_groups : optional
        A head with one logit per ``head_classes`` (e.g. the nine phases of the synthetic
        initialisation) whose probabilities are summed into the ``n_classes`` classes,
        ``head_groups[k]`` listing the head classes of class ``k`` (:func:`label_set_groups`).
        The outputs are then the logits of those sums (log-sum-exp per group; binary: class 1
        against class 0), so training, losses and inference see an ordinary ``n_classes``
        model, while the head keeps distinctions the labels do not make.
    """

    def __init__(
        self,
        architecture: str,
        n_classes: int,
        *,
        mean: float = 0.0,
        std: float = 1.0,
        aux_loss: bool = False,
        bn_momentum: float = 0.1,
        decoder: str = "none",
        aspp_pooling: int = 0,
        head_classes: list[str] | None = None,
        head_groups: list[list[int]] | None = None,
    ) -> None:
        super().__init__()
        if architecture not in ARCHITECTURES:
            raise InputError(
                f"unknown architecture {architecture!r}; choose one of {', '.join(ARCHITECTURES)}"
            )
        if decoder not in DECODERS:
            raise InputError(f"unknown decoder {decoder!r}; choose one of {', '.join(DECODERS)}")
        if not std > 0:
            raise InputError(f"input standard deviation must be positive, got {std}")
        self.architecture = architecture
        self.n_classes = n_classes
        self.decoder = decoder
        self.head_classes: list[str] | None = None
        self.head_groups: list[list[int]] | None = None
        outputs = n_outputs(n_classes)
        if head_classes is not None or head_groups is not None:
            self.head_groups = _checked_head_groups(n_classes, head_classes, head_groups)
            self.head_classes = [str(c) for c in head_classes or []]
            outputs = len(self.head_classes)
        spec = ARCHITECTURES[architecture]
        self.net = spec.builder(
            weights=None, weights_backbone=None, num_classes=outputs, aux_loss=aux_loss
        )
        self.aspp_pooling = int(aspp_pooling)
        if self.aspp_pooling and (self.aspp_pooling < 0 or self.aspp_pooling % 2 == 0):
            raise InputError(f"aspp_pooling must be 0 or an odd window, got {aspp_pooling}")
        if self.aspp_pooling:
            # ASPPPooling = [pool, conv, BN, ReLU] then resize to the input: a window that
            # keeps the size makes the resize a no-op (count_include_pad=False: border cells
            # average the cells they have, not zero padding).
            k = self.aspp_pooling
            self.net.classifier[0].convs[-1][0] = nn.AvgPool2d(
                k, 1, k // 2, count_include_pad=False
            )
        self.refine: RefineDecoder | None = None
        if decoder == "refine":
            self.low_level_layer = spec.low_level[0]
            self.refine = RefineDecoder(spec.low_level[1], outputs)
        for module in self.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.momentum = bn_momentum
        self.register_buffer("mean", torch.tensor(float(mean)))
        self.register_buffer("std", torch.tensor(float(std)))

    @property
    def binary(self) -> bool:
        """True when the model has one output: the logit of class 1 against class 0."""
        return self.n_classes == 2

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits ``{"out": (B, K, H, W)}`` (plus ``"aux"`` in training with the aux head).

        ``image`` holds raw grey values, shape ``(B, 1, H, W)``.
        """
        grey = (image - self.mean) / self.std
        x = grey.expand(-1, 3, -1, -1)
        if self.refine is None:
            return {k: self.grouped(v) for k, v in self.net(x).items()}
        # torchvision's DeepLabV3.forward, with the low-level features kept for the decoder
        taps = {str(k): v for k, v in self.net.backbone.return_layers.items()}
        taps[self.low_level_layer] = "low"
        features = {}
        for name, layer in self.net.backbone.items():
            x = layer(x)
            if name in taps:
                features[taps[name]] = x
        head = list(self.net.classifier)
        aspp = features["out"]
        for layer in head[:-1]:
            aspp = layer(aspp)
        size = image.shape[-2:]
        coarse = F.interpolate(head[-1](aspp), size=size, mode="bilinear", align_corners=False)
        result = {"out": coarse + self.refine(aspp, features["low"], grey)}
        if self.net.aux_classifier is not None:
            aux = self.net.aux_classifier(features["aux"])
            result["aux"] = F.interpolate(aux, size=size, mode="bilinear", align_corners=False)
        return {k: self.grouped(v) for k, v in result.items()}

    def grouped(self, head_logits: torch.Tensor) -> torch.Tensor:
        """The model's class logits from the head's (unchanged without ``head_groups``).

        ``softmax`` of the log-sum-exp of each group's logits is the sum of the group's
        probabilities, so a loss on these logits is the loss on the summed probabilities.
        """
        if self.head_groups is None:
            return head_logits
        head_logits = head_logits.float()  # log-sum-exp differences in fp32 under autocast
        logits = torch.cat(
            [torch.logsumexp(head_logits[:, g], dim=1, keepdim=True) for g in self.head_groups],
            dim=1,
        )
        return logits[:, 1:] - logits[:, :1] if self.binary else logits

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Class probabilities ``(B, K', H, W)`` from logits: sigmoid (binary) or softmax."""
        return torch.sigmoid(logits) if self.binary else torch.softmax(logits, dim=1)


def _checked_head_groups(
    n_classes: int, head_classes: list[str] | None, head_groups: list[list[int]] | None
) -> list[list[int]]:
    """The groups of a grouped head as lists of ints, checked to partition the head."""
    if head_classes is None or head_groups is None:
        raise InputError("head_classes and head_groups go together")
    n_head = len(head_classes)
    if n_head < 3:
        raise InputError(f"a grouped head needs at least 3 classes, got {n_head}")
    try:
        groups = [[int(i) for i in g] for g in head_groups]
    except (TypeError, ValueError):
        groups = []
    flat = sorted(i for g in groups for i in g)
    if len(groups) != n_classes or flat != list(range(n_head)) or not all(groups):
        raise InputError(
            f"head groups {head_groups} do not split {n_head} head classes into {n_classes}"
        )
    return groups


# --- pretrained starting points ----------------------------------------------------------------


def cached_weights_file(weights: object) -> Path:
    """Where torch's hub cache keeps the file of a torchvision ``weights`` enum member."""
    name = Path(str(weights.url)).name  # type: ignore[attr-defined]
    return Path(torch.hub.get_dir()) / "checkpoints" / name


def read_state_dict(path: str | Path, what: str) -> dict[str, torch.Tensor]:
    """A state dict from ``path``, loaded with ``weights_only=True``; one-line errors."""
    path = Path(path)
    if not path.is_file():
        raise InputFileNotFoundError(path, what)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InputError(
            f"{path}: not a readable PyTorch weights file ({first_line(exc)})"
        ) from exc
    if isinstance(state, Mapping) and "state_dict" in state and "format" not in state:
        state = state["state_dict"]  # some tools wrap the weights one level down
    if not isinstance(state, Mapping) or not all(
        isinstance(v, torch.Tensor) for v in state.values()
    ):
        raise InputError(f"{path}: not a state dict of tensors ({what})")
    return dict(state)


def find_pretrained(architecture: str, kind: str, weights_file: Path | None = None) -> Path | None:
    """The file of ``kind`` ("coco" or "imagenet") weights: ``weights_file`` or the cache."""
    if weights_file is not None:
        return weights_file
    spec = ARCHITECTURES[architecture]
    candidates = (spec.coco,) if kind == "coco" else spec.imagenet
    for weights in candidates:
        path = cached_weights_file(weights)
        if path.is_file():
            return path
    return None


def load_pretrained(model: Segmenter, kind: str, path: Path) -> int:
    """Load COCO (whole model) or ImageNet (backbone) weights into ``model``.

    The class layers (``classifier.4``, ``aux_classifier.4``) keep their fresh initialisation:
    COCO's 21 classes are not ours. Returns the number of tensors loaded.

    Raises
    ------
    InputError
        If the file does not hold weights of this architecture.
    """
    state = read_state_dict(path, f"{kind} weights")
    if kind == "coco":
        target = model.net
        state = {k: v for k, v in state.items() if not k.startswith(HEAD_KEYS)}
        if not model.net.aux_classifier:
            state = {k: v for k, v in state.items() if not k.startswith("aux_classifier.")}
    else:
        target = model.net.backbone
        prefix = ARCHITECTURES[model.architecture].backbone_prefix
        own = set(target.state_dict())
        state = {k.removeprefix(prefix): v for k, v in state.items()}
        state = {k: v for k, v in state.items() if k in own}  # drop the ImageNet classifier
    return _load_matching(target, state, path, f"{kind} weights for {model.architecture}")


def _fresh_ok(key: str) -> bool:
    """Tensors that may start fresh: class layers, the optional auxiliary head and decoder
    (which starts as a no-op), step counters."""
    if key.startswith("refine."):
        return True
    key = key.removeprefix("net.")
    return key.startswith((*HEAD_KEYS, "aux_classifier.")) or key.endswith("num_batches_tracked")


def _load_matching(module: nn.Module, state: Mapping[str, torch.Tensor], path: Path, what: str):
    own = module.state_dict()
    missing = [k for k in own if k not in state and not _fresh_ok(k)]
    wrong = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    unknown = [k for k in state if k not in own]
    if missing or wrong or unknown:
        example = (missing or wrong or unknown)[0]
        raise InputError(
            f"{path}: not {what} ({len(missing)} missing, {len(wrong)} wrong-shaped, "
            f"{len(unknown)} unexpected tensors, e.g. {example})"
        )
    module.load_state_dict(state, strict=False)
    return len(state)


def transfer_weights(
    model: Segmenter,
    state: Mapping[str, torch.Tensor],
    source_classes: list[str],
    target_classes: list[str],
) -> list[str]:
    """Start ``model`` from another Segmenter's weights; map class layers by class name.

    Everything but the class layers and the input statistics (those of the new data are kept)
    is copied; the architectures must match. A decoder the source lacks starts fresh (as a
    no-op); one the target lacks is dropped. Output channels of classes the source knows by
    name start from the source's: for a binary target from a multi-class source, the logit of
    class ``c`` against the rest is approximated by ``w_c - mean(w_others)``. A grouped head
    (``model.head_classes``) maps its own classes by name. Returns the classes matched by name
    (of the head when it is grouped).

    Raises
    ------
    InputError
        If the weights are not those of ``model``'s architecture.
    """
    own = model.state_dict()
    heads = CLASS_LAYERS
    keep_own = ("mean", "std")
    body = {k: v for k, v in state.items() if not k.startswith(heads) and k not in keep_own}
    missing = [k for k in own if k not in body and k not in keep_own and not _fresh_ok(k)]
    wrong = [k for k, v in body.items() if k in own and own[k].shape != v.shape]
    if missing or wrong:
        raise InputError(
            f"initial weights do not fit {model.architecture} "
            f"({len(missing)} missing, {len(wrong)} wrong-shaped tensors)"
        )
    new_state = {**own, **{k: v for k, v in body.items() if k in own}}
    rows = {name: i for i, name in enumerate(source_classes)}
    if model.head_classes is not None:  # a grouped head: its own classes map by name
        target_classes = model.head_classes
    single = model.binary and model.head_groups is None
    matched: set[str] = set()
    for head in heads:
        w_key, b_key = f"{head}weight", f"{head}bias"
        if w_key not in state or w_key not in own:
            continue
        src_w, src_b = state[w_key].float(), state[b_key].float()
        if len(source_classes) == 2:  # one logit of class 1 vs 0 = rows [0, logit] + constant
            src_w = torch.cat([torch.zeros_like(src_w), src_w])
            src_b = torch.cat([torch.zeros_like(src_b), src_b])
        new_w, new_b = own[w_key].clone(), own[b_key].clone()
        if single:
            name = target_classes[1]
            if name in rows:
                i, others = rows[name], [j for n, j in rows.items() if n != name]
                new_w[0] = src_w[i] - src_w[others].mean(0)
                new_b[0] = src_b[i] - src_b[others].mean(0)
                matched.add(name)
        else:
            for j, name in enumerate(target_classes):
                if name in rows:
                    new_w[j], new_b[j] = src_w[rows[name]], src_b[rows[name]]
                    matched.add(name)
        new_state[w_key], new_state[b_key] = new_w, new_b
    model.load_state_dict(new_state)
    return [name for name in target_classes if name in matched]

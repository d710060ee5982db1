"""Training parameters, validated; defaults are the paper's where it gives one (seed 002)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

#: Backbones of torchvision's DeepLabV3 that olmap builds (``olmap.segment.model``).
Architecture = Literal[
    "deeplabv3_resnet50",  # seed 002 sect. 3.6.1 (the paper's model)
    "deeplabv3_resnet101",
    "deeplabv3_mobilenet_v3_large",  # ~5x faster on CPU, 11 M parameters
]


class AugmentConfig(BaseModel):
    """Online augmentation of training crops."""

    model_config = ConfigDict(extra="forbid")

    rot90: bool = True  # seed 002 sect. 3.6.2: rotation by 0/90/180/270 degrees
    flip_p: float = Field(0.5, ge=0, le=1)  # seed 002 sect. 3.6.2: h and v flips at p = 0.5
    # olmap's addition (off in the paper): BSE brightness/contrast drift between sessions is up
    # to +-6 % in gain (seed 002 sect. 4.2, 5.1.2); jittering the input teaches the model to
    # ignore it. cpu-quick.yaml uses 0.08 and 4 levels.
    gain_jitter: float = Field(0.0, ge=0, lt=1, description="relative sd of BSE gain")
    offset_jitter: float = Field(0.0, ge=0, description="sd of BSE offset (grey levels)")
    # CT (seed 000): noise whose level varies through a scan (a vertical gradient) and ring
    # artefacts (an offset per radius about the rotation axis). Both in grey levels; 0 = off.
    noise_sd: float = Field(0.0, ge=0, description="largest sd of added Gaussian noise")
    ring_sd: float = Field(0.0, ge=0, description="sd of the ring offsets about a random axis")
    # Unit of offset_jitter, noise_sd and ring_sd: grey levels, or the training tiles' grey sd
    # (CT configs: one setting for uint8 and uint16 scans alike).
    grey_unit: Literal["level", "sd"] = "level"

    def in_grey_levels(self, sd: float) -> AugmentConfig:
        """The same augmentation with its grey amounts in grey levels (``sd``: the training
        tiles' grey sd, used when ``grey_unit`` is ``"sd"``).

        Examples
        --------
        >>> AugmentConfig(offset_jitter=0.1, grey_unit="sd").in_grey_levels(50.0).offset_jitter
        5.0
        """
        if self.grey_unit == "level":
            return self
        keys = ("offset_jitter", "noise_sd", "ring_sd")
        return self.model_copy(
            update={k: getattr(self, k) * sd for k in keys} | {"grey_unit": "level"}
        )


class TrainConfig(BaseModel):
    """Everything that defines a training run (stored in the checkpoint).

    ``configs/train/paper.yaml`` and ``configs/train/cpu-quick.yaml`` are instances.
    """

    model_config = ConfigDict(extra="forbid")

    architecture: Architecture = "deeplabv3_resnet50"  # seed 002 sect. 3.6.1
    aux_loss: bool = False  # torchvision's auxiliary FCN head; off = smaller, faster
    # olmap: "refine" adds a light DeepLabV3+-style decoder (full-resolution logits, for small
    # crystals and cracks; olmap.segment.model.RefineDecoder). The paper used none.
    decoder: Literal["none", "refine"] = "none"
    # olmap: the ASPP's image pooling over a k x k window of feature cells instead of the whole
    # crop (0 = whole, torchvision's): training crops and whole-slice prediction then see the
    # same context (olmap.segment.model.Segmenter).
    aspp_pooling: int = Field(0, ge=0)
    init: str = Field(
        "auto",
        description="auto | synthetic | coco | imagenet | none | PATH to an olmap checkpoint",
    )
    # olmap: "init" keeps the class layers of a multi-class initialisation (the synthetic one's
    # nine phases) and trains on the sums of its class probabilities that make up each label
    # class (olivine = its olivine; unclassified = the phases no label class names): the
    # model starts as good as its initialisation and keeps distinctions the labels do not
    # make (clinopyroxene vs the rest). "new": class layers for the label classes, mapped by
    # name from the initialisation where it can. docs/segmentation.md.
    head: Literal["new", "init"] = "new"
    # Loss: pixel-wise BCE for one class against the rest (seed 002 sect. 3.6.2), CE for more.
    dice_weight: float = Field(0.0, ge=0, description="weight of the soft Dice term (0 = off)")
    optimizer: Literal["sgd", "adamw"] = "sgd"  # seed 002 sect. 3.6.2: SGD
    # SGD values of torchvision's segmentation reference recipe (the paper gives none).
    lr: float = Field(0.01, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(1e-4, ge=0)
    # olmap's option: cosine decay of the learning rate to 0 over max_epochs (per epoch).
    lr_schedule: Literal["constant", "cosine"] = "constant"
    # olmap: linear probing before fine-tuning (LP-FT; Kumar et al. 2022, "Fine-tuning can
    # distort pretrained features"). For the first probe_epochs epochs only the class layers
    # train, at probe_lr, with the rest frozen (BatchNorm statistics as initialised); then
    # everything trains at lr. A class layer mapped from another task starts far off (issue 4:
    # the synthetic init's binary olivine logit called every pixel olivine), and full
    # fine-tuning from it distorted the pretrained features.
    probe_epochs: int = Field(0, ge=0)
    probe_lr: float = Field(3e-3, gt=0)
    # torchvision's MobileNetV3 default (0.01) leaves BatchNorm statistics unconverged after a
    # few hundred steps (issue 4: eval-mode IoU 0.0 vs 0.33 in train mode); 0.1 converges.
    bn_momentum: float = Field(0.1, gt=0, le=1)
    # olmap (issue 23): before the first step, re-estimate every BatchNorm layer's statistics
    # on the user's own training tiles (AdaBN, Li et al. 2018, "Adaptive batch normalization
    # for practical domain adaptation"): a pretrained model normalises another instrument's
    # features with its own data's statistics, often most of the domain gap. Kept only when it
    # lowers the validation loss (on two foreign looks it raised it); the validation scores
    # before and after are kept in the checkpoint (metrics.start). Not on resume.
    adapt_batchnorm: bool = True
    # >= 2: the ASPP pooling branch normalises one value per image (BatchNorm needs two).
    batch_size: int = Field(8, ge=2)
    crop: tuple[int, int] | None = Field(
        None, description="random training crop (rows, cols) from each tile; None = whole tile"
    )
    # Fraction of crops centred on a labelled pixel of a rare class: with few steps, olivine
    # (a few % of the area) is otherwise seen too rarely (issue 4, measured before filing).
    balanced_crops: float = Field(0.0, ge=0, le=1)
    steps_per_epoch: int | None = Field(
        None, ge=1, description="batches per epoch; None = one pass over the training tiles"
    )
    max_epochs: int = Field(100, ge=1)
    patience: int = Field(5, ge=1)  # early stopping on validation loss (seed 002 sect. 3.6.2)
    max_minutes: float | None = Field(None, gt=0, description="stop training after this time")
    threshold: float = Field(0.1, gt=0, lt=1)  # dlth, seed 002 sect. 4.1
    # olmap's option: recommend the threshold of the sweep with the best IoU on the validation
    # tiles (binary models) instead of ``threshold``; balanced crops and Dice shift the
    # probabilities, so the paper's 0.1 is not always the best point.
    select_threshold: bool = False
    augment: AugmentConfig = AugmentConfig()
    device: str = "auto"
    amp: bool = True  # mixed precision, CUDA only
    channels_last: bool = True  # CUDA only
    workers: int = Field(0, ge=0, description="DataLoader worker processes")
    seed: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _crop_positive(self) -> TrainConfig:
        if self.crop is not None and min(self.crop) < 32:
            raise ValueError(f"crop {self.crop} is too small (at least 32 x 32 px)")
        if self.probe_epochs >= self.max_epochs:
            raise ValueError(
                f"probe_epochs ({self.probe_epochs}) must be below max_epochs ({self.max_epochs})"
            )
        if self.balanced_crops > 0 and self.steps_per_epoch is None:
            raise ValueError("balanced_crops needs steps_per_epoch (samples are drawn, not listed)")
        if self.aspp_pooling % 2 == 0 and self.aspp_pooling:
            raise ValueError(f"aspp_pooling {self.aspp_pooling}: 0 (whole input) or an odd window")
        return self


#: Output tile side of ``olmap predict`` (px); bands are multiples of it, so each tile is
#: written once.
PREDICT_TILE = 512


class PredictConfig(BaseModel):
    """How ``olmap predict`` runs a model over a mosaic (``olmap.segment.predict``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # seed 002 sect. 3.6.3: windows LW = LH much larger than the training tiles, so few
    # pixels lie near a window border; 2048 px as in shared/CLI.md
    window: int = Field(2048, ge=32)
    # step S < LW so windows overlap (seed 002 sect. 3.6.3); None = window / 2
    stride: int | None = Field(None, ge=1)
    # dlth of a binary model; None = the checkpoint's (seed 002 sect. 4.3 used 0.1)
    threshold: float | None = Field(None, gt=0, lt=1)
    # "uniform": seed 002's mean; "gaussian": olmap's option, window centres weigh more
    blend: Literal["uniform", "gaussian"] = "uniform"
    # rows per band (multiple of 512); None = 4 x window. Windows crossing a band edge are
    # predicted for both bands: about (window - stride) / band extra work; accumulators take
    # band x (block + window) x (P + 1) x 4 bytes
    band: int | None = Field(None, gt=0, multiple_of=PREDICT_TILE)
    batch_size: int = Field(1, ge=1)  # windows per forward pass
    flips: bool = False  # average the four flips of each window (4x the time)
    amp: Literal["fp16", "bf16", "fp32"] = "fp16"  # autocast precision on CUDA
    device: str = "auto"  # auto, cpu, cuda, cuda:N or mps
    # olmap: the BSE's grey scale for the model: None = checked against the training tiles
    # (refused when clearly different), a factor (grey x factor), or "auto" (the image's 1st
    # and 99th percentiles onto the training's); olmap.segment.scale
    bse_scale: float | Literal["auto"] | None = Field(None)
    # olmap: seconds between saves of the finished blocks (their files flushed, the progress
    # file written): a kill -9 or power cut loses at most this much work
    save_every_s: float = Field(20.0, gt=0)

    @field_validator("bse_scale")
    @classmethod
    def _positive_scale(cls, value: float | str | None) -> float | str | None:
        if isinstance(value, int | float) and not (value > 0 and math.isfinite(value)):
            raise ValueError(f"bse_scale must be a positive number or 'auto', got {value}")
        return value

    @model_validator(mode="after")
    def _stride_within_window(self) -> PredictConfig:
        if self.stride is not None and self.stride > self.window:
            raise ValueError(f"stride ({self.stride}) must not exceed the window ({self.window})")
        return self

    @property
    def step(self) -> int:
        """Stride in px (window / 2 unless given)."""
        return self.stride or max(self.window // 2, 1)

    @property
    def band_rows(self) -> int:
        """Rows per band in px."""
        return self.band or _round_up(4 * self.window, PREDICT_TILE)

    @property
    def block_width(self) -> int:
        """Columns finished per step: the stride rounded up to whole output tiles."""
        return _round_up(self.step, PREDICT_TILE)


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def output_paths(out: Path) -> tuple[Path, Path, Path]:
    """The curves table and plot, and the resume file, of a training run writing ``out``."""
    stem = out.with_suffix("")
    return (
        stem.with_name(stem.name + ".curves.csv"),
        stem.with_name(stem.name + ".curves.png"),
        out.with_name(out.name + ".resume"),
    )

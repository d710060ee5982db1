"""Training samples: tiles (or crops of them) with labels, augmented on the fly.

The data are modality-neutral: grey tiles of any image (SEM BSE tiles written by ``olmap
dataset``, CT slices written by ``olmap ct train``) in one dataset folder layout
(:func:`open_tile_dataset`).

Every random choice is drawn from a generator seeded by ``(seed, epoch, sample)``, so a run is
reproducible and resuming at epoch ``e`` draws exactly what an uninterrupted run would have,
with or without DataLoader worker processes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from olmap.core.codes import IGNORE
from olmap.errors import InputError, InputFileNotFoundError
from olmap.io.tilestack import image_file
from olmap.segment.config import AugmentConfig, TrainConfig

#: Label of pixels that count for nothing in loss or metrics (olmap's ignore code).
IGNORE_INDEX = IGNORE


def class_lut(codes: Sequence[int]) -> np.ndarray:
    """Lookup table: label code -> model class index; codes not listed -> ``IGNORE_INDEX``."""
    lut = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    for index, code in enumerate(codes):
        lut[code] = index
    return lut


def augment(
    image: np.ndarray,
    target: np.ndarray,
    rng: np.random.Generator,
    cfg: AugmentConfig,
) -> tuple[np.ndarray, np.ndarray]:
    """Rotate by k x 90°, flip, jitter the gain and offset, add rings and noise to one sample.

    Geometric steps apply to image and target alike; the grey-value jitter
    (``image * gain + offset``, in grey levels), rings and noise to the image only.
    """
    if cfg.rot90:
        k = int(rng.integers(4))
        image, target = np.rot90(image, k), np.rot90(target, k)
    if rng.random() < cfg.flip_p:
        image, target = image[:, ::-1], target[:, ::-1]
    if rng.random() < cfg.flip_p:
        image, target = image[::-1], target[::-1]
    gain = 1.0 + cfg.gain_jitter * rng.standard_normal()
    offset = cfg.offset_jitter * rng.standard_normal()
    image = image * np.float32(gain) + np.float32(offset)
    if cfg.ring_sd > 0:
        image = image + ring_offsets(image.shape, rng, cfg.ring_sd)
    if cfg.noise_sd > 0:  # a noise level of its own per sample, as along a scan's height
        sd = cfg.noise_sd * rng.random()
        image = image + rng.normal(0.0, sd, image.shape).astype(np.float32)
    return image, target


def ring_offsets(shape: tuple[int, int], rng: np.random.Generator, sd: float) -> np.ndarray:
    """Ring artefacts: a grey offset per integer radius about a random centre (the rotation
    axis, inside or outside the crop), as a detector pixel's error draws a ring in a CT slice.

    Examples
    --------
    >>> rings = ring_offsets((64, 64), np.random.default_rng(0), 10.0)
    >>> rings.shape, rings.dtype
    ((64, 64), dtype('float32'))
    """
    h, w = shape
    cy, cx = rng.uniform(-h, 2 * h), rng.uniform(-w, 2 * w)
    yy, xx = np.ogrid[:h, :w]
    radius = np.rint(np.hypot(yy - cy, xx - cx)).astype(np.int64)
    profile = rng.normal(0.0, sd, int(radius.max()) + 1) * (rng.random(int(radius.max()) + 1) < 0.2)
    return profile[radius].astype(np.float32)


def pad_to_square(
    image: np.ndarray, target: np.ndarray, fill: float
) -> tuple[np.ndarray, np.ndarray]:
    """Pad a non-square sample to a square (target padding = ignore) so 90° turns batch."""
    rows, cols = image.shape
    side = max(rows, cols)
    if rows == cols:
        return image, target
    pad = ((0, side - rows), (0, side - cols))
    return (
        np.pad(image, pad, constant_values=fill),
        np.pad(target, pad, constant_values=IGNORE_INDEX),
    )


class TileSamples(Dataset):
    """Training samples from stacks of tiles.

    Parameters
    ----------
    image : array (N, H, W)
        Grey-value tiles (may be a memory map).
    labels : array (N, H, W) of uint8
        Label codes of the same tiles.
    codes : sequence of int
        Label code of each model class, background first.
    tiles : sequence of int
        Which tiles of the stacks to use.
    crop : (rows, cols) or None
        Random crop per sample; None = the whole tile.
    augment_cfg : AugmentConfig or None
        Augmentation; None = samples as stored (validation).
    balanced : float
        Fraction of samples whose crop is centred on a pixel of a non-background class (classes
        drawn uniformly, so rare minerals are seen as often as common ones).
    background : bool
        Class 0 is a background (SEM masks: unclassified) that balanced crops never centre on;
        False when every class is a phase (CT: pores too).
    length : int or None
        Samples per epoch; None = one per tile, in a shuffled order.
    seed : int
        Base seed; see :meth:`set_epoch`.
    fill : float
        Grey value for padding non-square samples before rotation (the training mean).
    """

    def __init__(
        self,
        image: np.ndarray,
        labels: np.ndarray,
        codes: Sequence[int],
        tiles: Sequence[int],
        *,
        crop: tuple[int, int] | None = None,
        augment_cfg: AugmentConfig | None = None,
        balanced: float = 0.0,
        background: bool = True,
        length: int | None = None,
        seed: int = 0,
        fill: float = 0.0,
    ) -> None:
        if len(tiles) == 0:
            raise InputError("no tiles to train or validate on")
        self.image, self.labels = image, labels
        self.lut = class_lut(codes)
        self.tiles = np.asarray(tiles, dtype=np.int64)
        self.crop = crop
        self.augment_cfg = augment_cfg
        self.balanced = balanced
        self.first_centred = 1 if background else 0
        self.length = length
        self.seed, self.epoch, self.fill = seed, 0, fill
        self.tile_shape = tuple(image.shape[1:])
        if crop is not None and (crop[0] > self.tile_shape[0] or crop[1] > self.tile_shape[1]):
            raise InputError(f"crop {crop} is larger than the tiles {self.tile_shape}")
        # Pixel counts of each foreground class per tile, for balanced crops (one pass).
        self.class_counts = np.zeros((len(self.tiles), len(codes)), dtype=np.int64)
        if balanced > 0:
            for i, t in enumerate(self.tiles):
                idx = self.lut[np.asarray(labels[t])]
                self.class_counts[i] = np.bincount(idx[idx != IGNORE_INDEX], minlength=len(codes))

    def set_epoch(self, epoch: int) -> None:
        """Draw the samples of ``epoch`` (call before iterating)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length if self.length is not None else len(self.tiles)

    def _rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, index])

    def _choose(self, index: int, rng: np.random.Generator) -> tuple[int, tuple[int, int] | None]:
        """Tile position in ``self.tiles`` and, for balanced samples, a pixel to centre on."""
        if self.length is None:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.tiles))
            return int(order[index]), None
        fg = self.class_counts[:, self.first_centred :].sum(0)
        if self.balanced > 0 and fg.sum() > 0 and rng.random() < self.balanced:
            present = np.flatnonzero(fg) + self.first_centred
            cls = int(rng.choice(present))
            weights = self.class_counts[:, cls] / self.class_counts[:, cls].sum()
            pos = int(rng.choice(len(self.tiles), p=weights))
            rows, cols = np.nonzero(self.lut[np.asarray(self.labels[self.tiles[pos]])] == cls)
            k = int(rng.integers(len(rows)))
            return pos, (int(rows[k]), int(cols[k]))
        return int(rng.integers(len(self.tiles))), None

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = self._rng(index)
        pos, centre = self._choose(index, rng)
        tile = int(self.tiles[pos])
        image = np.asarray(self.image[tile], dtype=np.float32)
        target = self.lut[np.asarray(self.labels[tile])]
        if self.crop is not None:
            (h, w), (ch, cw) = self.tile_shape, self.crop
            if centre is None:
                r0, c0 = int(rng.integers(h - ch + 1)), int(rng.integers(w - cw + 1))
            else:
                r0 = int(
                    np.clip(centre[0] - ch // 2 + rng.integers(-ch // 4, ch // 4 + 1), 0, h - ch)
                )
                c0 = int(
                    np.clip(centre[1] - cw // 2 + rng.integers(-cw // 4, cw // 4 + 1), 0, w - cw)
                )
            image, target = image[r0 : r0 + ch, c0 : c0 + cw], target[r0 : r0 + ch, c0 : c0 + cw]
        if self.augment_cfg is not None:
            if self.augment_cfg.rot90:
                image, target = pad_to_square(image, target, self.fill)
            image, target = augment(image, target, rng, self.augment_cfg)
        return (
            torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None],
            torch.from_numpy(np.ascontiguousarray(target).astype(np.int64)),
        )


@dataclass
class TileDataset:
    """A dataset folder written by ``olmap dataset`` (see ``olmap.dataset.build``)."""

    folder: Path
    image: np.ndarray
    labels: np.ndarray
    manifest: pd.DataFrame
    classes: dict[int, str]
    meta: dict

    @property
    def image_file(self) -> Path:
        """The grey tile stack: ``image.npy``, or ``bse.npy`` in older folders."""
        return image_file(self.folder)

    @property
    def image_dtype(self) -> str:
        """dtype of the images the tiles were cut from (as stored, or of the stack)."""
        return str(self.meta.get("image_dtype", self.meta.get("bse_dtype", self.image.dtype)))

    @property
    def modality(self) -> str:
        """What the tiles show: ``sem`` (BSE; folders without the key) or ``ct`` (slices)."""
        return str(self.meta.get("modality", "sem"))

    @property
    def model_classes(self) -> list[tuple[int, str]]:
        """(code, name) of each class a model learns: all but ``ignore``, background first."""
        return sorted((c, n) for c, n in self.classes.items() if c != IGNORE_INDEX)

    def split(self, name: str) -> list[int]:
        """Tile ids of one split (``train``, ``val`` or ``test``)."""
        return self.manifest.loc[self.manifest["split"] == name, "tile_id"].astype(int).tolist()

    def samples(
        self, split: str, cfg: TrainConfig, *, train: bool, fill: float = 0.0, sd: float = 1.0
    ) -> TileSamples:
        """Samples of one split: drawn and augmented as ``cfg`` says (``train``), or whole
        tiles as stored (validation). ``fill`` and ``sd``: the training tiles' grey mean (pads
        rotated crops) and sd (the unit of augmentation amounts given in sd)."""
        codes = [c for c, _ in self.model_classes]
        tiles = self.split(split)
        if not train:
            return TileSamples(self.image, self.labels, codes, tiles, seed=cfg.seed)
        length = cfg.steps_per_epoch * cfg.batch_size if cfg.steps_per_epoch else None
        return TileSamples(
            self.image,
            self.labels,
            codes,
            tiles,
            crop=cfg.crop,
            augment_cfg=cfg.augment.in_grey_levels(sd),
            balanced=cfg.balanced_crops,
            background=self.modality != "ct",
            length=length,
            seed=cfg.seed,
            fill=fill,
        )


def open_tile_dataset(folder: str | Path) -> TileDataset:
    """Open a dataset folder, memory-mapping its tile stacks.

    The folder holds ``image.npy`` (or ``bse.npy``) and ``labels.npy``, stacks of N tiles;
    ``manifest.csv`` with one row per tile (columns ``tile_id`` and ``split``; ``session``, a
    grouping for per-group scores, is optional); and ``dataset.json`` (classes, statistics).

    Raises
    ------
    InputError
        If a file is missing or the stacks and manifest disagree.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputFileNotFoundError(folder, "dataset folder")
    images = image_file(folder)
    for path in (images, folder / "labels.npy", folder / "manifest.csv", folder / "dataset.json"):
        if not path.is_file():
            raise InputError(
                f"{folder}: {path.name} missing; make the folder with 'olmap dataset' "
                "or 'olmap ct train'"
            )
    try:
        meta = json.loads((folder / "dataset.json").read_text())
        classes = {int(k): str(v) for k, v in meta["classes"].items()}
        image = np.load(images, mmap_mode="r")
        labels = np.load(folder / "labels.npy", mmap_mode="r")
        manifest = pd.read_csv(folder / "manifest.csv")
    except (ValueError, KeyError, OSError) as exc:
        raise InputError(f"{folder}: unreadable dataset ({exc})") from exc
    if image.ndim != 3 or image.shape != labels.shape or len(manifest) != len(image):
        raise InputError(
            f"{folder}: {images.name} {image.shape}, labels.npy {labels.shape} and manifest.csv "
            f"({len(manifest)} rows) disagree"
        )
    if not {"tile_id", "split"} <= set(manifest.columns):
        raise InputError(f"{folder}/manifest.csv: needs columns tile_id and split")
    if "session" not in manifest.columns:
        manifest["session"] = "all"
    if sum(c != IGNORE_INDEX for c in classes) < 2:
        raise InputError(f"{folder}: needs at least two classes (background and one more)")
    _check_label_codes(folder, labels, classes)
    return TileDataset(folder, image, labels, manifest, classes, meta)


def _check_label_codes(folder: Path, labels: np.ndarray, classes: Mapping[int, str]) -> None:
    """Refuse label codes that dataset.json does not list (found now, not after an epoch).

    One pass over the memory-mapped stack, tile by tile (a histogram of uint8 codes).
    """
    if labels.dtype != np.uint8:
        raise InputError(f"{folder}/labels.npy: {labels.dtype} codes; olmap writes uint8")
    seen = np.zeros(256, np.int64)
    for tile in labels:
        seen += np.bincount(np.asarray(tile).ravel(), minlength=256)
    unknown = [c for c in np.flatnonzero(seen) if int(c) not in classes and c != IGNORE_INDEX]
    if unknown:
        listed = ", ".join(f"{c}={n}" for c, n in sorted(classes.items()))
        raise InputError(
            f"{folder}/labels.npy: label code {int(unknown[0])} on {int(seen[unknown[0]]):,} "
            f"pixels is not among the classes of dataset.json ({listed})"
        )


def input_statistics(meta: Mapping, image: np.ndarray, tiles: Sequence[int]) -> tuple[float, float]:
    """Mean and sd of the training tiles' grey values (from dataset.json when recorded:
    ``train_image_mean``/``_std``, or ``train_bse_*`` in older folders)."""
    for key in ("train_image", "train_bse"):
        if f"{key}_mean" in meta and f"{key}_std" in meta:
            return float(meta[f"{key}_mean"]), max(float(meta[f"{key}_std"]), 1e-6)
    sample = np.asarray(image[np.asarray(tiles)[:256]], dtype=np.float64)
    return float(sample.mean()), max(float(sample.std()), 1e-6)

"""The dataset folder: today's layout and the one of olmap before the CT mode."""

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from olmap.errors import InputError
from olmap.segment.data import input_statistics, open_tile_dataset


def _as_old_folder(src: Path, dst: Path) -> Path:
    """A copy of ``src`` as olmap wrote it before the CT mode: bse.npy, bse_* keys."""
    shutil.copytree(src, dst)
    (dst / "image.npy").rename(dst / "bse.npy")
    meta = json.loads((dst / "dataset.json").read_text())
    for new, old in (("image_dtype", "bse_dtype"), ("train_image_mean", "train_bse_mean")):
        meta[old] = meta.pop(new)
    meta["train_bse_std"] = meta.pop("train_image_std")
    (dst / "dataset.json").write_text(json.dumps(meta))
    return dst


def test_old_folder_loads_the_same(olivine_dataset: Path, tmp_path: Path) -> None:
    new = open_tile_dataset(olivine_dataset)
    old = open_tile_dataset(_as_old_folder(olivine_dataset, tmp_path / "old"))
    assert old.image_file.name == "bse.npy" and new.image_file.name == "image.npy"
    np.testing.assert_array_equal(old.image, new.image)
    assert old.image_dtype == new.image_dtype == str(new.image.dtype)
    tiles = new.split("train")
    assert input_statistics(old.meta, old.image, tiles) == input_statistics(
        new.meta, new.image, tiles
    )


def test_session_column_is_optional(olivine_dataset: Path, tmp_path: Path) -> None:
    folder = tmp_path / "nosession"
    shutil.copytree(olivine_dataset, folder)
    manifest = pd.read_csv(folder / "manifest.csv").drop(columns="session")
    manifest.to_csv(folder / "manifest.csv", index=False)
    ds = open_tile_dataset(folder)
    assert set(ds.manifest["session"]) == {"all"}
    manifest.drop(columns="split").to_csv(folder / "manifest.csv", index=False)
    with pytest.raises(InputError, match="needs columns tile_id and split"):
        open_tile_dataset(folder)


@pytest.mark.parametrize(("background", "low", "high"), [(True, 0.0, 0.2), (False, 0.35, 1.0)])
def test_balanced_crops_centre_on_class_0_only_without_background(background, low, high):
    """SEM: class 0 is the masks' background; CT (background=False): class 0 is a phase (pores)
    that balanced crops must find as often as the others."""
    from olmap.segment.data import TileSamples

    labels = np.full((2, 32, 32), 2, np.uint8)
    labels[0, :4, :4] = 1  # a small patch of the first class, in one corner of one tile
    image = labels.astype(np.float32)
    samples = TileSamples(
        image, labels, [1, 2], [0, 1], crop=(8, 8), balanced=1.0, background=background,
        length=200,
    )  # fmt: skip
    with_first = np.mean([(samples[i][1] == 0).any().item() for i in range(200)])
    assert low <= with_first <= high


def test_ct_augmentation_adds_rings_and_noise_to_the_image_only():
    from olmap.segment.config import AugmentConfig
    from olmap.segment.data import augment, ring_offsets

    rings = ring_offsets((48, 40), np.random.default_rng(3), 50.0)
    rng = np.random.default_rng(3)  # the same draws: the centre comes first
    cy, cx = rng.uniform(-48, 96), rng.uniform(-40, 80)
    yy, xx = np.ogrid[:48, :40]
    radius = np.rint(np.hypot(yy - cy, xx - cx))
    for r in np.unique(radius):  # one offset per ring
        assert np.unique(rings[radius == r]).size == 1
    assert 0 < np.count_nonzero(np.unique(rings)) < np.unique(radius).size
    image, target = np.full((48, 40), 100.0, np.float32), np.ones((48, 40), np.uint8)
    cfg = AugmentConfig(rot90=False, flip_p=0.0, noise_sd=20.0, ring_sd=50.0)
    out, same = augment(image, target, np.random.default_rng(0), cfg)
    assert out.std() > 1 and np.array_equal(same, target)
    plain, _ = augment(
        image, target, np.random.default_rng(0), AugmentConfig(rot90=False, flip_p=0.0)
    )
    assert np.array_equal(plain, image)  # off by default: the 2D pipeline's draws are unchanged


def test_phase_swap_turns_one_phase_into_its_grey_neighbour() -> None:
    """swap_p: a crop's phase takes the grey level and label of the phase nearest in grey
    (median greys of the training tiles); off by default."""
    from olmap.segment.config import AugmentConfig
    from olmap.segment.data import TileSamples

    rng = np.random.default_rng(0)
    labels = np.zeros((4, 32, 32), np.uint8)
    labels[:, :, 16:] = 2  # codes 1 (left half) and 2 (right half); code 3 in tile 3 only
    labels[:, :, :16] = 1
    labels[3, :8, :8] = 3
    levels = np.array([0, 100.0, 140.0, 400.0], np.float32)
    image = levels[labels] + rng.normal(0, 5, labels.shape).astype(np.float32)
    cfg = AugmentConfig(rot90=False, flip_p=0.0, swap_p=1.0)
    samples = TileSamples(image, labels, [1, 2, 3], [0, 1, 2, 3], augment_cfg=cfg, length=40)
    np.testing.assert_allclose(samples.greys, [100, 140, 400], atol=3)
    swaps = set()
    for i in range(len(samples)):
        grey, target = (t.numpy() for t in samples[i])
        grey = grey[0]
        tile = samples.tiles[samples._choose(i, samples._rng(i))[0]]
        changed = target != samples.lut[labels[tile]]
        before, after = samples.lut[labels[tile]][changed], target[changed]
        assert len(set(before)) == 1 and len(set(after)) == 1  # one phase, all its pixels
        a, b = int(before[0]), int(after[0])
        assert np.array_equal(changed, samples.lut[labels[tile]] == a)
        assert b == {0: 1, 1: 0, 2: 1}[a]  # the nearest in grey
        shift = grey[changed] - image[tile][changed]
        np.testing.assert_allclose(shift, samples.greys[b] - samples.greys[a], atol=1e-3)
        swaps.add((a, b))
    assert swaps == {(0, 1), (1, 0), (2, 1)}
    plain = TileSamples(image, labels, [1, 2, 3], [0], augment_cfg=AugmentConfig(), length=2)
    assert plain.greys is None

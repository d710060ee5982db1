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

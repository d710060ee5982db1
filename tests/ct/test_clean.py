"""Post-processing of label volumes block by block (``olmap ct predict``'s cleaning pass)."""

import numpy as np
import pytest
import tifffile
import zarr

from olmap.core.clusters import remove_small_clusters
from olmap.ct.classes import load_classes
from olmap.ct.clean import ClusterCleaner, clean_grid, min_sizes
from olmap.ct.labeljob import run_label_job

from .test_cli import GYPSUM


def test_blocks_with_a_margin_clean_like_the_whole_volume(tmp_path):
    """Islands shorter than the margin: the blocks' result is the whole volume's."""
    rng = np.random.default_rng(3)
    vol = np.full((24, 48, 60), 2, np.uint8)
    vol[:, :, 30:] = 3
    for _ in range(60):  # islands of 1-27 voxels, away from the x = 30 boundary (no ties)
        z, y = rng.integers(0, 22), rng.integers(0, 46)
        x = rng.choice([*range(0, 25), *range(33, 58)])
        d, h, w = rng.integers(1, 4, 3)
        vol[z : z + d, y : y + h, x : x + w] = rng.choice([1, 4])
    tifffile.imwrite(tmp_path / "raw.tif", vol)
    classes = load_classes(GYPSUM)
    sizes = {1: 8, 4: 12}
    grid = clean_grid(vol.shape, block=(8, 16, 16), margin=4)
    res = run_label_job(
        grid, ClusterCleaner(str(tmp_path / "raw.tif"), sizes), classes, classes.codes,
        tmp_path / "clean.zarr", source=str(tmp_path / "raw.tif"), voxel_size_um=None,
        fingerprint={},
    )  # fmt: skip
    whole, removed = remove_small_clusters(vol, sizes)
    got = np.asarray(zarr.open_group(str(tmp_path / "clean.zarr"), mode="r")["0"])
    assert removed > 0 and res.blocks == len(grid) == 3 * 3 * 4
    assert np.array_equal(got, whole)
    assert res.class_voxels["pore"] == int((whole == 1).sum())
    assert all(np.isnan(v) for v in res.confidence.values())  # no probabilities: NaN
    assert min_sizes(classes) == {1: 8, 3: 100}  # the shipped class file: seed 000's sizes


def test_uncertainty_summary_with_a_class_never_labelled():
    """A class with no voxels (NaN confidence) leaves the scan's mean confidence defined."""
    from pathlib import Path

    from olmap.ct.labeljob import LabelResult

    res = LabelResult(
        Path("l.zarr"), None, 10, {"a": 6, "b": 4, "c": 0}, 1, 0, 1.0,
        confidence={"a": 0.9, "b": 0.5, "c": float("nan")}, uncertain_share=0.2,
    )  # fmt: skip
    table = res.uncertainty()
    assert table.loc["all", "mean_confidence"] == pytest.approx(0.74)
    assert table.loc["all", "below_0.5"] == 0.2 and np.isnan(table.loc["c", "mean_confidence"])

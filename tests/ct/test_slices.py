"""Training tiles cut from volumes (``olmap ct train``'s dataset) and the command itself."""

import json

import numpy as np
import pytest
import yaml
import zarr
from typer.testing import CliRunner

from olmap.cli.main import app
from olmap.core.codes import IGNORE
from olmap.ct.classes import load_classes
from olmap.ct.slices import PLANE_AXIS, write_slice_dataset
from olmap.errors import InputError
from olmap.io.volume import open_volume
from olmap.segment.checkpoint import read_checkpoint
from olmap.segment.data import open_tile_dataset

from .test_cli import GYPSUM

runner = CliRunner()


def _truth(series, step: int) -> np.ndarray:
    return np.asarray(zarr.open_group(str(series / "truth" / f"t{step:03d}.zarr"), mode="r")["0"])


def test_tiles_are_the_slices_of_the_volume(ct_series, tmp_path):
    classes = load_classes(GYPSUM)
    truth_path = str(ct_series / "truth" / "t001.zarr")
    summary = write_slice_dataset(
        [str(ct_series / "t001")], [truth_path], classes, tmp_path / "ds", planes="all",
        tile=32, every=5,  # XZ and YZ slices are 24 high: 24 px tiles
    )  # fmt: skip
    ds = open_tile_dataset(tmp_path / "ds")
    assert ds.modality == "ct" and summary.tile == 24
    assert [c for c, _ in ds.model_classes] == classes.codes
    grey = open_volume(str(ct_series / "t001")).read()
    truth = _truth(ct_series, 1)
    truth = np.where(truth == 0, IGNORE, truth)  # outside the sample: unlabelled
    assert set(ds.manifest["plane"]) == {"xy", "xz", "yz"}
    for row in ds.manifest.itertuples():
        axis = PLANE_AXIS[row.plane]
        window = (slice(row.row_off, row.row_off + 24), slice(row.col_off, row.col_off + 24))
        np.testing.assert_array_equal(ds.image[row.tile_id], np.take(grey, row.slice, axis)[window])
        np.testing.assert_array_equal(
            ds.labels[row.tile_id], np.take(truth, row.slice, axis)[window]
        )
    # Whole slices are validated, never a slice that is also trained on.
    splits = ds.manifest.groupby(["plane", "slice"])["split"].nunique()
    assert (splits == 1).all() and set(ds.manifest["split"]) == {"train", "val"}
    train = np.concatenate([grey_tile.ravel() for grey_tile in ds.image[ds.split("train")]])
    assert ds.meta["train_image_mean"] == pytest.approx(train.mean())


def test_unlabelled_voxels_are_ignored_and_bad_labels_refused(ct_series, tmp_path):
    classes = load_classes(GYPSUM)
    truth = _truth(ct_series, 1)
    sparse = truth.copy()
    sparse[:, :, :36] = 0  # half of every slice unlabelled
    path = tmp_path / "sparse.zarr"
    zarr.save_array(str(path), sparse)
    write_slice_dataset([str(ct_series / "t001")], [str(path)], classes, tmp_path / "ds", tile=72)
    labels = open_tile_dataset(tmp_path / "ds").labels
    np.testing.assert_array_equal(labels, np.where(sparse == 0, IGNORE, sparse))
    assert (labels[:, :, :36] == IGNORE).all()
    sparse[0, 0, 40] = 9
    path = tmp_path / "bad.zarr"
    zarr.save_array(str(path), sparse)
    with pytest.raises(InputError, match=r"bad.zarr \(xy slice 0\): class code 9"):
        write_slice_dataset([str(ct_series / "t001")], [str(path)], classes, tmp_path / "d2")
    path = tmp_path / "small.zarr"
    zarr.save_array(str(path), truth[:, :, :70])
    with pytest.raises(InputError, match=r"small.zarr: labels \(24, 72, 70\) do not match"):
        write_slice_dataset([str(ct_series / "t001")], [str(path)], classes, tmp_path / "d3")


def test_ct_train_command_trains_the_core_and_resumes_its_slices(ct_series, tmp_path):
    config = tmp_path / "tiny.yaml"
    settings = {"architecture": "deeplabv3_mobilenet_v3_large", "decoder": "refine"}
    settings |= {"init": "auto", "optimizer": "adamw", "lr": 1e-3, "batch_size": 4}
    settings |= {"crop": [32, 32], "steps_per_epoch": 3, "max_epochs": 2, "device": "cpu"}
    config.write_text(yaml.safe_dump(settings))
    out = tmp_path / "ct_model.pt"
    args = ["ct", "train", "--volume", str(ct_series / "t001"), "--labels"]
    args += [str(ct_series / "truth" / "t001.zarr"), "--classes", str(GYPSUM)]
    args += ["--config", str(config), "--out", str(out), "--every", "3", "--tile", "64"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "training and" in res.output and "synthetic ct pretraining" in res.output
    assert "val IoU pore " in res.output  # every CT class is a phase, pores too
    _, meta = read_checkpoint(out)
    assert [n for _, n in meta.classes] == ["pore", "gypsum", "bassanite", "celestite"]
    dataset = tmp_path / "ct_model_slices"
    assert json.loads((dataset / "dataset.json").read_text())["modality"] == "ct"
    res = runner.invoke(app, [*args, "--overwrite"])
    assert res.exit_code == 0, res.output
    assert "Reusing the training slices" in res.output
    res = runner.invoke(app, [*args[:-2], "--tile", "48"])  # another cut, OUT exists
    assert res.exit_code != 0 and "ct_model_slices: output exists" in str(res.exception)


def test_single_slices_validate_on_their_last_rows_of_tiles(ct_series, tmp_path):
    """2D images (one slice each, e.g. a few labelled slices of a scan): a share of each
    image's rows of tiles validates, the rest trains."""
    import tifffile

    from olmap.ct.slices import plan_tiles

    plan = plan_tiles([(1, 100, 60)], ["xy"], 20, 1, 0.2)
    val_rows = sorted({t.row for t in plan if t.split == "val"})
    assert val_rows == [80] and len(plan) == 5 * 3  # the last of 5 rows, 3 tiles each
    grey = open_volume(str(ct_series / "t001")).read()
    truth = _truth(ct_series, 1)
    scans, labels = [], []
    for z in (3, 17):
        tifffile.imwrite(tmp_path / f"g{z}.tif", grey[z])
        tifffile.imwrite(tmp_path / f"l{z}.tif", truth[z])
        scans.append(str(tmp_path / f"g{z}.tif"))
        labels.append(str(tmp_path / f"l{z}.tif"))
    classes = load_classes(GYPSUM)
    summary = write_slice_dataset(scans, labels, classes, tmp_path / "ds", tile=24)
    counts = summary.split_counts()
    assert counts == {"train": 2 * 2 * 3, "val": 2 * 1 * 3}  # per image: 3x3 tiles, 1 row val
    ds = open_tile_dataset(tmp_path / "ds")
    first_val = summary.manifest.index[summary.manifest["split"] == "val"][0]
    row = summary.manifest.loc[first_val]
    assert row["row_off"] == 48 and np.array_equal(
        ds.image[first_val], grey[3, 48:72, row["col_off"] : row["col_off"] + 24]
    )

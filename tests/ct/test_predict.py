"""``olmap ct predict``: a model of ``olmap ct train`` over whole volumes, slab by slab."""

import numpy as np
import pytest
import zarr
from typer.testing import CliRunner

from olmap.cli.main import app
from olmap.ct.classes import load_classes
from olmap.ct.clean import clean_grid
from olmap.ct.label import VolumeSpec
from olmap.ct.predict import predict_volume
from olmap.ct.slices import write_slice_dataset
from olmap.errors import InputError
from olmap.segment.job import train_from_dataset

from ..segment.tiny import tiny_config
from .test_cli import GYPSUM

runner = CliRunner()


@pytest.fixture(scope="module")
def ct_model(ct_series, tmp_path_factory):
    """A small model trained on the truth of step 1 (a few steps: it need not be good)."""
    folder = tmp_path_factory.mktemp("ctmodel")
    truth = str(ct_series / "truth" / "t001.zarr")
    classes = load_classes(GYPSUM)
    write_slice_dataset([str(ct_series / "t001")], [truth], classes, folder / "ds", tile=72)
    cfg = tiny_config(decoder="refine", crop=(48, 48), max_epochs=2, steps_per_epoch=4)
    cfg = cfg.model_copy(update={"augment": cfg.augment.model_copy(update={"offset_jitter": 0})})
    train_from_dataset(folder / "ds", cfg, folder / "m.pt")
    return folder / "m.pt"


def _labels(path) -> np.ndarray:
    return np.asarray(zarr.open_group(str(path), mode="r")["0"])


def test_slabs_change_nothing_and_truth_is_scored(ct_model, ct_series, tmp_path):
    classes = load_classes(GYPSUM)
    spec = VolumeSpec(str(ct_series / "t002"))
    truth = ct_series / "truth" / "t002.zarr"
    one = predict_volume(
        ct_model, spec, tmp_path / "a.zarr", classes, slab=1, truth=truth, clean=False
    )
    many = predict_volume(
        ct_model, spec, tmp_path / "b.zarr", classes, slab=7, out_prob=tmp_path / "p.zarr",
        clean=False,
    )  # fmt: skip
    assert one.blocks == 24 and many.blocks == 4
    a, b = _labels(tmp_path / "a.zarr"), _labels(tmp_path / "b.zarr")
    assert a.shape == (24, 72, 72) and np.array_equal(a, b)
    assert set(np.unique(a)) <= set(classes.codes)
    prob = _labels(tmp_path / "p.zarr")  # uint8 round(255 p), channels = classes
    assert prob.shape == (4, 24, 72, 72)
    picked = np.take_along_axis(prob, np.searchsorted(classes.codes, a)[None], 0)[0]
    np.testing.assert_array_equal(picked, prob.max(0))  # each label has the top probability
    scores = one.truth_scores
    assert list(scores.index) == [*classes.names, "mean"] and scores["dice"].between(0, 1).all()
    assert one.class_voxels == many.class_voxels and sum(one.class_voxels.values()) == a.size


def test_cli_predict_and_its_errors(ct_model, ct_series, tmp_path):
    out = tmp_path / "t002_cnn.zarr"
    args = ["ct", "predict", "--model", str(ct_model), "--volume", str(ct_series / "t002")]
    args += ["--out", str(out), "--classes", str(GYPSUM)]
    res = runner.invoke(app, [*args, "--truth", str(ct_series / "truth" / "t002.zarr")])
    assert res.exit_code == 0, res.output
    assert "Mvox/s" in res.output and (tmp_path / "t002_cnn_truth_scores.csv").is_file()
    assert "confidence" in res.output and (tmp_path / "t002_cnn_uncertainty.csv").is_file()
    # the class file's min_voxels clean the labels; the raw labels are scored, then removed
    assert "isolated clusters removed (pore < 8, bassanite < 100" in res.output
    assert "Dice before post-processing" in res.output
    assert not (tmp_path / "t002_cnn_raw.zarr").exists()
    res = runner.invoke(app, args)  # exists, no --overwrite
    assert res.exit_code != 0 and "output exists" in str(res.exception)
    sandstone = tmp_path / "two.yaml"
    sandstone.write_text(
        'name: two\nclasses:\n  - {code: 1, name: a, colour: "#000000"}\n'
        '  - {code: 2, name: b, colour: "#ffffff"}\n'
    )
    with pytest.raises(InputError, match="class code 3 is not in the class file"):
        predict_volume(
            ct_model, VolumeSpec(str(ct_series / "t002")), tmp_path / "c.zarr",
            load_classes(sandstone),
        )  # fmt: skip


def test_grey_match_maps_a_drifted_scan_back(ct_model, ct_series, tmp_path):
    """A scan whose grey levels drifted (x 1.1 + 500) maps back: its gain is the undrifted
    scan's / 1.1."""
    import tifffile

    from olmap.io.volume import open_volume

    grey = open_volume(str(ct_series / "t001")).read()
    drifted = tmp_path / "drifted"
    drifted.mkdir()
    for k, s in enumerate(grey):
        tifffile.imwrite(drifted / f"z{k:04d}.tif", (s * 1.1 + 500).astype(np.uint16))
    classes = load_classes(GYPSUM)
    res = predict_volume(
        ct_model, VolumeSpec(str(drifted)), tmp_path / "d.zarr", classes, grey_match=True
    )
    same = predict_volume(
        ct_model, VolumeSpec(str(ct_series / "t001")), tmp_path / "s.zarr", classes,
        grey_match=True,
    )  # fmt: skip

    def gain(note: str) -> float:
        return float(note.split("grey x ")[1].split()[0])

    assert gain(res.settings["grey"]) * 1.1 == pytest.approx(gain(same.settings["grey"]), rel=0.005)


def test_batched_slices_match_the_windowed_predictor(ct_model):
    """Slices that fit in one window go through the model a few at a time: the same
    probabilities as one by one through predict_proba."""
    from olmap.ct.predict import slices_proba
    from olmap.segment.checkpoint import load_checkpoint
    from olmap.segment.infer import predict_proba

    model = load_checkpoint(ct_model, device="cpu")[0]
    rng = np.random.default_rng(0)
    images = rng.normal(20000, 6000, (6, 40, 56)).astype(np.float32)
    batched = slices_proba(model, images, window=64)
    assert batched.shape == (4, 6, 40, 56)
    for k, image in enumerate(images):
        np.testing.assert_allclose(batched[:, k], predict_proba(model, image, window=64), atol=1e-4)
    windowed = slices_proba(model, images, window=32)  # larger than a window: windowed path
    np.testing.assert_allclose(
        windowed[:, 2], predict_proba(model, images[2], window=32), atol=1e-6
    )


def test_tri_planar_is_the_mean_of_the_three_planes(ct_model, ct_series, tmp_path):
    """--planes tri: the mean of the XY, XZ and YZ slices' probabilities; cubes with a margin
    reaching the whole volume give the one-block result (the crop bookkeeping is right)."""
    from olmap.ct.predict import plane_proba
    from olmap.io.volume import open_volume
    from olmap.segment.checkpoint import load_checkpoint

    classes = load_classes(GYPSUM)
    spec = VolumeSpec(str(ct_series / "t002"))
    one = predict_volume(
        ct_model, spec, tmp_path / "one.zarr", classes, planes="tri",
        out_prob=tmp_path / "one_p.zarr", clean=False,
    )  # fmt: skip
    cubes = predict_volume(
        ct_model, spec, tmp_path / "cubes.zarr", classes, planes="tri", cube=40, margin=72,
        out_prob=tmp_path / "cubes_p.zarr", clean=False,
    )  # fmt: skip
    assert one.blocks == 1 and cubes.blocks == 4
    prob = _labels(tmp_path / "one_p.zarr").astype(int)
    assert np.abs(_labels(tmp_path / "cubes_p.zarr").astype(int) - prob).max() <= 1
    model = load_checkpoint(ct_model, device="cpu")[0]
    grey = open_volume(str(ct_series / "t002")).read()
    whole = tuple(slice(0, n) for n in grey.shape)
    mean = sum(plane_proba(model, grey, axis, whole, 512) for axis in range(3)) / 3
    assert np.abs(np.rint(mean * 255) - prob).max() <= 1
    xy = predict_volume(ct_model, spec, tmp_path / "xy.zarr", classes, clean=False)
    assert not np.array_equal(_labels(tmp_path / "xy.zarr"), _labels(tmp_path / "one.zarr"))
    assert xy.settings["planes"] == "xy" and one.settings["planes"] == "tri"


def test_uncertainty_summary_matches_the_probabilities(ct_model, ct_series, tmp_path):
    classes = load_classes(GYPSUM)
    res = predict_volume(
        ct_model, VolumeSpec(str(ct_series / "t002")), tmp_path / "a.zarr", classes,
        out_prob=tmp_path / "p.zarr", clean=False,
    )  # fmt: skip
    labels, top = _labels(tmp_path / "a.zarr"), _labels(tmp_path / "p.zarr").max(0) / 255
    for name, code in zip(classes.names, classes.codes, strict=True):
        on = labels == code
        if on.any():
            assert res.confidence[name] == pytest.approx(top[on].mean(), abs=1e-9)
    assert res.uncertain_share == pytest.approx(np.mean(top < 128 / 255))
    table = res.uncertainty()
    assert list(table.index) == [*classes.names, "all"]
    assert table.loc["all", "mean_confidence"] == pytest.approx(top.mean())


def test_cleaning_removes_small_clusters_and_resumes_from_the_raw_labels(
    ct_model, ct_series, tmp_path, monkeypatch
):
    """The cleaned labels are the raw labels with islands under min_voxels relabelled; a run
    whose cleaning pass was cut short reuses the complete raw labels."""
    from olmap.core.clusters import remove_small_clusters
    from olmap.ct import clean as clean_mod
    from olmap.ct import predict as predict_mod

    classes = load_classes(GYPSUM)
    spec = VolumeSpec(str(ct_series / "t002"))
    raw = predict_volume(ct_model, spec, tmp_path / "raw.zarr", classes, clean=False)
    expected, removed = remove_small_clusters(_labels(tmp_path / "raw.zarr"), {1: 8, 3: 100})
    assert removed > 0  # the little model speckles

    def interrupted(self, block):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(clean_mod.ClusterCleaner, "__call__", interrupted)
        with pytest.raises((KeyboardInterrupt, Exception)):
            predict_volume(ct_model, spec, tmp_path / "clean.zarr", classes)
    assert (tmp_path / "clean_raw.zarr" / "olmap_predict.json").is_file()

    def no_prediction(self, block):
        raise AssertionError("the complete raw labels should have been reused")

    monkeypatch.setattr(predict_mod.SlicePredictor, "__call__", no_prediction)
    clean = predict_volume(ct_model, spec, tmp_path / "clean.zarr", classes)
    assert np.array_equal(_labels(tmp_path / "clean.zarr"), expected)
    assert not (tmp_path / "clean_raw.zarr").exists()
    assert clean.settings["min_voxels"] == {"pore": 8, "bassanite": 100}
    assert clean.confidence == raw.confidence  # the network's, on its own labels
    assert clean.class_voxels != raw.class_voxels


def test_cli_series_one_label_volume_per_scan(ct_model, ct_series, tmp_path):
    """--series: one label volume per scan, named like it, scored against the truth folder;
    a rerun keeps the finished scans; series_summary.csv gathers confidence and Dice."""
    import pandas as pd

    out = tmp_path / "labels"
    args = ["ct", "predict", "--model", str(ct_model), "--series", str(ct_series)]
    args += ["--out", str(out), "--classes", str(GYPSUM), "--truth", str(ct_series / "truth")]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.glob("*.zarr")) == ["t000.zarr", "t001.zarr", "t002.zarr"]
    summary = pd.read_csv(out / "series_summary.csv", index_col=["scan", "class"])
    assert sorted(summary.index.get_level_values("scan").unique()) == ["t000", "t001", "t002"]
    scores = pd.read_csv(out / "t001_truth_scores.csv", index_col="class")
    assert summary.loc[("t001", "gypsum"), "dice"] == pytest.approx(scores.loc["gypsum", "dice"])
    assert summary["mean_confidence"].between(0, 1).all()
    res = runner.invoke(app, args)
    assert res.exit_code == 0 and res.output.count("exists: kept") == 3
    bad_truth = tmp_path / "truth"
    bad_truth.mkdir()
    (ct_series / "truth" / "t000.zarr").rename(bad_truth / "t000.zarr")
    try:
        res = runner.invoke(app, [*args[:-1], str(bad_truth), "--out", str(tmp_path / "l2")])
    finally:
        (bad_truth / "t000.zarr").rename(ct_series / "truth" / "t000.zarr")
    assert res.exit_code != 0 and "no truth volume named like t001" in str(res.exception)
    assert not list((tmp_path / "l2").glob("*.zarr"))  # refused before any scan
    res = runner.invoke(app, [*args, "--volume", str(ct_series / "t000")])
    assert res.exit_code != 0 and "--volume" in res.output  # one of --volume / --series


def test_dask_local_cluster_matches_the_serial_run(ct_model, ct_series, tmp_path):
    """--dask local:2 (a Dask LocalCluster): the blocks of the prediction and of the cleaning
    pass spread over two worker processes give the serial run's labels."""
    classes = load_classes(GYPSUM)
    spec = VolumeSpec(str(ct_series / "t002"))
    serial = predict_volume(ct_model, spec, tmp_path / "a.zarr", classes, slab=6)
    spread = predict_volume(ct_model, spec, tmp_path / "b.zarr", classes, slab=6, dask="local:2")
    assert spread.blocks == serial.blocks == len(clean_grid((24, 72, 72)))
    assert np.array_equal(_labels(tmp_path / "a.zarr"), _labels(tmp_path / "b.zarr"))
    assert spread.class_voxels == serial.class_voxels

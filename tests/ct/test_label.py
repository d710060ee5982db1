"""The forest from scribbles and ``olmap ct label``: accuracy, block invariance, resume,
forest files."""

import os
import pickle

import numpy as np
import pytest
import zarr

from olmap.ct.classes import load_classes
from olmap.ct.features import FeatureConfig
from olmap.ct.forest import (
    ForestConfig,
    load_forest,
    read_scribbles,
    save_forest,
    train_forest,
)
from olmap.ct.label import VolumeSpec, label_volume
from olmap.ct.synth import CLASS_FILE
from olmap.errors import InputError, OutputExistsError
from olmap.io.resume import RunInterrupted
from olmap.io.volume import open_volume

CLASSES = load_classes(CLASS_FILE)
FEATURES = FeatureConfig(sigmas=(1.0, 2.0))


@pytest.fixture(scope="module")
def forest(ct_series):
    with open_volume(ct_series / "t001") as vol:
        s = read_scribbles(ct_series / "scribbles" / "t001", vol.shape, CLASSES)
        return train_forest([(vol, s)], CLASSES, FEATURES, ForestConfig(trees=16))


def _labels(path):
    return zarr.open_array(str(path / "0"))[:]


def test_forest_labels_the_scan_and_beats_the_threshold(forest, ct_series, tmp_path):
    res = label_volume(
        forest,
        VolumeSpec(str(ct_series / "t001")),
        tmp_path / "l.zarr",
        out_prob=tmp_path / "p.zarr",
        truth=ct_series / "truth" / "t001.zarr",
    )
    dice = res.truth_scores["dice"]
    assert dice["mean"] > 0.8 and min(dice[["gypsum", "bassanite"]]) > 0.75
    held = forest.scores["dice"]
    assert held["forest", "mean"] > held["threshold", "mean"]
    prob = zarr.open_array(str(tmp_path / "p.zarr" / "0"))[:]
    assert prob.shape == (4, 24, 72, 72) and prob.dtype == np.uint8
    assert np.all(np.abs(prob.astype(int).sum(0) - 255) <= 4)  # rounded probabilities
    labels = _labels(tmp_path / "l.zarr")
    assert sorted(res.class_voxels) == ["bassanite", "celestite", "gypsum", "pore"]
    assert sum(res.class_voxels.values()) == labels.size


def test_block_borders_change_nothing(forest, ct_series, tmp_path):
    spec = VolumeSpec(str(ct_series / "t001"))
    for refine in (False, True):
        one, many = tmp_path / f"one{refine}.zarr", tmp_path / f"many{refine}.zarr"
        label_volume(forest, spec, one, block=(24, 72, 72), priors="uniform", refine=refine)
        label_volume(
            forest, spec, many, block=(5, 17, 29), priors="uniform", workers=2, refine=refine
        )
        differ = np.mean(_labels(one) != _labels(many))
        if refine:  # floods stop at the block's halo: blocks of 5 x 17 x 29 are the worst case
            assert differ < 2e-3, differ
        else:  # the forest alone: exactly the whole volume's labels
            assert differ == 0


def test_refinement_moves_unsure_voxels_closer_to_the_truth(forest, ct_series, tmp_path):
    spec = VolumeSpec(str(ct_series / "t001"))
    truth = ct_series / "truth" / "t001.zarr"
    dice = {
        refine: label_volume(
            forest, spec, tmp_path / f"l{refine}.zarr", truth=truth, refine=refine
        ).truth_scores["dice"]
        for refine in (False, True)
    }
    assert dice[True]["mean"] > dice[False]["mean"]
    unchanged = _labels(tmp_path / "lFalse.zarr") == _labels(tmp_path / "lTrue.zarr")
    assert 0.5 < unchanged.mean() < 1  # only the unsure voxels were re-drawn


def test_interrupted_labelling_resumes_to_the_same_result(forest, ct_series, tmp_path, monkeypatch):
    import olmap.ct.label as mod

    spec = VolumeSpec(str(ct_series / "t002"))
    label_volume(forest, spec, tmp_path / "ref.zarr", block=(8, 72, 72))
    calls = {"n": 0}
    original = mod.BlockLabeller.__call__

    def flaky(self, block):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RunInterrupted("stop")  # as Ctrl-C would, after the first block
        return original(self, block)

    monkeypatch.setattr(mod.BlockLabeller, "__call__", flaky)
    with pytest.raises(RunInterrupted):
        label_volume(forest, spec, tmp_path / "r.zarr", block=(8, 72, 72))
    assert not (tmp_path / "r.zarr").exists()
    monkeypatch.setattr(mod.BlockLabeller, "__call__", original)
    res = label_volume(forest, spec, tmp_path / "r.zarr", block=(8, 72, 72))
    assert res.resumed_blocks == 1
    assert np.array_equal(_labels(tmp_path / "r.zarr"), _labels(tmp_path / "ref.zarr"))


def test_tiff_output_and_no_overwrite(forest, ct_series, tmp_path):
    spec = VolumeSpec(str(ct_series / "t000"))
    label_volume(forest, spec, tmp_path / "l.tif", fmt="tiff")
    with open_volume(tmp_path / "l.tif", labels=True) as v:
        assert v.shape == (24, 72, 72) and set(np.unique(v.read())) <= {1, 2, 3, 4}
    with pytest.raises(OutputExistsError, match="exists"):
        label_volume(forest, spec, tmp_path / "l.tif", fmt="tiff")


def test_forest_file_round_trip_and_refusals(forest, tmp_path):
    save_forest(forest, tmp_path / "f.pkl")
    back = load_forest(tmp_path / "f.pkl")
    x = np.random.default_rng(0).random((5, forest.context.n_features_in_))
    assert np.array_equal(back.context.predict(x), forest.context.predict(x))
    assert back.features == forest.features and back.classes == forest.classes
    with open(tmp_path / "evil.pkl", "wb") as f:
        pickle.dump({"kind": "olmap-ct-forest"}, f)
    with pytest.raises(InputError, match="not an olmap forest"):
        load_forest(tmp_path / "evil.pkl")
    # a forest file whose pickle would build something else is refused before it runs
    data = (tmp_path / "f.pkl").read_bytes()
    head, _, _ = data.partition(b"}\n")
    evil = pickle.dumps({"forest": os.system}, protocol=5)
    (tmp_path / "bad.pkl").write_bytes(head + b"}\n" + evil)
    with pytest.raises(InputError, match=r"refused: posix\.system is not part of an olmap forest"):
        load_forest(tmp_path / "bad.pkl")


def test_scribble_errors_name_the_file(ct_series, tmp_path):
    import tifffile

    (tmp_path / "s").mkdir()
    tifffile.imwrite(tmp_path / "s" / "z0003.tif", np.full((72, 72), 9, np.uint8))
    with pytest.raises(InputError, match="class code 9 is not in the class file"):
        read_scribbles(tmp_path / "s", (24, 72, 72), CLASSES)
    tifffile.imwrite(tmp_path / "s" / "z0003.tif", np.zeros((70, 72), np.uint8))
    with pytest.raises(InputError, match=r"z0003\.tif: scribble slice of shape 70x72"):
        read_scribbles(tmp_path / "s", (24, 72, 72), CLASSES)
    label_vol = tmp_path / "v.tif"
    tifffile.imwrite(label_vol, np.zeros((3, 72, 72), np.uint8), photometric="minisblack")
    with pytest.raises(InputError, match="scribbles of shape 3x72x72, the scan is 24x72x72"):
        read_scribbles(label_vol, (24, 72, 72), CLASSES)

"""``olmap ct predict``: a model of ``olmap ct train`` over whole volumes, slab by slab."""

import numpy as np
import pytest
import zarr
from typer.testing import CliRunner

from olmap.cli.main import app
from olmap.ct.classes import load_classes
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
    one = predict_volume(ct_model, spec, tmp_path / "a.zarr", classes, slab=1, truth=truth)
    many = predict_volume(
        ct_model, spec, tmp_path / "b.zarr", classes, slab=7, out_prob=tmp_path / "p.zarr"
    )
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

"""The CT commands as shared/CLI.md writes them, and their one-line errors."""

import re
from pathlib import Path

import numpy as np
import pandas as pd
import zarr
from typer.testing import CliRunner

from olmap.cli.main import app

from ..conftest import run_olmap

REPO = Path(__file__).resolve().parents[2]
GYPSUM = REPO / "configs" / "ct" / "gypsum.yaml"
runner = CliRunner()


def test_ct_help_lists_the_commands_with_examples():
    res = runner.invoke(app, ["ct", "--help"], env={"COLUMNS": "200"})
    assert res.exit_code == 0
    for cmd in ("info", "convert", "label", "train", "predict"):
        assert re.search(rf"^\W*{cmd}\s+\w", res.output, re.M), cmd
    assert "olmap ct label --volume" in res.output
    for cmd in ("info", "convert", "label", "train", "predict"):
        sub = runner.invoke(app, ["ct", cmd, "--help"])
        assert sub.exit_code == 0 and "Example: olmap ct" in sub.output


def test_documented_invocations(ct_series, tmp_path):
    s = ct_series
    res = runner.invoke(app, ["ct", "info", str(s / "t001")])
    assert res.exit_code == 0, res.output
    assert "24 x 72 x 72, uint16" in res.output and "2.753 µm" in res.output
    res = runner.invoke(
        app,
        [
            "ct",
            "convert",
            str(s / "t001"),
            "--out",
            str(tmp_path / "v.zarr"),
            "--voxel-size",
            "2.5",
        ],
    )
    assert res.exit_code == 0, res.output
    assert zarr.open_group(str(tmp_path / "v.zarr")).attrs["olmap"]["voxel_size_um"] == 2.5
    out = tmp_path / "rf_labels.zarr"
    args = [
        "ct",
        "label",
        "--volume",
        str(s / "t001"),
        "--scribbles",
        str(s / "scribbles" / "t001"),
    ]
    args += [
        "--classes",
        str(GYPSUM),
        "--out",
        str(out),
        "--save-model",
        str(tmp_path / "forest.pkl"),
    ]
    args += ["--trees", "16", "--sigmas", "1,2", "--truth", str(s / "truth" / "t001.zarr")]
    args += ["--volume", str(s / "t002"), "--scribbles", str(s / "scribbles" / "t002")]  # 2 scans
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "held-out strokes" in res.output and "threshold / gypsum" in res.output
    truth = pd.read_csv(tmp_path / "rf_labels_truth_scores.csv", index_col=0)
    assert truth.loc["mean", "dice"] > 0.8
    imp = pd.read_csv(tmp_path / "rf_labels_importance.csv")
    assert imp.importance.sum() == 1.0 or abs(imp.importance.sum() - 1) < 1e-6
    # the saved forest applied to another scan, as a multi-page TIFF
    res = runner.invoke(
        app,
        [
            "ct",
            "label",
            "--volume",
            str(s / "t002"),
            "--model",
            str(tmp_path / "forest.pkl"),
            "--out",
            str(tmp_path / "t2.tif"),
            "--format",
            "tiff",
        ],
    )
    assert res.exit_code == 0, res.output
    assert (tmp_path / "t2.tif").stat().st_size > 24 * 72 * 72


def test_synth_ct_as_documented(tmp_path):
    res = runner.invoke(
        app,
        ["synth", "ct", str(tmp_path / "d"), "--seed", "2", "--size", "16x40x40", "--steps", "2"],
    )
    assert res.exit_code == 0, res.output
    assert (tmp_path / "d" / "t001" / "slice_0015.tif").exists()
    assert (tmp_path / "d" / "truth" / "volumes.csv").exists()


def test_bad_inputs_get_one_line(ct_series, tmp_path):
    raw = tmp_path / "scan.raw"
    np.zeros(100, np.uint16).tofile(raw)
    cases = [
        (
            ["ct", "info", str(raw), "--shape", "4,5,6", "--dtype", "uint16"],
            "200 bytes, but --shape 4x5x6",
        ),
        (["ct", "info", f"{tmp_path / 'none.h5'}:/exchange/data"], "no such file"),
        (
            [
                "ct",
                "label",
                "--volume",
                str(ct_series / "t001"),
                "--scribbles",
                str(ct_series / "scribbles" / "t001"),
                "--out",
                str(tmp_path / "x.zarr"),
            ],
            "--classes is needed",
        ),
        (
            [
                "ct",
                "label",
                "--volume",
                str(ct_series / "t001"),
                "--model",
                str(raw),
                "--out",
                str(tmp_path / "y.zarr"),
            ],
            "not an olmap forest",
        ),
    ]
    for args, message in cases:
        res = run_olmap(*args)
        assert res.returncode == 1, res.stderr
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], res.stderr
        assert "Traceback" not in res.stderr

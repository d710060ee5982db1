"""The real CLI, end to end: in-process with Typer's runner, and as a subprocess for errors."""

import json
import re

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from olmap import __version__
from olmap.cli.main import app
from olmap.io.raster import raster_info, read_raster

from ..conftest import run_olmap as olmap

runner = CliRunner()


def test_help_lists_commands_with_descriptions():
    res = runner.invoke(app, ["--help"], env={"COLUMNS": "200"})  # one line per command
    assert res.exit_code == 0
    for cmd, text in [
        ("demo", "Demo on a built-in synthetic section: from EDS and BSE to a report and a web"),
        ("run", "Run the whole pipeline of a thin section described in a project file."),
        ("tiles", "Cloud-optimised GeoTIFFs, XYZ tiles and an offline web viewer of a section."),
        ("serve", "Serve a viewer site over HTTP and print its URL; Ctrl-C stops."),
        ("info", "Show a raster's shape"),
        ("masks", "Label map from EDS element maps by element-ratio rules"),
        ("eds", "Element count maps from a folder of per-element maps or a Bruker"),
        ("dataset", "Cut BSE + label tiles inside each session"),
        ("train", "Fine-tune DeepLabV3 on BSE tiles of a dataset folder; write one checkpoint."),
        ("evaluate", "Score a segmentation against reference masks"),
        ("predict", "Segment a whole BSE mosaic with a trained model, window by window."),
        ("mosaic", "Assemble acquisition tiles into one mosaic and report seams between tiles."),
        ("calibrate", "Calibrate BSE grey level against EPMA mg#"),
        ("mgmap", "Map mg# over every olivine pixel: LOF outliers per crystal"),
        ("synth", "Generate synthetic data with ground truth"),
    ]:
        assert re.search(rf"^\W*{cmd}\s+{re.escape(text)}", res.output, re.M), cmd
    res = runner.invoke(app, ["synth", "section", "--help"])
    assert res.exit_code == 0 and "Example: olmap synth section" in res.output
    assert "--overwrite" in res.output and "Random seed (default 0)" in res.output


def test_version():
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and res.output.strip() == f"olmap {__version__}"


def test_synth_section_as_documented(tmp_path):
    out = tmp_path / "sec"
    res = runner.invoke(
        app,
        [
            "--quiet",
            "synth",
            "section",
            str(out),
            "--seed",
            "7",
            "--size",
            "512x384",
            "--sessions",
            "2",
        ],
    )
    assert res.exit_code == 0, res.output
    info = raster_info(out / "bse.tif")
    assert info.shape == (384, 512)
    assert pd.read_csv(out / "sessions.csv")["session"].tolist() == [1, 2]
    assert "Modal composition" in res.output and "olivine" in res.output
    crystals = pd.read_csv(out / "truth" / "crystals.csv")
    assert len(crystals) > 0 and np.all(read_raster(out / "truth/olivine.tif") <= 1)


def test_existing_output_is_kept_without_overwrite(tmp_path):
    out = tmp_path / "sec"
    assert olmap("-q", "synth", "section", str(out), "--size", "256x256").returncode == 0
    first = read_raster(out / "bse.tif")
    res = olmap("synth", "section", str(out), "--size", "256x256", "--seed", "4")
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert (
        len(lines) == 1 and "output exists; pass --overwrite" in lines[0] and str(out) in lines[0]
    )
    assert "Traceback" not in res.stderr
    np.testing.assert_array_equal(read_raster(out / "bse.tif"), first)
    res = olmap(
        "-q", "synth", "section", str(out), "--size", "256x256", "--seed", "4", "--overwrite"
    )
    assert res.returncode == 0, res.stderr
    assert not np.array_equal(read_raster(out / "bse.tif"), first)


def test_overwrite_never_replaces_folders_olmap_did_not_write(tmp_path):
    mine = tmp_path / "thesis"
    mine.mkdir()
    (mine / "chapter1.tex").write_text("precious")
    res = olmap("synth", "section", str(mine), "--size", "256x256", "--overwrite")
    assert res.returncode == 1 and "not written by olmap; refusing to replace it" in res.stderr
    assert (mine / "chapter1.tex").read_text() == "precious"
    # "..", "." and the like are resolved first: never a folder containing the working dir
    work = mine / "work"
    work.mkdir()
    for target in ("..", "."):
        res = olmap("synth", "section", target, "--size", "256x256", "--overwrite", cwd=work)
        assert res.returncode == 1 and "refusing to write over the current folder" in res.stderr
    assert (mine / "chapter1.tex").exists() and work.exists()


def test_usage_errors_are_one_line():
    for args, text in [
        (["synth", "section", "x", "--size", "12x12"], "Invalid value for --size"),
        (["synth", "section"], "Missing argument"),
        (["synth", "section", "x", "--bogus"], "No such option: --bogus"),
    ]:
        res = olmap(*args)
        assert res.returncode == 2
        assert len(res.stderr.strip().splitlines()) == 1 and text in res.stderr, res.stderr


def test_bad_values_give_one_line_and_debug_gives_the_traceback(tmp_path):
    # 300 columns cannot hold 64 sessions: a domain error, one line, nothing written
    res = olmap("synth", "section", str(tmp_path / "y"), "--size", "300x300", "--sessions", "64")
    assert res.returncode == 1
    assert res.stderr.strip().splitlines() == [
        "olmap: error: invalid parameters: 64 sessions need a width of at least 2048 px "
        "(32 px each), got 300"
    ]
    assert not (tmp_path / "y").exists()
    res = olmap(
        "--debug", "synth", "section", str(tmp_path / "y"), "--size", "300x300", "--sessions", "64"
    )
    assert res.returncode != 0 and "Traceback" in res.stderr


def test_demo_runs_the_project_and_ends_with_report_and_viewer(tmp_path):
    out = tmp_path / "demo"
    # an interrupted earlier demo left an unfinished section: the demo resumes, no --overwrite
    (out / "section.partial").mkdir(parents=True)
    # 2,048 x 512 px: four sessions of 512 px, each fits the paper's 512 x 338 px tile
    args = ["--quiet", "demo", "--out", str(out), "--size", "2048x512", "--train-minutes", "0.05"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    for name in ("bse.png", "eds_rgb.png", "truth.png", "zoom.png"):
        png = out / "previews" / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert "Olivine crystals" in res.output and "Previews" in res.output
    assert "max_minutes: 0.05" in (out / "project.yaml").read_text()
    for name in (
        "mask.tif",
        "model.pt",
        "prob.tif",
        "calibration.json",
        "mgnum.tif",
        "catalogue/crystals.gpkg",
        "site/tiles/prob/0/0/0.png",
        "site/tiles/mgnum/0/0/0.png",
        "site/data/crystals.js",
        "report.html",
    ):
        assert (out / name).is_file(), name
    run = json.loads((out / "run.json").read_text())
    assert set(run["last_run"].values()) == {"ran"} and "train" in run["last_run"]
    last = res.output.strip().splitlines()[-3:]
    assert last[0] == f"Report: {(out / 'report.html').resolve()}"
    assert last[1].startswith("Viewer: ") and last[1].endswith("site/index.html")
    assert last[2].startswith("Serve it with: olmap serve")
    # again: the section is reused and every stage is up to date
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "Reusing the synthetic section" in res.output
    assert "Nothing to do: every stage is up to date." in res.output
    # a folder that is not a demo is refused
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("x")
    res = runner.invoke(app, ["demo", "--out", str(tmp_path / "mine")])
    assert res.exit_code != 0 and "holds no olmap demo" in str(res.exception)


def test_synth_section_reads_a_config_file_and_options_override_it(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("width: 300\nheight: 260\nsessions: 1\nseed: 5\n")
    out = tmp_path / "sec"
    res = runner.invoke(
        app, ["--quiet", "synth", "section", str(out), "--config", str(cfg), "--sessions", "2"]
    )
    assert res.exit_code == 0, res.output
    assert raster_info(out / "bse.tif").shape == (260, 300)
    assert len(pd.read_csv(out / "sessions.csv")) == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text("sesions: 2\n")
    res = olmap("synth", "section", str(tmp_path / "x"), "--config", str(bad))
    assert res.returncode == 1 and "bad.yaml: sesions: Extra inputs" in res.stderr


def test_info_reads_plain_images_with_a_pixel_size(tmp_path, section_dir):
    import json

    from PIL import Image

    png = tmp_path / "tile.png"
    Image.fromarray(np.zeros((338, 512), np.uint8)).save(png)
    res = runner.invoke(app, ["info", str(png)])
    assert res.exit_code == 0 and "pixel size: unknown" in res.output
    res = runner.invoke(app, ["info", str(png), "--pixel-size", "0.5", "--json"])
    rec = json.loads(res.output)
    assert rec["pixel_size_um"] == 0.5 and rec["extent_um"] == [0.0, 0.0, 256.0, 169.0]
    res = runner.invoke(app, ["info", str(section_dir / "eds.tif"), "--json"])
    assert json.loads(res.output)["band_names"] == ["Mg", "Ca", "Al", "Fe", "Si"]
    res = olmap("info", str(tmp_path / "missing.tif"))
    assert res.returncode == 1 and "missing.tif: raster not found" in res.stderr

"""``olmap run`` end to end on small synthetic sections, as a user calls it (shared/CLI.md)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import geopandas as gpd
import pytest
import yaml

from olmap.segment.job import synthetic_init_file
from olmap.synth.config import SynthConfig
from olmap.synth.section import generate_section
from tests.pipeline.test_config import write_project

from ..conftest import run_olmap as olmap

#: cpu-quick cut down to seconds: two epochs of two small batches.
TINY_TRAIN = {
    "config": "cpu-quick",
    "steps_per_epoch": 2,
    "max_epochs": 2,
    "probe_epochs": 0,
    "batch_size": 2,
    "crop": [96, 96],
    "device": "cpu",
}
ALL = ["masks", "dataset", "train", "predict", "evaluate", "calibrate", "mgmap", "crystals"]


def statuses(out: Path) -> dict[str, str]:
    return json.loads((out / "run.json").read_text())["last_run"]


@pytest.fixture(scope="module")
def first_run(section_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project on the 1,024² section, run once from its folder."""
    work = tmp_path_factory.mktemp("run")
    write_project(
        work,
        section_dir,
        inputs={"reference": str(section_dir / "truth" / "phases.tif")},
        dataset={"tile": "256x256"},
        train=TINY_TRAIN,
        predict={"window": 512, "stride": 256},
    )
    res = olmap("run", "project.yaml", cwd=work)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().splitlines()[-3].startswith("Report: ")
    return work


def test_run_writes_every_stage_provenance_and_report(first_run: Path) -> None:
    out = first_run / "results"
    assert statuses(out) == {name: "ran" for name in [*ALL, "tiles", "report"]}
    for name in (
        "mask.tif", "dataset/manifest.csv", "model.pt", "model.curves.png", "prob.tif",
        "pred_mask.tif", "evaluation.json", "evaluation.reference.json", "calibration.json",
        "mgnum.tif", "catalogue/crystals.gpkg", "catalogue/crystals.csv", "site/index.html",
        "report.html", "stage-params/train.yaml", "stage-params/crystals.yaml",
    ):  # fmt: skip
        assert (out / name).exists(), name
    run = json.loads((out / "run.json").read_text())
    assert run["versions"]["olmap"] and run["versions"]["torch"] and run["versions"]["gdal"]
    assert run["config"]["train"]["steps_per_epoch"] == 2  # the project's value
    assert run["config"]["train"]["optimizer"] == "adamw"  # from the cpu-quick base
    assert len(run["inputs"]["bse"]["blake2b"]) == 32
    for name in ALL:
        stage = run["stages"][name]
        assert stage["wall_s"] > 0 and stage["peak_rss_mb"] > 50, name
        assert stage["command"].startswith("olmap "), name
        assert set(stage["outputs"]) and set(stage["input_hashes"]) == set(stage["inputs"])
    # the recorded commands run each stage alone: same catalogue from the same inputs
    command = run["stages"]["crystals"]["command"].replace(
        str(out / "catalogue"), str(first_run / "alone")
    )
    res = subprocess.run(
        [sys.executable, "-m", "olmap", *command.split()[1:]],
        capture_output=True,
        text=True,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    alone = gpd.read_file(first_run / "alone" / "crystals.gpkg", layer="crystals")
    ran = gpd.read_file(out / "catalogue" / "crystals.gpkg", layer="crystals")
    assert len(alone) == len(ran) > 10
    assert alone["area_um2"].sum() == ran["area_um2"].sum()
    # the report: self-contained, with scores that are the evaluation's
    html = (out / "report.html").read_text()
    evaluation = json.loads((out / "evaluation.reference.json").read_text())
    test_iou = evaluation["splits"]["test"]["classes"]["olivine"]["iou"]
    assert f"{test_iou:.3f}" in html and "test sessions" in html
    assert html.count("data:image/png;base64,") >= 5  # curves, calibration, map, 2 histograms
    assert re.search(r'<a href="site/index.html">', html)
    assert 'href="run.json"' in html and 'href="stage-params/"' in html
    assert "clinopyroxene" in html and "<script" not in html
    for href in re.findall(r'href="([^"#]+)"', html):
        assert (out / href).exists(), href


def test_rerun_skips_every_stage_and_a_change_reruns_only_what_follows(first_run: Path) -> None:
    out = first_run / "results"
    res = olmap("run", "project.yaml", cwd=first_run)
    assert res.returncode == 0, res.stderr
    assert set(statuses(out).values()) == {"skipped (up to date)"}
    assert "Nothing to do: every stage is up to date." in res.stdout
    project = yaml.safe_load((first_run / "project.yaml").read_text())
    project["crystals"] = {"min_area_um2": 200}
    (first_run / "project.yaml").write_text(yaml.safe_dump(project))
    res = olmap("run", "project.yaml", cwd=first_run)
    assert res.returncode == 0, res.stderr
    ran = {k for k, v in statuses(out).items() if v == "ran"}
    assert ran == {"crystals", "tiles", "report"}
    cat = gpd.read_file(out / "catalogue" / "crystals.gpkg", layer="crystals")
    assert cat["area_um2"].min() >= 200
    res = olmap("run", "project.yaml", "--stage", "predict", "--force", cwd=first_run)
    assert res.returncode == 0, res.stderr
    assert statuses(out)["predict"] == "ran" and statuses(out)["crystals"] == "not selected"
    # without EPMA: no calibration, and the report no longer shows the earlier one
    del project["inputs"]["epma"]
    (first_run / "project.yaml").write_text(yaml.safe_dump(project))
    res = olmap("run", "project.yaml", cwd=first_run)
    assert res.returncode == 0, res.stderr
    assert "calibrate" not in statuses(out) and statuses(out)["crystals"] == "ran"
    html = (out / "report.html").read_text()
    assert "No calibration in this run" in html and 'href="calibration.json"' not in html
    assert 'href="mgnum.tif"' not in html and 'href="model.pt"' in html
    # another project writing into the same folder is refused
    (first_run / "other.yaml").write_text(yaml.safe_dump(project))
    res = olmap("run", "other.yaml", cwd=first_run)
    assert res.returncode == 1 and "results of another project file" in res.stderr


def test_recorded_commands_reproduce_the_stages(first_run: Path, tmp_path: Path) -> None:
    out = first_run / "results"
    run = json.loads((out / "run.json").read_text())
    line = run["stages"]["evaluate"]["command"]
    assert line.count(" && ") == 1  # against the labels and against the reference
    line = line.replace(str(out / "evaluation"), str(tmp_path / "evaluation"))
    res = subprocess.run(
        ["bash", "-c", line.replace("olmap ", f"{sys.executable} -m olmap ")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    for name in ("evaluation.json", "evaluation.reference.json"):
        again = json.loads((tmp_path / name).read_text())["overall"]["classes"]["olivine"]
        ran = json.loads((out / name).read_text())["overall"]["classes"]["olivine"]
        assert again["iou"] == ran["iou"]


def test_another_section_with_model_skips_training(tmp_path: Path) -> None:
    section = tmp_path / "other"
    generate_section(section, SynthConfig(width=768, height=512, seed=5, sessions=2))
    (tmp_path / "models").mkdir()
    model = tmp_path / "models" / "model.pt"
    # A model that segments: the shipped synthetic initialisation (an olmap checkpoint). The
    # 4-step model of ``first_run`` found olivine on this section only by chance, so the test
    # failed whenever its training labels changed (issue 22 changed the EDS rules).
    model.write_bytes(synthetic_init_file("deeplabv3_mobilenet_v3_large").read_bytes())
    write_project(tmp_path / "p", section, predict={"window": 512, "stride": 256})
    # --model relative to the current folder, not to the project file's
    res = olmap("run", "p/project.yaml", "--model", "models/model.pt", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    out = tmp_path / "p" / "results"
    assert "dataset" not in statuses(out) and "train" not in statuses(out)
    assert not (out / "model.pt").exists() and not (out / "dataset").exists()
    cat = gpd.read_file(out / "catalogue" / "crystals.gpkg", layer="crystals")
    assert len(cat) > 0 and cat["mg_mean"].notna().any()
    run = json.loads((out / "run.json").read_text())
    assert run["stages"]["predict"]["inputs"]["model"] == str(model.resolve())
    html = (out / "report.html").read_text()
    assert "Model reused, not trained in this run" in html
    res = olmap("run", "project.yaml", "--model", str(model), cwd=tmp_path / "p")
    assert res.returncode == 0, res.stderr
    assert set(statuses(out).values()) == {"skipped (up to date)"}


def test_run_refuses_results_it_did_not_record(tmp_path: Path, section_dir: Path) -> None:
    write_project(tmp_path, section_dir, train=TINY_TRAIN)
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "mask.tif").write_text("someone's mask")
    res = olmap("run", "project.yaml", cwd=tmp_path)
    assert res.returncode == 1
    assert "mask.tif: exists, but" in res.stderr and "--force" in res.stderr
    assert (tmp_path / "results" / "mask.tif").read_text() == "someone's mask"
    res = olmap("run", "project.yaml", "--stage", "tiles", cwd=tmp_path)
    assert res.returncode == 1 and "stage tiles: its input" in res.stderr
    res = olmap("run", "project.yaml", "--stage", "plot", cwd=tmp_path)
    assert res.returncode == 1 and "--stage plot: unknown stage" in res.stderr

"""Project files of ``olmap run``: validated, resolved and checked before any work."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from olmap.errors import InputError
from olmap.pipeline.config import builtin_configs, config_reference, load_project


def write_project(folder: Path, section: Path, **sections) -> Path:
    """A project file in ``folder`` on the synthetic section (relative paths)."""
    rel = Path("..") / section.name if section.parent == folder.parent else section
    data = {
        "name": "test section",
        "out": "results",
        "inputs": {
            "bse": str(rel / "bse.tif"),
            "eds": str(rel / "eds.tif"),
            "sessions": str(rel / "sessions.csv"),
            "epma": str(rel / "epma.csv"),
            "standards": str(rel / "standards.csv"),
        },
    }
    for key, value in sections.items():
        if value is None:
            data.pop(key, None)
        elif isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "project.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_demo_project_is_valid_and_resolves_relative_to_its_folder(tmp_path, section_dir):
    (tmp_path / "section").symlink_to(section_dir, target_is_directory=True)
    path = tmp_path / "project.yaml"
    path.write_text((builtin_configs() / "demo.yaml").read_text())
    project = load_project(path)
    assert project.out == tmp_path.resolve()
    assert project.inputs["bse"] == (tmp_path / "section" / "bse.tif").resolve()
    assert project.inputs["reference"].name == "phases.tif"
    assert project.rules == builtin_configs() / "rules" / "olivine.yaml"
    # the base file's values, overridden by the section's keys
    assert project.config.train.architecture == "deeplabv3_mobilenet_v3_large"  # cpu-quick
    assert project.config.train.max_minutes == 6  # demo.yaml
    assert project.config.train.augment.gain_jitter == 0.08  # cpu-quick, nested
    assert project.config.predict.stride == 1024
    assert project.config.crystals.crops and project.config.crystals.min_area_um2 == 100
    assert project.model is None


def test_config_reference_names_and_paths(tmp_path):
    assert config_reference("cpu-quick", "train", tmp_path).name == "cpu-quick.yaml"
    assert config_reference("my.yaml", "train", tmp_path) == tmp_path / "my.yaml"
    assert config_reference("sub/x", "rules", tmp_path) == tmp_path / "sub" / "x"
    built_in = r"cpu-quick, ct-paper, ct-quick, paper"
    with pytest.raises(InputError, match=rf"no built-in train file 'fast'.*{built_in}"):
        config_reference("fast", "train", tmp_path)


def test_eds_as_element_files_and_model_override(tmp_path, section_dir):
    path = write_project(
        tmp_path / "p",
        section_dir,
        inputs={"eds": [f"Mg={section_dir / 'eds.tif'}", f"Ca={section_dir / 'eds.tif'}"]},
    )
    project = load_project(path)
    assert project.eds == [f"Mg={section_dir / 'eds.tif'}", f"Ca={section_dir / 'eds.tif'}"]
    assert {"eds:Mg", "eds:Ca"} <= set(project.inputs)
    model = tmp_path / "m.pt"
    model.write_bytes(b"x")
    assert load_project(path, model=model).model == model.resolve()


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        ({"trian": {"lr": 0.1}}, r"project\.yaml: trian: Extra inputs are not permitted"),
        ({"train": {"lrr": 0.1}}, r"train\.lrr: Extra inputs are not permitted"),
        ({"predict": {"window": "big"}}, r"predict\.window: Input should be a valid integer"),
        ({"predict": {"threshold": 1.5}}, r"predict\.threshold: Input should be less than 1"),
        ({"predict": {"threshold": 0}}, r"predict\.threshold: Input should be greater than 0"),
        ({"dataset": {"min_labelled": 2}}, r"dataset\.min_labelled: .*less than or equal to 1"),
        ({"dataset": {"tile": "big"}}, r"dataset\.tile: size must look like WIDTHxHEIGHT"),
        ({"inputs": {"epma": "nowhere.csv"}}, r"inputs\.epma: file not found: .*nowhere\.csv"),
        ({"inputs": None}, r"inputs: missing"),
        ({"masks": {"rules": "granite"}}, r"no built-in rules file 'granite'"),
        ({"train": {"config": "fast"}}, r"train\.config: no built-in train file 'fast'"),
        ({"crystals": {"classes": "missing.yaml"}}, r"crystals\.classes: file not found"),
        ({"inputs": {"eds": []}}, r"inputs\.eds: needed to make training labels"),
        ({"inputs": {"sessions": None}}, r"inputs\.standards: needs inputs\.sessions"),
        ({"train": {"init": "start.pt"}}, r"train\.init: checkpoint not found: .*/p/start\.pt"),
    ],
)
def test_bad_project_files_fail_with_one_line_before_any_work(
    tmp_path, section_dir, sections, message
):
    path = write_project(tmp_path / "p", section_dir, **sections)
    with pytest.raises(InputError, match=message):
        load_project(path)
    res = subprocess.run(
        [sys.executable, "-m", "olmap", "run", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("olmap: error:"), res.stderr
    assert str(path) in lines[0]
    assert not (tmp_path / "p" / "results").exists()  # nothing was started


def test_yaml_syntax_and_unreadable_sessions(tmp_path, section_dir):
    path = write_project(tmp_path / "p", section_dir)
    path.write_text(path.read_text() + "predict: [window\n")
    with pytest.raises(InputError, match=r"project\.yaml: line \d+: YAML syntax error"):
        load_project(path)
    bad = tmp_path / "sessions.csv"
    bad.write_text("session,x0_um,y0_um,x1_um,y1_um,split\n1,0,0,10,10,holdout\n")
    path = write_project(tmp_path / "q", section_dir, inputs={"sessions": str(bad)})
    with pytest.raises(InputError, match=r"project\.yaml: .*sessions\.csv: line 2: split"):
        load_project(path)


def test_empty_sections_take_defaults_and_paths_in_the_file_are_relative_to_it(
    tmp_path, section_dir
):
    path = write_project(tmp_path / "p", section_dir, train={"init": "start.pt"})
    (tmp_path / "p" / "start.pt").write_bytes(b"x")
    path.write_text(path.read_text() + "predict:\ntiles:\n")
    project = load_project(path)
    assert project.config.predict.window == 2048 and project.config.tiles.backend == "vips"
    assert project.config.train.init == str((tmp_path / "p" / "start.pt").resolve())


def test_checks_that_need_the_input_files(tmp_path, section_dir):
    sessions = tmp_path / "sessions.csv"
    sessions.write_text("session,x0_um,y0_um,x1_um,y1_um,split\n1,0,0,512,1024,train\n")
    path = write_project(tmp_path / "p", section_dir, inputs={"sessions": str(sessions)})
    with pytest.raises(InputError, match=r"sessions\.csv: no val session, needed to train"):
        load_project(path)
    model = tmp_path / "m.pt"
    model.write_bytes(b"x")
    assert load_project(path, model=model).model == model  # no training: no val needed
    classes = tmp_path / "classes.yaml"
    text = (builtin_configs() / "classes" / "olivine.yaml").read_text()
    classes.write_text(text.replace("area_um2", "volume_um3", 1))
    path = write_project(tmp_path / "q", section_dir, crystals={"classes": str(classes)})
    with pytest.raises(InputError, match=r"project\.yaml: .*class rules read volume_um3"):
        load_project(path)

"""Masks read through their class list, and BSE images on the scale a result was made for.

A 9-class label map (1 = glass, 3 = olivine) once gave mg# maps and catalogues of glass, and
BSE of another bit depth gave mg# 1.000 everywhere or 57x more "cracks", all without a word.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from olmap.cli.main import app
from olmap.errors import InputError
from olmap.io.raster import raster_info, read_raster, write_raster

from ..conftest import CONFIGS

runner = CliRunner()


def olmap(*args: str | Path) -> str:
    """Run ``olmap ARGS`` in-process; the user error it stopped with (``""`` on success)."""
    res = runner.invoke(app, [str(a) for a in args])
    if res.exit_code == 0:
        return ""
    assert isinstance(res.exception, InputError), res.output
    return str(res.exception)


def rewrite(src: Path, out: Path, values: np.ndarray, *, tags: dict | None = None) -> Path:
    """``values`` on the grid of ``src``."""
    info = raster_info(src)
    write_raster(out, values, pixel_size_um=info.pixel_size_um, tags=tags)
    return out


@pytest.fixture(scope="module")
def results(section_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """calibrate, mgmap and crystals on the truth's binary olivine mask."""
    out = tmp_path_factory.mktemp("binary")
    s = section_dir
    mask = s / "truth" / "olivine.tif"
    assert not olmap(
        "calibrate", "--bse", s / "bse.tif", "--mask", mask, "--profiles", s / "epma.csv",
        "--out", out / "calibration.json",
    )  # fmt: skip
    assert not olmap(
        "mgmap", "--bse", s / "bse.tif", "--mask", mask,
        "--calibration", out / "calibration.json", "--out", out / "mgnum.tif",
    )  # fmt: skip
    assert not olmap("crystals", "--bse", s / "bse.tif", "--mask", mask, "--out", out / "cat")
    return out


def test_a_label_map_gives_the_results_of_its_olivine_class(
    section_dir: Path, results: Path, tmp_path: Path
) -> None:
    s, labels = section_dir, section_dir / "truth" / "phases.tif"
    assert raster_info(labels).tags["classes"].startswith("0=epoxy,1=glass,")  # olivine is 3
    assert not olmap(
        "calibrate", "--bse", s / "bse.tif", "--mask", labels, "--profiles", s / "epma.csv",
        "--out", tmp_path / "calibration.json",
    )  # fmt: skip
    fit = json.loads((tmp_path / "calibration.json").read_text())
    expected = json.loads((results / "calibration.json").read_text())
    assert (fit["slope"], fit["intercept"]) == (expected["slope"], expected["intercept"])

    assert not olmap(
        "mgmap", "--bse", s / "bse.tif", "--mask", labels,
        "--calibration", results / "calibration.json", "--out", tmp_path / "mgnum.tif",
    )  # fmt: skip
    assert np.array_equal(
        read_raster(tmp_path / "mgnum.tif"), read_raster(results / "mgnum.tif"), equal_nan=True
    )

    assert not olmap("crystals", "--bse", s / "bse.tif", "--mask", labels, "--out", tmp_path / "c")
    got, want = (pd.read_csv(p / "crystals.csv") for p in (tmp_path / "c", results / "cat"))
    pd.testing.assert_frame_equal(got, want)

    # another class by name: the glass is one large piece of this section, not its olivine
    assert not olmap(
        "crystals", "--bse", s / "bse.tif", "--mask", labels, "--class", "glass",
        "--out", tmp_path / "glass",
    )  # fmt: skip
    glass = pd.read_csv(tmp_path / "glass" / "crystals.csv")
    assert glass["area_um2"].sum() != pytest.approx(want["area_um2"].sum(), rel=0.05)


def test_a_class_not_in_the_list_is_refused(section_dir: Path, tmp_path: Path) -> None:
    s = section_dir
    line = olmap(
        "crystals", "--bse", s / "bse.tif", "--mask", s / "truth" / "phases.tif",
        "--class", "garnet", "--out", tmp_path / "c",
    )  # fmt: skip
    assert "no class 'garnet'" in line and "3=olivine" in line
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize("command", ["calibrate", "mgmap", "crystals"])
def test_a_label_map_without_its_class_list_is_refused(
    command: str, section_dir: Path, results: Path, tmp_path: Path
) -> None:
    s = section_dir
    bare = rewrite(s / "bse.tif", tmp_path / "labels.tif", read_raster(s / "truth" / "phases.tif"))
    args = {
        "calibrate": ["--profiles", s / "epma.csv", "--out", tmp_path / "o.json"],
        "mgmap": ["--calibration", results / "calibration.json", "--out", tmp_path / "o.tif"],
        "crystals": ["--out", tmp_path / "o"],
    }[command]
    line = olmap(command, "--bse", s / "bse.tif", "--mask", bare, *args)
    assert str(bare) in line and "without a class list may hold only 0 and 1" in line
    assert [p.name for p in tmp_path.iterdir()] == ["labels.tif"]


@pytest.mark.parametrize(
    ("dtype", "message"),
    [
        ("int8", "int8 BSE, but"),  # once mg# 1.000 everywhere
        ("uint16", "uint16 BSE, but"),  # the same image on a 257x larger scale
        ("float32", "float32 BSE, but"),
    ],
)
def test_mgmap_refuses_bse_of_another_type_than_the_calibrations(
    dtype: str, message: str, section_dir: Path, results: Path, tmp_path: Path
) -> None:
    s = section_dir
    grey = read_raster(s / "bse.tif")
    scaled = {
        "int8": (grey.astype(np.int16) - 128).astype(np.int8),
        "uint16": grey.astype(np.uint16) * 257,
        "float32": grey.astype(np.float32) * 1000,
    }[dtype]
    bse = rewrite(s / "bse.tif", tmp_path / "bse.tif", scaled)
    line = olmap(
        "mgmap", "--bse", bse, "--mask", s / "truth" / "olivine.tif",
        "--calibration", results / "calibration.json", "--out", tmp_path / "mg.tif",
    )  # fmt: skip
    assert line.startswith(f"{bse}: {message}")
    assert not (tmp_path / "mg.tif").exists()


def test_mgmap_refuses_a_bse_image_the_calibration_maps_outside_0_1(
    section_dir: Path, results: Path, tmp_path: Path
) -> None:
    """Same type, but a contrast the calibration was not made on (a quarter of it)."""
    s = section_dir
    bse = rewrite(s / "bse.tif", tmp_path / "bse.tif", read_raster(s / "bse.tif") // 4)
    line = olmap(
        "mgmap", "--bse", bse, "--mask", s / "truth" / "olivine.tif",
        "--calibration", results / "calibration.json", "--out", tmp_path / "mg.tif",
    )  # fmt: skip
    assert "outside 0-1" in line and not (tmp_path / "mg.tif").exists()


def test_crack_threshold_is_in_8_bit_grey_whatever_the_bit_depth(
    section_dir: Path, tmp_path: Path
) -> None:
    """An absolute crack level (``ignore.bse_below``) is in 8-bit grey levels, x 257 on 16-bit
    BSE; images without such a scale are refused (the relative level takes any dtype)."""
    s, rules = section_dir, CONFIGS / "rules" / "olivine-paper.yaml"
    grey = read_raster(s / "bse.tif")
    deep = rewrite(s / "bse.tif", tmp_path / "bse16.tif", grey.astype(np.uint16) * 257)
    for name, bse in (("m8.tif", s / "bse.tif"), ("m16.tif", deep)):
        assert not olmap("masks", "--eds", s / "eds.tif", "--rules", rules, "--bse", bse,
                         "--out", tmp_path / name)  # fmt: skip
    assert np.array_equal(read_raster(tmp_path / "m8.tif"), read_raster(tmp_path / "m16.tif"))
    assert (read_raster(tmp_path / "m8.tif") == 255).any()  # some cracks to compare

    signed = rewrite(s / "bse.tif", tmp_path / "bse_i8.tif", (grey // 2).astype(np.int8))
    line = olmap(
        "masks", "--eds", s / "eds.tif", "--rules", rules, "--bse", signed,
        "--out", tmp_path / "m_i8.tif",
    )  # fmt: skip
    assert "int8 BSE, but ignore.bse_below" in line
    assert not (tmp_path / "m_i8.tif").exists()

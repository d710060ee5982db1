"""``olmap masks``, ``olmap dataset`` and ``olmap eds`` as users call them (shared/CLI.md)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from olmap.io.raster import class_names, raster_info, read_raster, write_raster

from ..conftest import run_olmap as olmap

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture()
def workdir(section_dir: Path, tmp_path: Path) -> Path:
    """A user's folder: the section's files and the repository's configs/."""
    for name in ("bse.tif", "eds.tif", "sessions.csv"):
        shutil.copy(section_dir / name, tmp_path / name)
    (tmp_path / "configs").symlink_to(REPO / "configs")
    return tmp_path


def test_masks_and_dataset_as_documented(workdir: Path) -> None:
    res = olmap(
        "masks", "--eds", "eds.tif", "--rules", "configs/rules/olivine.yaml", "--out", "mask.tif",
        "--bse", "bse.tif", cwd=workdir,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "olivine" in res.stdout and "Pixels matching more than one class: 0" in res.stdout
    report = json.loads((workdir / "mask.report.json").read_text())
    assert report["pixels"]["olivine"] > 0 and report["ignored_cracks"] > 0
    assert class_names(raster_info(workdir / "mask.tif"))[1] == "olivine"

    # The fixture's sessions are 256 µm wide: smaller tiles than the default 512 x 338.
    res = olmap(
        "dataset", "--bse", "bse.tif", "--labels", "mask.tif", "--sessions", "sessions.csv",
        "--out", "dataset/", "--tile", "192x128", cwd=workdir,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "Training tiles per session" in res.stdout and "olivine %" in res.stdout
    for name in ("image.npy", "labels.npy", "manifest.csv", "sessions.csv", "dataset.json"):
        assert (workdir / "dataset" / name).exists(), name

    res = olmap(
        "dataset", "--bse", "bse.tif", "--labels", "mask.tif", "--sessions", "sessions.csv",
        "--out", "dataset/", "--tile", "192x128", cwd=workdir,
    )  # fmt: skip
    assert res.returncode == 1 and "pass --overwrite" in res.stderr


def test_masks_from_one_file_per_element(workdir: Path) -> None:
    info = raster_info(workdir / "eds.tif")
    for band, el in enumerate(info.band_names, start=1):
        data = read_raster(workdir / "eds.tif", bands=band)
        write_raster(workdir / f"eds_{el}.tif", data, transform=info.transform)
    shutil.copy(REPO / "configs" / "rules" / "olivine.yaml", workdir / "RULES.yaml")
    res = olmap(
        "masks", "--eds", "Mg=eds_Mg.tif", "--eds", "ca=eds_Ca.tif", "--eds", "Al Ka=eds_Al.tif",
        "--eds", "Fe K series=eds_Fe.tif", "--eds", "Si=eds_Si.tif",
        "--rules", "RULES.yaml", "--out", "mask.tif", cwd=workdir,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr  # vendor spellings of the elements understood
    assert "give --bse to apply it" in res.stderr  # crack masking needs BSE: said, not silent


def test_multiclass_prints_per_class_counts(workdir: Path) -> None:
    res = olmap(
        "masks", "--eds", "eds.tif", "--rules", "configs/rules/basalt.yaml", "--out", "m.tif",
        "--bse", "bse.tif", "--reference", str(workdir / "bse.tif"), cwd=workdir,
    )  # fmt: skip
    # bse.tif has no class list: refused before any work.
    assert res.returncode == 1 and "no class list" in res.stderr
    assert not (workdir / "m.tif").exists()
    res = olmap(
        "masks", "--eds", "eds.tif", "--rules", "configs/rules/basalt.yaml", "--out", "m.tif",
        "--bse", "bse.tif", cwd=workdir,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    report = json.loads((workdir / "m.report.json").read_text())
    labels = read_raster(workdir / "m.tif", bands=1)
    codes = class_names(raster_info(workdir / "m.tif"))
    for code, name in codes.items():
        n = int((labels == code).sum())
        assert report["pixels"][name] == n
        assert f"{n:,}" in res.stdout, name
    assert "orthopyroxene" in res.stdout and "Rule overlaps" in res.stdout


@pytest.mark.parametrize(
    ("setup", "args", "message"),
    [
        ("bad_rule", ["--rules", "bad.yaml"], "bad.yaml: classes.0.rules: cannot read rule"),
        ("unknown_element", ["--rules", "bad.yaml"], "'Zz', which is not an element symbol"),
        ("missing_element", ["--rules", "bad.yaml"], "needs K, but the EDS data"),
        ("nan_counts", ["--rules", "configs/rules/olivine.yaml"], "NaN/infinite counts"),
        ("negative", ["--rules", "configs/rules/olivine.yaml"], "negative counts"),
        ("shifted_bse", ["--rules", "configs/rules/olivine.yaml"], "must share one grid"),
        ("no_match", ["--rules", "bad.yaml"], "matched any class"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(
    workdir: Path, setup: str, args: list[str], message: str
) -> None:
    eds = "eds.tif"
    rule = {
        "bad_rule": "classes:\n  - name: ol\n    rules: [Ca/Mg <> 0.1]\n",
        "unknown_element": "classes:\n  - name: ol\n    rules: [Zz/Mg < 0.1]\n",
        "missing_element": "classes:\n  - name: mica\n    rules: [K/Si > 0.1]\n",
        "no_match": "classes:\n  - name: ol\n    rules: [Mg > 60000]\n",
    }.get(setup)
    if rule:
        (workdir / "bad.yaml").write_text(rule)
    if setup in ("nan_counts", "negative"):
        stack = read_raster(workdir / "eds.tif").astype("float32")
        stack[0, 10, 20] = np.nan if setup == "nan_counts" else -1
        info = raster_info(workdir / "eds.tif")
        write_raster(
            workdir / "bad.tif", stack, transform=info.transform, band_names=info.band_names
        )
        eds = "bad.tif"
    bse = "bse.tif"
    if setup == "shifted_bse":
        info = raster_info(workdir / "bse.tif")
        write_raster(
            workdir / "shifted.tif",
            read_raster(workdir / "bse.tif", bands=1),
            transform=info.transform @ info.transform.translation(3, 0),
        )
        bse = "shifted.tif"
    res = olmap("masks", "--eds", eds, *args, "--out", "mask.tif", "--bse", bse, cwd=workdir)
    assert res.returncode == 1
    line = res.stderr.strip()
    assert line.startswith("olmap: error:") and "\n" not in line and message in line, line
    assert not (workdir / "mask.tif").exists()
    assert not list(workdir.glob("*.partial"))


def test_eds_and_masks_on_a_real_bruker_hypermap(tmp_path: Path) -> None:
    pytest.importorskip("rsciio", reason="optional extra olmap[bcf] (make test installs it)")
    from tests.realdata import bruker_dir

    bcf = bruker_dir() / "P45_the_default_job.bcf"
    res = olmap("eds", str(bcf), "--out", "eds.tif", "--bse-out", "bse.tif", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    info = raster_info(tmp_path / "eds.tif")
    assert info.shape == (75, 100) and "Si" in info.band_names
    (tmp_path / "silicate.yaml").write_text(
        "classes:\n  - name: aluminosilicate\n    rules: [Al/Si > 0.1, Si > 3]\n"
    )
    res = olmap(
        "masks",
        "--eds",
        "eds.tif",
        "--rules",
        "silicate.yaml",
        "--out",
        "m.tif",
        "--bse",
        "bse.tif",
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr
    stack = read_raster(tmp_path / "m.tif", bands=1)
    # The .bcf directly gives the same label map (maps computed in memory).
    res = olmap(
        "masks", "--eds", str(bcf), "--rules", "silicate.yaml", "--out", "m2.tif", cwd=tmp_path
    )
    assert res.returncode == 0, res.stderr
    np.testing.assert_array_equal(stack, read_raster(tmp_path / "m2.tif", bands=1))
    assert 0 < (stack == 1).mean() < 1


def test_overwrite_never_destroys_an_input(workdir: Path) -> None:
    before = (workdir / "eds.tif").read_bytes()
    res = olmap("masks", "--eds", "eds.tif", "--rules", "configs/rules/olivine.yaml",
                "--out", "eds.tif", "--overwrite", cwd=workdir)  # fmt: skip
    assert res.returncode == 1 and "output is an input" in res.stderr
    assert (workdir / "eds.tif").read_bytes() == before


def test_dataset_with_class_names_holding_spaces(workdir: Path) -> None:
    (workdir / "r.yaml").write_text(
        "classes:\n  - name: Fe-Ti oxide\n    rules: [Fe > 60, Si/Fe < 0.1]\n"
        "  - name: Mg olivine\n    rules: [Ca/Mg < 0.1, Al/Mg < 0.1, Mg > 30]\n"
    )
    res = olmap("masks", "--eds", "eds.tif", "--rules", "r.yaml", "--out", "m.tif", cwd=workdir)
    assert res.returncode == 0, res.stderr
    res = olmap("dataset", "--bse", "bse.tif", "--labels", "m.tif", "--sessions",
                "sessions.csv", "--out", "ds", "--tile", "128x128", cwd=workdir)  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "Fe-Ti oxide %" in res.stdout and "Mg olivine %" in res.stdout


def test_masks_from_a_folder_of_lab_exports_equal_the_stack(
    workdir: Path, section_dir: Path
) -> None:
    """Issue 22: the section's maps written as a lab exports them (tab-separated text, AZtec CSV
    with a separator ending each row, a TIFF), read by `olmap masks --eds FOLDER`, give the same
    labels as the stack; the section's own phase map scores them through a legend."""
    info = raster_info(workdir / "eds.tif")
    folder = workdir / "exports"
    folder.mkdir()
    layouts = {"Mg": "Mg.txt", "Ca": "Ca K series.csv", "Al": "Al Ka.csv", "Fe": "fe.tif",
               "Si": "Si K series.csv"}  # fmt: skip
    for band, el in enumerate(info.band_names, start=1):
        data = read_raster(workdir / "eds.tif", bands=band)
        name = layouts[el]
        if name.endswith(".tif"):
            write_raster(folder / name, data, pixel_size_um=info.pixel_size_um)
        else:
            sep, end = ("\t", "") if name.endswith(".txt") else (",", ",")
            lines = (sep.join(map(str, row)) + end for row in data.tolist())
            (folder / name).write_text("\n".join(lines) + "\n")
    write_raster(folder / "BSE.tif", np.zeros((4, 4), np.uint8), pixel_size_um=1.0)  # skipped
    phases = read_raster(section_dir / "truth" / "phases.tif", bands=1).astype(np.int16)
    write_raster(workdir / "lab_phases.tif", phases - 100, transform=info.transform)
    (workdir / "legend.yaml").write_text("-97: ol\n-95: opx\n-96: cpx\n-98: plag\n")
    base = ["--rules", "configs/rules/basalt.yaml", "--bse", "bse.tif"]
    res = olmap("masks", "--eds", "eds.tif", *base, "--out", "a.tif", cwd=workdir)
    assert res.returncode == 0, res.stderr
    res = olmap("masks", "--eds", "exports", *base, "--out", "b.tif", "--pixel-size",
                str(info.pixel_size_um), "--reference", "lab_phases.tif", "--legend",
                "legend.yaml", cwd=workdir)  # fmt: skip
    assert res.returncode == 0, res.stderr
    np.testing.assert_array_equal(
        read_raster(workdir / "a.tif", bands=1), read_raster(workdir / "b.tif", bands=1)
    )
    assert "IoU olivine vs reference: 0.9" in res.stdout  # legend "ol" scored as olivine
    assert "IoU orthopyroxene vs reference" in res.stdout
    report = json.loads((workdir / "b.report.json").read_text())
    assert report["units"] == "relative" and report["reference_levels"]["levels_counts"]["Si"] > 0
    assert report["reference_fractions"]["opx"]["olivine"] < 0.03

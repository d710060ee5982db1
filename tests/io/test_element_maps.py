"""Element maps as labs export them: folders of text/CSV matrices and images (issue 22)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from rasterio.windows import Window

from olmap.errors import InputError
from olmap.io.eds import open_eds
from olmap.io.element_maps import element_symbol, read_count_matrix
from olmap.io.raster import raster_info, read_raster, write_raster

from ..conftest import run_olmap as olmap


@pytest.mark.parametrize(
    ("name", "symbol"),
    [
        ("Mg", "Mg"), ("mg", "Mg"), ("MG", "Mg"), ("Mg K series", "Mg"), ("Mg Ka", "Mg"),
        ("MgKa", "Mg"), ("Mg_Ka1", "Mg"), ("Mg Kα", "Mg"), ("Fe L series", "Fe"), ("K Ka", "K"),
        ("eds_Si", "Si"), ("Cl Ka", "Cl"), ("BSE", None), ("SE", None), ("phases", None),
        ("Electron Image 1", None), ("Map Data 1 - Mg K series", "Mg"), ("Mg K series_1", "Mg"),
        ("Si Ka (1)", "Si"), ("Mg Kα1,2", "Mg"), ("EDS Layered Image 1", None), ("CK", "C"),
    ],
)  # fmt: skip
def test_vendor_element_names(name: str, symbol: str | None) -> None:
    assert element_symbol(name) == symbol


def counts(seed: int, shape=(6, 7)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 5000, shape).astype(np.float32)


def write_matrix(path: Path, values: np.ndarray, sep: str, trailing: bool = False) -> None:
    end = sep if trailing else ""
    rows = [sep.join(str(int(v)) for v in row) + end for row in values]
    path.write_text("\n".join(rows) + "\n")


def lab_folder(root: Path) -> tuple[Path, dict[str, np.ndarray]]:
    """One map per element in the layouts labs export, plus files that are not maps."""
    folder = root / "maps"
    folder.mkdir()
    maps = {e: counts(i) for i, e in enumerate(["Mg", "Ca", "Al", "Fe", "Si"])}
    write_matrix(folder / "Mg.txt", maps["Mg"], "\t")  # St Kitts / published text matrices
    write_matrix(folder / "Ca K series.csv", maps["Ca"], ",", trailing=True)  # AZtec CSV
    write_matrix(folder / "al.csv", maps["Al"], ";")
    write_raster(folder / "Fe Ka.tif", maps["Fe"].astype(np.uint16), pixel_size_um=1.0)
    write_raster(folder / "SiKa.tif", maps["Si"].astype(np.uint16), pixel_size_um=1.0)
    write_raster(folder / "BSE.tif", np.zeros((6, 7), np.uint8), pixel_size_um=1.0)
    (folder / "notes.md").write_text("not a map")
    return folder, maps


def test_folder_of_vendor_maps_reads_every_element(tmp_path: Path) -> None:
    folder, maps = lab_folder(tmp_path)
    eds = open_eds([folder])
    assert sorted(eds.elements) == sorted(maps)
    values, _ = eds.read(Window(0, 0, 7, 6), list(maps))
    for e, want in maps.items():
        np.testing.assert_array_equal(values[e], want)
    assert eds.notes == []  # the TIFFs carry a pixel size
    only = open_eds([folder], elements=["Mg", "Si"])
    assert only.elements == ("Mg", "Si")


def test_text_maps_without_pixel_size_say_so(tmp_path: Path) -> None:
    folder = tmp_path / "txt"
    folder.mkdir()
    for e in ("Mg", "Ca"):
        write_matrix(folder / f"{e}.txt", counts(3), "\t")
    eds = open_eds([folder])
    assert eds.transform.a == 1.0 and "pixel size unknown" in eds.notes[0]
    assert open_eds([folder], pixel_size_um=2.5).transform.a == 2.5
    assert open_eds([folder], pixel_size_um=2.5).notes == []


def test_aztec_trailing_separator_and_bad_matrices(tmp_path: Path) -> None:
    path = tmp_path / "Mg K series.csv"
    path.write_text("1,2,3,\n4,5,6,\n")
    np.testing.assert_array_equal(read_count_matrix(path), [[1, 2, 3], [4, 5, 6]])
    path.write_text("1,5;2;3;\n4;5;6,25;\n")  # decimal commas
    np.testing.assert_array_equal(read_count_matrix(path), [[1.5, 2, 3], [4, 5, 6.25]])
    path.write_text("1 2  3\n 4 5 6\n")
    np.testing.assert_array_equal(read_count_matrix(path), [[1, 2, 3], [4, 5, 6]])
    path.write_text("1,2,3\n4,5\n")
    with pytest.raises(InputError, match=r"Mg K series.csv: row 2 has no value in column 3"):
        read_count_matrix(path)
    path.write_text("1,2,x\n")
    with pytest.raises(InputError, match=r"Mg K series.csv: not a matrix of counts"):
        read_count_matrix(path)
    path.write_text("")
    with pytest.raises(InputError, match="empty file"):
        read_count_matrix(path)


def test_band_naming_another_element_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "maps"
    folder.mkdir()
    write_raster(folder / "Mg.tif", counts(1).astype(np.uint16), pixel_size_um=1.0,
                 band_names=["Ca K series"])  # fmt: skip
    with pytest.raises(InputError, match=r"Mg.tif: the file name says Mg but its band is .*Ca"):
        open_eds([folder])
    with pytest.raises(InputError, match=r"given as the Mg map, but its band is described"):
        open_eds([f"Mg={folder / 'Mg.tif'}", f"Ca={folder / 'Mg.tif'}"])


def test_folder_errors_name_the_problem(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "BSE.tif").write_bytes(b"")
    with pytest.raises(InputError, match="no element maps"):
        open_eds([empty])
    two = tmp_path / "two"
    two.mkdir()
    write_matrix(two / "Mg.txt", counts(1), "\t")
    write_matrix(two / "Mg K series.csv", counts(1), ",")
    with pytest.raises(InputError, match=r"two maps of Mg"):
        open_eds([two])
    sizes = tmp_path / "sizes"
    sizes.mkdir()
    write_matrix(sizes / "Mg.txt", counts(1), "\t")
    write_matrix(sizes / "Ca.txt", counts(1, (5, 7)), "\t")
    with pytest.raises(InputError, match="differ in size"):
        open_eds([sizes])
    with pytest.raises(InputError, match=r"no map of Fe"):
        open_eds([sizes], elements=["Fe"])


def test_olmap_eds_folder_writes_the_stack(tmp_path: Path) -> None:
    folder, maps = lab_folder(tmp_path)
    for p in folder.glob("*.tif"):
        p.unlink()  # text maps only: no pixel size anywhere
    res = olmap("eds", str(folder), "--out", "eds.tif", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "pixel size unknown" in res.stderr and res.stderr.count("\n") == 1
    info = raster_info(tmp_path / "eds.tif")
    assert info.band_names == ("Al", "Ca", "Mg") and info.dtype == "uint16"
    assert info.tags["pixel_size"].startswith("unknown")
    np.testing.assert_array_equal(read_raster(tmp_path / "eds.tif", bands=3), maps["Mg"])
    res = olmap("eds", str(folder), "--out", "eds2.tif", "--pixel-size", "2", cwd=tmp_path)
    assert res.returncode == 0 and "pixel size unknown" not in res.stderr
    assert raster_info(tmp_path / "eds2.tif").pixel_size_um == 2.0
    res = olmap("eds", str(folder), "--out", "eds2.tif", cwd=tmp_path)
    assert res.returncode == 1 and "--overwrite" in res.stderr


def test_outputs_inside_the_maps_folder(tmp_path: Path) -> None:
    """A label map written into the folder of maps is not read as a map on the next run."""
    lab_folder(tmp_path)
    (tmp_path / "r.yaml").write_text("classes: [{name: a, rules: [Mg > 0]}]\n")
    args = ["masks", "--eds", "maps", "--rules", "r.yaml", "--out", "maps/labels.tif"]
    assert olmap(*args, cwd=tmp_path).returncode == 0
    res = olmap(*args, "--overwrite", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    res = olmap(*args[:-1], "maps/Mg.txt", "--overwrite", cwd=tmp_path)
    assert res.returncode == 1 and "output is an input" in res.stderr


def test_stack_with_vendor_band_names(tmp_path: Path) -> None:
    names = ["Mg K series", "ca", "Al Ka", "FeKa", "Si"]
    data = np.stack([counts(i) for i in range(5)]).astype(np.uint16)
    write_raster(tmp_path / "eds.tif", data, pixel_size_um=1.0, band_names=names)
    eds = open_eds([tmp_path / "eds.tif"])
    assert eds.elements == ("Mg", "Ca", "Al", "Fe", "Si")
    values, _ = eds.read(Window(0, 0, 7, 6), ["Fe"])
    np.testing.assert_array_equal(values["Fe"], data[3])
    write_raster(tmp_path / "bad.tif", data[:2], pixel_size_um=1.0, band_names=["Mg", "BSE"])
    with pytest.raises(InputError, match="described by element names"):
        open_eds([tmp_path / "bad.tif"])

"""Finished outputs are checked before they are renamed: cut-short files of each type fail."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from olmap.io.raster import write_raster
from olmap.io.verify import DamagedFileError, verify_file, verify_tree


def _cut(path: Path, keep: float = 0.6) -> Path:
    """A copy of ``path`` cut short, as a full disk leaves it."""
    out = path.with_name("cut_" + path.name)
    data = path.read_bytes()
    end = int(len(data) * keep)
    end -= data[end - 1 : end] == b"\n"  # mid-line, as a full disk cuts a text
    out.write_bytes(data[:end])
    return out


def _files(tmp_path: Path) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    tif = write_raster(
        tmp_path / "a.tif", rng.random((700, 900), dtype=np.float32), pixel_size_um=1.0
    )
    (tmp_path / "a.json").write_text(json.dumps({"x": list(range(100))}))
    pd.DataFrame({"a": range(100)}).to_csv(tmp_path / "a.csv", index=False)
    np.save(tmp_path / "a.npy", rng.random((50, 50)))
    torch.save({"w": torch.ones(1000)}, tmp_path / "a.pt")
    pd.DataFrame({"a": range(1000)}).to_parquet(tmp_path / "a.parquet")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure()
    plt.plot([0, 1])
    fig.savefig(tmp_path / "a.png")
    plt.close(fig)
    with sqlite3.connect(tmp_path / "a.gpkg") as con:
        con.execute("create table t (x integer)")
        con.executemany("insert into t values (?)", [(i,) for i in range(5000)])
    return {p.suffix: p for p in [tif, *tmp_path.glob("a.*")]}


def test_whole_files_pass(tmp_path: Path) -> None:
    files = _files(tmp_path)
    assert set(files) >= {".tif", ".json", ".csv", ".npy", ".pt", ".parquet", ".png", ".gpkg"}
    for path in files.values():
        verify_file(path)


@pytest.mark.parametrize("suffix", [".tif", ".json", ".csv", ".npy", ".pt", ".parquet", ".png"])
def test_cut_short_files_fail(tmp_path: Path, suffix: str) -> None:
    cut = _cut(_files(tmp_path)[suffix])
    with pytest.raises(DamagedFileError):
        verify_file(cut)


def test_damaged_geopackage_fails(tmp_path: Path) -> None:
    with pytest.raises(DamagedFileError):
        verify_file(_cut(_files(tmp_path)[".gpkg"], keep=0.3))


def test_the_final_name_says_the_type(tmp_path: Path) -> None:
    """A partial file (``x.tif.partial``) is checked as what it will become."""
    cut = _cut(_files(tmp_path)[".tif"])
    verify_file(cut, "out.txt")  # text: nothing to check
    with pytest.raises(DamagedFileError, match=r"TIFF|block"):
        verify_file(cut, "out.tif")


def test_a_folder_names_its_damaged_file(tmp_path: Path) -> None:
    folder = tmp_path / "site"
    (folder / "tiles").mkdir(parents=True)
    (folder / "tiles" / "0.json").write_text('{"a": ')
    with pytest.raises(DamagedFileError, match=r"tiles/0\.json"):
        verify_tree(folder)

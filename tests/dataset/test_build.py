"""Training datasets cut from a synthetic section: tiles, splits by session, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from olmap.dataset.build import MANIFEST_COLUMNS, build_dataset
from olmap.errors import InputError, NotCoregisteredError
from olmap.io.eds import open_eds
from olmap.io.raster import raster_info, read_raster, write_raster
from olmap.masks.rules import load_rules
from olmap.masks.stream import build_label_map

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "rules"


@pytest.fixture(scope="module")
def mask(section_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dataset") / "mask.tif"
    build_label_map(
        open_eds([section_dir / "eds.tif"]),
        load_rules(CONFIGS / "olivine.yaml"),
        out,
        bse=section_dir / "bse.tif",
    )
    return out


@pytest.fixture(scope="module")
def dataset(section_dir: Path, mask: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ds") / "dataset"
    build_dataset(section_dir / "bse.tif", mask, section_dir / "sessions.csv", out, tile=(128, 192))
    return out


def test_tiles_lie_inside_their_session_and_take_its_split(dataset: Path, section_dir) -> None:
    manifest = pd.read_csv(dataset / "manifest.csv", dtype={"session": str})
    sessions = pd.read_csv(section_dir / "sessions.csv", dtype={"session": str})
    assert set(manifest["split"]) == {"train", "val", "test"}
    merged = manifest.merge(sessions, on="session", suffixes=("", "_s"))
    assert len(merged) == len(manifest)
    assert (merged["split"] == merged["split_s"]).all()
    # Inside the session rectangle, so no tile straddles two sessions (or two splits).
    assert (merged["x0_um"] >= merged["x0_um_s"]).all()
    assert (merged["x1_um"] <= merged["x1_um_s"]).all()
    assert (merged["y0_um"] >= merged["y0_um_s"]).all()
    assert (merged["y1_um"] <= merged["y1_um_s"]).all()
    assert manifest["tile_id"].tolist() == list(range(len(manifest)))
    assert list(manifest.columns) == [*MANIFEST_COLUMNS, "olivine_fraction"]


def test_tile_arrays_are_the_mosaic_windows(dataset: Path, section_dir: Path, mask: Path) -> None:
    manifest = pd.read_csv(dataset / "manifest.csv")
    bse = np.load(dataset / "image.npy", mmap_mode="r")
    labels = np.load(dataset / "labels.npy", mmap_mode="r")
    assert bse.shape == labels.shape == (len(manifest), 128, 192)
    full_bse = read_raster(section_dir / "bse.tif", bands=1)
    full_lab = read_raster(mask, bands=1)
    for row in manifest.itertuples():
        rows = slice(row.row_off, row.row_off + row.height)
        cols = slice(row.col_off, row.col_off + row.width)
        np.testing.assert_array_equal(bse[row.tile_id], full_bse[rows, cols])
        np.testing.assert_array_equal(labels[row.tile_id], full_lab[rows, cols])
        share = (full_lab[rows, cols] == 1).sum() / (full_lab[rows, cols] != 255).sum()
        assert row.olivine_fraction == pytest.approx(share, abs=1e-6)


def test_session_table_and_metadata(dataset: Path) -> None:
    manifest = pd.read_csv(dataset / "manifest.csv", dtype={"session": str})
    table = pd.read_csv(dataset / "sessions.csv", dtype={"session": str})
    assert table.set_index("session")["n_tiles"].to_dict() == (
        manifest.groupby("session").size().to_dict()
    )
    assert list(table.columns) == ["session", "split", "n_tiles", "olivine_pct", "ignore_pct"]
    meta = json.loads((dataset / "dataset.json").read_text())
    assert meta["classes"] == {"0": "unclassified", "1": "olivine", "255": "ignore"}
    assert (meta["tile_rows"], meta["tile_cols"], meta["n_tiles"]) == (128, 192, len(manifest))
    bse = np.load(dataset / "image.npy")
    train = bse[manifest["split"].to_numpy() == "train"].astype(float)
    assert meta["train_image_mean"] == pytest.approx(train.mean())
    assert meta["train_image_std"] == pytest.approx(train.std())
    for png in ("layout.png", "examples.png"):
        assert (dataset / png).stat().st_size > 10_000


def write_sessions(path: Path, rows: list[tuple]) -> Path:
    cols = ["session", "x0_um", "y0_um", "x1_um", "y1_um", "split"]
    pd.DataFrame(rows, columns=cols).to_csv(path, index=False)
    return path


def test_none_split_sessions_are_left_out(section_dir: Path, mask: Path, tmp_path: Path) -> None:
    sessions = write_sessions(
        tmp_path / "s.csv",
        [("a", 0, 0, 512, 1024, "train"), ("b", 512, 0, 1024, 1024, "none")],
    )
    summary = build_dataset(section_dir / "bse.tif", mask, sessions, tmp_path / "d")
    assert set(summary.manifest["session"]) == {"a"}
    assert (summary.manifest["x1_um"] <= 512).all()


def test_underlabelled_tiles_are_skipped(section_dir: Path, mask: Path, tmp_path: Path) -> None:
    labels = read_raster(mask, bands=1)
    labels[:, 512:] = 255  # no EDS on the right half
    partial = tmp_path / "partial.tif"
    write_raster(
        partial, labels, transform=raster_info(mask).transform, tags=raster_info(mask).tags
    )
    sessions = write_sessions(tmp_path / "s.csv", [("a", 0, 0, 1024, 1024, "train")])
    summary = build_dataset(
        section_dir / "bse.tif", partial, sessions, tmp_path / "d", tile=(256, 256)
    )
    assert summary.skipped == 8 and len(summary.manifest) == 8
    assert (summary.manifest["col_off"] < 512).all()


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([("a", 0, 0, 600, 1024, "train"), ("b", 500, 0, 1024, 1024, "test")], "overlap"),
        ([("a", 0, 0, 100, 100, "train")], "no 512x338 px tile fits"),
        ([("a", 0, 0, 1024, 1024, "training")], "split 'training' is not one of"),
        ([("a", 0, 0, 1024, 1024, "train"), ("a", 0, 0, 10, 10, "val")], "listed twice"),
        ([("a", 10, 0, 5, 1024, "train")], "x0_um < x1_um"),
    ],
)
def test_bad_sessions(section_dir: Path, mask: Path, tmp_path: Path, rows, message) -> None:
    sessions = write_sessions(tmp_path / "s.csv", rows)
    with pytest.raises(InputError, match=message) as info:
        build_dataset(section_dir / "bse.tif", mask, sessions, tmp_path / "d")
    assert str(sessions) in str(info.value)
    assert not (tmp_path / "d").exists() and not (tmp_path / "d.partial").exists()


def test_not_coregistered(section_dir: Path, tmp_path: Path) -> None:
    labels = tmp_path / "l.tif"
    write_raster(
        labels,
        np.zeros((64, 64), np.uint8),
        pixel_size_um=1.0,
        tags={"classes": "0=background,1=olivine"},
    )
    with pytest.raises(NotCoregisteredError):
        build_dataset(section_dir / "bse.tif", labels, section_dir / "sessions.csv", tmp_path / "d")


def test_sessions_without_tiles_are_named(section_dir: Path, mask: Path, tmp_path: Path) -> None:
    sessions = write_sessions(
        tmp_path / "s.csv",
        [
            ("wide", 0, 0, 700, 1024, "train"),
            ("narrow", 700, 0, 1024, 1024, "test"),
            ("away", 5000, 0, 6000, 1024, "val"),
        ],
    )
    summary = build_dataset(section_dir / "bse.tif", mask, sessions, tmp_path / "d")
    assert set(summary.manifest["session"]) == {"wide"}
    assert any("session narrow is 324x1024 px, smaller than" in n for n in summary.notes)
    assert any("session away lies outside the image" in n for n in summary.notes)
    table = pd.read_csv(tmp_path / "d" / "sessions.csv", dtype={"session": str})
    assert table["session"].tolist() == ["wide", "narrow", "away"]
    assert table["n_tiles"].tolist()[1:] == [0, 0]
    with pytest.raises(InputError, match="session narrow is 324x1024 px"):
        narrow = write_sessions(tmp_path / "n.csv", [("narrow", 700, 0, 1024, 1024, "test")])
        build_dataset(section_dir / "bse.tif", mask, narrow, tmp_path / "d2")


def test_manifest_bounds_follow_the_raster_origin(tmp_path: Path) -> None:
    from affine import Affine

    t = Affine(0.5, 0, 100.0, 0, -0.5, 300.0)  # 0.5 µm pixels, origin at (100, 300) µm
    bse, lab = tmp_path / "bse.tif", tmp_path / "lab.tif"
    write_raster(bse, np.zeros((200, 300), np.uint8), transform=t)
    labels = np.zeros((200, 300), np.uint8)
    labels[50:150, 50:250] = 1
    write_raster(lab, labels, transform=t, tags={"classes": "0=unclassified,1=Fe-Ti oxide"})
    sessions = write_sessions(tmp_path / "s.csv", [("01", 100, 200, 250, 300, "train"),
                                                   ("1", 0, 0, 10, 10, "none")])  # fmt: skip
    summary = build_dataset(bse, lab, sessions, tmp_path / "d", tile=(100, 100))
    m = summary.manifest
    assert m["x0_um"].min() == 100.0 and m["y1_um"].max() == 300.0
    for row in m.itertuples():
        assert row.x0_um == 100 + 0.5 * row.col_off and row.x1_um == row.x0_um + 50
        assert row.y1_um == 300 - 0.5 * row.row_off and row.y0_um == row.y1_um - 50
    assert "Fe-Ti oxide_fraction" in m.columns
    assert summary.sessions["session"].tolist() == ["01", "1"]  # "01" and "1" stay distinct


def test_fully_ignored_tiles_are_skipped_even_at_min_labelled_zero(
    section_dir: Path, mask: Path, tmp_path: Path
) -> None:
    labels = read_raster(mask, bands=1)
    labels[:, 512:] = 255
    partial = tmp_path / "p.tif"
    write_raster(
        partial, labels, transform=raster_info(mask).transform, tags=raster_info(mask).tags
    )
    sessions = write_sessions(tmp_path / "s.csv", [("a", 0, 0, 1024, 1024, "train")])
    summary = build_dataset(section_dir / "bse.tif", partial, sessions, tmp_path / "d",
                            tile=(256, 256), min_labelled=0.0)  # fmt: skip
    assert len(summary.manifest) == 8 and summary.skipped == 8
    assert np.isfinite(summary.sessions["olivine_pct"]).all()


def test_output_must_not_replace_an_input(section_dir: Path, mask: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="output is an input"):
        build_dataset(section_dir / "bse.tif", mask, section_dir / "sessions.csv", mask,
                      overwrite=True)  # fmt: skip
    assert mask.is_file()


def test_vrt_sources_are_inputs_too(section_dir: Path, mask: Path, tmp_path: Path) -> None:
    import shutil

    from rasterio.shutil import copy as rio_copy

    bse = tmp_path / "bse.tif"
    shutil.copy(section_dir / "bse.tif", bse)
    rio_copy(bse, tmp_path / "bse.vrt", driver="VRT")
    with pytest.raises(InputError, match="output is an input"):
        build_dataset(tmp_path / "bse.vrt", mask, section_dir / "sessions.csv", bse,
                      overwrite=True)  # fmt: skip
    assert bse.is_file()


def test_a_session_without_labels_is_named(section_dir: Path, mask: Path, tmp_path: Path) -> None:
    labels = read_raster(mask, bands=1)
    labels[:, 512:] = 255
    partial = tmp_path / "p.tif"
    write_raster(
        partial, labels, transform=raster_info(mask).transform, tags=raster_info(mask).tags
    )
    sessions = write_sessions(
        tmp_path / "s.csv", [("a", 0, 0, 512, 1024, "train"), ("c", 512, 0, 1024, 1024, "test")]
    )
    summary = build_dataset(section_dir / "bse.tif", partial, sessions, tmp_path / "d",
                            tile=(256, 256))  # fmt: skip
    assert any(n.startswith("session c: all 8 tiles have less than 50%") for n in summary.notes)

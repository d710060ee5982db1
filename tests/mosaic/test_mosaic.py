"""Mosaics from tiles: layouts, VRT and GeoTIFF output equal to the stitched array, seams."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from olmap.errors import InputError
from olmap.io.raster import raster_info, read_raster, read_valid
from olmap.mosaic.build import build_mosaic
from olmap.mosaic.layout import cut_overlaps, grid_cell, grid_layout, mosaic_shape
from olmap.synth.tiles import cut_tiles


@pytest.fixture(scope="module")
def seamless(section_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("tiles") / "seamless"
    cut = cut_tiles(section_dir / "bse.tif", out, rows=3, cols=4, overlap=(40, 56), order="snake")
    return cut


@pytest.fixture(scope="module")
def seamed(section_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("tiles") / "seamed"
    return cut_tiles(
        section_dir / "bse.tif",
        out,
        rows=2,
        cols=3,
        overlap=(48, 48),
        offset_sd=6.0,
        gain_sd=0.04,
        seed=4,
    )


def stitched(section_dir: Path, shape: tuple[int, int]) -> np.ndarray:
    return read_raster(section_dir / "bse.tif", bands=1)[: shape[0], : shape[1]]


def test_grid_orders() -> None:
    assert [grid_cell(i, 2, 2, "row") for i in range(4)] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert [grid_cell(i, 2, 3, "column-snake") for i in range(4)] == [
        (0, 0),
        (1, 0),
        (1, 1),
        (0, 1),
    ]
    with pytest.raises(InputError, match="unknown tile order"):
        grid_cell(0, 2, 2, "spiral")


def test_kept_parts_partition_the_mosaic() -> None:
    paths = [Path(f"t{i}.tif") for i in range(12)]
    placements = cut_overlaps(grid_layout(paths, [(100, 120)] * 12, 3, 4, (10, 20), "snake"))
    h, w = mosaic_shape(placements)
    count = np.zeros((h, w), int)
    for p in placements:
        top, left, bottom, right = p.keep
        count[p.row + top : p.row + bottom, p.col + left : p.col + right] += 1
    assert (count == 1).all()


@pytest.mark.parametrize("overlap", [None, (40, 56)], ids=["auto", "given"])
def test_vrt_from_tiles_equals_the_stitched_array(
    seamless, section_dir: Path, tmp_path: Path, overlap
) -> None:
    out = tmp_path / "mosaic.vrt"
    result = build_mosaic(seamless.out_dir, out, rows=3, cols=4, overlap=overlap, order="snake")
    mosaic = read_raster(out, bands=1)
    assert mosaic.shape == seamless.mosaic_shape
    assert np.array_equal(mosaic, stitched(section_dir, mosaic.shape))
    info = raster_info(out)
    assert info.pixel_size_um == raster_info(section_dir / "bse.tif").pixel_size_um
    assert info.transform.f == info.height * info.pixel_size_um  # origin top-left, y up
    assert out.stat().st_size < 20_000  # a VRT copies no pixels
    assert len(result.seams) == 3 * 3 + 2 * 4  # side-by-side neighbours of a 3 x 4 grid
    assert result.seams["brightness_difference"].abs().max() < 1e-9


def test_positions_and_bigtiff_give_the_same_mosaic(
    seamless, section_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "mosaic.tif"
    build_mosaic(seamless.out_dir, out, positions=seamless.out_dir / "positions.csv")
    mosaic = read_raster(out, bands=1)
    assert np.array_equal(mosaic, stitched(section_dir, seamless.mosaic_shape))
    assert not list(tmp_path.glob("*.partial*"))


def test_seams_are_reported_and_equalised(seamed, section_dir: Path, tmp_path: Path) -> None:
    plain = build_mosaic(seamed.out_dir, tmp_path / "m.vrt", rows=2, cols=3)
    fixed = build_mosaic(seamed.out_dir, tmp_path / "e.vrt", rows=2, cols=3, equalise_tiles=True)
    truth = seamed.truth
    # the reported brightness difference of each pair is the difference of true offsets
    # (plus gain x mean): it must be far from zero where the truth says so
    assert plain.seams["brightness_difference"].abs().max() > 3
    assert fixed.seams["brightness_difference_after"].abs().max() < 0.5
    # relative gains recovered: true gain ratio between tiles ~ fitted inverse ratio
    g_true = truth["gain"].to_numpy()
    ratio_true = g_true / g_true.mean()
    ratio_fit = (1 / fixed.gains) / (1 / fixed.gains).mean()
    # (from standard deviations in 48-px overlaps of rounded, clipped tiles: ~1 % error
    # against a 4 % spread of true gains)
    assert np.abs(ratio_true - ratio_fit).max() < 0.02
    assert np.corrcoef(ratio_true, ratio_fit)[0, 1] > 0.9
    original = stitched(section_dir, seamed.mosaic_shape).astype(float)
    before = np.abs(read_raster(tmp_path / "m.vrt", bands=1) - original)
    after = np.abs(read_raster(tmp_path / "e.vrt", bands=1) - original)
    # equalising removes tile-to-tile differences; a common offset of all tiles remains
    assert after.std() < 0.5 * before.std()
    assert (tmp_path / "e.seams.csv").exists()
    tiles = fixed.tiles.set_index("tile")
    assert list(tiles.columns[-2:]) == ["gain", "offset"] and (tiles["overlaps"] >= 2).all()
    # each tile's brightness against its neighbours follows its true shift (gain x mean grey
    # + offset)
    by_file = truth.set_index("file")
    shift = by_file["gain"] * original.mean() + by_file["offset"]
    assert np.corrcoef(tiles["brightness_vs_neighbours"], shift[tiles.index])[0, 1] > 0.8


def test_bad_layouts_fail_clearly(seamless, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="12 tiles found for a 3 x 3 grid"):
        build_mosaic(seamless.out_dir, tmp_path / "m.vrt", rows=3, cols=3)
    with pytest.raises(InputError, match="give --rows and --cols"):
        build_mosaic(seamless.out_dir, tmp_path / "m.vrt")
    with pytest.raises(InputError, match=r"must end in \.vrt or \.tif"):
        build_mosaic(seamless.out_dir, tmp_path / "m.png", rows=3, cols=4)
    with pytest.raises(InputError, match="not a folder of tiles"):
        build_mosaic(tmp_path / "nothing", tmp_path / "m.vrt", rows=1, cols=1)
    bad = tmp_path / "positions.csv"
    bad.write_text("file,x_um,y_um\ntile_000.tif,0,0\ntile_001.tif,abc,0\n")
    with pytest.raises(InputError, match="row 3 has no numeric x_um/y_um"):
        build_mosaic(seamless.out_dir, tmp_path / "m.vrt", positions=bad)
    with pytest.raises(InputError, match="smaller than the tiles"):
        build_mosaic(seamless.out_dir, tmp_path / "m.vrt", rows=3, cols=4, overlap=(5000, 10))


def test_jittered_stage_positions_leave_no_gaps(section_dir: Path, tmp_path: Path) -> None:
    cut = cut_tiles(
        section_dir / "bse.tif", tmp_path / "tiles", rows=3, cols=3, overlap=(40, 40),
        jitter_um=1.5, seed=2,
    )  # fmt: skip
    out = tmp_path / "m.vrt"
    result = build_mosaic(cut.out_dir, out, positions=cut.out_dir / "positions.csv")
    mosaic = read_raster(out, bands=1).astype(float)
    # only pixels that no tile covers (strips at the mosaic's edge) are nodata
    covered = np.zeros(mosaic.shape, bool)
    for p in result.placements:
        covered[p.row : p.row + p.height, p.col : p.col + p.width] = True
    assert 0 < (~covered).sum() < 0.01 * covered.size and "gaps" in result.notes[-1]
    valid = read_valid(out)
    assert valid[~covered].sum() == 0
    assert (~valid[covered]).sum() == (mosaic[covered] == 0).sum()  # BSE 0 reads as nodata
    original = read_raster(section_dir / "bse.tif", bands=1).astype(float)
    h, w = min(mosaic.shape[0], original.shape[0]), min(mosaic.shape[1], original.shape[1])
    # tiles land within a few px of their true place: the mosaic still matches the section
    assert np.corrcoef(mosaic[:h, :w].ravel(), original[:h, :w].ravel())[0, 1] > 0.5


def test_a_mosaic_with_a_missing_tile_names_the_tile(seamless, tmp_path: Path) -> None:
    """Once "not a readable raster" naming only the VRT."""
    import shutil

    tiles = shutil.copytree(seamless.out_dir, tmp_path / "tiles")
    out = build_mosaic(tiles, tmp_path / "mosaic.vrt", rows=3, cols=4, order="snake").path
    gone = sorted(tiles.glob("*.tif"))[5]
    gone.unlink()
    with pytest.raises(InputError, match=str(gone.name)):
        read_raster(out, bands=1)

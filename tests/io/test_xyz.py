"""XYZ pyramids: both engines write the same tiles, full resolution at the deepest zoom,
transparent padding."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest
from PIL import Image

from olmap.errors import InputError
from olmap.io.raster import micrometre_transform, write_raster
from olmap.io.xyz import write_xyz_rasterio, write_xyz_vips
from olmap.stream.cog import write_cog


def _write_display_cog(arr, path):
    """A grey + alpha COG of ``arr`` (2, h, w) with 256 px blocks and overviews."""
    h, w = arr.shape[1:]
    write_cog(
        path,
        lambda win: arr[
            :, win.row_off : win.row_off + win.height, win.col_off : win.col_off + win.width
        ],
        height=h,
        width=w,
        count=2,
        dtype="uint8",
        transform=micrometre_transform(h, 1.0),
        colour=True,
        blocksize=256,
    )


@pytest.fixture(scope="module")
def display_cog(tmp_path_factory):
    h, w = 700, 1100
    yy, xx = np.mgrid[0:h, 0:w]
    # Smooth: GDAL truncates overview sizes (1100 / 8 -> 137 px), so tiles cut from them may
    # sit up to half a tile pixel off at the far edge; on this slope that is < 3 grey levels.
    grey = ((np.sin(xx / 150) + np.cos(yy / 90)) * 60 + 128).astype(np.uint8)
    alpha = np.full((h, w), 255, np.uint8)
    alpha[:100, :150] = 0
    grey[alpha == 0] = 0
    arr = np.stack([grey, alpha])
    out = tmp_path_factory.mktemp("xyz") / "d.tif"
    _write_display_cog(arr, out)
    return out, arr


def _tiles(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*.png"))


@pytest.mark.parametrize("engine", ["vips", "rasterio"])
def test_engine_writes_the_pyramid(engine, display_cog, tmp_path):
    cog, arr = display_cog
    out = tmp_path / engine
    ticks = []
    if engine == "vips":
        spec = write_xyz_vips(cog, out, progress=ticks.append)
    else:
        spec = write_xyz_rasterio(cog, out, workers=2, progress=ticks.append)
    assert spec.max_zoom == 3
    expected = sorted(f"{z}/{y}/{x}.png" for z in range(4) for x, y in spec.tiles(z))
    assert _tiles(out) == expected and sum(ticks) == spec.n_tiles()
    assert sorted(p.name for p in tmp_path.iterdir()) == [engine]  # no scratch left
    # Deepest zoom: the raster's own pixels; padding beyond its edge is transparent.
    tile = np.array(Image.open(out / "3" / "2" / "4.png"))  # rows 512-699, cols 1024-1099
    assert tile.shape == (256, 256, 2)
    np.testing.assert_array_equal(tile[:188, :76], np.moveaxis(arr[:, 512:, 1024:], 0, -1))
    assert (tile[188:, :, 1] == 0).all() and (tile[:, 76:, 1] == 0).all()
    # Zoom 0: the whole raster shrunk 8 times into one tile.
    top = np.array(Image.open(out / "0" / "0" / "0.png")).astype(float)
    shrunk = arr[0, :696, :1096].reshape(87, 8, 137, 8).mean(axis=(1, 3))
    inside = top[10:80, 20:130, 1] == 255
    assert np.abs(top[10:80, 20:130, 0] - shrunk[10:80, 20:130])[inside].mean() < 1.5


def test_engines_agree(display_cog, tmp_path):
    cog, _ = display_cog
    write_xyz_vips(cog, tmp_path / "v")
    write_xyz_rasterio(cog, tmp_path / "r")
    assert _tiles(tmp_path / "v") == _tiles(tmp_path / "r")
    for name in _tiles(tmp_path / "v"):
        a = np.array(Image.open(tmp_path / "v" / name)).astype(int)
        b = np.array(Image.open(tmp_path / "r" / name)).astype(int)
        inside = (a[..., 1] == 255) & (b[..., 1] == 255)
        assert np.abs(a[..., 0] - b[..., 0])[inside].mean() < 2, name


def test_engines_need_an_8_bit_display_raster(tmp_path):
    src = write_raster(tmp_path / "f.tif", np.zeros((10, 10), np.float32), pixel_size_um=1.0)
    for write in (write_xyz_vips, write_xyz_rasterio):
        with pytest.raises(InputError, match="8-bit"):
            write(src, tmp_path / "out")


def test_engines_cover_the_same_pixels_just_above_a_tile_multiple(tmp_path):
    # 2,049 px: GDAL's overview at factor 2 has 1,024 px, one short of the tile grid; the
    # rasterio engine must not leave the last column of tiles blank.
    h = w = 2049
    arr = np.stack([np.full((h, w), 200, np.uint8), np.full((h, w), 255, np.uint8)])
    cog = tmp_path / "d.tif"
    _write_display_cog(arr, cog)
    write_xyz_vips(cog, tmp_path / "v")
    write_xyz_rasterio(cog, tmp_path / "r")
    assert _tiles(tmp_path / "v") == _tiles(tmp_path / "r")
    for name in _tiles(tmp_path / "v"):
        a = np.array(Image.open(tmp_path / "v" / name))[..., 1] > 0
        b = np.array(Image.open(tmp_path / "r" / name))[..., 1] > 0
        assert a.sum() > 0 and abs(int(a.sum()) - int(b.sum())) <= 256, name


@pytest.mark.parametrize("how", ["raise", "sigint"])
def test_vips_engine_stops_on_interrupt_and_leaves_nothing(how, display_cog, tmp_path):
    cog, _ = display_cog

    def interrupt(_n):
        # A real Ctrl-C arrives as SIGINT while libvips runs; pyvips would drop it.
        if how == "sigint":
            os.kill(os.getpid(), signal.SIGINT)
        else:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_xyz_vips(cog, tmp_path / "out", progress=interrupt)
    assert list(tmp_path.iterdir()) == []

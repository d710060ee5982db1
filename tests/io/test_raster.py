import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.windows import Window

from olmap.core.windows import block_windows
from olmap.errors import InputError, InputFileNotFoundError, NotCoregisteredError, OutputExistsError
from olmap.io import raster as raster_mod
from olmap.io.raster import (
    band_index,
    check_coregistered,
    create_raster,
    micrometre_transform,
    raster_info,
    read_image,
    read_raster,
    write_raster,
)


def test_micrometre_transform_is_north_up_with_top_left_origin():
    t = micrometre_transform(338, 1.0)
    assert t == Affine(1.0, 0, 0, 0, -1.0, 338.0)
    # every pixel corner has positive map coordinates; the bottom-left corner is (0, 0)
    assert t @ (0, 338) == (0.0, 0.0)
    assert t @ (512, 0) == (512.0, 338.0)
    with pytest.raises(InputError):
        micrometre_transform(10, 0.0)


def test_single_band_round_trip(tmp_path):
    arr = np.arange(70 * 90, dtype=np.uint16).reshape(70, 90)
    path = write_raster(tmp_path / "a.tif", arr, pixel_size_um=0.5, band_names=["BSE"])
    info = raster_info(path)
    assert info.shape == (70, 90) and info.count == 1 and info.dtype == "uint16"
    assert info.pixel_size_um == 0.5 and info.band_names == ("BSE",)
    assert info.transform == micrometre_transform(70, 0.5)
    assert np.array_equal(read_raster(path, bands=1), arr)
    with rasterio.open(path) as ds:
        assert ds.profile["tiled"] and ds.profile["compress"] == "deflate"


def test_multiband_eds_stack_keeps_element_names(tmp_path):
    stack = np.random.default_rng(0).integers(0, 200, (5, 40, 30), dtype=np.uint16)
    names = ["Mg", "Ca", "Al", "Fe", "Si"]
    path = write_raster(
        tmp_path / "eds.tif", stack, pixel_size_um=1.0, band_names=names, tags={"units": "counts"}
    )
    info = raster_info(path)
    assert info.band_names == tuple(names) and info.tags["units"] == "counts"
    assert band_index(info, "fe") == 4
    assert np.array_equal(read_raster(path, bands=["Ca", "Mg"]), stack[[1, 0]])
    with pytest.raises(InputError, match=r"no band named 'Ti'.*Mg, Ca, Al, Fe, Si"):
        band_index(info, "Ti")


def test_windowed_writes_into_a_precreated_output_equal_the_whole(tmp_path):
    rng = np.random.default_rng(1)
    whole = rng.normal(size=(333, 517)).astype(np.float32)
    path = tmp_path / "w.tif"
    with create_raster(
        path, height=333, width=517, dtype="float32", pixel_size_um=1.0, nodata=float("nan")
    ) as ds:
        for win in block_windows(333, 517, 128):  # edge windows are cropped
            r0, c0 = int(win.row_off), int(win.col_off)
            ds.write(whole[r0 : r0 + int(win.height), c0 : c0 + int(win.width)][None], window=win)
    assert np.array_equal(read_raster(path, bands=1), whole)
    # reading windows that end at the raster edge returns exactly the edge pixels
    edge = Window(500, 300, 17, 33)
    assert np.array_equal(read_raster(path, bands=1, window=edge), whole[300:, 500:])


def test_output_appears_only_when_complete_and_is_not_clobbered(tmp_path):
    path = tmp_path / "x.tif"
    with pytest.raises(RuntimeError):
        with create_raster(path, height=8, width=8, dtype="uint8", pixel_size_um=1.0):
            raise RuntimeError("interrupted")
    assert not path.exists() and not list(tmp_path.iterdir())
    write_raster(path, np.zeros((8, 8), np.uint8), pixel_size_um=1.0)
    with pytest.raises(OutputExistsError):
        write_raster(path, np.ones((8, 8), np.uint8), pixel_size_um=1.0)
    assert read_raster(path, bands=1).max() == 0


def test_large_rasters_are_written_as_bigtiff(tmp_path, monkeypatch):
    monkeypatch.setattr(raster_mod, "BIGTIFF_THRESHOLD", 1000)
    path = write_raster(tmp_path / "big.tif", np.zeros((64, 64), np.uint8), pixel_size_um=1.0)
    assert path.read_bytes()[2:4] in (b"+\x00", b"\x00+")  # TIFF version 43 = BigTIFF
    small = write_raster(tmp_path / "small.tif", np.zeros((4, 4), np.uint8), pixel_size_um=1.0)
    monkeypatch.undo()
    assert small.read_bytes()[2:4] not in (b"+\x00", b"\x00+")


def test_coregistration_check_names_both_files(tmp_path):
    a = write_raster(tmp_path / "bse.tif", np.zeros((20, 30), np.uint8), pixel_size_um=1.0)
    b = write_raster(tmp_path / "eds.tif", np.zeros((20, 30), np.uint8), pixel_size_um=1.0)
    assert check_coregistered(a, b).shape == (20, 30)
    c = write_raster(tmp_path / "shape.tif", np.zeros((21, 30), np.uint8), pixel_size_um=1.0)
    with pytest.raises(
        NotCoregisteredError, match=r"shape\.tif: 21x30 px does not match .*bse\.tif"
    ):
        check_coregistered(a, c)
    d = write_raster(tmp_path / "px.tif", np.zeros((20, 30), np.uint8), pixel_size_um=2.0)
    with pytest.raises(NotCoregisteredError, match=r"px\.tif: transform"):
        check_coregistered(a, d)


def test_plain_images_need_a_pixel_size(tmp_path):
    from PIL import Image

    img = (np.arange(48 * 64) % 256).astype(np.uint8).reshape(48, 64)
    png = tmp_path / "tile.png"
    Image.fromarray(img).save(png)
    with pytest.raises(InputError, match=r"tile\.png: image has no pixel size.*--pixel-size"):
        read_image(png)
    arr, transform = read_image(png, pixel_size_um=0.25)
    assert np.array_equal(arr, img) and transform == micrometre_transform(48, 0.25)
    tif = tmp_path / "tile.tif"
    Image.fromarray(img).save(tif)
    arr, _ = read_image(tif, pixel_size_um=1.0)
    assert np.array_equal(arr, img)


def test_unreadable_and_missing_files_give_clear_errors(tmp_path):
    bad = tmp_path / "bad.tif"
    bad.write_text("not a tiff")
    with pytest.raises(InputError, match=r"bad\.tif: not a readable raster"):
        raster_info(bad)
    with pytest.raises(InputFileNotFoundError, match=r"missing\.tif: raster not found"):
        raster_info(tmp_path / "missing.tif")


def test_decimated_read_has_the_requested_shape(tmp_path):
    arr = np.random.default_rng(2).integers(0, 255, (300, 200), dtype=np.uint8)
    path = write_raster(tmp_path / "d.tif", arr, pixel_size_um=1.0)
    small = read_raster(path, bands=1, out_shape=(30, 20))
    assert small.shape == (30, 20) and small.dtype == np.uint8


def test_vrt_reads_like_its_source(tmp_path):
    arr = np.random.default_rng(3).integers(0, 255, (50, 60), dtype=np.uint8)
    write_raster(tmp_path / "src.tif", arr, pixel_size_um=1.0)
    vrt = tmp_path / "m.vrt"
    vrt.write_text("""<VRTDataset rasterXSize="60" rasterYSize="50">
  <GeoTransform>0, 1, 0, 50, 0, -1</GeoTransform>
  <VRTRasterBand dataType="Byte" band="1">
    <Description>BSE</Description>
    <SimpleSource>
      <SourceFilename relativeToVRT="1">src.tif</SourceFilename>
      <SourceBand>1</SourceBand>
      <SrcRect xOff="0" yOff="0" xSize="60" ySize="50"/>
      <DstRect xOff="0" yOff="0" xSize="60" ySize="50"/>
    </SimpleSource>
  </VRTRasterBand>
</VRTDataset>""")
    info = check_coregistered(vrt, tmp_path / "src.tif")
    assert info.pixel_size_um == 1.0 and info.band_names == ("BSE",)
    assert np.array_equal(read_raster(vrt, bands=1, window=Window(10, 5, 20, 30)), arr[5:35, 10:30])

"""Volumes in every supported format read the same voxels; bad volumes fail in one line."""

import h5py
import numpy as np
import pytest
import tifffile

from olmap.errors import InputError
from olmap.io.omezarr import create_ome_zarr, write_multipage_tiff, write_pyramid
from olmap.io.volume import list_series, open_volume

RNG = np.random.default_rng(3)


@pytest.fixture(scope="module", params=["uint8", "uint16", "float32"])
def stored(request, tmp_path_factory):
    """One volume written in every format: (folder, array, {name: spec, kwargs})."""
    dtype = request.param
    vol = (RNG.random((12, 37, 41)) * (200 if dtype == "uint8" else 60000)).astype(dtype)
    d = tmp_path_factory.mktemp(f"vol_{dtype}")
    (d / "slices").mkdir()
    res = (1e4 / 2.5, 1e4 / 2.5)
    for z in range(len(vol)):
        tifffile.imwrite(
            d / "slices" / f"s{z}.tif", vol[z], resolution=res, resolutionunit="CENTIMETER"
        )
    tifffile.imwrite(d / "multi.tif", vol, compression="zlib")
    vol.tofile(d / "scan.raw")
    with h5py.File(d / "scan.h5", "w") as f:
        f.create_dataset("exchange/data", data=vol, chunks=(3, 10, 10))
        f.create_dataset("exchange/dark", data=vol[:2, :3])
    create_ome_zarr(
        d / "v.zarr", vol.shape, vol.dtype, voxel_size_um=2.5, name="v", chunks=(4, 16, 16)
    )[:] = vol
    specs = {
        "slices": (d / "slices", {}),  # s2 before s10: natural order
        "multipage": (d / "multi.tif", {}),
        "hdf5": (f"{d / 'scan.h5'}:/exchange/data", {}),
        "raw": (d / "scan.raw", {"shape": (12, 37, 41), "dtype": dtype}),
        "zarr": (d / "v.zarr", {}),
    }
    return d, vol, specs


@pytest.mark.parametrize("kind", ["slices", "multipage", "hdf5", "raw", "zarr"])
def test_every_format_reads_the_same_voxels(stored, kind):
    _, vol, specs = stored
    spec, kw = specs[kind]
    with open_volume(spec, **kw) as v:
        assert v.shape == vol.shape and v.dtype == vol.dtype
        region = (slice(2, 9), slice(5, 30), slice(1, 40))
        assert np.array_equal(v.read(region), vol[region])
        assert np.array_equal(v.read(), vol)
        if kind in ("slices", "zarr"):
            assert v.voxel_size_um == pytest.approx(2.5)


def test_voxel_size_option_overrides_metadata(stored):
    _, _, specs = stored
    with open_volume(specs["slices"][0], voxel_size_um=0.65) as v:
        assert v.voxel_size_um == 0.65


def test_omezarr_is_read_by_the_ngff_reference_reader(stored):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    d, vol, _ = stored
    path = d / "pyr.zarr"
    arr = create_ome_zarr(
        path, (12, 300, 260), vol.dtype, voxel_size_um=2.0, name="p", chunks=(4, 64, 64)
    )
    big = np.repeat(np.repeat(vol, 9, axis=1), 7, axis=2)[:, :300, :260]
    arr[:] = big
    assert write_pyramid(path, labels=False) == 3
    node = next(iter(Reader(parse_url(str(path)))()))
    shapes = [tuple(a.shape) for a in node.data]
    assert shapes == [(12, 300, 260), (6, 150, 130), (3, 75, 65)]
    scales = [t[0]["scale"] for t in node.metadata["coordinateTransformations"]]
    assert scales == [[2.0] * 3, [4.0] * 3, [8.0] * 3]
    level1 = np.asarray(node.data[1])
    # mean of each 2x2x2 cell
    cell = big[:2, :2, :2].astype(float).mean()
    assert level1[0, 0, 0] == pytest.approx(cell, abs=0.5 if vol.dtype.kind in "ui" else 1e-3)


def test_label_pyramid_keeps_codes_and_class_metadata(tmp_path):
    import zarr

    labels = RNG.integers(0, 4, (8, 140, 140)).astype(np.uint8)
    classes = [
        {"code": 1, "name": "pore", "colour": "#000000"},
        {"code": 2, "name": "grain", "colour": "#ff0000"},
    ]
    arr = create_ome_zarr(
        tmp_path / "l.zarr", labels.shape, np.uint8, voxel_size_um=1.0, name="l", classes=classes
    )
    arr[:] = labels
    write_pyramid(tmp_path / "l.zarr", labels=True)
    g = zarr.open_group(str(tmp_path / "l.zarr"), mode="r")
    assert set(np.unique(g["1"][:])) <= {0, 1, 2, 3}
    meta = g.attrs["ome"]["image-label"]
    assert meta["properties"][1] == {"label-value": 2, "name": "grain"}
    assert meta["colors"][1]["rgba"] == [255, 0, 0, 255]


def test_multipage_tiff_output_round_trips(stored, tmp_path):
    _, vol, specs = stored
    with open_volume(specs["zarr"][0]) as v:
        write_multipage_tiff(v, tmp_path / "out.tif", voxel_size_um=2.5)
    with open_volume(tmp_path / "out.tif") as v:
        assert np.array_equal(v.read(), vol) and v.voxel_size_um == pytest.approx(2.5)


def test_series_sorts_scans_in_time_order(tmp_path):
    for name in ("t10", "t2", "t1"):
        (tmp_path / name).mkdir()
        tifffile.imwrite(tmp_path / name / "s0.tif", np.zeros((4, 4), np.uint8))
    (tmp_path / "truth").mkdir()
    (tmp_path / "metadata.json").write_text("{}")
    assert [p.name for p in list_series(tmp_path)] == ["t1", "t2", "t10"]


def test_unequal_slices_are_refused(tmp_path):
    tifffile.imwrite(tmp_path / "s0.tif", np.zeros((8, 8), np.uint8))
    tifffile.imwrite(tmp_path / "s1.tif", np.zeros((8, 9), np.uint8))
    with pytest.raises(InputError, match=r"s1.tif: slice of 8x9"):
        open_volume(tmp_path)


def test_missing_slice_is_refused(tmp_path):
    for z in (0, 1, 3):
        tifffile.imwrite(tmp_path / f"slice_{z:04d}.tif", np.zeros((8, 8), np.uint8))
    with pytest.raises(InputError, match="slice number 2 is missing"):
        open_volume(tmp_path)


def test_unknown_hdf5_path_is_refused(stored):
    d, _, _ = stored
    with pytest.raises(InputError, match="no dataset /exchange/nope"):
        open_volume(f"{d / 'scan.h5'}:/exchange/nope")
    with pytest.raises(InputError, match="name the dataset"):
        open_volume(d / "scan.h5")  # two 3D datasets: which one?


def test_raw_of_the_wrong_size_is_refused(stored):
    d, _, _ = stored
    with pytest.raises(InputError, match=r"bytes, but --shape 12x37x40"):
        open_volume(d / "scan.raw", shape=(12, 37, 40), dtype="uint8")
    with pytest.raises(InputError, match="needs both --shape and --dtype"):
        open_volume(d / "scan.raw", shape=(12, 37, 41))


def test_unsupported_type_is_refused(tmp_path):
    tifffile.imwrite(tmp_path / "v.tif", np.zeros((2, 4, 4), np.int32), photometric="minisblack")
    with pytest.raises(InputError, match="int32; olmap reads uint8, uint16, float32"):
        open_volume(tmp_path / "v.tif")

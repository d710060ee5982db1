"""Chunked component labelling equals whole-image labelling, ids and statistics included."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.windows import Window
from scipy import ndimage as ndi
from skimage.measure import regionprops

from olmap.crystals import Components, component_pixels, label_components, label_raster
from olmap.errors import OutputExistsError

TRANSFORM = Affine(0.5, 0.0, 0.0, 0.0, -0.5, 100.0)


def reader(mask: np.ndarray):
    def read(window: Window) -> np.ndarray:
        return mask[window.toslices()]

    return read


def whole_labels(mask: np.ndarray, connectivity: int) -> np.ndarray:
    structure = ndi.generate_binary_structure(2, connectivity)
    return ndi.label(mask, structure=structure)[0]


def read_labels(path: Path) -> np.ndarray:
    with rasterio.open(path) as ds:
        assert ds.dtypes[0] == "uint32"
        return ds.read(1)


def check_components(comps: Components, labels: np.ndarray, connectivity: int) -> None:
    """Every field against regionprops and brute force on the whole-image labels."""
    height, width = labels.shape
    props = regionprops(labels)
    assert len(comps) == len(props) == labels.max()
    assert (comps.height, comps.width, comps.connectivity) == (height, width, connectivity)
    for i, p in enumerate(props):
        assert p.label == i + 1
        assert (comps.row0[i], comps.col0[i], comps.row1[i], comps.col1[i]) == p.bbox
        assert comps.area[i] == p.area
        rows, cols = np.nonzero(labels == p.label)  # row-major: the first is the seed
        assert (comps.seed_row[i], comps.seed_col[i]) == (rows[0], cols[0])
        edge = (rows == 0) | (rows == height - 1) | (cols == 0) | (cols == width - 1)
        assert comps.touches_edge[i] == edge.any()
    for name in ("seed_row", "seed_col", "row0", "col0", "row1", "col1", "area"):
        assert getattr(comps, name).dtype == np.int64


@pytest.mark.parametrize("connectivity", [1, 2])
@pytest.mark.parametrize("chunk", [7, 16, 33])
@pytest.mark.parametrize(("seed", "density"), [(0, 0.3), (1, 0.45), (2, 0.6)])
def test_random_masks_equal_whole_image(
    tmp_path: Path, seed: int, density: float, chunk: int, connectivity: int
) -> None:
    rng = np.random.default_rng(seed)
    shape = (97, 131) if seed != 1 else (64, 50)
    mask = rng.random(shape) < density
    if seed == 2:
        mask = mask.astype(np.uint8)  # uint8 reads work as well as bool
    expected = whole_labels(mask, connectivity)

    calls: list[tuple[int, int]] = []
    out = tmp_path / "labels.tif"
    comps = label_raster(
        reader(mask),
        *shape,
        out,
        transform=TRANSFORM,
        chunk=chunk,
        connectivity=connectivity,
        progress=lambda done, total: calls.append((done, total)),
    )
    np.testing.assert_array_equal(read_labels(out), expected)
    check_components(comps, expected, connectivity)
    n_chunks = -(-shape[0] // chunk) * -(-shape[1] // chunk)
    assert calls == [(k, 2 * n_chunks) for k in range(1, 2 * n_chunks + 1)]

    again = label_components(reader(mask), *shape, chunk=chunk, connectivity=connectivity)
    assert again.to_frame().equals(comps.to_frame())


def shapes() -> dict[str, np.ndarray]:
    u = np.zeros((30, 30), bool)
    u[2:25, 3] = u[2:25, 20] = True  # two arms in the first chunk rows ...
    u[24, 3:21] = True  # ... joined only at the bottom, in a later chunk row

    spiral = np.zeros((31, 31), bool)  # one 1-px wide path winding inwards, 1-px gaps
    r, c = 1, 1
    spiral[r, c] = True
    steps = [28, 28, 28] + [k for k in range(26, 0, -2) for _ in range(2)]
    for i, n in enumerate(steps):
        dr, dc = [(0, 1), (1, 0), (0, -1), (-1, 0)][i % 4]
        spiral[r + dr * np.arange(1, n + 1), c + dc * np.arange(1, n + 1)] = True
        r, c = r + dr * n, c + dc * n

    diagonal = np.eye(40, dtype=bool)  # through every chunk corner for even chunks
    anti = np.fliplr(np.eye(40, dtype=bool))  # the other diagonal direction
    return {"u": u, "spiral": spiral, "diagonal": diagonal, "anti": anti}


@pytest.mark.parametrize("name", ["u", "spiral", "diagonal", "anti"])
@pytest.mark.parametrize("chunk", [4, 5, 8])
@pytest.mark.parametrize("connectivity", [1, 2])
def test_shapes_across_chunk_corners(name: str, chunk: int, connectivity: int) -> None:
    mask = shapes()[name]
    expected = whole_labels(mask, connectivity)
    comps = label_components(reader(mask), *mask.shape, chunk=chunk, connectivity=connectivity)
    check_components(comps, expected, connectivity)


def test_shapes_are_what_they_claim() -> None:
    s = shapes()
    assert whole_labels(s["u"], 1).max() == 1
    assert whole_labels(s["spiral"], 1).max() == 1
    for name in ("diagonal", "anti"):
        assert len(label_components(reader(s[name]), 40, 40, chunk=4, connectivity=2)) == 1
        assert len(label_components(reader(s[name]), 40, 40, chunk=4, connectivity=1)) == 40


def test_u_arms_meet_in_a_later_chunk_row(tmp_path: Path) -> None:
    mask = shapes()["u"]
    comps = label_raster(reader(mask), 30, 30, tmp_path / "u.tif", transform=TRANSFORM, chunk=8)
    assert len(comps) == 1
    assert comps.bbox_window(1) == Window(3, 2, 18, 23)
    np.testing.assert_array_equal(read_labels(tmp_path / "u.tif"), mask.astype(np.uint32))


def test_component_pixels_ignores_other_components_in_the_bbox() -> None:
    mask = np.zeros((20, 20), bool)
    mask[2:18, 2] = mask[2:18, 17] = mask[17, 2:18] = True  # a U: its bbox is 16 x 16 px
    mask[5:9, 6:10] = True  # a square inside the U's bbox, not touching it
    mask[4, 15] = True  # a single pixel inside the bbox too
    comps = label_components(reader(mask), 20, 20, chunk=6)
    labels = whole_labels(mask, 2)
    u = labels[2, 2]
    window = comps.bbox_window(u)
    inner = mask[window.toslices()]
    assert inner.sum() > comps.area[u - 1]
    seed = (comps.seed_row[u - 1] - window.row_off, comps.seed_col[u - 1] - window.col_off)
    got = component_pixels(inner, seed)
    np.testing.assert_array_equal(got, (labels == u)[window.toslices()])
    with pytest.raises(ValueError, match="background"):
        component_pixels(inner, (0, 1))


def test_to_frame_and_bbox_window() -> None:
    mask = np.array([[1, 0, 0], [0, 0, 1], [0, 0, 1]], bool)
    comps = label_components(reader(mask), 3, 3, chunk=2, connectivity=1)
    frame = comps.to_frame()
    assert frame["id"].tolist() == [1, 2]
    assert frame["area"].tolist() == [1, 2]
    assert frame["touches_edge"].tolist() == [True, True]
    assert comps.bbox_window(2) == Window(2, 1, 1, 2)
    with pytest.raises(IndexError):
        comps.bbox_window(3)


@pytest.mark.parametrize("connectivity", [0, 3, 8])
def test_bad_connectivity(tmp_path: Path, connectivity: int) -> None:
    mask = np.ones((4, 4), bool)
    with pytest.raises(ValueError, match="connectivity"):
        label_components(reader(mask), 4, 4, connectivity=connectivity)
    with pytest.raises(ValueError, match="connectivity"):
        label_raster(reader(mask), 4, 4, tmp_path / "x.tif", transform=TRANSFORM, connectivity=0)
    with pytest.raises(ValueError, match="connectivity"):
        component_pixels(mask, (0, 0), connectivity=connectivity)


def test_empty_mask(tmp_path: Path) -> None:
    mask = np.zeros((10, 13), np.uint8)
    comps = label_raster(reader(mask), 10, 13, tmp_path / "e.tif", transform=TRANSFORM, chunk=4)
    assert len(comps) == 0
    assert comps.to_frame().empty
    labels = read_labels(tmp_path / "e.tif")
    assert labels.shape == (10, 13)
    assert not labels.any()


def test_existing_output_needs_overwrite(tmp_path: Path) -> None:
    mask = np.eye(6, dtype=bool)
    out = tmp_path / "l.tif"
    label_raster(reader(mask), 6, 6, out, transform=TRANSFORM, chunk=4)
    with pytest.raises(OutputExistsError):
        label_raster(reader(mask), 6, 6, out, transform=TRANSFORM, chunk=4)
    label_raster(reader(~mask), 6, 6, out, transform=TRANSFORM, chunk=4, overwrite=True)
    np.testing.assert_array_equal(read_labels(out), whole_labels(~mask, 2))


def test_wrong_read_shape() -> None:
    with pytest.raises(ValueError, match="shape"):
        label_components(lambda w: np.ones((2, 2), bool), 4, 4, chunk=3)


@pytest.mark.parametrize("connectivity", [1, 2, 3])
def test_label_nd_equals_whole_volume_labels(connectivity):
    from scipy import ndimage as ndi

    from olmap.core.components import label_nd

    rng = np.random.default_rng(connectivity)
    for _ in range(12):
        shape = tuple(int(s) for s in rng.integers(3, 14, 3))
        vol = rng.random(shape) < rng.uniform(0.2, 0.6)
        chunk = tuple(int(c) for c in rng.integers(1, 7, 3))
        ref, n = ndi.label(vol, ndi.generate_binary_structure(3, connectivity))
        out = np.zeros(shape, np.uint32)

        def write(region, ids, out=out):
            out[region] = ids

        comps = label_nd(
            lambda r, v=vol: v[r], shape, chunk, connectivity=connectivity, write=write
        )
        assert len(comps) == n and np.array_equal(out, ref)
        assert np.array_equal(comps.size, np.bincount(ref.ravel())[1:])
        boxes = ndi.find_objects(ref)
        assert [tuple(map(int, b)) for b in comps.lower] == [
            tuple(s.start for s in b) for b in boxes
        ]
        assert [tuple(map(int, b)) for b in comps.upper] == [
            tuple(s.stop for s in b) for b in boxes
        ]
        firsts = [np.argwhere(ref == i + 1)[0].tolist() for i in range(n)]
        assert comps.seed.tolist() == firsts

"""OME-Zarr (NGFF 0.5, zarr format 3) volumes written chunk by chunk, with a multiscale pyramid.

Level ``0`` is written by the job (block by block); :func:`write_pyramid` then builds levels
``1, 2, ...`` (half the size on every axis each) from the level above, one output chunk at a
time, so no level is ever held whole. Grey images are averaged 2x2x2; label images take every
other voxel (a class code must never be averaged). Label images carry NGFF ``image-label``
metadata: each code's name and RGBA colour, as napari and other NGFF viewers read them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

NGFF_VERSION = "0.5"
#: Default chunk shape of written volumes (z, y, x): 4 MiB of uint8, 8 MiB of uint16.
DEFAULT_CHUNKS = (64, 256, 256)


def _axes(ndim: int) -> list[dict[str, str]]:
    space = [{"name": n, "type": "space", "unit": "micrometer"} for n in ("z", "y", "x")]
    return ([{"name": "c", "type": "channel"}] if ndim == 4 else []) + space


def create_ome_zarr(
    path: str | Path,
    shape: Sequence[int],
    dtype: Any,
    *,
    voxel_size_um: float | None,
    name: str,
    chunks: Sequence[int] = DEFAULT_CHUNKS,
    classes: Sequence[dict[str, Any]] | None = None,
    channels: Sequence[str] | None = None,
    extra: dict[str, Any] | None = None,
) -> Any:
    """Create an OME-Zarr image with an empty level ``0``; return that zarr array.

    Parameters
    ----------
    path : path-like
        Folder to create (replaced if it exists: callers write under a temporary name).
    shape : (z, y, x) or (c, z, y, x)
    dtype : dtype
    voxel_size_um : float or None
        Isotropic voxel size in µm (None: 1, unit unknown, said in ``olmap`` metadata).
    name : str
        Image name in the metadata.
    chunks : (z, y, x)
        Chunk shape (a channel axis gets chunks of 1).
    classes : list of dict, optional
        For label images: ``{"code", "name", "colour"}`` per class (colour as ``#rrggbb``).
    channels : list of str, optional
        Names of the channels of a ``(c, z, y, x)`` image (e.g. per-class probabilities).
    extra : dict, optional
        More metadata under the ``olmap`` key.
    """
    import zarr
    from zarr.codecs import BloscCodec

    shape = tuple(int(s) for s in shape)
    zyx = tuple(min(c, s) for c, s in zip(chunks, shape[-3:], strict=True))
    full_chunks = (1, *zyx) if len(shape) == 4 else zyx
    group = zarr.open_group(str(path), mode="w", zarr_format=3)
    array = group.create_array(
        "0",
        shape=shape,
        chunks=full_chunks,
        dtype=np.dtype(dtype),
        fill_value=0,
        compressors=BloscCodec(cname="zstd", clevel=3, shuffle="bitshuffle"),
        dimension_names=[a["name"] for a in _axes(len(shape))],
    )
    meta: dict[str, Any] = {
        "version": NGFF_VERSION,
        "multiscales": [_multiscale(name, shape, 1, voxel_size_um)],
    }
    if classes is not None:
        meta["image-label"] = {
            "version": NGFF_VERSION,
            "colors": [
                {"label-value": int(c["code"]), "rgba": _rgba(c["colour"])} for c in classes
            ],
            "properties": [
                {"label-value": int(c["code"]), "name": str(c["name"])} for c in classes
            ],
        }
    olmap_meta: dict[str, Any] = {"voxel_size_um": voxel_size_um, **(extra or {})}
    if channels is not None:
        olmap_meta["channels"] = list(channels)
    group.attrs.update({"ome": meta, "olmap": olmap_meta})
    return array


def _multiscale(
    name: str, shape: Sequence[int], levels: int, voxel: float | None
) -> dict[str, Any]:
    v = voxel or 1.0
    lead = [1.0] if len(shape) == 4 else []
    datasets = [
        {
            "path": str(k),
            "coordinateTransformations": [{"type": "scale", "scale": lead + [v * 2**k] * 3}],
        }
        for k in range(levels)
    ]
    return {"name": name, "axes": _axes(len(shape)), "datasets": datasets}


def _rgba(colour: str | Sequence[int]) -> list[int]:
    """``[r, g, b, 255]`` from ``#rrggbb`` or a sequence of 3-4 ints.

    Examples
    --------
    >>> _rgba("#ff8000")
    [255, 128, 0, 255]
    """
    if isinstance(colour, str):
        h = colour.lstrip("#")
        return [int(h[i : i + 2], 16) for i in (0, 2, 4)] + [255]
    values = [int(v) for v in colour]
    return values + [255] * (4 - len(values))


def pyramid_levels(shape: Sequence[int], min_side: int = 64, max_levels: int = 6) -> int:
    """Number of levels (with level 0) until the smallest of y, x would drop below ``min_side``.

    Examples
    --------
    >>> pyramid_levels((256, 256, 256)), pyramid_levels((10, 40, 40))
    (3, 1)
    """
    side = min(shape[-2:])
    return max(
        1,
        min(
            max_levels, 1 + int(math.log2(max(1, side // min_side))) if side >= 2 * min_side else 1
        ),
    )


def write_pyramid(
    path: str | Path,
    *,
    labels: bool,
    levels: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Add the downsampled levels of the OME-Zarr image at ``path``; return the level count.

    Each level halves z (while > 1), y and x of the one above: labels by taking every other
    voxel, grey values by the mean of each 2x2x2 cell (rounded for integer types). Works one
    output chunk at a time.
    """
    import zarr

    group = zarr.open_group(str(path), mode="r+")
    base = group["0"]
    levels = pyramid_levels(base.shape) if levels is None else levels
    ome = dict(group.attrs["ome"])
    ms = ome["multiscales"][0]
    lead = base.ndim - 3
    factors_all = []
    prev = base
    for k in range(1, levels):
        f = tuple([1] * lead + [2 if prev.shape[lead] > 1 else 1, 2, 2])
        shape = tuple(-(-s // fi) for s, fi in zip(prev.shape, f, strict=True))
        arr = group.create_array(
            str(k),
            shape=shape,
            chunks=tuple(min(c, s) for c, s in zip(base.chunks, shape, strict=True)),
            dtype=base.dtype,
            fill_value=0,
            compressors=base.compressors,
            dimension_names=base.metadata.dimension_names,
        )
        for region in _chunk_regions(shape, arr.chunks):
            src = tuple(
                slice(r.start * fi, min(p, r.stop * fi))
                for r, fi, p in zip(region, f, prev.shape, strict=True)
            )
            arr[region] = _downsample(np.asarray(prev[src]), f, labels)
            if progress is not None:
                progress(1)
        factors_all.append(f)
        prev = arr
    scale0 = ms["datasets"][0]["coordinateTransformations"][0]["scale"]
    datasets, scale = [ms["datasets"][0]], list(scale0)
    for k, f in enumerate(factors_all, start=1):
        scale = [s * fi for s, fi in zip(scale, f, strict=True)]
        datasets.append(
            {"path": str(k), "coordinateTransformations": [{"type": "scale", "scale": scale}]}
        )
    ms["datasets"] = datasets
    ome["multiscales"] = [ms]
    group.attrs["ome"] = ome
    return levels


def _chunk_regions(shape: Sequence[int], chunks: Sequence[int]):
    import itertools

    ranges = [range(0, s, c) for s, c in zip(shape, chunks, strict=True)]
    for starts in itertools.product(*ranges):
        yield tuple(slice(a, min(a + c, s)) for a, c, s in zip(starts, chunks, shape, strict=True))


def _downsample(block: np.ndarray, factors: Sequence[int], labels: bool) -> np.ndarray:
    """Every ``factors``-th voxel (labels) or the mean of each cell (grey; edge cells partial).

    Examples
    --------
    >>> _downsample(np.arange(8, dtype=np.uint8).reshape(2, 4), (1, 2), labels=False).tolist()
    [[0, 2], [4, 6]]
    """
    if labels:
        return block[tuple(slice(None, None, f) for f in factors)]
    out_shape = tuple(-(-s // f) for s, f in zip(block.shape, factors, strict=True))
    total = np.zeros(out_shape, np.float64)
    count = np.zeros(out_shape, np.float64)
    for offs in np.ndindex(*factors):
        part = block[tuple(slice(o, None, f) for o, f in zip(offs, factors, strict=True))]
        sl = tuple(slice(0, s) for s in part.shape)
        total[sl] += part
        count[sl] += 1
    mean = total / count
    if np.issubdtype(block.dtype, np.integer):
        return np.rint(mean).astype(block.dtype)
    return mean.astype(block.dtype)


def write_multipage_tiff(
    source: Any,
    out: str | Path,
    *,
    voxel_size_um: float | None,
    progress: Callable[[int], None] | None = None,
) -> None:
    """Write a ``(z, y, x)`` array-like (zarr, :class:`olmap.io.volume.Volume`) as a BigTIFF,
    one page per z slice read at a time, ImageJ-style spacing in µm when known."""
    import tifffile

    read = source.read if hasattr(source, "read") else (lambda r: np.asarray(source[r]))
    z, y, x = source.shape

    def pages():
        for k in range(z):
            yield read((slice(k, k + 1), slice(0, y), slice(0, x)))[0]
            if progress is not None:
                progress(1)

    # Resolution in pixels per centimetre (a TIFF unit every reader knows).
    resolution = (1e4 / voxel_size_um,) * 2 if voxel_size_um else None
    with tifffile.TiffWriter(out, bigtiff=True) as tif:
        tif.write(
            pages(),
            shape=(z, y, x),
            dtype=np.dtype(source.dtype),
            resolution=resolution,
            resolutionunit="CENTIMETER" if voxel_size_um else None,
            photometric="minisblack",  # never RGB, whatever the width
            metadata=None,
        )

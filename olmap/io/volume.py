"""CT volumes on disk, read region by region: never a whole volume in memory.

A volume is a 3D array with axes ``(z, y, x)`` and, where known, a voxel size in µm. It may be
stored as (shared/CLI.md, "CT mode"):

- a folder of 2D TIFF slices, file-name order = z (natural order: ``s2`` before ``s10``);
- a multi-page TIFF (one page per z);
- an HDF5 dataset, ``scan.h5:/exchange/data`` (the beamline's DataExchange layout);
- a zarr array or an OME-Zarr image (its full-resolution level);
- raw binary, with ``shape`` and ``dtype`` given (C order, little-endian unless the dtype
  says otherwise).

:func:`open_volume` gives a :class:`Volume` whose :meth:`Volume.read` returns any region;
uncompressed TIFF slices and raw files are read row range by row range with positioned reads
(no memory map, whose resident pages would count against the memory budget).

A *series* (:func:`list_series`) is a folder of such volumes whose names sort in time order:
``t000/``, ``t001/`` slice folders, or ``t000.tif``, ``t001.tif``, ... files.
"""

from __future__ import annotations

import abc
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from olmap.errors import InputError

#: Grey-value types olmap reads and writes for volumes (shared/CLI.md).
VOLUME_DTYPES = ("uint8", "uint16", "float32")
#: Label volumes may also be stored as these (scribbles painted in other tools).
LABEL_DTYPES = ("uint8", "uint16", "int8", "int16", "int32", "uint32", "int64")
TIFF_SUFFIXES = (".tif", ".tiff")
HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".nxs")
Region = tuple[slice, slice, slice]


def natural_key(name: str) -> list[Any]:
    """Sort key putting ``s2`` before ``s10``.

    Examples
    --------
    >>> sorted(["s10.tif", "s2.tif", "s1.tif"], key=natural_key)
    ['s1.tif', 's2.tif', 's10.tif']
    """
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


@dataclass(frozen=True)
class VolumeInfo:
    """What a volume is, from its headers alone."""

    path: str
    kind: str
    shape: tuple[int, int, int]
    dtype: np.dtype
    voxel_size_um: float | None
    chunks: tuple[int, int, int]

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


class Volume(abc.ABC):
    """A volume opened for reading regions; use as a context manager."""

    def __init__(self, info: VolumeInfo) -> None:
        self.info = info

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.info.shape

    @property
    def dtype(self) -> np.dtype:
        return self.info.dtype

    @property
    def voxel_size_um(self) -> float | None:
        return self.info.voxel_size_um

    def read(self, region: Sequence[slice] | None = None) -> np.ndarray:
        """The voxels of ``region`` (three slices with steps of 1; default: everything)."""
        region = _full(self.shape) if region is None else tuple(region)
        bounds = []
        for s, n in zip(region, self.shape, strict=True):
            start, stop, step = s.indices(n)
            if step != 1:
                raise ValueError("volume regions must be contiguous")
            bounds.append(slice(start, max(start, stop)))
        return self._read(tuple(bounds))

    @abc.abstractmethod
    def _read(self, region: Region) -> np.ndarray:
        """The voxels of a contiguous, in-bounds ``region`` (each storage kind reads its own)."""

    def close(self) -> None:  # noqa: B027 (a default: kinds without open files keep it)
        """Release file handles."""

    def __enter__(self) -> Volume:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _full(shape: Sequence[int]) -> Region:
    return tuple(slice(0, n) for n in shape)  # type: ignore[return-value]


def _rows(fd: int, offset: int, row_bytes: int, dtype: np.dtype, width: int, region: Region):
    """Rows ``region[1]`` of one contiguous 2D image stored at ``offset``, cropped to x."""
    ys, xs = region[1], region[2]
    n = ys.stop - ys.start
    buf = os.pread(fd, n * row_bytes, offset + ys.start * row_bytes)
    if len(buf) != n * row_bytes:
        raise InputError("file is shorter than its header says (truncated?)")
    return np.frombuffer(buf, dtype).reshape(n, width)[:, xs]


class _TiffPages(Volume):
    """Slices from TIFF pages: one page per file (a folder) or all pages of one file."""

    def __init__(self, info: VolumeInfo, pages: list[tuple[Path, int]]) -> None:
        super().__init__(info)
        self.pages = pages  # (file, page index) per z

    def _read(self, region: Region) -> np.ndarray:
        import tifffile

        out = np.empty([s.stop - s.start for s in region], self.dtype)
        for k, z in enumerate(range(region[0].start, region[0].stop)):
            path, index = self.pages[z]
            try:
                with tifffile.TiffFile(path) as tif:
                    page = tif.pages[index]
                    if page.shape != self.shape[1:]:
                        raise InputError(
                            f"{path}: slice of {page.shape[0]}x{page.shape[1]} px, "
                            f"the others are {self.shape[1]}x{self.shape[2]}"
                        )
                    where = page.dataoffsets[0] if page.is_contiguous else None
                    native = page.dtype.newbyteorder(tif.byteorder)
                    if (
                        where
                        and page.compression == 1
                        and native.itemsize * 8 == page.bitspersample
                    ):
                        row_bytes = self.shape[2] * native.itemsize
                        with open(path, "rb") as f:
                            rows = _rows(
                                f.fileno(), where, row_bytes, native, self.shape[2], region
                            )
                        out[k] = rows
                    else:
                        out[k] = page.asarray()[region[1], region[2]]
            except InputError as exc:
                if str(exc).startswith(str(path)):
                    raise
                raise InputError(f"{path}: {exc}") from exc
            except (OSError, ValueError, tifffile.TiffFileError) as exc:
                raise InputError(f"{path}: unreadable TIFF slice ({exc})") from exc
        return out


class _Raw(Volume):
    def __init__(self, info: VolumeInfo, path: Path) -> None:
        super().__init__(info)
        self.fd = os.open(path, os.O_RDONLY)

    def _read(self, region: Region) -> np.ndarray:
        _, height, width = self.shape
        row_bytes = width * self.dtype.itemsize
        out = np.empty([s.stop - s.start for s in region], self.dtype)
        for k, z in enumerate(range(region[0].start, region[0].stop)):
            out[k] = _rows(self.fd, z * height * row_bytes, row_bytes, self.dtype, width, region)
        return out

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class _ArrayVolume(Volume):
    """HDF5 datasets and zarr arrays: they slice lazily themselves."""

    def __init__(self, info: VolumeInfo, array: Any, handle: Any = None) -> None:
        super().__init__(info)
        self.array, self.handle = array, handle

    def _read(self, region: Region) -> np.ndarray:
        return np.asarray(self.array[region])

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None


def _check_dtype(dtype: Any, where: str, allowed: Sequence[str]) -> np.dtype:
    dtype = np.dtype(dtype)
    if dtype.newbyteorder("=").name not in allowed:
        raise InputError(f"{where}: voxels of type {dtype.name}; olmap reads {', '.join(allowed)}")
    return dtype


def _check_shape(shape: Sequence[int], where: str) -> tuple[int, int, int]:
    if len(shape) == 2:
        shape = (1, *shape)
    if len(shape) != 3 or min(shape) < 1:
        raise InputError(f"{where}: expected a 3D volume (z, y, x), found shape {tuple(shape)}")
    return tuple(int(s) for s in shape)  # type: ignore[return-value]


def split_hdf5(spec: str) -> tuple[Path, str] | None:
    """``("scan.h5", "/exchange/data")`` for ``"scan.h5:/exchange/data"``; None if not HDF5.

    Examples
    --------
    >>> split_hdf5("scan.h5:/exchange/data")
    (PosixPath('scan.h5'), '/exchange/data')
    >>> split_hdf5("slices/") is None
    True
    """
    m = re.match(
        r"^(.*?(?:" + "|".join(re.escape(s) for s in HDF5_SUFFIXES) + r"))(?::(.*))?$", spec, re.I
    )
    return (Path(m.group(1)), m.group(2) or "") if m else None


def open_volume(
    spec: str | Path,
    *,
    shape: Sequence[int] | None = None,
    dtype: str | None = None,
    voxel_size_um: float | None = None,
    labels: bool = False,
) -> Volume:
    """Open a volume for region reads (see the module docstring for the formats).

    Parameters
    ----------
    spec : str or path-like
        Folder of TIFF slices, multi-page TIFF, ``file.h5:/path/in/file``, zarr/OME-Zarr, or a
        raw file (with ``shape`` and ``dtype``).
    shape : (z, y, x), optional
        Shape of a raw file (required for raw, refused otherwise).
    dtype : str, optional
        Voxel type of a raw file.
    voxel_size_um : float, optional
        Voxel size in µm; overrides what the metadata say.
    labels : bool
        The volume holds class codes (scribbles, labels): integer types are allowed.

    Raises
    ------
    InputError
        One line naming the file and the problem: missing file, unequal or missing slices,
        unknown HDF5 path, a raw file whose size does not match ``shape``, unsupported type.
    """
    text = str(spec)
    allowed = LABEL_DTYPES if labels else VOLUME_DTYPES
    if voxel_size_um is not None and not voxel_size_um > 0:
        raise InputError(f"{text}: voxel size must be > 0 µm, got {voxel_size_um}")
    h5 = split_hdf5(text)
    path = Path(text)
    if shape is not None or dtype is not None:
        if shape is None or dtype is None:
            raise InputError(f"{text}: a raw volume needs both --shape and --dtype")
        vol = _open_raw(path, shape, dtype, allowed)
    elif h5 is not None:
        vol = _open_hdf5(*h5, allowed)
    elif not path.exists():
        raise InputError(f"{text}: no such file or folder")
    elif path.is_dir() and _is_zarr(path):
        vol = _open_zarr(path, allowed)
    elif path.is_dir():
        vol = _open_tiff_folder(path, allowed)
    elif path.suffix.lower() in TIFF_SUFFIXES:
        vol = _open_multipage(path, allowed)
    else:
        raise InputError(
            f"{text}: not a volume olmap reads (TIFF folder, multi-page TIFF, file.h5:/dataset, "
            "zarr; raw binary needs --shape Z,Y,X --dtype)"
        )
    if voxel_size_um is not None:
        vol.info = VolumeInfo(**{**vol.info.__dict__, "voxel_size_um": float(voxel_size_um)})
    return vol


def _open_raw(path: Path, shape: Sequence[int], dtype: str, allowed) -> Volume:
    shape = _check_shape(shape, str(path))
    dt = _check_dtype(dtype, str(path), allowed)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    need, size = math.prod(shape) * dt.itemsize, path.stat().st_size
    if need != size:
        raise InputError(
            f"{path}: {size} bytes, but --shape {'x'.join(map(str, shape))} of {dt.name} "
            f"needs {need}"
        )
    info = VolumeInfo(str(path), "raw", shape, dt, None, (1, shape[1], shape[2]))
    return _Raw(info, path)


def _open_hdf5(path: Path, inner: str, allowed) -> Volume:
    import h5py

    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise InputError(f"{path}: not a readable HDF5 file ({exc})") from exc
    try:
        if not inner:
            found: list[str] = []
            f.visititems(
                lambda n, o: (
                    found.append(n) if isinstance(o, h5py.Dataset) and o.ndim == 3 else None
                )
            )
            if len(found) != 1:
                raise InputError(
                    f"{path}: name the dataset, e.g. {path}:/exchange/data "
                    f"(3D datasets here: {', '.join(found) or 'none'})"
                )
            inner = "/" + found[0]
        if inner not in f or not isinstance(f[inner], h5py.Dataset):
            raise InputError(f"{path}: no dataset {inner} in this HDF5 file")
        ds = f[inner]
        shape = _check_shape(ds.shape, f"{path}:{inner}")
        dt = _check_dtype(ds.dtype, f"{path}:{inner}", allowed)
        size = None
        for key in ("voxel_size_um", "voxel_size", "pixel_size"):
            if key in ds.attrs:
                size = float(np.ravel(ds.attrs[key])[-1])
                break
        chunks = ds.chunks or (1, shape[1], shape[2])
        info = VolumeInfo(f"{path}:{inner}", "hdf5", shape, dt, size, tuple(chunks))
        array = ds if ds.ndim == 3 else ds[()].reshape(shape)
        return _ArrayVolume(info, array, f)
    except BaseException:
        f.close()
        raise


def _is_zarr(path: Path) -> bool:
    return any((path / n).exists() for n in ("zarr.json", ".zarray", ".zgroup"))


def _open_zarr(path: Path, allowed) -> Volume:
    import zarr

    try:
        node = zarr.open(str(path), mode="r")
    except Exception as exc:
        raise InputError(f"{path}: unreadable zarr ({exc})") from exc
    size = None
    if isinstance(node, zarr.Group):
        ms = _multiscales(node.attrs)
        if not ms:
            raise InputError(f"{path}: a zarr group without OME-Zarr multiscales metadata")
        level = ms[0]["datasets"][0]
        array = node[level["path"]]
        axes = [a["name"] if isinstance(a, dict) else a for a in ms[0].get("axes", [])]
        for t in level.get("coordinateTransformations", []):
            if t.get("type") == "scale":
                size = float(t["scale"][-1])
        if array.ndim == 4 and axes[:1] in (["c"], ["t"]) and array.shape[0] == 1:
            array = _Squeezed(array)
    else:
        array = node
    shape = _check_shape(array.shape, str(path))
    dt = _check_dtype(array.dtype, str(path), allowed)
    chunks = tuple(array.chunks[-3:])
    if len(chunks) < 3:
        chunks = (1, *chunks)
    info = VolumeInfo(str(path), "zarr", shape, dt, size, chunks)
    if array.ndim == 2:
        array = _Squeezed(array, expand=True)
    return _ArrayVolume(info, array)


class _Squeezed:
    """A zarr array seen with a length-1 leading axis removed (or added)."""

    def __init__(self, array: Any, expand: bool = False) -> None:
        self.array, self.expand = array, expand
        self.dtype, self.chunks = array.dtype, array.chunks
        self.shape = (1, *array.shape) if expand else array.shape[1:]
        self.ndim = 3

    def __getitem__(self, region: Region) -> np.ndarray:
        if self.expand:
            return np.asarray(self.array[region[1:]])[None][region[0]]
        return np.asarray(self.array[(0, *region)])


def _multiscales(attrs: Any) -> list[dict]:
    attrs = dict(attrs)
    return attrs.get("ome", attrs).get("multiscales", [])


def _tiff_voxel_size(tif: Any) -> float | None:
    """µm per voxel from ImageJ (unit ``micron``) or resolution tags; None if not stated."""
    page = tif.pages[0]
    ij = tif.imagej_metadata or {}
    unit = str(ij.get("unit", "")).lower().replace("\\u00b5", "µ")
    tag = page.tags.get("XResolution")
    scale = {"micron": 1.0, "µm": 1.0, "um": 1.0, "mm": 1e3, "nm": 1e-3}.get(unit)
    if tag is not None and scale is not None:
        num, den = tag.value
        if num > 0:
            return den / num * scale
    unit_tag = page.tags.get("ResolutionUnit")
    if tag is not None and unit_tag is not None and int(unit_tag.value) == 3:  # centimetre
        num, den = tag.value
        if num > 0 and den / num < 1e-2:  # a physical pixel, not a 72-dpi default
            return den / num * 1e4
    return None


def _open_multipage(path: Path, allowed) -> Volume:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            pages = tif.pages
            first = pages[0]
            n = len(pages)
            for i in (n - 1, n // 2):
                if pages[i].shape != first.shape:
                    raise InputError(f"{path}: page {i} is {pages[i].shape}, page 0 {first.shape}")
            shape = _check_shape((n, *first.shape), str(path))
            dt = _check_dtype(first.dtype, str(path), allowed)
            size = _tiff_voxel_size(tif)
    except tifffile.TiffFileError as exc:
        raise InputError(f"{path}: unreadable TIFF ({exc})") from exc
    info = VolumeInfo(str(path), "tiff", shape, dt, size, (1, shape[1], shape[2]))
    return _TiffPages(info, [(path, i) for i in range(n)])


def slice_files(folder: Path) -> list[Path]:
    """The TIFF slices of ``folder`` in z order, checked for gaps in their numbering.

    Raises
    ------
    InputError
        No TIFF in the folder, or numbered names with a number missing (a lost slice).
    """
    files = sorted(
        (p for p in folder.iterdir() if p.suffix.lower() in TIFF_SUFFIXES and p.is_file()),
        key=lambda p: natural_key(p.name),
    )
    if not files:
        raise InputError(f"{folder}: no TIFF slices (*.tif) in this folder")
    numbers = [re.findall(r"\d+", p.stem) for p in files]
    if all(numbers) and len({len(n) for n in numbers}) == 1:
        last = [int(n[-1]) for n in numbers]
        expected = set(range(last[0], last[0] + len(last)))
        if sorted(last) == last and set(last) != expected:
            gaps = sorted(set(range(last[0], last[-1] + 1)) - set(last))
            raise InputError(
                f"{folder}: slice number {gaps[0]} is missing from the sequence "
                f"{files[0].name} ... {files[-1].name} ({len(gaps)} missing)"
            )
    return files


def _open_tiff_folder(folder: Path, allowed) -> Volume:
    import tifffile

    files = slice_files(folder)
    try:
        with tifffile.TiffFile(files[0]) as tif:
            first = tif.pages[0]
            dt = _check_dtype(first.dtype, str(files[0]), allowed)
            size = _tiff_voxel_size(tif)
            yx = first.shape
        # Every slice's header (cheap): unequal sizes are refused before any work.
        for p in files[1:]:
            with tifffile.TiffFile(p) as tif:
                page = tif.pages[0]
                if page.shape != yx or page.dtype != first.dtype:
                    raise InputError(
                        f"{p}: slice of {'x'.join(map(str, page.shape))} {page.dtype}, but "
                        f"{files[0].name} is {'x'.join(map(str, yx))} {first.dtype}"
                    )
    except tifffile.TiffFileError as exc:
        raise InputError(f"{folder}: unreadable TIFF slice ({exc})") from exc
    shape = _check_shape((len(files), *yx), str(folder))
    info = VolumeInfo(str(folder), "tiff-folder", shape, dt, size, (1, shape[1], shape[2]))
    return _TiffPages(info, [(p, 0) for p in files])


def list_series(folder: str | Path) -> list[Path]:
    """The volumes of a time series, in time (name) order.

    Entries are slice folders (``t000/``), zarr folders, TIFF or HDF5 files; other files
    (``metadata.json``, CSV) and folders named ``truth``/``scribbles`` are not scans.

    Raises
    ------
    InputError
        If the folder does not exist or holds no volume.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder of volumes")
    skip = {"truth", "scribbles"}
    scans = [
        p
        for p in folder.iterdir()
        if p.name not in skip
        and not p.name.startswith(".")
        and (
            (p.is_dir() and (_is_zarr(p) or any(p.glob("*.tif*"))))
            or p.suffix.lower() in TIFF_SUFFIXES + HDF5_SUFFIXES
        )
    ]
    if not scans:
        raise InputError(f"{folder}: no volumes (t000/ slice folders, *.tif, *.h5, *.zarr)")
    return sorted(scans, key=lambda p: natural_key(p.name))


def volume_stamp(spec: str | Path) -> list[int]:
    """Sizes and modification times (ns) of a volume's files, for a job's fingerprint: a
    checkpoint of a job on a volume that has changed since is not resumed."""
    h5 = split_hdf5(str(spec))
    path = h5[0] if h5 is not None else Path(spec)
    try:
        if path.is_file():
            st = path.stat()
            return [st.st_size, st.st_mtime_ns]
        stats = [p.stat() for p in path.rglob("*") if p.is_file()]
        return [sum(s.st_size for s in stats), max((s.st_mtime_ns for s in stats), default=0)]
    except OSError:
        return []

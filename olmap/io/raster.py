"""Raster input and output through rasterio (GeoTIFF, BigTIFF, GDAL VRT, PNG/TIFF images).

Conventions (``shared/CLI.md``): map units are micrometres; the affine transform is north-up
with its origin at the top-left corner, ``Affine(px, 0, 0, 0, -px, H*px)``, so every
coordinate is positive and GIS shows the image the right way up. Band descriptions carry
element symbols for EDS stacks.
"""

from __future__ import annotations

import ctypes
import logging
import math
import re
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio._err import CPLE_BaseError  # GDAL's errors as rasterio raises them
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
from rasterio.windows import Window

from olmap.core.windows import sample_windows
from olmap.errors import InputError, InputFileNotFoundError, NotCoregisteredError, first_line
from olmap.io.outputs import atomic_path, check_writable, write_failure

#: GDAL block cache for olmap's own processes (bytes). GDAL's default (5 % of RAM) would
#: dominate peak memory of streaming jobs; windows are written once and overlapping reads
#: revisit only the last window's pixels, so a small cache suffices. Measured: reading a
#: 16,000² px mosaic in 2,048-px windows peaks at 325 MB with a 256 MB cache, 128 MB with 32 MB
#: (``olmap predict`` grew 190 MB from 8,000² to 16,000² with 256 MB; docs/benchmarks.md).
GDAL_CACHE_BYTES = 64 * 2**20

#: Files whose uncompressed size exceeds this are written as BigTIFF (classic TIFF ends at 4 GiB).
BIGTIFF_THRESHOLD = 2**32 - 2**28

_TRANSFORM_TOL = 1e-9


@dataclass(frozen=True)
class RasterInfo:
    """What olmap needs to know about a raster without reading its pixels.

    Attributes
    ----------
    path : Path
    height, width, count : int
        Shape in pixels and number of bands.
    dtype : str
    transform : Affine
    pixel_size_um : float or None
        Side of one pixel in µm, or ``None`` for an image without a georeference.
    band_names : tuple of str
        Band descriptions ("" where a band has none).
    nodata : float or None
    tags : dict
        Dataset-level metadata tags.
    """

    path: Path
    height: int
    width: int
    count: int
    dtype: str
    transform: Affine
    pixel_size_um: float | None
    band_names: tuple[str, ...]
    nodata: float | None
    tags: dict[str, str]

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) in pixels."""
        return self.height, self.width


def micrometre_transform(height: int, pixel_size_um: float) -> Affine:
    """North-up transform in µm with the origin at the top-left corner.

    Parameters
    ----------
    height : int
        Image height in pixels.
    pixel_size_um : float
        Pixel side in µm (> 0).

    Examples
    --------
    >>> micrometre_transform(100, 0.5)
    Affine(0.5, 0.0, 0.0,
           0.0, -0.5, 50.0)
    """
    if not (pixel_size_um > 0 and math.isfinite(pixel_size_um)):
        raise InputError(f"pixel size must be a positive number of µm, got {pixel_size_um}")
    return Affine(pixel_size_um, 0.0, 0.0, 0.0, -pixel_size_um, height * pixel_size_um)


def grey_level_scale(dtype: str | np.dtype) -> float:
    """Factor that puts a BSE raster of ``dtype`` on 8-bit grey levels.

    1/257 for integer rasters of 16 bits or more (65535 / 255), 1 otherwise: 8-bit rasters
    are grey levels already, and float rasters are taken to hold them.
    """
    dt = np.dtype(dtype)
    return 1.0 / 257.0 if dt.kind in "iu" and dt.itemsize >= 2 else 1.0


def unsigned_grey_scale(info: RasterInfo, what: str) -> float:
    """:func:`grey_level_scale` of a BSE image that must be unsigned 8- or 16-bit.

    For values stated in 8-bit grey levels (``what``, e.g. a rule's crack threshold): signed
    and floating-point images carry no such scale, so they are refused instead of read as if
    they had one.

    Raises
    ------
    InputError
        For any other data type.
    """
    if info.dtype not in ("uint8", "uint16"):
        raise InputError(
            f"{info.path}: {info.dtype} BSE, but {what} is in grey levels of unsigned 8-bit BSE "
            "(16-bit: x 257); convert the image to uint8 or uint16"
        )
    return grey_level_scale(info.dtype)


def window_affine(window: Window, transform: Affine) -> Affine:
    """Transform of ``window`` of a raster with ``transform``.

    :func:`rasterio.windows.transform` does the same with ``Affine * tuple``, which affine
    3 warns about.
    """
    return transform @ Affine.translation(window.col_off, window.row_off)


def pixel_size_from_transform(transform: Affine, *, path: str | Path = "raster") -> float | None:
    """Pixel side in µm from a north-up, square-pixel transform; ``None`` if identity.

    Raises
    ------
    InputError
        For rotated or non-square pixels, which olmap does not support.
    """
    if transform.is_identity:
        return None
    a, b, _, d, e, _ = transform[:6]
    if abs(b) > _TRANSFORM_TOL or abs(d) > _TRANSFORM_TOL:
        raise InputError(f"{path}: rotated pixel grids are not supported; resample to north-up")
    if not math.isclose(abs(a), abs(e), rel_tol=1e-6):
        raise InputError(f"{path}: pixels are not square ({abs(a)} x {abs(e)} µm); resample first")
    return abs(a)


@contextmanager
def gdal_env() -> Iterator[None]:
    """rasterio environment with olmap's GDAL settings (bounded block cache)."""
    # Internal masks: a nodata mask written with a GeoTIFF travels with it when renamed.
    with rasterio.Env(
        GDAL_CACHEMAX=GDAL_CACHE_BYTES, GDAL_NUM_THREADS="ALL_CPUS", GDAL_TIFF_INTERNAL_MASK=True
    ):
        yield


class _GdalErrorLog:
    """GDAL's errors during writes, which rasterio only logs, collected to be raised.

    rasterio reports GDAL errors that happen outside a call it checks (a block flushed when the
    cache fills, the file's directory written on close) as INFO records of its ``rasterio._env``
    and ``rasterio._err`` loggers, and carries on: a full disk then leaves a broken GeoTIFF that
    looks written. While at least one :meth:`capture` is active, those records are collected
    (and passed on to the usual handlers only if their level was shown before).
    """

    LOGGERS = ("rasterio._env", "rasterio._err")
    MARK = "signalled an error"
    #: Errors about writing, as GDAL and libtiff word them ("Write error", "IO error writing
    #: tag data", "Free disk space ..."); other errors logged meanwhile belong to reads and
    #: opens elsewhere in the process, which raise their own exceptions.
    WRITING = re.compile(r"writ|disk space|no space", re.IGNORECASE)

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._active: list[list[str]] = []
        self._saved: dict[str, tuple[int, int]] = {}

    def _filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if not self.WRITING.search(message):
            return record.levelno >= self._saved.get(record.name, (0, 0))[1]
        if self.MARK in message:
            with self._guard:
                for found in self._active:
                    found.append(message)
        # Warnings that follow a failed write ("A strile cannot be rewritten in place") are
        # part of the one error raised for it: shown only when debugging.
        shown = self._saved.get(record.name, (0, 0))[1]
        return record.levelno >= (shown if shown <= logging.DEBUG else max(logging.ERROR, shown))

    @contextmanager
    def capture(self) -> Iterator[list[str]]:
        found: list[str] = []
        with self._guard:
            if not self._active:
                for name in self.LOGGERS:
                    logger = logging.getLogger(name)
                    self._saved[name] = (logger.level, logger.getEffectiveLevel())
                    logger.setLevel(min(logger.getEffectiveLevel(), logging.INFO))
                    logger.addFilter(self._filter)
            self._active.append(found)
        try:
            yield found
        finally:
            with self._guard:
                # by identity: two empty lists are equal
                self._active = [f for f in self._active if f is not found]
                if not self._active:
                    for name in self.LOGGERS:
                        logger = logging.getLogger(name)
                        logger.removeFilter(self._filter)
                        logger.setLevel(self._saved.pop(name)[0])


_GDAL_ERRORS = _GdalErrorLog()


_QUIET_LIBTIFFS: set[str] = set()


def quiet_libtiff() -> int:
    """Stop libtiff printing write errors straight to stderr (GDAL reports them as well).

    Without a per-file handler libtiff's default one writes e.g. "_tiffWriteProc: No space left
    on device." to the terminal, many times, above olmap's own one-line error. Linux only: every
    libtiff loaded (``/proc/self/maps``; GDAL's, Pillow's...) not yet quietened is. Returns how
    many are quiet.
    """
    try:
        with open("/proc/self/maps") as maps:
            libs = {line.split()[-1] for line in maps if "/libtiff" in line}
    except OSError:
        return 0
    for lib in libs - _QUIET_LIBTIFFS:
        try:
            handle = ctypes.CDLL(lib)
            handle.TIFFSetErrorHandler.argtypes = [ctypes.c_void_p]
            handle.TIFFSetErrorHandler.restype = ctypes.c_void_p
            handle.TIFFSetErrorHandler(None)
        except (OSError, AttributeError):
            continue
        _QUIET_LIBTIFFS.add(lib)
    return len(_QUIET_LIBTIFFS)


@contextmanager
def gdal_write_errors(path: str | Path) -> Iterator[None]:
    """Raise :class:`~olmap.errors.OutputWriteError` for ``path`` when GDAL failed to write.

    Wraps the lifetime of a dataset open for writing (its close included: GDAL writes the
    file's directory then).
    """
    quiet_libtiff()
    with _GDAL_ERRORS.capture() as found:
        yield
    if found:
        text = found[0].split("msg=", 1)[-1].strip("'\"")
        raise write_failure(path, RuntimeError(f"GDAL: {text}"))


@contextmanager
def open_raster(path: str | Path, **options: Any) -> Iterator[rasterio.io.DatasetReader]:
    """Open a raster for reading, turning GDAL's failures into one clear :class:`InputError`.

    ``options`` go to :func:`rasterio.open` (e.g. ``overview_level=0``: the first overview).
    """
    path = Path(path)
    if not path.exists():
        raise InputFileNotFoundError(path, "raster")
    try:
        with gdal_env(), warnings.catch_warnings():
            # Plain images have no georeference; olmap asks for a pixel size instead.
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path, **options) as ds:
                _check_sources(ds, path)
                yield ds
    except RasterioIOError as exc:
        raise InputError(f"{path}: not a readable raster ({first_line(exc)})") from exc
    except CPLE_BaseError as exc:  # a block GDAL cannot read: a damaged or cut-short file
        raise InputError(f"{path}: cannot read its pixels ({first_line(exc)})") from exc


def _check_sources(ds: rasterio.io.DatasetReader, path: Path) -> None:
    """Refuse a VRT mosaic whose tiles are not all there: GDAL reads a missing one as zeros
    (only logging its name), which would be a silently wrong mosaic."""
    if ds.driver != "VRT":
        return
    missing = [f for f in ds.files[1:] if not f.startswith("/vsi") and not Path(f).exists()]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise InputError(f"{path}: its tile {missing[0]} is missing{more}")


def _dataset_info(ds: rasterio.io.DatasetReader, path: str | Path) -> RasterInfo:
    return RasterInfo(
        path=Path(path),
        height=ds.height,
        width=ds.width,
        count=ds.count,
        dtype=ds.dtypes[0],
        transform=ds.transform,
        pixel_size_um=pixel_size_from_transform(ds.transform, path=path),
        band_names=tuple(d or "" for d in ds.descriptions),
        nodata=ds.nodata,
        tags=dict(ds.tags()),
    )


def raster_info(path: str | Path) -> RasterInfo:
    """Read the metadata of a raster (no pixels)."""
    with open_raster(path) as ds:
        return _dataset_info(ds, path)


def band_index(info: RasterInfo, name: str) -> int:
    """1-based index of the band described as ``name`` (case-insensitive).

    Raises
    ------
    InputError
        If no band carries that name; the message lists the bands that exist.
    """
    for i, band in enumerate(info.band_names, start=1):
        if band.lower() == name.lower():
            return i
    have = ", ".join(b or "(unnamed)" for b in info.band_names)
    raise InputError(f"{info.path}: no band named {name!r} (bands: {have})")


def read_raster(
    path: str | Path,
    *,
    window: Window | None = None,
    bands: int | Sequence[int | str] | None = None,
    out_shape: tuple[int, int] | None = None,
) -> np.ndarray:
    """Read pixels of a raster, optionally one window, some bands, or decimated.

    Parameters
    ----------
    path : path-like
    window : Window, optional
        Region to read; the whole raster when omitted (only for small rasters).
    bands : int, or sequence of int or str, optional
        1-based band indices or band names. An int returns a 2-D array; a sequence or
        ``None`` (all bands) returns a 3-D ``(band, row, col)`` array.
    out_shape : (int, int), optional
        Resample the read to this (rows, cols) with nearest-neighbour decimation; memory is
        bounded by ``out_shape``, not by the raster (used for previews).
    """
    with open_raster(path) as ds:
        if bands is None:
            indexes: int | list[int] = list(range(1, ds.count + 1))
        elif isinstance(bands, int | np.integer):
            indexes = int(bands)
        else:
            info = _dataset_info(ds, path)
            indexes = [b if isinstance(b, int) else band_index(info, b) for b in bands]
        shape = None
        if out_shape is not None:
            n = 1 if isinstance(indexes, int) else len(indexes)
            shape = tuple(out_shape) if isinstance(indexes, int) else (n, *out_shape)
        return ds.read(indexes, window=window, out_shape=shape)


def _creation_profile(
    height: int,
    width: int,
    count: int,
    dtype: str,
    *,
    tile: int,
    compress: str,
    internal_mask: bool = False,
) -> dict[str, Any]:
    nbytes = height * width * count * np.dtype(dtype).itemsize
    kind = np.dtype(dtype).kind
    # GDAL compresses the blocks of an internal mask of a raster of 3+ bands in worker
    # threads as small TIFFs that inherit its ExtraSamples, which libtiff rejects ("Bad value
    # 8 for ExtraSamples"), printing errors: such rasters compress in one thread.
    threads = "1" if internal_mask and count > 2 else "ALL_CPUS"
    profile: dict[str, Any] = {
        "driver": "GTiff",
        "height": height,
        "width": width,
        "count": count,
        "dtype": dtype,
        "compress": compress,
        "BIGTIFF": "YES" if nbytes > BIGTIFF_THRESHOLD else "NO",
        "NUM_THREADS": threads,
    }
    profile.update(tiled=True, blockxsize=tile, blockysize=tile)
    if compress.lower() in {"deflate", "lzw", "zstd"}:
        profile["predictor"] = 3 if kind == "f" else 2
    if count > 1:
        profile["interleave"] = "band"
    return profile


@contextmanager
def create_raster(
    path: str | Path,
    *,
    height: int,
    width: int,
    dtype: str | np.dtype,
    count: int = 1,
    pixel_size_um: float | None = None,
    transform: Affine | None = None,
    band_names: Sequence[str] | None = None,
    nodata: float | None = None,
    tags: dict[str, Any] | None = None,
    overwrite: bool = False,
    tile: int = 512,
    compress: str = "deflate",
    atomic: bool = True,
    internal_mask: bool = False,
) -> Iterator[rasterio.io.DatasetWriter]:
    """Create a tiled, compressed GeoTIFF and yield it open for windowed writing.

    The file is built under a temporary name and appears at ``path`` only when the block
    exits cleanly (unless ``atomic=False``, for files inside a folder that is itself
    temporary, which a resumed run reopens with :func:`update_raster`). BigTIFF is chosen
    automatically for large rasters.

    Parameters
    ----------
    path : path-like
        Output GeoTIFF.
    height, width, count : int
        Shape in pixels and number of bands.
    dtype : str or dtype
    pixel_size_um : float, optional
        Pixel side in µm; gives the olmap transform (see :func:`micrometre_transform`).
    transform : Affine, optional
        Explicit transform (e.g. copied from an input); exclusive with ``pixel_size_um``.
    band_names : sequence of str, optional
        One description per band (element symbols for EDS stacks).
    nodata : float, optional
    tags : dict, optional
        Dataset metadata (e.g. class codes of a label map).
    overwrite : bool
    tile : int
        Internal tile side in pixels.
    compress : str
        GDAL compression (deflate, lzw, zstd, none).
    atomic : bool
        Write under a temporary name and rename when complete (default).
    internal_mask : bool
        The caller writes a nodata mask (``write_mask``) into the file.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from rasterio.windows import Window
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.tif"
    >>> with create_raster(p, height=4, width=6, dtype="uint8", pixel_size_um=2.0) as ds:
    ...     ds.write(np.ones((1, 4, 6), "uint8"), window=Window(0, 0, 6, 4))
    >>> raster_info(p).pixel_size_um
    2.0
    """
    dtype = np.dtype(dtype).name
    if (pixel_size_um is None) == (transform is None):
        raise ValueError("give exactly one of pixel_size_um or transform")
    if transform is None:
        transform = micrometre_transform(height, float(pixel_size_um))  # type: ignore[arg-type]
    if band_names is not None and len(band_names) != count:
        raise ValueError(f"{len(band_names)} band names for {count} bands")
    profile = _creation_profile(
        height, width, count, dtype, tile=tile, compress=compress, internal_mask=internal_mask
    )
    profile.update(transform=transform, nodata=nodata)
    with ExitStack() as stack:
        if atomic:
            target = stack.enter_context(atomic_path(path, overwrite=overwrite))
        else:
            target = check_writable(path, overwrite=overwrite)
        stack.enter_context(gdal_env())
        stack.enter_context(gdal_write_errors(path))
        with rasterio.open(target, "w", **profile) as ds:
            if band_names is not None:
                for i, name in enumerate(band_names, start=1):
                    ds.set_band_description(i, name)
            if tags:
                ds.update_tags(**{k: str(v) for k, v in tags.items()})
            yield ds


@contextmanager
def update_raster(path: str | Path) -> Iterator[rasterio.io.DatasetWriter]:
    """Reopen an existing raster for windowed writing (resuming an interrupted run)."""
    path = Path(path)
    if not path.exists():
        raise InputFileNotFoundError(path, "raster")
    with gdal_env():
        try:
            # One compression thread for 3+ bands, as at creation with a mask (the libtiff
            # ExtraSamples errors of _creation_profile): reopened files may get a mask too.
            with rasterio.open(path) as probe:
                threads = "1" if probe.count > 2 else "ALL_CPUS"
            ds = rasterio.open(path, "r+", NUM_THREADS=threads)
        except Exception as exc:  # rasterio raises TypeError, not an IO error, for non-TIFFs
            raise InputError(f"{path}: cannot reopen for writing ({first_line(exc)})") from exc
        with gdal_write_errors(path), ds:
            yield ds


def write_raster(
    path: str | Path,
    array: np.ndarray,
    *,
    pixel_size_um: float | None = None,
    transform: Affine | None = None,
    band_names: Sequence[str] | None = None,
    nodata: float | None = None,
    tags: dict[str, Any] | None = None,
    overwrite: bool = False,
    compress: str = "deflate",
) -> Path:
    """Write an in-memory 2-D ``(row, col)`` or 3-D ``(band, row, col)`` array as GeoTIFF.

    For arrays that fit in memory (tests, small products); large rasters are written window
    by window through :func:`create_raster`.
    """
    arr = np.asarray(array)
    if arr.ndim == 2:
        arr = arr[np.newaxis]
    if arr.ndim != 3:
        raise ValueError(f"expected a 2-D or 3-D array, got shape {array.shape}")
    count, height, width = arr.shape
    with create_raster(
        path,
        height=height,
        width=width,
        count=count,
        dtype=arr.dtype,
        pixel_size_um=pixel_size_um,
        transform=transform,
        band_names=band_names,
        nodata=nodata,
        tags=tags,
        overwrite=overwrite,
        compress=compress,
    ) as ds:
        ds.write(arr)
    return Path(path)


def check_grid(
    path: str | Path, shape: tuple[int, int], transform: Affine, reference: str
) -> RasterInfo:
    """Check that the raster at ``path`` lies on the grid ``shape``/``transform`` of ``reference``.

    Raises
    ------
    NotCoregisteredError
        Naming the file, the reference and what differs.
    """
    info = raster_info(path)
    if info.shape != tuple(shape):
        raise NotCoregisteredError(
            f"{path}: {info.height}x{info.width} px does not match {reference} "
            f"({shape[0]}x{shape[1]} px); the rasters must share one grid"
        )
    if not info.transform.almost_equals(transform, precision=1e-6):
        raise NotCoregisteredError(
            f"{path}: transform {tuple(info.transform)[:6]} does not match "
            f"{reference} {tuple(transform)[:6]}; the rasters must share one grid"
        )
    return info


def check_coregistered(*paths: str | Path) -> RasterInfo:
    """Check that rasters share one pixel grid (shape and transform).

    Returns
    -------
    RasterInfo
        The info of the first raster.

    Raises
    ------
    NotCoregisteredError
        Naming both files and what differs.
    """
    if not paths:
        raise ValueError("no rasters given")
    ref = raster_info(paths[0])
    for other in paths[1:]:
        check_grid(other, ref.shape, ref.transform, str(ref.path))
    return ref


def raster_files(path: str | Path) -> list[Path]:
    """Every file a raster reads: itself, and for a GDAL VRT its sources (``ds.files``).

    For a path that is not a readable raster, just the path (callers check readability).
    """
    path = Path(path)
    try:
        with open_raster(path) as ds:
            return [Path(f) for f in (ds.files or [path])]
    except (InputError, FileNotFoundError):
        return [path]


def raster_inputs(*paths: str | Path | None) -> list[Path]:
    """:func:`raster_files` of every given path (``None`` skipped), for output-safety checks."""
    return [f for p in paths if p is not None for f in raster_files(p)]


def check_single_band(path: str | Path, what: str = "image") -> RasterInfo:
    """Raise :class:`InputError` unless ``path`` has exactly one band (e.g. a BSE image)."""
    info = raster_info(path)
    if info.count != 1:
        raise InputError(
            f"{path}: has {info.count} bands; a {what} has one (is this the EDS stack?)"
        )
    return info


def read_image(
    path: str | Path, *, pixel_size_um: float | None = None
) -> tuple[np.ndarray, Affine]:
    """Read a plain image (TIFF, PNG, ...) or a GeoTIFF with its µm transform.

    Parameters
    ----------
    path : path-like
    pixel_size_um : float, optional
        Pixel side in µm for images without a georeference (as from most SEM software).
        Overrides the file's own transform when given.

    Returns
    -------
    array : ndarray
        ``(row, col)`` for one band, ``(band, row, col)`` otherwise.
    transform : Affine
        olmap's µm transform.

    Raises
    ------
    InputError
        If the image has no georeference and no pixel size is given.
    """
    with open_raster(path) as ds:
        native = pixel_size_from_transform(ds.transform, path=path)
        size = pixel_size_um if pixel_size_um is not None else native
        if size is None:
            raise InputError(
                f"{path}: image has no pixel size; give it in µm (e.g. --pixel-size 1.0)"
            )
        arr = ds.read()
    transform = micrometre_transform(arr.shape[1], size)
    return (arr[0] if arr.shape[0] == 1 else arr), transform


#: Metadata tag that lists the class codes of a label map (``"0=unclassified,1=olivine"``).
CLASSES_TAG = "classes"
#: Metadata tag of integer probability rasters: probability = stored value x this scale
#: (``olmap predict`` writes uint8 with scale 1/255).
PROBABILITY_SCALE_TAG = "probability_scale"


def format_class_tag(names: dict[int, str]) -> str:
    """The ``classes`` tag value for a label map.

    Examples
    --------
    >>> format_class_tag({0: "unclassified", 1: "olivine", 255: "ignore"})
    '0=unclassified,1=olivine,255=ignore'
    """
    return ",".join(f"{code}={name}" for code, name in sorted(names.items()))


def class_names(info: RasterInfo) -> dict[int, str]:
    """Class codes of a label map from its ``classes`` tag.

    Raises
    ------
    InputError
        If the raster has no readable ``classes`` tag.
    """
    text = info.tags.get(CLASSES_TAG, "")
    try:
        pairs = [item.split("=", 1) for item in text.split(",") if item.strip()]
        names = {int(code): name.strip() for code, name in pairs}
    except ValueError:
        names = {}
    if not names:
        raise InputError(
            f"{info.path}: no class list in its metadata (tag {CLASSES_TAG!r} like "
            "'0=background,1=olivine'); label maps written by olmap carry one"
        )
    return names


class WindowSource:
    """Windows of one band of a raster with their valid pixels, from one open dataset.

    Valid pixels are those GDAL's mask calls valid (not equal to the raster's nodata value,
    not masked by an internal mask) and, for floating-point rasters, not NaN. A VRT without a
    nodata value reads its uncovered areas as 0, valid (``olmap mosaic`` sets nodata 0 when
    its tiles leave gaps). Use it from one thread at a time (a GDAL dataset is
    not thread-safe); :func:`olmap.parallel.prefetch` reads in one background thread.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "g.tif"
    >>> _ = write_raster(p, np.arange(12, dtype="uint8").reshape(3, 4), pixel_size_um=1.0)
    >>> with WindowSource(p) as src:
    ...     image, valid = src.read(Window(1, 0, 2, 2))
    >>> image.tolist(), valid
    ([[1.0, 2.0], [5.0, 6.0]], None)
    """

    def __init__(self, path: str | Path, band: int = 1) -> None:
        self.path = Path(path)
        self.band = band
        self._stack = ExitStack()
        self._ds = self._stack.enter_context(open_raster(self.path))
        self.info = _dataset_info(self._ds, self.path)
        flags = self._ds.mask_flag_enums[band - 1]
        self._all_valid = [f.name for f in flags] == ["all_valid"]
        self._float = np.dtype(self.info.dtype).kind == "f"

    def read(self, window: Window) -> tuple[np.ndarray, np.ndarray | None]:
        """Grey values (float32) of ``window`` and its valid pixels (None when all are)."""
        try:
            image = self._ds.read(self.band, window=window).astype(np.float32, copy=False)
        except (RasterioIOError, CPLE_BaseError) as exc:
            raise InputError(f"{self.path}: cannot read {window} ({first_line(exc)})") from exc
        return image, self.valid(window, image)

    def valid(self, window: Window | None, image: np.ndarray | None = None) -> np.ndarray | None:
        """Valid pixels of ``window`` (None when all are); ``image`` saves re-reading it."""
        try:
            valid = None if self._all_valid else self._ds.read_masks(self.band, window=window) > 0
            if self._float:
                if image is None:
                    image = self._ds.read(self.band, window=window)
                finite = np.isfinite(image)
                if not finite.all():
                    valid = finite if valid is None else valid & finite
        except (RasterioIOError, CPLE_BaseError) as exc:
            raise InputError(f"{self.path}: cannot read {window} ({first_line(exc)})") from exc
        return None if valid is None or valid.all() else valid

    def close(self) -> None:
        self._stack.close()

    def __enter__(self) -> WindowSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


#: Values of a mask without a class list: 0 background, 1 the mineral, 255 ignore/nodata.
BINARY_MASK_VALUES = (0, 1, 255)


def mask_class_code(info: RasterInfo, class_name: str = "olivine") -> int:
    """The value of class ``class_name`` in a mask or label map.

    A raster with a class list (tag ``classes``, as olmap writes: ``masks``, ``predict``, the
    synthetic truth) is read through it, by name (case-insensitive), so a multi-class label map
    gives that class wherever it is numbered. A raster without one must be a binary mask
    (0/1, 255 ignore) and 1 is the class (:class:`ClassMaskSource` checks the values).

    Raises
    ------
    InputError
        For a probability raster (not a mask), or a class list without ``class_name``.
    """
    if PROBABILITY_SCALE_TAG in info.tags:
        raise InputError(
            f"{info.path}: holds probabilities, not classes; give the mask or label map "
            "(olmap predict --out-mask)"
        )
    if CLASSES_TAG not in info.tags:
        return 1
    names = class_names(info)
    for code, name in names.items():
        if name.lower() == class_name.lower():
            return code
    listed = ", ".join(f"{c}={n}" for c, n in sorted(names.items()))
    raise InputError(
        f"{info.path}: no class {class_name!r} in its class list ({listed}); "
        "name the class to use with --class"
    )


class ClassMaskSource:
    """Windows of one class of a mask or label map as bool (True on the class's pixels).

    The class is taken by name through the raster's class list (:func:`mask_class_code`). A
    mask without a class list may hold only 0, 1 and 255 (or its nodata value, or NaN): any
    other value is refused when its window is read, since a multi-class map read as binary
    would silently treat one arbitrary class as the mineral.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "labels.tif"
    >>> labels = np.array([[0, 3, 3], [1, 3, 0]], "uint8")
    >>> _ = write_raster(p, labels, pixel_size_um=1.0, tags={"classes": "1=glass,3=olivine"})
    >>> with ClassMaskSource(p, "olivine") as mask:
    ...     mask.read(Window(0, 0, 3, 2)).astype(int).tolist()
    [[0, 1, 1], [0, 1, 0]]
    """

    def __init__(self, path: str | Path, class_name: str = "olivine") -> None:
        self._source = WindowSource(path)
        self.path, self.info = self._source.path, self._source.info
        try:
            self.code = mask_class_code(self.info, class_name)
        except InputError:
            self._source.close()
            raise
        self.class_name = class_name
        self._binary = CLASSES_TAG not in self.info.tags

    def read(self, window: Window) -> np.ndarray:
        """The class's pixels in ``window`` (bool)."""
        values, valid = self._source.read(window)
        if self._binary:
            bad = ~np.isin(values, BINARY_MASK_VALUES)
            if valid is not None:
                bad &= valid
            if bad.any():
                example = values[bad][0]
                raise InputError(
                    f"{self.path}: holds the value {example:g}, but a mask without a class list "
                    "may hold only 0 and 1 (255 = ignore); a label map needs its class list "
                    "(tag 'classes', e.g. '1=glass,3=olivine', as olmap writes it)"
                )
        return values == self.code

    def close(self) -> None:
        self._source.close()

    def __enter__(self) -> ClassMaskSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def sample_values(
    source: WindowSource,
    *,
    where: Callable[[Window], np.ndarray] | None = None,
    n_windows: int = 64,
    size: int = 256,
) -> np.ndarray:
    """Valid values of a raster in about ``n_windows`` windows spread over it (float32).

    For statistics of a mosaic of any size at a fixed cost (:func:`sample_windows`).
    ``where(window)`` (bool) keeps only some pixels, e.g. those of one mask class.
    """
    found = []
    for window in sample_windows(*source.info.shape, n=n_windows, size=size):
        values, valid = source.read(window)
        keep = np.ones(values.shape, bool) if valid is None else valid
        if where is not None:
            keep &= where(window)
        found.append(values[keep])
    return np.concatenate(found) if found else np.zeros(0, np.float32)


def read_valid(path: str | Path, window: Window | None = None) -> np.ndarray:
    """Which pixels of band 1 (in ``window``, default all) hold data, as bool
    (:meth:`WindowSource.valid`)."""
    with WindowSource(path) as source:
        valid = source.valid(window)
        shape = source.info.shape if window is None else (int(window.height), int(window.width))
    return np.ones(shape, bool) if valid is None else valid

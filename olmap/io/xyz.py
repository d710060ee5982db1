"""XYZ tile pyramids (``z/y/x.png``) of a display COG, with libvips or with rasterio.

Both engines write the layout of :class:`olmap.io.pyramid.PyramidSpec` from an 8-bit
grey + alpha or RGBA raster and never hold more than a strip of it:

* ``vips``: libvips' ``dzsave`` in Google layout (the field's standard for gigapixel
  pyramids), streaming the full-resolution image and shrinking it level by level;
* ``rasterio``: every tile is one decimated read of the COG (GDAL takes its pixels from the
  overview of the tile's scale) encoded by Pillow in a pool of threads.

docs/benchmarks.md ("Tiles and viewer") compares them on a 400 Mpx section.
"""

from __future__ import annotations

import math
import shutil
import signal
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import rasterio
from PIL import Image
from rasterio.enums import Resampling
from rasterio.windows import Window
from skimage.measure import block_reduce

from olmap.errors import InputError, MissingExtraError
from olmap.io.pyramid import PyramidSpec
from olmap.io.raster import open_raster
from olmap.parallel import ordered_map

_MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}


def _check_display(path: Path) -> tuple[int, int, int]:
    with open_raster(path) as ds:
        if ds.dtypes[0] != "uint8" or ds.count not in _MODES:
            raise InputError(
                f"{path}: tiles need an 8-bit raster of 1-4 bands (grey, grey + alpha, RGB, "
                f"RGBA), not {ds.count} band(s) of {ds.dtypes[0]}"
            )
        return ds.height, ds.width, ds.count


def _save(tile: np.ndarray, path: Path, fmt: str) -> None:
    image = Image.fromarray(
        np.ascontiguousarray(np.moveaxis(tile, 0, -1)).squeeze(), _MODES[tile.shape[0]]
    )
    if fmt == "webp":
        image.save(path, format="WEBP", lossless=True, method=2)
    else:
        image.save(path, format="PNG", compress_level=6)


def _halve(image: np.ndarray, weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """2 x 2 mean of the pixels present (``weight`` 1) of a (bands, h, w) image; odd edges
    average the pixels they have, as GDAL's overviews do."""
    # block_reduce pads odd edges with 0, which the weights leave out of the mean.
    total = block_reduce(image * weight, (1, 2, 2), np.sum, cval=0)
    count = block_reduce(weight, (2, 2), np.sum, cval=0)
    return total / np.maximum(count, 1), (count > 0).astype(np.float64)


def write_xyz_rasterio(
    cog: str | Path,
    out_dir: str | Path,
    *,
    tile_size: int = 256,
    fmt: str = "png",
    workers: int = 2,
    progress: Callable[[int], None] | None = None,
) -> PyramidSpec:
    """Write ``out_dir/z/y/x.<fmt>`` from the levels of a COG.

    Zoom levels whose scale is the full resolution or one of the COG's overviews (factors
    2, 4, 8, ... as :func:`olmap.stream.cog.write_cog` makes them) are cut from that level,
    pixel for pixel; the few levels above the smallest overview are shrunk from it in memory
    by 2 x 2 means. GDAL truncates an overview's size (1,100 px / 8 -> 137 px, not 138): such
    an overview is read with decimation instead, and its tiles may sit up to half a tile
    pixel off towards the raster's far edge; libvips shrinks exactly.

    Parameters
    ----------
    cog : path-like
        8-bit display raster (grey + alpha or RGBA) with power-of-two overviews.
    out_dir : path-like
        Folder that receives the zoom folders (created).
    tile_size : int
    fmt : {"png", "webp"}
    workers : int
        Threads reading and encoding rows of tiles (GDAL and zlib release the GIL).
    progress : callable, optional
        Called with the number of tiles of each finished row.

    Returns
    -------
    PyramidSpec

    Raises
    ------
    InputError
        If the raster is not 8-bit grey/RGB(A), or too large to shrink without overviews.
    """
    cog, out_dir = Path(cog), Path(out_dir)
    height, width, count = _check_display(cog)
    spec = PyramidSpec(height=height, width=width, tile_size=tile_size)
    # Overviews usable pixel for pixel: a power-of-two factor whose size is the tile grid's
    # (GDAL truncates: 2,049 px / 2 -> 1,024 px, one short of the grid's 1,025).
    levels: dict[int, int | None] = {1: None}
    with rasterio.open(cog) as ds:
        for i, f in enumerate(ds.overviews(1)):
            with rasterio.open(cog, overview_level=i) as ov:
                if ov.shape == (math.ceil(height / f), math.ceil(width / f)):
                    levels[f] = i

    def save(tile_data: np.ndarray, zoom: int, x: int, y: int) -> None:
        tile = np.zeros((count, tile_size, tile_size), np.uint8)
        tile[:, : tile_data.shape[1], : tile_data.shape[2]] = tile_data
        _save(tile, out_dir / str(zoom) / str(y) / f"{x}.{fmt}", fmt)

    def cut_row(item: tuple[int, int]) -> int:
        # A row of tiles per task: each task opens its own GDAL handle (a dataset must not be
        # shared between threads) and reads neighbouring tiles from the same COG blocks.
        zoom, y = item
        s = spec.scale(zoom)
        exact = s in levels
        (out_dir / str(zoom) / str(y)).mkdir(parents=True, exist_ok=True)
        options = {"overview_level": levels[s]} if exact and levels[s] is not None else {}
        # rasterio.open, not open_raster: warning filters are process-wide, not per thread.
        with rasterio.open(cog, **options) as ds:
            _, cols = spec.grid(zoom)
            for x in range(cols):
                if exact:
                    c0, r0 = x * tile_size, y * tile_size
                    window = Window(
                        c0, r0, min(tile_size, ds.width - c0), min(tile_size, ds.height - r0)
                    )
                    save(ds.read(window=window), zoom, x, y)
                else:  # no exact overview: GDAL decimates from the nearest one
                    window, shape = spec.source_window(zoom, x, y)
                    save(
                        ds.read(
                            window=window, out_shape=(count, *shape), resampling=Resampling.average
                        ),
                        zoom,
                        x,
                        y,
                    )
        return cols

    smallest = max(levels)
    small_enough = (height // smallest) * (width // smallest) <= 4096**2
    direct = [z for z in range(spec.max_zoom + 1) if spec.scale(z) <= smallest or not small_enough]
    rows = [(z, y) for z in sorted(direct, reverse=True) for y in range(spec.grid(z)[0])]
    for _, n in ordered_map(cut_row, rows, workers=workers, lookahead=2):
        if progress is not None:
            progress(n)
    above = [z for z in range(spec.max_zoom + 1) if z not in direct]
    if above:
        base = smallest  # levels above the smallest exact one: 2 x 2 means in memory
        options = {} if levels[base] is None else {"overview_level": levels[base]}
        with open_raster(cog, **options) as ds:
            image = ds.read().astype(np.float64)
        weight = np.ones(image.shape[1:], np.float64)
        scale = base
        for zoom in sorted(above, reverse=True):
            while scale < spec.scale(zoom):
                image, weight = _halve(image, weight)
                scale *= 2
            level = np.rint(image).astype(np.uint8)
            for x, y in spec.tiles(zoom):
                (out_dir / str(zoom) / str(y)).mkdir(parents=True, exist_ok=True)
                ys, xs = y * tile_size, x * tile_size
                save(level[:, ys : ys + tile_size, xs : xs + tile_size], zoom, x, y)
                if progress is not None:
                    progress(1)
    return spec


def write_xyz_vips(
    cog: str | Path,
    out_dir: str | Path,
    *,
    tile_size: int = 256,
    fmt: str = "png",
    progress: Callable[[int], None] | None = None,
) -> PyramidSpec:
    """Write ``out_dir/z/y/x.<fmt>`` with libvips' ``dzsave`` (Google layout).

    Same arguments and result as :func:`write_xyz_rasterio`; ``progress`` receives tile
    counts as libvips reports its progress. libvips runs its own thread pool
    (``VIPS_CONCURRENCY``, default: the number of cores).
    """
    cog, out_dir = Path(cog), Path(out_dir)
    height, width, count = _check_display(cog)
    spec = PyramidSpec(height=height, width=width, tile_size=tile_size)
    try:
        import pyvips
    except (ImportError, OSError) as exc:  # the binary wheel is missing or broken
        raise MissingExtraError("pyvips (with pyvips-binary)", "vips") from exc
    image = pyvips.Image.new_from_file(str(cog), access="sequential")
    total, done = spec.n_tiles(), [0]
    stopped: list[BaseException] = []
    image.set_progress(True)

    def stop(exc: BaseException) -> None:
        if not stopped:
            stopped.append(exc)
            image.set_kill(True)  # libvips ends dzsave at its next tile

    def on_eval(_img: object, state: object) -> None:
        try:
            now = int(total * getattr(state, "percent", 0) / 100)
            if progress is not None and now > done[0]:
                progress(now - done[0])
                done[0] = now
        except BaseException as exc:  # e.g. a progress bar's own interrupt
            stop(exc)

    image.signal_connect("eval", on_eval)
    suffix = ".webp[lossless]" if fmt == "webp" else ".png[compression=6]"
    # dzsave writes a properties file beside the pyramid and strips "extensions" from the
    # folder name: build in a scratch folder and move the zoom levels into place.
    scratch = Path(tempfile.mkdtemp(prefix=".vips-", dir=out_dir.parent))
    # Ctrl-C during dzsave would be raised inside pyvips' C callbacks, which print and drop
    # it: while dzsave runs, SIGINT only asks libvips to stop; it is raised after.
    main = (
        threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGINT) is not None  # None: a handler set outside Python
    )
    previous = signal.signal(signal.SIGINT, lambda *_: stop(KeyboardInterrupt())) if main else None
    try:
        try:
            image.dzsave(
                str(scratch / "pyramid"),
                layout="google",
                tile_size=tile_size,
                overlap=0,
                depth="onetile",
                suffix=suffix,
                background=[0] * count,
                skip_blanks=-1,
            )
        except pyvips.Error:
            if not stopped:
                raise
        finally:
            if main:
                signal.signal(signal.SIGINT, previous)
        if stopped:
            raise stopped[0]
        out_dir.mkdir(parents=True, exist_ok=True)
        for zoom in range(spec.max_zoom + 1):
            (scratch / "pyramid" / str(zoom)).rename(out_dir / str(zoom))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if progress is not None and done[0] < total:
        progress(total - done[0])
    return spec

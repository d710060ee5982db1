"""Build the offline viewer site of a section: COGs, XYZ tile pyramids, crystals, the viewer.

``build_site`` is the whole of ``olmap tiles``. For each raster layer (BSE, olivine
probability, mg#) it writes

* ``cog/<layer>.tif``: the values (BSE grey levels; probability and mg# as float32, NaN off
  the data) as a cloud-optimised GeoTIFF, for GIS;
* ``cog/<layer>_rgb.tif``: the same through the layer's display scale (8-bit grey + alpha or
  RGBA), the source of the tiles;
* ``tiles/<layer>/{z}/{y}/{x}.png``: the XYZ pyramid the viewer shows;

then ``data/crystals.js`` (the catalogue's outlines and popup attributes), ``data/site.js``
(grid, layers, legends), the catalogue files for download, crystal crops when the catalogue
has them, and the static viewer (``index.html``, Leaflet). The site is built under
``OUT.partial``; an interrupted run keeps the layers it finished and continues with the
others when run again with the same inputs and settings.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from rasterio.transform import array_bounds

from olmap import __version__
from olmap.errors import InputError
from olmap.io.cog import copy_cog, read_decimated
from olmap.io.outputs import atomic_dir, claim_outputs, partial_name
from olmap.io.pyramid import PyramidSpec
from olmap.io.raster import (
    PROBABILITY_SCALE_TAG,
    RasterInfo,
    WindowSource,
    check_grid,
    check_single_band,
    raster_info,
)
from olmap.io.results import ResultFiles
from olmap.io.resume import RunInterrupted, file_stamp
from olmap.io.vector import read_catalogue
from olmap.io.xyz import write_xyz_rasterio, write_xyz_vips
from olmap.stream.cog import write_cog
from olmap.tiles.colour import ColourScale, apply_colour_scale
from olmap.tiles.config import TilesConfig
from olmap.tiles.viewer import viewer_crystals

#: Progress callback: ``progress(stage, done, total)``.
StageProgress = Callable[[str, float, float], None]

LAYER_TITLES = {"bse": "BSE", "prob": "Olivine probability", "mgnum": "mg#"}
_JOB_FILE = ".tiles-job.json"
# Catalogue files offered for download beside the viewer (small; GIS and spreadsheets).
_DOWNLOADS = ("crystals.gpkg", "crystals.csv")


@dataclass
class SiteResult:
    """What :func:`build_site` made."""

    out: Path
    spec: PyramidSpec
    layers: list[str]
    scales: dict[str, ColourScale]
    crystals: int
    tiles: int
    resumed: list[str] = field(default_factory=list)
    seconds: float = 0.0


def probability_band(info: RasterInfo) -> int:
    """Band of the olivine probability: the one named ``p_olivine``, or the only band."""
    for i, name in enumerate(info.band_names, start=1):
        if name == "p_olivine":
            return i
    if info.count == 1:
        return 1
    raise InputError(
        f"{info.path}: {info.count} probability bands ({', '.join(info.band_names)}) and none "
        "named p_olivine; give a one-band probability raster"
    )


def probability_factor(info: RasterInfo) -> float:
    """Factor from stored values to probability: ``olmap predict`` stores p x 255 as uint8."""
    tag = info.tags.get(PROBABILITY_SCALE_TAG)
    if tag is not None:
        try:
            return float(tag)
        except ValueError as exc:
            raise InputError(
                f"{info.path}: {PROBABILITY_SCALE_TAG} tag {tag!r} is not a number"
            ) from exc
    return 1 / 255 if info.dtype == "uint8" else 1.0


def display_scale(
    key: str, values: np.ndarray, valid: np.ndarray, config: TilesConfig
) -> ColourScale:
    """The display scale of a layer from a sample of its values (pure).

    BSE: grey between ``config.bse_percentiles``; probability: ``config.prob_cmap`` over
    0-1; mg#: ``config.mg_cmap`` over ``config.mg_range`` or ``config.mg_percentiles``.
    """
    data = values[valid]
    if key == "prob":
        return ColourScale(config.prob_cmap, 0.0, 1.0, "olivine probability")
    fixed = config.mg_range if key == "mgnum" else None
    if fixed is not None:
        lo, hi = fixed
    elif data.size == 0:
        lo, hi = (0.0, 1.0) if key == "mgnum" else (0.0, 255.0)
    else:
        pct = config.mg_percentiles if key == "mgnum" else config.bse_percentiles
        lo, hi = (float(v) for v in np.percentile(data, pct))
        if hi <= lo:  # a constant image
            hi = lo + (0.01 if key == "mgnum" else 1.0)
    if key == "mgnum":
        lo, hi = round(lo, 3), round(hi, 3)  # legend ticks
        if hi <= lo:  # a range narrower than the rounding
            hi = lo + 0.001
        return ColourScale(config.mg_cmap, lo, hi, "mg#")
    return ColourScale("gray", lo, hi, "BSE grey level")


def _fingerprint(files: ResultFiles, config: TilesConfig, title: str) -> dict[str, Any]:
    stamps = {str(p.resolve()): list(file_stamp(p)) for p in files.paths() if p.is_file()}
    # Threads change nothing in the output: a rerun with other --workers resumes.
    settings = config.model_dump(mode="json", exclude={"workers"})
    return {"olmap": __version__, "inputs": stamps, "config": settings, "title": title}


def _same_job(job_file: Path, job: dict[str, Any]) -> bool:
    try:
        return json.loads(job_file.read_text()) == job
    except (OSError, ValueError):  # missing, or cut short by a crash: another job
        return False


def _layer_inputs(files: ResultFiles) -> list[tuple[str, Path]]:
    return [
        (k, p)
        for k, p in (("bse", files.bse), ("prob", files.prob), ("mgnum", files.mgnum))
        if p is not None
    ]


def _write_raw_cog(
    key: str, path: Path, target: Path, config: TilesConfig, fingerprint: str
) -> None:
    if key != "prob":
        check_single_band(path, "BSE mosaic" if key == "bse" else "mg# map")
        copy_cog(path, target, blocksize=config.cog_blocksize, compress=config.cog_compress)
        return
    info = raster_info(path)
    band, factor = probability_band(info), probability_factor(info)
    with WindowSource(path, band=band) as src:

        def render(window):
            values, valid = src.read(window)
            p = values * np.float32(factor)
            if valid is not None:
                p[~valid] = np.nan
            return p[np.newaxis]

        write_cog(
            target,
            render,
            height=info.height,
            width=info.width,
            count=1,
            dtype="float32",
            transform=info.transform,
            nodata=float("nan"),
            band_names=["p_olivine"],
            tags={"quantity": "olivine probability"},
            blocksize=config.cog_blocksize,
            compress=config.cog_compress,
            fingerprint=fingerprint,
        )


def _write_display_cog(
    raw: Path,
    target: Path,
    scale: ColourScale,
    *,
    grey: bool,
    config: TilesConfig,
    progress: Callable[[int], None],
    fingerprint: str,
) -> None:
    info = raster_info(raw)
    with WindowSource(raw) as src:

        def render(window):
            values, valid = src.read(window)
            return apply_colour_scale(values, scale, valid, grey=grey)

        write_cog(
            target,
            render,
            height=info.height,
            width=info.width,
            count=2 if grey else 4,
            dtype="uint8",
            transform=info.transform,
            colour=True,
            blocksize=config.cog_blocksize,
            compress=config.cog_compress,
            tags={"colour_scale": json.dumps(scale.__dict__)},
            progress=progress,
            fingerprint=fingerprint,
        )


def _write_tiles(
    display: Path, target: Path, config: TilesConfig, progress: Callable[[int], None]
) -> None:
    scratch = target.with_name(target.name + ".partial")
    shutil.rmtree(scratch, ignore_errors=True)
    for stale in target.parent.glob(".vips-*"):  # libvips scratch of a killed run
        shutil.rmtree(stale, ignore_errors=True)
    if config.backend == "vips":
        write_xyz_vips(
            display, scratch, tile_size=config.tile_size, fmt=config.tile_format, progress=progress
        )
    else:
        write_xyz_rasterio(
            display,
            scratch,
            tile_size=config.tile_size,
            fmt=config.tile_format,
            workers=config.workers,
            progress=progress,
        )
    scratch.rename(target)


def _write_js(path: Path, name: str, doc: dict[str, Any]) -> None:
    # Scripts, not JSON files: the viewer must work from file:// too, where browsers refuse
    # fetch() of local files.
    text = json.dumps(doc, separators=(",", ":"), allow_nan=False)
    path.write_text(f"window.{name} = {text};\n", encoding="utf-8")


def _check_catalogue_extent(catalogue: Any, info: RasterInfo, path: Path) -> None:
    if len(catalogue) == 0:
        return
    x0, y0, x1, y1 = catalogue.total_bounds
    left, bottom, right, top = array_bounds(info.height, info.width, info.transform)
    tol = 2 * abs(info.transform.a)
    if x0 < left - tol or x1 > right + tol or y0 < bottom - tol or y1 > top + tol:
        raise InputError(
            f"{path}: crystals extend beyond the BSE mosaic ({x0:.0f}-{x1:.0f} x "
            f"{y0:.0f}-{y1:.0f} µm against {left:.0f}-{right:.0f} x {bottom:.0f}-{top:.0f} µm);"
            " is the catalogue from another section?"
        )


def _copy_static(target: Path) -> None:
    static = resources.files("olmap.tiles") / "static"
    with resources.as_file(static) as folder:
        shutil.copytree(folder, target, dirs_exist_ok=True)


def build_site(
    files: ResultFiles,
    out: str | Path,
    config: TilesConfig | None = None,
    *,
    title: str | None = None,
    overwrite: bool = False,
    progress: StageProgress | None = None,
) -> SiteResult:
    """Write the viewer site of a section to ``out`` (module docstring).

    Parameters
    ----------
    files : ResultFiles
        BSE mosaic and, when present, probability raster, mg# map and crystal catalogue,
        all on the BSE grid (µm).
    out : path-like
        Site folder (created; replaced only with ``overwrite``).
    config : TilesConfig, optional
    title : str, optional
        Shown in the viewer's title bar [default: the BSE file's folder name].
    overwrite : bool
    progress : callable, optional
        ``progress(stage, done, total)``.

    Returns
    -------
    SiteResult

    Raises
    ------
    InputError
        Rasters not on one grid, unusable bands, a catalogue outside the mosaic.
    RunInterrupted
        On Ctrl-C; the finished layers are kept and the same call continues.
    """
    config = config or TilesConfig()
    with claim_outputs([out], inputs=files.paths(), overwrite=overwrite) as (out,):
        return _build_site(files, out, config, title, overwrite, progress)


def _build_site(
    files: ResultFiles,
    out: Path,
    config: TilesConfig,
    title: str | None,
    overwrite: bool,
    progress: StageProgress | None,
) -> SiteResult:
    started = time.monotonic()
    info = raster_info(files.bse)
    t = info.transform
    if info.pixel_size_um is None or t.e >= 0 or t.a <= 0:
        raise InputError(
            f"{files.bse}: the viewer needs a north-up raster in µm with square pixels "
            "(see shared/CLI.md: Affine(px, 0, 0, 0, -px, H*px))"
        )
    for _key, path in _layer_inputs(files)[1:]:
        check_grid(path, info.shape, info.transform, str(files.bse))
    title = title or files.bse.resolve().parent.name or files.bse.stem
    spec = PyramidSpec(height=info.height, width=info.width, tile_size=config.tile_size)
    job = _fingerprint(files, config, title)
    partial = partial_name(out)
    job_file = partial / _JOB_FILE
    if partial.exists() and not _same_job(job_file, job):
        shutil.rmtree(partial)  # another job's leftovers: start afresh
    report = progress or (lambda *_: None)
    resumed: list[str] = []
    scales: dict[str, ColourScale] = {}
    catalogue = None
    try:
        with atomic_dir(out, overwrite=overwrite, keep_partial=True) as tmp:
            tmp_job = job_file.with_name(job_file.name + ".tmp")
            tmp_job.write_text(json.dumps(job))
            tmp_job.replace(job_file)
            if files.catalogue is not None:
                catalogue = read_catalogue(files.catalogue)
                _check_catalogue_extent(catalogue, info, files.catalogue)
            for sub in ("cog", "tiles", "data"):
                (tmp / sub).mkdir(exist_ok=True)
            for key, path in _layer_inputs(files):
                name = LAYER_TITLES[key]
                raw = tmp / "cog" / f"{key}.tif"
                display = tmp / "cog" / f"{key}_rgb.tif"
                tiles = tmp / "tiles" / key
                if tiles.exists():
                    resumed.append(key)
                if not raw.exists():
                    report(f"{name}: COG", 0, 1)
                    _write_raw_cog(key, path, raw, config, json.dumps([job, key]))
                values, valid = read_decimated(raw, max_side=config.sample_px)
                scale = scales[key] = display_scale(key, values, valid, config)
                if not display.exists():
                    done = [0]

                    def advance(n: int, name: str = name, done: list[int] = done) -> None:
                        done[0] += n
                        report(
                            f"{name}: display COG", done[0] / 1e6, info.width * info.height / 1e6
                        )

                    _write_display_cog(
                        raw,
                        display,
                        scale,
                        grey=key == "bse",
                        config=config,
                        progress=advance,
                        fingerprint=json.dumps([job, key, scale.__dict__]),
                    )
                if not tiles.exists():
                    count = [0]

                    def step(n: int, name: str = name, count: list[int] = count) -> None:
                        count[0] += n
                        report(f"{name}: tiles", count[0], spec.n_tiles())

                    _write_tiles(display, tiles, config, step)
            report("crystals", 0, 1)
            n_crystals = 0
            crops = False
            if catalogue is not None:
                px = abs(info.transform.a)
                doc = viewer_crystals(catalogue, simplify_um=config.simplify_px * px)
                n_crystals = len(doc["crystals"])
                _write_js(tmp / "data" / "crystals.js", "OLMAP_CRYSTALS", doc)
                for name in _DOWNLOADS:
                    src = files.catalogue.parent / name
                    if src.exists():
                        shutil.copy2(src, tmp / "data" / name)
                if files.crops is not None and not (tmp / "crops").exists():
                    shutil.copytree(files.crops, tmp / "crops.partial", dirs_exist_ok=True)
                    (tmp / "crops.partial").rename(tmp / "crops")
                crops = (tmp / "crops").exists()
            else:
                _write_js(
                    tmp / "data" / "crystals.js",
                    "OLMAP_CRYSTALS",
                    {"columns": [], "groups": [], "crystals": []},
                )
            layers = [key for key, _ in _layer_inputs(files)]
            _write_js(
                tmp / "data" / "site.js",
                "OLMAP_SITE",
                _site_meta(info, spec, layers, scales, config, title, n_crystals, crops, tmp),
            )
            _copy_static(tmp)
            job_file.unlink()
    except (KeyboardInterrupt, RunInterrupted) as exc:
        raise RunInterrupted(
            f"{out}: interrupted; the finished layers are kept in {partial}, and the same "
            "command continues from them"
        ) from exc
    return SiteResult(
        out=out,
        spec=spec,
        layers=layers,
        scales=scales,
        crystals=n_crystals,
        tiles=spec.n_tiles() * len(layers),
        resumed=resumed,
        seconds=time.monotonic() - started,
    )


def _site_meta(
    info: RasterInfo,
    spec: PyramidSpec,
    layers: list[str],
    scales: dict[str, ColourScale],
    config: TilesConfig,
    title: str,
    n_crystals: int,
    crops: bool,
    site: Path,
) -> dict[str, Any]:
    px = abs(info.transform.a)
    entries = []
    for key in layers:
        s = scales[key]
        entries.append(
            {
                "key": key,
                "title": LAYER_TITLES[key],
                "url": f"tiles/{key}/{{z}}/{{y}}/{{x}}.{config.tile_format}",
                # BSE and probability cover the section (one shows at a time); mg# lies on
                # olivine only and is drawn over either.
                "base": key != "mgnum",
                "legend": None
                if key == "bse"
                else {"label": s.label, "vmin": s.vmin, "vmax": s.vmax, "stops": s.css_stops()},
                "cog": f"cog/{key}.tif",
            }
        )
    downloads = [{"title": f"{LAYER_TITLES[k]} (COG)", "href": f"cog/{k}.tif"} for k in layers]
    downloads += [
        {"title": n, "href": f"data/{n}"} for n in _DOWNLOADS if (site / "data" / n).exists()
    ]
    return {
        "title": title,
        "olmap": __version__,
        "width_px": info.width,
        "height_px": info.height,
        "pixel_size_um": px,
        "origin_um": [info.transform.c, info.transform.f],
        "tile_size": spec.tile_size,
        "max_zoom": spec.max_zoom,
        "layers": entries,
        "crystals": n_crystals,
        "crops": crops,
        "downloads": downloads,
    }

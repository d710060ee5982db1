"""EDS element maps as a windowed source: one multi-band GeoTIFF, one file per element, a folder
of per-element maps as labs export them (text/CSV count matrices or images, see
:mod:`olmap.io.element_maps`), or a Bruker ``.bcf`` hypermap (element maps computed in memory,
see :mod:`olmap.io.bruker`).

Every source answers ``read(window, elements)`` with counts per element and checks them:
counts must be finite and non-negative (pixels equal to a band's nodata value are reported as
missing data instead).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from affine import Affine
from rasterio.windows import Window

from olmap.errors import InputError
from olmap.io.element_maps import (
    TEXT_SUFFIXES,
    element_symbol,
    read_count_matrix,
    read_element_folder,
)
from olmap.io.raster import (
    RasterInfo,
    check_coregistered,
    micrometre_transform,
    open_raster,
    raster_info,
)


def check_counts(values: np.ndarray, *, path: str | Path, element: str, window: Window) -> None:
    """Raise :class:`InputError` for NaN or negative counts, naming the file and a pixel."""
    if values.dtype.kind not in "fi":
        return  # unsigned integers are always valid counts
    problems = [
        (
            ~np.isfinite(values),
            "NaN/infinite counts",
            " (set a nodata value for pixels without data)",
        ),
        (values < 0, "negative counts", ""),
    ]
    for bad, what, hint in problems:
        if bad.any():
            r, c = np.argwhere(bad)[0]
            raise InputError(
                f"{path}: {element} map has {what} ({values[r, c]:g} at row "
                f"{int(window.row_off) + r}, col {int(window.col_off) + c}); EDS maps must be "
                f"counts >= 0{hint}"
            )


@dataclass
class EdsRasters:
    """Element maps stored in GeoTIFFs (bands found by element symbol).

    Attributes
    ----------
    sources : dict of str to (Path, int)
        Element symbol -> (file, 1-based band index).
    grid : RasterInfo
        The common pixel grid (shape, transform) of all files.
    """

    sources: dict[str, tuple[Path, int]]
    grid: RasterInfo
    nodata: dict[str, float | None] = field(default_factory=dict)

    @property
    def elements(self) -> tuple[str, ...]:
        return tuple(self.sources)

    @property
    def description(self) -> str:
        files = dict.fromkeys(str(p) for p, _ in self.sources.values())
        return ", ".join(files)

    @property
    def shape(self) -> tuple[int, int]:
        return self.grid.shape

    @property
    def paths(self) -> tuple[Path, ...]:
        return tuple(dict.fromkeys(p for p, _ in self.sources.values()))

    @property
    def transform(self) -> Affine:
        return self.grid.transform

    def read(
        self, window: Window, elements: Sequence[str]
    ) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
        """Counts of ``elements`` in ``window`` and the mask of pixels without data."""
        counts: dict[str, np.ndarray] = {}
        missing: np.ndarray | None = None
        by_file: dict[Path, list[str]] = {}
        for el in elements:
            by_file.setdefault(self.sources[el][0], []).append(el)
        for path, els in by_file.items():
            with open_raster(path) as ds:
                data = ds.read([self.sources[el][1] for el in els], window=window)
            for el, values in zip(els, data, strict=True):
                nodata = self.nodata.get(el)
                if nodata is not None:
                    gap = np.isnan(values) if np.isnan(nodata) else values == nodata
                    if gap.any():
                        missing = gap if missing is None else missing | gap
                        values = np.where(gap, 0, values)
                check_counts(values, path=path, element=el, window=window)
                counts[el] = values
        return counts, missing


@dataclass
class EdsArrays:
    """Element maps held in memory (from a vendor file), with their µm transform."""

    maps: dict[str, np.ndarray]
    transform: Affine
    path: Path
    #: What the reader wants the user to know (e.g. an unknown pixel size), one line each.
    notes: list[str] = field(default_factory=list)

    @property
    def elements(self) -> tuple[str, ...]:
        return tuple(self.maps)

    @property
    def description(self) -> str:
        return str(self.path)

    @property
    def shape(self) -> tuple[int, int]:
        return next(iter(self.maps.values())).shape

    @property
    def paths(self) -> tuple[Path, ...]:
        return (self.path,)

    def read(
        self, window: Window, elements: Sequence[str]
    ) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
        rows, cols = window.toslices()
        counts = {el: self.maps[el][rows, cols] for el in elements}
        for el, values in counts.items():
            check_counts(values, path=self.path, element=el, window=window)
        return counts, None


EdsSource = EdsRasters | EdsArrays


def _element_spec(spec: str) -> tuple[str, Path] | None:
    name, sep, path = spec.partition("=")
    if not sep:
        return None
    if not name.strip() or not path.strip():
        raise InputError(f"--eds {spec!r}: expected ELEMENT=FILE, e.g. Mg=eds_Mg.tif")
    symbol = element_symbol(name)
    if symbol is None:
        raise InputError(f"--eds {spec!r}: {name.strip()!r} is not an element (e.g. Mg, Ca)")
    return symbol, Path(path.strip())


def open_eds(
    specs: Sequence[str | Path],
    *,
    elements: Sequence[str] | None = None,
    bcf_downsample: int = 1,
    pixel_size_um: float | None = None,
) -> EdsSource:
    """Open EDS element maps given on the command line.

    Parameters
    ----------
    specs : sequence of str or Path
        Either one multi-band GeoTIFF whose band descriptions are element symbols, one
        ``.bcf`` hypermap, one folder of per-element maps (``Mg.txt``, ``Mg K series.csv``,
        ``Mg.tif``, ...), or several ``ELEMENT=FILE`` items (one single-band raster each).
    elements : sequence of str, optional
        Elements needed (a ``.bcf`` computes only these; a folder reads only these).
    bcf_downsample : int
        Downsampling factor passed to the Bruker reader (sums ``n x n`` pixels).
    pixel_size_um : float, optional
        Pixel side in µm of a folder of maps (text maps carry none).

    Raises
    ------
    InputError
        For a file with unnamed bands, mixed forms, repeated elements, or rasters that do not
        share one grid.
    """
    if not specs:
        raise InputError("no EDS data given (--eds FILE or --eds Mg=FILE ...)")
    parsed = [_element_spec(str(s)) for s in specs]
    if all(p is None for p in parsed):
        if len(specs) > 1:
            raise InputError(
                "give one EDS stack (--eds eds.tif) or one file per element "
                "(--eds Mg=eds_Mg.tif --eds Ca=eds_Ca.tif ...), not several stacks"
            )
        path = Path(specs[0])
        if path.suffix.lower() == ".bcf":
            # Imported here: olmap.io.bruker imports this module, and needs the optional extra.
            from olmap.io.bruker import read_bcf_element_maps

            return read_bcf_element_maps(path, elements=elements, downsample=bcf_downsample)
        if path.is_dir():
            return open_element_folder(path, elements=elements, pixel_size_um=pixel_size_um)
        return _stack(path)
    if any(p is None for p in parsed):
        raise InputError("mix of --eds FILE and --eds ELEMENT=FILE; use one form")
    pairs = [p for p in parsed if p is not None]
    names = [el for el, _ in pairs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise InputError(f"--eds: element(s) given twice: {', '.join(dupes)}")
    if any(p.suffix.lower() in TEXT_SUFFIXES for _, p in pairs):
        return _text_maps(pairs, pixel_size_um)
    grid = check_coregistered(*(p for _, p in pairs))
    sources, nodata = {}, {}
    for el, path in pairs:
        info = raster_info(path)
        band = _band_for(info, el)
        sources[el] = (path, band)
        nodata[el] = info.nodata
    return EdsRasters(sources, grid, nodata)


def open_element_folder(
    folder: Path, *, elements: Sequence[str] | None = None, pixel_size_um: float | None = None
) -> EdsArrays:
    """A folder of per-element maps (see :func:`olmap.io.element_maps.read_element_folder`)."""
    found = read_element_folder(folder, elements=elements, pixel_size_um=pixel_size_um)
    height = next(iter(found.maps.values())).shape[0]
    notes = []
    if not found.pixel_size_known:
        notes.append(
            f"{folder}: pixel size unknown (text and PNG maps carry none); the grid is in "
            "pixels (1 px written as 1 µm): give --pixel-size UM for sizes in µm"
        )
    return EdsArrays(
        maps=found.maps,
        transform=micrometre_transform(height, found.pixel_size_um),
        path=folder,
        notes=notes,
    )


def _text_maps(pairs: list[tuple[str, Path]], pixel_size_um: float | None) -> EdsArrays:
    """``--eds Mg=Mg.txt ...``: text count matrices (all held in memory, like a folder)."""
    bad = [p for _, p in pairs if p.suffix.lower() not in TEXT_SUFFIXES]
    if bad:
        raise InputError(
            f"--eds: mix of text maps and rasters ({bad[0]}); put the maps in one folder "
            "and give --eds FOLDER"
        )
    maps = {el: read_count_matrix(p) for el, p in pairs}
    if len({m.shape for m in maps.values()}) > 1:
        raise InputError("--eds: the text maps differ in size; they must match")
    height = next(iter(maps.values())).shape[0]
    notes = []
    if pixel_size_um is None:
        notes.append(
            "pixel size of the text maps unknown; the grid is in pixels (1 px written as "
            "1 µm): give --pixel-size UM for sizes in µm"
        )
    transform = micrometre_transform(height, pixel_size_um or 1.0)
    return EdsArrays(maps, transform, pairs[0][1].parent, notes)


def _band_for(info: RasterInfo, element: str) -> int:
    if info.count == 1:
        described = element_symbol(info.band_names[0]) if info.band_names[0] else None
        if described is not None and described != element:
            raise InputError(
                f"{info.path}: given as the {element} map, but its band is described as "
                f"{info.band_names[0]!r} ({described})"
            )
        return 1
    for i, name in enumerate(info.band_names, start=1):
        if element_symbol(name) == element:
            return i
    raise InputError(
        f"{info.path}: has {info.count} bands and none is described as {element!r}; "
        "give a single-band file per element"
    )


def _stack(path: Path) -> EdsRasters:
    info = raster_info(path)
    names = [element_symbol(n) or "" for n in info.band_names]  # "Mg K series" -> "Mg"
    if not all(names):
        raise InputError(
            f"{path}: EDS bands must be described by element names (Mg, 'Mg K series', "
            f"'Mg Ka', ...); band descriptions are {list(info.band_names)} — or give one file "
            "per element with --eds Mg=FILE, or a folder of per-element maps"
        )
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise InputError(f"{path}: band(s) described twice: {', '.join(dupes)}")
    sources = {el: (path, i) for i, el in enumerate(names, start=1)}
    return EdsRasters(sources, info, dict.fromkeys(names, info.nodata))

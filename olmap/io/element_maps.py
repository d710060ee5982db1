"""Element maps as labs export them: a folder of per-element files, named by element.

Microprobe and SEM software export one map per element: tab- or comma-separated count matrices
(``Mg.txt``; Oxford AZtec's ``Mg K series.csv``, whose rows end in a separator), or images
(``Mg Ka.tif``, ``mg.png``). :func:`element_symbol` reads the element from such a name (or from
a band description), and :func:`read_element_folder` reads a whole folder into
:class:`~olmap.io.eds.EdsArrays`.

Text and PNG maps carry no pixel size. olmap never invents one silently: without
``pixel_size_um`` the grid is 1 µm per pixel and :attr:`ElementFolder.pixel_size_known` is
``False``, which the commands state in one line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from olmap.errors import InputError

#: Chemical element symbols (Z = 1 ... 118).
ELEMENT_SYMBOLS: tuple[str, ...] = tuple(
    """H He Li Be B C N O F Ne Na Mg Al Si P S Cl Ar K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn Ga Ge As
    Se Br Kr Rb Sr Y Zr Nb Mo Tc Ru Rh Pd Ag Cd In Sn Sb Te I Xe Cs Ba La Ce Pr Nd Pm Sm Eu Gd Tb
    Dy Ho Er Tm Yb Lu Hf Ta W Re Os Ir Pt Au Hg Tl Pb Bi Po At Rn Fr Ra Ac Th Pa U Np Pu Am Cm Bk
    Cf Es Fm Md No Lr Rf Db Sg Bh Hs Mt Ds Rg Cn Nh Fl Mc Lv Ts Og""".split()
)
_BY_LOWER = {s.lower(): s for s in ELEMENT_SYMBOLS}

#: File suffixes read as count matrices (text) and as images.
TEXT_SUFFIXES = (".txt", ".csv", ".tsv", ".dat")
IMAGE_SUFFIXES = (".tif", ".tiff", ".png")

# An X-ray line after the symbol: "K series", "Ka", "Kα1,2", "L alpha", "(K)", "K-series"; then
# an optional copy number as vendors add it ("_1", " (2)").
_LINE = r"(?:[\s_-]*\(?\s*[KLM](?:[\s_-]*(?:series|alpha|beta|a|b|α|β))?\s*\d?(?:,\s*\d)?\s*\)?)"
_COPY = r"(?:[\s_-]*\(?\d+\)?)"
# Optional prefix ("eds_Mg", "Map Data 1 - Mg K series"), the symbol, an optional line.
_NAMES = [
    re.compile(rf"^(?:.*?[\s_-])??([A-Za-z]{{{n}}}){_LINE}?{_COPY}?\s*$", re.IGNORECASE)
    for n in (2, 1)
]
# Names of non-element images that vendors put next to the maps. "SE", "CL" are only taken for
# selenium or chlorine when a line follows ("Se L series", "Cl Ka").
_IMAGE_NAMES = {"se", "bse", "sei", "bei", "bsd", "cl", "ccd", "electron image"}


def element_symbol(name: str) -> str | None:
    """The element a map is of, from its file name or band description; ``None`` if none.

    Vendor spellings are understood: ``Mg``, ``mg``, ``MG``, ``Mg K series``, ``Mg Ka``,
    ``MgKa``, ``Mg_Ka1``, ``Mg Kα``, ``Fe L series``. Image names that are also element symbols
    (``SE``, ``CL``) count only with an X-ray line after them.

    Examples
    --------
    >>> [element_symbol(n) for n in ["Mg K series", "MgKa", "mg", "Fe La", "Si_Ka1", "BSE"]]
    ['Mg', 'Mg', 'Mg', 'Fe', 'Si', None]
    >>> element_symbol("SE"), element_symbol("Se L series"), element_symbol("eds_Ca")
    (None, 'Se', 'Ca')
    >>> element_symbol("phases") is None and element_symbol("Electron Image 1") is None
    True
    """
    text = name.strip()
    if text.lower() in _IMAGE_NAMES:
        return None
    for pattern in _NAMES:  # two-letter symbols first: "MgKa" is Mg, "CK" is C (K line)
        match = pattern.match(text)
        if match is not None and match.group(1).lower() in _BY_LOWER:
            return _BY_LOWER[match.group(1).lower()]
    return None


def read_count_matrix(path: str | Path) -> np.ndarray:
    """A count map stored as text: one image row per line, values separated by tabs, commas,
    semicolons or spaces; a separator at the end of each row (AZtec CSV) is allowed, and so
    are decimal commas where the separator is not a comma.

    Returns
    -------
    ndarray of float32, shape (rows, cols)

    Raises
    ------
    InputError
        Naming the file and the first row or value that is not a number, rows of unequal
        length, or an empty file.
    """
    path = Path(path)
    try:
        with open(path, encoding="utf-8-sig") as f:
            first = next((line for line in f if line.strip()), "")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not a readable text map ({exc})") from exc
    if not first:
        raise InputError(f"{path}: empty file; expected a matrix of counts")
    sep = next((s for s in ("\t", ";", ",") if s in first), r"\s+")
    # Exports of European locales write decimal commas ("1,5;2,25" or tab-separated).
    decimal = "," if sep != "," and "," in first else "."
    try:
        table = pd.read_csv(
            path,
            sep=sep,
            header=None,
            dtype=np.float64,
            skip_blank_lines=True,
            skipinitialspace=True,
            encoding="utf-8-sig",
            decimal=decimal,
            engine="c" if sep != r"\s+" else "python",
        )
    except (ValueError, pd.errors.ParserError) as exc:
        raise InputError(
            f"{path}: not a matrix of counts ({str(exc).splitlines()[0]}); expected numbers "
            "separated by tabs, commas, semicolons or spaces, one image row per line"
        ) from exc
    # A separator ending every row gives an empty last column.
    while table.shape[1] and table.iloc[:, -1].isna().all():
        table = table.iloc[:, :-1]
    values = table.to_numpy(dtype=np.float64)
    if values.size == 0:
        raise InputError(f"{path}: no values; expected a matrix of counts")
    gaps = np.isnan(values)
    if gaps.any():
        r, c = np.argwhere(gaps)[0]
        raise InputError(
            f"{path}: row {r + 1} has no value in column {c + 1} (rows of unequal length or an "
            "empty field); every row of a count matrix needs one value per column"
        )
    return values.astype(np.float32)


def _map_candidates(folder: Path) -> list[Path]:
    """Files of ``folder`` with a text or image suffix, in case-insensitive name order."""
    return [
        p
        for p in sorted(folder.iterdir(), key=lambda p: p.name.lower())
        if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES + IMAGE_SUFFIXES
    ]


def element_map_files(folder: str | Path) -> list[Path]:
    """The files of ``folder`` that :func:`read_element_folder` reads as element maps."""
    return [p for p in _map_candidates(Path(folder)) if element_symbol(p.stem) is not None]


@dataclass
class ElementFolder:
    """What :func:`read_element_folder` found.

    Attributes
    ----------
    maps : dict of str to ndarray
        Element symbol -> counts (float32 for text, the image's dtype otherwise).
    pixel_size_um : float
    pixel_size_known : bool
        ``False`` when no file and no argument gave a pixel size (1 µm is used then).
    """

    maps: dict[str, np.ndarray]
    pixel_size_um: float
    pixel_size_known: bool


def _read_image_map(path: Path, symbol: str) -> tuple[np.ndarray, float | None]:
    # Imported here: olmap.io.raster is heavy (rasterio); text-only folders do not need it.
    from olmap.io.raster import raster_info, read_raster

    info = raster_info(path)
    if info.count != 1:
        raise InputError(
            f"{path}: has {info.count} bands; a per-element map has one (a colour image? "
            "export the counts as a grey-level TIFF or a text matrix)"
        )
    described = element_symbol(info.band_names[0]) if info.band_names[0] else None
    if described is not None and described != symbol:
        raise InputError(
            f"{path}: the file name says {symbol} but its band is described as "
            f"{info.band_names[0]!r} ({described}); rename the file or fix the description"
        )
    return read_raster(path, bands=1), info.pixel_size_um


def read_element_folder(
    folder: str | Path,
    *,
    elements: tuple[str, ...] | list[str] | None = None,
    pixel_size_um: float | None = None,
) -> ElementFolder:
    """Read a folder of per-element maps (text count matrices and/or images).

    Parameters
    ----------
    folder : path-like
    elements : sequence of str, optional
        Read only these elements (all element-named files by default).
    pixel_size_um : float, optional
        Pixel side in µm; overrides what image files say.

    Raises
    ------
    InputError
        For a folder without element maps, two files of one element, maps of different shapes,
        a missing requested element, or a file that cannot be read (naming it).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder of element maps")
    found: dict[str, Path] = {}
    skipped: list[Path] = []  # BSE.tif, phases.tif, ...: named in the error if nothing else
    for path in _map_candidates(folder):
        symbol = element_symbol(path.stem)
        if symbol is None:
            skipped.append(path)
            continue
        if symbol in found:
            raise InputError(
                f"{folder}: two maps of {symbol} ({found[symbol].name}, {path.name}); keep one"
            )
        found[symbol] = path
    if not found:
        raise InputError(
            f"{folder}: no element maps (files named by element, e.g. Mg.txt, 'Mg K series.csv', "
            f"Mg.tif); found {', '.join(p.name for p in skipped) or 'nothing readable'}"
        )
    wanted = list(found) if elements is None else list(elements)
    missing = [e for e in wanted if e not in found]
    if missing:
        raise InputError(
            f"{folder}: no map of {', '.join(missing)} (maps found: {', '.join(found)})"
        )
    maps: dict[str, np.ndarray] = {}
    sizes: set[float] = set()
    for symbol in wanted:
        path = found[symbol]
        if path.suffix.lower() in TEXT_SUFFIXES:
            maps[symbol] = read_count_matrix(path)
        else:
            maps[symbol], size = _read_image_map(path, symbol)
            if size is not None and path.suffix.lower() != ".png":
                sizes.add(round(size, 9))
    shapes = {e: m.shape for e, m in maps.items()}
    if len(set(shapes.values())) > 1:
        listing = ", ".join(f"{found[e].name} {s[0]}x{s[1]}" for e, s in shapes.items())
        raise InputError(f"{folder}: element maps differ in size ({listing}); they must match")
    known = pixel_size_um is not None
    if pixel_size_um is None and len(sizes) == 1:
        pixel_size_um, known = sizes.pop(), True
    return ElementFolder(
        maps=maps,
        pixel_size_um=float(pixel_size_um) if pixel_size_um is not None else 1.0,
        pixel_size_known=known,
    )

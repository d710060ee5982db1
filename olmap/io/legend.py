"""Legends of label maps made elsewhere: which integer code is which class.

A lab's own classification (a phase map from its automated-mineralogy software, or a
published one) is an integer raster of any type plus a legend. The legend is a small YAML
mapping (``4: olivine``) or a CSV with ``code,name`` columns. Class names are compared
through :func:`canonical_class_name`, so ``opx`` in a legend matches ``orthopyroxene`` in a
rule file.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import yaml

from olmap.errors import InputError

#: Common abbreviations and synonyms of the classes olmap's rule files use.
CLASS_ALIASES: dict[str, str] = {
    "ol": "olivine",
    "olv": "olivine",
    "fo": "olivine",
    "opx": "orthopyroxene",
    "en": "orthopyroxene",
    "enstatite": "orthopyroxene",
    "hypersthene": "orthopyroxene",
    "cpx": "clinopyroxene",
    "aug": "clinopyroxene",
    "augite": "clinopyroxene",
    "pl": "plagioclase",
    "plag": "plagioclase",
    "plg": "plagioclase",
    "feldspar": "plagioclase",
    "sp": "spinel",
    "spl": "spinel",
    "chr": "spinel",
    "chromite": "spinel",
    "cr-spinel": "spinel",
    "ox": "oxide",
    "fe-ti oxide": "oxide",
    "fe-ti oxides": "oxide",
    "fe-ti-oxide": "oxide",
    "feti oxide": "oxide",
    "oxides": "oxide",
    "mt": "oxide",
    "mag": "oxide",
    "magnetite": "oxide",
    "titanomagnetite": "oxide",
    "ilm": "oxide",
    "ilmenite": "oxide",
    "gl": "glass",
    "grt": "garnet",
}


def canonical_class_name(name: str) -> str:
    """Lower-case class name with abbreviations spelt out.

    Examples
    --------
    >>> canonical_class_name("Opx"), canonical_class_name("Fe-Ti oxide"), canonical_class_name("olivine")
    ('orthopyroxene', 'oxide', 'olivine')
    """  # noqa: E501
    key = re.sub(r"\s+", " ", name.strip().lower()).replace("_", " ")
    return CLASS_ALIASES.get(key, key)


def read_legend(path: str | Path) -> dict[int, str]:
    """Code -> class name from a YAML mapping or a ``code,name`` CSV.

    Raises
    ------
    InputError
        Naming the file and the entry that is not an integer code with a name.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise InputError(f"{path}: legend not readable ({exc.strerror or exc})") from exc
    if path.suffix.lower() == ".csv":
        rows = [r for r in csv.reader(text.splitlines()) if any(c.strip() for c in r)]
        if rows and not rows[0][0].strip().lstrip("-").isdigit():
            rows = rows[1:]  # a header such as "code,name"
        pairs = [(r[0], r[1] if len(r) > 1 else "") for r in rows]
    else:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise InputError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from exc
        if isinstance(data, dict) and isinstance(data.get("classes"), dict):
            data = data["classes"]
        if not isinstance(data, dict):
            raise InputError(f"{path}: a legend maps codes to names, e.g. '4: olivine'")
        pairs = list(data.items())
    legend: dict[int, str] = {}
    for code, name in pairs:
        try:
            value = int(str(code).strip())
        except ValueError:
            raise InputError(f"{path}: {code!r} is not an integer class code") from None
        if not isinstance(name, str) or not name.strip():
            raise InputError(f"{path}: code {value} has no class name")
        if value in legend:
            raise InputError(f"{path}: code {value} listed twice")
        legend[value] = name.strip()
    if not legend:
        raise InputError(f"{path}: the legend lists no class")
    return legend

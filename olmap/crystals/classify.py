"""Crystal classes and zoning from editable rules (seed 002 Table 2; ``configs/classes/``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from pydantic import ValidationError

from olmap.crystals.config import ClassRules, Condition, Rule
from olmap.errors import InputError

UNCLASSIFIED = "unclassified"


def load_class_rules(path: str | Path) -> ClassRules:
    """Read class rules from YAML (see ``configs/classes/olivine.yaml``).

    Raises
    ------
    InputError
        Naming the file and the problem.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError as exc:
        raise InputError(f"{path}: class rules file not found") from exc
    except (OSError, yaml.YAMLError) as exc:
        raise InputError(f"{path}: cannot read class rules ({exc})") from exc
    try:
        return ClassRules.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InputError(f"{path}: {where}: {first['msg']}") from exc


def _holds(condition: Condition, values: pd.Series) -> np.ndarray:
    v = pd.to_numeric(values, errors="coerce").to_numpy(float)
    ok = np.isfinite(v)
    for bound, op in (
        (condition.gt, np.greater),
        (condition.ge, np.greater_equal),
        (condition.lt, np.less),
        (condition.le, np.less_equal),
    ):
        if bound is not None:
            ok &= op(v, bound, where=np.isfinite(v), out=np.zeros(v.size, bool))
    return ok


def _rule_holds(rule: Rule, table: pd.DataFrame) -> np.ndarray:
    ok = np.ones(len(table), bool)
    for name, condition in rule.when.items():
        if name not in table.columns:
            raise InputError(f"class rule {rule.name!r} reads {name!r}, not a catalogue attribute")
        ok &= _holds(condition, table[name])
    return ok


def _first_match(rules: list[Rule], table: pd.DataFrame, default: str) -> np.ndarray:
    names = np.full(len(table), default, dtype=object)
    open_ = np.ones(len(table), bool)
    for rule in rules:
        hit = open_ & _rule_holds(rule, table)
        names[hit] = rule.name
        open_ &= ~hit
    return names


def classify(table: pd.DataFrame, rules: ClassRules) -> pd.DataFrame:
    """Class and zoning of every crystal: the first rule that holds names each.

    Parameters
    ----------
    table : DataFrame
        One row per crystal with the attributes the rules read (``area_um2`` in µm²,
        ``core_rim_ratio``, ...). A NaN attribute never satisfies a condition.
    rules : ClassRules

    Returns
    -------
    DataFrame
        ``class`` (``unclassified`` where no class rule holds) and ``zoning`` (``""`` for
        classes without zoning, and where no zoning rule holds, e.g. a phenocryst whose
        core/rim ratio could not be measured), indexed like ``table``.

    Examples
    --------
    >>> from olmap.crystals.config import olivine_rules
    >>> t = pd.DataFrame({"area_um2": [500.0, 20000.0, 20000.0],
    ...                   "core_rim_ratio": [1.0, 0.93, 1.0],
    ...                   "mantle_excess": [float("nan")] * 3})
    >>> classify(t, olivine_rules()).to_dict("list")
    {'class': ['microlite', 'phenocryst', 'phenocryst'], 'zoning': ['', 'normal', 'none']}
    """
    classes = _first_match(rules.classes, table, UNCLASSIFIED)
    zoning = np.full(len(table), "", dtype=object)
    if rules.zoning is not None:
        zoned = np.isin(classes, rules.zoning.classes)
        if zoned.any():
            # No zoning rule holds (e.g. no BSE in core or rim): left empty, not guessed.
            zoning[zoned] = _first_match(rules.zoning.rules, table[zoned], "")
    return pd.DataFrame({"class": classes, "zoning": zoning}, index=table.index)

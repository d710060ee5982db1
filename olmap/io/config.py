"""Read YAML parameter files into validated pydantic models, with one-line errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from olmap.errors import InputError, InputFileNotFoundError

ModelT = TypeVar("ModelT", bound=BaseModel)


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; syntax errors name the file and line."""
    path = Path(path)
    if not path.exists():
        raise InputFileNotFoundError(path, "config file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InputError(f"{path}:{where}: YAML syntax error: {problem}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a mapping of keys to values, got {type(data).__name__}")
    return data


def _root_causes(errors: list) -> list:
    """Drop errors that only follow from others: a failed item of a list also makes the list
    too short, which pydantic reports at the list's (shorter) location."""
    locs = [tuple(e.get("loc", ())) for e in errors]
    return [
        e
        for e, loc in zip(errors, locs, strict=True)
        if not any(len(other) > len(loc) and other[: len(loc)] == loc for other in locs)
    ] or errors


def load_config(model: type[ModelT], path: str | Path | None = None, **overrides: Any) -> ModelT:
    """Build ``model`` from a YAML file (optional) and keyword overrides (``None`` ignored).

    Raises
    ------
    InputError
        Naming the file, the key and the problem (unknown key, wrong type, out of range).
    """
    data = read_yaml(path) if path is not None else {}
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        where = f"{path}: " if path is not None else "invalid parameters: "
        raise InputError(where + validation_message(exc)) from exc


def validation_message(exc: ValidationError) -> str:
    """``key.path: problem (and N more)``: the first root cause of a validation error."""
    errors = _root_causes(exc.errors())
    err = errors[0]
    key = ".".join(str(p) for p in err.get("loc", ()))
    msg = str(err.get("msg", "")).removeprefix("Value error, ")
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{key + ': ' if key else ''}{msg}{more}"

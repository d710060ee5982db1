"""Domain errors.

Every error meant for a user derives from :class:`OlmapError` *and* from the builtin that
describes it best, so library callers can catch ``ValueError`` or ``FileNotFoundError`` as
usual while the CLI prints one clear line for any ``OlmapError``. Messages name the file and
say how to fix the problem.
"""

from __future__ import annotations

from pathlib import Path


class OlmapError(Exception):
    """Base class of all errors that olmap reports to users as one line."""


class InputError(OlmapError, ValueError):
    """An input file or value is unusable (wrong type, range, content)."""


class InputFileNotFoundError(OlmapError, FileNotFoundError):
    """A required input file does not exist."""

    def __init__(self, path: str | Path, what: str = "input file") -> None:
        super().__init__(f"{path}: {what} not found")
        self.path = Path(path)


class NotCoregisteredError(InputError):
    """Two rasters that must share a pixel grid do not."""


class OutputExistsError(OlmapError, FileExistsError):
    """An output exists and ``overwrite`` was not requested."""

    def __init__(self, path: str | Path) -> None:
        super().__init__(f"{path}: output exists; pass --overwrite to replace it")
        self.path = Path(path)


class MissingExtraError(OlmapError, ImportError):
    """An optional dependency is not installed."""

    def __init__(self, module: str, extra: str) -> None:
        super().__init__(
            f"{module} is needed for this; install it with: pip install 'olmap[{extra}]'"
        )


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name if it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__

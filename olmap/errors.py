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


class OutputLockedError(OlmapError, BlockingIOError):
    """Another olmap run is writing the same output (it holds the output's lock file)."""

    def __init__(self, path: str | Path, holder: str) -> None:
        super().__init__(
            f"{path}: another olmap run is writing this output ({holder}); wait for it to "
            "finish or stop it, or choose another output name"
        )
        self.path = Path(path)


class OutputWriteError(OlmapError, OSError):
    """An output could not be written whole (full disk, I/O error, a damaged result).

    Raised only after the partial output is removed: nothing is left under the final name,
    and an earlier result there is untouched.
    """

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = Path(path)
        self.reason = reason
        self.detail = reason  # what failed, without the path (set by its maker)


class MissingExtraError(OlmapError, ImportError):
    """An optional dependency is not installed."""

    def __init__(self, module: str, extra: str) -> None:
        super().__init__(
            f"{module} is needed for this; install it with: pip install 'olmap[{extra}]'"
        )


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name if it has none).

    Where the message only points at its cause (rasterio's "Read failed. See previous
    exception for details."), the cause's: e.g. which tile of a VRT is missing.
    """
    text = str(exc).strip()
    if "previous exception" in text and exc.__cause__ is not None:
        return first_line(exc.__cause__)
    return text.splitlines()[0] if text else type(exc).__name__

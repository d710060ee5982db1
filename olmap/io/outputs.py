"""Outputs appear only when complete and never replace existing results silently.

Every writer goes through :func:`atomic_path` (one file) or :func:`atomic_dir` (a folder of
results): data are written under a temporary sibling name and renamed into place only when the
block exits without an exception.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from olmap.errors import OutputExistsError

PARTIAL_SUFFIX = ".partial"


def partial_name(path: str | Path) -> Path:
    """Temporary sibling under which ``path`` is built (``name.partial``)."""
    path = Path(path)
    return path.with_name(path.name + PARTIAL_SUFFIX)


def check_writable(path: str | Path, *, overwrite: bool) -> Path:
    """Raise :class:`OutputExistsError` if ``path`` exists and ``overwrite`` is false.

    An empty existing directory counts as absent.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        if not (path.is_dir() and not any(path.iterdir())):
            raise OutputExistsError(path)
    return path


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


@contextmanager
def atomic_path(path: str | Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path for ``path``; rename it into place on success.

    Parameters
    ----------
    path : path-like
        Final output file.
    overwrite : bool
        Replace an existing ``path``. Without it an existing output raises
        :class:`~olmap.errors.OutputExistsError` before any work starts.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
    >>> with atomic_path(out) as tmp:
    ...     _ = tmp.write_text("done")
    >>> out.read_text()
    'done'
    """
    path = check_writable(path, overwrite=overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_name(path)
    _remove(tmp)
    try:
        yield tmp
    except BaseException:
        _remove(tmp)
        raise
    if path.exists() and path.is_dir():
        _remove(path)
    os.replace(tmp, path)


@contextmanager
def atomic_dir(
    path: str | Path, *, overwrite: bool = False, keep_partial: bool = False
) -> Iterator[Path]:
    """Yield a temporary directory for ``path``; swap it into place on success.

    Parameters
    ----------
    path : path-like
        Final output directory.
    overwrite : bool
        Replace an existing, non-empty ``path``.
    keep_partial : bool
        Keep an existing partial directory (to resume an interrupted run) and keep the
        partial directory on failure; otherwise it is removed.
    """
    path = check_writable(path, overwrite=overwrite)
    tmp = partial_name(path)
    if tmp.exists() and not keep_partial:
        _remove(tmp)
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        yield tmp
    except BaseException:
        if not keep_partial:
            _remove(tmp)
        raise
    if path.exists():
        _remove(path)
    os.replace(tmp, path)

"""Outputs appear only when complete and never replace existing results silently.

Every writer goes through :func:`atomic_path` (one file) or :func:`atomic_dir` (a folder of
results): data are written under a temporary sibling name and renamed into place only when the
block exits without an exception.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from olmap.errors import InputError, OutputExistsError

PARTIAL_SUFFIX = ".partial"
#: File inside every output folder olmap writes; only such folders are ever replaced.
MARKER = ".olmap-output"


def _absolute(path: str | Path) -> Path:
    # Resolve first: "..", "." or a symlink must never be treated as a plain new name.
    return Path(path).expanduser().resolve()


def partial_name(path: str | Path) -> Path:
    """Temporary sibling under which ``path`` is built (``name.partial``)."""
    path = _absolute(path)
    return path.with_name(path.name + PARTIAL_SUFFIX)


def check_writable(path: str | Path, *, overwrite: bool) -> Path:
    """Check that ``path`` may be (re)written; return it as an absolute path.

    Raises
    ------
    OutputExistsError
        If ``path`` exists and ``overwrite`` is false (an empty folder counts as absent).
    InputError
        If ``path`` is the current folder or contains it, or is an existing folder that olmap
        did not write (no :data:`MARKER` inside): such folders are never replaced.
    """
    path = _absolute(path)
    cwd = Path.cwd().resolve()
    if path == cwd or path in cwd.parents or path == path.parent:
        raise InputError(
            f"{path}: refusing to write over the current folder or a folder "
            "that contains it; give the name of a new folder"
        )
    if not path.exists() or (path.is_dir() and not any(path.iterdir())):
        return path
    if not overwrite:
        raise OutputExistsError(path)
    if path.is_dir() and not (path / MARKER).exists():
        raise InputError(
            f"{path}: folder was not written by olmap; refusing to replace it "
            "(remove it yourself or choose another name)"
        )
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
        Replace an existing, non-empty ``path`` (only one that olmap wrote; see
        :func:`check_writable`).
    keep_partial : bool
        Keep an existing partial directory (to resume an interrupted run) and keep the
        partial directory on failure; otherwise it is removed.
    """
    path = check_writable(path, overwrite=overwrite)
    tmp = partial_name(path)
    if tmp.exists() and not keep_partial:
        _remove(tmp)
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / MARKER).write_text("written by olmap; `--overwrite` may replace this folder\n")
    try:
        yield tmp
    except BaseException:
        if not keep_partial:
            _remove(tmp)
        raise
    if path.exists():
        _remove(path)
    os.replace(tmp, path)


def check_outputs_distinct(
    outputs: Iterable[str | Path | None], inputs: Iterable[str | Path | None]
) -> None:
    """Refuse outputs that are inputs, folders holding an input, or the same as each other.

    ``--overwrite`` must never turn a typo (``--out eds.tif``) into the loss of an input.

    Raises
    ------
    InputError
        Naming the output and the input it would destroy.
    """
    outs = [_absolute(p) for p in outputs if p is not None]
    ins = [_absolute(p) for p in inputs if p is not None]
    for i, out in enumerate(outs):
        for other in outs[:i]:
            if out == other:
                raise InputError(f"{out}: given for two different outputs; choose two names")
        for inp in ins:
            if out == inp or out in inp.parents:
                what = "is an input" if out == inp else f"holds the input {inp}"
                raise InputError(f"{out}: output {what}; choose another output name")

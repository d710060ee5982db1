"""Outputs appear only when complete and whole, and never replace existing results silently.

Every writer goes through :func:`atomic_path` (one file) or :func:`atomic_dir` (a folder of
results), and jobs with several outputs claim them all first with :func:`claim_outputs`:

- *before any work*: outputs are not inputs (:func:`check_outputs_distinct`), may be written
  (:func:`check_writable`: absent, or ``--overwrite``), and are locked: an exclusive lock file
  ``NAME.lock`` beside each output, held until the job ends, stops a second run into the same
  outputs at once (:class:`~olmap.errors.OutputLockedError`, naming the other run's process).
  Creating the lock file also proves that the output's folder is writable;
- data are written under a temporary sibling name (``NAME.partial``);
- *at the end* (:func:`commit`) the finished files are verified (:mod:`olmap.io.verify`:
  re-opened and read where a cut-short file breaks), flushed to disk and only then renamed into
  place. On any failure the partial output is removed (unless a resumable job keeps it), nothing
  appears under the final name and an earlier result there is untouched. Write failures (full
  disk, quota, read-only file system) become :class:`~olmap.errors.OutputWriteError` naming the
  output.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from olmap.errors import (
    InputError,
    OlmapError,
    OutputExistsError,
    OutputLockedError,
    OutputWriteError,
    first_line,
)
from olmap.io.verify import DamagedFileError, verify_file, verify_tree

PARTIAL_SUFFIX = ".partial"
LOCK_SUFFIX = ".lock"
#: File inside every output folder olmap writes; only such folders are ever replaced.
MARKER = ".olmap-output"
#: errno values that mean "this output cannot be written here", not "an input is bad".
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO})


def _absolute(path: str | Path) -> Path:
    # Resolve first: "..", "." or a symlink must never be treated as a plain new name.
    return Path(path).expanduser().resolve()


def partial_name(path: str | Path) -> Path:
    """Temporary sibling under which ``path`` is built (``name.partial``)."""
    path = _absolute(path)
    return path.with_name(path.name + PARTIAL_SUFFIX)


def lock_name(path: str | Path) -> Path:
    """Lock file of the output ``path`` (``name.lock``, beside it)."""
    path = _absolute(path)
    return path.with_name(path.name + LOCK_SUFFIX)


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


def free_bytes(path: str | Path) -> int | None:
    """Bytes free to this user on the file system of ``path`` (or its nearest existing parent)."""
    path = _absolute(path)
    for folder in (path, *path.parents):
        if folder.exists():
            try:
                return shutil.disk_usage(folder).free
            except OSError:
                return None
    return None


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def check_free_space(path: str | Path, need: int, what: str = "the outputs") -> None:
    """Refuse to start when ``path``'s file system has less than ``need`` bytes free.

    For outputs whose size is known up front (uncompressed arrays); compressed rasters are
    checked when they are finished instead (:func:`commit`).
    """
    free = free_bytes(path)
    if free is not None and free < need:
        raise OutputWriteError(
            path,
            f"{_size(free)} free on its file system, {what} need {_size(need)}; "
            "free some space or choose another folder",
        )


def final_name(path: str | Path) -> Path:
    """The output a temporary ``NAME.partial`` is built for (``path`` itself otherwise)."""
    path = Path(path)
    if path.name.endswith(PARTIAL_SUFFIX):
        return path.with_name(path.name[: -len(PARTIAL_SUFFIX)])
    return path


def write_failure(path: str | Path, exc: BaseException, inside: str = "") -> OutputWriteError:
    """The one-line error for a failed write of the output ``path`` (or of its partial).

    ``inside`` names the file of an output folder that failed.
    """
    path = final_name(path)
    free = free_bytes(path)
    if isinstance(exc, OutputWriteError):
        detail = exc.detail
    elif isinstance(exc, OSError) and exc.strerror:
        detail = exc.strerror
    elif (free is not None and free < FULL_BYTES) or "No space left" in str(exc):
        # A library's own words for it: SQLite's, a zip writer's, GDAL's, shutil's list.
        detail = "no space left on device"
    else:
        detail = first_line(exc)
    if inside:
        detail = f"{inside}: {detail}"
    if free is not None and not isinstance(exc, OutputWriteError):
        detail += f"; {_size(free)} free on its file system"
    error = OutputWriteError(
        path,
        f"could not be written ({detail}); nothing was written under this name "
        "(an earlier result there is untouched)",
    )
    error.detail = detail
    return error


#: Free bytes under which a file system counts as full when a writer fails.
FULL_BYTES = 1 << 20


#: Words of writers' own messages for a refused write (lower case).
WRITE_FAILURE_WORDS = (
    "no space left",
    "disk is full",
    "disk full",
    "quota exceeded",
    "read-only file system",
    "file too large",
    "io error writing",
    "write error",
    "error writing",
    "failed to commit transaction",
    "no such table: gpkg_",  # a GeoPackage whose own tables could not be written
)


def is_write_failure(exc: BaseException, output: str | Path | None = None) -> bool:
    """Whether ``exc`` means "the disk refused the data" (full, quota, read-only, I/O).

    An ``OSError`` says so by its errno, anywhere in the chain of causes. Writers that wrap it
    in their own exception are recognised by their words (SQLite's "database or disk is full"
    and "Failed to commit transaction" in a GeoPackage, libtiff's "IO error writing", copytree's
    list of errors), or by the state they leave: with ``output`` given, any error while the
    output's file system has less than :data:`FULL_BYTES` free. (Free space alone is not
    enough: a writer that deletes its half-written file on failure frees the space again.)
    """
    if isinstance(exc, OlmapError) or not isinstance(exc, Exception):
        return False
    seen: BaseException | None = exc
    for _ in range(8):  # the exception and its causes
        if seen is None:
            break
        if isinstance(seen, OSError) and seen.errno in WRITE_ERRNOS:
            return True
        if any(words in str(seen).lower() for words in WRITE_FAILURE_WORDS):
            return True
        seen = seen.__cause__ or seen.__context__
    free = free_bytes(output) if output is not None else None
    return free is not None and free < FULL_BYTES


# --- locks ------------------------------------------------------------------------------


@dataclass
class _Lock:
    fd: int
    path: Path
    count: int = 1


_HELD: dict[Path, _Lock] = {}
_HELD_GUARD = threading.Lock()


def _holder(lock: Path) -> str:
    """Who holds a lock, as its file says (written by the holder just after locking)."""
    for _ in range(20):
        try:
            text = lock.read_text().strip()
        except OSError:
            text = ""
        if text:
            return text
        time.sleep(0.01)
    return "process unknown"


def _acquire(path: Path) -> _Lock:
    lock = lock_name(path)
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise OutputWriteError(
                path, f"cannot write in {lock.parent} ({exc.strerror}); choose another folder"
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OutputLockedError(path, _holder(lock)) from None
        # The holder before us may have removed the file between our open and our lock:
        # then ours is a lock on a deleted file, and another run may lock a new one.
        try:
            same = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    command = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:300]
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()}, started {started}: {command}\n".encode())
    except OSError as exc:  # not even a line fits: no output will
        lock.unlink(missing_ok=True)
        os.close(fd)
        raise write_failure(path, exc) from exc
    return _Lock(fd, lock)


@contextmanager
def output_lock(path: str | Path) -> Iterator[Path]:
    """Hold the exclusive lock of the output ``path`` (re-entrant within one process).

    The lock file ``NAME.lock`` is removed when the outermost holder releases it. A process
    killed with SIGKILL leaves the file but not the lock (the kernel drops it), so the next
    run takes it over.

    Raises
    ------
    OutputLockedError
        If another process holds it.
    OutputWriteError
        If the lock file cannot be created (the output's folder is not writable).
    """
    path = _absolute(path)
    with _HELD_GUARD:
        held = _HELD.get(path)
        if held is not None:
            held.count += 1
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            held = _HELD[path] = _acquire(path)
    try:
        yield path
    finally:
        with _HELD_GUARD:
            held.count -= 1
            if held.count == 0:
                del _HELD[path]
                held.path.unlink(missing_ok=True)  # while still locked: no one else uses it
                os.close(held.fd)


def _missing_parents(path: Path) -> list[Path]:
    return [p for p in path.parents if not p.exists()]


@contextmanager
def claim_outputs(
    outputs: Iterable[str | Path | None],
    *,
    inputs: Iterable[str | Path | None] = (),
    overwrite: bool = False,
) -> Iterator[list[Path]]:
    """Check and lock every output of a job before any work; yield them as absolute paths.

    Outputs must differ from each other and from every input (files, and folders that hold an
    input), may exist only with ``overwrite``, and must be writable; each is locked against
    other runs until the block ends. Folders created for the outputs are removed again if the
    job fails and leaves them empty.
    """
    wanted = [p for p in outputs if p is not None]
    check_outputs_distinct(wanted, inputs)
    paths = [check_writable(p, overwrite=overwrite) for p in wanted]
    created = sorted({d for p in paths for d in _missing_parents(p)}, key=lambda d: -len(d.parts))
    try:
        with ExitStack() as stack:
            for path in paths:
                stack.enter_context(output_lock(path))
            yield paths
    except BaseException:
        for folder in created:  # deepest first
            try:
                folder.rmdir()
            except OSError:
                pass  # not empty, or gone: leave it
        raise


# --- writing and committing ---------------------------------------------------------------


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _fsync(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.EBADF):  # file systems without fsync
            raise
    finally:
        os.close(fd)


def commit(pairs: Sequence[tuple[Path, Path]]) -> None:
    """Verify each finished ``(temporary, final)`` output, then rename all into place.

    Every temporary file (or folder: every file in it) is checked (:mod:`olmap.io.verify`)
    and flushed to disk before the first rename, so either all outputs appear, whole, or none
    does. The caller removes the temporary outputs on failure.

    Raises
    ------
    OutputWriteError
        Naming the final output whose file is damaged or cannot be flushed.
    """
    for tmp, final in pairs:
        try:
            if tmp.is_dir():
                verify_tree(tmp)
            else:
                verify_file(tmp, final)
                _fsync(tmp)
        except DamagedFileError as exc:
            raise write_failure(final, exc) from exc
        except OSError as exc:
            raise write_failure(final, exc) from exc
    for tmp, final in pairs:
        if final.exists() and final.is_dir() and not final.is_symlink():
            _remove(final)
        os.replace(tmp, final)
    for folder in {final.parent for _, final in pairs}:
        _fsync(folder)


@contextmanager
def atomic_paths(
    paths: Sequence[str | Path],
    *,
    inputs: Iterable[str | Path | None] = (),
    overwrite: bool = False,
) -> Iterator[list[Path]]:
    """Yield temporary paths for several output files; all appear together, whole, or none.

    :func:`claim_outputs` first (before any work), then one ``NAME.partial`` per output;
    at the end :func:`commit` verifies all and renames all. On failure the partial files are
    removed and the outputs are left as they were.
    """
    with claim_outputs(paths, inputs=inputs, overwrite=overwrite) as finals:
        tmps = [partial_name(p) for p in finals]
        for tmp in tmps:
            _remove(tmp)
        try:
            yield tmps
            commit(list(zip(tmps, finals, strict=True)))
        except BaseException as exc:
            # Judged and worded before the partial files go (their removal frees space).
            failure = None
            if is_write_failure(exc, finals[0]):
                failure = write_failure(getattr(exc, "filename", None) or finals[0], exc)
            for tmp in tmps:
                _remove(tmp)
            if failure is not None:
                raise failure from exc
            raise


@contextmanager
def atomic_path(path: str | Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path for ``path``; verify it and rename it into place on success.

    Parameters
    ----------
    path : path-like
        Final output file.
    overwrite : bool
        Replace an existing ``path``. Without it an existing output raises
        :class:`~olmap.errors.OutputExistsError` before any work starts.

    Raises
    ------
    OutputWriteError
        When the disk refuses the data or the finished file is damaged; the temporary file is
        removed and ``path`` is left as it was.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
    >>> with atomic_path(out) as tmp:
    ...     _ = tmp.write_text("done")
    >>> out.read_text()
    'done'
    """
    with atomic_paths([path], overwrite=overwrite) as (tmp,):
        yield tmp


@contextmanager
def atomic_dir(
    path: str | Path, *, overwrite: bool = False, keep_partial: bool = False
) -> Iterator[Path]:
    """Yield a temporary directory for ``path``; verify it and swap it into place on success.

    Parameters
    ----------
    path : path-like
        Final output directory.
    overwrite : bool
        Replace an existing, non-empty ``path`` (only one that olmap wrote; see
        :func:`check_writable`).
    keep_partial : bool
        Keep an existing partial directory (to resume an interrupted run), and keep the
        partial directory when the run fails other than on its input or its output (an
        interruption, an internal error): otherwise it is removed, since running again
        could not use it.
    """
    path = check_writable(path, overwrite=overwrite)
    with output_lock(path):
        tmp = partial_name(path)
        if tmp.exists() and not keep_partial:
            _remove(tmp)
        try:
            tmp.mkdir(parents=True, exist_ok=True)
            (tmp / MARKER).write_text("written by olmap; `--overwrite` may replace this folder\n")
            yield tmp
            commit([(tmp, path)])
        except BaseException as exc:
            # Judged and worded before the partial folder goes (its removal frees space).
            failure = None
            if is_write_failure(exc, path):
                failure = write_failure(path, exc)
            elif isinstance(exc, OutputWriteError) and tmp in exc.path.parents:
                # A file inside the folder: the output the user named is the folder.
                failure = write_failure(path, exc, inside=str(exc.path.relative_to(tmp)))
            if not keep_partial or failure is not None or isinstance(exc, InputError):
                _remove(tmp)  # a full disk gets its space back; resuming starts afresh
            if failure is not None:
                raise failure from exc
            raise


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

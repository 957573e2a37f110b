"""Safe outputs: the check every command makes on where it will write, before any work, and
atomic writes (a temp file or folder beside the target, then a rename).

A crash, Ctrl-C or SIGTERM mid-write leaves either the old file or the new one, never half of
one, and no temporary behind. Nothing the user did not name is touched: a folder, a symbolic
link, a device or a FIFO is never replaced, and an existing regular file only with ``--force``.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import shutil
import signal
import stat
import sys
import tempfile
import threading
from collections.abc import Callable, Collection, Iterator, Mapping
from pathlib import Path
from typing import IO, Any, Literal

from namesclf.errors import NamesError

#: What an output path names: one ``file``; a ``dataset`` folder written whole and renamed into
#: place (so it must not exist); a ``folder`` that files are written into (it may exist).
OutputKind = Literal["file", "dataset", "folder"]

#: Errors of a write that ran out of room; said as "cannot write PATH" rather than as a bare errno.
WRITE_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EIO}


def check_output(path: str | Path, force: bool = False, *, kind: OutputKind = "file",
                 suffixes: Collection[str] | None = None, files: Collection[str] = (), option: str = "--output",
                 hint: str | None = None) -> Path:
    """Refuse, in one line, an output that would replace what the user did not ask to replace.

    Run before any prediction or training, so that a bad path costs nothing. A symbolic link, a
    device, a FIFO or a socket is refused always, and so is an existing folder for a ``file`` or a
    ``dataset``; an existing regular file is refused unless ``force``. The nearest existing
    ancestor must be a folder this process can write in (missing folders are created later).
    ``suffixes``: the formats a ``file`` may have. ``files``: the names a ``folder`` output will
    hold, each checked as a ``file``. ``hint`` ends the "pass --force" message (default: choose
    another ``option``).
    """
    target = Path(path)
    shown = f"{option} {path}" if option else str(path)
    if kind == "file" and str(path).endswith(("/", os.sep)):
        raise NamesError(f"{shown} names a folder: give a file name")
    found = _lstat(target, shown)
    if found is not None:
        tail = f", or choose another {option or 'path'}" if hint is None else hint
        _refuse_existing(shown, found, force, kind, target, tail)
    _check_parent(target, shown)
    if kind == "file" and suffixes is not None and target.suffix.lower() not in suffixes:
        raise NamesError(f"{shown}: unknown format {target.suffix or '(no suffix)'} "
                         f"(use {', '.join(sorted(suffixes))})")
    for name in files:
        check_output(target / name, force, kind="file", option=option, hint=hint)
    return target


def _lstat(path: Path, shown: str) -> os.stat_result | None:
    """The path's own status (a link is not followed), or None when nothing is there."""
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        return None  # a part of the path is a file: _check_parent says which
    except OSError as exc:
        raise NamesError(f"{shown}: cannot look at it ({exc.strerror})") from None


def _what(mode: int) -> str | None:
    """``a folder``, ``a symbolic link``, ``a FIFO``...; None for a regular file."""
    kinds = ((stat.S_ISDIR, "a folder"), (stat.S_ISLNK, "a symbolic link"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"))
    return next((name for test, name in kinds if test(mode)), None if stat.S_ISREG(mode) else "not a regular file")


def _refuse_existing(shown: str, found: os.stat_result, force: bool, kind: OutputKind, target: Path,
                     hint: str) -> None:
    what = _what(found.st_mode)
    if kind == "folder":
        if stat.S_ISLNK(found.st_mode) and target.is_dir():
            what = "a folder"  # a link to a folder: files are written inside it, the link stays
        if what != "a folder":
            raise NamesError(f"{shown} is {what or 'a file'}, not a folder")
        return
    if kind == "dataset":
        raise NamesError(f"{shown} already exists ({what or 'a file'}): a dataset goes into a new folder and "
                         "nothing already there is replaced; choose a path that does not exist")
    if what == "a folder":
        raise NamesError(f"{shown} is a folder: give a file name (a folder is never replaced)")
    if what is not None:
        raise NamesError(f"{shown} is {what}: only regular files are written, and {what} is never replaced")
    if not force:
        raise NamesError(f"{shown} exists: pass --force to overwrite it{hint}")


def _check_parent(target: Path, shown: str) -> None:
    """The nearest existing ancestor is a folder we may write in (the rest are created)."""
    parent = Path(os.path.abspath(target)).parent
    while True:
        try:
            mode = os.stat(parent).st_mode
        except FileNotFoundError:
            parent = parent.parent
            continue
        except NotADirectoryError:
            parent = parent.parent  # a file further up: found on the way up
            continue
        except OSError as exc:
            raise NamesError(f"{shown}: cannot look at {parent} ({exc.strerror})") from None
        if not stat.S_ISDIR(mode):
            raise NamesError(f"{shown}: {parent} is not a folder")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise NamesError(f"{shown}: no permission to write in {parent}")
        return


def refuse_overwrite(out: str | Path, force: bool, resume_hint: bool = True) -> None:
    """An existing ``out`` is only replaced with ``force``: a model can take minutes to train."""
    also = ", --resume to continue it" if resume_hint else ""
    check_output(out, force, option="--out", hint=f"{also}, or choose another --out")


@contextlib.contextmanager
def terminate_as_exit() -> Iterator[None]:
    """While the block runs, SIGTERM raises ``SystemExit(143)`` so that cleanups run as they do
    for Ctrl-C; SIGTERM's default action ends the process at once, temporaries and all.

    Only in the main thread (where Python runs signal handlers) and only over the default action:
    a server or launcher that handles SIGTERM itself keeps its handler.
    """
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return

    def exit_on_term(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, exit_on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", encoding: str | None = "utf-8",
                overwrite: bool = True) -> Iterator[IO]:
    """Open a temp file beside ``path``; on clean exit it replaces ``path``, on error it vanishes.

    ``path`` is never a folder, link, device or FIFO once written: any of those is refused. With
    ``overwrite=False`` an existing file is refused too, even one that appeared while writing.
    """
    path = Path(path)
    with terminate_as_exit():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding, newline=None) as handle:
                yield handle
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual mode
            _publish(tmp, path, overwrite)
        except OSError as exc:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            if exc.errno in WRITE_ERRNOS:
                raise NamesError(f"cannot write {path}: {exc.strerror}") from None
            raise
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise


def _publish(tmp: str, path: Path, overwrite: bool) -> None:
    """Rename the finished temp file to ``path``, refusing what ``path`` must never replace."""
    found = _lstat(path, str(path))
    if found is not None and not stat.S_ISREG(found.st_mode):
        raise NamesError(f"{path} is {_what(found.st_mode)}: it is never replaced by a file")
    if overwrite:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)  # fails if anything is there now: no window between a check and the rename
    except FileExistsError:
        raise NamesError(f"{path} appeared while it was being written: pass --force to replace it") from None
    except OSError:  # a filesystem without hard links
        if os.path.lexists(path):
            raise NamesError(f"{path} appeared while it was being written: pass --force to replace it") from None
        os.replace(tmp, path)
        return
    os.unlink(tmp)


@contextlib.contextmanager
def atomic_folder(path: str | Path) -> Iterator[Path]:
    """A temp folder beside ``path`` to fill; on clean exit it is renamed to ``path``, which must
    not exist, and on error (SIGTERM too) it is removed. Nothing but the temp folder is ever deleted.

    The rename cannot land on a folder with files in it (the system refuses); one that appeared
    empty since the check is all it could replace.
    """
    target = Path(path)
    with terminate_as_exit():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
        try:
            yield tmp
            os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700
            if os.path.lexists(target):
                raise NamesError(f"{target} appeared while the dataset was being written; it is left as it is")
            os.rename(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> Path:
    with atomic_open(path, "w") as handle:
        handle.write(text)
    return Path(path)


def atomic_write_with(path: str | Path, writer: Callable[[IO], None], binary: bool = True,
                      overwrite: bool = True) -> Path:
    """Let ``writer`` fill an open temp file (``torch.save``, ``fig.savefig``...), then publish it."""
    with atomic_open(path, "wb" if binary else "w", overwrite=overwrite) as handle:
        writer(handle)
    return Path(path)


def jsonable(obj: Any) -> Any:
    """Plain JSON values: numpy scalars to Python, NaN and infinities to null (strict JSON has neither).

    scikit-learn and numpy hand back numpy scalars in metrics; ``json.dumps`` refuses them.
    """
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    np = sys.modules.get("numpy")  # not imported: then nothing here is a numpy scalar (the CLI starts without it)
    if np is not None and isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj

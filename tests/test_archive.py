"""Archives read without trusting them: zip members checked against the expected names and sizes
before any is inflated, inflated in bounded chunks whatever their headers say, compression methods
that cannot be bounded refused, and pickles that would make the unpickler allocate far more than
their own size refused (:mod:`namesclf.data.archive`, :mod:`namesclf.data.fetch`,
:mod:`namesclf.data.name2nat`)."""

from __future__ import annotations

import contextlib
import io
import struct
import subprocess
import sys
import tracemalloc
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from namesclf.cli.main import cli
from namesclf.data import archive, fetch, name2nat
from namesclf.data.name2nat import PICKLE_MEMBER, PickleRefused, load_plain_pickle, read_pickle_bytes
from namesclf.errors import DataError

from .conftest import REPO

#: A member that inflates to this many bytes from a zip of about fifty kilobytes.
BOMB_BYTES = 50 * 1024 * 1024


def zip_bytes(members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buffer.getvalue()


def bomb_member(name: str, others: dict[str, int] | None = None) -> bytes:
    """A zip whose member ``name`` is :data:`BOMB_BYTES` zeros, written in chunks (the test never
    holds the inflated bytes either), beside ``others``: members of the given sizes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        for other, size in (others or {}).items():
            z.writestr(other, b"A" * size)
        with z.open(name, "w") as member:
            block = bytes(1 << 20)
            for _ in range(BOMB_BYTES >> 20):
                member.write(block)
    return buffer.getvalue()


def official_bomb() -> bytes:
    """The 18 official file names under ``data/names/`` at their official sizes, Arabic.txt a bomb."""
    others = {f"data/names/{name}": size for name, size in fetch.expected_sizes().items() if name != "Arabic.txt"}
    return bomb_member("data/names/Arabic.txt", others)


def declare_size(data: bytes, size: int, name: bytes = b"Arabic.txt") -> bytes:
    """The zip ``data`` with the uncompressed size of the member whose name ends with ``name``,
    in its local header and in the central directory, replaced by ``size``: a header that lies."""
    out = bytearray(data)
    for signature, offset, name_at in ((b"PK\x03\x04", 22, 26), (b"PK\x01\x02", 24, 28)):
        start = out.find(signature)
        while start != -1:
            length = struct.unpack("<H", out[start + name_at : start + name_at + 2])[0]
            header = 46 if signature == b"PK\x01\x02" else 30
            if bytes(out[start + header : start + header + length]).endswith(name):
                out[start + offset : start + offset + 4] = struct.pack("<I", size)
            start = out.find(signature, start + 4)
    return bytes(out)


def fetch_names(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["data", "fetch", *args])
    return result.exit_code, result.output


def assert_one_line(code: int, output: str, *needles: str) -> None:
    assert code == 1 and output.startswith("Error: ") and output.count("\n") == 1, output
    for needle in needles:
        assert needle in output, output


def peak_bytes(call) -> int:
    """The most memory Python allocated while ``call()`` ran (inflated chunks are bytes objects)."""
    tracemalloc.start()
    with contextlib.suppress(DataError):
        call()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak


# ----------------------------------------------------------------------------- zip members


def test_a_verified_fetch_refuses_a_bomb_by_its_declared_size_before_inflating(tmp_path: Path) -> None:
    bomb = tmp_path / "data.zip"
    bomb.write_bytes(official_bomb())
    code, output = fetch_names("--from", str(bomb), "--dest", str(tmp_path / "out"))
    assert_one_line(code, output, "data/names/Arabic.txt: unpacks to 52,428,800 bytes where 13,190 are expected")
    assert not (tmp_path / "out").exists()


def test_a_header_that_lies_stops_at_its_first_chunk_with_or_without_verification(tmp_path: Path) -> None:
    """The member claims the official size (or 1,000 bytes) and inflates to 50 MB: the reader holds
    one chunk, never the member, and the CRC check says the data is not what the header says."""
    honest = official_bomb()
    for declared, flags in ((13_190, ()), (1_000, ("--no-verify",))):
        liar = tmp_path / f"liar{declared}.zip"
        liar.write_bytes(declare_size(honest, declared))
        code, output = fetch_names("--from", str(liar), "--dest", str(tmp_path / "out"), *flags)
        assert_one_line(code, output, "data/names/Arabic.txt: cannot unpack (Bad CRC-32")
        assert not (tmp_path / "out").exists()
    with zipfile.ZipFile(tmp_path / "liar1000.zip") as z:
        info = z.getinfo("data/names/Arabic.txt")
        assert info.file_size == 1_000
        assert peak_bytes(lambda: archive.read_member(z, info, "liar", 1 << 30)) < 8 * archive.CHUNK


def test_without_verification_a_member_over_the_cap_is_refused_before_inflating(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fetch, "MAX_FILE_BYTES", 1 << 20)
    bomb = tmp_path / "bomb.zip"
    bomb.write_bytes(bomb_member("names/Klingon.txt"))
    code, output = fetch_names("--from", str(bomb), "--dest", str(tmp_path / "out"), "--no-verify")
    assert_one_line(code, output, "names/Klingon.txt: unpacks to 52,428,800 bytes, more than the 1,048,576 allowed")
    monkeypatch.setattr(fetch, "MAX_FILE_BYTES", 64 << 20)
    monkeypatch.setattr(fetch, "MAX_TOTAL_BYTES", 1 << 20)
    code, output = fetch_names("--from", str(bomb), "--dest", str(tmp_path / "out"), "--no-verify")
    assert_one_line(code, output, "unpack to 52,428,800 bytes, more than 1,048,576")
    assert not (tmp_path / "out").exists()


def test_members_compressed_with_an_unbounded_method_are_refused(tmp_path: Path) -> None:
    for method in (zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA):
        path = tmp_path / f"m{method}.zip"
        path.write_bytes(zip_bytes({"names/Greek.txt": b"Papadopoulos\n"}, method))
        code, output = fetch_names("--from", str(path), "--dest", str(tmp_path / "out"), "--no-verify")
        assert_one_line(code, output, f"compression method {method} is not read (only stored or deflated)")


def test_an_honest_zip_still_fetches_with_and_without_verification(tmp_path: Path) -> None:
    path = tmp_path / "mine.zip"
    path.write_bytes(zip_bytes({"names/Greek.txt": b"Papadopoulos\n", "names/Irish.txt": b"O'Brien\n"},
                               zipfile.ZIP_STORED))
    code, output = fetch_names("--from", str(path), "--dest", str(tmp_path / "out"), "--no-verify")
    assert code == 0 and "wrote 2 files" in output
    assert (tmp_path / "out" / "Irish.txt").read_bytes() == b"O'Brien\n"
    assert_one_line(*fetch_names("--from", str(path), "--dest", str(tmp_path / "v")), "missing 16 of 18 files")


def test_reads_are_capped_and_sums_checked(tmp_path: Path) -> None:
    path = tmp_path / "big.bin"
    path.write_bytes(b"x" * 101)
    with pytest.raises(DataError, match="101 bytes is more than 100; not a names file"):
        archive.read_capped(path, 100, "a names file")
    assert archive.read_capped(path, 101, "a names file") == b"x" * 101
    assert archive.sha256_file(path) == archive.sha256_bytes(b"x" * 101)
    with pytest.raises(DataError, match=r"^here: SHA-256 mismatch \(got 000000000000\.\.\., expected 111111111111"):
        archive.check_sha256("0" * 64, "1" * 64, "here", "not the file")
    with pytest.raises(DataError, match="not a zip archive"):
        archive.open_zip(b"PK\x05\x06 not really", "junk")


# ----------------------------------------------------------------------------- the wheel and its pickle


def test_the_wheel_is_checked_whole_before_its_pickle_is_opened(tmp_path: Path) -> None:
    """A verified read refuses a wheel whose SHA-256 differs without opening it; an unverified one
    reads the pickle member in bounded chunks, so a member that lies about its size is one line."""
    wheel = tmp_path / name2nat.WHEEL_NAME
    wheel.write_bytes(declare_size(bomb_member(PICKLE_MEMBER), 1_000, b"name2nats.pkl"))
    with pytest.raises(DataError, match="SHA-256 mismatch"):
        read_pickle_bytes(wheel)
    with pytest.raises(DataError, match=r"name2nat/name2nats\.pkl: cannot unpack \(Bad CRC-32"):
        read_pickle_bytes(wheel, verify=False)
    honest = tmp_path / "honest.whl"
    honest.write_bytes(bomb_member(PICKLE_MEMBER))
    with pytest.raises(DataError, match="unpacks to 52,428,800 bytes where 53,818,763 are expected"):
        name2nat._pickle_from_wheel(honest, verify=True)


#: Pickles of a few bytes that ask the C unpickler for gigabytes: a counted string whose length is
#: past the end (it allocates the length first), a memo slot far beyond the pickle (it grows and
#: clears its memo table up to the slot), and a bytearray of the same kind.
GREEDY = {
    "bytes8": b"\x80\x04\x8e" + struct.pack("<Q", 1 << 62) + b"xx.",
    "memo slot": b"\x80\x02Nr" + struct.pack("<I", 1 << 28) + b".",
    "bytearray8": b"\x80\x05\x96" + struct.pack("<Q", 1 << 62) + b"x.",
}


@pytest.mark.parametrize("kind", GREEDY)
def test_a_pickle_that_asks_for_gigabytes_is_one_line(kind: str) -> None:
    data = GREEDY[kind]
    with pytest.raises(DataError, match=r"^evil\.pkl: (not a readable pickle|the pickle holds a BYTEARRAY8)") as info:
        load_plain_pickle(data, "evil.pkl")
    assert "\n" not in str(info.value)
    assert peak_bytes(lambda: load_plain_pickle(data, "evil.pkl")) < 1 << 20


def test_without_the_scan_a_memory_error_is_still_one_line() -> None:
    """A verified pickle skips the scan (its SHA-256 pins it); the unpickler's MemoryError, should
    one ever come, is still a one-line error, not a traceback."""
    with pytest.raises(DataError, match="asks for more memory than there is"):
        load_plain_pickle(GREEDY["bytes8"], "evil.pkl", scan=False)


def test_plain_pickles_pass_the_scan() -> None:
    import pickle

    people = {"Andrei Tarkovsky": ["Russian"], "Ludwig van Beethoven": ["German"], "x": []}
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        assert load_plain_pickle(pickle.dumps(people, protocol=protocol), "ok.pkl") == people
    with pytest.raises(PickleRefused, match=r"asks for os\.system"):
        load_plain_pickle(b"cos\nsystem\n(S'true'\ntR.", "evil.pkl")


def test_the_greedy_pickle_through_the_command_line(tmp_path: Path) -> None:
    evil = tmp_path / "name2nats.pkl"
    evil.write_bytes(GREEDY["bytes8"])
    proc = subprocess.run([sys.executable, "-m", "namesclf", "data", "fetch", "wikipedia", "--from", str(evil),
                           "--no-verify", "--dest", str(tmp_path / "w.csv")],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith(f"Error: {evil}: not a readable pickle (expected ")
    assert not (tmp_path / "w.csv").exists()

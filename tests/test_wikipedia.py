"""The Wikipedia corpus: the safe unpickler, the checksums, the builder, the reserved slice, the CLI,
and (marked slow, needs PyPI) the real name2nat wheel."""

from __future__ import annotations

import builtins
import copyreg
import csv
import hashlib
import io
import os
import pickle
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from namesclf.cli.main import cli
from namesclf.data import name2nat, wikipedia
from namesclf.data.dataset import load_names
from namesclf.data.fullnames import parse_name
from namesclf.data.name2nat import PICKLE_MEMBER, PickleRefused, load_plain_pickle, read_people
from namesclf.data.surname_rules import is_reserved, parts_given_first, pick_family_name, surname_given_first
from namesclf.data.wikipedia import build_corpus, load_mapping
from namesclf.data.wikipedia_people import PEOPLE_COLUMNS, build_people
from namesclf.errors import DataError, NamesError
from namesclf.text import to_ascii


def run(*args: str):
    return CliRunner().invoke(cli, list(args))


def assert_one_line_error(result, message: str) -> None:
    assert result.exit_code == 1, result.output
    assert message in result.output, result.output
    assert "Traceback" not in result.output
    assert len([line for line in result.output.splitlines() if line.startswith("Error")]) == 1


def write_wheel(path: Path, pickle_bytes: bytes) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("name2nat/__init__.py", "")
        archive.writestr(PICKLE_MEMBER, pickle_bytes)
    return path


class Payload:
    """Pickles as a call to ``func(*args)``: what a hostile pickle would run on load."""

    def __init__(self, func, *args) -> None:
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def payloads(target: Path) -> list[tuple[str, Payload]]:
    return [("open", Payload(open, str(target), "w")),
            ("system", Payload(os.system, f"touch {target}")),
            ("exec", Payload(builtins.exec, f"open({str(target)!r}, 'w').close()"))]


# ----------------------------------------------------------------------------- the unpickler


@pytest.mark.parametrize("protocol", [0, 2, 4, pickle.HIGHEST_PROTOCOL])
def test_a_pickle_that_would_create_a_file_is_refused_and_creates_nothing(tmp_path: Path, protocol: int) -> None:
    target = tmp_path / "pwned"
    for name, payload in payloads(target):
        for obj in (payload, {"Andrei Tarkovsky": ["Russian"], "x": [payload]}):
            data = pickle.dumps(obj, protocol=protocol)
            with pytest.raises(PickleRefused, match=f"asks for .*{name}.*refused") as info:
                load_plain_pickle(data, "evil.pkl")
            assert isinstance(info.value, NamesError)
            assert "\n" not in str(info.value)
            assert not target.exists()
    # the same bytes through the ordinary unpickler do create it: the test would catch a leak
    pickle.loads(pickle.dumps(Payload(open, str(target), "w"), protocol=protocol)).close()
    assert target.exists()


def test_extension_codes_and_persistent_ids_are_refused(tmp_path: Path) -> None:
    target = tmp_path / "pwned"
    module = os.system.__module__  # "posix" on Linux: what the pickler records
    copyreg.add_extension(module, "system", 0x7A11)
    try:
        data = pickle.dumps(Payload(os.system, f"touch {target}"), protocol=2)
        assert b"\x83" in data or b"\x82" in data or b"\x84" in data  # EXT1/EXT2/EXT4, not GLOBAL
        with pytest.raises(PickleRefused, match=f"{module}.system"):
            load_plain_pickle(data, "ext.pkl")
    finally:
        copyreg.remove_extension(module, "system", 0x7A11)
    with pytest.raises(DataError, match="not a readable pickle"):  # unregistered now
        load_plain_pickle(data, "ext.pkl")
    assert not target.exists()

    class WithIds(pickle.Pickler):
        def persistent_id(self, obj):
            return "some-id" if obj == "secret" else None

    buffer = io.BytesIO()
    WithIds(buffer, protocol=2).dump({"a": ["secret"]})
    with pytest.raises(PickleRefused, match="persistent id"):
        load_plain_pickle(buffer.getvalue(), "ids.pkl")


@pytest.mark.parametrize(("obj", "message"), [
    (["Andrei Tarkovsky", "Russian"], "found a list"),
    ({"Andrei Tarkovsky": "Russian"}, "found str for 'Andrei Tarkovsky'"),
    ({"Andrei Tarkovsky": ["Russian", 3]}, "found list for"),
    ({1: ["Russian"]}, "found a int key"),
    ({"Andrei Tarkovsky": ("Russian",)}, "found tuple"),
])
def test_anything_but_a_dict_of_str_to_list_of_str_is_refused(tmp_path: Path, obj, message: str) -> None:
    path = tmp_path / "odd.pkl"
    path.write_bytes(pickle.dumps(obj))
    with pytest.raises(DataError, match="expected a dict of full name -> list of nationalities") as info:
        read_people(path, verify=False)
    assert message in str(info.value)


def test_a_damaged_pickle_is_one_line(tmp_path: Path) -> None:
    data = pickle.dumps({"Andrei Tarkovsky": ["Russian"]})
    for broken in (data[: len(data) // 2], b"not a pickle at all", b""):
        with pytest.raises(DataError, match="not a readable pickle") as info:
            load_plain_pickle(broken, "broken.pkl")
        assert "\n" not in str(info.value)


# ----------------------------------------------------------------------------- sums and sources


def test_sha256_mismatch_is_refused_for_a_pickle_and_a_wheel(tmp_path: Path) -> None:
    data = pickle.dumps({"Andrei Tarkovsky": ["Russian"]})
    pkl = tmp_path / "name2nats.pkl"
    pkl.write_bytes(data)
    wheel = write_wheel(tmp_path / "name2nat-0.5.1-py3-none-any.whl", data)
    for path in (pkl, wheel):
        with pytest.raises(DataError, match="SHA-256 mismatch") as info:
            read_people(path)
        assert "--no-verify" in str(info.value)
        people, where = read_people(path, verify=False)
        assert people == {"Andrei Tarkovsky": ["Russian"]} and not where.verified
    dest = tmp_path / "out.csv"
    assert_one_line_error(run("data", "fetch", "wikipedia", "--from", str(wheel), "--dest", str(dest)),
                          "SHA-256 mismatch")
    assert not dest.exists()


def test_the_sums_are_the_real_files_and_a_wheel_without_the_pickle_is_refused(tmp_path: Path) -> None:
    assert len(name2nat.WHEEL_SHA256) == len(name2nat.PICKLE_SHA256) == 64
    empty = tmp_path / "empty.whl"
    with zipfile.ZipFile(empty, "w") as archive:
        archive.writestr("name2nat/__init__.py", "")
    with pytest.raises(DataError, match=r"has no name2nat/name2nats\.pkl"):
        read_people(empty, verify=False)
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match="expected the name2nat wheel"):
        read_people(tmp_path / "notes.txt", verify=False)
    with pytest.raises(DataError, match="no such file"):
        read_people(tmp_path / "missing.whl")


def test_offline_without_from_says_to_pass_from(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # pip finds nothing, as with no network
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    dest = tmp_path / "wikipedia.csv"
    result = run("data", "fetch", "wikipedia", "--dest", str(dest))
    assert_one_line_error(result, "pass --from")
    assert "name2nat==0.5.1" in result.output and not dest.exists()


# ----------------------------------------------------------------------------- the builder

#: Hand-made people: every case the builder must get right, with the real mapping file.
PEOPLE = {
    "Ludwig van Beethoven": ["German"],           # particle kept
    "Leonardo da Vinci": ["Italian"],
    "Juan de la Cruz": ["Mexican"],              # Mexican -> Spanish, two particles
    "Hans Schmidt": ["German"],
    "Anna Schmidt": ["Austrian"],                # Austrian -> German: one pair, two people
    "Maria Schmidt": ["Italian", "French"],      # two labels: dropped
    "Paolo Rossi": ["American", "Italian"],      # American is dropped, Italian stays
    "Jean Martin": ["French"],
    "Carlos Martin": ["Colombian"],              # Martin: French and Spanish, two rows
    "Abraham Lincoln": ["American"],             # dropped nationality
    "Anne Murray": ["Canadian"],
    "Xi Jinping": ["Chinese"],                   # family first
    "Xi Zhongxun": ["Chinese"],
    "Mao Zedong": ["Chinese"],                   # a family name of one person: dropped
    "Kim Jong-un": ["Korean"],
    "Kim Il-sung": ["Korean"],
    "Dasol Kim": ["Korean"],                     # Western order, found by the vote below
    "Kim Dae-jung": ["Korean"], "Kim Yuna": ["Korean"], "Kim Yo-jong": ["Korean"], "Kim Ki-duk": ["Korean"],
    "Kim Hye-soo": ["Korean"], "Kim Soo-hyun": ["Korean"],     # 8 names open with Kim: enough to outvote Dasol
    "Nguyễn Văn Thiệu": ["Vietnamese"],          # family first, folded
    "Janet Nguyen": ["Vietnamese"],
    "Nguyễn Du": ["Vietnamese"], "Nguyễn Trãi": ["Vietnamese"], "Nguyễn Ái Quốc": ["Vietnamese"],
    "Nguyễn Tấn Dũng": ["Vietnamese"], "Nguyễn Huệ": ["Vietnamese"], "Nguyễn Văn Linh": ["Vietnamese"],
    "Nguyễn Phú Trọng": ["Vietnamese"],
    "Andrei Tarkovsky": ["Russian"],             # Tarkovsky is in the reserved slice
    "Fyodor Dostoevsky": ["Russian"],
    "Aristotle": ["Greek"],                      # one word: no surname
    "Louis XIV": ["French"],                     # regnal number
    "Isaac of Troki": ["Lithuanian"],            # epithet
    "Enver Pasha": ["Albanian"],                 # honorific
    "Sir Edward Crofton, 3rd Baronet": ["Irish"],  # title and what follows the comma dropped
    "John Q": ["English"],                       # one letter
    "Mary Abcdefghijklmnopqrstuvwxyzabcdefghijklmnopq": ["English"],  # absurdly long
    "Zorg Blip": ["Martian"],                    # not in the mapping
    "Zoltán Kodály": ["Hungarian"],              # given first in English Wikipedia
    "Akira Kurosawa": ["Japanese"],
}


def by_label(corpus) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for name, label, _ in corpus.rows:
        out.setdefault(label, set()).add(name)
    return out


def test_the_builder_on_hand_made_people() -> None:
    corpus = build_corpus(PEOPLE)
    labels = by_label(corpus)
    assert labels["German"] == {"van Beethoven", "Schmidt"}
    assert labels["Italian"] == {"da Vinci", "Rossi"}
    assert labels["Spanish"] == {"de la Cruz", "Martin"}
    assert labels["French"] == {"Martin"}                       # multi-labelled: a row per label
    assert labels["Chinese"] == {"Xi"}                          # Mao: one person only
    assert labels["Korean"] == {"Kim"}                          # Dasol Kim voted to Kim
    assert labels["Vietnamese"] == {"Nguyen"}                   # folded; Janet Nguyen voted
    assert labels["Russian"] == {"Dostoevsky"}                  # Tarkovsky reserved
    assert labels["Irish"] == {"Crofton"}
    assert labels["Hungarian"] == {"Kodaly"} and labels["Japanese"] == {"Kurosawa"}
    assert "English" not in labels and "Albanian" not in labels and "Lithuanian" not in labels
    assert "Greek" not in labels
    counts = {(name, label): n for name, label, n in corpus.rows}
    assert counts["Schmidt", "German"] == 2 and counts["Kim", "Korean"] == 9 and counts["Nguyen", "Vietnamese"] == 9
    assert corpus.multi_labelled == 1
    assert corpus.unmapped == {"Martian": 1}
    assert corpus.dropped["several labels"] == 1                       # Maria Schmidt
    assert corpus.dropped["no kept nationality"] == 3                  # Lincoln, Murray, Zorg Blip
    assert corpus.dropped["no surname in the name"] == 4               # Aristotle, XIV, of, Pasha
    assert corpus.dropped["surname too short or too long"] == 2
    assert corpus.dropped["family name of too few people"] == 1        # Mao
    assert corpus.reserved_surnames == 1 and corpus.reserved_people == 1
    assert corpus.family_name_moved == 2                               # Dasol Kim, Janet Nguyen
    assert corpus.kept_people == sum(counts.values()) == 32


def test_the_people_builder_on_hand_made_people() -> None:
    built = build_people(PEOPLE)
    rows = {(name, nat): (given, surname, language) for name, given, surname, language, nat in built.rows}
    assert rows["Ludwig van Beethoven", "German"] == ("Ludwig", "van Beethoven", "German")
    assert rows["Juan de la Cruz", "Mexican"] == ("Juan", "de la Cruz", "Spanish")
    assert rows["Sir Edward Crofton, 3rd Baronet", "Irish"] == ("Edward", "Crofton", "Irish")  # title, comma cut
    assert rows["Zoltán Kodály", "Hungarian"] == ("Zoltán", "Kodály", "Hungarian")           # as written
    # one row per (name, nationality), each with its own nationality's label
    assert rows["Paolo Rossi", "American"] == ("Paolo", "Rossi", "") and rows["Paolo Rossi", "Italian"][2] == "Italian"
    assert rows["Maria Schmidt", "Italian"][2] == "Italian" and rows["Maria Schmidt", "French"][2] == "French"
    assert rows["Abraham Lincoln", "American"] == ("Abraham", "Lincoln", "")
    assert rows["Zorg Blip", "Martian"] == ("Zorg", "Blip", "") and built.unmapped == {"Martian": 1}
    # family first, the vote, and a baptismal or Western given name
    assert rows["Kim Jong-un", "Korean"] == ("Jong-un", "Kim", "Korean")
    assert rows["Dasol Kim", "Korean"] == ("Dasol", "Kim", "Korean")
    assert rows["Nguyễn Văn Thiệu", "Vietnamese"] == ("Văn Thiệu", "Nguyễn", "Vietnamese")
    assert rows["Janet Nguyen", "Vietnamese"] == ("Janet", "Nguyen", "Vietnamese")
    assert built.family_name_moved == 2
    # what is left out, and why
    names = {name for name, _ in rows}
    assert not {"Andrei Tarkovsky", "Mao Zedong", "Aristotle", "Louis XIV", "John Q"} & names
    assert built.reserved_surnames == 1 and built.reserved_people == 1
    assert built.dropped == {"no surname in the name": 4, "surname too short or too long": 2,
                             "family name of too few people": 1, "reserved surname": 1}
    assert built.pairs == sum(len(v) for v in PEOPLE.values()) == len(built.rows) + sum(built.dropped.values())
    assert len(built.rows) == 38 and built.with_language == 34 and built.names == len(PEOPLE)
    # the surname corpus's pairs are the people's, the people with several labels added
    people_pairs = {(to_ascii(surname).lower(), language) for _, _, surname, language, _ in built.rows if language}
    corpus_pairs = {(name.lower(), label) for name, label, _ in build_corpus(PEOPLE).rows}
    assert corpus_pairs <= people_pairs  # Maria Schmidt, two people, two labels: dropped there
    assert people_pairs - corpus_pairs == {("schmidt", "Italian"), ("schmidt", "French")}


@pytest.mark.parametrize(("name", "parts"), [
    ("Fyodor Mikhailovich Dostoevsky", ("Fyodor Mikhailovich", "Dostoevsky")),
    ("Ludwig van Beethoven", ("Ludwig", "van Beethoven")),
    ("Jim \"Mad Dog\" Smith", ("Jim", "Smith")),                  # the nickname is no given name
    ("Dr. Martin Luther King, Jr.", ("Martin Luther", "King")),
    ("Empress Zheng", None), ("Aristotle", None), ("Louis XIV", None),
])
def test_given_names_and_surname_of_a_given_first_name(name: str, parts: tuple[str, str] | None) -> None:
    assert parts_given_first(name) == parts
    assert surname_given_first(name) == (parts[1] if parts else None)


def test_the_family_name_pick() -> None:
    opens = {"wang": 40, "li": 30, "elvis": 1, "lee": 20, "paul": 1, "le": 12}
    given = {"elvis": 84, "tina": 193, "john": 19034, "lee": 905, "lew": 120}
    assert pick_family_name(["Wang", "Xiaoming"], opens, given) == "Wang"
    assert pick_family_name(["Elvis", "Wang"], opens, given) == "Wang"          # the vote
    assert pick_family_name(["Paul", "Lê", "Đắc", "Trọng"], opens, given) == "Lê"
    assert pick_family_name(["Tina", "Leung"], opens, given) == "Leung"         # a given name elsewhere
    assert pick_family_name(["Matthew", "Kia", "Yen-wen"], opens, given | {"matthew": 1229}) == "Kia"
    assert pick_family_name(["Lew", "Mon-hung"], opens, given) == "Lew"         # hyphenated: a given name
    assert pick_family_name(["Kuo-Nan", "Liou"], opens, given) == "Liou"        # given name written first
    assert pick_family_name(["Lee", "Teng-hui"], opens, given) == "Lee"         # Lee opens 20 names here
    assert pick_family_name(["Li", "Wang"], opens, given) == "Li"               # 40 < 4 * (30 + 1)


@pytest.mark.parametrize("name", [
    "Ludwig van Beethoven", "Jan van der Berg", "Robert De Niro", "Ali ibn Maymun", "Thor O. Hannevig",
    "Gopal Hari Deshmukh", "Charles de Gaulle", "Juan de la Cruz", "Sir Edward Crofton", "Martin Luther King, Jr.",
    "Dean Martin", "Mohamed Ben Attia", "José de Moraleda y Montero", "Jim \"Mad Dog\" Smith", "Seán Ó Briain",
])
def test_the_fast_path_answers_what_nameparser_answers(name: str) -> None:
    head = name.split(",")[0]
    parsed = parse_name(head)
    assert surname_given_first(name) == (parsed.surname if parsed.parsed and parsed.given else None)


def test_the_mapping_file() -> None:
    mapping = load_mapping()
    assert len(mapping) == 176
    labels = {entry.label for entry in mapping.values()}
    assert {"Arabic", "Chinese", "Czech", "Dutch", "English", "French", "German", "Greek", "Irish", "Italian",
            "Japanese", "Korean", "Portuguese", "Russian", "Spanish", "Vietnamese", "drop"} <= labels
    assert not {"Polish", "Scottish"} & labels  # name2nat has no Polish or Scottish people (docs/corpora.md)
    family_first = {n for n, entry in mapping.items() if entry.order == "family_first" and entry.label != "drop"}
    assert family_first == {"Chinese", "Taiwanese", "Korean", "Vietnamese"}
    assert all(len(entry.why) > 10 for entry in mapping.values())
    assert mapping["Austrian"].label == "German" and mapping["American"].label == "drop"


@pytest.mark.parametrize(("text", "message"), [
    ("nationality,label,order\nGerman,German,given_first\n", "expected the columns"),
    ("nationality,label,order,why\nGerman,German,sideways,x\n", "line 2: order 'sideways'"),
    ("nationality,label,order,why\nGerman,German,given_first,x\nGerman,German,given_first,y\n", "listed twice"),
    ("nationality,label,order,why\nA,Chinese,given_first,x\nB,Chinese,family_first,y\n", "both given_first and"),
    ("nationality,label,order,why\nGerman,German,given_first,\n", "every column needs a value"),
])
def test_a_bad_mapping_is_refused(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "map.csv"
    path.write_text(text)
    with pytest.raises(DataError, match=message):
        load_mapping(path)


# ----------------------------------------------------------------------------- the reserved slice


def test_the_builder_drops_exactly_the_reserved_slice() -> None:
    alphabet = "abcdefghijklmnopqrstuvwxyz"
    surnames = []
    for i in range(3000):
        letters = alphabet[i % 26] + alphabet[(i // 26) % 26] + alphabet[(i // 676) % 26]
        surnames.append(f"Ber{letters}ová" if i % 3 == 0 else f"Ber{letters}ski")
    people = {f"Jan {surname}": ["Czech"] for surname in surnames}
    corpus = build_corpus(people)
    written = {name for name, _, _ in corpus.rows}

    def reserved(surname: str) -> bool:  # the definition, written out independently of the module
        return hashlib.sha256(to_ascii(surname).lower().encode()).hexdigest().startswith("f")

    held = {to_ascii(s) for s in surnames if reserved(s)}
    assert written == {to_ascii(s) for s in surnames} - held
    assert not any(reserved(name) for name in written)
    assert corpus.reserved_surnames == len(held) and 3000 / 16 * 0.75 < len(held) < 3000 / 16 * 1.25
    assert all(is_reserved(s) == reserved(s) for s in surnames)


# ----------------------------------------------------------------------------- the command line


def test_fetch_from_a_local_pickle_and_wheel(tmp_path: Path) -> None:
    data = pickle.dumps(PEOPLE)
    sources = [tmp_path / "name2nats.pkl", write_wheel(tmp_path / "name2nat-0.5.1-py3-none-any.whl", data)]
    sources[0].write_bytes(data)
    for source in sources:
        dest = tmp_path / f"{source.suffix[1:]}.csv"
        result = run("data", "fetch", "wikipedia", "--from", str(source), "--dest", str(dest), "--no-verify")
        assert result.exit_code == 0, result.output
        assert "read (not verified)" in result.output and "pairs in 11 languages" in result.output
        assert dest.read_text().splitlines()[0] == "name,language,count"
        loaded = load_names(dest)
        assert len(loaded.frame) == 14 and "Martin" in set(loaded.frame["name"])
        assert not list(tmp_path.glob(".*.tmp"))  # written atomically: no temp file left behind
        stats = run("data", "stats", str(dest), "--json")
        assert stats.exit_code == 0, stats.output


def test_fetch_full_names_from_a_local_pickle(tmp_path: Path) -> None:
    source = tmp_path / "name2nats.pkl"
    source.write_bytes(pickle.dumps(PEOPLE))
    dest = tmp_path / "people.csv"
    args = ["data", "fetch", "wikipedia", "--full-names", "--from", str(source), "--dest", str(dest), "--no-verify"]
    result = run(*args)
    assert result.exit_code == 0, result.output
    assert "wrote 38 people (34 with an origin label) of 46 (name, nationality) pairs" in result.output
    assert "held out 1 reserved surnames (1 people)" in result.output
    lines = dest.read_text("utf-8").splitlines()
    assert lines[0] == ",".join(PEOPLE_COLUMNS) == "name,given,surname,language,nationality"
    assert "Nguyễn Văn Thiệu,Văn Thiệu,Nguyễn,Vietnamese,Vietnamese" in lines and len(lines) == 39
    assert '"Sir Edward Crofton, 3rd Baronet",Edward,Crofton,Irish,Irish' in lines
    assert not list(tmp_path.glob(".*.tmp"))
    assert_one_line_error(run(*args), "--force")  # not overwritten without --force
    assert run(*args, "--force").exit_code == 0
    assert_one_line_error(run("data", "fetch", "names", "--full-names", "--dest", str(tmp_path / "n")),
                          "--full-names goes with the wikipedia corpus")
    assert "data/wikipedia_people.csv" in run("data", "fetch", "--help").output


def test_fetch_keeps_the_names_default_and_checks_dest(tmp_path: Path, tiny_dir: Path) -> None:
    fetch = cli.commands["data"].commands["fetch"]
    corpus = next(p for p in fetch.params if p.name == "corpus")
    assert corpus.default == "names" and not corpus.required
    result = run("data", "fetch", "--from", str(tiny_dir), "--dest", str(tmp_path / "x"), "--no-verify")
    assert result.exit_code == 0 and len(list((tmp_path / "x").glob("*.txt"))) == 3
    assert_one_line_error(run("data", "fetch", "wikipedia", "--from", str(tiny_dir / "Italian.txt"),
                              "--dest", str(tmp_path / "x")), "is a folder")
    (tmp_path / "f").write_text("")
    assert_one_line_error(run("data", "fetch", "--from", str(tiny_dir), "--dest", str(tmp_path / "f")),
                          "is a file")
    help_text = run("data", "fetch", "--help").output
    assert "[names|wikipedia]" in help_text and "data/wikipedia.csv" in help_text


def test_a_hostile_pickle_through_the_command_line(tmp_path: Path) -> None:
    target = tmp_path / "pwned"
    source = tmp_path / "name2nats.pkl"
    source.write_bytes(pickle.dumps({"Andrei Tarkovsky": [Payload(os.system, f"touch {target}")]}))
    result = run("data", "fetch", "wikipedia", "--from", str(source), "--dest", str(tmp_path / "w.csv"),
                 "--no-verify")
    assert_one_line_error(result, "refused")
    assert not target.exists() and not (tmp_path / "w.csv").exists()


# ----------------------------------------------------------------------------- the real wheel


@pytest.fixture(scope="module")
def real_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """name2nat 0.5.1 from PyPI (or $NAMES_NAME2NAT_WHEEL); skipped, with the reason, when offline."""
    local = os.environ.get("NAMES_NAME2NAT_WHEEL")
    if local:
        return Path(local)
    try:
        return name2nat.pip_download(tmp_path_factory.mktemp("name2nat"))
    except DataError as exc:
        pytest.skip(f"cannot fetch the name2nat wheel: {exc}")


@pytest.fixture(scope="module")
def real_people(real_wheel: Path) -> dict[str, list[str]]:
    """The real wheel's people, read once for both tests (the unpickling alone takes seconds)."""
    assert hashlib.sha256(real_wheel.read_bytes()).hexdigest() == name2nat.WHEEL_SHA256
    people, where = read_people(real_wheel)
    assert where.verified
    return people


def _in_sample(name: str, every: int) -> bool:
    return zlib.crc32(name.encode()) % every == 0  # deterministic, and independent of the reserved hash


@pytest.mark.slow
def test_the_real_wheel(real_people: dict[str, list[str]], tmp_path: Path) -> None:
    """The pickle's shape, every nationality mapped, and the corpus built from a deterministic
    eighth of the people (the full build is `names data fetch wikipedia`, about half a minute)."""
    assert len(real_people) == 1_074_617
    nationalities = {n for values in real_people.values() for n in values}
    assert len(nationalities) == 176 and nationalities == set(load_mapping())
    assert real_people["Andrei Tarkovsky"] == ["Russian"]
    corpus = build_corpus({name: values for name, values in real_people.items() if _in_sample(name, 8)})
    assert not corpus.unmapped
    dest = wikipedia.write_corpus(corpus, tmp_path / "wikipedia.csv")
    loaded = load_names(dest)
    assert set(loaded.frame["language"]) == set(corpus.per_label) and len(corpus.per_label) == 34
    assert not any(is_reserved(name) for name in loaded.frame["name"])
    per_label = corpus.per_label
    assert per_label["English"] > 5000 and per_label["Spanish"] > 1500 and per_label["Korean"] > 20
    assert {"Kim", "Lee", "Park"} <= {name for name, label, _ in corpus.rows if label == "Korean"}
    # the full-name form of the same people: every pair kept, dropped or held out, and the surname
    # corpus's (surname, label) pairs all among the people's
    built = build_people({name: values for name, values in real_people.items() if _in_sample(name, 8)})
    assert built.pairs == len(built.rows) + sum(built.dropped.values()) and not built.unmapped
    assert not any(is_reserved(surname) for _, _, surname, _, _ in built.rows)
    assert {row[4] for row in built.rows} <= nationalities and len({row[3] for row in built.rows}) == 35
    people_pairs = {(to_ascii(surname).lower(), language) for _, _, surname, language, _ in built.rows if language}
    assert {(name.lower(), label) for name, label, _ in corpus.rows} <= people_pairs
    assert 0.9 < len(built.rows) / built.pairs < 0.95 and all(row[1] and row[2] for row in built.rows)
    # and it trains: a stratified sample of at most 300 pairs per language, two short epochs
    from namesclf.config import TrainConfig
    from namesclf.training.pipeline import train_and_evaluate

    sample = loaded.frame.groupby("language", group_keys=False)[["name", "language"]].apply(
        lambda g: g.sample(min(len(g), 300), random_state=0))
    sample.to_csv(tmp_path / "sample.csv", index=False)
    run = train_and_evaluate(load_names(tmp_path / "sample.csv"), TrainConfig(epochs=2, hidden=32, device="cpu"),
                             out=tmp_path / "m.pt", progress=False)
    assert run.test["n"] > 500 and run.test["balanced_accuracy"] > 0.25, run.test  # chance: 1/34
    # and the full-name model trains on the real people too, its given names worth points over the
    # surname alone on test people whose surnames it never saw
    from namesclf.training.fullname import people_scores, split_people, train_people

    frame = pd.DataFrame(built.rows, columns=list(PEOPLE_COLUMNS))
    frame = frame[frame["language"] != ""]
    people = frame.sample(frac=1.0, random_state=0).groupby("language").head(400)
    full = train_people(people.reset_index(drop=True), TrainConfig(ngram_order=4, device="cpu"), source="sample",
                        label_column="language", progress=False)
    test = people.reset_index(drop=True)[split_people(people.reset_index(drop=True), 0) == "test"]
    bare = people_scores(full.result.predictor(), test, surname_only=True)
    assert full.test["n"] > 700 and full.test["balanced_accuracy"] > 0.3, full.test
    assert full.test["accuracy"] > bare["accuracy"] + 0.05, (full.test, bare)


@pytest.mark.slow
def test_the_command_line_on_a_copy_of_the_real_wheel(real_people: dict[str, list[str]], tmp_path: Path) -> None:
    """`names data fetch wikipedia --from` a wheel, in a real process, on a 1/200 sample of the real
    people: the sums check refuses the copy, --no-verify builds it."""
    small = {name: values for name, values in real_people.items() if _in_sample(name, 200)}
    copy = write_wheel(tmp_path / "small.whl", pickle.dumps(small))
    dest = tmp_path / "w.csv"
    command = [sys.executable, "-m", "namesclf", "data", "fetch", "wikipedia", "--from", str(copy), "--dest", str(dest)]
    refused = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert refused.returncode == 1 and "SHA-256 mismatch" in refused.stderr and not dest.exists()
    done = subprocess.run([*command, "--no-verify"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"of {len(small):,} people to {dest}" in done.stdout
    assert len(load_names(dest).frame) > 1000
    people = tmp_path / "people.csv"
    done = subprocess.run([*command[:-2], "--dest", str(people), "--no-verify", "--full-names"], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"of {sum(len(v) for v in small.values()):,} (name, nationality) pairs to {people}" in done.stdout
    with people.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) > 4000 and not any(is_reserved(row["surname"]) for row in rows)

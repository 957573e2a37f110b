"""Full names -> surname (namesclf.data.fullnames, on top of nameparser)."""

from __future__ import annotations

import random
import re
import subprocess
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from namesclf.data import fullnames
from namesclf.data.fullnames import MAX_RAW_LENGTH, ParsedName, parse_name, surname_of

# (input, surname, given)
FULL_NAMES = [
    ("Fyodor Dostoevsky", "Dostoevsky", "Fyodor"),
    ("Dostoevsky, Fyodor", "Dostoevsky", "Fyodor"),
    ("Jan van der Berg", "van der Berg", "Jan"),
    ("van der Berg, Jan", "van der Berg", "Jan"),
    ("Martin Luther King Jr.", "King", "Martin Luther"),
    ("Seán Ó Briain", "Ó Briain", "Seán"),
    ("Seán Ó Briain Jr.", "Ó Briain", "Seán"),
    ("Máire Ní Bhriain", "Ní Bhriain", "Máire"),
    ("Dr. Maria de la Cruz", "de la Cruz", "Maria"),
    ("Ludwig van Beethoven", "van Beethoven", "Ludwig"),
    ("Johann Wolfgang von Goethe", "von Goethe", "Johann Wolfgang"),
    ("Leonardo da Vinci", "da Vinci", "Leonardo"),
    ("Hendrik ter Braak", "ter Braak", "Hendrik"),
    ("Ian Mac Donald", "Mac Donald", "Ian"),
    ("John O'Brien", "O'Brien", "John"),
    ("Mary McDonald", "McDonald", "Mary"),
    ("Prof. John Smith PhD", "Smith", "John"),
    ("Mr. John Smith III", "Smith", "John"),
    ("Smith, John, Jr.", "Smith", "John"),
    ("Dr. Van der Berg", "Van der Berg", ""),
    ("Al Pacino", "Pacino", "Al"),  # a particle that is also a given name
    ("Ben Stiller", "Stiller", "Ben"),
    ("Jan  van\tder\u00a0Berg", "van der Berg", "Jan"),  # odd whitespace
]

# a surname given alone comes back whole, without nameparser taking a word of it for a given name
ALONE = [
    ("Nakamura", "Nakamura"),
    ("O'Brien", "O'Brien"),
    ("Dostoevsky", "Dostoevsky"),
    ("De la Fuente", "De la Fuente"),
    ("Van der Berg", "Van der Berg"),
    ("O Briain", "O Briain"),
    ("Ó Briain", "Ó Briain"),
    ("St martin", "St martin"),
    ("  Smith  ", "Smith"),
    ("", ""),
    ("   ", ""),
]

GIVEN_NAMES = ["John", "Maria", "Ahmed", "Wei", "Olga", "Hans", "Yuki", "Pierre", "Anna", "José", "Sean", "Fatima"]


@pytest.mark.parametrize(("text", "surname", "given_names"), FULL_NAMES)
def test_full_names(text: str, surname: str, given_names: str) -> None:
    assert parse_name(text) == ParsedName(text, surname, given_names, True)
    assert surname_of(text) == surname


@pytest.mark.parametrize(("text", "surname"), ALONE)
def test_a_surname_alone_is_kept_whole(text: str, surname: str) -> None:
    assert parse_name(text) == ParsedName(text, surname, "", False)


def test_one_word_never_reaches_nameparser(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fast path: millions of one-word names must not pay for a nameparser call."""
    calls: list[str] = []
    monkeypatch.setattr(fullnames, "_human_name", calls.append)  # (parse_name would catch a raise)
    for text in ["Nakamura", "  O'Brien\n", "Ślusàrski", "x" * 5000]:
        assert surname_of(text) == text.strip()[:MAX_RAW_LENGTH]
        assert parse_name(text) == ParsedName(text, text.strip()[:MAX_RAW_LENGTH], "", False)
    assert calls == []


def test_nameparser_failing_falls_back_to_the_text(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(text: str) -> None:
        raise ValueError("boom")

    monkeypatch.setattr(fullnames, "_human_name", broken)
    assert parse_name("  Fyodor   Dostoevsky ") == ParsedName("  Fyodor   Dostoevsky ", "Fyodor Dostoevsky", "", False)


def test_nothing_nameparser_can_use_falls_back_to_the_text() -> None:
    assert surname_of(",") == ","
    assert surname_of("Smith,") == "Smith"
    assert surname_of("Smith Jr.") == "Smith"


def test_a_surname_nameparser_takes_for_a_suffix() -> None:
    """nameparser 2.x reads "Anna Ii" (a Japanese surname) as given name + suffix."""
    assert parse_name("Anna Ii") == ParsedName("Anna Ii", "Ii", "Anna", True)
    assert surname_of("Smith II") == "Smith"


def test_import_is_cheap() -> None:
    code = "import sys, namesclf.data.fullnames; print(sorted(m for m in ('nameparser', 'torch') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_shared_nameparser_settings_are_left_alone() -> None:
    from nameparser.config import CONSTANTS

    before = (set(CONSTANTS.prefixes), set(CONSTANTS.titles), set(CONSTANTS.suffix_acronyms))
    for text, _, _ in FULL_NAMES:
        parse_name(text)
    assert (set(CONSTANTS.prefixes), set(CONSTANTS.titles), set(CONSTANTS.suffix_acronyms)) == before
    assert fullnames._constants() is not CONSTANTS


def test_changes_to_shared_nameparser_settings_do_not_reach_us() -> None:
    """Other code customising nameparser's shared CONSTANTS must not change our answers."""
    from nameparser import HumanName
    from nameparser.config import CONSTANTS

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # nameparser 2.x deprecates shared mutation
        CONSTANTS.prefixes.add("luther")
        try:
            assert HumanName("Martin Luther King").last == "Luther King"  # the change is live...
            assert surname_of("Martin Luther King") == "King"  # ...but not here
        finally:
            CONSTANTS.prefixes.remove("luther")


def test_words_nameparser_invents_are_never_returned(monkeypatch: pytest.MonkeyPatch) -> None:
    invented = SimpleNamespace(first="Jan", middle="", last="Invented", suffix="", title="")
    monkeypatch.setattr(fullnames, "_human_name", lambda text: invented)
    assert parse_name("Jan van der Berg") == ParsedName("Jan van der Berg", "Jan van der Berg", "", False)


@pytest.mark.parametrize("unit", ["Jan van der Berg ", "x", "Dr. ", ", ", "van "])
def test_huge_input_is_capped(unit: str, monkeypatch: pytest.MonkeyPatch) -> None:
    text = (unit * 100_000)[:100_000]
    seen: list[int] = []  # what the time rests on: nameparser never reads more than the cap
    human_name = fullnames._human_name
    monkeypatch.setattr(fullnames, "_human_name", lambda given: seen.append(len(given)) or human_name(given))
    result = parse_name(text)
    assert all(n <= MAX_RAW_LENGTH for n in seen), seen
    assert result.text == text
    assert len(result.surname) <= MAX_RAW_LENGTH
    assert result.surname in " ".join(text[:MAX_RAW_LENGTH].split())


def _made_of_input(surname: str, text: str) -> bool:
    """A substring of the capped, whitespace-normalised input; a "Last, First" name may be reordered
    ("Berg, Jan van der" -> "van der Berg"), and then every word must be one of the input's."""
    normalised = " ".join(text[:MAX_RAW_LENGTH].split())
    if surname in normalised:
        return True
    words = re.split(r"[\s,]+", normalised)
    return "," in normalised and all(word in words for word in surname.split())


NAME_PIECES = ["Jan", "van", "der", "de", "la", "Berg", "Ó", "O", "Dr.", "Jr.", "III", "PhD", "Mc", "Al", "Ii", "Smith"]
PUNCTUATION = [",", "'", '"', "(", ")", "&", "and", "y", "-", "."]
name_words = st.sampled_from(NAME_PIECES + PUNCTUATION)


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(max_size=60), st.lists(name_words, max_size=8).map(" ".join)))
def test_never_raises_and_never_invents_text(text: str) -> None:
    result = parse_name(text)
    assert result == parse_name(text)  # deterministic
    assert surname_of(text) == result.surname
    assert result.text == text
    assert result.surname == "" or _made_of_input(result.surname, text)
    assert result.surname == result.surname.strip()


def test_reordered_last_first() -> None:
    """Dutch sorting form: the particles after the given name go back in front of the surname."""
    assert parse_name("Berg, Jan van der") == ParsedName("Berg, Jan van der", "van der Berg", "Jan", True)
    assert parse_name("Smith, Van") == ParsedName("Smith, Van", "Smith", "Van", True)


def test_surnames_from_the_data_set(real_data: Path) -> None:
    """Given name + a real surname (particles and all): the surname comes back exactly."""
    surnames = sorted(
        {" ".join(line.split()) for path in real_data.glob("*.txt") for line in path.read_text("utf-8").splitlines()}
        - {""}
    )
    surnames = [s for s in surnames if s != "To The First Page"]  # scraping debris in Russian.txt
    multi = [s for s in surnames if " " in s]  # the rare multi-word ones, all of them
    single = [s for s in surnames if " " not in s]
    sample = multi + random.Random(0).sample(single, min(400, len(single)))
    failures = []
    for i, surname in enumerate(sample):
        text = f"{GIVEN_NAMES[i % len(GIVEN_NAMES)]} {surname}"
        if (got := surname_of(text)) != surname:
            failures.append(f"{text!r} -> {got!r}")
    assert len(failures) <= 0.01 * len(sample), f"{len(failures)}/{len(sample)} wrong: {failures}"

"""The Wikipedia surname corpus: a million people's full names and nationalities, cut to surnames
and mapped to the language the surname comes from.

The source is ``name2nat/name2nats.pkl`` in the ``name2nat`` 0.5.1 wheel (Apache-2.0; the names
come from English Wikipedia's people, CC BY-SA): a dict of full name -> nationalities, e.g.
``'Andrei Tarkovsky': ['Russian']``. Three things stand between that file and a training set:

* **Safety.** It is a pickle: :mod:`namesclf.data.name2nat` reads it without running any code.
* **Nationality is not origin.** An American's surname may be Italian, Polish or Korean. The
  committed table ``nationalities.csv`` maps every nationality in the data to an origin label, or
  to ``drop`` where its surnames are of every origin; its ``why`` column says why, row by row.
* **A full name is not a surname.** :func:`namesclf.data.fullnames.parse_name` picks the surname out of
  a given-first name (particles kept, titles and suffixes dropped); for nationalities that write
  the family name first (``order`` = ``family_first``: Chinese, Korean, Vietnamese) the surname is
  the first word, unless the name is in Western order or has a baptismal name in front (``Elvis
  Wang``, ``Tina Leung``, ``Paul Lê Đắc Trọng``), which counts of first words tell
  (:func:`~namesclf.data.surname_rules.pick_family_name`).

Every surname whose folded, lower-cased form hashes (SHA-256) to a hex digest starting with
:data:`RESERVED_PREFIX` is left out of the corpus altogether: that sixteenth is held back for an
independent evaluation that nothing has trained, tuned or been tested on (:func:`is_reserved`).
"""

from __future__ import annotations

import csv
import io
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import IO, Any, TypeVar

from namesclf.data.name2nat import Source, read_people
from namesclf.data.surname_rules import (
    FAMILY_MIN_PEOPLE,
    family_first_words,
    first_word_key,
    fold_surname,
    pick_family_name,
    reserved_key,
    surname_given_first,
)
from namesclf.errors import DataError
from namesclf.files import atomic_write_with

DEFAULT_DEST = "data/wikipedia.csv"

DROP = "drop"
ORDERS = ("given_first", "family_first")
MAPPING_COLUMNS = ("nationality", "label", "order", "why")

# ----------------------------------------------------------------------------- the mapping


@dataclass(frozen=True, slots=True)
class Nationality:
    """One row of ``nationalities.csv``."""

    nationality: str
    label: str
    """An origin label, or :data:`DROP`."""
    order: str
    """``given_first`` or ``family_first``: how English Wikipedia writes these people's names."""
    why: str


def load_mapping(path: str | Path | None = None) -> dict[str, Nationality]:
    """Nationality -> :class:`Nationality`, from ``path`` or the packaged ``nationalities.csv``.

    Checked: the four columns, a label and a reason on every row, known orders, no nationality
    twice, and one order per label (the family-first vote counts per label).
    """
    origin = str(path) if path else "namesclf/data/nationalities.csv"
    if path:
        text = Path(path).read_text("utf-8")
    else:
        text = resources.files("namesclf.data").joinpath("nationalities.csv").read_text("utf-8")
    reader = csv.DictReader(io.StringIO(text))
    if tuple(reader.fieldnames or ()) != MAPPING_COLUMNS:
        raise DataError(f"{origin}: expected the columns {','.join(MAPPING_COLUMNS)}")
    mapping: dict[str, Nationality] = {}
    orders: dict[str, str] = {}
    for line, row in enumerate(reader, start=2):
        values = {k: (row.get(k) or "").strip() for k in MAPPING_COLUMNS}
        entry = Nationality(**values)
        if not all(values.values()):
            raise DataError(f"{origin}: line {line}: every column needs a value")
        if entry.order not in ORDERS:
            raise DataError(f"{origin}: line {line}: order {entry.order!r} is not one of {', '.join(ORDERS)}")
        if entry.nationality in mapping:
            raise DataError(f"{origin}: line {line}: {entry.nationality} is listed twice")
        if entry.label != DROP and orders.setdefault(entry.label, entry.order) != entry.order:
            raise DataError(f"{origin}: line {line}: {entry.label} is both given_first and family_first")
        mapping[entry.nationality] = entry
    return mapping


# ----------------------------------------------------------------------------- the corpus


Built = TypeVar("Built", bound="BuildRecord")


@dataclass(kw_only=True)
class BuildRecord:
    """What building a Wikipedia corpus left out and changed, for its summary line (both corpora)."""

    dropped: dict[str, int] = field(default_factory=dict)
    """Left out, per reason."""
    unmapped: dict[str, int] = field(default_factory=dict)
    """Nationalities the mapping does not list (their people are dropped), with people counts."""
    reserved_surnames: int = 0
    reserved_people: int = 0
    family_name_moved: int = 0
    """Family-first names whose family name was not the first word (``Elvis Wang``)."""
    seconds: float = 0.0


@dataclass
class Corpus(BuildRecord):
    """The built corpus and what building it dropped, per reason (counted in people)."""

    rows: list[tuple[str, str, int]]
    """(folded surname, label, people), one row per distinct (lower-cased surname, label)."""
    people: int
    kept_people: int

    @property
    def per_label(self) -> dict[str, int]:
        """Label -> distinct surnames."""
        return dict(sorted(Counter(label for _, label, _ in self.rows).items()))

    @property
    def multi_labelled(self) -> int:
        """Distinct surnames (lower-cased) listed under more than one label."""
        labels = Counter(name.lower() for name, _, _ in self.rows)
        return sum(1 for n in labels.values() if n > 1)

    def summary(self) -> dict[str, Any]:
        """JSON-ready figures."""
        return {"people": self.people, "kept_people": self.kept_people, "pairs": len(self.rows),
                "labels": len(self.per_label), "per_label": self.per_label, "multi_labelled": self.multi_labelled,
                "reserved_surnames": self.reserved_surnames, "reserved_people": self.reserved_people,
                "family_name_moved": self.family_name_moved, "dropped": dict(sorted(self.dropped.items())),
                "unmapped": dict(sorted(self.unmapped.items())), "seconds": round(self.seconds, 2)}


def _label_of(nationalities: Iterable[str], mapping: Mapping[str, Nationality],
              unmapped: Counter[str]) -> tuple[str | None, str]:
    """(the one kept label, '') or (None, the reason the person is dropped)."""
    labels = set()
    for nat in nationalities:
        entry = mapping.get(nat)
        if entry is None:
            unmapped[nat] += 1
        elif entry.label != DROP:
            labels.add(entry.label)
    if len(labels) == 1:
        return labels.pop(), ""
    return None, "several labels" if labels else "no kept nationality"


@dataclass
class _Cut:
    """The first pass over the people: the surnames of given-first names, the family-first names
    still to vote on, the counts that vote, and who was dropped why."""

    found: list[tuple[str, str]] = field(default_factory=list)
    """(surname as written, label)."""
    family_first: list[tuple[list[str], str]] = field(default_factory=list)
    opens: defaultdict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    given: Counter[str] = field(default_factory=Counter)
    """First words of given-first people, kept or not: given names."""
    dropped: Counter[str] = field(default_factory=Counter)
    unmapped: Counter[str] = field(default_factory=Counter)


def _cut_people(people: Mapping[str, Iterable[str]], mapping: Mapping[str, Nationality],
                order: Mapping[str, str]) -> _Cut:
    """Label every person and take the surname of given-first names; family-first names wait for
    the counts of first words (:func:`~namesclf.data.surname_rules.pick_family_name`), which only the whole pass has."""
    cut = _Cut()
    family_first_nationalities = {nat for nat, entry in mapping.items() if entry.order == "family_first"}
    for full_name, nationalities in people.items():
        if " " in full_name.strip() and family_first_nationalities.isdisjoint(nationalities):
            cut.given[first_word_key(full_name)] += 1
        label, reason = _label_of(nationalities, mapping, cut.unmapped)
        if label is None:
            cut.dropped[reason] += 1
            continue
        if order[label] == "family_first":
            words = family_first_words(full_name)
            if words is None:
                cut.dropped["no surname in the name"] += 1
                continue
            cut.family_first.append((words, label))
            cut.opens[label][first_word_key(words[0])] += 1
            continue
        surname = surname_given_first(full_name)
        if surname is None:
            cut.dropped["no surname in the name"] += 1
        else:
            cut.found.append((surname, label))
    return cut


def _spellings(found: Iterable[tuple[str, str]], dropped: Counter[str]) -> dict[tuple[str, str], Counter[str]]:
    """(lower-cased folded surname, label) -> its folded spellings and their people."""
    spellings: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    folds: dict[str, str | None] = {}  # most surnames recur: fold each spelling once
    for surname, label in found:
        folded = folds[surname] if surname in folds else folds.setdefault(surname, fold_surname(surname))
        if folded is None:
            dropped["surname too short or too long"] += 1
            continue
        spellings[folded.lower(), label][folded] += 1
    return spellings


def _rows(spellings: Mapping[tuple[str, str], Counter[str]], order: Mapping[str, str],
          dropped: Counter[str]) -> tuple[list[tuple[str, str, int]], int, int]:
    """(the corpus rows, reserved surnames, their people): one row per (surname, label) in its
    commonest spelling, the reserved slice and too-rare family names left out."""
    reserved_keys = {key for key, _ in spellings if reserved_key(key)}
    rows = []
    reserved_people = 0
    for (key, label), counts in spellings.items():
        total = sum(counts.values())
        if key in reserved_keys:
            reserved_people += total
            continue
        if order[label] == "family_first" and total < FAMILY_MIN_PEOPLE:
            dropped["family name of too few people"] += total
            continue
        # commonest spelling first; ties go to the alphabetically first, so the output is deterministic
        written = min(counts.items(), key=lambda item: (-item[1], item[0]))[0]
        rows.append((written, label, total))
    rows.sort(key=lambda row: (row[1], row[0].lower(), row[0]))
    dropped["reserved surname"] = reserved_people
    return rows, len(reserved_keys), reserved_people


def build_corpus(people: Mapping[str, Iterable[str]], mapping: Mapping[str, Nationality] | None = None) -> Corpus:
    """Cut every person's full name to a surname and label it through ``mapping``.

    People are kept when their nationalities map to exactly one label (``drop`` rows and unknown
    nationalities aside): ``['American', 'Italian']`` is Italian, ``['Italian', 'French']`` is
    dropped. Surnames are folded (:func:`~namesclf.text.to_ascii`); (surname, label) pairs are
    counted once, written in their commonest spelling; a surname under several labels keeps a row
    for each. Reserved surnames (:func:`is_reserved`) are left out. Pure: no files, no network.
    """
    start = time.perf_counter()
    mapping = load_mapping() if mapping is None else mapping
    order = {entry.label: entry.order for entry in mapping.values() if entry.label != DROP}
    cut = _cut_people(people, mapping, order)
    moved = 0
    for words, label in cut.family_first:
        surname = pick_family_name(words, cut.opens[label], cut.given)
        moved += surname != words[0]
        cut.found.append((surname, label))
    rows, reserved_surnames, reserved_people = _rows(_spellings(cut.found, cut.dropped), order, cut.dropped)
    kept = sum(n for _, _, n in rows)
    return Corpus(rows, len(people), kept, dropped={k: v for k, v in cut.dropped.items() if v},
                  unmapped=dict(cut.unmapped), reserved_surnames=reserved_surnames, reserved_people=reserved_people,
                  family_name_moved=moved, seconds=time.perf_counter() - start)


def write_corpus(corpus: Corpus, dest: str | Path) -> Path:
    """Write ``name,language,count`` (what :func:`~namesclf.data.dataset.load_names` reads) atomically."""

    def write(handle: IO) -> None:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["name", "language", "count"])
        writer.writerows(corpus.rows)

    return atomic_write_with(dest, write, binary=False)


def fetch_wikipedia(source: str | Path | None, dest: str | Path = DEFAULT_DEST,
                    verify: bool = True) -> tuple[Corpus, Source]:
    """Read name2nat's people (``source``: see :func:`read_pickle_bytes`), build the corpus, write
    it to ``dest`` atomically, and return it with where it came from."""
    return build_from_wheel(source, dest, verify, build_corpus, write_corpus, "the Wikipedia corpus", DEFAULT_DEST)


def build_from_wheel(source: str | Path | None, dest: str | Path, verify: bool, build: Callable[[Any], Built],
                     write: Callable[[Built, Path], Path], what: str, example: str) -> tuple[Built, Source]:
    """The steps both Wikipedia corpora share: refuse a folder as ``dest``, read name2nat's people,
    ``build`` the corpus (letting go of the source's million entries before writing), refuse an
    empty one, ``write`` it."""
    dest = Path(dest)
    if dest.is_dir():
        raise DataError(f"{dest}: is a folder; {what} is one CSV file (e.g. {example})")
    people, where = read_people(source, verify)
    built = build(people)
    del people
    if not built.rows:
        raise DataError(f"{where.origin}: nothing survived building {what}")
    write(built, dest)
    return built, where

"""The Wikipedia people corpus: one row per person of name2nat, with given names and surname apart.

``names data fetch wikipedia --full-names`` writes it (docs/corpora.md#the-wikipedia-people-full-names).
It cuts each full name by the surname corpus's rules (:mod:`namesclf.data.wikipedia`: the
nationality mapping, family-first labels, particles, the family-name vote, the reserved slice),
so a person's surname here is the one that corpus would take; what differs is the unit (a
(name, nationality) pair, name2nat's own) and that the given names are kept.
"""

from __future__ import annotations

import csv
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from namesclf.data.name2nat import Source, read_people
from namesclf.data.wikipedia import (
    _END_PUNCTUATION,
    DROP,
    FAMILY_MIN_PEOPLE,
    Nationality,
    _reserved_key,
    family_first_words,
    first_word_key,
    fold_surname,
    load_mapping,
    parts_given_first,
    pick_family_name,
)
from namesclf.errors import DataError
from namesclf.files import atomic_write_with

PEOPLE_DEST = "data/wikipedia_people.csv"
PEOPLE_COLUMNS = ("name", "given", "surname", "language", "nationality")


@dataclass
class People:
    """The full-name corpus: one row per (name, nationality) pair of name2nat that has a surname to
    take outside the reserved slice, and what building it dropped, per reason (counted in rows)."""

    rows: list[tuple[str, str, str, str, str]]
    """(name, given, surname, language, nationality): :data:`PEOPLE_COLUMNS`; ``language`` is ``''``
    where the nationality maps to :data:`DROP` (or is not in the mapping)."""
    names: int
    """Distinct full names in the source."""
    pairs: int
    """(name, nationality) pairs in the source: the people of name2nat's NaNa set."""
    dropped: dict[str, int] = field(default_factory=dict)
    unmapped: dict[str, int] = field(default_factory=dict)
    reserved_surnames: int = 0
    reserved_people: int = 0
    family_name_moved: int = 0
    seconds: float = 0.0

    @property
    def with_language(self) -> int:
        """Rows with an origin label."""
        return sum(1 for row in self.rows if row[3])

    def summary(self) -> dict[str, Any]:
        """JSON-ready figures."""
        per_nationality = Counter(row[4] for row in self.rows)
        per_language = Counter(row[3] for row in self.rows if row[3])
        return {"names": self.names, "pairs": self.pairs, "rows": len(self.rows), "with_language": self.with_language,
                "nationalities": len(per_nationality), "languages": len(per_language),
                "per_language": dict(sorted(per_language.items())),
                "per_nationality": dict(sorted(per_nationality.items())),
                "reserved_surnames": self.reserved_surnames, "reserved_people": self.reserved_people,
                "family_name_moved": self.family_name_moved, "dropped": dict(sorted(self.dropped.items())),
                "unmapped": dict(sorted(self.unmapped.items())), "seconds": round(self.seconds, 2)}


def _given_counts(people: Mapping[str, Iterable[str]], mapping: Mapping[str, Nationality]) -> Counter[str]:
    """First words of the names of people of given-first nationalities only: what
    :func:`pick_family_name` takes for given names (counted as :func:`build_corpus` counts them)."""
    family_first = {nat for nat, entry in mapping.items() if entry.order == "family_first"}
    given: Counter[str] = Counter()
    for full_name, nationalities in people.items():
        if " " in full_name.strip() and family_first.isdisjoint(nationalities):
            given[first_word_key(full_name)] += 1
    return given


def _cut_rows(people: Mapping[str, Iterable[str]], mapping: Mapping[str, Nationality], dropped: Counter[str],
              unmapped: Counter[str]) -> tuple[list[Any], list[tuple[int, list[str], str]],
                                               defaultdict[str, Counter[str]], int]:
    """:func:`build_people`'s first pass: each (name, nationality) pair cut given-first, or, for a
    family-first nationality, held back with its words (``waiting``: row, words, vote group) until
    the group's first-word counts (``opens``) are known. Counts what it drops or cannot map."""
    cut: list[tuple[str, str, str, str, str] | None] = []
    waiting: list[tuple[int, list[str], str]] = []
    opens: defaultdict[str, Counter[str]] = defaultdict(Counter)
    pairs = 0
    for full_name, nationalities in people.items():
        for nat in nationalities:
            pairs += 1
            entry = mapping.get(nat)
            if entry is None:
                unmapped[nat] += 1
            label = entry.label if entry is not None and entry.label != DROP else ""
            if entry is not None and entry.order == "family_first":
                words = family_first_words(full_name)
                if words is None:
                    dropped["no surname in the name"] += 1
                    continue
                group = label or f"{DROP}:{nat}"
                waiting.append((len(cut), words, group))
                opens[group][first_word_key(words[0])] += 1
                cut.append((full_name, "", "", label, nat))
                continue
            parts = parts_given_first(full_name)
            if parts is None:
                dropped["no surname in the name"] += 1
                continue
            cut.append((full_name, parts[0], parts[1], label, nat))
    return cut, waiting, opens, pairs


def build_people(people: Mapping[str, Iterable[str]], mapping: Mapping[str, Nationality] | None = None) -> People:
    """One row per (full name, nationality) pair, cut into given names and surname by the rules of
    :func:`build_corpus`, in the source's order.

    name2nat lists a name under several nationalities when several people bear it (``Adam Smith``:
    British, American, English, ...), and its NaNa set counts each pair as one person; so does this.
    A row's order (given or family name first) and origin label are its own nationality's, through
    ``mapping``: ``Paolo Rossi`` under American has no label, under Italian he is Italian. The
    family-name vote (:func:`pick_family_name`) counts the rows of the label (of the nationality,
    for a dropped one). Dropped, and counted: names with no surname to take, surnames under 2 or
    over 40 letters, family names of a family-first label borne by one row only, and every row whose
    surname is in the reserved slice (:func:`is_reserved`). Pure: no files, no network.
    """
    start = time.perf_counter()
    mapping = load_mapping() if mapping is None else mapping
    given_words = _given_counts(people, mapping)
    dropped: Counter[str] = Counter()
    unmapped: Counter[str] = Counter()
    cut, waiting, opens, pairs = _cut_rows(people, mapping, dropped, unmapped)
    moved = 0
    groups: dict[int, str] = {}
    for index, words, group in waiting:
        surname = pick_family_name(words, opens[group], given_words)
        moved += surname != words[0]
        at = words.index(surname)
        name, _, _, label, nat = cut[index]  # type: ignore[misc]
        cut[index] = (name, " ".join(words[:at] + words[at + 1:]), surname, label, nat)
        groups[index] = group
    keys: list[str | None] = []
    family_counts: Counter[tuple[str, str]] = Counter()
    folds: dict[str, str | None] = {}
    for index, row in enumerate(cut):
        surname = row[2]  # type: ignore[index]
        folded = folds[surname] if surname in folds else folds.setdefault(surname, fold_surname(surname))
        keys.append(None if folded is None else folded.lower())
        if folded is not None and index in groups:
            family_counts[folded.lower(), groups[index]] += 1
    rows: list[tuple[str, str, str, str, str]] = []
    reserved_keys: set[str] = set()
    reserved_people = 0
    for index, (row, key) in enumerate(zip(cut, keys, strict=True)):
        if key is None:
            dropped["surname too short or too long"] += 1
        elif _reserved_key(key):
            reserved_keys.add(key)
            reserved_people += 1
        elif index in groups and family_counts[key, groups[index]] < FAMILY_MIN_PEOPLE:
            dropped["family name of too few people"] += 1
        else:
            name, given, surname, label, nat = row  # type: ignore[misc]
            rows.append((name, given, surname.strip(_END_PUNCTUATION), label, nat))
    dropped["reserved surname"] = reserved_people
    return People(rows, len(people), pairs, {k: v for k, v in dropped.items() if v}, dict(unmapped),
                  len(reserved_keys), reserved_people, moved, time.perf_counter() - start)


def write_people(built: People, dest: str | Path) -> Path:
    """Write :data:`PEOPLE_COLUMNS` (UTF-8, a header line) atomically."""

    def write(handle: IO) -> None:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(PEOPLE_COLUMNS)
        writer.writerows(built.rows)

    return atomic_write_with(dest, write, binary=False)


def fetch_wikipedia_people(source: str | Path | None, dest: str | Path = PEOPLE_DEST,
                           verify: bool = True) -> tuple[People, Source]:
    """Read name2nat's people (``source``: see :func:`read_pickle_bytes`), build the full-name corpus
    (:func:`build_people`), write it to ``dest`` atomically, and return it with where it came from."""
    dest = Path(dest)
    if dest.is_dir():
        raise DataError(f"{dest}: is a folder; the Wikipedia people corpus is one CSV file (e.g. {PEOPLE_DEST})")
    people, where = read_people(source, verify)
    built = build_people(people)
    del people
    if not built.rows:
        raise DataError(f"{where.origin}: no person survived building the corpus")
    write_people(built, dest)
    return built, where

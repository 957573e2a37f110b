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

from namesclf.data.name2nat import Source
from namesclf.data.surname_rules import (
    END_PUNCTUATION,
    FAMILY_MIN_PEOPLE,
    family_first_words,
    first_word_key,
    fold_surname,
    parts_given_first,
    pick_family_name,
    reserved_key,
)
from namesclf.data.wikipedia import DROP, BuildRecord, Nationality, build_from_wheel, load_mapping
from namesclf.files import atomic_write_with

PEOPLE_DEST = "data/wikipedia_people.csv"
PEOPLE_COLUMNS = ("name", "given", "surname", "language", "nationality")


@dataclass
class People(BuildRecord):
    """The full-name corpus: one row per (name, nationality) pair of name2nat that has a surname to
    take outside the reserved slice, and what building it dropped, per reason (counted in rows)."""

    rows: list[tuple[str, str, str, str, str]]
    """(name, given, surname, language, nationality): :data:`PEOPLE_COLUMNS`; ``language`` is ``''``
    where the nationality maps to :data:`DROP` (or is not in the mapping)."""
    names: int
    """Distinct full names in the source."""
    pairs: int
    """(name, nationality) pairs in the source: the people of name2nat's NaNa set."""

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


Row = tuple[str, str, str, str, str]


@dataclass
class _Cut:
    """The rows as first cut, before the family-name vote: family-first rows wait with their words."""

    rows: list[Row] = field(default_factory=list)
    waiting: list[tuple[int, list[str], str]] = field(default_factory=list)  # (row, words, vote group)
    opens: defaultdict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    pairs: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    unmapped: Counter[str] = field(default_factory=Counter)


def _cut_rows(people: Mapping[str, Iterable[str]], mapping: Mapping[str, Nationality]) -> _Cut:
    """Each (name, nationality) pair cut by its nationality's order; a family-first row waits for
    the vote, and its first word is counted for its vote group (the label, or the dropped nationality)."""
    cut = _Cut()
    for full_name, nationalities in people.items():
        for nat in nationalities:
            cut.pairs += 1
            entry = mapping.get(nat)
            if entry is None:
                cut.unmapped[nat] += 1
            label = entry.label if entry is not None and entry.label != DROP else ""
            if entry is not None and entry.order == "family_first":
                words = family_first_words(full_name)
                if words is None:
                    cut.dropped["no surname in the name"] += 1
                    continue
                group = label or f"{DROP}:{nat}"
                cut.waiting.append((len(cut.rows), words, group))
                cut.opens[group][first_word_key(words[0])] += 1
                cut.rows.append((full_name, "", "", label, nat))
                continue
            parts = parts_given_first(full_name)
            if parts is None:
                cut.dropped["no surname in the name"] += 1
                continue
            cut.rows.append((full_name, parts[0], parts[1], label, nat))
    return cut


def _vote_family_names(cut: _Cut, given_words: Counter[str]) -> tuple[dict[int, str], int]:
    """The waiting rows cut at the family name :func:`pick_family_name` votes for, in place; their
    vote groups by row, and how many rows' family name is not their first word."""
    moved = 0
    groups: dict[int, str] = {}
    for index, words, group in cut.waiting:
        surname = pick_family_name(words, cut.opens[group], given_words)
        moved += surname != words[0]
        at = words.index(surname)
        name, _, _, label, nat = cut.rows[index]
        cut.rows[index] = (name, " ".join(words[:at] + words[at + 1:]), surname, label, nat)
        groups[index] = group
    return groups, moved


def _surname_keys(cut: _Cut, groups: Mapping[int, str]) -> tuple[list[str | None], Counter[tuple[str, str]]]:
    """Each row's folded, lower-cased surname (None where it is too short or long) and, for
    family-first rows, how many rows of the vote group bear it."""
    keys: list[str | None] = []
    family_counts: Counter[tuple[str, str]] = Counter()
    folds: dict[str, str | None] = {}
    for index, row in enumerate(cut.rows):
        surname = row[2]
        folded = folds[surname] if surname in folds else folds.setdefault(surname, fold_surname(surname))
        keys.append(None if folded is None else folded.lower())
        if folded is not None and index in groups:
            family_counts[folded.lower(), groups[index]] += 1
    return keys, family_counts


def build_people(people: Mapping[str, Iterable[str]], mapping: Mapping[str, Nationality] | None = None) -> People:
    """One row per (full name, nationality) pair, cut into given names and surname by the rules of
    :func:`~namesclf.data.wikipedia.build_corpus`, in the source's order.

    name2nat lists a name under several nationalities when several people bear it (``Adam Smith``:
    British, American, English, ...), and its NaNa set counts each pair as one person; so does this.
    A row's order (given or family name first) and origin label are its own nationality's, through
    ``mapping``: ``Paolo Rossi`` under American has no label, under Italian he is Italian. The
    family-name vote (:func:`pick_family_name`) counts the rows of the label (of the nationality,
    for a dropped one). Dropped, and counted: names with no surname to take, surnames under 2 or
    over 40 letters, family names of a family-first label borne by one row only, and every row whose
    surname is in the reserved slice (:func:`~namesclf.data.surname_rules.is_reserved`). Pure: no files, no network.
    """
    start = time.perf_counter()
    mapping = load_mapping() if mapping is None else mapping
    cut = _cut_rows(people, mapping)
    groups, moved = _vote_family_names(cut, _given_counts(people, mapping))
    keys, family_counts = _surname_keys(cut, groups)
    rows: list[Row] = []
    reserved_keys: set[str] = set()
    reserved_people = 0
    for index, (row, key) in enumerate(zip(cut.rows, keys, strict=True)):
        if key is None:
            cut.dropped["surname too short or too long"] += 1
        elif reserved_key(key):
            reserved_keys.add(key)
            reserved_people += 1
        elif index in groups and family_counts[key, groups[index]] < FAMILY_MIN_PEOPLE:
            cut.dropped["family name of too few people"] += 1
        else:
            name, given, surname, label, nat = row
            rows.append((name, given, surname.strip(END_PUNCTUATION), label, nat))
    cut.dropped["reserved surname"] = reserved_people
    return People(rows, len(people), cut.pairs, dropped={k: v for k, v in cut.dropped.items() if v},
                  unmapped=dict(cut.unmapped), reserved_surnames=len(reserved_keys), reserved_people=reserved_people,
                  family_name_moved=moved, seconds=time.perf_counter() - start)


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
    return build_from_wheel(source, dest, verify, build_people, write_people, "the Wikipedia people corpus",
                            PEOPLE_DEST)

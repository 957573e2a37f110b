"""How the surname is cut out of a Wikipedia person's full name, for both Wikipedia corpora.

Given-first names go through :func:`namesclf.data.fullnames.parse_name` (particles kept, titles and
suffixes dropped) behind a fast path for plain names; family-first names (Chinese, Korean,
Vietnamese) take their first word unless the counts of first words say the name is in Western
order or has a baptismal name in front (:func:`pick_family_name`); a surname is folded and checked
for length (:func:`fold_surname`); and the reserved slice (:func:`is_reserved`) is decided here,
so that the surname corpus (:mod:`namesclf.data.wikipedia`) and the people corpus
(:mod:`namesclf.data.wikipedia_people`) leave out exactly the same people.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from functools import cache

from namesclf.data.fullnames import is_particle, parse_name
from namesclf.text import to_ascii

#: Surnames whose SHA-256 hex digest starts with this are held out (one in sixteen).
RESERVED_PREFIX = "f"
#: Surnames longer than this (in letters) are parsing accidents, not names.
MAX_SURNAME_LETTERS = 40

#: A family-first name is read in another order when another word opens at least VOTE_MIN names of
#: the label and VOTE_RATIO times as many as the first word does (plus one): rare words tie too
#: easily to be evidence.
VOTE_MIN = 5
VOTE_RATIO = 4
#: ... or when its first word opens at least GIVEN_MIN names of people of given-first nationalities
#: and either fewer than VOTE_MIN names of the label or under 1/GIVEN_RATIO as many as elsewhere:
#: a Western given name (Tina Leung). Family names stay under the ratio, given names
#: mostly above it (the counts: docs/corpora.md#family-name-first).
GIVEN_MIN = 50
GIVEN_RATIO = 40
#: A family name of a family-first label must be borne by at least this many people. Those labels
#: are a few hundred common family names; a name borne by one person there is rarely a rare family
#: name and mostly a mislabelled person (Velibor, Nannskog), a Uyghur or Tibetan name without a
#: family name, or a given name (a sample: docs/corpora.md#family-name-first).
FAMILY_MIN_PEOPLE = 2

# What no surname can be taken from: digits (ordinals, disambiguations: "6th Baron"), regnal numbers
# ("Louis XIV", "Alain II Hir": royalty and popes), epithets and places ("Isaac of Troki", "Babai the
# Great"), an Ottoman honorific in the surname's place ("Enver Pasha", "Ahmed Bey").
_NO_SURNAME = re.compile(r"\d|(?:^|\s)(?:[IVX]+|(?i:of|the))(?=\s|$)|\s(?i:pasha|bey|effendi|efendi|agha)$")
# Quotes and brackets hold nicknames, which nameparser knows how to skip; the fast path does not.
_NEEDS_PARSER = re.compile(r"[\"“”«»()\[\]]")
END_PUNCTUATION = " .,;-"

def is_reserved(surname: str) -> bool:
    """Whether ``surname`` is in the held-out sixteenth: the SHA-256 hex digest of its folded,
    lower-cased form starts with :data:`RESERVED_PREFIX`. The corpus holds folded surnames, so a
    name read from it is tested as written there."""
    return reserved_key(to_ascii(surname).lower())


def reserved_key(key: str) -> bool:
    return hashlib.sha256(key.encode()).hexdigest().startswith(RESERVED_PREFIX)


@cache
def _special_words() -> tuple[frozenset[str], frozenset[str]]:
    """(words nameparser treats as more than a name, titles), lower-cased without dots: titles,
    suffixes, prefixes and conjunctions send a name through nameparser."""
    from nameparser.config import Constants

    constants = Constants()
    titles = frozenset(constants.titles) | frozenset(constants.first_name_titles)
    special = (titles | frozenset(constants.suffix_acronyms) | frozenset(constants.suffix_not_acronyms)
               | frozenset(constants.prefixes) | frozenset(constants.conjunctions))
    return special, titles


def _key(word: str) -> str:
    return word.casefold().strip(".")


def _words(full_name: str) -> list[str] | None:
    """The name's words before any comma ("X, 3rd Baronet", "X, Jr."), or None for what has no
    surname to take: one word alone, a digit, a regnal number, an epithet (:data:`_NO_SURNAME`)."""
    head = full_name.split(",", 1)[0] if "," in full_name else full_name
    words = head.split()
    if len(words) < 2 or _NO_SURNAME.search(head):
        return None
    return words


def surname_given_first(full_name: str) -> str | None:
    """The surname of a given-first name, or None when the name has none to take
    (:func:`parts_given_first`)."""
    parts = parts_given_first(full_name)
    return None if parts is None else parts[1]


def parts_given_first(full_name: str) -> tuple[str, str] | None:
    """(given names, surname) of a given-first name, or None when the name has no surname to take.

    Most names (docs/corpora.md#how-the-wikipedia-corpus-is-built) hold no title, suffix,
    conjunction or nickname, and particles only just before the last word: their surname is the last
    word with those particles (``Ludwig van Beethoven`` -> ``van Beethoven``) and the given names
    the words before it, which is what nameparser answers too, far more slowly
    (docs/benchmarks.md#building-the-wikipedia-corpus). The rest go through
    :func:`~namesclf.data.fullnames.parse_name`, whose given part leaves out titles and nicknames; a
    name it finds no given name in ("Empress Zheng") has no surname to trust.
    """
    words = _words(full_name)
    if words is None:
        return None
    special, _ = _special_words()
    head = " ".join(words)
    particles = [is_particle(w) for w in words]
    plain = not _NEEDS_PARSER.search(head)
    if plain and not any(particles) and all(_key(w) not in special for w in words):
        return " ".join(words[:-1]), words[-1]  # the common case, checked first: most of the million
    simple = plain and not any(_key(w) in special for w, particle in zip(words, particles, strict=True)
                               if not particle)
    if simple and not particles[-1]:
        start = len(words) - 1
        while start > 0 and particles[start - 1]:
            start -= 1
        if start > 0 and not any(particles[:start]):
            return " ".join(words[:start]), " ".join(words[start:])
    parsed = parse_name(head)
    if not parsed.parsed or not parsed.given:
        return None
    return parsed.given, parsed.surname


def family_first_words(full_name: str) -> list[str] | None:
    """The words of a family-first name, or None when it has no surname to take (see :func:`_words`;
    a title ("Crown Prince Uiso", "Empress Zheng") also makes the first word untrustworthy)."""
    words = _words(full_name)
    if words is None or _NEEDS_PARSER.search(" ".join(words)):
        return None
    _, titles = _special_words()
    if any(_key(w) in titles for w in words):
        return None
    return words


def first_word_key(full_name: str) -> str:
    """The folded, lower-cased first word of a name (what :func:`pick_family_name` counts)."""
    word = full_name.split(None, 1)[0] if full_name.strip() else ""
    return word.lower() if word.isascii() else to_ascii(word).lower()


def _is_initial(word: str) -> bool:
    return word.endswith(".") or len(word) == 1


def pick_family_name(words: list[str], opens: Mapping[str, int], given: Mapping[str, int]) -> str:
    """The family name of a family-first name.

    ``opens``: folded lower-case word -> names of the label it opens; ``given``: the same over
    people of given-first nationalities. The first word, unless

    * another word opens far more names of the label (``Elvis Wang``, ``Paul Lê Đắc Trọng``);
    * the first word is hyphenated and the last is not: a Chinese or Korean given name written
      first (``Kuo-Nan Liou``, ``Ji-Hae Park``), so the last word;
    * the first word is a given name elsewhere and rare here (``Tina Leung``, ``Matthew Kia
      Yen-wen``): then the next word that is neither an initial nor hyphenated, as what follows a
      Western given name is a family name in either order (and ``Lew Mon-hung`` stays ``Lew``:
      a hyphenated word is a given name).
    """
    keys = [first_word_key(w) for w in words]
    first = opens.get(keys[0], 0)
    best, best_count = words[0], first
    for word, key in zip(words[1:], keys[1:], strict=True):
        count = opens.get(key, 0)
        if count > best_count:
            best, best_count = word, count
    if best_count >= max(VOTE_MIN, VOTE_RATIO * (first + 1)):
        return best
    if "-" in words[0] and "-" not in words[-1] and not _is_initial(words[-1]):
        return words[-1]
    elsewhere = given.get(keys[0], 0)
    if elsewhere >= GIVEN_MIN and (first < VOTE_MIN or elsewhere >= GIVEN_RATIO * first):
        rest = [w for w in words[1:] if not _is_initial(w) and "-" not in w]
        if rest:
            return rest[0]
    return words[0]


def fold_surname(surname: str) -> str | None:
    """The surname folded to the model alphabet, or None when it is not a usable name: fewer than
    two letters (an initial), or more than :data:`MAX_SURNAME_LETTERS`."""
    folded = to_ascii(surname).strip(END_PUNCTUATION)
    letters = sum(c.isalpha() for c in folded)
    if letters < 2 or letters > MAX_SURNAME_LETTERS:
        return None
    return folded

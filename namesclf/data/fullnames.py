"""Full names -> the surname to classify.

The models only ever saw surnames, so ``names predict "Fyodor Dostoevsky"`` must classify
``Dostoevsky``, not the whole string. Picking the surname out of a full name is the job of the
``nameparser`` package (``HumanName``): it drops titles (``Dr.``, ``Prof.``) and suffixes (``Jr.``,
``III``, ``PhD``), understands ``"Last, First"`` and keeps most particles with the surname
(``Jan van der Berg`` -> ``van der Berg``). On top of it this module:

* keeps particles that some nameparser versions leave in the middle name with the surname
  (1.x reads ``Seán Ó Briain`` as middle ``Ó``, last ``Briain``), from :data:`PARTICLES`;
* returns a surname given alone unchanged: one word (``Nakamura``, ``O'Brien``) without calling
  nameparser at all, since this runs on millions of names, and particles + one word
  (``De la Fuente``, ``Van der Berg``, ``O Briain``, all of which the data set holds) whole, where
  nameparser would take the first word for a given name;
* reads a two-word name whose second word nameparser takes for a suffix as given + surname when
  the word is written like a name (``Anna Ii``, ``Wei Cap``) but not ``Smith Jr.`` or ``Smith III``;
* never raises and never invents text: anything nameparser cannot make sense of (or would answer
  with words that are not in the input) gives the input back, whitespace-normalised.

Known trade-offs, as a particle cannot be told from a given name or an initial by its spelling:
``Van Morrison`` and ``Di Wang`` are read as surnames alone (like ``Van der Berg``, ``Di caprio``),
and ``John O Smith`` gives ``O Smith`` (like ``Seán O Briain``); ``Al``, ``Ben``, ``Bin``, ``Abu``,
``Bar``, ``Bat`` are read as given names when they come first (``Al Pacino``, ``Ben Stiller``).

nameparser is imported on first use, so ``import namesclf.data.fullnames`` stays cheap. It is run with a
private ``Constants`` instance: the package's shared ``CONSTANTS`` is never changed, and changes that
other code makes to it do not change what this module answers.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

__all__ = ["MAX_RAW_LENGTH", "ORDERS", "PARTICLES", "ParsedName", "is_particle", "parse_name", "split_many",
           "split_name", "surname_of"]

#: Raw input beyond this many characters is ignored (here and by :mod:`namesclf.inference.predictor`): no surname is
#: longer, and parsing or folding a 100,000-character string must not hold up a server.
MAX_RAW_LENGTH = 1024

#: Lower-case words that belong to the surname that follows them (``van der Berg``, ``Ó Briain``).
PARTICLES: frozenset[str] = frozenset(
    {
        # Dutch, Flemish, Afrikaans, German
        "van", "vande", "vander", "vd", "der", "den", "de", "het", "'t", "ter", "ten", "te", "op", "aan", "von",
        "vom", "zu", "zum", "zur",
        # Romance
        "da", "das", "do", "dos", "di", "del", "della", "delle", "dello", "delli", "dei", "degli", "dal", "dalla",
        "des", "du", "d'", "de'", "dell'", "l'", "la", "las", "le", "les", "lo", "los", "san", "santa", "santo",
        "são", "st", "st.", "ste", "ste.",
        # Irish and Scottish Gaelic
        "ó", "o", "ua", "uí", "ní", "nic", "mac", "mc", "mhic",
        # Scandinavian, Welsh, Arabic, Hebrew
        "af", "av", "ap", "al", "bin", "ibn", "bint", "binti", "abu", "ben", "bar", "bat",
    }
)
#: Particles that are also common given names (``Al Pacino``, ``Ben Stiller``): as the first word of
#: a name they are read as a given name.
_GIVEN_NAME_PARTICLES = frozenset({"al", "ben", "bin", "abu", "bar", "bat"})
#: Suffixes no one has for a surname: "Smith Jr" is Smith, but "Anna Ii" or "Wei Cap" (which
#: nameparser 2.x reads as given name + suffix) is a surname Ii or Cap.
_PLAIN_SUFFIXES = frozenset(
    {"jr", "sr", "esq", "esquire", "phd", "md", "dds", "dmd", "cpa", "iii", "vii", "viii"}
)
_SPLIT = re.compile(r"[\s,]+")
#: How a full name's words are ordered: ``auto`` (nameparser's reading: given names first, or
#: ``"Last, First"`` with a comma), ``given-first``, ``family-first`` (``Mao Zedong``, ``Kim Jong-un``).
ORDERS = ("auto", "given-first", "family-first")
#: A word that is letters (hyphens and apostrophes inside) and so can take the fast path of
#: :func:`split_name`: nameparser would read ``Anna Maria Schmidt`` no differently.
_PLAIN_WORD = re.compile(r"^[^\W\d_]+(?:['\u2019-][^\W\d_]+)*$")
_INITIAL = re.compile(r"^[^\W\d_]\.$")


@dataclass(frozen=True, slots=True)
class ParsedName:
    """A name as given and the surname picked out of it."""

    text: str
    """The input as given."""
    surname: str
    """The part to classify: the input itself (whitespace-normalised) when it is a single surname."""
    given: str
    """Given and middle names, ``''`` if none."""
    parsed: bool
    """True when a surname was picked out of a longer full name."""


def is_particle(word: str, first: bool = False) -> bool:
    """Whether ``word`` belongs to the surname that follows it (:data:`PARTICLES`, any case, either
    apostrophe); as the ``first`` word of a name, not one that is also a common given name."""
    key = word.casefold().replace("\u2019", "'")
    return key in PARTICLES and not (first and key in _GIVEN_NAME_PARTICLES)


def _looks_like_surname(word: str) -> bool:
    """Whether a word nameparser took for a suffix is written like a surname (``Ii``, not ``II``, ``Jr.``)."""
    return word.isalpha() and word[:1].isupper() and word[1:].islower() and word.casefold() not in _PLAIN_SUFFIXES


def _is_plain_suffix(word: str) -> bool:
    """Whether ``word`` can only be a suffix (``Jr.``, ``PhD``, ``III``)."""
    return word.casefold().rstrip(".") in _PLAIN_SUFFIXES or (word.isupper() and set(word) <= set("IVX"))


@cache
def _constants() -> Any:
    """nameparser's settings, on a private instance (built once)."""
    from nameparser.config import Constants

    return Constants()


def _human_name(text: str) -> Any:
    from nameparser import HumanName

    return HumanName(text, constants=_constants())


def _from_nameparser(normalised: str) -> tuple[str, str] | None:
    """(surname, given) as nameparser reads ``normalised``, or None when it cannot tell."""
    name = _human_name(normalised)
    last = str(name.last).split()
    given = f"{name.first} {name.middle}".split()
    has_comma = "," in normalised
    if not last:
        suffix = str(name.suffix).split()
        if given and not has_comma and len(suffix) == 1 and _looks_like_surname(suffix[0]):
            return suffix[0], " ".join(given)  # "Anna Ii": a surname taken for a suffix
        # "Smith Jr.", "Dr. Smith", "Smith,": nameparser calls a lone name a given name
        if len(given) == 1 and not str(name.middle).strip():
            return given[0].strip(","), ""
        return None
    if len(last) == 1 and len(given) == 1 and not has_comma and _is_plain_suffix(last[0]):
        return given[0], ""  # nameparser 1.x reads "Smith Jr." as first Smith, last Jr.
    # particles nameparser left in the given/middle names go with the surname; in "Last, First"
    # form the first word after the comma stays a given name ("Smith, Van")
    keep = 1 if has_comma else 0
    while len(given) > keep and is_particle(given[-1], first=len(given) == 1):
        last.insert(0, given.pop())
    return " ".join(last), " ".join(given)


def _made_of(surname: str, normalised: str) -> bool:
    """Whether ``surname`` is made of the input's own text: a substring of it, or for a "Last, First"
    name (which nameparser may reorder: "Berg, Jan van der") words of it."""
    if surname in normalised:
        return True
    if "," not in normalised:
        return False
    words = _SPLIT.split(normalised)
    return all(word in words for word in surname.split())


def parse_name(text: str) -> ParsedName:
    """Pick the surname out of ``text`` (see the module docstring); never raises."""
    capped = str(text)[:MAX_RAW_LENGTH]
    words = capped.split()
    if "," not in capped and len(words) <= 1:  # the fast path: one word is a surname alone
        return ParsedName(text, words[0] if words else "", "", False)
    normalised = " ".join(words)
    if "," not in normalised and all(is_particle(w, first=i == 0) for i, w in enumerate(words[:-1])):
        return ParsedName(text, normalised, "", False)  # "De la Fuente", "Van der Berg"
    try:
        found = _from_nameparser(normalised)
    except Exception:  # nameparser failing on odd input must not fail a prediction
        found = None
    if found is None or not found[0] or not _made_of(found[0], normalised):
        return ParsedName(text, normalised, "", False)
    surname, given = found
    return ParsedName(text, surname, given, surname != normalised)


@cache
def _special() -> tuple[frozenset[str], frozenset[str], frozenset[str]]:
    """Lower-case words nameparser treats specially: titles (read as such at the start of a name),
    suffixes (at its end, and among given names: it reads ``Mikhail III Cap Adzhalov`` as a
    suffixed ``Mikhail``), and conjunctions, prefixes and particles (anywhere). A name with one
    where it counts goes through nameparser rather than the fast path. Returns the words that may
    not open, stand among the given names of, or end a name read on the fast path."""
    constants = _constants()

    def lower(*groups: Any) -> frozenset[str]:
        return frozenset(str(w).lower() for group in groups for w in group)

    anywhere = lower(constants.conjunctions, constants.prefixes) | PARTICLES
    suffixes = lower(constants.suffix_acronyms, constants.suffix_not_acronyms)
    return lower(constants.titles) | anywhere, anywhere | suffixes, suffixes | anywhere


def _plain_cut(words: list[str]) -> int:
    """Where the surname starts when nameparser would read ``words`` as given names then a surname
    (its particles, then one word): words of letters (a given name may be an initial, ``J.``), no
    title first, no suffix last, particles only right before the last word. 0 when it would not
    (the slow path)."""
    first, middle, last = _special()
    if not _PLAIN_WORD.match(words[-1]) or words[-1].casefold() in last or words[0].casefold() in first:
        return 0
    cut = len(words) - 1
    while cut > 1 and is_particle(words[cut - 1]) and _PLAIN_WORD.match(words[cut - 1].replace("'", "")):
        cut -= 1
    given = words[:cut]
    if all((_PLAIN_WORD.match(w) or _INITIAL.match(w)) and w.casefold() not in middle for w in given):
        return cut
    return 0


def split_name(text: str, order: str = "auto") -> tuple[str, str]:
    """``(given, surname)`` of a full name, read in ``order`` (:data:`ORDERS`); never raises.

    ``auto`` and ``given-first`` follow :func:`parse_name` (the corpus builder's rules), except
    that ``given-first`` reads a comma as a space. A name of plain words only (letters, no title,
    suffix or particle) takes a fast path, the last word being the surname, which is what
    nameparser answers for it at a hundredth of the cost: prediction parses every distinct full
    name. ``family-first`` takes the first word (with the particles before it) as the surname.
    """
    capped = str(text)[:MAX_RAW_LENGTH]
    if order == "given-first":
        capped = capped.replace(",", " ")
    elif order == "family-first":
        words = capped.replace(",", " ").split()
        cut = 0
        while cut < len(words) - 1 and is_particle(words[cut], first=cut == 0):
            cut += 1
        return " ".join(words[cut + 1:]), " ".join(words[: cut + 1])
    elif order != "auto":
        raise ValueError(f"unknown order {order!r}; expected one of {', '.join(ORDERS)}")
    if "," not in capped:
        words = capped.split()
        if len(words) <= 1:
            return "", words[0] if words else ""
        cut = _plain_cut(words)
        if cut:
            return " ".join(words[:cut]), " ".join(words[cut:])
    parsed = parse_name(capped)
    return parsed.given, parsed.surname


#: What :func:`split_many` knows of a word, as bits: it may end a plain name (a letters-only
#: surname nameparser reads as one); it may stand among its given names; it may also open one (a
#: given name that is no title); it is a particle that would join the surname after it; it is a
#: particle that opens a two-word name as its given name (``Ben Stiller``: nameparser's reading
#: of every such name in the Wikipedia people corpus, docs/benchmarks.md#full-names).
_LAST_OK, _GIVEN_OK, _FIRST_OK, _JOINS, _OPENS_PAIR = 1, 2, 4, 8, 16
#: Words whose bits :func:`split_many` keeps between calls (cleared when full: a bound, not an LRU).
WORD_CACHE_SIZE = 500_000
_word_bits: dict[str, int] = {}


def _bits(word: str) -> int:
    """:data:`_LAST_OK` etc. of one word, by the very tests :func:`_plain_cut` makes (and kept)."""
    first, middle, last = _special()
    key = word.casefold()
    plain = _PLAIN_WORD.match(word) is not None
    bits = _LAST_OK if plain and key not in last else 0
    if (plain or _INITIAL.match(word)) and key not in middle:
        bits |= _GIVEN_OK if key in first else _GIVEN_OK | _FIRST_OK
    if is_particle(word) and _PLAIN_WORD.match(word.replace("'", "")):
        bits |= _JOINS
    if key in _GIVEN_NAME_PARTICLES and plain:
        bits |= _OPENS_PAIR
    if len(_word_bits) >= WORD_CACHE_SIZE:
        _word_bits.clear()
    _word_bits[word] = bits
    return bits


def split_many(texts: Sequence[str], order: str = "auto") -> tuple[list[str], list[str]]:
    """``(given names, surnames)``: :func:`split_name` of each text, answered in bulk.

    A name of two or more words with no comma, whose last word may end a plain name, the
    particles right before it joining it, and whose other words may all be given names (the first
    no title), is cut from its words' cached bits alone: these are exactly the names
    :func:`_plain_cut` cuts, and a million full names hold far fewer distinct words than names.
    So are two words opened by a particle that is also a given name (``Al Pacino``), which
    nameparser reads as given name and surname.
    Every other text goes through :func:`split_name` (nameparser).
    """
    if order not in ORDERS:
        raise ValueError(f"unknown order {order!r}; expected one of {', '.join(ORDERS)}")
    givens: list[str] = []
    surnames: list[str] = []
    add_given, add_surname, known = givens.append, surnames.append, _word_bits.get
    for text in texts:
        capped = str(text)[:MAX_RAW_LENGTH]
        if order == "given-first":
            capped = capped.replace(",", " ")
        words = capped.split() if order != "family-first" and "," not in capped else ()
        if len(words) == 2:
            a, b = words
            if (known(a) or _bits(a)) & (_FIRST_OK | _OPENS_PAIR) and (known(b) or _bits(b)) & _LAST_OK:
                add_given(a)
                add_surname(b)
                continue
        elif len(words) > 2:
            bits = [known(w) or _bits(w) for w in words]
            cut = len(words) - 1
            while cut > 1 and bits[cut - 1] & _JOINS:  # "Jan van der Berg": particles join the surname
                cut -= 1
            if bits[-1] & _LAST_OK and bits[0] & _FIRST_OK and all(b & _GIVEN_OK for b in bits[1:cut]):
                add_given(" ".join(words[:cut]))
                add_surname(" ".join(words[cut:]))
                continue
        given, surname = split_name(capped, order)
        add_given(given)
        add_surname(surname)
    return givens, surnames


def surname_of(text: str) -> str:
    """The surname to classify in ``text``: ``parse_name(text).surname``."""
    capped = str(text)[:MAX_RAW_LENGTH]
    if "," not in capped:
        words = capped.split()
        if len(words) <= 1:  # the fast path, without building a ParsedName
            return words[0] if words else ""
    return parse_name(text).surname

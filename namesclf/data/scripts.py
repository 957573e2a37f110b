"""Writing systems: which script a name is written in, and which labels write it.

**Detection.** Python's :mod:`unicodedata` has no Script property, but Unicode names every letter
after its script (``CYRILLIC SMALL LETTER A``, ``HANGUL SYLLABLE GA``, ``DEVANAGARI LETTER KA``),
so the first word of a letter's name is its script, with a few fixes (:data:`_SCRIPT_WORDS`:
``CJK`` and ``IDEOGRAPHIC`` are Han). Text is NFKC-normalised first, so full-width and half-width
forms read as the letters they stand for. This needs no dependency and no range table to keep in
step with new Unicode versions (a new script's letters are named after it); only letters and
marks count, so digits, punctuation and the kana length mark ``ー`` belong to no script.

How each label's language reads a script in Latin letters is :mod:`namesclf.data.romanize`.
"""

from __future__ import annotations

import csv
import functools
import io
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources

LATIN = "Latin"
#: Scripts that write the family name first, so that a full name's first word is its surname.
FAMILY_FIRST = frozenset({"Han", "Hiragana", "Katakana", "Hangul"})

#: First words of Unicode letter names that are not the script's name.
_SCRIPT_WORDS = {"CJK": "Han", "IDEOGRAPHIC": "Han", "KATAKANA-HIRAGANA": None, "COMBINING": None,
                 "MODIFIER": None, "OL": "Ol Chiki", "CANADIAN": "Canadian Aboriginal", "TAI": "Tai"}


@functools.lru_cache(maxsize=4096)
def script_of(ch: str) -> str | None:
    """The script of one character (``"Cyrillic"``, ``"Han"``), or None for what belongs to no
    script: digits, punctuation, spaces, combining marks (they take their letter's script)."""
    if ch.isascii():
        return LATIN if ch.isalpha() else None
    if unicodedata.category(ch)[0] not in "LM":
        return None
    name = unicodedata.name(ch, "")
    if not name:
        return None
    word = name.split(" ", 1)[0]
    if word in _SCRIPT_WORDS:
        return _SCRIPT_WORDS[word]
    return word.capitalize()


def scripts_of(text: str) -> frozenset[str]:
    """The scripts of a text's letters (empty for a text with none)."""
    if text.isascii():
        return frozenset({LATIN}) if any(c.isalpha() for c in text) else frozenset()
    found = {script_of(c) for c in unicodedata.normalize("NFKC", text)}
    found.discard(None)
    return frozenset(found)  # type: ignore[arg-type]


def native_scripts(text: str) -> frozenset[str]:
    """The scripts of a name other than Latin: what decides which labels may have written it.

    Latin letters beside another script (``Иванов-Smith``, ``山田 Taro``) are taken to be a
    romanized part and do not narrow the labels.
    """
    return scripts_of(text) - {LATIN}


def family_name_first(name: str) -> str | None:
    """The first word of a full name whose first word is in a family-name-first script
    (``山田 太郎``, ``김 민준``, ``山田 Taro``): its surname. None for every other name, which
    :func:`~namesclf.data.fullnames.parse_name` reads instead."""
    words = name.split()
    if len(words) < 2 or name.isascii():
        return None
    return words[0] if scripts_of(words[0]) & FAMILY_FIRST else None


# ----------------------------------------------------------------------------- the label table

@dataclass(frozen=True)
class LabelScripts:
    """One row of ``label_scripts.csv``: the scripts a label's language writes, the scheme it reads
    each non-Latin script with (anyascii where none is named), the letters of those scripts its
    alphabet lacks (``ы`` is not Ukrainian, ``پ`` is not Arabic), and why."""

    label: str
    scripts: frozenset[str]
    schemes: dict[str, str]
    not_letters: frozenset[str]
    why: str

    def scheme(self, script: str) -> str:
        return self.schemes.get(script, "any")


@functools.cache
def label_scripts() -> dict[str, LabelScripts]:
    """The committed table ``namesclf/data/label_scripts.csv``, by label."""
    text = resources.files("namesclf.data").joinpath("label_scripts.csv").read_text("utf-8")
    out: dict[str, LabelScripts] = {}
    for row in csv.DictReader(io.StringIO(text)):
        schemes = dict(item.split(":") for item in row["romanization"].split())
        out[row["label"]] = LabelScripts(row["label"], frozenset(row["scripts"].split()), schemes,
                                         frozenset(row["not_letters"]), row["why"])
    return out


def writes(label: str, scripts: frozenset[str]) -> bool:
    """Whether ``label``'s language writes every one of ``scripts``. A label missing from the table
    (a model trained on labels of its own) is taken to write Latin only."""
    known = label_scripts().get(label)
    return scripts <= (known.scripts if known is not None else frozenset({LATIN}))


def foreign_letters(label: str, text: str) -> frozenset[str]:
    """The letters of ``text`` that ``label``'s alphabet lacks (lower-cased): a name with any was
    not spelled in that language (``Олійник`` has ``і``, which Russian does not write)."""
    known = label_scripts().get(label)
    if known is None or not known.not_letters:
        return frozenset()
    return frozenset(text.lower()) & known.not_letters


#: The per-language Cyrillic schemes, by label: implemented and measured, but not in the table
#: (docs/scripts.md#cyrillic): a Russian name read the Ukrainian way (``Смирнов`` -> Smyrnov)
#: looks Ukrainian to the model, though the letters say nothing of the kind.
CYRILLIC_PER_LANGUAGE = {"Russian": {"Cyrillic": "ru"}, "Ukrainian": {"Cyrillic": "uk"},
                         "Belarusian": {"Cyrillic": "be"}, "Bulgarian": {"Cyrillic": "bg"},
                         "Macedonian": {"Cyrillic": "mk"}, "Serbo-Croatian": {"Cyrillic": "sr"}}


def scheme_for(label: str, scripts: frozenset[str], overrides: Mapping[str, Mapping[str, str]] | None = None) -> str:
    """The scheme ``label`` reads a name of ``scripts`` with: the one for its first script that
    has one (``ja`` for kanji with kana), else ``any`` (anyascii). ``overrides`` (label -> script
    -> scheme) take the table's place where they name one."""
    known = label_scripts().get(label)
    schemes = {**(known.schemes if known is not None else {}), **((overrides or {}).get(label, {}))}
    for script in sorted(scripts):
        if script in schemes:
            return schemes[script]
    return "any"

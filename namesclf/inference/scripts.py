"""Script evidence for prediction: which labels may have written a name, and how each of them reads it.

A name in a script other than Latin (:func:`~namesclf.data.scripts.native_scripts`) is evidence
by itself: a language that does not write that script (``label_scripts.csv``) did not write the
name, so its probability is zero, and a name that no label of the model writes is ``unknown``
with the reason ``script``. Within a script, a language whose alphabet lacks one of the name's
letters gets zero too (``ы`` is Russian or Belarusian, never Ukrainian; ``پ`` is never Arabic).
The labels that do write it read it each with their own scheme
(:func:`~namesclf.data.romanize.romanize`): ``中村`` is Nakamura to Japanese and Zhongcun to Chinese.

**Combination rule.** The name is scored once per distinct scheme among its candidate labels; each
label takes its probability from the reading of its own scheme, the rest get zero, and the row is
renormalised. So Japanese is weighed by how Japanese "Nakamura" looks and Chinese by how Chinese
"Zhong" looks; a label never gains from another label's reading. A single scoring of one reading
would instead hand the name to whichever language that reading was made for.

For the Korean and Japanese schemes the classified text is the family name of the reading
(``김민준`` -> Kim, ``山田太郎`` -> Yamada), since the models classify surnames; Chinese is read whole
(see :func:`~namesclf.data.romanize.romanize_chinese`). Latin-script names are not
touched: their probabilities are the very array the model gave.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from namesclf.data.romanize import romanize
from namesclf.data.scripts import foreign_letters, native_scripts, scheme_for, writes
from namesclf.text import to_ascii

#: Schemes whose reading puts the family name first; the family name is what is classified.
FAMILY_FIRST_SCHEMES = frozenset({"ko", "ja"})
#: ``Prediction.reason`` when no label of the model writes the name's script.
SCRIPT = "script"


@dataclass(frozen=True)
class Reading:
    """One non-Latin name: its scripts, the labels that write them (``candidates``, a boolean per
    label), the scheme each label reads it with, and each scheme's folded reading."""

    scripts: frozenset[str]
    candidates: np.ndarray
    schemes: tuple[str, ...]
    readings: dict[str, str]


@dataclass
class Evidence:
    """What :meth:`ScriptEvidence.apply` found: the probabilities (the input array itself when no
    name was outside Latin), the reading shown for each changed row, and the rows no label writes."""

    proba: np.ndarray
    shown: dict[int, str]
    unwritten: list[int]


class ScriptEvidence:
    """The script evidence for one model's labels (the label mask per set of scripts is kept);
    ``schemes`` replaces the table's romanization for some labels (label -> script -> scheme)."""

    def __init__(self, labels: Sequence[str], schemes: Mapping[str, Mapping[str, str]] | None = None) -> None:
        self.labels = list(labels)
        self.schemes = schemes  # label -> script -> scheme, over the table's (experiments)
        self._by_scripts: dict[frozenset[str], tuple[np.ndarray, tuple[str, ...]]] = {}

    def labels_for(self, scripts: frozenset[str]) -> tuple[np.ndarray, tuple[str, ...]]:
        """The labels that write every one of ``scripts`` (a boolean per label) and each label's scheme."""
        found = self._by_scripts.get(scripts)
        if found is None:
            found = (np.array([writes(label, scripts) for label in self.labels], dtype=bool),
                     tuple(scheme_for(label, scripts, self.schemes) for label in self.labels))
            self._by_scripts[scripts] = found
        return found

    def read(self, text: str) -> Reading | None:
        """The reading of one name to classify, None for a name of Latin letters (or none)."""
        scripts = native_scripts(text)
        if not scripts:
            return None
        candidates, schemes = self.labels_for(scripts)
        if candidates.any():
            candidates = candidates & np.array([not foreign_letters(label, text) for label in self.labels])
        readings = {}
        for scheme in sorted({schemes[j] for j in np.flatnonzero(candidates)}):
            folded = to_ascii(romanize(text, scheme))
            if scheme in FAMILY_FIRST_SCHEMES:
                folded = folded.split(" ")[0]
            readings[scheme] = folded
        return Reading(scripts, candidates, schemes, readings)

    def apply(self, texts: Sequence[str], proba: np.ndarray, score: Callable[[list[str]], np.ndarray]) -> Evidence:
        """The probabilities of ``texts`` (the names classified) given their scripts.

        ``proba`` holds each name's probabilities from its anyascii folding (the ``any`` scheme);
        ``score`` gives the probabilities of more folded texts, called once for every other
        reading of the batch. Rows of Latin names are left as they are.
        """
        known: dict[str, Reading | None] = {}  # a batch of full names repeats its surnames
        readings = []
        for row, text in enumerate(texts):
            if not text.isascii():
                reading = known[text] if text in known else known.setdefault(text, self.read(text))
                if reading is not None:
                    readings.append((row, reading))
        if not readings:
            return Evidence(proba, {}, [])
        jobs = [(row, scheme, text) for row, reading in readings for scheme, text in reading.readings.items()
                if scheme != "any" and text]
        scored = score([text for *_, text in jobs]) if jobs else np.empty((0, proba.shape[1]))
        by_row: dict[int, dict[str, np.ndarray]] = {}
        for (row, scheme, _), p in zip(jobs, scored, strict=True):
            by_row.setdefault(row, {})[scheme] = p
        out = np.array(proba, copy=True)
        shown: dict[int, str] = {}
        unwritten: list[int] = []
        for row, reading in readings:
            rows = {"any": proba[row], **by_row.get(row, {})}
            new = np.zeros(proba.shape[1], dtype=out.dtype)
            for j in np.flatnonzero(reading.candidates):
                new[j] = rows.get(reading.schemes[j], proba[row])[j]
            total = new.sum()
            out[row] = new / total if total > 0 else new
            if total > 0:
                best = reading.schemes[int(np.argmax(out[row]))]
                shown[row] = reading.readings.get(best) or next(iter(reading.readings.values()), "")
            else:
                unwritten.append(row)
        return Evidence(out, shown, unwritten)

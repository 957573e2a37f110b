"""What a prediction answers with, and how a raw name becomes the text the model reads.

:class:`Prediction` is one name's answer (what every surface prints, writes or sends);
:func:`surname_of_name` and the folding helpers turn raw input into the folded surname the
model scores. They sit apart from :class:`~namesclf.inference.predictor.Predictor` so that
outputs, tables and the mix estimate can use them without the predictor's machinery.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from namesclf.data.fullnames import MAX_RAW_LENGTH, parse_name
from namesclf.data.scripts import family_name_first
from namesclf.errors import NamesError
from namesclf.inference.explain import Explanation
from namesclf.inference.options import UNKNOWN
from namesclf.text import to_ascii


@dataclass
class Prediction:
    """One name's answer: the input, its folded form, and the top languages with probabilities.

    The optional fields are set when asked for: ``surname`` (the part of a full name that was
    classified), ``abstained`` and ``novelty`` (``abstain=True``), ``prediction_set``
    (``coverage=...``); ``level`` (``"group"`` or ``"region"``: ``languages`` and the set then
    hold groups or regions), with ``note`` when some of the model's labels are not in the
    origin-group table and each stands for itself. ``reason`` is ``"script"`` when no language of
    the model writes the name's script (:mod:`namesclf.inference.scripts`): the answer is then
    :data:`UNKNOWN` whatever the options, with no languages.
    ``explanation`` (``explain=True``): which letters pushed the answer over the runner-up.
    """

    name: str
    ascii: str
    languages: list[tuple[str, float]]
    surname: str | None = None
    abstained: bool | None = None
    novelty: float | None = None
    prediction_set: list[str] | None = None
    level: str | None = None
    note: str | None = None
    reason: str | None = None
    explanation: Explanation | None = None

    @property
    def answer(self) -> str | None:
        """The top language, :data:`UNKNOWN` when abstained, None when the name had no letters."""
        if self.abstained or self.reason is not None:
            return UNKNOWN
        return self.languages[0][0] if self.languages else None

    def to_dict(self) -> dict:
        out: dict[str, Any] = {"name": self.name, "ascii": self.ascii,
                               "predictions": [{"language": lang, "probability": p} for lang, p in self.languages]}
        if self.surname is not None:
            out["surname"] = self.surname
        if self.abstained is not None:
            out.update({"abstained": self.abstained, "novelty": self.novelty, "answer": self.answer})
        if self.prediction_set is not None:
            out["prediction_set"] = self.prediction_set
        if self.level is not None:
            out["level"] = self.level
            if self.note is not None:
                out["note"] = self.note
        if self.reason is not None:
            out.update({"answer": self.answer, "reason": self.reason})
        if self.explanation is not None:
            out["explanation"] = self.explanation.to_dict()
        return out


def surname_of_name(name: str) -> str:
    """The part of ``name`` to classify: the surname of a full name, unless that part has no letters
    (``"A 0"``) and the whole has some: then the whole. A full name whose first word is written in
    a family-name-first script (``山田 Taro``, ``김 민준``) has that word as its surname."""
    family = family_name_first(name[:MAX_RAW_LENGTH])
    if family is not None:
        return family
    surname = parse_name(name[:MAX_RAW_LENGTH]).surname
    return surname if surname == name or fold(surname) or not fold(name) else name


def fold(name: str) -> str:
    """Fold a name for prediction (capped raw length, see :data:`MAX_RAW_LENGTH`)."""
    return to_ascii(name[:MAX_RAW_LENGTH])


def fold_each(names: Sequence[str], strict: bool) -> list[str]:
    """Each name folded (:func:`fold_or_raise` when ``strict``), each distinct one once: the parts
    of full names repeat far more than the names do."""
    done: dict[str, str] = {}
    out = []
    for name in names:
        folded = done.get(name)
        if folded is None:
            folded = done[name] = fold_or_raise(name) if strict else fold(name)
        out.append(folded)
    return out


def fold_or_raise(name: str) -> str:
    folded = fold(name)
    if not folded:
        shown = name if len(name) <= 40 else name[:40] + "..."
        raise NamesError(f"{shown!r} has no letters after folding to ASCII; nothing to classify")
    return folded

""":class:`Options`, the one source of prediction options: what the CLI, the HTTP API, tables and
the estimator let a user ask for beyond the top languages, their defaults, bounds and help.

Every surface is made from, or held to, the fields below: ``names predict`` builds its options
from them, the HTTP request models are made from them, and ``predict_frame``,
:meth:`~namesclf.inference.predictor.Predictor.predict` and
:class:`~namesclf.estimator.NameClassifier` take each one with the same default
(``tests/test_house.py`` checks all of them, so a new field cannot be left out of one).
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping
from dataclasses import Field, dataclass, field, fields
from typing import Any

from namesclf.config import LEVELS
from namesclf.data.fullnames import ORDERS
from namesclf.errors import NamesError

#: Names per forward pass on CPU / on an accelerator (see :meth:`Predictor.proba_ascii`).
CPU_BATCH = 2048
GPU_BATCH = 4096


#: What an abstained prediction shows in place of a language.
UNKNOWN = "unknown"
#: The priors known by name (:mod:`namesclf.inference.priors`); anything else is a mapping of
#: language -> weight, or a JSON or CSV file of them.
NAMED_PRIORS = ("train", "uniform")
#: The default share of names from the known languages that may be wrongly abstained on
#: (:mod:`namesclf.inference.openset`).
ABSTAIN_RATE = 0.05
#: Why a model without the n-gram half cannot explain its answers (both runtimes say it).
NO_NGRAM_EXPLAIN = ("explanations (explain) read the n-gram half's letter-by-letter likelihoods, and this model "
                    "has none (it was trained with --ngram-order 0)")


class OptionError(NamesError):
    """An option out of its bounds. :attr:`option` is the field's name, so that each surface can
    say which of its own spellings it was (``--abstain-rate`` on the command line)."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(message)
        self.option = option


# The checks live here, not beside the conformal and open-set code that also uses them, so that
# the command line can build its options from :class:`Options` without importing numpy.


def check_coverage(coverage: float) -> float:
    """A coverage strictly between 0 and 1, or a one-line error."""
    if not isinstance(coverage, int | float) or not 0.0 < float(coverage) < 1.0:
        raise NamesError(f"coverage must be between 0 and 1 (e.g. 0.9), not {coverage!r}")
    return float(coverage)


def check_rate(rate: float) -> float:
    """An abstention rate strictly between 0 and 1, or a one-line error. 0 is refused rather than
    read as "never abstain" (leave abstention off for that), and 1 would abstain on everything."""
    if not isinstance(rate, int | float) or not 0.0 < float(rate) < 1.0:
        raise NamesError(f"the abstention rate must be between 0 and 1 (e.g. {ABSTAIN_RATE}), not {rate!r}")
    return float(rate)


def _check_k(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise NamesError(f"k must be a whole number of at least 1, not {k!r}")


def _check_coverage(coverage: float | None) -> None:
    if coverage is not None:
        check_coverage(coverage)


def _check_prior(prior: object) -> None:
    """The prior's form only: its weights are checked against the model's languages when used."""
    if prior is not None and not isinstance(prior, str | Mapping):
        raise NamesError(f"a prior is train, uniform, a file or a mapping of language -> weight, "
                         f"not {type(prior).__name__}")


def _check_level(level: str) -> None:
    if level not in LEVELS:
        raise NamesError(f"unknown level {level!r}: use {', '.join(LEVELS)}")


def _check_order(order: object) -> None:
    if order not in ORDERS:
        raise NamesError(f"the order is one of {', '.join(ORDERS)}, not {order!r}")


def _option(default: Any, help: str, check: Callable[[Any], object] | None = None,
            choices: tuple[str, ...] | None = None, **bounds: float) -> Any:
    """A field with its help text, its check, its bounds (``gt``, ``lt``, ``ge``: pydantic's
    names, which the CLI and the HTTP schema show; ``check`` enforces the same) and, for a word
    from a fixed list, its ``choices`` (a choice on the command line, an enum over HTTP). ``{name}``
    in the help is another option, written as each surface spells it (``--abstain-rate``, ``abstain_rate``)."""
    return field(default=default, metadata={"help": help, "check": check, "bounds": bounds, "choices": choices})


@dataclass(frozen=True, kw_only=True)
class Options:
    """What a prediction should carry besides the top ``k`` (see :meth:`Predictor.predict`).

    Built by keyword only, and checked when built: an ``Options`` that exists is a valid one, so
    every entry point (command line, HTTP, tables, estimator) refuses the same values with the
    same one-line :class:`OptionError`.
    """

    k: int = _option(3, "How many languages per name, most probable first.", _check_k, ge=1)
    abstain: bool = _option(False, "Answer `unknown` for names that fit no language the model knows "
                                   "(see {abstain_rate}).")
    abstain_rate: float = _option(ABSTAIN_RATE, "With {abstain}: the share of names from known languages that may "
                                                "be wrongly abstained on (between 0 and 1, both excluded).",
                                  check_rate, gt=0.0, lt=1.0)
    coverage: float | None = _option(None, "Add the smallest set of languages that holds the true one with this "
                                           "probability (e.g. 0.9).", _check_coverage, gt=0.0, lt=1.0)
    per_language: bool = _option(False, "With {coverage}: calibrate each language on its own, so rare languages "
                                        "are covered too (larger sets).")
    prior: str | Mapping[str, float] | None = _option(
        None, "The language mix of your population: train (the training data's mix, the default), uniform, or "
              "a weight for every language.", _check_prior)
    level: str = _option(LEVELS[0], "Answer with origin groups or regions instead of labels: probabilities summed "
                                    "within a group, sets made of the groups of the labels' set (docs/groups.md).",
                         _check_level, choices=LEVELS)
    surname_only: bool = _option(False, "Classify each input as it is; by default a full name (\"Fyodor "
                                        "Dostoevsky\", \"Berg, Jan van der\") is cut to its surname first. A "
                                        "full-name model reads given names and surname, and with this the "
                                        "surname alone.")
    order: str = _option("auto", "How full names are written: auto (given names first, or \"Last, First\" with "
                                 "a comma), given-first, or family-first (\"Mao Zedong\").", _check_order,
                         choices=ORDERS)
    explain: bool = _option(False, "Say which letters pushed the answer over the runner-up: the n-gram half's "
                                   "log-likelihood ratio at each letter, their total, and how the pooled answer "
                                   "follows from it (docs/explain.md).")

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> Options:
        """``self`` when every option is within its bounds, else a one-line :class:`OptionError`
        naming the first that is not."""
        for option in fields(self):
            check = option.metadata["check"]
            if check is not None:
                try:
                    check(getattr(self, option.name))
                except NamesError as exc:
                    raise OptionError(option.name, str(exc)) from None
        return self


#: The defaults, for signatures that restate them (``k: int = DEFAULTS.k``).
DEFAULTS = Options()


def option_fields() -> tuple[Field, ...]:
    """The fields of :class:`Options`, in the order the CLI and the HTTP schema list them."""
    return fields(Options)


def bounds(option: Field) -> dict[str, float]:
    """``{"gt": 0.0, "lt": 1.0}``: the bounds of one option (pydantic's keywords)."""
    return dict(option.metadata["bounds"])


def choices(option: Field) -> tuple[str, ...] | None:
    """The words an option takes (``("label", "group", "region")``), or None when it is not a choice."""
    return option.metadata["choices"]


def help_text(option: Field, spell: Callable[[str], str]) -> str:
    """The help of one option, with the other options it names spelled by ``spell``."""
    return option.metadata["help"].format_map({f.name: spell(f.name) for f in option_fields()})

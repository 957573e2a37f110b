"""Which letters pushed the answer over the runner-up: the n-gram half's decision, letter by letter.

The n-gram half (:class:`~namesclf.models.ngram.NgramBayes`) scores a name as a product over its
positions, the end of the name included: ``log p(name | l) = sum_i log p(c_i | c_{i-n+1..i-1}, l)``.
So for the answer ``a`` and the runner-up ``b`` its log-odds split exactly into one term per
position plus its training prior::

    log p_ng(a | name) - log p_ng(b | name)
        = sum_i [log p(c_i | context, a) - log p(c_i | context, b)] + log prior(a) - log prior(b)

Each term is that letter's log-likelihood ratio: positive where the letter (in its context) is
likelier in ``a`` than in ``b``. No such split exists for the recurrent network (its answer is not a
sum over letters, and gradient or occlusion scores do not add up to it), so the network gets one
number: its log-odds, which the pool's formula
(:meth:`~namesclf.models.networks.NgramEnsemble.pool`) gives exactly from the pooled
probabilities and the n-gram half's share::

    pooled = (network + weight * ngram - shift * (log prior(a) - log prior(b))) / temperature

``a`` and ``b`` are the first two languages of the answer shown, after any ``prior``: a
population prior can reorder them, and then the explanation says how much of the final log-odds
the prior added (``population_prior_log_odds``); the n-gram half may then favour the runner-up,
and its letters say so with negative terms.

No torch: the per-position terms come from the scorer (an output of the ONNX export, or the torch
module), this module only does the arithmetic and the text.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from namesclf.text import ALPHABET, MAX_NAME_LENGTH

#: How the end of the name (predicted like a letter) and the begin marks of a context are shown.
END = "$"
BEGIN = "^"
#: Positions per row of the text rendering (longer names wrap).
COLUMNS = 16


@dataclass(frozen=True)
class Explanation:
    """Why ``language`` and not ``runner_up``, in nats (natural-log odds).

    ``letters`` are the name's letters then :data:`END`; ``contexts`` the n-gram context each was
    predicted from (:data:`BEGIN` before the name's start); ``contributions`` each position's
    log-likelihood ratio. Their sum plus ``ngram_prior`` is the n-gram half's log-odds.
    """

    language: str
    runner_up: str
    letters: tuple[str, ...]
    contexts: tuple[str, ...]
    contributions: tuple[float, ...]
    ngram_prior: float
    pooled: float
    final: float
    weight: float
    shift: float
    temperature: float

    @property
    def letters_total(self) -> float:
        """The sum of the letters' log-likelihood ratios: the n-gram half's likelihood ratio."""
        return float(sum(self.contributions))

    @property
    def ngram(self) -> float:
        """The n-gram half's log-odds of ``language`` over ``runner_up`` (its posterior)."""
        return self.letters_total + self.ngram_prior

    @property
    def shift_term(self) -> float:
        """What the pool's prior shift adds to its score difference."""
        return -self.shift * self.ngram_prior

    @property
    def network(self) -> float:
        """The network's log-odds: what the pooled log-odds leave once the n-gram share is taken out."""
        return self.temperature * self.pooled - self.weight * self.ngram - self.shift_term

    @property
    def population_prior(self) -> float:
        """What a population prior changed in the log-odds shown (0 without one)."""
        return self.final - self.pooled

    def strongest(self) -> int:
        """The position that pushed hardest toward ``language``."""
        return int(np.argmax(self.contributions))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: every position, and each term of the sum (all in nats)."""
        return {
            "language": self.language, "runner_up": self.runner_up, "unit": "nats",
            "positions": [{"position": i, "char": c, "context": ctx, "log_ratio": x}
                          for i, (c, ctx, x) in enumerate(zip(self.letters, self.contexts, self.contributions,
                                                              strict=True))],
            "letters_log_odds": self.letters_total, "ngram_prior_log_odds": self.ngram_prior,
            "ngram_log_odds": self.ngram, "network_log_odds": self.network,
            "pool": {"weight": self.weight, "shift": self.shift, "temperature": self.temperature},
            "pooled_log_odds": self.pooled, "population_prior_log_odds": self.population_prior,
            "final_log_odds": self.final,
        }


def _log(p: float) -> float:
    """``log p`` of a probability from the graph (float32), floored at float32's smallest normal
    number so that a runner-up rounded to 0 gives a large finite log-odds, not an infinite one."""
    return float(np.log(max(float(p), float(np.finfo(np.float32).tiny))))


def contexts_of(folded: str, order: int) -> list[str]:
    """The context each position of ``folded`` (and its end) is predicted from: the ``order - 1``
    symbols before it, :data:`BEGIN` for the begin marks the name is framed with."""
    framed = BEGIN * (order - 1) + folded
    return [framed[i : i + order - 1] for i in range(len(folded) + 1)]


def letters_read(folded: str) -> str:
    """The letters of a folded name that the model reads, as :func:`~namesclf.text.encode_batch`
    takes them: the first :data:`~namesclf.text.MAX_NAME_LENGTH`, those of the alphabet."""
    return "".join(c for c in folded.encode("ascii", "ignore")[:MAX_NAME_LENGTH].decode() if c in ALPHABET)


def explain_name(folded: str, tokens: np.ndarray, raw: np.ndarray, final: np.ndarray, top: Sequence[int],
                 labels: Sequence[str], terms: dict[str, Any]) -> Explanation:
    """The explanation of one name.

    ``tokens`` is the n-gram half's ``log p(symbol | context, language)`` per position of the
    letters it read (:func:`letters_read`) and the end, ``(letters + 1, n_languages)``; ``raw``
    the pooled probabilities, ``final`` those shown (after a population prior); ``top`` the
    indices of the answer and the runner-up in ``final``; ``terms`` the scorer's ``pool_terms()``.
    """
    folded = letters_read(folded)
    if len(tokens) != len(folded) + 1:
        raise ValueError(f"{len(tokens)} positions for {len(folded)} letters and the end")
    a, b = int(top[0]), int(top[1])
    column = np.asarray(tokens, dtype=np.float64)
    ratios = column[:, a] - column[:, b]
    prior = terms["log_prior"]
    return Explanation(
        language=labels[a], runner_up=labels[b], letters=(*folded, END),
        contexts=tuple(contexts_of(folded, int(terms["order"]))), contributions=tuple(ratios.tolist()),
        ngram_prior=float(prior[a]) - float(prior[b]), pooled=_log(raw[a]) - _log(raw[b]),
        final=_log(final[a]) - _log(final[b]), weight=float(terms["weight"]), shift=float(terms["shift"]),
        temperature=float(terms["temperature"]))


def render(explanation: Explanation, style: Callable[[str, float], str] | None = None) -> list[str]:
    """The explanation as text lines: the letters in columns with each one's log-likelihood ratio
    under it (``style(text, contribution)`` may colour a letter), then how the totals add up."""
    e = explanation
    cells = [f"{x:+.2f}" for x in e.contributions]
    width = max(len(c) for c in cells) + 1
    lines = [f"  why {e.language} over {e.runner_up} (n-gram log-likelihood ratio per letter, nats):"]
    for start in range(0, len(cells), COLUMNS):
        stop = start + COLUMNS
        shown = [" " * (width - 1) + (style(c, x) if style else c)
                 for c, x in zip(e.letters[start:stop], e.contributions[start:stop], strict=True)]
        lines += ["  " + "".join(shown), "  " + "".join(c.rjust(width) for c in cells[start:stop])]
    lines.append(f"  letters {e.letters_total:+.2f} + n-gram prior {e.ngram_prior:+.2f} = n-gram half "
                 f"{e.ngram:+.2f}; strongest: {e.letters[e.strongest()]!r} at {e.strongest() + 1}")
    lines.append(f"  pooled {e.pooled:+.2f} = (network {e.network:+.2f} + {e.weight:.2f} x n-gram {e.ngram:+.2f} "
                 f"{e.shift_term:+.2f} prior shift) / {e.temperature:.2f}")
    if abs(e.population_prior) > 1e-6:
        lines.append(f"  population prior {e.population_prior:+.2f}: shown {e.final:+.2f}")
    return lines

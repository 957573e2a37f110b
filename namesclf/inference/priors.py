"""Population priors: re-weigh ``p(language | name)`` for a population whose language mix is not
the training data's, by Bayes' rule.

The pooled model's probabilities are calibrated on validation names drawn from the training mix
(its temperature is fitted for that), so they estimate ``p_train(l | x)``, which is
``p(x | l) * pi_train(l)`` normalised; the prior shift and temperature inside the model are part of
how it estimates that posterior, not a different prior. For a population with prior ``pi``, the
likelihood ``p(x | l)`` is the same (label shift), so

    p_pi(l | x) = p_train(l | x) * pi(l) / pi_train(l), normalised over l

(Saerens et al., 2002). ``train`` leaves the answer as it is; ``uniform`` gives every language the
same prior, which is what balanced accuracy rewards. ``pi_train`` is the training names' language
mix, add-one smoothed as the n-gram half counts it, and stored in the model file.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from namesclf.errors import NamesError


def train_prior(counts: Sequence[float]) -> np.ndarray:
    """The training mix from per-language name counts, add-one smoothed (no language impossible)."""
    n = np.asarray(counts, dtype=np.float64) + 1.0
    return n / n.sum()


def read_prior_file(path: str | Path) -> dict[str, float]:
    """``{language: weight}`` from a JSON object or a two-column CSV/TSV (``language,weight``,
    header optional)."""
    p = Path(path)
    if not p.is_file():
        raise NamesError(f"--prior {path}: no such file (use train, uniform, or a JSON/CSV file)")
    text = p.read_text(encoding="utf-8-sig")
    if p.suffix.lower() == ".json":
        try:
            values = json.loads(text)
        except json.JSONDecodeError as exc:
            raise NamesError(f"--prior {path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
        if not isinstance(values, dict):
            raise NamesError(f"--prior {path}: expected a JSON object of language -> weight")
        return {str(k): values[k] for k in values}
    delimiter = "\t" if p.suffix.lower() in (".tsv", ".tab") else ","
    rows = [r for r in csv.reader(io.StringIO(text), delimiter=delimiter) if r and any(c.strip() for c in r)]
    if rows and _not_number(rows[0][-1]):
        rows = rows[1:]  # a header
    if any(len(r) != 2 for r in rows):
        raise NamesError(f"--prior {path}: expected two columns, language and weight")
    return {r[0].strip(): r[1].strip() for r in rows}


def _not_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return True
    return False


def resolve_prior(spec: str | Mapping[str, float] | None, labels: Sequence[str]) -> np.ndarray | None:
    """The population prior over ``labels`` for ``spec``: ``None`` for ``train`` (nothing to do),
    the uniform vector, or the normalised weights of a mapping or file. Every language must be
    given (a language the model does not know is an error, and so is one left out), weights must
    be finite and non-negative, and they must not all be 0."""
    if spec is None or (isinstance(spec, str) and spec == "train"):
        return None
    if isinstance(spec, str) and spec == "uniform":
        return np.full(len(labels), 1.0 / len(labels))
    source = f"--prior {spec}" if isinstance(spec, str) else "the prior"
    weights = read_prior_file(spec) if isinstance(spec, str) else dict(spec)
    unknown = sorted(set(weights) - set(labels))
    if unknown:
        raise NamesError(f"{source}: unknown language(s) {', '.join(unknown)} (the model knows {', '.join(labels)})")
    missing = [lang for lang in labels if lang not in weights]
    if missing:
        raise NamesError(f"{source}: no weight for {', '.join(missing)} (give every language a weight, 0 allowed)")
    try:
        vector = np.array([float(weights[lang]) for lang in labels])
    except (TypeError, ValueError):
        raise NamesError(f"{source}: every weight must be a number") from None
    if not np.all(np.isfinite(vector)) or (vector < 0).any():
        raise NamesError(f"{source}: weights must be finite and not negative")
    total = vector.sum()
    if total <= 0 or not math.isfinite(total):
        raise NamesError(f"{source}: the weights sum to 0; give at least one language a positive weight")
    return vector / total


def reweight(proba: np.ndarray, trained_on: np.ndarray, prior: np.ndarray | None) -> np.ndarray:
    """``p(l | x) * prior(l) / trained_on(l)``, renormalised per row (``prior=None``: unchanged)."""
    if prior is None:
        return proba
    scaled = np.asarray(proba, dtype=np.float64) * (prior / trained_on)[None, :]
    total = scaled.sum(axis=1, keepdims=True)
    # a name whose every likely language got weight 0 keeps the prior itself rather than 0 / 0
    return np.where(total > 0, scaled / np.where(total > 0, total, 1.0), prior[None, :]).astype(proba.dtype)

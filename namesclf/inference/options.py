""":class:`Options`, the one source of prediction options: what the CLI, the HTTP API, tables and
the estimator let a user ask for beyond the top languages, with their defaults.
"""

from __future__ import annotations

from dataclasses import dataclass

from namesclf.inference.openset import ABSTAIN_RATE

#: Names per forward pass on CPU / on an accelerator (see :meth:`Predictor.proba_ascii`).
CPU_BATCH = 2048
GPU_BATCH = 4096


#: What an abstained prediction shows in place of a language.
UNKNOWN = "unknown"


@dataclass(frozen=True)
class Options:
    """What a prediction should carry besides the top ``k`` (see :meth:`Predictor.predict`)."""

    k: int = 3
    coverage: float | None = None
    per_language: bool = False
    prior: str | dict[str, float] | None = None
    abstain: bool = False
    abstain_rate: float = ABSTAIN_RATE
    surname_only: bool = False


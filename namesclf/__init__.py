"""namesclf: which language does a surname come from?

>>> from namesclf import load_model, to_ascii
>>> to_ascii("Ślusàrski")
'Slusarski'

Classification: :class:`NameClassifier` (a scikit-learn estimator) and :func:`load_model`.
Next-token tasks: :class:`CharLM`, :func:`load_lm`, :func:`generate_names`, :func:`complete`,
:func:`next_tokens`. Tables: :func:`predict_frame`.

The names are imported on first use (PEP 562), so ``import namesclf.inference.predictor`` loads what
prediction needs and nothing of training.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: Public name -> the module that defines it.
_EXPORTS = {
    "CharLM": "lm.model",
    "NameClassifier": "estimator",
    "NamesError": "errors",
    "complete": "lm.generate",
    "generate_names": "lm.generate",
    "load_lm": "lm.generate",
    "load_model": "estimator",
    "next_tokens": "lm.generate",
    "predict_frame": "inference.tables",
    "to_ascii": "text",
}
__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))

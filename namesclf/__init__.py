"""namesclf: which language does a surname come from?

>>> from namesclf import load_model, to_ascii
>>> to_ascii("Ślusàrski")
'Slusarski'

Classification: :class:`NameClassifier` (a scikit-learn estimator) and :func:`load_model`.
Next-token tasks: :class:`CharLM`, :func:`load_lm`, :func:`generate_names`, :func:`complete`,
:func:`next_tokens`.
"""

from .classifier import NameClassifier, load_model
from .errors import NamesError
from .generate import complete, generate_names, load_lm, next_tokens
from .models import CharLM
from .text import to_ascii

__version__ = "0.1.0"
__all__ = [
    "CharLM",
    "NameClassifier",
    "NamesError",
    "__version__",
    "complete",
    "generate_names",
    "load_lm",
    "load_model",
    "next_tokens",
    "to_ascii",
]

"""namesclf: which language does a surname come from?

>>> from namesclf import load_model, to_ascii
>>> to_ascii("Ślusàrski")
'Slusarski'
"""

from .classifier import NameClassifier, load_model
from .errors import NamesError
from .text import to_ascii

__version__ = "0.1.0"
__all__ = ["NameClassifier", "NamesError", "__version__", "load_model", "to_ascii"]

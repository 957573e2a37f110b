"""The one exception type for problems the user can fix (bad data, bad model file, bad input).

Library code raises :class:`NamesError` with a one-line message; the CLI turns it into a
``click.ClickException`` (exit 1, no traceback) and the HTTP API into a 4xx JSON error. Anything
else that escapes is a bug and is allowed to traceback.
"""

from __future__ import annotations

from pathlib import Path


def first_line(exc: BaseException, default: str | None = None) -> str:
    """The first line of ``exc``'s message, for a one-line error: parsers, unpicklers and runtimes
    put tracebacks and dumps after it. ``default`` (else the exception's type name) when it has none."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else (default or type(exc).__name__)


class NamesError(Exception):
    """A user-fixable error whose message is a single line that says what to do."""


class DataError(NamesError):
    """A data file or folder cannot be read as names."""


class ModelFileError(NamesError):
    """A model file is missing, damaged, unsafe, or of an unknown format."""


def check_model_path(path: Path) -> None:
    """A :class:`ModelFileError` unless ``path`` is an existing file: checked before the code that
    reads model files (torch, ONNX Runtime) is imported, which takes seconds."""
    if not path.exists():
        raise ModelFileError(f"{path}: no such model file (train one with `names train DATA --out {path}`)")
    if not path.is_file():
        raise ModelFileError(f"{path}: not a file")


class TrainingInterrupted(NamesError):
    """Ctrl-C during training. ``saved`` says whether a best checkpoint was written this run."""

    def __init__(self, message: str, saved: bool) -> None:
        super().__init__(message)
        self.saved = saved

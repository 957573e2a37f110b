"""The one exception type for problems the user can fix (bad data, bad model file, bad input).

Library code raises :class:`NamesError` with a one-line message; the CLI turns it into a
``click.ClickException`` (exit 1, no traceback) and the HTTP API into a 4xx JSON error. Anything
else that escapes is a bug and is allowed to traceback.
"""


class NamesError(Exception):
    """A user-fixable error whose message is a single line that says what to do."""


class DataError(NamesError):
    """A data file or folder cannot be read as names."""


class ModelFileError(NamesError):
    """A model file is missing, damaged, unsafe, or of an unknown format."""


class TrainingInterrupted(NamesError):
    """Ctrl-C during training. ``saved`` says whether a best checkpoint was written this run."""

    def __init__(self, message: str, saved: bool) -> None:
        super().__init__(message)
        self.saved = saved

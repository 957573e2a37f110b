"""The ``names`` command line: :func:`main` is the console script, :data:`cli` the click group."""

from namesclf.cli.main import cli, main

__all__ = ["cli", "main"]

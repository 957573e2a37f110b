"""The ``names`` group: one thin module per command (``data``, ``train``, ``predict``,
``estimate``, ``evaluate``, ``export``, ``serve``, ``lm``), each parsing options, calling the library by keyword
and printing. No logic a Python user would want lives here.

Every user-fixable problem raised below is a :class:`~namesclf.errors.NamesError`;
:class:`~namesclf.cli.console.NamesGroup` turns it into one line on stderr and exit code 1, never
a traceback.
"""

from __future__ import annotations

import click

from namesclf.cli.console import NamesGroup
from namesclf.cli.data import data
from namesclf.cli.estimate import estimate
from namesclf.cli.evaluate import evaluate
from namesclf.cli.export import export
from namesclf.cli.lm import complete, generate, lm
from namesclf.cli.predict import predict
from namesclf.cli.serve import serve
from namesclf.cli.train import train


@click.group(cls=NamesGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="namesclf", prog_name="names")
def cli() -> None:
    """Which language does a surname come from?

    \b
    Quick tour:
      names data fetch                    # the 18-language surname set into data/names
      names train data/names              # writes models/names.pt and its report
      names predict Dostoevsky Nakamura   # top-3 languages with probabilities
      names evaluate data/names --split test
      echo O\\'Brien | names predict --input - --format csv

    Run `names COMMAND --help` for each command's options.
    """


for command in (data, train, predict, estimate, export, evaluate, serve, lm, generate, complete):
    cli.add_command(command)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="names")

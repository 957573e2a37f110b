"""``names predict``: names as arguments, lines on stdin or a file, or a table (CSV/TSV/Parquet),
in-process or on a Dask cluster.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Any, get_type_hints

import click

from namesclf.cli.console import backend_option, echo_json, model_option
from namesclf.config import (
    PREDICTION_FORMATS,
    STREAM_BATCH,
)
from namesclf.errors import NamesError, first_line
from namesclf.inference.options import (
    DEFAULTS,
    NAMED_PRIORS,
    ORDERS,
    OptionError,
    Options,
    bounds,
    choices,
    help_text,
    option_fields,
)


def _format_line(pred: Any) -> str:
    """``Name  Russian 0.97  Czech 0.02``; ``unknown`` first when abstained, or alone with the
    script no language of the model writes; the set in braces."""
    name = pred.name if pred.surname is None else f"{pred.name} [{pred.surname}]"
    if pred.reason == "script":
        from namesclf.data.scripts import native_scripts

        scripts = ", ".join(sorted(native_scripts(pred.surname or pred.name)))
        return f"{name}  unknown (script: no language of this model writes {scripts})"
    if not pred.languages:
        return f"{name}\t(no letters)"
    parts = ["  ".join(f"{lang} {p:.2f}" for lang, p in pred.languages)]
    if pred.abstained:
        parts = [f"unknown (novelty {pred.novelty:.2f}; closest: {parts[0]})"]
    if pred.prediction_set is not None:
        parts.append("{" + ", ".join(pred.prediction_set) + "}")
    return f"{name}  " + "  ".join(parts)


def _float_or_none(value: str | None, option: str) -> float | None:
    """A number for ``option`` or a one-line error (click's own range errors are three lines, exit 2)."""
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        raise NamesError(f"{option} must be a number, not {value!r}") from None


# ----------------------------------------------------------------------------- options from Options

#: How the command line spells an option whose flag is not its field's name with dashes.
FLAGS = {"k": ("--top-k", "-k")}
#: What an option's help says on the command line only.
NOTES = {"prior": " FILE: a JSON object or a CSV of language,weight."}
METAVARS = {"prior": "|".join(NAMED_PRIORS) + "|FILE", "order": "|".join(ORDERS)}


def flag(name: str) -> str:
    """``abstain_rate`` -> ``--abstain-rate``: how this command writes an option of :class:`Options`."""
    return FLAGS.get(name, (f"--{name.replace('_', '-')}",))[0]


def option_decorators() -> list[Any]:
    """One click option per field of :class:`~namesclf.inference.options.Options`, named as the
    field, with its help, bounds and default: the command cannot miss or restate one."""
    decorators = []
    for field in option_fields():
        decls = (*FLAGS.get(field.name, (flag(field.name),)), field.name)
        text = help_text(field, flag) + NOTES.get(field.name, "")
        default = getattr(DEFAULTS, field.name)
        kinds = _kinds(field.name)
        words = choices(field)
        if words is not None:
            decorators.append(click.option(*decls, type=click.Choice(words), default=default, show_default=True,
                                           help=text))
        elif kinds == {bool}:
            if default:  # a flag that is on unless turned off
                decls = (f"{flag(field.name)}/--no-{flag(field.name)[2:]}", field.name)
            decorators.append(click.option(*decls, is_flag=True, default=default, help=text))
        elif kinds == {int}:
            limits = bounds(field)
            decorators.append(click.option(*decls, type=click.IntRange(limits.get("ge"), limits.get("le")),
                                           default=default, show_default=True, help=text))
        elif float in kinds or str in kinds:
            # read as text: a number's range errors then come from Options.check, in one line
            decorators.append(click.option(*decls, default=None if default is None else str(default),
                                           show_default=default is not None,
                                           metavar=METAVARS.get(field.name, "NUMBER"), help=text))
        else:
            raise TypeError(f"Options.{field.name} ({kinds}) has no command-line form: add one in {__name__}")
    return decorators


def _kinds(name: str) -> set[Any]:
    """The types an :class:`Options` field may hold (``float | None`` -> ``{float, NoneType}``)."""
    kind = get_type_hints(Options)[name]
    return set(getattr(kind, "__args__", (kind,)))


def with_options(command: Any) -> Any:
    """Apply :func:`option_decorators` (first field first in ``--help``)."""
    for decorator in reversed(option_decorators()):
        command = decorator(command)
    return command


def options_from_cli(values: dict[str, Any]) -> Options:
    """The :class:`Options` the command line asked for: numbers parsed, then checked once by
    :meth:`Options.check` (``--abstain-rate 0`` is an error, not the default)."""
    given = {}
    for name, value in values.items():
        if isinstance(value, str) and float in _kinds(name):
            value = _float_or_none(value, flag(name))
        if value is not None:
            given[name] = value
    try:
        return Options(**given)
    except OptionError as exc:
        raise NamesError(f"{flag(exc.option)}: {exc}") from None


# ----------------------------------------------------------------------------- the command


@click.command()
@click.argument("names", nargs=-1)
@model_option()
@with_options
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list (for NAME arguments).")
@click.option("--input", "input_path", metavar="FILE",
              help="Read names from FILE ('-' for stdin): one per line, or a table with --column.")
@click.option("--column", default=None,
              help="--input is a table (CSV, TSV or Parquet, by suffix): classify this column, keep every other.")
@click.option("--given-column", default=None, metavar="COLUMN",
              help="With --column: the table's given names are in this column and --column holds surnames "
              "(a full-name model reads both; a surname model reads --column alone).")
@click.option("--output", "output_path", default=None, metavar="FILE",
              help="With --column: write the table here (format from the suffix) instead of CSV on stdout.")
@click.option("--force", is_flag=True,
              help="Overwrite an existing --output file (a folder, link, device or FIFO is never replaced).")
@click.option("--format", "fmt", type=click.Choice(PREDICTION_FORMATS), default=PREDICTION_FORMATS[0],
              show_default=True, help="Output format with --input (one name per line).")
@click.option("--batch-size", type=click.IntRange(1, 1_000_000), default=STREAM_BATCH, show_default=True,
              help="Names per batch with --input (memory stays bounded).")
@click.option("--scheduler", default=None, metavar="local:N|tcp://HOST:PORT",
              help="With --column: classify the table on Dask, on N local worker processes or a running "
              "cluster (pip install 'namesclf[scale]'). --input may be a folder of Parquet files; an --output "
              "with no suffix (or ending in /) is written as a folder of Parquet files, one per partition.")
@click.option("--scheduler-timeout", default="10", show_default=True, metavar="SECONDS",
              help="With --scheduler tcp://...: how long to wait for the scheduler to answer.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar or notes on stderr.")
@backend_option()
def predict(names: tuple[str, ...], model_path: str, as_json: bool, input_path: str | None, column: str | None,
            given_column: str | None, output_path: str | None, force: bool, fmt: str, batch_size: int,
            scheduler: str | None, scheduler_timeout: str, quiet: bool, backend: str, **option_values: Any) -> None:
    """Top-k languages of each NAME with probabilities.

    \b
      names predict Dostoevsky            Dostoevsky  Russian 0.97  Czech 0.02  Polish 0.01
      names predict "Fyodor Dostoevsky"   Fyodor Dostoevsky [Dostoevsky]  Russian 0.97 ...
      names predict Okonkwo --abstain     Okonkwo  unknown (novelty ...; closest: ...)
      names predict Nakamura --coverage 0.9 --prior uniform
      names predict Novak --level group       Novak  West Slavic 0.90  West Germanic 0.03 ...
      names predict Nakamura --explain    which letters made it Japanese, not Italian
      names predict --input names.txt --format csv > predictions.csv
      names predict --input people.parquet --column last_name --output people.csv
      names predict --input people.csv --column last_name --given-column first_name
      names predict --input big.parquet --column last_name --output out.parquet --scheduler local:4
    """
    from namesclf.inference.predictor import Predictor

    _check_sources(names, input_path, column, output_path, scheduler)
    if given_column is not None and column is None:
        raise click.UsageError("--given-column goes with --column (a table)")
    _check_output(output_path, scheduler, force)
    options = options_from_cli(option_values)
    if scheduler is not None:
        with _clash_in_cli_words():
            _predict_table_on_dask(model_path, input_path, column, output_path, options, scheduler, quiet, force,
                                   _float_or_none(scheduler_timeout, "--scheduler-timeout"), given_column)
        return
    predictor = _load(Predictor, model_path, backend)
    _note_level(predictor.labels, options, quiet)
    if input_path is None:
        _predict_names(predictor, names, options, as_json)
    elif column is not None:
        with _clash_in_cli_words():
            _predict_table(predictor, input_path, column, output_path, options, quiet, force, given_column)
    else:
        _predict_lines(predictor, input_path, options, fmt, batch_size, quiet)


def _note_level(labels: list[str], options: Options, quiet: bool) -> None:
    """Once per command, not per name: which of the model's labels the origin-group table does not
    know (each then stands as a group or region of its own)."""
    from namesclf.inference.groups import level_map

    note = level_map(labels, options.level).note()
    if note is not None and not quiet:
        click.echo(note, err=True)


def _check_sources(names: tuple[str, ...], input_path: str | None, column: str | None, output_path: str | None,
                   scheduler: str | None) -> None:
    """The usage errors: where the names come from and where they go must fit together."""
    if not names and input_path is None:
        raise click.UsageError("give one or more NAMEs, or --input FILE (use - for stdin)")
    if names and input_path is not None:
        raise click.UsageError("give NAMEs or --input, not both")
    if (column is None) and output_path is not None:
        raise click.UsageError("--output goes with --column (a table); one name per line streams to stdout")
    if scheduler is not None and (column is None or input_path in (None, "-")):
        raise click.UsageError("--scheduler goes with --input FILE --column COL (a table file, not stdin)")


@contextlib.contextmanager
def _clash_in_cli_words() -> Iterator[None]:
    """A table that already has a prediction column: the library's advice (``prefix=``) is for
    Python callers; this command has no prefix option, so say what to do here."""
    from namesclf.inference.frames import ColumnClash

    try:
        yield
    except ColumnClash as exc:
        raise NamesError(f"the table already has column(s) {', '.join(exc.columns)}, which names predict adds: "
                         "rename or drop them in the input file") from None


def _predict_names(predictor: Any, names: tuple[str, ...], options: Options, as_json: bool) -> None:
    results = predictor.predict_with(list(names), options)
    if as_json:
        echo_json([r.to_dict() for r in results])
        return
    for r in results:
        click.echo(_format_line(r))
        if r.explanation is not None:
            from namesclf.inference.explain import render

            # click.echo drops the colours when stdout is not a terminal: the numbers carry it all.
            for line in render(r.explanation, _colour):
                click.echo(line)


def _colour(text: str, contribution: float) -> str:
    """A letter coloured by its push: green toward the answer, red toward the runner-up, bold past 1 nat."""
    if abs(contribution) < 0.25:
        return click.style(text, dim=True)
    return click.style(text, fg="green" if contribution > 0 else "red", bold=abs(contribution) >= 1.0)


def _predict_lines(predictor: Any, input_path: str, options: Options, fmt: str, batch_size: int, quiet: bool
                   ) -> None:
    from namesclf.inference.output import read_lines, write_predictions

    with read_lines(input_path) as lines:
        # sys.stdout, not click's stream: CliRunner swaps sys.stdout too
        skipped = write_predictions(predictor, lines, sys.stdout, options, fmt, batch_size,
                                    progress=False if quiet else None)
    if skipped and not quiet:
        click.echo(f"{skipped:,} lines had no letters after folding and have no prediction", err=True)


def _load(predictor_class: Any, model_path: str, backend: str) -> Any:
    """The predictor, with each warning loading gave (a stale or unusable export: torch answers)
    as one ``Warning:`` line on stderr rather than Python's two-line warning with a source line."""
    import os
    import warnings

    # OMP_NUM_THREADS caps ONNX Runtime's threads as it caps torch's, and a capped session does not
    # spin while idle: on cores other work shares, spinning threads take them from it.
    threads = os.environ.get("OMP_NUM_THREADS", "")
    with warnings.catch_warnings(record=True) as caught:
        predictor = predictor_class.load(model_path, backend=backend,
                                         threads=int(threads) if threads.isdigit() and int(threads) > 0 else None)
    for warning in caught:
        click.echo(f"Warning: {first_line(warning.message)}", err=True)
    return predictor


def _check_output(output_path: str | None, scheduler: str | None, force: bool) -> None:
    """Where the table goes, checked before the model is even loaded: a bad --output costs nothing,
    and nothing the user has is replaced (namesclf.files.check_output)."""
    if output_path is None or output_path == "-":
        return
    from namesclf.files import check_output
    from namesclf.inference.tables import TABLE_SUFFIXES

    if scheduler is not None:
        from namesclf.inference.dask_tables import is_dataset_path

        if is_dataset_path(output_path):
            check_output(output_path, kind="dataset")
            return
    check_output(output_path, force, suffixes=TABLE_SUFFIXES)


def _predict_table(predictor: Any, input_path: str, column: str, output_path: str | None, options: Any,
                   quiet: bool, force: bool = False, given_column: str | None = None) -> None:
    from namesclf.inference.tables import check_text_column, predict_pandas, read_table, write_table

    check_text_column(input_path, column)
    if given_column is not None:
        check_text_column(input_path, given_column)
    table = read_table(input_path)
    if table.empty and column not in table.columns:
        raise NamesError(f"{input_path}: the table is empty")
    result = predict_pandas(table, column, predictor, options, given_column=given_column)
    written = write_table(result, output_path or "-", force=force)
    empty = int(result["language"].isna().sum())
    if not quiet:
        if empty:
            click.echo(f"{empty:,} rows had an empty or unreadable {column!r} and have no prediction", err=True)
        if written is not None:
            click.echo(f"wrote {written} ({len(result):,} rows)", err=True)


def _predict_table_on_dask(model_path: str, input_path: str, column: str, output_path: str | None, options: Any,
                           scheduler: str, quiet: bool, force: bool = False, timeout: float | None = None,
                           given_column: str | None = None) -> None:
    from namesclf.inference.dask_tables import (
        connect,
        is_dataset_path,
        predict_dask_frame,
        read_table_lazy,
        write_dataset,
        write_one_file,
    )
    from namesclf.inference.tables import check_text_column

    check_text_column(input_path, column)
    with connect(scheduler, **({} if timeout is None else {"timeout": timeout})) as client:
        threads = sum(client.nthreads().values())
        result = predict_dask_frame(read_table_lazy(input_path, threads), column, model_path, options,
                                    given_column=given_column)
        if options.level != "label":
            from namesclf.inference.predictor import Predictor

            _note_level(Predictor.load(model_path).labels, options, quiet)
        if output_path is not None and is_dataset_path(output_path):
            folder = write_dataset(result, output_path)
            if not quiet:
                click.echo(f"wrote {folder}/ ({result.npartitions:,} Parquet files)", err=True)
            return
        written, rows, empty = write_one_file(result, client, output_path or "-", ahead=2 * threads, force=force)
    if not quiet:
        if empty:
            click.echo(f"{empty:,} rows had an empty or unreadable {column!r} and have no prediction", err=True)
        if written is not None:
            click.echo(f"wrote {written} ({rows:,} rows)", err=True)


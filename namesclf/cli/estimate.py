"""``names estimate``: the language mix of a population (a table's column, a file of names, or
names as arguments), each share with an interval, as text, JSON or a bar chart; a big table's
column on a Dask cluster with ``--scheduler``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from namesclf.cli.console import backend_option, echo_json, model_option
from namesclf.config import LEVELS, MIX_BOOTSTRAP, MIX_CONFIDENCE, MIX_METHODS
from namesclf.errors import NamesError

if TYPE_CHECKING:
    from namesclf.inference.mix import MixEstimate


@click.command()
@click.argument("names", nargs=-1)
@model_option()
@click.option("--input", "input_path", metavar="FILE",
              help="A table (CSV/TSV/Parquet; name the column with --column) or a file of names, one per line "
              "('-': stdin).")
@click.option("--column", default=None, help="The table column that holds the names.")
@click.option("--level", type=click.Choice(LEVELS), default=LEVELS[0], show_default=True,
              help="Estimate the mix of labels, of origin groups (East Slavic) or of regions (Slavic).")
@click.option("--method", type=click.Choice(MIX_METHODS), default=MIX_METHODS[0], show_default=True,
              help="em: maximum likelihood under label shift; cc: classify and count; mean: mean probability.")
@click.option("--bootstrap", type=click.IntRange(0, 10_000), default=MIX_BOOTSTRAP, show_default=True,
              help="Resamples of the names behind the intervals (0: no intervals).")
@click.option("--confidence", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=MIX_CONFIDENCE,
              show_default=True, help="The intervals' nominal coverage.")
@click.option("--seed", type=int, default=0, show_default=True, help="Makes the resampling reproducible.")
@click.option("--surname-only", is_flag=True,
              help="Every entry is a surname already; by default a full name is cut to its surname.")
@click.option("--plot", "plot_path", metavar="PNG", default=None, help="Also draw the mix with its intervals.")
@click.option("--force", is_flag=True, help="Overwrite an existing --plot file.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.option("--quiet", "-q", is_flag=True, help="No notes on stderr.")
@click.option("--scheduler", default=None, metavar="local:N|tcp://HOST:PORT",
              help="Count and score a table's column on Dask (needs --input FILE --column COL): local:N starts N "
              "worker processes here; tcp://HOST:PORT uses a running scheduler.")
@click.option("--scheduler-timeout", type=click.FloatRange(0, min_open=True), default=10.0, show_default=True,
              metavar="SECONDS", help="With --scheduler tcp://...: how long to wait for the scheduler to answer.")
@backend_option()
def estimate(names: tuple[str, ...], model_path: str, input_path: str | None, column: str | None, level: str,
             method: str, bootstrap: int, confidence: float, seed: int, surname_only: bool, plot_path: str | None,
             force: bool, as_json: bool, quiet: bool, scheduler: str | None, scheduler_timeout: float,
             backend: str) -> None:
    """What share of a population's names comes from each language (or group, or region).

    \b
    Examples:
      names estimate --input voters.csv --column last_name --level group
      names estimate --input authors.txt --plot mix.png
      names estimate Ivanov Kowalski Nowak Petrenko --json
      names estimate --input big.parquet --column last_name --scheduler local:4

    The default method re-estimates the population's mix by maximum likelihood from the model's
    calibrated probabilities (EM; Saerens et al. 2002), which corrects the bias of counting each
    name's top answer when the population's mix is not the training data's. The intervals combine
    resampling the names (how much a table of this size can tell) with the model's own error on
    mixes of its validation names, which the model file carries (docs/groups.md); a model file
    trained before that was measured gives the resampling alone, and says so.
    """
    from namesclf.files import check_output

    if bool(names) == bool(input_path):
        raise NamesError("give names as arguments or --input FILE (not both)")
    if scheduler is not None and (column is None or input_path in (None, "-")):
        raise click.UsageError("--scheduler goes with --input FILE --column COL (a table file, not stdin)")
    if plot_path:
        check_output(plot_path, force, suffixes=(".png",), option="--plot")

    from namesclf.inference.groups import level_map
    from namesclf.inference.mix import NO_MODEL_ERROR_NOTE, estimate_mix, model_error_of
    from namesclf.inference.predictor import Predictor

    predictor = Predictor.load(model_path, backend=backend)
    notes = [level_map(predictor.labels, level).note()]
    if bootstrap and model_error_of(predictor.meta, len(predictor.labels), method) is None:
        notes.append(NO_MODEL_ERROR_NOTE)
    for note in notes:
        if note and not quiet:
            click.echo(note, err=True)
    if scheduler is not None:
        assert input_path is not None and column is not None
        result = _estimate_on_dask(model_path, input_path, column, scheduler, scheduler_timeout, level=level,
                                   method=method, bootstrap=bootstrap, confidence=confidence, seed=seed,
                                   surname_only=surname_only)
    else:
        population = list(names) if names else _read_population(input_path, column)
        result = estimate_mix(predictor, population, level=level, method=method, bootstrap=bootstrap,
                              confidence=confidence, seed=seed, surname_only=surname_only)
    if plot_path:
        from namesclf.report.plots import plot_mix

        plot_mix(result.rows(), plot_path, f"Estimated {level} mix of {result.n:,} names ({method})")
    if as_json:
        echo_json(result.to_dict())
    else:
        _print_mix(result)
    if plot_path and not quiet:
        click.echo(f"wrote {plot_path}", err=True)


def _estimate_on_dask(model_path: str, input_path: str, column: str, scheduler: str, timeout: float,
                      **arguments: Any) -> MixEstimate:
    """The mix of a table's column counted and scored on a Dask cluster (:func:`estimate_dask_frame`)."""
    from namesclf.inference.dask_tables import connect, estimate_dask_frame, read_table_lazy
    from namesclf.inference.tables import check_text_column

    check_text_column(input_path, column)
    with connect(scheduler, timeout=timeout) as client:
        threads = sum(client.nthreads().values())
        return estimate_dask_frame(read_table_lazy(input_path, threads), column, model_path, **arguments)


def _read_population(input_path: str, column: str | None) -> list[str]:
    """The names of a table's column, or the lines of a file (blank lines skipped)."""
    if column is not None:
        from namesclf.inference.tables import check_text_column, read_table

        check_text_column(input_path, column)
        table = read_table(input_path)
        if column not in table.columns:
            raise NamesError(f"{input_path}: no column {column!r} (columns: {', '.join(map(str, table.columns))})")
        return [name for name in table[column].tolist() if isinstance(name, str) and name.strip()]
    from namesclf.inference.output import read_lines

    with read_lines(input_path) as lines:
        return [line.strip() for line in lines if line.strip()]


#: Text output leaves out labels whose whole interval is below this share (``--json`` lists all).
SHOWN_FROM = 0.0005


def _print_mix(result: MixEstimate) -> None:
    rows = [r for r in result.rows() if r["high"] >= SHOWN_FROM]
    hidden = len(result.labels) - len(rows)
    width = max(len(str(r["label"])) for r in rows)
    percent = round(result.confidence * 100)
    click.echo(f"{'':<{width}}  share  {percent}% interval")
    for r in rows:
        click.echo(f"{r['label']:<{width}}  {r['share']:.3f}  {r['low']:.3f}-{r['high']:.3f}")
    skipped = f"; {result.skipped:,} with no letters left out" if result.skipped else ""
    rest = f"; {hidden} more under {SHOWN_FROM:.2%} not shown" if hidden else ""
    click.echo(f"{result.n:,} names, method {result.method}, intervals: {result.intervals}{skipped}{rest}")

"""``names estimate``: the language mix of a population (a table's column, a file of names, or
names as arguments), each share with a bootstrap interval, as text, JSON or a bar chart."""

from __future__ import annotations

from typing import TYPE_CHECKING

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
@backend_option()
def estimate(names: tuple[str, ...], model_path: str, input_path: str | None, column: str | None, level: str,
             method: str, bootstrap: int, confidence: float, seed: int, surname_only: bool, plot_path: str | None,
             force: bool, as_json: bool, quiet: bool, backend: str) -> None:
    """What share of a population's names comes from each language (or group, or region).

    \b
    Examples:
      names estimate --input voters.csv --column last_name --level group
      names estimate --input authors.txt --plot mix.png
      names estimate Ivanov Kowalski Nowak Petrenko --json

    The default method re-estimates the population's mix by maximum likelihood from the model's
    calibrated probabilities (EM; Saerens et al. 2002), which corrects the bias of counting each
    name's top answer when the population's mix is not the training data's. The intervals come from
    resampling the names: they say how much a table of this size can tell, not how far the model
    may be off on a population unlike its training data (docs/groups.md).
    """
    from namesclf.files import check_output

    if bool(names) == bool(input_path):
        raise NamesError("give names as arguments or --input FILE (not both)")
    if plot_path:
        check_output(plot_path, force, suffixes=(".png",), option="--plot")
    population = list(names) if names else _read_population(input_path, column)

    from namesclf.inference.groups import level_map
    from namesclf.inference.mix import estimate_mix
    from namesclf.inference.predictor import Predictor

    predictor = Predictor.load(model_path, backend=backend)
    note = level_map(predictor.labels, level).note()
    if note and not quiet:
        click.echo(note, err=True)
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
    click.echo(f"{result.n:,} names, method {result.method}{skipped}{rest}")

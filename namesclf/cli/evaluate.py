"""``names evaluate``: a model on a data set or one split of it, as text, JSON, CSV and PNG reports.
"""

from __future__ import annotations

from pathlib import Path

import click

from namesclf.cli.console import backend_option, echo_json, model_option
from namesclf.config import (
    SPLIT_CHOICES,
)


@click.command()
@click.argument("source", type=click.Path())
@model_option()
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Folder for the report files. [default: reports/<model stem>/]")
@click.option("--split", type=click.Choice(SPLIT_CHOICES), default="all",
              show_default=True, help="Keep only this part of the model's own split (seed from its file).")
@click.option("--prior", default=None, metavar="train|uniform|FILE",
              help="Score the probabilities re-weighed for this population's language mix (see `names predict`).")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
@click.option("--force", is_flag=True,
              help="Overwrite the report files of an earlier run in --out (other files there are never touched).")
@backend_option()
def evaluate(source: str, model_path: str, out_dir: str | None, split: str, prior: str | None,
             as_json: bool, force: bool, backend: str) -> None:
    """Score a model on SOURCE and write a report: metrics, confusion matrix (CSV, PNG), errors.

    The report's files go into --out (created if needed); an earlier run's files there are
    only overwritten with --force, and nothing else in the folder is touched. Every report scores
    the model at each level too (labels, origin groups, regions: docs/groups.md), with a
    confusion matrix per level.

    \b
      names evaluate data/names --split test      # the model's own held-out names
      names evaluate other.csv --out reports/other
    """
    from namesclf.data.dataset import load_names
    from namesclf.files import check_output
    from namesclf.inference.predictor import Predictor
    from namesclf.report.evaluate import REPORT_FILES, default_report_dir, evaluate_data, format_pair, write_report

    out = Path(out_dir) if out_dir else default_report_dir(model_path)
    check_output(out, force, kind="folder", files=REPORT_FILES, option="--out")
    predictor = Predictor.load(model_path, backend=backend)
    report = evaluate_data(predictor, load_names(source), split=split, model_path=model_path, prior=prior)
    written = write_report(report, out)
    for note in report.notes:
        click.echo(f"note: {note}", err=True)
    if as_json:
        echo_json({**report.metrics, "files": [str(p) for p in written]})
        return
    click.echo(report.headline())
    for line in report.level_lines():
        click.echo(line)
    if report.confused_pairs:
        click.echo("most confused: " + "; ".join(format_pair(p) for p in report.confused_pairs[:3]))
    for path in written:
        click.echo(f"wrote {path}")


# ----------------------------------------------------------------------------- serve


"""The ``names`` command: parses options, calls the library, prints. No logic a Python user would want.

Every user-fixable problem raised below is a :class:`NamesError`; :class:`_Group` turns it into
one line on stderr and exit code 1, never a traceback.
"""

from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from .errors import NamesError

DEFAULT_MODEL = "models/names.pt"


class _Group(click.Group):
    """A click group whose commands turn :class:`NamesError` into ``click.ClickException``."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except NamesError as exc:
            raise click.ClickException(str(exc)) from None


def _model_option(default: str = DEFAULT_MODEL, env: str = "NAMES_MODEL"):
    return click.option("--model", "model_path", default=lambda: os.environ.get(env, default),
                        show_default=f"${env} or {default}", type=click.Path(dir_okay=False),
                        help="Model file written by `names train`.")


def _echo_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, ensure_ascii=False))


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="namesclf", prog_name="names")
def cli() -> None:
    """Which language does a surname come from?

    \b
    Quick tour:
      names data fetch                    # the 18-language surname set into data/names
      names train data/names              # ~1 min on 2 CPU cores, writes models/names.pt
      names predict Dostoevsky Nakamura   # top-3 languages with probabilities
      names evaluate data/names --split test
      echo O\\'Brien | names predict --input - --format csv

    Run `names COMMAND --help` for each command's options.
    """


# ----------------------------------------------------------------------------- data


@cli.group(cls=_Group)
def data() -> None:
    """Fetch the surname set and inspect data folders."""


@data.command("stats")
@click.argument("source", type=click.Path())
@click.option("--seed", default=0, show_default=True, help="Split seed (the split `names train --seed` uses).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def data_stats(source: str, seed: int, as_json: bool) -> None:
    """Lines, distinct names and cross-language names per language, and the split sizes.

    SOURCE is a folder of <Language>.txt files (one name per line) or a CSV/TSV with `name` and
    `language` columns.
    """
    from .data import load_names, stats

    summary = stats(load_names(source), seed=seed)
    if as_json:
        _echo_json(summary)
        return
    rows = summary["per_language"]
    click.echo(f"{'language':<12} {'lines':>6} {'distinct':>8} {'shared':>6} {'train':>6} {'valid':>6} {'test':>6}")
    for lang, r in rows.items():
        click.echo(f"{lang:<12} {r['lines']:>6,} {r['distinct']:>8,} {r['shared']:>6,} "
                   f"{r['train']:>6,} {r['valid']:>6,} {r['test']:>6,}")
    sp = summary["splits"]
    click.echo(f"{'total':<12} {summary['lines']:>6,} {summary['distinct_pairs']:>8,}")
    click.echo(f"{summary['languages']} languages, {summary['lines']:,} lines, {summary['distinct_pairs']:,} distinct "
               f"(name, language) pairs ({summary['duplicates_dropped']:,} duplicate lines dropped), "
               f"{summary['names_in_several_languages']:,} folded names under more than one language")
    if summary["empty_dropped"]:
        click.echo(f"{summary['empty_dropped']:,} names had no letters after folding to ASCII and were dropped")
    click.echo(f"split (seed {seed}, grouped by folded name): train {sp['train']:,}, valid {sp['valid']:,}, "
               f"test {sp['test']:,}")


@data.command("fetch")
@click.option("--from", "source", metavar="PATH_OR_URL",
              help="A local zip, a folder of <Language>.txt, or a URL. Default: the PyTorch tutorial's data.zip.")
@click.option("--dest", default="data/names", show_default=True, type=click.Path(file_okay=False))
@click.option("--no-verify", is_flag=True, help="Accept files other than the 18 official ones (no checksums).")
def data_fetch(source: str | None, dest: str, no_verify: bool) -> None:
    """Download (or copy) the surname files, verify their SHA-256 sums, write them atomically."""
    from .fetch import fetch

    written = fetch(source, dest, check=not no_verify)
    note = "verified and " if not no_verify else ""
    click.echo(f"{note}wrote {len(written)} files to {dest}")


# ----------------------------------------------------------------------------- train


@cli.command()
@click.argument("source", type=click.Path())
@click.option("--model", "kind", type=click.Choice(["handbuilt", "rnn", "gru", "lstm"]), default="gru",
              show_default=True, help="handbuilt: the tutorial's RNN with manual SGD; rnn/gru/lstm: torch cells.")
@click.option("--hidden", type=int, default=256, show_default=True, help="Hidden units per direction.")
@click.option("--epochs", type=int, default=15, show_default=True, help="At most this many epochs.")
@click.option("--lr", type=float, default=None, help="Learning rate. [default: 0.5 for SGD, 3e-3 for Adam(W)]")
@click.option("--batch-size", type=int, default=64, show_default=True)
@click.option("--optimizer", type=click.Choice(["manual", "sgd", "adam", "adamw"]), default=None,
              help="[default: manual for handbuilt, adamw otherwise]")
@click.option("--class-weight", type=click.Choice(["none", "balanced"]), default="none", show_default=True,
              help="balanced: weigh rare languages up (raises macro-F1, lowers accuracy).")
@click.option("--patience", type=int, default=5, show_default=True, help="Stop after this many epochs without a better validation macro-F1 (0: never).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds the split and the training.")
@click.option("--out", type=click.Path(dir_okay=False), default=DEFAULT_MODEL, show_default=True)
@click.option("--force", is_flag=True, help="Overwrite an existing --out file.")
@click.option("--resume", is_flag=True, help="Continue training the model in --out from its last saved epoch.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars or per-epoch lines.")
@click.option("--json", "as_json", is_flag=True, help="Print the final figures as JSON.")
def train(source: str, kind: str, hidden: int, epochs: int, lr: float | None, batch_size: int,
          optimizer: str | None, class_weight: str, patience: int, device: str, seed: int, out: str,
          force: bool, resume: bool, quiet: bool, as_json: bool) -> None:
    """Train a classifier on SOURCE and write one self-describing model file.

    SOURCE is a folder of <Language>.txt files or a CSV/TSV with `name` and `language` columns.
    Names are split 80/10/10 by folded name (no name in two splits); the epoch with the best
    validation macro-F1 is kept and scored once on the test split. Each new best epoch is saved
    at once, so Ctrl-C leaves a complete model; `--resume` carries on from it.
    """
    from .checkpoint import load_checkpoint
    from .data import load_names
    from .train import TrainConfig, train_from_data

    config = TrainConfig(model=kind, hidden=hidden, epochs=epochs, lr=lr, batch_size=batch_size,
                         optimizer=optimizer, class_weight=class_weight, patience=patience, device=device,
                         seed=seed)
    previous = None
    if resume:
        previous = load_checkpoint(out, kind="classifier")
        config = TrainConfig.from_dict({**previous["config"], "epochs": epochs, "device": device})
    elif Path(out).exists() and not force:
        raise NamesError(f"{out} exists: pass --force to overwrite it, --resume to continue it, or choose --out")
    data_set = load_names(source)
    if data_set.n_empty and not quiet:
        click.echo(f"dropped {data_set.n_empty:,} names with no letters after folding "
                   f"(e.g. {', '.join(map(repr, data_set.dropped_examples[:3]))})", err=True)
    try:
        result = train_from_data(data_set, config, out=out, resume=previous, progress=False if quiet else None)
    except KeyboardInterrupt:
        if Path(out).exists():
            raise click.ClickException(f"interrupted; {out} holds the best model saved so far "
                                       "(continue with --resume)") from None
        raise click.ClickException("interrupted before the first epoch ended; nothing was written") from None
    test = result.extra["test"]
    summary = {"model": out, "test_accuracy": test.get("accuracy"), "test_macro_f1": test.get("macro_f1"),
               "n_test": test.get("n"), "best_epoch": result.best_epoch, "epochs_run": len(result.history),
               "train_seconds": round(result.seconds, 2), "valid": result.valid,
               "interrupted": result.interrupted}
    if as_json:
        _echo_json(summary)
        return
    click.echo(f"test accuracy {test['accuracy']:.4f}  macro-F1 {test['macro_f1']:.4f}  on {test['n']:,} names "
               f"(best epoch {result.best_epoch} of {len(result.history)}, {result.seconds:.1f}s)")
    click.echo(f"wrote {out}")


# ----------------------------------------------------------------------------- predict


def _format_line(pred: Any) -> str:
    if not pred.languages:
        return f"{pred.name}\t(no letters)"
    return f"{pred.name}  " + "  ".join(f"{lang} {p:.2f}" for lang, p in pred.languages)


@cli.command()
@click.argument("names", nargs=-1)
@_model_option()
@click.option("--top-k", "-k", type=click.IntRange(1, 100), default=3, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list (for NAME arguments).")
@click.option("--input", "input_file", type=click.File("r", encoding="utf-8", errors="strict"),
              help="Read one name per line from FILE ('-' for stdin) and stream CSV/JSONL to stdout.")
@click.option("--format", "fmt", type=click.Choice(["csv", "jsonl"]), default="csv", show_default=True,
              help="Output format with --input.")
@click.option("--batch-size", type=click.IntRange(1, 1_000_000), default=4096, show_default=True,
              help="Names per batch with --input (memory stays bounded).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar with --input.")
def predict(names: tuple[str, ...], model_path: str, top_k: int, as_json: bool, input_file: Any, fmt: str,
            batch_size: int, quiet: bool) -> None:
    """Top-k languages of each NAME with probabilities.

    \b
      names predict Dostoevsky            Dostoevsky  Russian 0.97  Czech 0.02  Polish 0.01
      names predict --input names.txt --format csv > predictions.csv
      cut -f1 list.tsv | names predict --input - --format jsonl
    """
    from .predict import Predictor

    if not names and input_file is None:
        raise click.UsageError("give one or more NAMEs, or --input FILE (use - for stdin)")
    if names and input_file is not None:
        raise click.UsageError("give NAMEs or --input, not both")
    predictor = Predictor.load(model_path)
    if input_file is None:
        results = predictor.top_k(list(names), top_k)
        if as_json:
            _echo_json([r.to_dict() for r in results])
        else:
            for r in results:
                click.echo(_format_line(r))
        return
    _predict_stream(predictor, input_file, top_k, fmt, batch_size, quiet)


def _predict_stream(predictor: Any, handle: Any, k: int, fmt: str, batch_size: int, quiet: bool) -> None:
    from tqdm.auto import tqdm

    k = min(k, len(predictor.labels))
    out = click.get_text_stream("stdout")
    writer = csv.writer(out, lineterminator="\n") if fmt == "csv" else None
    if writer is not None:
        header = ["name", "language", "probability"]
        for i in range(2, k + 1):
            header += [f"language_{i}", f"probability_{i}"]
        writer.writerow(header)
    lines = (line.rstrip("\r\n") for line in handle)
    skipped = 0
    try:
        with tqdm(desc="predict", unit=" names", disable=True if quiet else None, file=sys.stderr) as bar:
            for pred in predictor.stream(lines, k, batch_size):
                bar.update(1)
                if not pred.languages:
                    skipped += 1
                if writer is not None:
                    row: list[Any] = [pred.name]
                    for lang, p in pred.languages:
                        row += [lang, f"{p:.6f}"]
                    writer.writerow(row + [""] * (1 + 2 * k - len(row)))
                else:
                    out.write(json.dumps(pred.to_dict(), ensure_ascii=False) + "\n")
    except UnicodeDecodeError as exc:
        raise NamesError(f"input is not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    if skipped and not quiet:
        click.echo(f"{skipped:,} lines had no letters after folding and have no prediction", err=True)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="names")

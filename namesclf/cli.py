"""The ``names`` command: parses options, calls the library, prints. No logic a Python user would want.

Every user-fixable problem raised below is a :class:`NamesError`; :class:`NamesGroup` turns it into
one line on stderr and exit code 1, never a traceback.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from .cli_lm import complete, generate, lm
from .config import (
    CLASS_WEIGHTS,
    CLASSIFIER_KINDS,
    DEVICES,
    DIST_TIMEOUT,
    LARGE_CORPUS,
    LARGE_CORPUS_DEFAULTS,
    MODEL_DEFAULTS,
    OPTIMIZERS,
    PREDICTION_FORMATS,
    SPLIT_CHOICES,
    STREAM_BATCH,
    ServeConfig,
    TrainConfig,
)
from .console import DEFAULT_MODEL, NamesGroup, backend_option, echo_json, model_option
from .errors import NamesError


@click.group(cls=NamesGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
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


@cli.group(cls=NamesGroup)
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
        echo_json(summary)
        return
    rows = summary["per_language"]
    name_w = max(8, *(len(str(lang)) for lang in rows))  # widths from the data: 34 languages, 248,376 pairs
    num_w = max(6, len(f"{summary['lines']:,}"))
    click.echo(f"{'language':<{name_w}} {'lines':>{num_w}} {'distinct':>{num_w}} {'shared':>{num_w}} "
               f"{'train':>{num_w}} {'valid':>{num_w}} {'test':>{num_w}}")
    for lang, r in rows.items():
        click.echo(f"{lang:<{name_w}} " + " ".join(f"{r[k]:>{num_w},}" for k in ("lines", "distinct", "shared", "train",
                                                                                 "valid", "test")))
    click.echo(f"{'total':<{name_w}} {summary['lines']:>{num_w},} {summary['distinct_pairs']:>{num_w},}")
    sp = summary["splits"]
    click.echo(f"{summary['languages']} languages, {summary['lines']:,} lines, {summary['distinct_pairs']:,} distinct "
               f"(name, language) pairs ({summary['duplicates_dropped']:,} duplicate lines dropped), "
               f"{summary['names_in_several_languages']:,} folded names under more than one language")
    if summary["empty_dropped"]:
        click.echo(f"{summary['empty_dropped']:,} names had no letters after folding to ASCII and were dropped")
    click.echo(f"split (seed {seed}, grouped by folded name): train {sp['train']:,}, valid {sp['valid']:,}, "
               f"test {sp['test']:,}")


@data.command("fetch")
@click.argument("corpus", type=click.Choice(["names", "wikipedia"]), default="names", required=False)
@click.option("--from", "source", metavar="PATH_OR_URL",
              help="names: a local zip, a folder of <Language>.txt, or a URL (default: the PyTorch tutorial's "
                   "data.zip). wikipedia: a local name2nat-0.5.1 wheel or its name2nats.pkl (default: pip "
                   "download name2nat==0.5.1).")
@click.option("--dest", default=None, type=click.Path(),
              show_default="data/names for names, data/wikipedia.csv for wikipedia")
@click.option("--no-verify", is_flag=True,
              help="No SHA-256 checks: accept files other than the 18 official ones, or another name2nat edition.")
def data_fetch(corpus: str, source: str | None, dest: str | None, no_verify: bool) -> None:
    """Download (or copy) a corpus, verify its SHA-256 sums, write it atomically.

    \b
    CORPUS is one of
      names      the PyTorch tutorial's 18-language surname set: <Language>.txt files in a folder
      wikipedia  ~1M Wikipedia people from the name2nat wheel, cut to surnames and mapped to origin
                 labels (namesclf/nationalities.csv), one CSV; surnames of the reserved slice are
                 left out (docs/corpora.md)
    """
    if corpus == "wikipedia":
        from .wikipedia import DEFAULT_DEST, fetch_wikipedia

        built, where = fetch_wikipedia(source, dest or DEFAULT_DEST, verify=not no_verify)
        note = "verified " if where.verified else "read (not verified) "
        click.echo(f"{note}{where.origin} ({where.size:,} bytes, sha256 {where.sha256[:12]}...) and wrote "
                   f"{len(built.rows):,} (surname, language) pairs in {len(built.per_label)} languages from "
                   f"{built.kept_people:,} of {built.people:,} people to {dest or DEFAULT_DEST}")
        click.echo(f"held out {built.reserved_surnames:,} reserved surnames ({built.reserved_people:,} people); "
                   f"dropped: " + ", ".join(f"{reason} {n:,}" for reason, n in sorted(built.dropped.items())))
        return
    from .fetch import fetch

    dest = dest or "data/names"
    if Path(dest).is_file():
        raise NamesError(f"--dest {dest} is a file; the names corpus is a folder of <Language>.txt files")
    written = fetch(source, dest, check=not no_verify)
    note = "verified and " if not no_verify else ""
    click.echo(f"{note}wrote {len(written)} files to {dest}")


# ----------------------------------------------------------------------------- train


def _per_model(field_name: str) -> str:
    """``[default: 128 handbuilt, 64 others; from 100,000 training names: 128]``, read from the
    per-model and large-corpus defaults, never retyped."""

    def describe(values: dict[str, Any]) -> str:
        if len(set(values.values())) == 1:
            return str(next(iter(values.values())))
        common = max(set(values.values()), key=list(values.values()).count)
        return ", ".join([f"{v} {k}" for k, v in values.items() if v != common] + [f"{common} others"])

    small = {kind: defaults[field_name] for kind, defaults in MODEL_DEFAULTS.items()}
    large = {kind: LARGE_CORPUS_DEFAULTS[kind].get(field_name, value) for kind, value in small.items()}
    text = describe(small)
    if large != small:
        text += f"; from {LARGE_CORPUS:,} training names: {describe(large)}"
    return f"[default: {text}]"


def _train_options(func: Any) -> Any:
    """The options of ``names train``: choices and defaults come from :mod:`.train` and :mod:`.loop`."""
    options = [
        click.option("--model", "kind", type=click.Choice(CLASSIFIER_KINDS), default=TrainConfig.model,
                     show_default=True,
                     help="handbuilt: the tutorial's RNN with manual SGD; rnn/gru/lstm: torch cells. Every model "
                     "is pooled with the n-gram half unless --ngram-order 0."),
        click.option("--hidden", type=int, default=None, help=f"Hidden units per direction. {_per_model('hidden')}"),
        click.option("--epochs", type=int, default=None, help=f"At most this many epochs. {_per_model('epochs')}"),
        click.option("--lr", type=float, default=None,
                     help=f"Peak learning rate (cosine decay). {_per_model('lr')}"),
        click.option("--batch-size", type=int, default=None, help=f"Names per step. {_per_model('batch_size')}"),
        click.option("--optimizer", type=click.Choice(OPTIMIZERS), default=None,
                     help=f"manual is the hand-written SGD update. {_per_model('optimizer')}"),
        click.option("--ngram-order", type=int, default=None,
                     help="Pool the network with a character n-gram Bayes classifier of this order (0: the "
                     f"network alone, e.g. the bare hand-built RNN). It lifts the rare languages. "
                     f"{_per_model('ngram_order')}"),
        click.option("--refit-ngram/--no-refit-ngram", default=TrainConfig.refit_ngram, show_default=True,
                     help="Once validation has chosen the epoch and pooling knobs, count the n-gram half again "
                     "on train + valid (docs/experiments.md; the stored validation figures are from before)."),
        click.option("--class-weight", type=click.Choice(CLASS_WEIGHTS), default=TrainConfig.class_weight,
                     show_default=True,
                     help="Weigh rare languages up: sqrt (1/sqrt(count)) or balanced (1/count). Raises macro-F1, "
                     "costs accuracy."),
        click.option("--patience", type=int, default=None,
                     help="Stop after this many epochs without a better validation macro-F1 (0: never stop "
                     f"early). {_per_model('patience')}"),
        click.option("--device", type=click.Choice(DEVICES), default=TrainConfig.device, show_default=True),
        click.option("--seed", type=int, default=TrainConfig.seed, show_default=True,
                     help="Seeds the split and the training."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@cli.command()
@click.argument("source", type=click.Path())
@_train_options
@click.option("--out", type=click.Path(dir_okay=False), default=DEFAULT_MODEL, show_default=True)
@click.option("--force", is_flag=True, help="Overwrite an existing --out file.")
@click.option("--resume", is_flag=True, help="Continue training the model in --out from its last saved epoch.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars or per-epoch lines.")
@click.option("--json", "as_json", is_flag=True, help="Print the final figures as JSON.")
@click.option("--no-export", is_flag=True,
              help="Do not write the ONNX file beside --out (prediction then runs on torch; see `names export`).")
@click.option("--nproc", type=click.IntRange(1), default=None, metavar="N",
              help="Train on N processes of this machine (torch.distributed.run, as torchrun does): gloo on CPU, "
              "NCCL on CUDA with one GPU per process. Each step's --batch-size names are split across them, so "
              "the model is the one a single process trains. Several machines: run torchrun yourself "
              "(docs/scale.md).")
@click.option("--dist-timeout", type=float, default=DIST_TIMEOUT, show_default=True, metavar="SECONDS",
              help="Under torchrun or --nproc: how long a rank waits for the others before the run stops.")
def train(source: str, kind: str, hidden: int | None, epochs: int | None, lr: float | None,
          batch_size: int | None, optimizer: str | None, ngram_order: int | None, refit_ngram: bool,
          class_weight: str, patience: int | None, device: str, seed: int,
          out: str, force: bool, resume: bool, quiet: bool, as_json: bool, no_export: bool, nproc: int | None,
          dist_timeout: float) -> None:
    """Train a classifier on SOURCE and write one self-describing model file.

    SOURCE is a folder of <Language>.txt files or a CSV/TSV with `name` and `language` columns.
    Names are split 80/10/10 by folded name (no name in two splits); the epoch with the best
    validation macro-F1 is kept and scored once on the test split. Each new best epoch is saved
    at once, so Ctrl-C leaves a complete model; `--resume` carries on from it. Beside the model
    file goes its ONNX export (same stem, .onnx), which `names predict` and `names serve` load
    without torch.

    \b
    On several processes (docs/scale.md):
      names train SOURCE --nproc 2                        # this machine
      torchrun --nproc-per-node 2 -m namesclf train SOURCE  # the same, by hand
    """
    config = TrainConfig(model=kind, hidden=hidden, epochs=epochs, lr=lr, batch_size=batch_size,
                         optimizer=optimizer, ngram_order=ngram_order, refit_ngram=refit_ngram,
                         class_weight=class_weight, patience=patience, device=device, seed=seed)
    if nproc is not None:
        _launch_ranks(nproc, config, source, out, force, resume, dist_timeout)
        return
    from .distributed import process_group

    with process_group(device, dist_timeout) as ranks:
        if ranks.active and not quiet:  # which process is which rank, for whoever has to stop one
            click.echo(f"rank {ranks.rank} of {ranks.world_size}: pid {os.getpid()}, {ranks.backend}", err=True)
        _train(source, config, out, force, resume, quiet or not ranks.is_main, as_json, device, epochs,
               ranks.is_main, export=not no_export)


def _launch_ranks(nproc: int, config: TrainConfig, source: str, out: str, force: bool, resume: bool,
                  dist_timeout: float) -> None:
    """``names train --nproc N``: check what can be checked once, then start N ranks of this same command."""
    from .distributed import check_timeout, launch_local
    from .files import refuse_overwrite

    config.resolved()
    check_timeout(dist_timeout)
    if not Path(source).exists():
        raise NamesError(f"{source}: no such file or folder")
    if not resume:
        refuse_overwrite(out, force)
    ctx = click.get_current_context()
    launch_local(nproc, ["train", *_forwarded_args(ctx, drop={"nproc"})], out)


def _forwarded_args(ctx: click.Context, drop: set[str]) -> list[str]:
    """The command line that gives ``ctx``'s command the parameters it was given (for the ranks)."""
    argv: list[str] = []
    for param in ctx.command.params:
        value = ctx.params.get(param.name)  # type: ignore[arg-type]
        if param.name in drop or value is None:
            continue
        if isinstance(param, click.Argument):
            argv.append(str(value))
        elif isinstance(param, click.Option) and param.is_flag:
            if value or param.secondary_opts:
                argv.append(param.opts[0] if value else param.secondary_opts[0])
        elif isinstance(param, click.Option):
            argv += [param.opts[0], str(value)]
    return argv


def _train(source: str, config: TrainConfig, out: str, force: bool, resume: bool, quiet: bool, as_json: bool,
           device: str, epochs: int | None, talk: bool, export: bool = True) -> None:
    """What ``names train`` does in one process, or in each rank under torchrun (``talk``: rank 0)."""
    from .data import load_names
    from .files import refuse_overwrite
    from .pipeline import resume_config, train_and_evaluate

    previous = None
    if resume:
        config, previous = resume_config(out, epochs, device)
    else:
        refuse_overwrite(out, force)
    data_set = load_names(source)
    if data_set.n_empty and not quiet:
        click.echo(f"dropped {data_set.n_empty:,} names with no letters after folding "
                   f"(e.g. {', '.join(map(repr, data_set.dropped_examples[:3]))})", err=True)
    run = train_and_evaluate(data_set, config, out=out, resume=previous, progress=False if quiet else None,
                             export=export)
    result = run.result
    if not talk:  # the other ranks of a multi-process run: rank 0 reports for them
        return
    if result.interrupted:
        raise NamesError(f"interrupted after epoch {len(result.history)}; {out} holds the best epoch so far "
                         f"({result.best_epoch}, valid macro-F1 {result.valid['valid_macro_f1']:.4f}); "
                         "continue with --resume")
    test = run.test
    report_dir = str(Path(run.written[-1]).parent)
    figures = ("accuracy", "macro_f1", "balanced_accuracy", "accuracy_single", "macro_f1_single", "log_loss", "ece")
    summary = {"model": out, **{f"test_{k}": test.get(k) for k in figures},
               "n_test": test.get("n"), "best_epoch": result.best_epoch, "epochs_run": len(result.history),
               "train_seconds": round(result.seconds, 2), "valid": result.valid,
               "interrupted": result.interrupted, "report": report_dir}
    if as_json:
        echo_json(summary)
        return
    epochs_note = f"best epoch {result.best_epoch} of {len(result.history)}, {result.seconds:.1f}s"
    if test.get("n"):
        click.echo(f"test accuracy {test['accuracy']:.4f}  macro-F1 {test['macro_f1']:.4f}  "
                   f"on {test['n']:,} names ({epochs_note})")
    else:
        click.echo(f"no test names (the data set is too small to hold any out) ({epochs_note})")
    for path in run.written:
        if path.suffix in (".pt", ".onnx"):
            click.echo(f"wrote {path}")
    click.echo(f"wrote {report_dir}/ (test-split report: report.txt, metrics.json, confusion_matrix.png, "
               "reliability.png; training curves: training.csv, training.png)")


# ----------------------------------------------------------------------------- predict


def _format_line(pred: Any) -> str:
    """``Name  Russian 0.97  Czech 0.02``; ``unknown`` first when abstained; the set in braces."""
    name = pred.name if pred.surname is None else f"{pred.name} [{pred.surname}]"
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


@cli.command()
@click.argument("names", nargs=-1)
@model_option()
@click.option("--top-k", "-k", type=click.IntRange(1, 100), default=3, show_default=True)
@click.option("--abstain", is_flag=True,
              help="Answer `unknown` for names that fit no language the model knows (see --abstain-rate).")
@click.option("--abstain-rate", default="0.05", show_default=True,
              help="Share of names from known languages that may be wrongly abstained on.")
@click.option("--coverage", default=None,
              help="Add the smallest set of languages holding the true one with this probability (e.g. 0.9).")
@click.option("--per-language", is_flag=True,
              help="With --coverage: calibrate each language on its own, so rare languages are covered too "
              "(larger sets).")
@click.option("--prior", default=None, metavar="train|uniform|FILE",
              help="The language mix of your population: uniform, or a JSON/CSV file of language -> weight. "
              "[default: train, the training data's mix]")
@click.option("--surname-only", is_flag=True,
              help="Classify each input as it is; by default a full name (\"Fyodor Dostoevsky\", \"Berg, Jan van "
              "der\") is cut to its surname first.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list (for NAME arguments).")
@click.option("--input", "input_path", metavar="FILE",
              help="Read names from FILE ('-' for stdin): one per line, or a table with --column.")
@click.option("--column", default=None,
              help="--input is a table (CSV, TSV or Parquet, by suffix): classify this column, keep every other.")
@click.option("--output", "output_path", default=None, metavar="FILE",
              help="With --column: write the table here (format from the suffix) instead of CSV on stdout.")
@click.option("--format", "fmt", type=click.Choice(PREDICTION_FORMATS), default=PREDICTION_FORMATS[0],
              show_default=True, help="Output format with --input (one name per line).")
@click.option("--batch-size", type=click.IntRange(1, 1_000_000), default=STREAM_BATCH, show_default=True,
              help="Names per batch with --input (memory stays bounded).")
@click.option("--scheduler", default=None, metavar="local:N|tcp://HOST:PORT",
              help="With --column: classify the table on Dask, on N local worker processes or a running "
              "cluster (pip install 'namesclf[scale]'). --input may be a folder of Parquet files; an --output "
              "with no suffix (or ending in /) is written as a folder of Parquet files, one per partition.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar or notes on stderr.")
@backend_option()
def predict(names: tuple[str, ...], model_path: str, top_k: int, abstain: bool, abstain_rate: str,
            coverage: str | None, per_language: bool, prior: str | None, surname_only: bool, as_json: bool,
            input_path: str | None, column: str | None, output_path: str | None, fmt: str, batch_size: int,
            scheduler: str | None, quiet: bool, backend: str) -> None:
    """Top-k languages of each NAME with probabilities.

    \b
      names predict Dostoevsky            Dostoevsky  Russian 0.97  Czech 0.02  Polish 0.01
      names predict "Fyodor Dostoevsky"   Fyodor Dostoevsky [Dostoevsky]  Russian 0.97 ...
      names predict Okonkwo --abstain     Okonkwo  unknown (novelty ...; closest: ...)
      names predict Nakamura --coverage 0.9 --prior uniform
      names predict --input names.txt --format csv > predictions.csv
      names predict --input people.parquet --column last_name --output people.csv
      names predict --input big.parquet --column last_name --output out.parquet --scheduler local:4
    """
    from .predict import Options, Predictor, write_predictions

    if not names and input_path is None:
        raise click.UsageError("give one or more NAMEs, or --input FILE (use - for stdin)")
    if names and input_path is not None:
        raise click.UsageError("give NAMEs or --input, not both")
    if (column is None) and output_path is not None:
        raise click.UsageError("--output goes with --column (a table); one name per line streams to stdout")
    options = Options(top_k, _float_or_none(coverage, "--coverage"), per_language, prior, abstain,
                      _float_or_none(abstain_rate, "--abstain-rate") or 0.05, surname_only)
    if scheduler is not None:
        if column is None or input_path in (None, "-"):
            raise click.UsageError("--scheduler goes with --input FILE --column COL (a table file, not stdin)")
        _predict_table_on_dask(model_path, input_path, column, output_path, options, scheduler, quiet)
        return
    predictor = Predictor.load(model_path, backend=backend)
    if input_path is None:
        results = predictor.predict_with(list(names), options)
        if as_json:
            echo_json([r.to_dict() for r in results])
        else:
            for r in results:
                click.echo(_format_line(r))
        return
    if column is not None:
        _predict_table(predictor, input_path, column, output_path, options, quiet)
        return
    with click.open_file(input_path, "r", encoding="utf-8", errors="strict") as handle:
        lines = (line.rstrip("\r\n") for line in handle)
        # sys.stdout, not click's stream: CliRunner swaps sys.stdout too
        skipped = write_predictions(predictor, lines, sys.stdout, options, fmt, batch_size,
                                    progress=False if quiet else None)
    if skipped and not quiet:
        click.echo(f"{skipped:,} lines had no letters after folding and have no prediction", err=True)


def _predict_table(predictor: Any, input_path: str, column: str, output_path: str | None, options: Any,
                   quiet: bool) -> None:
    from .frame import predict_frame, read_table, write_table

    table = read_table(input_path)
    if table.empty and column not in table.columns:
        raise NamesError(f"{input_path}: the table is empty")
    result = predict_frame(table, column, predictor, options.k, coverage=options.coverage,
                           per_language=options.per_language, prior=options.prior, abstain=options.abstain,
                           abstain_rate=options.abstain_rate, surname_only=options.surname_only)
    written = write_table(result, output_path or "-")
    empty = int(result["language"].isna().sum())
    if not quiet:
        if empty:
            click.echo(f"{empty:,} rows had an empty or unreadable {column!r} and have no prediction", err=True)
        if written is not None:
            click.echo(f"wrote {written} ({len(result):,} rows)", err=True)


def _predict_table_on_dask(model_path: str, input_path: str, column: str, output_path: str | None, options: Any,
                           scheduler: str, quiet: bool) -> None:
    from .dask_frame import (
        connect,
        is_dataset_path,
        predict_dask_frame,
        read_table_lazy,
        write_dataset,
        write_one_file,
    )

    with connect(scheduler) as client:
        threads = sum(client.nthreads().values())
        result = predict_dask_frame(read_table_lazy(input_path, threads), column, model_path, options)
        if output_path is not None and is_dataset_path(output_path):
            folder = write_dataset(result, output_path)
            if not quiet:
                click.echo(f"wrote {folder}/ ({result.npartitions:,} Parquet files)", err=True)
            return
        written, rows, empty = write_one_file(result, client, output_path or "-", ahead=2 * threads)
    if not quiet:
        if empty:
            click.echo(f"{empty:,} rows had an empty or unreadable {column!r} and have no prediction", err=True)
        if written is not None:
            click.echo(f"wrote {written} ({rows:,} rows)", err=True)


# ----------------------------------------------------------------------------- export


@cli.command()
@click.argument("model_file", type=click.Path(dir_okay=False))
@click.option("--out", default=None, type=click.Path(dir_okay=False),
              help="Where to write the ONNX file. [default: beside MODEL_FILE, same stem, .onnx]")
def export(model_file: str, out: str | None) -> None:
    """Export a classifier model file to ONNX, for prediction without torch.

    `names train` already writes it; run this for a model trained with --no-export, by the
    Python API, or by an older namesclf. `names predict`, `names serve` and `load_model` use
    the .onnx beside a .pt when it was exported from that very file, and torch otherwise.

    \b
      names export models/names.pt              # -> models/names.onnx
      names predict Dostoevsky --model models/names.onnx
    """
    from .export import export_model_file

    click.echo(f"wrote {export_model_file(model_file, out)}")


# ----------------------------------------------------------------------------- evaluate


@cli.command()
@click.argument("source", type=click.Path())
@model_option()
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Folder for the report files. [default: reports/<model stem>/]")
@click.option("--split", type=click.Choice(SPLIT_CHOICES), default="all",
              show_default=True, help="Keep only this part of the model's own split (seed from its file).")
@click.option("--prior", default=None, metavar="train|uniform|FILE",
              help="Score the probabilities re-weighed for this population's language mix (see `names predict`).")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
@backend_option()
def evaluate(source: str, model_path: str, out_dir: str | None, split: str, prior: str | None,
             as_json: bool, backend: str) -> None:
    """Score a model on SOURCE and write a report: metrics, confusion matrix (CSV, PNG), errors.

    \b
      names evaluate data/names --split test      # the model's own held-out names
      names evaluate other.csv --out reports/other
    """
    from .data import load_names
    from .evaluate import default_report_dir, evaluate_data, format_pair, write_report
    from .predict import Predictor

    predictor = Predictor.load(model_path, backend=backend)
    report = evaluate_data(predictor, load_names(source), split=split, model_path=model_path, prior=prior)
    out = Path(out_dir) if out_dir else default_report_dir(model_path)
    written = write_report(report, out)
    for note in report.notes:
        click.echo(f"note: {note}", err=True)
    if as_json:
        echo_json({**report.metrics, "files": [str(p) for p in written]})
        return
    click.echo(report.headline())
    if report.confused_pairs:
        click.echo("most confused: " + "; ".join(format_pair(p) for p in report.confused_pairs[:3]))
    for path in written:
        click.echo(f"wrote {path}")


# ----------------------------------------------------------------------------- serve


@cli.command()
@model_option()
@click.option("--lm", "lm_path", type=click.Path(dir_okay=False), default=None,
              help="Also load this language model and answer POST /generate.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface to listen on (0.0.0.0 exposes the API to the network).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option("--threads", type=click.IntRange(1, 256), default=1, show_default=True,
              help="Compute threads per server process, ONNX Runtime or torch (batching and --workers "
                   "already use the cores).")
@click.option("--no-access-log", is_flag=True, help="Do not log one line per request.")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Server processes on the one port, each with its own model, cache and batcher "
              "(about one per core).")
@click.option("--cache-size", type=click.IntRange(0, 10_000_000), default=ServeConfig.cache_size,
              show_default=True, help="Answers cached per process, keyed by name as sent and options (0: no cache).")
@click.option("--max-pending", type=click.IntRange(1, 10_000_000), default=ServeConfig.max_pending,
              show_default=True, help="Names queued or being predicted per process before a request is refused with "
              "503 + Retry-After.")
@click.option("--max-queue-ms", type=click.FloatRange(0, 60_000, min_open=True), default=ServeConfig.max_queue_ms,
              show_default=True, help="Refuse small requests with 503 + Retry-After once the oldest queued one "
              "has waited this long.")
@click.option("--pass-names", type=click.IntRange(1, 100_000), default=ServeConfig.pass_names,
              show_default=True, help="Most names one forward pass gathers from concurrent requests.")
@click.option("--gather-ms", type=click.FloatRange(0, 100), default=ServeConfig.gather_ms,
              show_default=True, help="Hold a lone request this long to gather others into its pass.")
def serve(model_path: str, lm_path: str | None, host: str, port: int, threads: int,
          no_access_log: bool, workers: int, cache_size: int, max_pending: int, max_queue_ms: float,
          pass_names: int, gather_ms: float) -> None:
    """Serve the model as a JSON HTTP API (docs at /docs).

    Concurrent requests are gathered into shared forward passes, answers are cached, and a
    process that is behind (--max-queue-ms, --max-pending) answers 503 at once (docs/http.md).

    \b
      names serve --model models/names.pt --lm models/lm.pt
      names serve --model models/names.pt --workers 2 --no-access-log
      curl 'http://127.0.0.1:8000/predict?name=Dostoevsky&k=3'
      curl -X POST http://127.0.0.1:8000/predict -H 'content-type: application/json' \\
           -d '{"names": ["Nakamura", "O'"'"'Brien"], "k": 2}'
    """
    from .serve import serve as run_server

    tuning = ServeConfig(cache_size=cache_size, max_pending=max_pending, max_queue_ms=max_queue_ms,
                         pass_names=pass_names, gather_ms=gather_ms)
    run_server(model_path, lm_path, host, port, threads=threads, access_log=not no_access_log, workers=workers,
               tuning=tuning)


for command in (lm, generate, complete):
    cli.add_command(command)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="names")

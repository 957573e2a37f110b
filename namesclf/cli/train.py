"""``names train``: every :class:`~namesclf.config.TrainConfig` field as an option, one process or
``--nproc`` ranks, then :func:`namesclf.training.pipeline.train_and_evaluate`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from namesclf.cli.console import DEFAULT_MODEL, echo_json
from namesclf.config import (
    CLASS_WEIGHTS,
    CLASSIFIER_KINDS,
    DEVICES,
    DIST_TIMEOUT,
    LARGE_CORPUS,
    LARGE_CORPUS_DEFAULTS,
    MODEL_DEFAULTS,
    OPTIMIZERS,
    TrainConfig,
)
from namesclf.errors import NamesError


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
    """The options of ``names train``: choices and defaults come from
    :mod:`namesclf.config`."""
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


@click.command()
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
@click.option("--label-column", default="language", show_default=True, metavar="COLUMN",
              help="For a people table (given and surname columns): the column to learn, e.g. nationality.")
def train(source: str, kind: str, hidden: int | None, epochs: int | None, lr: float | None,
          batch_size: int | None, optimizer: str | None, ngram_order: int | None, refit_ngram: bool,
          class_weight: str, patience: int | None, device: str, seed: int,
          out: str, force: bool, resume: bool, quiet: bool, as_json: bool, no_export: bool, nproc: int | None,
          dist_timeout: float, label_column: str) -> None:
    """Train a classifier on SOURCE and write one self-describing model file.

    SOURCE is a folder of <Language>.txt files or a CSV/TSV with `name` and `language` columns.
    A CSV/TSV with `given` and `surname` columns (a people table, e.g. from `names data fetch
    wikipedia --full-names`) trains a model that reads full names: a surname part, a given-name
    part and their combiner (docs/models.md); its label is --label-column.
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
    from namesclf.data.people import is_people_table

    if is_people_table(source):
        if nproc is not None or resume:
            raise NamesError("a full-name model (a people table) trains in one process, from the start: "
                             "drop --nproc and --resume")
        _train_people(source, config, label_column, out, force, quiet, as_json, export=not no_export)
        return
    if label_column != "language":
        raise NamesError(f"--label-column is for people tables (given and surname columns); {source} has none")
    if nproc is not None:
        _launch_ranks(nproc, config, source, out, force, resume, dist_timeout)
        return
    from namesclf.training.distributed import process_group

    with process_group(device, dist_timeout) as ranks:
        if ranks.active and not quiet:  # which process is which rank, for whoever has to stop one
            click.echo(f"rank {ranks.rank} of {ranks.world_size}: pid {os.getpid()}, {ranks.backend}", err=True)
        _train(source, config, out, force, resume, quiet or not ranks.is_main, as_json, device, epochs,
               ranks.is_main, export=not no_export)


def _launch_ranks(nproc: int, config: TrainConfig, source: str, out: str, force: bool, resume: bool,
                  dist_timeout: float) -> None:
    """``names train --nproc N``: check what can be checked once, then start N ranks of this same command."""
    from namesclf.training.distributed import check_timeout, launch_local

    config.resolved()
    check_timeout(dist_timeout)
    if not Path(source).exists():
        raise NamesError(f"{source}: no such file or folder")
    _check_outputs(out, force, resume, export=not _flag("no_export"))
    ctx = click.get_current_context()
    launch_local(nproc, ["train", *_forwarded_args(ctx, drop={"nproc"})], out)


def _flag(name: str) -> bool:
    """A flag of the running command, for helpers its callback does not pass it to."""
    return bool(click.get_current_context().params.get(name))


def _check_outputs(out: str, force: bool, resume: bool, export: bool) -> None:
    """Everything ``names train`` will write, checked before the data is read: the model file, its
    ONNX export and the files of its report folder. ``--resume`` rewrites the export and report of
    the model it continues; nothing else is replaced without ``--force``, and no link, folder,
    device or FIFO ever is."""
    from namesclf.files import check_output, refuse_overwrite
    from namesclf.models.onnx_format import onnx_path_for
    from namesclf.report.evaluate import REPORT_FILES, training_report_dir

    if Path(out).suffix.lower() == ".onnx":
        raise NamesError(f"--out {out}: the model file is a .pt; its ONNX export is written beside it")
    refuse_overwrite(out, force or resume)
    ours = force or resume
    if export:
        check_output(onnx_path_for(out), ours, option="", hint=" (the ONNX export of --out), or choose another --out")
    check_output(training_report_dir(out), ours, kind="folder", option="",
                 hint=" (the report of --out), or choose another --out",
                 files=[*REPORT_FILES, "training.csv", "training.png"])


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
    from namesclf.data.dataset import load_names
    from namesclf.training.pipeline import resume_config, train_and_evaluate

    _check_outputs(out, force, resume, export)
    previous = None
    if resume:
        config, previous = resume_config(out, epochs, device)
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


def _train_people(source: str, config: TrainConfig, label_column: str, out: str, force: bool, quiet: bool,
                  as_json: bool, export: bool) -> None:
    """``names train PEOPLE``: a model that reads given names and surname."""
    from namesclf.data.people import load_people
    from namesclf.training.fullname import train_people

    _check_outputs(out, force, False, export)
    if export:
        from namesclf.files import check_output
        from namesclf.models.onnx_format import given_onnx_path

        check_output(given_onnx_path(out), force, option="", hint=" (the given part's ONNX export of --out)")
    people = load_people(source, label_column)
    if not quiet and (people.n_no_label or people.n_no_surname):
        click.echo(f"left out {people.n_no_label:,} people with no {label_column} and {people.n_no_surname:,} "
                   "with no letters in their surname", err=True)
    run = train_people(people.frame, config, source=source, label_column=label_column, out=out,
                       export=export, progress=False if quiet else None)
    test = run.test
    summary = {"model": out, "reads": "full_name", "label_column": label_column,
               **{f"test_{k}": v for k, v in test.items() if k != "n"}, "n_test": test.get("n"),
               "train_seconds": round(run.result.seconds, 2)}
    if as_json:
        echo_json(summary)
        return
    if test.get("n"):
        click.echo(f"test accuracy {test['accuracy']:.4f}  macro-F1 {test['macro_f1']:.4f}  balanced accuracy "
                   f"{test['balanced_accuracy']:.4f}  on {test['n']:,} people ({run.result.seconds:.1f}s)")
    for path in run.written:
        click.echo(f"wrote {path}")


# ----------------------------------------------------------------------------- predict


"""``names lm train|evaluate``, ``names generate`` and ``names complete``: the character language
model's commands.
"""

from __future__ import annotations

from typing import Any

import click

from namesclf.cli.console import DEFAULT_LM, NamesGroup, echo_json, lm_option
from namesclf.config import DEVICES, LM_CELLS, SPLIT_CHOICES, UNITS, LMConfig
from namesclf.errors import NamesError


@click.group(cls=NamesGroup)
def lm() -> None:
    """Train and score next-token language models (for `names generate` and `names complete`).

    \b
      names lm train data/names                    # char nn.RNN conditioned on language
      names lm train data/names --cell lstm --out models/lm-lstm.pt   # lower loss, slower
      names lm train lines.txt --unit word --out models/words.pt
      names lm evaluate data/names --model models/lm.pt --split test
    """


def _lm_default(field_name: str) -> Any:
    return getattr(LMConfig, field_name)


def _lm_config_options(func: Any) -> Any:
    """The :class:`~namesclf.config.LMConfig` fields ``names lm train`` takes, each defaulting to
    the config's own value (a test holds them together)."""
    options = [
        click.option("--unit", type=click.Choice(UNITS), default=_lm_default("unit"), show_default=True,
                     help="Tokens: characters (names, text) or whitespace-separated words (text files)."),
        click.option("--cell", type=click.Choice(LM_CELLS), default=_lm_default("cell"), show_default=True,
                     help="Recurrent cell: nn.RNN (tanh), nn.GRU or nn.LSTM."),
        click.option("--hidden", type=int, default=_lm_default("hidden"), show_default=True, help="Hidden units."),
        click.option("--dropout", type=float, default=_lm_default("dropout"), show_default=True),
        click.option("--balance", type=click.FloatRange(0.0, 1.0), default=_lm_default("balance"),
                     show_default=True,
                     help="Names folder: sample languages by 1/count**BALANCE (1: all equal). Helps rare "
                          "languages, costs held-out nats."),
        click.option("--epochs", type=int, default=_lm_default("epochs"), show_default=True,
                     help="At most this many epochs."),
        click.option("--lr", type=float, default=_lm_default("lr"), show_default=True,
                     help="AdamW learning rate (cosine decay)."),
        click.option("--batch-size", "batch_size", type=int, default=_lm_default("batch_size"), show_default=True,
                     help="Examples per step (language model)."),
        click.option("--patience", type=int, default=_lm_default("patience"), show_default=True,
                     help="Stop after this many epochs without a lower validation loss (0: never)."),
        click.option("--seed", type=int, default=_lm_default("seed"), show_default=True,
                     help="Seeds the split and the training."),
        click.option("--device", type=click.Choice(DEVICES), default=_lm_default("device"), show_default=True),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@lm.command("train")
@click.argument("source", type=click.Path())
@_lm_config_options
@click.option("--out", type=click.Path(dir_okay=False), default=DEFAULT_LM, show_default=True)
@click.option("--force", is_flag=True, help="Overwrite an existing --out file.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars or per-epoch lines.")
@click.option("--json", "as_json", is_flag=True, help="Print the final figures as JSON.")
def lm_train(source: str, out: str, force: bool, quiet: bool, as_json: bool, **knobs: Any) -> None:
    """Train a language model on SOURCE: next token given the tokens so far.

    SOURCE is a names folder (or CSV/TSV): the model is conditioned on the language and uses the
    classifier's grouped split (train / select by valid / report test). Or a plain text file, one
    example per line: not conditioned; split 90/10 with the seed when it has 20+ lines, else every
    line is used for training and validation. Each new best epoch is saved at once, so Ctrl-C
    leaves a complete model.

    \b
      names lm train data/names                          # prints nats/char on test names
      names lm train data/names --cell lstm --out models/lm-lstm.pt   # lower loss, slower
      printf 'I ate rice\\nI like apples\\nI code\\n' > toy.txt
      names lm train toy.txt --unit word --epochs 200 --patience 0 --dropout 0 --out toy.pt
      names complete "I ate" --model toy.pt              # I ate rice
    """
    from namesclf.files import refuse_overwrite
    from namesclf.lm.train import train_lm

    refuse_overwrite(out, force, resume_hint=False)
    config = LMConfig(**knobs)
    result = train_lm(source, config, out=out, progress=False if quiet else None)
    if result.interrupted:
        raise NamesError(f"interrupted after epoch {len(result.history)}; {out} holds the best epoch so far "
                         f"({result.best_epoch}, valid {result.valid['nats_per_token']:.4f} nats/token)")
    summary = {"model": out, "unit": config.unit, "cell": config.cell, "valid": result.valid, "test": result.test,
               "best_epoch": result.best_epoch, "epochs_run": len(result.history),
               "train_seconds": round(result.seconds, 2), "interrupted": result.interrupted}
    if as_json:
        echo_json(summary)
        return
    _echo_lm_figures(result, config.unit)
    click.echo(f"wrote {out}")


def _echo_lm_figures(result: Any, unit: str) -> None:
    """The test and valid figures of a trained language model, and its best epoch, for people."""
    per = "char" if unit == "char" else "word"
    for name, m in (("test", result.test), ("valid", result.valid)):
        if m:
            click.echo(f"{name} {m['nats_per_token']:.4f} nats/{per}  perplexity {m['perplexity']:.3f}  "
                       f"on {m['examples']:,} examples ({m['tokens']:,} tokens, end tokens included)")
    click.echo(f"best epoch {result.best_epoch} of {len(result.history)}, {result.seconds:.1f}s")


@lm.command("evaluate")
@click.argument("source", type=click.Path())
@lm_option()
@click.option("--split", type=click.Choice(SPLIT_CHOICES), default=None,
              help="[default: test for names, valid for a text file (it has no test part)]")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
def lm_evaluate(source: str, model_path: str, split: str | None, as_json: bool) -> None:
    """Held-out nats per token (end token counted) and perplexity of a language model on SOURCE.

    The split is rebuilt from the seed stored in the model file, so `--split test` scores exactly
    the names the training never saw.

    \b
      names lm evaluate data/names --model models/lm.pt
      names lm evaluate lines.txt --model models/words.pt --split valid --json
    """
    from namesclf.lm.generate import load_lm
    from namesclf.lm.model import evaluate_lm

    metrics = evaluate_lm(load_lm(model_path), source, split)
    if as_json:
        echo_json(metrics)
        return
    click.echo(f"{metrics['split']}: {metrics['nats_per_token']:.4f} nats/{metrics['unit']}  "
               f"perplexity {metrics['perplexity']:.3f}  on {metrics['examples']:,} examples "
               f"({metrics['tokens']:,} tokens, end tokens included)")
    if metrics["skipped_unknown_language"]:
        click.echo(f"{metrics['skipped_unknown_language']:,} names of languages the model does not know "
                   "were skipped", err=True)


@click.command()
@click.argument("language", required=False)
@lm_option()
@click.option("-n", "n", type=click.IntRange(1, 100_000), default=10, show_default=True,
              help="How many names.")
@click.option("--start", default="", help="Every name starts with this prefix (e.g. Mc, Kowal).")
@click.option("--temperature", type=click.FloatRange(0.0, min_open=True), default=0.8, show_default=True,
              help="Below 1: safer, more typical names; above 1: wilder ones.")
@click.option("--top-k", type=click.IntRange(1), default=None,
              help="Sample only among the K likeliest letters.")
@click.option("--seed", type=int, default=None, help="Make the draw reproducible.")
@click.option("--allow-known", is_flag=True, help="Keep names that are in the training data.")
@click.option("--guidance", type=click.FloatRange(0.0), default=1.0, show_default=True,
              help="How strongly to favour what sets LANGUAGE apart (0: sample the model as trained).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (names and what was skipped).")
def generate(language: str | None, model_path: str, n: int, start: str, temperature: float, top_k: int | None,
             seed: int | None, allow_known: bool, guidance: float, as_json: bool) -> None:
    """Invent N new surnames in LANGUAGE, one per line.

    Names are distinct, and names already in the training data are left out (stderr says how many),
    so what you see is what the model made up. LANGUAGE is one the model was trained on (any case);
    leave it out for a model trained on a text file.

    \b
      names generate Russian                    # ten new Russian-looking surnames
      names generate italian -n 5 --start Ma --seed 1
      names generate Japanese --temperature 1.2 --top-k 5
    """
    from namesclf.lm.generate import generate_names, load_lm

    result = generate_names(load_lm(model_path), language, n=n, start=start, temperature=temperature,
                            top_k=top_k, seed=seed, allow_known=allow_known, guidance=guidance)
    if as_json:
        echo_json(result.to_dict())
    else:
        for name in result.names:
            click.echo(name)
    if result.skipped_known:
        click.echo(f"skipped {result.skipped_known:,} names already in the training data "
                   "(--allow-known keeps them)", err=True)
    if result.exhausted:
        click.echo(f"found only {len(result.names):,} of {n:,} new names in {result.attempts:,} attempts",
                   err=True)


@click.command()
@click.argument("text")
@lm_option()
@click.option("--length", type=click.IntRange(1, 10_000), default=None,
              help="At most this many new tokens. [default: 100 characters or 20 words]")
@click.option("--temperature", type=click.FloatRange(0.0), default=0.0, show_default=True,
              help="0: greedy (deterministic); above 0: sample.")
@click.option("--top-k", "-k", type=click.IntRange(1), default=None,
              help="Sample among the K likeliest tokens; with --next, how many to list (default 5).")
@click.option("--next", "show_next", is_flag=True, help="List the likeliest next tokens with probabilities.")
@click.option("--language", default=None, help="For a model trained on names: the language to write in.")
@click.option("--seed", type=int, default=None, help="Make sampling reproducible.")
def complete(text: str, model_path: str, length: int | None, temperature: float, top_k: int | None,
             show_next: bool, language: str | None, seed: int | None) -> None:
    """Continue TEXT with a language model (until its end token or --length).

    \b
      names complete hello --model chat.pt              # hello how are you
      names complete "I ate" --next -k 3 --model words.pt
          0.998  rice
          0.001  apples
      names complete Kowal --language Polish --next    # likeliest next letters (<eos>: the name ends)
    """
    from namesclf.lm.generate import complete as complete_text
    from namesclf.lm.generate import load_lm, next_tokens

    model = load_lm(model_path)
    if show_next:
        for token, p in next_tokens(model, text, top_k or 5, language=language):
            click.echo(f"{p:.3f}  {'<space>' if token == ' ' else token}")
        return
    click.echo(complete_text(model, text, length=length, temperature=temperature, top_k=top_k, seed=seed,
                             language=language))

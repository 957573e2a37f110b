"""What every ``names`` command shares: one-line errors, JSON output, the model-file options."""

from __future__ import annotations

import json
import os
from typing import Any

import click

from namesclf.config import BACKENDS
from namesclf.errors import NamesError

DEFAULT_MODEL = "models/names.pt"
DEFAULT_LM = "models/lm.pt"


class NamesGroup(click.Group):
    """A click group whose commands turn :class:`NamesError` into ``click.ClickException``."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except NamesError as exc:
            raise click.ClickException(str(exc)) from None


def model_option(default: str = DEFAULT_MODEL, env: str = "NAMES_MODEL") -> Any:
    """``--model`` for a classifier file (``$NAMES_MODEL`` or :data:`DEFAULT_MODEL`)."""
    return click.option("--model", "model_path", default=lambda: os.environ.get(env, default),
                        show_default=f"${env} or {default}", type=click.Path(dir_okay=False),
                        help="Model file written by `names train`.")


def backend_option() -> Any:
    """``--backend``: which runtime answers (see :meth:`~namesclf.inference.predictor.Predictor.load`)."""
    return click.option("--backend", type=click.Choice(BACKENDS), default=BACKENDS[0], show_default=True,
                        help="auto: the model's ONNX export on ONNX Runtime when there is a current one "
                             "beside it (no torch to load), else torch; onnx/torch: force one.")


def echo_json(obj: Any) -> None:
    """Pretty JSON on stdout, non-ASCII kept as is."""
    click.echo(json.dumps(obj, indent=2, ensure_ascii=False))


def lm_option() -> Any:
    """``--model`` for a language-model file (``$NAMES_LM`` or :data:`DEFAULT_LM`)."""
    return click.option("--model", "model_path", default=lambda: os.environ.get("NAMES_LM", DEFAULT_LM),
                        show_default=f"$NAMES_LM or {DEFAULT_LM}", type=click.Path(dir_okay=False),
                        help="Language model file written by `names lm train`.")

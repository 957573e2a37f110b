"""What every ``names`` command shares: one-line errors, JSON output, the model-file options."""

from __future__ import annotations

import errno
import json
import os
import sys
from typing import Any

import click

from namesclf.config import BACKENDS
from namesclf.errors import NamesError, first_line
from namesclf.files import WRITE_ERRNOS

DEFAULT_MODEL = "models/names.pt"
DEFAULT_LM = "models/lm.pt"


class NamesGroup(click.Group):
    """A click group whose commands end in one line, ``Error: ...`` and exit 1, for every error a
    user can meet without a bug: :class:`NamesError`, and what the system or a runtime says about
    a full disk, a file-size limit, memory, a too deeply nested file or a model ONNX Runtime cannot
    run. Ctrl-C and a reader that stops reading (``| head``) are left to click, as before.
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            result = super().invoke(ctx)
            sys.stdout.flush()  # here, not at exit, where a full disk would print a traceback
            return result
        except NamesError as exc:
            raise click.ClickException(str(exc)) from None
        except OSError as exc:
            if exc.errno == errno.EPIPE:
                raise  # click ends quietly, as any command whose reader went away
            raise click.ClickException(_os_error_line(exc)) from None
        except MemoryError as exc:
            raise click.ClickException("out of memory" + (f" ({first_line(exc)})" if str(exc) else "")) from None
        except RecursionError as exc:
            raise click.ClickException(f"the input is nested too deeply to read ({first_line(exc)})") from None
        except Exception as exc:
            if type(exc).__module__.startswith("onnxruntime"):  # its errors are pybind classes of Exception
                raise click.ClickException(f"ONNX Runtime cannot run the model: {first_line(exc)}") from None
            raise


def _os_error_line(exc: OSError) -> str:
    """``PATH: reason`` for a file, ``cannot write to stdout: reason`` when stdout is what failed."""
    reason = exc.strerror or first_line(exc)
    if exc.filename is not None:
        return f"{exc.filename}: {reason}"
    if _stdout_is_broken():
        return f"cannot write to standard output: {reason}"
    if exc.errno in WRITE_ERRNOS:  # a stream, most often stdout (files say their path, namesclf.files)
        return f"cannot write the output: {reason}"
    return reason


def _stdout_is_broken() -> bool:
    """Whether stdout refuses what it holds (a full disk, ``> /dev/full``); then what is left is
    sent to /dev/null, so that Python's own flush at exit does not print a second error."""
    try:
        sys.stdout.flush()
        return False
    except OSError:
        pass
    try:
        fd = sys.stdout.fileno()
    except (OSError, ValueError, AttributeError):  # not a real file (click's test runner)
        return True
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)
    return True


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

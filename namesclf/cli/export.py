"""``names export``: write (or rewrite) the ONNX file beside a model file.
"""

from __future__ import annotations

import click


@click.command()
@click.argument("model_file", type=click.Path(dir_okay=False))
@click.option("--out", default=None, type=click.Path(dir_okay=False),
              help="Where to write the ONNX file. [default: beside MODEL_FILE, same stem, .onnx]")
@click.option("--force", is_flag=True, help="Overwrite an existing ONNX file (a stale export, say).")
def export(model_file: str, out: str | None, force: bool) -> None:
    """Export a classifier model file to ONNX, for prediction without torch.

    `names train` already writes it; run this for a model trained with --no-export, by the
    Python API, or by an older namesclf; with --force, to replace a stale export. `names predict`,
    `names serve` and `load_model` use the .onnx beside a .pt when it was exported from that very
    file, and torch otherwise.

    \b
      names export models/names.pt              # -> models/names.onnx
      names predict Dostoevsky --model models/names.onnx
    """
    from namesclf.files import check_output
    from namesclf.models.export import export_model_file
    from namesclf.models.onnx_format import onnx_path_for

    target = out if out is not None else str(onnx_path_for(model_file))
    check_output(target, force, suffixes={".onnx"}, option="--out")
    click.echo(f"wrote {export_model_file(model_file, target)}")


# ----------------------------------------------------------------------------- evaluate


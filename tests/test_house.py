"""The house rules that keep the code easy to live in, checked rather than hoped for: data flows one
way, inference never loads training code, nothing imports the CLI, and every option has one source."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from namesclf import NameClassifier
from namesclf.cli import cli
from namesclf.cli_lm import lm_train
from namesclf.config import (
    CLASS_WEIGHTS,
    CLASSIFIER_KINDS,
    DEVICES,
    LARGE_CORPUS,
    LARGE_CORPUS_DEFAULTS,
    MODEL_DEFAULTS,
    OPTIMIZERS,
    LMConfig,
    TrainConfig,
)
from namesclf.errors import NamesError

PACKAGE = Path(__file__).resolve().parents[1] / "namesclf"
#: The data flow, lowest first: a module may import only modules of its own or an earlier layer.
LAYERS = [
    {"errors", "config"},
    {"files", "text", "fullnames"},
    {"data", "fetch", "wikipedia", "metrics", "batches"},
    {"ngram"},
    {"conformal", "priors", "openset", "novelty", "onnx_scorer"},
    {"models"},
    {"checkpoint"},
    {"torch_scorer", "export"},
    {"loop", "distributed"},
    {"calibrate", "train", "lm", "lm_train"},
    {"predict", "plots", "evaluate", "generate"},
    {"pipeline", "classifier", "frame", "batcher", "dask_frame"},
    {"serve", "console", "cli_lm", "cli", "__init__", "__main__"},
]
TRAINING = {"loop", "distributed", "calibrate", "train", "lm_train", "pipeline"}


def package_imports() -> dict[str, set[str]]:
    """``{module: the namesclf modules it imports}``, from the source (lazy imports included)."""
    graph = {}
    for path in PACKAGE.glob("*.py"):
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                if node.module:
                    names.add(node.module.split(".")[0])
                else:
                    names.update(alias.name for alias in node.names)
        graph[path.stem] = names
    return {m: deps & set(graph) for m, deps in graph.items()}  # `from . import __version__` is no module


def test_every_module_has_a_layer_and_imports_only_downwards() -> None:
    graph = package_imports()
    layer = {name: i for i, names in enumerate(LAYERS) for name in names}
    assert set(graph) <= set(layer), f"modules with no layer: {sorted(set(graph) - set(layer))}"
    upward = [(m, d) for m, deps in graph.items() for d in deps
              if m not in ("__init__",) and layer[d] > layer[m]]
    assert not upward, f"imports against the data flow: {upward}"


def test_nothing_imports_the_cli() -> None:
    graph = package_imports()
    cli_modules = {"cli", "cli_lm", "console"}
    offenders = [m for m, deps in graph.items() if deps & cli_modules and m not in cli_modules | {"__main__"}]
    assert not offenders


@pytest.mark.parametrize("module", ["namesclf.predict", "namesclf.generate", "namesclf.serve", "namesclf.evaluate"])
def test_inference_never_loads_training_code(module: str) -> None:
    code = f"import sys, {module}; print(sorted(m for m in sys.modules if m.startswith('namesclf.')))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert not {f"namesclf.{m}" for m in TRAINING} & set(eval(loaded)), loaded


def test_the_command_line_starts_without_torch() -> None:
    """``names --help`` and option parsing need no torch: the choices come from :mod:`namesclf.config`."""
    code = "import sys, namesclf.cli; print('torch' in sys.modules, 'pandas' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_train_choices_and_help_defaults_come_from_the_constants() -> None:
    train = cli.commands["train"]
    params = {p.name: p for p in train.params}
    assert tuple(params["kind"].type.choices) == CLASSIFIER_KINDS
    assert tuple(params["class_weight"].type.choices) == CLASS_WEIGHTS
    assert tuple(params["optimizer"].type.choices) == OPTIMIZERS
    assert tuple(params["device"].type.choices) == DEVICES
    for name in ("kind", "class_weight", "device", "seed", "refit_ngram"):
        field = "model" if name == "kind" else name
        assert params[name].default == getattr(TrainConfig, field), name
    text = " ".join(CliRunner().invoke(cli, ["train", "--help"], terminal_width=400).output.split())
    large = f"from {LARGE_CORPUS:,} training names:"
    assert f"[default: {MODEL_DEFAULTS['handbuilt']['hidden']} handbuilt, {MODEL_DEFAULTS['gru']['hidden']} others; " \
        f"{large} {LARGE_CORPUS_DEFAULTS['gru']['hidden']}]" in text
    assert f"[default: {MODEL_DEFAULTS['gru']['epochs']}; {large} {LARGE_CORPUS_DEFAULTS['gru']['epochs']}]" in text
    assert f"[default: {MODEL_DEFAULTS['handbuilt']['batch_size']} handbuilt, {MODEL_DEFAULTS['gru']['batch_size']} " \
        "others]" in text  # no large-corpus part where the size changes nothing


def test_lm_train_defaults_are_lmconfigs() -> None:
    defaults = {f.name: f.default for f in dataclasses.fields(LMConfig)}
    for param in lm_train.params:
        if param.name in defaults:
            assert param.default == defaults[param.name], param.name


def test_the_estimator_takes_every_train_option_with_the_same_default() -> None:
    params = inspect.signature(NameClassifier).parameters
    for field in dataclasses.fields(TrainConfig):
        assert field.name in params, field.name
        if field.name != "device":  # an estimator stays on the CPU unless asked
            assert params[field.name].default == field.default, field.name
    clf = NameClassifier(ngram_order=2, embed=16, weight_decay=0.01)
    config = clf._config()
    assert (config.ngram_order, config.embed, config.weight_decay) == (2, 16, 0.01)
    assert "Parameters" in NameClassifier.__doc__ and "Examples" in NameClassifier.__doc__


@pytest.mark.parametrize("config", [TrainConfig(), LMConfig()])
def test_both_configs_share_one_validation(config: TrainConfig | LMConfig) -> None:
    for change, message in ((dict(dropout=1.0), r"^--dropout must be in \[0, 1\)$"),
                            (dict(lr=0.0), r"^--lr must be positive$"),
                            (dict(weight_decay=-1.0), r"^--weight-decay must be 0 or more$"),
                            (dict(patience=-1), r"^--patience must be 0 \(never stop early\) or more$"),
                            (dict(device="tpu"), r"^unknown --device 'tpu': use auto, cpu, cuda$"),
                            (dict(layers=0), r"^--layers must be at least 1$")):
        with pytest.raises(NamesError, match=message):
            dataclasses.replace(config, **change).resolved()
    assert type(config).from_dict({**config.to_dict(), "unknown_key": 1}) == config

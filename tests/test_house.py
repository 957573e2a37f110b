"""The house rules that keep the code easy to live in, checked rather than hoped for: data flows one
way, inference never loads training code, nothing imports the CLI, and every option has one source."""

from __future__ import annotations

import ast
import dataclasses
import graphlib
import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from namesclf import NameClassifier
from namesclf.cli.lm import lm_train
from namesclf.cli.main import cli
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
#: The data flow, lowest first: a module may import only from its own room or an earlier one. The
#: top-level modules other than the entry points are the ground every room stands on.
ROOMS = ["ground", "data", "models", "inference", "report", "training", "lm", "estimator", "serve", "cli"]
GROUND = {"errors", "config", "text", "files"}
ENTRY = {"__init__", "__main__"}
#: Inside ``lm``, only its training module may reach ``training``: sampling and scoring never do.
LM_TRAINING = {"lm.train"}


def module_name(path: Path) -> str:
    """``namesclf/inference/predictor.py`` -> ``inference.predictor``; ``__init__`` keeps its folder."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts)


def room(module: str) -> str:
    top = module.split(".")[0]
    if top in GROUND:
        return "ground"
    return top


def package_modules() -> list[str]:
    return sorted(module_name(p) for p in PACKAGE.rglob("*.py"))


def package_imports() -> dict[str, set[str]]:
    """``{module: the namesclf modules it imports}``, from the source (lazy imports included)."""
    graph = {}
    for path in PACKAGE.rglob("*.py"):
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("namesclf."):
                names.add(node.module.removeprefix("namesclf."))
            elif isinstance(node, ast.ImportFrom) and node.module == "namesclf":
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.Import):
                names.update(a.name.removeprefix("namesclf.") for a in node.names if a.name.startswith("namesclf."))
        graph[module_name(path)] = names
    return graph


def test_every_module_lives_in_a_known_room_and_imports_only_downwards() -> None:
    graph = package_imports()
    order = {name: i for i, name in enumerate(ROOMS)}
    homeless = [m for m in graph if m.split(".")[-1] not in ENTRY and room(m) not in order]
    assert not homeless, f"modules in no room: {homeless}"
    upward = [(m, d) for m, deps in graph.items() for d in deps
              if m not in ENTRY and room(m) in order and d.split(".")[0] != "__version__"
              and room(d) in order and order[room(d)] > order[room(m)]]
    assert not upward, f"imports against the data flow: {upward}"


def test_inference_and_lm_sampling_never_import_training() -> None:
    graph = package_imports()
    offenders = [(m, d) for m, deps in graph.items() for d in deps
                 if room(d) == "training" and (room(m) in ("inference", "report", "models", "data")
                                               or (room(m) == "lm" and m not in LM_TRAINING))]
    assert not offenders, offenders


def test_the_layout_page_lists_every_module() -> None:
    layout = (PACKAGE.parent / "docs" / "layout.md").read_text()
    missing = [m for m in package_modules() if m.split(".")[-1] not in ENTRY
               and f"{m.split('.')[-1]}.py" not in layout]
    assert not missing, f"docs/layout.md does not list: {missing}"
    rooms = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert all(f"{r}/" in layout for r in rooms), rooms


@pytest.mark.parametrize("name", ["inference", "serve"])
def test_no_import_cycle_inside_the_room(name: str) -> None:
    """Lazy imports included: a cycle makes the first of its modules loaded decide what the other
    sees half-built (``tables`` dispatches Dask frames to ``dask_tables``, so the pandas work both
    run lives in ``frames``)."""
    inside = {m: {d for d in deps if room(d) == name} for m, deps in package_imports().items() if room(m) == name}
    graphlib.TopologicalSorter(inside).prepare()  # raises CycleError, naming the cycle


def test_nothing_imports_the_cli() -> None:
    graph = package_imports()
    offenders = [m for m, deps in graph.items() if any(room(d) == "cli" for d in deps)
                 and room(m) != "cli" and m != "__main__"]
    assert not offenders


@pytest.mark.parametrize("module", ["namesclf.inference.predictor", "namesclf.lm.generate", "namesclf.serve.app",
                                    "namesclf.report.evaluate"])
def test_inference_never_loads_training_code(module: str) -> None:
    code = f"import sys, {module}; print(sorted(m for m in sys.modules if m.startswith('namesclf.')))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert not [m for m in eval(loaded) if m.startswith(("namesclf.training", "namesclf.lm.train"))], loaded


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


# ----------------------------------------------------------------------------- prediction options


def _changed(option: dataclasses.Field) -> object:
    """A value other than ``option``'s default, within its bounds (a new kind of option needs one here)."""
    from namesclf.inference.options import DEFAULTS, bounds, choices

    default = getattr(DEFAULTS, option.name)
    limits = bounds(option)
    words = choices(option)
    if words is not None:
        return next(word for word in words if word != default)
    if isinstance(default, bool):
        return not default
    if isinstance(default, int):
        return default + 1
    if "gt" in limits and "lt" in limits:
        return (limits["gt"] + limits["lt"]) / 2
    if option.name == "prior":
        return "uniform"
    if option.name == "order":
        return "family-first"
    pytest.fail(f"Options.{option.name}: say here what a value other than its default is")


def _cli_args(option: dataclasses.Field, value: object) -> list[str]:
    from namesclf.cli.predict import flag

    return [flag(option.name)] if value is True else [flag(option.name), str(value)]


def test_every_prediction_option_reaches_the_cli_http_and_python_with_one_default(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Each field of :class:`Options` is an option of ``names predict``, a field of both HTTP
    request models, a parameter of ``predict_frame``, ``Predictor.predict`` and ``NameClassifier``,
    with the same default; and a value other than the default, given to each, arrives in the
    ``Options`` it builds. A new field left out of any of them fails here."""
    import pandas as pd

    from namesclf.cli.predict import options_from_cli
    from namesclf.inference import tables
    from namesclf.inference.options import DEFAULTS, Options, option_fields
    from namesclf.inference.predictor import Predictor
    from namesclf.serve.app import _options
    from namesclf.serve.schemas import PredictQuery, PredictRequest

    command = cli.commands["predict"]
    names = [f.name for f in option_fields()]

    def from_cli(args: list[str]) -> Options:
        params = command.make_context("predict", ["Ivanov", *args]).params
        return options_from_cli({name: params[name] for name in names})

    seen: list[Options] = []
    monkeypatch.setattr(tables, "predict_pandas", lambda frame, column, predictor, options, *a: seen.append(options))
    monkeypatch.setattr(Predictor, "predict_with", lambda self, batch, options, strict=True: seen.append(options))
    bare = Predictor.__new__(Predictor)
    assert from_cli([]) == DEFAULTS
    assert _options(PredictRequest(names=[]), "names") == _options(PredictQuery(name="x"), "name") == DEFAULTS
    python = {"predict_frame": tables.predict_frame, "Predictor.predict": Predictor.predict,
              "NameClassifier": NameClassifier}
    for option in option_fields():
        assert option.name in {p.name for p in command.params}, f"names predict has no {option.name}"
        assert option.name in PredictRequest.model_fields and option.name in PredictQuery.model_fields, option.name
        for where, function in python.items():
            param = inspect.signature(function).parameters.get(option.name)
            assert param is not None, f"{where} has no {option.name}"
            if (where, option.name) != ("NameClassifier", "surname_only"):  # it classifies names as fit on them
                assert param.default == getattr(DEFAULTS, option.name), (where, option.name)
    for option in option_fields():
        value = _changed(option)
        want = Options(**{option.name: value})
        assert from_cli(_cli_args(option, value)) == want, option.name
        assert _options(PredictRequest(names=[], **{option.name: value}), "names") == want, option.name
        assert _options(PredictQuery(name="x", **{option.name: value}), "name") == want, option.name
        tables.predict_frame(pd.DataFrame({"x": []}), "x", bare, **{option.name: value})
        bare.predict([], **{option.name: value})
        assert seen[-2:] == [want, want], option.name
        assert NameClassifier(**{option.name: value})._options(surname_only=want.surname_only) == want, option.name


# ----------------------------------------------------------------------------- the docs hold together

ROOT = PACKAGE.parent
#: The markdown a reader follows: the README, the manual and lab notebook, the data notes.
MARKDOWN = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "data" / "README.md"]
FENCE = re.compile(r"^\s*(```|~~~)")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
#: ``docs/benchmarks.md#server`` or ``docs/benchmarks.md, "Cold start"`` in a code comment.
CODE_POINTER = re.compile(r"docs/([\w-]+\.md)(?:#([\w-]+)|, \"([^\"]+)\")?")


def prose_lines(path: Path, inline_code: bool = False) -> list[tuple[int, str]]:
    """The lines outside fenced code blocks; inline code removed unless asked for (a link there is
    not a link, but a heading's code is part of its anchor)."""
    lines, fenced = [], False
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            lines.append((number, line if inline_code else re.sub(r"`[^`]*`", "", line)))
    return lines


def heading_anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a markdown file; a repeated heading gets ``-1``, ``-2``... as on GitHub."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    for _, line in prose_lines(path, inline_code=True):
        heading = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if heading:
            slug = heading_anchor(heading.group(1))
            count = seen.get(slug, 0)
            seen[slug] = count + 1
            found.add(f"{slug}-{count}" if count else slug)
    return found


def test_every_relative_link_in_the_docs_reaches_a_file_and_a_heading() -> None:
    broken = []
    for page in MARKDOWN:
        for number, line in prose_lines(page):
            for target in LINK.findall(line):
                if re.match(r"^[a-z][a-z+.-]*:", target):  # http:, https:, mailto:
                    continue
                path, _, anchor = target.partition("#")
                dest = (page.parent / path).resolve() if path else page
                where = f"{page.relative_to(ROOT)}:{number}: {target}"
                if not dest.exists():
                    broken.append(f"{where} (no such file)")
                elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                    broken.append(f"{where} (no such heading)")
    assert not broken, "\n".join(broken)


def test_code_comments_point_to_docs_sections_that_exist() -> None:
    folders = ("namesclf", "scripts", "benchmarks", "experiments")
    sources = [path for folder in folders for path in (ROOT / folder).rglob("*.py")]
    broken = []
    for source in sources:
        for number, line in enumerate(source.read_text(encoding="utf-8").splitlines(), 1):
            for page, anchor, heading in CODE_POINTER.findall(line):
                doc = ROOT / "docs" / page
                wanted = anchor or (heading and heading_anchor(heading))
                if not doc.exists() or (wanted and wanted not in anchors(doc)):
                    broken.append(f"{source.relative_to(ROOT)}:{number}: docs/{page} {anchor or heading}")
    assert not broken, "\n".join(broken)


def test_module_paths_named_in_the_docs_exist() -> None:
    named = {(page.name, path) for page in MARKDOWN[:-1]
             for path in re.findall(r"\bnamesclf/[\w/]+\.(?:py|csv|json)\b", page.read_text(encoding="utf-8"))}
    assert not [f"{page}: {path}" for page, path in sorted(named) if not (ROOT / path).exists()]

"""Model files checked before they are trusted: a ``.pt`` whose config declares a network too large
(or weights of other shapes) is refused before anything is built; an ``.onnx`` whose metadata is
malformed, whose graph answers another number of languages than it lists, or whose run fails is
one line; a graph that sizes a tensor from its input runs within ONNX Runtime's memory budget or
fails with one line; and an unusable export beside a good ``.pt`` falls back to torch with one
warning line."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from namesclf.cli.main import cli
from namesclf.config import TrainConfig
from namesclf.errors import ModelFileError
from namesclf.inference import torch_scorer
from namesclf.inference.onnx_scorer import MEMORY_BUDGET_MB, OnnxScorer
from namesclf.inference.predictor import Predictor
from namesclf.models.checkpoint import MAX_PARAMETERS, classifier_payload, load_checkpoint, save_checkpoint
from namesclf.models.export import export_model_file
from namesclf.models.networks import build_classifier
from namesclf.models.onnx_format import MAX_METADATA_DEPTH, METADATA_KEY, read_metadata

from .conftest import REPO

LABELS = ["Greek", "Italian", "Russian"]


def config(**changes: object) -> dict:
    return {**TrainConfig(model="gru", hidden=8, ngram_order=0).resolved().to_dict(), **changes}


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small classifier's ``.pt`` with its ``.onnx`` export beside it."""
    torch.manual_seed(0)
    model = build_classifier(config(), len(LABELS))
    path = save_checkpoint(tmp_path_factory.mktemp("files") / "m.pt",
                           classifier_payload(model, config(), LABELS, {}))
    export_model_file(path)
    return path


def predict(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["predict", *args])
    return result.exit_code, result.output


def assert_one_line(code: int, output: str, needle: str) -> None:
    assert code == 1 and output.startswith("Error: ") and output.count("\n") == 1, output
    assert needle in output, output


def run_names(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "namesclf", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=180)


# ----------------------------------------------------------------------------- .pt files


def crafted_pt(path: Path, declared: dict, labels: list[str] = LABELS) -> Path:
    """A model file that passes ``weights_only`` loading: tiny real weights (hidden 8) under a
    config that declares something else."""
    model = build_classifier(config(), len(LABELS))
    payload = classifier_payload(model, config(), LABELS, {})
    payload["config"].update(declared)
    payload["labels"] = labels
    return save_checkpoint(path, payload)


@pytest.mark.parametrize(("declared", "message"), [
    ({"hidden": 40000}, "the config's hidden is 40000, outside 1-4096"),
    ({"hidden": "8"}, "the config's hidden is 8, outside 1-4096"),
    ({"layers": 8.0}, "the config's layers is 8.0, outside 1-16"),
    ({"ngram_order": 99}, "the config's ngram_order is 99, outside 0-6"),
    ({"hidden": 4096, "layers": 16}, f"more than the {MAX_PARAMETERS:,} a model file may have"),
    ({"hidden": 16}, ": rnn.weight_ih_l0 has shape (24, 64) where the config implies (48, 64)"),
])
def test_a_pt_that_declares_another_network_is_refused_before_it_is_built(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, declared: dict, message: str) -> None:
    path = crafted_pt(tmp_path / "m.pt", declared)

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("the network was built before the file was checked")

    monkeypatch.setattr(torch_scorer, "build_classifier", never)
    with pytest.raises(ModelFileError, match="^" + re.escape(str(path))) as info:
        Predictor.load(path, backend="torch")
    assert message in str(info.value)
    assert_one_line(*predict("Smith", "--model", str(path)), message)


def test_the_parameter_count_is_the_real_network_s() -> None:
    """What the cap counts is what the real build makes (the meta-device build has the same
    parameters, allocating none), and a network under the cap is then held to its weights' shapes."""
    from namesclf.models.checkpoint import check_classifier

    small = config(hidden=24, layers=2, ngram_buckets=512, ngram_dim=16, ngram_order=3)
    with torch.device("meta"):
        meta = {name: p.shape for name, p in build_classifier(small, 5).named_parameters()}
    assert meta == {name: p.shape for name, p in build_classifier(small, 5).named_parameters()}
    big = config(hidden=2048, layers=2)
    with torch.device("meta"):
        count = sum(p.numel() for p in build_classifier(big, 18).parameters())
    assert MAX_PARAMETERS / 2 < count < MAX_PARAMETERS
    with pytest.raises(ModelFileError, match="no weights for"):
        check_classifier({"config": big, "labels": LABELS * 6, "state_dict": {}}, "big.pt")


def test_too_many_labels_an_lm_declaring_a_huge_network_and_damaged_calibration_are_refused(tmp_path: Path) -> None:
    path = crafted_pt(tmp_path / "labels.pt", {}, labels=[f"L{i}" for i in range(100_001)])
    with pytest.raises(ModelFileError, match="labels are not a list of at most 100,000 strings"):
        load_checkpoint(path)
    lm = save_checkpoint(tmp_path / "lm.pt", {"kind": "lm", "config": {"hidden": 40000, "layers": 1},
                                               "state_dict": {}, "labels": [], "meta": {}})
    with pytest.raises(ModelFileError, match="hidden is 40000, outside 1-4096"):
        load_checkpoint(lm, kind="lm")
    model = build_classifier(config(), len(LABELS))
    damaged = save_checkpoint(tmp_path / "calibration.pt", classifier_payload(
        model, config(), LABELS, {"calibration": {"label_counts": [3, "many", 1]}}))
    assert_one_line(*predict("Smith", "--model", str(damaged), "--prior", "uniform"),
                    "the model's label counts are not 3 non-negative numbers, one per language")


# ----------------------------------------------------------------------------- ONNX metadata


def with_metadata(exported: Path, dest: Path, raw: str | None = None, **changes: object) -> Path:
    """A copy of the export whose metadata is ``raw``, or the real one with ``changes``."""
    proto = onnx.load(str(exported.with_suffix(".onnx")))
    entry = next(p for p in proto.metadata_props if p.key == METADATA_KEY)
    entry.value = raw if raw is not None else json.dumps({**json.loads(entry.value), **changes})
    onnx.save(proto, str(dest))
    return dest


@pytest.mark.parametrize(("raw", "message"), [
    ("[" * 100 + "]" * 100, f"nests deeper than {MAX_METADATA_DEPTH} levels"),
    ("[" * 100_000 + "]" * 100_000, "not JSON (RecursionError)"),
    ('{"format": ', "not JSON (JSONDecodeError)"),
    ('"' + "x" * (1 << 20) + '"', "characters, more than the 1,048,576 allowed"),
    ("[1, 2]", "not a namesclf ONNX description"),
])
def test_malformed_metadata_is_one_line(raw: str, message: str) -> None:
    with pytest.raises(ModelFileError, match=r"^m\.onnx: ") as info:
        read_metadata(raw, "m.onnx")
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(("changes", "message"), [
    ({"labels": 3}, "labels are not a list of 1 to 100,000 distinct strings"),
    ({"labels": ["Greek", "Greek", "Russian"]}, "labels are not a list of 1 to 100,000 distinct strings"),
    ({"config": ["hidden", 8]}, "config or meta is not a JSON object"),
    ({"meta": "calibrated"}, "config or meta is not a JSON object"),
    ({"outputs": "probability"}, "outputs are not ['probability'(, 'novelty_features')]"),
    ({"format_version": [1]}, "ONNX format version [1] is newer"),
    ({"meta": {"calibration": [1]}}, "the model's meta or calibration is not an object"),
    ({"meta": {"calibration": {"conformal": "x"}}}, "the model's conformal calibration is not an object"),
    ({"meta": {"calibration": {"label_counts": [5, 7]}}}, "label counts are not 3 non-negative numbers"),
    ({"meta": {"calibration": {"label_counts": [5, 7, "x"]}}}, "label counts are not 3 non-negative numbers"),
    ({"labels": ["Greek", "Italian"]}, "the graph answers 3 languages but its metadata lists 2"),
    ({"labels": [*LABELS, "Welsh"]}, "the graph answers 3 languages but its metadata lists 4"),
])
def test_metadata_that_disagrees_with_itself_or_the_graph_is_refused_at_load(
        exported: Path, tmp_path: Path, changes: dict, message: str) -> None:
    path = with_metadata(exported, tmp_path / "bad.onnx", **changes)
    with pytest.raises(ModelFileError, match="^" + re.escape(str(path))) as info:
        OnnxScorer.load(path)
    assert message in str(info.value)
    assert_one_line(*predict("Smith", "--model", str(path)), message)


def test_a_server_with_a_label_count_the_graph_does_not_have_refuses_to_start(exported: Path, tmp_path: Path) -> None:
    path = with_metadata(exported, tmp_path / "short.onnx", labels=["Greek", "Italian"])
    proc = run_names("serve", "--model", str(path), "--port", "0")
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
    assert "the graph answers 3 languages but its metadata lists 2" in proc.stderr


# ----------------------------------------------------------------------------- hostile graphs


def hostile_graph(exported: Path, dest: Path, kind: str, floats_per_name: int = 600_000_000) -> Path:
    """A graph with the export's own metadata, ``idx (length, batch)`` -> ``probability (batch,
    n)``, that either sizes a tensor from its input (``bomb``: ``floats_per_name`` floats per name,
    as ConstantOfShape driven by the batch) or fails at run time (``fails``: a Reshape that cannot
    hold)."""
    meta = {p.key: p.value for p in onnx.load(str(exported.with_suffix(".onnx"))).metadata_props}
    n = len(json.loads(meta[METADATA_KEY])["labels"])
    ints = {"one": [1], "axis0": [0], "per_name": [floats_per_name], "width": [n], "seven": [7]}
    initializers = [numpy_helper.from_array(np.array(v, dtype=np.int64), k) for k, v in ints.items()]
    nodes = [helper.make_node("Shape", ["idx"], ["shape"]),
             helper.make_node("Gather", ["shape", "one"], ["batch"], axis=0),
             helper.make_node("Concat", ["batch", "width"], ["out_shape"], axis=0)]
    if kind == "bomb":
        nodes += [helper.make_node("Concat", ["batch", "per_name"], ["dims"], axis=0),
                  helper.make_node("ConstantOfShape", ["dims"], ["zeros"],
                                   value=helper.make_tensor("v", TensorProto.FLOAT, [1], [0.0])),
                  helper.make_node("ReduceSum", ["zeros", "one"], ["sums"], keepdims=1)]
    else:
        nodes += [helper.make_node("Reshape", ["idx", "seven"], ["seven_long"]),
                  helper.make_node("Cast", ["seven_long"], ["seven_float"], to=TensorProto.FLOAT),
                  helper.make_node("ReduceSum", ["seven_float"], ["sums"], keepdims=1)]
    nodes.append(helper.make_node("Expand", ["sums", "out_shape"], ["probability"]))
    graph = helper.make_graph(nodes, kind, [helper.make_tensor_value_info("idx", TensorProto.INT64,
                                                                           ["length", "batch"])],
                              [helper.make_tensor_value_info("probability", TensorProto.FLOAT, ["batch", n])],
                              initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    helper.set_model_props(model, meta)
    onnx.save(model, str(dest))
    return dest


def test_a_graph_that_sizes_a_tensor_from_its_input_is_stopped_by_the_memory_budget(
        exported: Path, tmp_path: Path) -> None:
    """Each name asks for 2.4 GB: past ONNX Runtime's budget, the run fails before the memory is
    taken, with one line and no ONNX Runtime log beside it; the process's peak memory stays well
    under what the graph asked for (the interpreter, torch and ONNX Runtime themselves take some)."""
    path = hostile_graph(exported, tmp_path / "bomb.onnx", "bomb")
    assert MEMORY_BUDGET_MB << 20 < 600_000_000 * 4
    code = ("import resource, sys\nfrom namesclf.cli.main import main\n"
            "try:\n    main()\nfinally:\n"
            "    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stdout)\n")
    proc = subprocess.run([sys.executable, "-c", code, "predict", "Smith", "--model", str(path)],
                          capture_output=True, text=True, cwd=REPO, timeout=180)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith(f"Error: {path}: the model asks for more memory than ONNX Runtime's budget of")
    asked_kib = 600_000_000 * 4 // 1024
    assert int(proc.stdout.split()[-1]) < asked_kib * 3 // 4, "the process held what the graph asked for"
    small = hostile_graph(exported, tmp_path / "small_bomb.onnx", "bomb", floats_per_name=1000)
    assert Predictor.load(small).proba_ascii(["Smith", "Jones"]).shape == (2, len(LABELS))


def test_a_graph_that_fails_at_run_time_is_one_line(exported: Path, tmp_path: Path) -> None:
    path = hostile_graph(exported, tmp_path / "fails.onnx", "fails")
    assert_one_line(*predict("Smith", "--model", str(path)), f"{path}: ONNX Runtime cannot run the model:")


# ----------------------------------------------------------------------------- an unusable export beside a good .pt


@pytest.mark.parametrize("export", ["zero-byte", "corrupt", "short-labels"])
def test_an_unusable_export_beside_a_good_pt_falls_back_to_torch_with_one_warning(
        exported: Path, tmp_path: Path, export: str) -> None:
    model = tmp_path / "m.pt"
    model.write_bytes(exported.read_bytes())
    beside = model.with_suffix(".onnx")
    if export == "short-labels":
        with_metadata(exported, beside, labels=["Greek", "Italian"])
    else:
        beside.write_bytes(b"" if export == "zero-byte" else b"\x08\x07garbage" * 50)
    expected = predict("Papadopoulos", "Rossi", "--model", str(model), "--backend", "torch")
    assert expected[0] == 0
    proc = run_names("predict", "Papadopoulos", "Rossi", "--model", str(model))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == expected[1]
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Warning: {beside}: ") and lines[0].endswith(
        f"; predicting with torch from {model}"), proc.stderr
    assert_one_line(*predict("Smith", "--model", str(model), "--backend", "onnx"), f"{beside}: ")

"""The ONNX export: the same answers as torch to 1e-5, for every model kind, on the real test
split; self-describing files that load with no pickle; stale or damaged files noticed; and a
prediction process that never imports torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from namesclf.cli.main import cli
from namesclf.config import CLASSIFIER_KINDS
from namesclf.data.dataset import load_names, split_names
from namesclf.errors import NamesError
from namesclf.inference.conformal import ConformalCalibration
from namesclf.inference.openset import NoveltyScorer, OpenSet
from namesclf.inference.options import Options
from namesclf.inference.predictor import Predictor
from namesclf.models.checkpoint import classifier_payload, load_checkpoint, save_checkpoint
from namesclf.models.export import export_model_file
from namesclf.models.networks import NgramEnsemble, build_classifier
from namesclf.models.novelty import background_state
from namesclf.training.batches import EncodedSplit
from namesclf.training.calibrate import _count
from namesclf.training.train import fit_ngram

from .conftest import network_config

#: Parity bound for every probability and every novelty feature.
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def real_split(real_data: Path) -> dict[str, pd.DataFrame]:
    frame = load_names(real_data).frame
    split = split_names(frame, seed=0)
    return {part: frame[split == part] for part in ("train", "valid", "test")}


def model_file(parts: dict[str, pd.DataFrame], folder: Path, kind: str, ngram_order: int, seed: int = 0) -> Path:
    """A model file of ``kind`` as training writes it: random network weights (parity does not
    need a good model), the n-gram half counted and tuned on the real split, pooling knobs away
    from their neutral values, and every calibration prediction reads."""
    labels = sorted(parts["train"]["language"].unique())
    config = network_config(model=kind, hidden=16, embed=8, ngram_order=ngram_order,
                            **({"optimizer": "manual"} if kind == "handbuilt" else {}))
    torch.manual_seed(seed)
    model = build_classifier(config, len(labels)).eval()
    with torch.no_grad():  # random weights give near-uniform answers: widen the output layer's range
        for name, param in model.named_parameters():
            if name.endswith(("i2o.weight", "out.weight")):
                param.mul_(20)
    meta: dict = {"calibration": {"label_counts": parts["train"]["language"].value_counts()[labels].tolist()}}
    if isinstance(model, NgramEnsemble):
        index = {lang: i for i, lang in enumerate(labels)}
        fit_ngram(model.ngram, EncodedSplit.from_frame(parts["train"], index),
                  EncodedSplit.from_frame(parts["valid"], index))
        model.weight.fill_(0.8)
        model.shift.fill_(0.3)
        model.temperature.fill_(1.7)
        background = _count(parts["train"], parts["valid"], labels, 1)
        rng = np.random.default_rng(seed)
        scorer = NoveltyScorer(rng.normal(size=6), rng.uniform(0.5, 2, size=6), rng.normal(size=6), 0.1)
        meta["calibration"]["openset"] = {**OpenSet(scorer, rng.normal(size=200)).to_dict(),
                                          **background_state(background)}
    path = folder / f"{kind}-{ngram_order}.pt"
    save_checkpoint(path, classifier_payload(model, config, labels, meta))
    torch_predictor = Predictor.load(path, backend="torch")
    valid = parts["valid"].drop_duplicates("ascii")
    proba = torch_predictor.proba_ascii(valid["ascii"].tolist())
    index = {lang: i for i, lang in enumerate(labels)}
    meta["calibration"]["conformal"] = ConformalCalibration.from_proba(
        proba.astype(np.float64), valid["language"].map(index).to_numpy()).to_dict()
    save_checkpoint(path, classifier_payload(model, config, labels, meta))
    export_model_file(path)
    return path


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "order"), [*((k, 4) for k in CLASSIFIER_KINDS), ("handbuilt", 0), ("gru", 0)])
def test_onnx_and_torch_agree_on_the_test_split(real_split: dict[str, pd.DataFrame], tmp_path: Path, kind: str,
                                                order: int) -> None:
    path = model_file(real_split, tmp_path, kind, order)
    onnx, ref = Predictor.load(path), Predictor.load(path, backend="torch")
    assert (onnx.backend, ref.backend) == ("onnx", "torch")
    names = real_split["test"]["ascii"].drop_duplicates().tolist()
    assert len({len(n) for n in names}) > 10  # many lengths: the graph is not fixed to the example's
    p_onnx, f_onnx = onnx.score_ascii(names, features=bool(order))
    p_torch, f_torch = ref.score_ascii(names, features=bool(order))
    np.testing.assert_allclose(p_onnx, p_torch, rtol=0, atol=TOLERANCE)
    assert p_onnx.std() > 0.01  # not a degenerate model that any two paths would agree on
    if order:
        np.testing.assert_allclose(f_onnx, f_torch, rtol=TOLERANCE, atol=TOLERANCE)
        # The explanation output: the n-gram half's log-likelihood at every position, the end included.
        t_onnx, t_torch = onnx.score_ascii_tokens(names)[2], ref.score_ascii_tokens(names)[2]
        assert [t.shape for t in t_onnx] == [(len(n) + 1, len(onnx.labels)) for n in names]
        np.testing.assert_allclose(np.concatenate(t_onnx), np.concatenate(t_torch), rtol=TOLERANCE, atol=1e-4)
    options = Options(k=3, coverage=0.9, prior="uniform", abstain=bool(order))
    a, b = onnx.predict_with(names, options), ref.predict_with(names, options)
    assert [x.languages[0][0] for x in a] == [x.languages[0][0] for x in b]
    assert sum(x.prediction_set != y.prediction_set for x, y in zip(a, b, strict=True)) <= len(names) // 1000
    if order:
        assert sum(x.abstained != y.abstained for x, y in zip(a, b, strict=True)) <= len(names) // 1000
        scores = np.array([[x.novelty, y.novelty] for x, y in zip(a, b, strict=True)])
        np.testing.assert_allclose(scores[:, 0], scores[:, 1], rtol=TOLERANCE, atol=TOLERANCE)


@pytest.mark.slow
def test_the_trained_default_model_agrees_with_torch(trained_model: Path, real_split: dict[str, pd.DataFrame]
                                                     ) -> None:
    """``names train`` wrote the export beside the model; the default load answers from it."""
    onnx, ref = Predictor.load(trained_model), Predictor.load(trained_model, backend="torch")
    assert onnx.backend == "onnx"
    names = real_split["test"]["ascii"].drop_duplicates().tolist()
    np.testing.assert_allclose(onnx.proba_ascii(names), ref.proba_ascii(names), rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(onnx.novelty_ascii(names), ref.novelty_ascii(names), rtol=TOLERANCE, atol=TOLERANCE)


@pytest.fixture(scope="module")
def small_model(real_split: dict[str, pd.DataFrame], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return model_file(real_split, tmp_path_factory.mktemp("onnx"), "gru", 4)


def test_the_export_is_self_describing_and_holds_no_pickle(small_model: Path) -> None:
    import onnx

    proto = onnx.load(str(small_model.with_suffix(".onnx")))
    info = json.loads({p.key: p.value for p in proto.metadata_props}["namesclf"])
    payload = load_checkpoint(small_model)
    assert info["labels"] == payload["labels"] and info["config"] == payload["config"]
    assert info["outputs"] == ["probability", "novelty_features"]
    assert set(info["meta"]["calibration"]) == {"label_counts", "conformal", "openset"}
    assert "background" not in info["meta"]["calibration"]["openset"]  # it is inside the graph
    assert b"\x80\x04" not in small_model.with_suffix(".onnx").read_bytes()[:64]  # protobuf, not a pickle


def test_a_stale_export_is_noticed(small_model: Path, tmp_path: Path) -> None:
    pt, onnx = tmp_path / "m.pt", tmp_path / "m.onnx"
    pt.write_bytes(small_model.read_bytes())
    onnx.write_bytes(small_model.with_suffix(".onnx").read_bytes())
    assert Predictor.load(pt).backend == "onnx"
    payload = load_checkpoint(pt)
    payload["meta"]["note"] = "trained again"
    save_checkpoint(pt, payload)
    with pytest.warns(UserWarning, match="exported from another m.pt"):
        assert Predictor.load(pt).backend == "torch"
    with pytest.raises(NamesError, match="names export"):
        Predictor.load(pt, backend="onnx")
    refused = CliRunner().invoke(cli, ["export", str(pt)])  # the stale export is still a file the user has
    assert refused.exit_code == 1 and "exists: pass --force" in refused.output, refused.output
    result = CliRunner().invoke(cli, ["export", str(pt), "--force"])
    assert result.exit_code == 0, result.output
    assert Predictor.load(pt).backend == "onnx"


def test_a_thread_cap_reaches_whichever_runtime_answers(small_model: Path) -> None:
    """``threads`` caps ONNX Runtime's session, or torch's threads when torch answers (what server
    processes and Dask workers rely on, whichever file they are given)."""
    onnx_predictor = Predictor.load(small_model, threads=1)
    assert onnx_predictor.scorer.session.get_session_options().intra_op_num_threads == 1
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert Predictor.load(small_model, backend="torch").backend == "torch"
        assert torch.get_num_threads() == 2  # no cap asked for: left as it was
        assert Predictor.load(small_model, backend="torch", threads=1).backend == "torch"
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_names_export_and_predict_from_the_onnx_file_alone(small_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "alone.onnx"
    result = CliRunner().invoke(cli, ["export", str(small_model), "--out", str(out)])
    assert result.exit_code == 0 and str(out) in result.output, result.output
    result = CliRunner().invoke(cli, ["predict", "Dostoevsky", "Nakamura", "--model", str(out), "--json",
                                      "--abstain", "--coverage", "0.9"])
    assert result.exit_code == 0, result.output
    via_onnx = json.loads(result.stdout)
    result = CliRunner().invoke(cli, ["predict", "Dostoevsky", "Nakamura", "--model", str(small_model), "--json",
                                      "--abstain", "--coverage", "0.9", "--backend", "torch"])
    via_torch = json.loads(result.stdout)
    for a, b in zip(via_onnx, via_torch, strict=True):
        assert a["answer"] == b["answer"] and a["prediction_set"] == b["prediction_set"]
        assert a["predictions"][0]["probability"] == pytest.approx(b["predictions"][0]["probability"], abs=TOLERANCE)


@pytest.mark.parametrize("content", [b"", b"not an onnx file at all", b"\x08\x07\x12\x00garbage"])
def test_a_damaged_onnx_file_is_a_one_line_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.onnx"
    path.write_bytes(content)
    result = CliRunner().invoke(cli, ["predict", "Dostoevsky", "--model", str(path)])
    assert result.exit_code == 1
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1, result.output
    assert "bad.onnx" in result.output


def test_an_onnx_file_of_another_tool_is_refused(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    path = tmp_path / "other.onnx"
    onnx.save(helper.make_model(graph), str(path))
    with pytest.raises(NamesError, match="not one namesclf exported"):
        Predictor.load(path)


def test_abstaining_needs_the_ngram_half_in_onnx_too(real_split: dict[str, pd.DataFrame], tmp_path: Path) -> None:
    predictor = Predictor.load(model_file(real_split, tmp_path, "gru", 0))
    assert predictor.backend == "onnx"
    with pytest.raises(NamesError, match="n-gram half"):
        predictor.predict(["Dostoevsky"], abstain=True)


def test_predicting_from_the_export_never_imports_torch(small_model: Path) -> None:
    """The whole ``names predict`` process, as a user runs it: no torch, pandas, scikit-learn or
    matplotlib is ever imported (that is what makes the cold start fast)."""
    code = ("import sys\nfrom namesclf.cli import main\n"
            f"sys.argv = ['names', 'predict', 'Dostoevsky', 'Okonkwo', '--model', {str(small_model)!r}, '--abstain',"
            " '--coverage', '0.9', '--prior', 'uniform', '--json']\n"
            "try:\n    main()\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
            "heavy = ('torch', 'pandas', 'sklearn', 'matplotlib')\n"
            "print(sorted(m for m in heavy if m in sys.modules), file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().splitlines()[-1] == "[]", done.stderr
    assert [p["name"] for p in json.loads(done.stdout)] == ["Dostoevsky", "Okonkwo"]

"""Explanations (``explain``): the letters' log-likelihood ratios add up to the n-gram half's
log-odds as the torch module computes it, ONNX Runtime gives the same terms as torch, a letter only
one language has is what decides, and every surface (Python, tables, command line, HTTP) carries
them; a model without the n-gram half says so in one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from namesclf.cli.main import cli
from namesclf.errors import NamesError
from namesclf.inference.explain import BEGIN, END, contexts_of
from namesclf.inference.predictor import Predictor
from namesclf.inference.tables import predict_frame
from namesclf.models.checkpoint import classifier_payload, save_checkpoint
from namesclf.models.export import export_model_file
from namesclf.models.networks import build_classifier
from namesclf.text import encode_batch

from .conftest import REPO, network_config
from .test_serve import Server

#: Names of the three made-up languages and some the model never saw (letters it has not paired).
NAMES = ["Ivanov", "Tanaka", "Rossi", "Rovo", "Zav", "Kavaki", "Lovato", "Nakamura", "Ng", "Qwx"]


def _independent_log_odds(predictor: Predictor, folded: str, a: str, b: str) -> tuple[float, float, float]:
    """The n-gram half's log-likelihood ratio and log-odds of ``a`` over ``b``, and the network's
    log-odds, straight from the torch modules (not through the scorer or explain.py)."""
    model = predictor.model
    idx, lengths = encode_batch([folded])
    i, j = predictor.labels.index(a), predictor.labels.index(b)
    with torch.no_grad():
        x, n = torch.from_numpy(idx), torch.from_numpy(lengths)
        likelihood = model.ngram.log_likelihood(x, n)[0].double()
        posterior = model.ngram(x, n)[0].double()
        net = model.net(x, n)[0].double()
    return float(likelihood[i] - likelihood[j]), float(posterior[i] - posterior[j]), float(net[i] - net[j])


def test_the_letters_add_up_to_the_ngram_halfs_log_odds_on_both_runtimes(small_model: Path) -> None:
    """The per-letter ratios sum to the n-gram half's log-likelihood ratio, and with its prior to
    its log-odds, as :class:`NgramBayes` computes them; the network's share is its own log-odds;
    ONNX Runtime (the export's extra output) gives the same terms as torch."""
    onnx, ref = Predictor.load(small_model), Predictor.load(small_model, backend="torch")
    assert (onnx.backend, ref.backend) == ("onnx", "torch")
    from_onnx, from_torch = onnx.predict(NAMES, explain=True), ref.predict(NAMES, explain=True)
    for x, y in zip(from_onnx, from_torch, strict=True):
        e, t = x.explanation, y.explanation
        assert e is not None and t is not None
        assert (e.language, e.runner_up) == (x.languages[0][0], x.languages[1][0]) == (t.language, t.runner_up)
        assert e.letters == (*x.ascii, END) and len(e.contributions) == len(x.ascii) + 1
        np.testing.assert_allclose(e.contributions, t.contributions, rtol=0, atol=1e-4)
        ratio, log_odds, net = _independent_log_odds(ref, x.ascii, e.language, e.runner_up)
        assert sum(e.contributions) == pytest.approx(ratio, abs=1e-4)
        assert e.ngram == pytest.approx(log_odds, abs=1e-4)
        assert e.network == pytest.approx(net, abs=1e-3)
        assert e.pooled == pytest.approx(np.log(x.languages[0][1] / x.languages[1][1]), abs=1e-5)
        assert e.population_prior == 0.0
        data = e.to_dict()
        assert sum(p["log_ratio"] for p in data["positions"]) == pytest.approx(data["letters_log_odds"], abs=1e-9)
        assert data["ngram_log_odds"] == pytest.approx(data["letters_log_odds"] + data["ngram_prior_log_odds"])


def test_a_letter_only_one_language_has_decides(small_model: Path) -> None:
    """Golden behaviour of the made-up set: ``v`` is in Russian names only, so it pushes hardest
    toward Russian where Russian wins, and hardest toward Russian, the runner-up, where it loses."""
    answers = {p.name: p.explanation for p in Predictor.load(small_model).predict(["Zav", "Rovo", "Kavaki"],
                                                                                    explain=True)}
    for name in ("Zav", "Rovo"):
        e = answers[name]
        assert e is not None and e.language == "Russian"
        assert e.letters[e.strongest()] == "v"
    kavaki = answers["Kavaki"]
    assert kavaki is not None and (kavaki.language, kavaki.runner_up) == ("Japanese", "Russian")
    assert kavaki.letters[int(np.argmin(kavaki.contributions))] == "v"
    rovo = answers["Rovo"]
    assert rovo is not None and rovo.ngram < 0 < rovo.pooled  # the pool can overrule the n-gram half


def test_contexts_are_the_letters_before_each_position() -> None:
    assert contexts_of("Ng", 4) == [BEGIN * 3, BEGIN * 2 + "N", BEGIN + "Ng"]
    assert contexts_of("Ivanov", 2)[-1] == "v" and contexts_of("Ab", 1) == ["", "", ""]


def test_a_prior_that_changes_the_answer_is_explained_against_the_new_runner_up(small_model: Path) -> None:
    """The explanation is of the answer shown: under a prior that turns it, ``language`` is the new
    answer, and the prior's share is what it added to the log-odds."""
    predictor = Predictor.load(small_model)
    plain = predictor.predict(["Rovo"], explain=True)[0]
    assert plain.languages[0][0] == "Russian"
    turned = predictor.predict(["Rovo"], explain=True, prior={"Russian": 1, "Italian": 100, "Japanese": 1})[0]
    e = turned.explanation
    assert e is not None and turned.languages[0][0] == e.language == "Italian" and e.runner_up == "Russian"
    assert e.population_prior > 0 and e.final == pytest.approx(e.pooled + e.population_prior)
    assert e.ngram > 0  # the n-gram half preferred Italian all along
    assert e.contributions == tuple(-x for x in plain.explanation.contributions)  # type: ignore[union-attr]


def test_tables_get_a_json_column(small_model: Path) -> None:
    frame = pd.DataFrame({"last": ["Ivanov", "", "Tanaka", "Ivanov"]})
    out = predict_frame(frame, "last", Predictor.load(small_model), k=1, explain=True)
    assert out["explanation"].isna().tolist() == [False, True, False, False]
    first = json.loads(out["explanation"][0])
    assert first["language"] == out["language"][0] and len(first["positions"]) == len("Ivanov") + 1
    assert out["explanation"][0] == out["explanation"][3]
    assert "explanation" not in predict_frame(frame, "last", Predictor.load(small_model)).columns


def test_the_command_line_shows_the_letters_and_the_json_has_them(small_model: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    done = runner.invoke(cli, ["predict", "Zav", "--explain", "--model", str(small_model)])
    assert done.exit_code == 0, done.output
    lines = done.output.splitlines()
    assert lines[1] == "  why Russian over Japanese (n-gram log-likelihood ratio per letter, nats):"
    assert lines[2].split() == ["Z", "a", "v", END] and len(lines[3].split()) == 4
    assert "\x1b[" not in done.output  # no colour off a terminal
    assert "n-gram half" in lines[4] and "network" in lines[5]

    done = runner.invoke(cli, ["predict", "Zav", "Ivanov", "--explain", "--json", "--model", str(small_model)])
    assert done.exit_code == 0, done.output
    body = json.loads(done.output)
    assert [len(b["explanation"]["positions"]) for b in body] == [4, 7]
    assert body[0]["explanation"]["positions"][2] == {**body[0]["explanation"]["positions"][2], "char": "v",
                                                      "context": BEGIN + "Za"}

    table = tmp_path / "in.csv"
    table.write_text("last\nIvanov\nTanaka\n", encoding="utf-8")
    done = runner.invoke(cli, ["predict", "--input", str(table), "--column", "last", "--explain", "--model",
                               str(small_model), "--output", str(tmp_path / "out.csv")])
    assert done.exit_code == 0, done.output
    out = pd.read_csv(tmp_path / "out.csv")
    assert [json.loads(x)["language"] for x in out["explanation"]] == out["language"].tolist()

    lines_in = tmp_path / "names.txt"
    lines_in.write_text("Ivanov\nTanaka\n", encoding="utf-8")
    done = runner.invoke(cli, ["predict", "--input", str(lines_in), "--format", "jsonl", "--explain", "--model",
                               str(small_model), "-q"])
    assert done.exit_code == 0, done.output
    assert [json.loads(x)["explanation"]["language"] for x in done.output.splitlines()] == ["Russian", "Japanese"]


def test_a_real_names_predict_process_explains_without_torch(small_model: Path) -> None:
    """As a user runs it: the export answers and explains, and torch is never imported."""
    code = ("import sys\nfrom namesclf.cli import main\n"
            f"sys.argv = ['names', 'predict', 'Zav', '--model', {str(small_model)!r}, '--explain']\n"
            "try:\n    main()\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
            "print('torch' in sys.modules, file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().splitlines()[-1] == "False", done.stderr
    assert "why Russian over Japanese" in done.stdout and "\x1b[" not in done.stdout


@pytest.fixture(scope="module")
def no_ngram_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bare network (``--ngram-order 0``) with its export: untrained weights suffice here."""
    config = network_config(hidden=8, embed=8)
    labels = ["Italian", "Japanese", "Russian"]
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("bare") / "bare.pt"
    save_checkpoint(path, classifier_payload(build_classifier(config, len(labels)).eval(), config, labels, {}))
    export_model_file(path)
    return path


@pytest.mark.parametrize("backend", ["onnx", "torch"])
def test_a_model_without_the_ngram_half_says_so_in_one_line(no_ngram_model: Path, backend: str) -> None:
    predictor = Predictor.load(no_ngram_model, backend=backend)
    assert predictor.backend == backend
    with pytest.raises(NamesError, match="--ngram-order 0"):
        predictor.predict(["Ivanov"], explain=True)
    done = subprocess.run([sys.executable, "-m", "namesclf", "predict", "Ivanov", "--explain", "--backend", backend,
                           "--model", str(no_ngram_model)], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("Error: explanations (explain)"), done.stderr


def test_an_export_made_before_explanations_asks_to_be_made_again(small_model: Path) -> None:
    predictor = Predictor.load(small_model)
    del predictor.scorer.info["explain"]  # type: ignore[attr-defined]
    predictor.scorer.explains = False  # type: ignore[attr-defined]
    assert predictor.predict(["Ivanov"])[0].languages  # plain prediction reads it still
    with pytest.raises(NamesError, match=r"names export --force .*small\.pt"):
        predictor.predict(["Ivanov"], explain=True)


def test_a_real_server_explains_on_get_and_post(small_model: Path, tmp_path: Path) -> None:
    with Server(["--model", str(small_model), "--no-access-log"], tmp_path / "server.log") as server, \
            httpx.Client(base_url=server.url, timeout=60) as http:
        got = http.get("/predict", params={"name": "Zav", "explain": "true"})
        assert got.status_code == 200, got.text
        one = got.json()["explanation"]
        assert (one["language"], one["runner_up"]) == ("Russian", "Japanese")
        assert [p["char"] for p in one["positions"]] == ["Z", "a", "v", END]
        posted = http.post("/predict", json={"names": ["Zav", "Tanaka"], "explain": True, "k": 2})
        assert posted.status_code == 200, posted.text
        both = posted.json()
        assert both[0]["explanation"] == one and both[1]["explanation"]["language"] == "Japanese"
        assert "explanation" not in http.get("/predict", params={"name": "Zav"}).json()
        schema = http.get("/openapi.json").json()["components"]["schemas"]
        assert "ExplanationOut" in schema and "explain" in schema["PredictRequest"]["properties"]


def test_the_estimator_explains_its_top_k(small_model: Path) -> None:
    from namesclf import load_model

    clf = load_model(small_model)
    assert clf.top_k(["Zav"])[0].explanation is None
    explained = clf.set_params(explain=True).top_k(["Zav"], k=1)[0]
    assert explained.explanation is not None and explained.explanation.runner_up == "Japanese"
    assert list(clf.predict(["Zav"])) == ["Russian"]  # predict needs no explanation and makes none


def test_the_benchmark_and_the_experiment_run_end_to_end(small_model: Path, capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    """Both lab scripts behind the figures, on the small model and the made-up names it was trained on."""
    from benchmarks import explain as bench
    from experiments import explain as experiment

    data = small_model.parent / "names"
    bench.main(["--model", str(small_model), "--data", str(data), "--names", "30", "--repeats", "1"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("30 distinct tutorial surnames")
    assert [line.split()[:2] for line in lines[2:-1]] == [["onnx", "False"], ["onnx", "True"], ["torch", "False"],
                                                        ["torch", "True"]]
    assert lines[-1].startswith("load average at end")
    experiment.main([str(data), "--model", str(small_model), "--seed", "1"])
    lines = capsys.readouterr().out.splitlines()
    total = int(lines[0].split()[0].replace(",", ""))
    assert total > 0 and sum(int(line.split()[2].replace(",", "")) for line in lines[2:]) == total
    for module in (bench, experiment):
        with pytest.raises(SystemExit) as stop:
            module.main(["--help"])
        assert stop.value.code == 0
        assert capsys.readouterr().out.startswith(f"usage: python -m {module.__name__} ")


def test_a_dask_table_gets_the_same_column(small_model: Path) -> None:
    dd = pytest.importorskip("dask.dataframe", reason="dask is the optional extra namesclf[scale]")
    frame = pd.DataFrame({"last": ["Ivanov", "Zav", "", "Tanaka", "Zav", "Rossi"]})
    lazy = predict_frame(dd.from_pandas(frame, npartitions=2, sort=False), "last", str(small_model), k=1,
                         explain=True)
    out = lazy.compute(scheduler="synchronous")
    assert out["explanation"].dtype == predict_frame(frame, "last", str(small_model), explain=True)["explanation"].dtype
    cells = [None if pd.isna(x) else json.loads(x) for x in out["explanation"]]
    assert [c and c["language"] for c in cells] == [x if isinstance(x, str) else None for x in out["language"]]
    assert cells[2] is None and cells[1]["runner_up"] == "Japanese"


def test_a_name_longer_than_the_model_reads_is_explained_on_what_it_read(small_model: Path) -> None:
    from namesclf.text import MAX_NAME_LENGTH

    long = "Ivanov" * 20
    e = Predictor.load(small_model).predict([long], explain=True)[0].explanation
    assert e is not None and len(e.letters) == MAX_NAME_LENGTH + 1 and "".join(e.letters[:-1]) == long[:MAX_NAME_LENGTH]

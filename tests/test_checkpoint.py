"""Model files: round trip, and every way a file can be wrong gives one clear error and runs no code."""

import pickle
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from namesclf.cli.main import cli
from namesclf.config import TrainConfig
from namesclf.errors import ModelFileError, NamesError
from namesclf.inference.predictor import Predictor
from namesclf.inference.torch_scorer import TorchScorer
from namesclf.models.checkpoint import FORMAT_VERSION, classifier_payload, load_checkpoint, save_checkpoint
from namesclf.models.networks import build_classifier

LABELS = ["Greek", "Italian", "Russian"]


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    config = TrainConfig(model="gru", hidden=8).resolved()
    model = build_classifier(config.to_dict(), len(LABELS))
    return save_checkpoint(tmp_path / "m.pt", classifier_payload(model, config.to_dict(), LABELS, {"split_seed": 0}))


def test_numpy_scalars_in_metadata_still_load_weights_only(tmp_path: Path) -> None:
    """scikit-learn metrics and numpy grids hand back numpy scalars; a file holding one would be
    refused by ``weights_only`` loading, so saving turns them into plain numbers."""
    import numpy as np

    config = TrainConfig(model="gru", hidden=8).resolved()
    model = build_classifier(config.to_dict(), len(LABELS))
    meta = {"valid": {"accuracy": np.float64(0.5), "n": np.int64(3)}, "grid": [np.float32(0.25)]}
    path = save_checkpoint(tmp_path / "np.pt", classifier_payload(model, config.to_dict(), LABELS, meta))
    loaded = load_checkpoint(path, kind="classifier")["meta"]
    assert loaded["valid"] == {"accuracy": 0.5, "n": 3} and loaded["grid"] == [0.25]
    assert type(loaded["valid"]["accuracy"]) is float and type(loaded["valid"]["n"]) is int


def test_round_trip_is_self_describing(model_file: Path) -> None:
    payload = load_checkpoint(model_file, kind="classifier")
    assert payload["format_version"] == FORMAT_VERSION and payload["labels"] == LABELS
    predictor = Predictor.load(str(model_file))
    proba = predictor.predict_proba(["Rossi", "Ivanov"])
    assert proba.shape == (2, 3)
    assert abs(float(proba.sum()) - 2.0) < 1e-5


class Exploit:
    """Unpickling this calls Path.touch on a marker file: what a malicious model would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _bad_files(tmp_path: Path, model_file: Path) -> list[tuple[Path, str]]:
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(model_file.read_bytes()[: model_file.stat().st_size // 2])
    text = tmp_path / "text.pt"
    text.write_text("hello, I am not a model\n")
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, other)
    newer = tmp_path / "newer.pt"
    payload = load_checkpoint(model_file)
    payload["format_version"] = FORMAT_VERSION + 1
    torch.save(payload, newer)
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    return [(tmp_path / "missing.pt", "no such model file"), (truncated, "cannot read model file"),
            (text, "model"), (other, "not a namesclf model file"),
            (newer, "newer than this namesclf reads"), (empty, "model")]


def test_bad_model_files_give_one_line(tmp_path: Path, model_file: Path) -> None:
    for path, message in _bad_files(tmp_path, model_file):
        with pytest.raises(ModelFileError, match=message):
            load_checkpoint(path)
        result = CliRunner().invoke(cli, ["predict", "Smith", "--model", str(path)])
        assert result.exit_code == 1, (path, result.output)
        assert "Traceback" not in result.output and result.output.startswith("Error: ")
        assert result.output.count("\n") == 1


@pytest.mark.parametrize("container", ["torch", "raw-pickle"])
def test_crafted_pickle_is_refused_and_runs_nothing(tmp_path: Path, container: str) -> None:
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    payload = {"format": "namesclf", "format_version": 1, "kind": "classifier", "x": Exploit(marker)}
    if container == "torch":
        torch.save(payload, evil)
    else:
        evil.write_bytes(pickle.dumps(payload))
    assert not marker.exists()
    with pytest.raises(ModelFileError, match=r"refused|not a namesclf|cannot read"):
        load_checkpoint(evil)
    assert not marker.exists(), "loading the model ran code"
    result = CliRunner().invoke(cli, ["predict", "Smith", "--model", str(evil)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert not marker.exists()


def test_wrong_kind_is_refused(model_file: Path) -> None:
    with pytest.raises(ModelFileError, match="expected a lm model"):
        load_checkpoint(model_file, kind="lm")


def test_failed_save_leaves_the_old_file(model_file: Path) -> None:
    before = model_file.read_bytes()

    class Boom:
        def __reduce__(self):
            raise RuntimeError("disk full")

    with pytest.raises(Exception, match="disk full"):
        save_checkpoint(model_file, {"kind": "classifier", "x": Boom()})
    assert model_file.read_bytes() == before
    assert [p.name for p in model_file.parent.iterdir()] == ["m.pt"]  # no temp file left behind


def test_a_config_missing_a_network_key_is_a_damaged_file(tmp_path: Path) -> None:
    """The model is rebuilt from its stored config alone; no key is guessed with a default that could
    disagree with the one it was trained with."""
    config = TrainConfig(model="gru", hidden=8).resolved().to_dict()
    model = build_classifier(config, len(LABELS))
    del config["embed"]
    path = save_checkpoint(tmp_path / "m.pt", classifier_payload(model, config, LABELS, {}))
    with pytest.raises(NamesError, match="model file is damaged: 'embed'"):
        TorchScorer.from_payload(load_checkpoint(path, kind="classifier"))


def test_the_size_check_builds_on_meta_without_initialising(tmp_path: Path) -> None:
    """The model file check builds the network on the ``meta`` device; its initialisers must be
    skipped there (their meta kernels import torch's compiler stack, a second or more of every
    command's start), while a real build still initialises its weights."""
    import subprocess
    import sys

    config = TrainConfig(hidden=8, ngram_order=3).resolved()  # the default pooled network + n-gram
    path = save_checkpoint(tmp_path / "d.pt", classifier_payload(build_classifier(config.to_dict(), len(LABELS)),
                                                                  config.to_dict(), LABELS, {}))
    code = ("import sys; from namesclf.models.checkpoint import load_checkpoint; "
            f"load_checkpoint({str(path)!r}, kind='classifier'); "
            "print('torch._dynamo' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"
    torch.manual_seed(0)
    built = build_classifier(config.to_dict(), len(LABELS))
    assert float(built.state_dict()["net.embedding.weight"].std()) > 0.1  # real builds are still initialised

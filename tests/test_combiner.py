"""The full-name combiner: the per-language form every older model file holds, the stacker's
matrices, their file form, and the fit (synthetic part scores: seconds, no training run)."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
import torch

from namesclf.errors import ModelFileError
from namesclf.inference.parts import FLOOR, Combiner
from namesclf.training.fullname import fit_combiner

#: A per-language combiner as a model file before the stacker stored it (three labels).
OLD_FORM = {"surname": [1.0, 0.5, 2.0], "given": [0.8, 1.0, 1.2], "given_bias": [0.1, -0.2, 0.0],
            "bias": [0.0, 0.3, -0.1]}
SURNAME = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
GIVEN = np.array([[0.2, 0.5, 0.3], [0.6, 0.3, 0.1]])


def softmax(z: np.ndarray) -> np.ndarray:
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def test_an_old_per_language_combiner_still_loads_and_answers_the_same() -> None:
    combiner = Combiner.from_dict(json.loads(json.dumps(OLD_FORM)), 3)
    assert not combiner.is_matrix and combiner.to_dict() == OLD_FORM
    has_given = np.array([True, False])
    w = {k: np.array(v) for k, v in OLD_FORM.items()}
    want = softmax(w["surname"] * np.log(SURNAME) + w["bias"]
                   + has_given[:, None] * (w["given"] * np.log(GIVEN) + w["given_bias"]))
    assert np.allclose(combiner(SURNAME, GIVEN, has_given), want, atol=1e-6)
    # golden: the first row, worked by hand from the formula
    assert np.allclose(combiner(SURNAME, GIVEN, has_given)[0], [0.4613, 0.5341, 0.0046], atol=1e-4)


def test_a_diagonal_stacker_is_the_per_language_combiner() -> None:
    old = Combiner.from_dict(OLD_FORM, 3)
    stacker = Combiner(np.diag(old.surname), np.diag(old.given), old.given_bias, old.bias)
    assert stacker.is_matrix
    has_given = np.array([True, False])
    assert np.allclose(stacker(SURNAME, GIVEN, has_given), old(SURNAME, GIVEN, has_given), atol=1e-6)


def test_the_stacker_round_trips_through_json_exactly() -> None:
    rng = np.random.default_rng(0)
    matrices = [rng.normal(size=(3, 3)).astype(np.float32).astype(np.float64) for _ in range(2)]
    combiner = Combiner(*matrices, np.array([0.1, 0.0, -0.1]), np.array([0.2, 0.0, 0.0]))
    stored = json.loads(json.dumps(combiner.to_dict()))
    assert stored["surname"]["encoding"] == "float32-le-base64" and stored["surname"]["shape"] == [3, 3]
    back = Combiner.from_dict(stored, 3)
    assert np.array_equal(back.surname, matrices[0]) and np.array_equal(back.given, matrices[1])
    has_given = np.array([True, False])
    assert np.array_equal(back(SURNAME, GIVEN, has_given), combiner(SURNAME, GIVEN, has_given))


def test_a_174_label_stacker_fits_the_export_metadata() -> None:
    from namesclf.models.onnx_format import MAX_METADATA_CHARS

    matrix = np.random.default_rng(0).normal(size=(174, 174))
    combiner = Combiner(matrix, matrix, np.zeros(174), np.zeros(174))
    assert len(json.dumps(combiner.to_dict())) < MAX_METADATA_CHARS // 3


@pytest.mark.parametrize("damage", [
    {"encoding": "float64"},
    {"shape": [3, 4]},
    {"data": base64.b64encode(b"\0" * 32).decode()},
    {"data": "not base64!" * 4},
    {"data": 7},
    {"data": base64.b64encode(np.full(9, np.nan, dtype="<f4").tobytes()).decode()},
])
def test_a_damaged_matrix_is_refused(damage: dict) -> None:
    stored = Combiner(np.eye(3), np.eye(3), np.zeros(3), np.zeros(3)).to_dict()
    stored["given"] = {**stored["given"], **damage}
    with pytest.raises(ModelFileError, match="combiner 'given'"):
        Combiner.from_dict(stored, 3)


def test_a_combiner_missing_a_key_is_refused() -> None:
    with pytest.raises(ModelFileError, match="no numeric 'bias'"):
        Combiner.from_dict({k: v for k, v in OLD_FORM.items() if k != "bias"}, 3)


def confused_parts(n: int = 3000, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Part scores whose surname part has labels 0 and 1 the wrong way round: the truth is the
    argmax of ``SWAP @ log p_surname + g log p_given``. A per-language weight cannot move
    evidence from one label to another; a matrix can."""
    rng = np.random.default_rng(seed)
    surname, given = (softmax(rng.normal(0, 1.5, (n, 3))) for _ in range(2))
    has_given = rng.random(n) < 0.5
    swap = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    z = np.log(surname) @ swap.T + has_given[:, None] * 0.5 * np.log(given)
    return surname, given, has_given, z.argmax(1)


def test_the_numpy_stacker_answers_as_its_torch_fit() -> None:
    """The fit's own logits (torch, written here from the fitted tensors) and the combiner's (numpy) agree."""
    surname, given, has_given, y = confused_parts()
    combiner = fit_combiner(surname, given, has_given, y, bare_too=True, matrix_l2=0.1)
    assert combiner.surname.shape == combiner.given.shape == (3, 3)
    ls = torch.log(torch.from_numpy(np.maximum(surname, FLOOR)))
    lg = torch.log(torch.from_numpy(np.maximum(given, FLOOR)))
    g = torch.from_numpy(has_given.astype(np.float64))[:, None]
    s, gm = torch.from_numpy(combiner.surname), torch.from_numpy(combiner.given)
    z = ls @ s.T + torch.from_numpy(combiner.bias) + g * (lg @ gm.T + torch.from_numpy(combiner.given_bias))
    assert np.allclose(combiner(surname, given, has_given), torch.softmax(z, 1).numpy(), atol=1e-6)


def test_the_stacker_learns_what_a_per_language_weight_cannot() -> None:
    surname, given, has_given, y = confused_parts()
    test = confused_parts(seed=1)
    label = fit_combiner(surname, given, has_given, y, bare_too=True)
    stacker = fit_combiner(surname, given, has_given, y, bare_too=True, matrix_l2=0.1)

    def accuracy(combiner: Combiner) -> float:
        return float((combiner(*test[:3]).argmax(1) == test[3]).mean())

    assert accuracy(stacker) > accuracy(label) + 0.05
    # pulled hard towards the per-language fit, the stacker is that fit
    tied = fit_combiner(surname, given, has_given, y, bare_too=True, matrix_l2=1e6)
    assert np.allclose(tied.surname, np.diag(label.surname), atol=1e-3)


def test_bare_too_is_the_doubled_rows() -> None:
    surname, given, has_given, y = confused_parts(600)
    once = fit_combiner(surname, given, has_given, y, bare_too=True)
    doubled = fit_combiner(np.concatenate([surname, surname]), np.concatenate([given, given]),
                           np.concatenate([has_given, np.zeros_like(has_given)]), np.concatenate([y, y]))
    for key in Combiner.KEYS:
        assert np.allclose(getattr(once, key), getattr(doubled, key), atol=1e-4), key


def test_balance_weighs_a_rare_label_up() -> None:
    surname, given, has_given, y = confused_parts(3000)
    keep = (y != 2) | (np.arange(len(y)) % 10 == 0)  # label 2 rare
    args = (surname[keep], given[keep], has_given[keep], y[keep])
    plain = fit_combiner(*args, bare_too=True)
    balanced = fit_combiner(*args, bare_too=True, balance=1.0)
    assert balanced.bias[2] - balanced.bias[0] > plain.bias[2] - plain.bias[0]

import pytest
import torch

from namesclf import to_ascii
from namesclf.text import (
    ALPHABET,
    MAX_NAME_LENGTH,
    N_LETTERS,
    PAD_INDEX,
    batch_indices,
    batch_one_hot,
    decode,
    encode,
    line_to_tensor,
)

GOLDEN = [
    ("Ślusàrski", "Slusarski"),
    ("Достоевский", "Dostoevskiy"),
    ("Nguyễn", "Nguyen"),
    ("O’Neill", "O'Neill"),
    ("Müller", "Muller"),
    ("Zoë\u200b", "Zoe"),
    ("Straße", "Strasse"),
    ("Łukasz", "Lukasz"),
    ("ʻOkole", "'Okole"),
    ("  Van   der  Berg ", "Van der Berg"),
    ("Smith-Jones", "Smith-Jones"),
    ("Jo\u0301se\u0301", "Jose"),  # already decomposed
    ("Rafaj1", "Rafaj"),
    ("Zo\x00e\x07", "Zoe"),  # control characters vanish
]


@pytest.mark.parametrize(("raw", "folded"), GOLDEN)
def test_golden_folding(raw: str, folded: str) -> None:
    assert to_ascii(raw) == folded


@pytest.mark.parametrize("raw", ["😀", "123", "", "   ", "\u200b\u200d", "\u0301"])
def test_folds_to_empty(raw: str) -> None:
    assert to_ascii(raw) == ""


def test_alphabet_is_the_tutorials_plus_hyphen() -> None:
    assert N_LETTERS == 58
    assert ALPHABET.endswith(" .,;'-")


def test_encode_decode_round_trip() -> None:
    assert decode(encode("O'Neill-Smith")) == "O'Neill-Smith"
    assert encode("ab") == [0, 1]
    assert len(encode("a" * 1000)) == MAX_NAME_LENGTH


def test_line_tensor_is_the_tutorials_one_hot() -> None:
    t = line_to_tensor("Jones")
    assert t.shape == (5, 1, N_LETTERS)
    assert torch.equal(t.sum(dim=2), torch.ones(5, 1))
    assert int(t[0, 0].argmax()) == ALPHABET.index("J")


def test_batch_padding_and_lengths() -> None:
    idx, lengths = batch_indices(["Abe", "Li", "Smith"])
    assert idx.shape == (5, 3)
    assert lengths.tolist() == [3, 2, 5]
    assert idx[2:, 1].tolist() == [PAD_INDEX] * 3
    hot, _ = batch_one_hot(["Abe", "Li"])
    assert hot.shape == (3, 2, N_LETTERS)
    assert float(hot[2, 1].sum()) == 0.0  # padding is all zeros
    assert torch.equal(hot[:, 0], line_to_tensor("Abe")[:, 0])


def test_empty_name_cannot_be_batched() -> None:
    with pytest.raises(ValueError):
        batch_indices(["Abe", ""])

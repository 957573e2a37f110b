"""The language model: vocabulary, splits, the masked loss, nats/token, training and its CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from namesclf.cli.main import cli
from namesclf.config import LMConfig
from namesclf.data.dataset import load_names, split_names
from namesclf.errors import ModelFileError, NamesError
from namesclf.lm.data import BOS_ID, EOS_ID, PAD_ID, SPECIALS, UNK_ID, EncodedLM, Vocab, load_source, split_text_lines
from namesclf.lm.generate import complete, load_lm, next_tokens
from namesclf.lm.model import CharLM, build_lm, evaluate_lm, masked_nll, nll_metrics, total_nll
from namesclf.lm.train import language_weights, train_lm
from namesclf.models.checkpoint import load_checkpoint
from namesclf.text import ALPHABET
from namesclf.training.batches import length_bucketed_batches

# The classic toys: tiny, so they are learnt by heart; greedy decoding makes the checks exact.
# Three lines are one step per epoch, and after "hello how are you" the RNN must still remember
# "hello" to end there rather than go on with " doing": 200 epochs without dropout passed for
# seeds 0-9 (60 epochs, or dropout 0.1, failed for some seeds).
WORD_LINES = ["I ate rice", "I like apples", "I code"]
CHAR_LINES = ["hello how are you", "i am fine", "how are you doing"]
TOY = {"epochs": 200, "patience": 0, "batch_size": 8, "dropout": 0.0, "device": "cpu", "seed": 0}


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# ----------------------------------------------------------------------------- vocabulary and data


def test_char_vocab_is_specials_plus_alphabet_and_folds() -> None:
    vocab = Vocab.build("char", [])
    assert vocab.tokens[:4] == list(SPECIALS) and "".join(vocab.tokens[4:]) == ALPHABET
    ids = vocab.encode("Ślusàrski")
    assert UNK_ID not in ids and vocab.decode(ids) == "Slusarski"
    assert vocab.fold("hello ", prompt=True) == "hello " and vocab.fold("hello ") == "hello"


def test_word_vocab_comes_from_training_lines_and_maps_unknowns() -> None:
    vocab = Vocab.build("word", WORD_LINES)
    assert set(vocab.tokens[4:]) == {"I", "ate", "rice", "like", "apples", "code"}
    assert vocab.encode("I ate pizza")[-1] == UNK_ID
    assert vocab.decode(vocab.encode("I ate rice")) == "I ate rice"


def test_encoded_examples_start_with_bos_end_with_eos_then_pad() -> None:
    vocab = Vocab.build("char", [])
    enc = EncodedLM.build(["ab", "abcd"], vocab)
    assert enc.lengths.tolist() == [4, 6]
    assert enc.seq[:, 0].tolist() == [BOS_ID, vocab.index["a"], vocab.index["b"], EOS_ID, PAD_ID, PAD_ID]
    x, y, _ = enc.batch([0, 1], torch.device("cpu"))
    assert torch.equal(x[1:], y[:-1])  # targets are the inputs shifted by one


def test_text_split_small_files_use_every_line_for_both() -> None:
    parts = split_text_lines(WORD_LINES, seed=0)
    assert parts["train"] == WORD_LINES and parts["valid"] == WORD_LINES


def test_text_split_large_files_are_90_10_disjoint_and_seeded() -> None:
    lines = [f"line {i}" for i in range(100)]
    parts = split_text_lines(lines, seed=3)
    assert len(parts["valid"]) == 10 and len(parts["train"]) == 90
    assert not set(parts["train"]) & set(parts["valid"])
    assert split_text_lines(lines, seed=3) == parts and split_text_lines(lines, seed=4) != parts


def test_names_source_uses_the_classifiers_grouped_split(tiny_dir: Path) -> None:
    src = load_source(tiny_dir, seed=0)
    frame = load_names(tiny_dir).frame
    split = split_names(frame, seed=0)
    assert src.kind == "names" and src.languages == ["Italian", "Japanese", "Russian"]
    for name in ("train", "valid", "test"):
        assert src.splits[name][0] == frame.loc[split == name, "ascii"].tolist()


# ----------------------------------------------------------------------------- loss and metrics


def test_masked_loss_of_a_padded_batch_equals_the_unpadded_losses() -> None:
    torch.manual_seed(0)
    vocab = Vocab.build("char", [])
    model = build_lm(LMConfig(hidden=16, embed=8, lang_embed=4, lang_init=False, dropout=0.0), len(vocab), 2).eval()
    names, langs = ["Ab", "Kowalski", "Li"], [0, 1, 1]
    batch = EncodedLM.build(names, vocab, langs)
    x, y, lang = batch.batch([0, 1, 2], torch.device("cpu"))
    assert (y == PAD_ID).any()  # the short names really are padded
    with torch.no_grad():
        padded_sum = float(masked_nll(model(x, lang)[0], y, reduction="sum"))
        padded_mean = float(masked_nll(model(x, lang)[0], y))
        singles = []
        for name, lg in zip(names, langs, strict=True):
            xs, ys, ls = EncodedLM.build([name], vocab, [lg]).batch([0], torch.device("cpu"))
            singles.append(float(masked_nll(model(xs, ls)[0], ys, reduction="sum")))
    n_tokens = sum(len(n) + 1 for n in names)  # letters plus the end token
    assert padded_sum == pytest.approx(sum(singles), rel=1e-5)
    assert padded_mean == pytest.approx(sum(singles) / n_tokens, rel=1e-5)
    total, count = total_nll(model, batch, torch.device("cpu"))
    assert count == n_tokens and total == pytest.approx(sum(singles), rel=1e-5)


def test_nats_per_char_of_a_uniform_model_is_log_of_the_choices() -> None:
    vocab = Vocab.build("char", [])
    model = build_lm(LMConfig(hidden=8, embed=4, lang_init=False, dropout=0.0), len(vocab), 0)
    with torch.no_grad():  # zero output layer: uniform over every token except <pad> and <bos>
        model.out.weight.zero_()
        model.out.bias.zero_()
    enc = EncodedLM.build(["ab", "xyz"], vocab)
    metrics = nll_metrics(*total_nll(model, enc, torch.device("cpu")), len(enc))
    choices = len(vocab) - 2
    assert metrics["tokens"] == 3 + 4  # "ab" + end, "xyz" + end
    assert metrics["nats_per_token"] == pytest.approx(math.log(choices), rel=1e-6)
    assert metrics["perplexity"] == pytest.approx(choices, rel=1e-5)


def test_charlm_never_predicts_pad_or_bos_and_needs_a_language_when_conditioned() -> None:
    model = CharLM(10, n_languages=2, hidden_size=8, embed_size=4, never_next=(PAD_ID, BOS_ID))
    logits, _ = model(torch.tensor([[BOS_ID], [5]]), torch.tensor([1]))
    assert logits.shape == (2, 1, 10) and torch.isinf(logits[..., [PAD_ID, BOS_ID]]).all()
    with pytest.raises(ValueError, match="language"):
        model(torch.tensor([[BOS_ID]]))


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_every_cell_trains_and_loss_is_finite(tmp_path: Path, cell: str) -> None:
    path = write_lines(tmp_path / "toy.txt", CHAR_LINES)
    result = train_lm(path, LMConfig(cell=cell, hidden=16, embed=8, epochs=2, device="cpu"), progress=False)
    assert math.isfinite(result.valid["nats_per_token"]) and result.lm.model.cell == cell


# ----------------------------------------------------------------------------- the classic examples


def test_word_level_classic_next_word_after_i_ate_is_rice(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "words.txt", WORD_LINES)
    out = tmp_path / "words.pt"
    train_lm(path, LMConfig(unit="word", **TOY), out=out, progress=False)
    lm = load_lm(out)
    assert complete(lm, "I ate") == "I ate rice"
    assert next_tokens(lm, "I ate", 1)[0][0] == "rice"
    after_i = dict(next_tokens(lm, "I", 3))  # three lines, three equally likely continuations
    assert set(after_i) == {"ate", "like", "code"}
    assert all(p == pytest.approx(1 / 3, abs=0.05) for p in after_i.values())


def test_char_level_classic_greedy_completion_of_hello(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "chat.txt", CHAR_LINES)
    out = tmp_path / "chat.pt"
    train_lm(path, LMConfig(unit="char", **TOY), out=out, progress=False)
    lm = load_lm(out)
    assert complete(lm, "hello") == "hello how are you"
    assert complete(lm, "i") == "i am fine"
    assert complete(lm, "hello", length=4) == "hello how"


# ----------------------------------------------------------------------------- model file


def test_model_file_is_weights_only_and_self_describing(tmp_path: Path, tiny_dir: Path) -> None:
    out = tmp_path / "lm.pt"
    result = train_lm(tiny_dir, LMConfig(hidden=16, embed=8, epochs=2, device="cpu"), out=out, progress=False)
    raw = torch.load(out, weights_only=True)
    assert raw["kind"] == "lm" and raw["labels"] == ["Italian", "Japanese", "Russian"]
    assert raw["meta"]["vocab"][:4] == list(SPECIALS)
    assert set(raw["meta"]["known"]) == set(load_source(tiny_dir).splits["train"][0])
    lm = load_lm(out)
    assert lm.languages == result.lm.languages and lm.vocab.tokens == result.lm.vocab.tokens
    with pytest.raises(ModelFileError, match="expected a classifier"):
        load_checkpoint(out, kind="classifier")
    again = evaluate_lm(lm, tiny_dir, "test")
    assert again["nats_per_token"] == pytest.approx(result.test["nats_per_token"], rel=1e-5)


def test_word_units_on_a_names_folder_are_refused(tiny_dir: Path) -> None:
    with pytest.raises(NamesError, match="text file"):
        train_lm(tiny_dir, LMConfig(unit="word", epochs=1, device="cpu"), progress=False)


# ----------------------------------------------------------------------------- CLI


def test_cli_lm_train_evaluate_and_refuse_overwrite(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "chat.txt", CHAR_LINES)
    out = tmp_path / "m.pt"
    runner = CliRunner()
    args = ["lm", "train", str(path), "--out", str(out), "--epochs", "3", "--hidden", "16", "--device", "cpu",
            "--quiet"]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert f"wrote {out}" in result.output and "nats/char" in result.output
    again = runner.invoke(cli, args)
    assert again.exit_code == 1 and "--force" in again.output and "Traceback" not in again.output
    assert runner.invoke(cli, [*args, "--force"]).exit_code == 0
    scored = runner.invoke(cli, ["lm", "evaluate", str(path), "--model", str(out), "--json"])
    assert scored.exit_code == 0, scored.output
    figures = json.loads(scored.output)
    assert figures["split"] == "valid" and figures["perplexity"] == pytest.approx(
        math.exp(figures["nats_per_token"]))


def test_cli_complete_and_next_words(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "words.txt", WORD_LINES)
    out = tmp_path / "w.pt"
    train_lm(path, LMConfig(unit="word", **TOY), out=out, progress=False)
    runner = CliRunner()
    done = runner.invoke(cli, ["complete", "I ate", "--model", str(out)])
    assert done.exit_code == 0 and done.output.strip() == "I ate rice"
    nxt = runner.invoke(cli, ["complete", "I ate", "--next", "--top-k", "2", "--model", str(out)])
    assert nxt.exit_code == 0
    lines = nxt.output.strip().splitlines()
    assert len(lines) == 2 and lines[0].split()[1] == "rice" and float(lines[0].split()[0]) > 0.9


def test_cli_missing_model_is_one_line_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["complete", "hello", "--model", str(tmp_path / "none.pt")])
    assert result.exit_code == 1 and "no such model file" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_balanced_batches_keep_the_epoch_size_and_favour_rare_languages() -> None:
    import numpy as np

    vocab = Vocab.build("char", [])
    langs = [0] * 90 + [1] * 10
    enc = EncodedLM.build(["Ab"] * 100, vocab, langs)
    weights = language_weights(enc, power=1.0)
    rows = np.concatenate(list(length_bucketed_batches(enc.lengths, 16, np.random.default_rng(0), weights)))
    assert len(rows) == 100
    share_rare = float(np.mean(enc.languages.numpy()[rows] == 1))
    assert 0.35 < share_rare < 0.65  # power 1: about half, against 10% in the data


def test_a_names_set_too_small_to_split_still_trains(tmp_path: Path) -> None:
    folder = tmp_path / "few"
    folder.mkdir()
    (folder / "Greek.txt").write_text("Pappas\nKoulos\n", encoding="utf-8")
    (folder / "Irish.txt").write_text("Murphy\n", encoding="utf-8")
    result = train_lm(folder, LMConfig(hidden=8, embed=4, epochs=2, device="cpu"), progress=False)
    assert math.isfinite(result.valid["nats_per_token"])

"""The n-gram Bayes classifier and its pooling with the network: hand values, normalisation,
save/load, and the ensemble's formula."""

from __future__ import annotations

import io
import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from namesclf.config import TrainConfig
from namesclf.models.networks import NgramEnsemble, RecurrentClassifier, build_classifier
from namesclf.models.ngram import DENSE_LIMIT, NgramBayes
from namesclf.report.metrics import classification_scores
from namesclf.text import ALPHABET, N_LETTERS, batch_indices
from namesclf.training.batches import EncodedSplit, predict_log_proba
from namesclf.training.train import POOL_SHIFTS, POOL_WEIGHTS, choose_pooling, fit_ngram, train_classifier

from .conftest import TINY, network_config


def fitted(names: list[str], labels: list[int], n_classes: int, order: int, fold_case: bool = False) -> NgramBayes:
    idx, lengths = batch_indices(names)
    return NgramBayes(n_classes, order, fold_case).fit(idx, lengths, torch.tensor(labels))


def probs(model: NgramBayes, names: list[str], discount: float | None = None) -> torch.Tensor:
    idx, lengths = batch_indices(names)
    p, _ = model.token_probs(idx, lengths, discount)
    return p


def test_unigram_probability_by_hand() -> None:
    # Order 1, one name "ab": counts a:1 b:1 end:1, so with discount d and 59 outcomes (58 letters
    # and the end), p(a) = (1 - d + d * 3 / 59) / 3 under the language and under "all".
    model = fitted(["ab"], [0], 1, order=1)
    d = 0.75
    p = probs(model, ["a"], d)  # position 0 predicts "a"
    expected = (1 - d + d * 3 / (N_LETTERS + 1)) / 3
    assert p[0, 0, 0].item() == pytest.approx(expected, rel=1e-6)
    assert p[0, 0, 1].item() == pytest.approx(expected, rel=1e-6)
    # an unseen letter gets only the backed-off share: d * 3 / 59 / 3
    assert probs(model, ["z"], d)[0, 0, 0].item() == pytest.approx(d / (N_LETTERS + 1), rel=1e-6)


def test_bigram_uses_continuation_counts_by_hand() -> None:
    # Order 2, names "ab" and "cb". Bigram context "a": b:1 -> p(b|a) = (1 - d + d * 1 * p1(b)) / 1.
    # Unigram level, continuation counts (in how many contexts each symbol was seen): b after a
    # and after c -> 2; a, c (after the begin mark) and the end mark (after b) -> 1 each.
    # total 5, types 4: p1(b) = (2 - d + d * 4 / 59) / 5.
    model = fitted(["ab", "cb"], [0, 0], 1, order=2)
    d = 0.5
    p1_b = (2 - d + d * 4 / (N_LETTERS + 1)) / 5
    p = probs(model, ["ab"], d)
    assert p[1, 0, 0].item() == pytest.approx(1 - d + d * p1_b, rel=1e-6)


@pytest.mark.parametrize(("order", "fold_case"), [(2, False), (3, False), (4, False), (4, True)])
def test_every_distribution_sums_to_one(order: int, fold_case: bool) -> None:
    """Kneser-Ney is a proper distribution over the next symbol (letters and the end), for seen
    and unseen histories and for every language, whatever the discount."""
    names = [n for lang in TINY.values() for n in lang]
    labels = [i for i, lang in enumerate(TINY.values()) for _ in lang]
    model = fitted(names, labels, len(TINY), order, fold_case)
    letters = ALPHABET if not fold_case else ALPHABET[:26] + ALPHABET[52:]
    for history in ("Ivan", "Yama", "Qxzw", "ro"):
        batch = [history + c for c in letters] + [history]  # the last one predicts the end mark
        for d in (0.5, 0.9):
            p = probs(model, batch, d)[len(history)]  # (59 or 33, n_classes + 1)
            torch.testing.assert_close(p.sum(0), torch.ones(len(TINY) + 1), atol=1e-5, rtol=0)


def test_classifies_and_prefers_its_own_language() -> None:
    names = [n for lang in TINY.values() for n in lang]
    labels = [i for i, lang in enumerate(TINY.values()) for _ in lang]
    model = fitted(names, labels, len(TINY), order=3)
    idx, lengths = batch_indices(["Pavlov", "Kawasaki", "Martino"])
    with torch.inference_mode():
        logp = model(idx, lengths)
    assert logp.argmax(1).tolist() == [0, 1, 2]
    assert torch.allclose(logp.exp().sum(1), torch.ones(3))


def test_tune_picks_the_grid_point_with_fewest_nats() -> None:
    names = [n for lang in TINY.values() for n in lang]
    labels = torch.tensor([i for i, lang in enumerate(TINY.values()) for _ in lang])
    idx, lengths = batch_indices(names)
    model = NgramBayes(len(TINY), 3).fit(idx[:, ::2], lengths[::2], labels[::2])
    held = (idx[:, 1::2], lengths[1::2], labels[1::2])
    tuned = model.tune(*held, discounts=(0.5, 0.9), mixtures=(0.3, 0.9))
    grid = {(d, m): model.nats_per_char(*held, discount=d, mixture=m) for d in (0.5, 0.9) for m in (0.3, 0.9)}
    best = min(grid, key=grid.__getitem__)
    assert (tuned["discount"], tuned["mixture"]) == best
    assert tuned["valid_nats_per_char"] == pytest.approx(grid[best], rel=1e-5)
    assert model.nats_per_char(*held) == pytest.approx(grid[best], rel=1e-5)


def test_state_dict_round_trip_through_weights_only_load() -> None:
    names = [n for lang in TINY.values() for n in lang]
    labels = [i for i, lang in enumerate(TINY.values()) for _ in lang]
    model = fitted(names, labels, len(TINY), order=4)
    model.discount.fill_(0.6)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    fresh = NgramBayes(len(TINY), 4)
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    idx, lengths = batch_indices(["Ivanova", "Qwerty", "Rossini"])
    torch.testing.assert_close(fresh(idx, lengths), model(idx, lengths))


@pytest.mark.parametrize("limit", [0, 61, 61**2])
def test_dense_and_trie_lookups_agree(monkeypatch: pytest.MonkeyPatch, limit: int) -> None:
    names = [n for lang in TINY.values() for n in lang]
    labels = [i for i, lang in enumerate(TINY.values()) for _ in lang]
    model = fitted(names, labels, len(TINY), order=3)
    idx, lengths = batch_indices(["Ivanova", "Qwerty", "Rossini", "Yamamura"])
    dense = model(idx, lengths)
    monkeypatch.setattr("namesclf.models.ngram.DENSE_LIMIT", limit)  # every table, or the longer ones, by trie
    model._index = {}
    torch.testing.assert_close(model(idx, lengths), dense)


def test_trie_lookup_finds_each_row_as_a_sorted_search_would() -> None:
    """Order 5: the longest contexts and n-grams exceed the dense limit (61**5 codes), so they are
    found by the trie; every seen code must come back as its row, every unseen one as one past the end."""
    names = [n for lang in TINY.values() for n in lang]
    labels = [i for i, lang in enumerate(TINY.values()) for _ in lang]
    model = fitted(names, labels, len(TINY), order=5)
    rng = np.random.default_rng(0)
    for j in (3, 4):
        for name, space in ((f"ctx_codes{j}", model.base**j), (f"gram_codes{j}", model.base ** (j + 1))):
            table = getattr(model, name)
            if space <= DENSE_LIMIT:
                continue
            codes = torch.cat([table, torch.from_numpy(rng.integers(0, space, 5000))])
            rows = np.searchsorted(table.numpy(), codes.numpy()).clip(max=len(table) - 1)
            want = np.where(table.numpy()[rows] == codes.numpy(), rows, len(table))
            assert (model._lookup(name, codes, space).numpy() == want).all(), name


def test_ensemble_is_the_pooled_formula() -> None:
    names = [n for lang in TINY.values() for n in lang]
    labels = [i for i, lang in enumerate(TINY.values()) for _ in lang]
    torch.manual_seed(0)
    net = RecurrentClassifier("gru", len(TINY), hidden_size=8, embed_size=8).eval()
    ngram = fitted(names, labels, len(TINY), order=3)
    ensemble = NgramEnsemble(net, ngram)
    ensemble.weight.fill_(0.75)
    ensemble.shift.fill_(0.4)
    ensemble.temperature.fill_(1.5)
    idx, lengths = batch_indices(["Ivanova", "Kawasaki"])
    with torch.inference_mode():
        scores = net(idx, lengths) + 0.75 * ngram(idx, lengths) - 0.4 * ngram.log_prior
        torch.testing.assert_close(ensemble(idx, lengths), torch.log_softmax(scores / 1.5, dim=1))
    # and it is what build_classifier makes from a config with ngram_order
    rebuilt = build_classifier(network_config(hidden=8, embed=8, ngram_order=3), len(TINY))
    rebuilt.load_state_dict(ensemble.state_dict())
    with torch.inference_mode():
        torch.testing.assert_close(rebuilt.eval()(idx, lengths), ensemble(idx, lengths))


def test_choose_pooling_picks_knobs_on_held_out_names_and_calibrates() -> None:
    names = [n for lang in TINY.values() for n in lang]
    labels = [i for i, lang in enumerate(TINY.values()) for _ in lang]
    enc = EncodedSplit.from_names(names)
    enc.labels = torch.tensor(labels)
    pick = lambda rows: EncodedSplit(enc.idx[:, rows], enc.lengths[rows], enc.labels[rows])  # noqa: E731
    train = pick([i for i in range(len(names)) if i % 3])
    valid = pick([i for i in range(len(names)) if not i % 3])
    ngram = NgramBayes(len(TINY), 3)
    info = fit_ngram(ngram, train, valid)
    assert info["discount"] == pytest.approx(ngram.discount.item())
    assert info["mixture"] == pytest.approx(ngram.mixture.item())
    torch.manual_seed(0)
    net = RecurrentClassifier("gru", len(TINY), hidden_size=8, embed_size=8).eval()
    ensemble = NgramEnsemble(net, ngram)
    cpu = torch.device("cpu")
    net_logp, ngram_logp = predict_log_proba(net, valid, cpu), predict_log_proba(ngram, valid, cpu)
    chosen = choose_pooling(ensemble, net_logp, ngram_logp, valid.labels)
    assert (chosen["weight"], chosen["shift"]) == (ensemble.weight.item(), ensemble.shift.item())
    # no grid point scores better on the held-out names than the chosen one
    best = (chosen["accuracy"] + chosen["macro_f1"]) / 2
    for w in POOL_WEIGHTS:
        for shift in POOL_SHIFTS:
            pred = ensemble.pool(net_logp, ngram_logp, w, shift).argmax(1).numpy()
            scores = classification_scores(valid.labels.numpy(), pred)
            assert (scores["accuracy"] + scores["macro_f1"]) / 2 <= best + 1e-12
    # the temperature is no worse on held-out log-loss than none, and it is what the model applies
    with torch.inference_mode():
        loss = torch.nn.functional.nll_loss(ensemble(valid.idx, valid.lengths), valid.labels).item()
        ensemble.temperature.fill_(1.0)
        plain = torch.nn.functional.nll_loss(ensemble(valid.idx, valid.lengths), valid.labels).item()
    assert loss == pytest.approx(chosen["loss"], rel=1e-5)
    assert loss <= plain + 1e-6


def test_an_unfitted_model_is_uniform_not_an_error() -> None:
    """A model file written before any counting (or a language with no names) still scores."""
    idx, lengths = batch_indices(["Rossi", "Ivanov"])
    with torch.inference_mode():
        logp = NgramBayes(3, 4)(idx, lengths)
    torch.testing.assert_close(logp, torch.full((2, 3), -math.log(3)))


def tiny_frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    rows = [(n, lang) for lang, names in TINY.items() for n in names]
    frame = pd.DataFrame(rows, columns=["name", "language"]).assign(ascii=lambda f: f["name"])
    return frame.iloc[[i for i in range(len(frame)) if i % 4]], frame.iloc[[i for i in range(len(frame)) if not i % 4]]


def test_refit_counts_train_and_valid_and_keeps_what_valid_chose() -> None:
    """After training, the n-gram half is counted again on train + valid; its discount and mixture,
    the pooling knobs and the network stay those chosen with valid held out."""
    train, valid = tiny_frames()
    config = TrainConfig(model="gru", hidden=8, embed=8, epochs=2, ngram_order=3, device="cpu")
    held = train_classifier(train, valid, replace(config, refit_ngram=False), progress=False)
    refit = train_classifier(train, valid, config, progress=False)
    assert (held.pooling["counted_on"], refit.pooling["counted_on"]) == ("train", "train+valid")
    index = {lang: i for i, lang in enumerate(refit.labels)}
    counted = {}
    for key, frame in (("train", train), ("train+valid", pd.concat([train, valid]))):
        enc = EncodedSplit.from_frame(frame, index)
        counted[key] = NgramBayes(len(index), 3).fit(enc.idx, enc.lengths, enc.labels)
    expected, trained_only = counted["train+valid"], counted["train"]
    # what the refit counts: the two encoded splits joined, as if encoded together
    joined = EncodedSplit.concat(EncodedSplit.from_frame(train, index), EncodedSplit.from_frame(valid, index))
    at_once = EncodedSplit.from_frame(pd.concat([train, valid]), index)
    for name in ("idx", "lengths", "labels"):
        torch.testing.assert_close(getattr(joined, name), getattr(at_once, name))
    for j in range(3):
        torch.testing.assert_close(getattr(refit.model.ngram, f"gram_counts{j}"), getattr(expected, f"gram_counts{j}"))
        torch.testing.assert_close(getattr(held.model.ngram, f"gram_counts{j}"),
                                   getattr(trained_only, f"gram_counts{j}"))
    torch.testing.assert_close(refit.model.ngram.log_prior, expected.log_prior)
    for name in ("discount", "mixture"):
        assert getattr(refit.model.ngram, name).item() == getattr(held.model.ngram, name).item()
    for name in ("weight", "shift", "temperature"):
        assert refit.pooling[name] == held.pooling[name]
    for (k, a), (_, b) in zip(refit.model.net.state_dict().items(), held.model.net.state_dict().items(), strict=True):
        torch.testing.assert_close(a, b, msg=k)
    # the valid figures are those measured before the recount, so they are the same in both runs
    timeless = lambda figures: {k: v for k, v in figures.items() if k != "seconds"}  # noqa: E731
    assert timeless(refit.valid) == timeless(held.valid)

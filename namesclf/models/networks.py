"""The torch classifiers. Every classifier maps padded letter indices ``(T, B)`` plus lengths ``(B,)``
to log-probabilities ``(B, n_classes)``, so training, prediction and evaluation treat them alike:
``nn.RNN``/GRU/LSTM (:class:`RecurrentClassifier`), hashed character n-grams beside them, the pool
with the n-gram Bayes half (:class:`NgramEnsemble`), and :func:`build_classifier`, which assembles
a model from its config at training and at load alike.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from namesclf.config import CLASSIFIER_KINDS
from namesclf.models.handbuilt import HandBuiltRNN
from namesclf.models.ngram import NgramBayes
from namesclf.text import N_LETTERS, PAD_INDEX


class HashedCharNgrams(nn.Module):
    """fastText-style bag of hashed character n-grams, computed from the padded indices.

    Each name is framed by boundary marks (``<name>``), case-folded, and every window of 1 to
    ``max_n`` letters is hashed into one of ``buckets`` embeddings, which are averaged. The hashes
    are tensor arithmetic on the index batch, so there is no per-name Python work at prediction.
    Which substrings a name contains (``-opoulos``, ``ij``, ``Mc``) is the single strongest cue to
    its language; the RNN beside it adds order and context.
    """

    def __init__(self, buckets: int, dim: int, max_n: int = 4) -> None:
        super().__init__()
        self.buckets, self.max_n = buckets, max_n
        self.embedding = nn.Embedding(buckets, dim)
        nn.init.normal_(self.embedding.weight, std=0.02)
        lower = torch.arange(N_LETTERS + 3)
        lower[: len(string.ascii_uppercase) * 2] = torch.arange(26).repeat(2)  # 'A' and 'a' -> 0...
        self.register_buffer("fold", lower, persistent=False)

    def forward(self, idx: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        width, batch = idx.shape
        bos, eos, base = N_LETTERS + 1, N_LETTERS + 2, N_LETTERS + 3
        framed = torch.full((width + 2, batch), PAD_INDEX, dtype=torch.long, device=idx.device)
        framed[0] = bos
        framed[1 : width + 1] = idx
        framed[lengths.to(idx.device) + 1, torch.arange(batch, device=idx.device)] = eos
        framed = self.fold[framed]
        valid = framed != self.fold[PAD_INDEX]
        total = torch.zeros(batch, self.embedding.embedding_dim, device=idx.device)
        count = torch.zeros(batch, 1, device=idx.device)
        code = torch.zeros_like(framed)
        ok = torch.ones_like(valid)
        for n in range(1, self.max_n + 1):
            span = framed.size(0) - n + 1
            code = code[:span] * base + framed[n - 1 : n - 1 + span]
            ok = ok[:span] & valid[n - 1 : n - 1 + span]
            bucket = (code * 2654435761 + n * 97) % self.buckets
            mask = ok.unsqueeze(-1).float()
            total = total + (self.embedding(bucket) * mask).sum(0)
            count = count + mask.sum(0)
        return total / count.clamp(min=1)


#: Below this many names a batch goes through ``nn.GRU``/``nn.RNN`` itself: one C++ call beats the
#: Python-level loop of :meth:`RecurrentClassifier._unpadded_inference` when there is little
#: arithmetic per step to amortise its ~10 ops per letter.
FAST_LOOP_MIN_BATCH = 128


class RecurrentClassifier(nn.Module):
    """Embedding -> ``nn.RNN``/``nn.GRU``/``nn.LSTM`` (packed, optionally bidirectional) -> Linear.

    One class with a ``cell`` switch, as in pytorch/examples' word_language_model. The name is
    summarised by the final hidden state of each direction concatenated with a max-pool over all
    time steps (the pool lets a telltale letter group in the middle of a name count as much as the
    ending).
    """

    def __init__(
        self,
        cell: str,
        n_classes: int,
        hidden_size: int = 256,
        embed_size: int = 64,
        num_layers: int = 1,
        bidirectional: bool = True,
        dropout: float = 0.2,
        ngram_buckets: int = 0,
        ngram_dim: int = 64,
    ) -> None:
        super().__init__()
        rnn_cls = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}[cell]
        self.cell = cell
        self.embedding = nn.Embedding(N_LETTERS + 1, embed_size, padding_idx=PAD_INDEX)
        self.rnn = rnn_cls(
            embed_size,
            hidden_size,
            num_layers=num_layers,
            bidirectional=bidirectional,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        directions = 2 if bidirectional else 1
        self.dropout = nn.Dropout(dropout)
        self.ngrams = HashedCharNgrams(ngram_buckets, ngram_dim) if ngram_buckets else None
        self.out = nn.Linear(2 * directions * hidden_size + (ngram_dim if ngram_buckets else 0), n_classes)

    def forward(self, idx: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        # The ONNX export traces a batch of one length: through the loop of _unpadded_inference
        # where it applies (ONNX Runtime runs it faster than its own GRU node: docs/benchmarks.md#prediction-speed),
        # else through the cell itself (one ONNX RNN/GRU/LSTM node for any length).
        tracing = torch.jit.is_tracing()
        unpadded = tracing or bool((lengths == idx.size(0)).all())
        if unpadded and (tracing or idx.size(1) >= FAST_LOOP_MIN_BATCH) and self._fast_inference_ok():
            return self._unpadded_inference(idx)
        emb = self.dropout(self.embedding(idx))
        if unpadded:
            # No padding (prediction batches are cut at length changes): the plain tensor path
            # gives the same numbers as packing, faster on CPU (docs/benchmarks.md#prediction-speed).
            padded, hidden = self.rnn(emb)
        else:
            packed = pack_padded_sequence(emb, lengths.cpu(), enforce_sorted=False)
            outputs, hidden = self.rnn(packed)
            padded, _ = nn.utils.rnn.pad_packed_sequence(outputs, padding_value=float("-inf"))
        if isinstance(hidden, tuple):  # LSTM: (h, c)
            hidden = hidden[0]
        directions = 2 if self.rnn.bidirectional else 1
        final = torch.cat(list(hidden[-directions:]), dim=1)
        pooled = padded.amax(dim=0)  # amax: no argmax indices, unlike max(dim)
        parts = [final, pooled]
        if self.ngrams is not None:
            parts.append(self.ngrams(idx, lengths))
        features = self.dropout(torch.cat(parts, dim=1))
        return torch.log_softmax(self.out(features), dim=1)

    def _fast_inference_ok(self) -> bool:
        return (not self.training and not torch.is_grad_enabled() and self.ngrams is None
                and self.cell in ("gru", "rnn") and self.rnn.num_layers == 1
                and getattr(self.rnn, "nonlinearity", "tanh") == "tanh")

    def _unpadded_inference(self, idx: torch.Tensor) -> torch.Tensor:
        """Prediction on a batch of one length: the same numbers as :meth:`forward` (a test checks
        it), faster on CPU (docs/benchmarks.md#prediction-speed).

        In eval mode the input half of every gate, ``W_ih @ embedding[letter] + b_ih``, depends on
        the letter only, so it is a table of 59 rows made once per call and gathered, instead of
        a matrix product over every letter of the batch; the loop does only ``W_hh @ h``. The
        max-pool is kept as a running maximum, so no sequence of outputs is built.
        """
        rnn = self.rnn
        width, batch = idx.shape
        # Traced for ONNX, the loop is compiled by TorchScript so it exports as one loop over any
        # length; in torch it runs as plain Python (no compilation cost).
        recur = torch.jit.script(recurrent_direction) if torch.jit.is_tracing() else recurrent_direction
        finals, pools = [], []
        for direction in range(2 if rnn.bidirectional else 1):
            suffix = "_reverse" if direction else ""
            w_ih, b_ih = getattr(rnn, f"weight_ih_l0{suffix}"), getattr(rnn, f"bias_ih_l0{suffix}")
            w_hh, b_hh = getattr(rnn, f"weight_hh_l0{suffix}"), getattr(rnn, f"bias_hh_l0{suffix}")
            table = torch.addmm(b_ih, self.embedding.weight, w_ih.t())  # (letters + pad, gates)
            gates_in = table.index_select(0, idx.reshape(-1)).view(width, batch, -1)
            h, pooled = recur(gates_in, w_hh.t(), b_hh, bool(direction), self.cell == "gru")
            finals.append(h)
            pools.append(pooled)
        features = torch.cat(finals + pools, dim=1)
        return torch.log_softmax(self.out(features), dim=1)


def recurrent_direction(gates_in: torch.Tensor, w_hh_t: torch.Tensor, b_hh: torch.Tensor, reverse: bool,
                        gru: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """One direction of a one-layer ``nn.GRU``/``nn.RNN`` (tanh) over precomputed input gates
    ``(T, B, gates)``: the last hidden state and the running max-pool of all states, ``(B, H)`` each.

    Written so TorchScript compiles it (see :meth:`RecurrentClassifier._unpadded_inference`).
    """
    width = gates_in.size(0)
    size = w_hh_t.size(0)
    h = torch.zeros(gates_in.size(1), size, dtype=gates_in.dtype, device=gates_in.device)
    pooled = torch.full_like(h, -float("inf"))
    for step in range(width):
        t = width - 1 - step if reverse else step
        gates_h = torch.addmm(b_hh, h, w_hh_t)
        if gru:
            rz = torch.sigmoid(gates_in[t, :, : 2 * size] + gates_h[:, : 2 * size])
            r, z = rz[:, :size], rz[:, size:]
            n = torch.tanh(torch.addcmul(gates_in[t, :, 2 * size :], r, gates_h[:, 2 * size :]))
            h = torch.addcmul(n, z, h - n)  # (1 - z) * n + z * h
        else:
            h = torch.tanh(gates_in[t] + gates_h)
        pooled = torch.maximum(pooled, h)
    return h, pooled


class NgramEnsemble(nn.Module):
    """A neural classifier and the n-gram Bayes classifier, pooled log-linearly.

    ``log p(l | name) = softmax((log p_net(l) + weight * log p_ngram(l) - shift * log prior(l)) / T)``.
    The RNN is discriminative and leans on the frequent languages; the n-gram model is generative,
    models each language on its own and is best on the rare ones; their errors differ, so the
    product beats both (docs/experiments.md, "Choosing defaults"). ``shift`` takes back part of the class prior
    that both halves learned (logit adjustment, for macro-F1) and the temperature ``T`` makes the
    pooled probabilities calibrated again; all three are fitted on the validation names.
    """

    def __init__(self, net: nn.Module, ngram: NgramBayes) -> None:
        super().__init__()
        self.net, self.ngram = net, ngram
        self.register_buffer("weight", torch.tensor(1.0))
        self.register_buffer("shift", torch.tensor(0.0))
        self.register_buffer("temperature", torch.tensor(1.0))

    def pool(self, net_logp: torch.Tensor, ngram_logp: torch.Tensor, weight: float | torch.Tensor,
             shift: float | torch.Tensor, temperature: float | torch.Tensor = 1.0) -> torch.Tensor:
        """The pooled log-probabilities from the two halves' outputs (also used to fit the knobs)."""
        scores = net_logp + weight * ngram_logp - shift * self.ngram.log_prior
        return torch.log_softmax(scores / temperature, dim=1)

    def forward(self, idx: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.forward_with_likelihood(idx, lengths)[0]

    def forward_with_likelihood(self, idx: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The pooled log-probabilities and the n-gram half's ``log p(name | language)`` on the
        way (the open-set features start from it, so prediction runs the n-gram half once)."""
        log_p, likelihood, _ = self.forward_with_tokens(idx, lengths)
        return log_p, likelihood

    def forward_with_tokens(self, idx: torch.Tensor, lengths: torch.Tensor
                            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`forward_with_likelihood` and the per-position terms of the likelihood,
        ``(P, B, n_classes)`` (:meth:`NgramBayes.token_log_likelihood`), from one n-gram pass."""
        tokens = self.ngram.token_log_likelihood(idx, lengths)
        likelihood = tokens.sum(0)
        ngram_logp = self.ngram.posterior(likelihood)
        pooled = self.pool(self.net(idx, lengths), ngram_logp, self.weight, self.shift, self.temperature)
        return pooled, likelihood, tokens

    def pool_terms(self) -> dict[str, Any]:
        """What turns the n-gram half's log-odds into the pooled answer's: the weight, shift and
        temperature of :meth:`pool` and the n-gram half's training prior (read by explanations,
        and stored in the export's metadata for them)."""
        return {"weight": float(self.weight), "shift": float(self.shift), "temperature": float(self.temperature),
                "log_prior": [float(x) for x in self.ngram.log_prior]}


def build_network(kind: str, n_classes: int, *, hidden: int, tanh: bool, embed: int, layers: int,
                  bidirectional: bool, dropout: float, ngram_buckets: int, ngram_dim: int) -> nn.Module:
    """The neural half of a classifier. Every argument is explicit: the values come from one
    place, the training config stored in the model file, so nothing here can disagree with it.
    ``tanh`` is the hand-built RNN's; the others are the torch cells'."""
    if kind == "handbuilt":
        return HandBuiltRNN(N_LETTERS, hidden, n_classes, tanh=tanh)
    if kind in ("rnn", "gru", "lstm"):
        return RecurrentClassifier(kind, n_classes, hidden_size=hidden, embed_size=embed, num_layers=layers,
                                   bidirectional=bidirectional, dropout=dropout, ngram_buckets=ngram_buckets,
                                   ngram_dim=ngram_dim)
    raise ValueError(f"unknown model kind {kind!r}; expected one of {', '.join(CLASSIFIER_KINDS)}")


#: The keys of a classifier config that :func:`build_network` reads.
NETWORK_KEYS = ("hidden", "tanh", "embed", "layers", "bidirectional", "dropout", "ngram_buckets", "ngram_dim")


def build_classifier(config: Mapping[str, Any], n_classes: int) -> nn.Module:
    """The whole classifier for a training config (``TrainConfig.to_dict()``, as stored in a model
    file): the network, pooled with an unfitted n-gram half of ``ngram_order`` when it is not 0.

    The one place a classifier is assembled, at training and at load, so the two cannot differ.
    A config missing a key is a ``KeyError`` (the loader reports a damaged file). ``model: "ngram"``
    is the n-gram Bayes classifier alone (the parts of a full-name model, :mod:`namesclf.training.fullname`).
    """
    if config["model"] == "ngram":
        return NgramBayes(n_classes, int(config["ngram_order"]), fold_case=False)
    net = build_network(config["model"], n_classes, **{k: config[k] for k in NETWORK_KEYS})
    order = config["ngram_order"] or 0
    if order:
        return NgramEnsemble(net, NgramBayes(n_classes, order, fold_case=False))
    return net

"""The networks. Every classifier maps padded letter indices ``(T, B)`` plus lengths ``(B,)`` to
log-probabilities ``(B, n_classes)``, so training, prediction and evaluation treat them alike.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from .config import CLASSIFIER_KINDS, LM_CELLS
from .ngram import NgramBayes
from .text import N_LETTERS, PAD_INDEX


def _recur(inputs: torch.Tensor, steps: int, w_h: torch.Tensor, tanh: bool) -> torch.Tensor:
    """``h_{t+1} = act(x_t + h_t W_h^T)`` from ``h_0 = 0`` for ``steps`` steps: every state, ``h_0``
    first, ``(steps + 1, B, H)`` (``inputs`` may hold more rows than ``steps``; they are not read).

    The first step has no product: ``h_0 W_h^T`` is exactly zero, so ``h_1 = act(x_0)``, one matrix
    product fewer per batch with bit-identical results.
    """
    states = inputs.new_zeros(steps + 1, inputs.size(1), inputs.size(2))
    h, x = states.unbind(0), inputs.unbind(0)  # every step's view in one call, not two ops per letter
    if steps:
        if tanh:
            torch.tanh(x[0], out=h[1])
        else:
            h[1].copy_(x[0])
    w_t = w_h.t()
    for t in range(1, steps):
        torch.addmm(x[t], h[t], w_t, out=h[t + 1])
        if tanh:
            h[t + 1].tanh_()
    return states


def _recur_backward(states: torch.Tensor, grad_states: torch.Tensor, w_h: torch.Tensor, tanh: bool) -> torch.Tensor:
    """Back-propagation through time for :func:`_recur`: dL/d(pre-activation) at every step.

    ``g_t = (dL/dh_{t+1} from the output + g_{t+1} W_h) * act'``, written straight into its row:
    one addmm and one multiply per letter. ``act'`` is ``1 - h^2`` for tanh (all steps at once, up
    front) and 1 for the linear tutorial.
    """
    steps = states.size(0) - 1
    after = states[1:]
    grad_pre = torch.empty_like(after)
    g, g_out = grad_pre.unbind(0), grad_states.unbind(0)
    slope = torch.rsub(after.square(), 1).unbind(0) if tanh else None
    if slope is not None:
        torch.mul(g_out[steps], slope[steps - 1], out=g[steps - 1])
    else:
        g[steps - 1].copy_(g_out[steps])
    for t in range(steps - 2, -1, -1):
        torch.addmm(g_out[t + 1], g[t + 1], w_h, out=g[t])
        if slope is not None:
            g[t].mul_(slope[t])
    return grad_pre


class HandBuiltBackprop(torch.autograd.Function):
    """The hand-built RNN over a padded batch, to the log-probabilities, with its backward pass written out.

    Why by hand: at the tutorial's sizes (batches of 32, 128 units) a training step is per-op
    overhead as much as arithmetic. Autograd would record and replay ~30 small ops per batch plus
    several per letter, and slicing ``i2h.weight`` into its letter and hidden halves costs a
    full-size zero-and-copy per slice in the backward. Here the forward records nothing and the
    backward is the textbook BPTT: per letter one product and one multiply; then each weight's
    gradient in one piece (a product for the hidden half, a scatter-add by letter for the one-hot
    half, one product for ``i2o``). ``torch.autograd.gradcheck`` checks every parameter's gradient
    in the tests.

    ``letters`` ``(T, B)`` are letter indices (padding may hold any letter: nothing after a
    name's last letter is read); ``last`` ``(B,)`` is each name's last position.
    """

    @staticmethod
    def forward(ctx: Any, letters: torch.Tensor, last: torch.Tensor, w_ih: torch.Tensor, b_ih: torch.Tensor,
                w_io: torch.Tensor, b_io: torch.Tensor, tanh: bool) -> torch.Tensor:
        width, batch = letters.shape
        hidden = w_ih.size(0)
        n = w_ih.size(1) - hidden
        w_x, w_h = w_ih.split((n, hidden), dim=1)
        # i2h(cat(x, h)) = W_x x + W_h h + b, and with one-hot x, W_x x + b is a row of a
        # (letters x hidden) table: the input half of every step is one lookup up front.
        inputs = torch.add(b_ih, w_x.t())[letters]
        states = _recur(inputs, width - 1, w_h, tanh)  # the state after the last letter is never read
        # i2o reads the tutorial's cat(input, hidden) at each name's last letter: built as it is
        # (a one-hot row and the hidden state), so i2o is one product forward and its weight's
        # gradient one product backward.
        rows = torch.arange(batch, device=letters.device)
        combined = states.new_zeros(batch, n + hidden)
        combined[rows, letters[last, rows]] = 1.0
        combined[:, n:] = states[last, rows]
        log_probs = torch.log_softmax(torch.addmm(b_io, combined, w_io.t()), dim=1)
        ctx.save_for_backward(letters, last, rows, states, combined, w_ih, w_io, log_probs)
        ctx.tanh = tanh
        return log_probs

    @staticmethod
    def backward(ctx: Any, grad_log_probs: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        letters, last, rows, states, combined, w_ih, w_io, log_probs = ctx.saved_tensors
        steps, batch = letters.size(0) - 1, letters.size(1)
        hidden = w_ih.size(0)
        n = w_ih.size(1) - hidden
        # LogSoftmax: dL/dlogits = g - softmax * sum(g), here rather than in a node of its own
        g = torch.addcmul(grad_log_probs, log_probs.exp(), grad_log_probs.sum(1, keepdim=True), value=-1)
        grad_w_io, grad_b_io = g.t().mm(combined), g.sum(0)
        if not steps:  # one-letter names only: the hidden state is h_0 = 0 and i2h is never read
            return None, None, torch.zeros_like(w_ih), w_ih.new_zeros(hidden), grad_w_io, grad_b_io, None
        grad_states = states.new_zeros(states.shape)
        grad_states[last, rows] = g.mm(w_io[:, n:])  # a one-letter name's lands on h_0, which is not read
        grad_pre = _recur_backward(states, grad_states, w_ih[:, n:], ctx.tanh).view(-1, hidden)
        by_letter = grad_pre.new_zeros(n, hidden).index_add_(0, letters[:steps].reshape(-1), grad_pre)
        # h_0 = 0 adds nothing to the hidden half's gradient: the product starts at the second step
        grad_w_h = grad_pre[batch:].t().mm(states[1:steps].view(-1, hidden))
        grad_w_ih = torch.cat((by_letter.t(), grad_w_h), dim=1)
        return None, None, grad_w_ih, by_letter.sum(0), grad_w_io, grad_b_io, None


class HandBuiltRNN(nn.Module):
    """The PyTorch tutorial's RNN: two Linear layers over ``cat(input, hidden)`` and a LogSoftmax.

    ``i2h`` makes the next hidden state and ``i2o`` the output, both from the current letter and the
    previous hidden state; the prediction for a name is the output at its last letter. With
    ``tanh=False`` (the tutorial) the recurrence is linear; ``tanh=True`` squashes the hidden state,
    which keeps long names from blowing it up and trains faster at a higher learning rate.
    """

    #: Torch intra-op threads to train with (``train_classifier`` pins them; None: torch's own
    #: setting). Not pinned by default: on 2 quiet cores 2 threads trained 1.18x faster than 1
    #: (13,876 against 11,787 names/s), though on a busy machine 1 thread was 20x faster, as every
    #: op that forks to a second thread waits for it (docs/benchmarks.md; OMP_NUM_THREADS=1 there).
    train_threads: int | None = None

    def __init__(self, n_letters: int, hidden_size: int, n_classes: int, tanh: bool = False) -> None:
        super().__init__()
        self.n_letters, self.hidden_size, self.tanh = n_letters, hidden_size, tanh
        self.i2h = nn.Linear(n_letters + hidden_size, hidden_size)
        self.i2o = nn.Linear(n_letters + hidden_size, n_classes)
        self.softmax = nn.LogSoftmax(dim=1)

    def init_hidden(self, batch_size: int = 1) -> torch.Tensor:
        return torch.zeros(batch_size, self.hidden_size, device=self.i2h.weight.device)

    def step(self, letter: torch.Tensor, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One time step, exactly the tutorial's ``forward(input, hidden)``: (log-probs, new hidden)."""
        combined = torch.cat((letter, hidden), 1)
        new_hidden = self.i2h(combined)
        if self.tanh:
            new_hidden = torch.tanh(new_hidden)
        return self.softmax(self.i2o(combined)), new_hidden

    def forward_line(self, line: torch.Tensor) -> torch.Tensor:
        """One name as the tutorial feeds it: a ``<len x 1 x n_letters>`` one-hot line tensor."""
        hidden = self.init_hidden(1)
        output = None
        for i in range(line.size(0)):
            output, hidden = self.step(line[i], hidden)
        assert output is not None, "empty line tensor"
        return output

    def forward(self, idx: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """A padded batch: each name's output is read at its own last letter, not after padding.

        Same parameters and numbers as :meth:`step` letter by letter (a test checks it to 1e-6),
        computed by :class:`HandBuiltBackprop`: far fewer ops, and training at these sizes is
        dominated by per-op overhead (docs/benchmarks.md).
        """
        if torch.jit.is_tracing():  # exporting to ONNX (:mod:`.export`)
            return self._traced_forward(idx)
        # Padding may index any letter: a padded step only feeds states after the name's last
        # letter, which are never read, so neither its value nor a gradient reaches the output.
        letters = idx.clamp(max=self.n_letters - 1)
        last = (lengths.to(idx.device) - 1).clamp_(min=0)
        return HandBuiltBackprop.apply(letters, last, self.i2h.weight, self.i2h.bias, self.i2o.weight,
                                       self.i2o.bias, self.tanh)

    def _traced_forward(self, idx: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` for a batch of names of one length, as the ONNX exporter traces it: the
        same split of ``i2h``/``i2o`` into a letter table and a hidden product, with the recurrence
        in TorchScript so that it exports as one loop over however many letters come in, instead
        of being unrolled to the length of the example."""
        n = self.n_letters
        w_ih, b_ih, w_io, b_io = self.i2h.weight, self.i2h.bias, self.i2o.weight, self.i2o.bias
        inputs = nn.functional.embedding(idx[: idx.size(0) - 1], w_ih[:, :n].t() + b_ih)
        hidden = torch.jit.script(linear_recurrence)(inputs, w_ih[:, n:].t(), self.tanh)
        logits = torch.addmm(nn.functional.embedding(idx[idx.size(0) - 1], w_io[:, :n].t() + b_io), hidden,
                             w_io[:, n:].t())
        return self.softmax(logits)


def linear_recurrence(inputs: torch.Tensor, w_t: torch.Tensor, tanh: bool) -> torch.Tensor:
    """The last state of ``h_t = act(x_t + h_{t-1} W)`` from ``h_0 = 0`` (``(B, H)``): the hand-built
    RNN's recurrence in a form TorchScript compiles to a loop (see :meth:`HandBuiltRNN._traced_forward`)."""
    h = torch.zeros(inputs.size(1), w_t.size(1), dtype=inputs.dtype, device=inputs.device)
    for t in range(inputs.size(0)):
        h = torch.addmm(inputs[t], h, w_t)
        if tanh:
            h = torch.tanh(h)
    return h


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
        # where it applies (ONNX Runtime runs it several times faster than its own GRU node),
        # else through the cell itself (one ONNX RNN/GRU/LSTM node for any length).
        tracing = torch.jit.is_tracing()
        unpadded = tracing or bool((lengths == idx.size(0)).all())
        if unpadded and (tracing or idx.size(1) >= FAST_LOOP_MIN_BATCH) and self._fast_inference_ok():
            return self._unpadded_inference(idx)
        emb = self.dropout(self.embedding(idx))
        if unpadded:
            # No padding (prediction batches are cut at length changes): the plain tensor path
            # gives the same numbers as packing, ~30% faster on CPU.
            padded, hidden = self.rnn(emb)
        else:
            packed = pack_padded_sequence(emb, lengths.cpu(), enforce_sorted=False)
            outputs, hidden = self.rnn(packed)
            padded, _ = nn.utils.rnn.pad_packed_sequence(outputs, padding_value=float("-inf"))
        if isinstance(hidden, tuple):  # LSTM: (h, c)
            hidden = hidden[0]
        directions = 2 if self.rnn.bidirectional else 1
        final = torch.cat(list(hidden[-directions:]), dim=1)
        pooled = padded.amax(dim=0)  # amax: no argmax indices, ~3x faster than max(dim)
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
        it), ~1.5x faster on CPU.

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
        likelihood = self.ngram.log_likelihood(idx, lengths)
        ngram_logp = self.ngram.posterior(likelihood)
        return self.pool(self.net(idx, lengths), ngram_logp, self.weight, self.shift, self.temperature), likelihood


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
    A config missing a key is a ``KeyError`` (the loader reports a damaged file).
    """
    net = build_network(config["model"], n_classes, **{k: config[k] for k in NETWORK_KEYS})
    order = config["ngram_order"] or 0
    if order:
        return NgramEnsemble(net, NgramBayes(n_classes, order, fold_case=False))
    return net


class CharLM(nn.Module):
    """Next-token language model: token embedding (+ language embedding) -> ``nn.RNN`` -> Linear.

    Works on any token vocabulary (characters of names, or words of a text file); the vocabulary
    itself lives in :mod:`.lm`. Input is padded token indices ``(T, B)`` that start with the begin
    token; the output at step ``t`` scores the token at ``t + 1``. Padding sits only after the last
    real token, and the RNN is causal, so padded steps never change a real step's output: no
    packing is needed, only a masked loss.

    With ``n_languages > 0`` a learned language vector is concatenated to every step's token
    embedding, as the PyTorch "generating names" tutorial feeds the category at each step: the
    network is reminded which language it is spelling at every letter, not only at the start.
    ``lang_init`` also makes the start state from the language, so the first letter depends on it.
    One extra language slot, :attr:`any_language`, stands for "no language given": training
    feeds it now and then, and sampling contrasts it with the requested language
    (classifier-free guidance) to make rare languages recognisable.

    ``never_next`` lists tokens that can never follow (padding, the begin token); their logits are
    ``-inf``, so sampling cannot pick them and no probability mass is wasted on them.
    """

    def __init__(
        self,
        vocab_size: int,
        n_languages: int = 0,
        cell: str = "rnn",
        hidden_size: int = 256,
        embed_size: int = 64,
        lang_size: int = 32,
        num_layers: int = 1,
        dropout: float = 0.0,
        pad_index: int = 0,
        never_next: tuple[int, ...] | list[int] = (),
        lang_init: bool = False,
    ) -> None:
        super().__init__()
        if cell not in LM_CELLS:
            raise ValueError(f"unknown cell {cell!r}; expected one of {', '.join(LM_CELLS)}")
        self.cell, self.n_languages, self.vocab_size = cell, n_languages, vocab_size
        self.num_layers, self.hidden_size = num_layers, hidden_size
        self.embedding = nn.Embedding(vocab_size, embed_size, padding_idx=pad_index)
        self.lang_embedding = nn.Embedding(n_languages + 1, lang_size) if n_languages else None
        rnn_cls = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}[cell]
        self.rnn = rnn_cls(embed_size + (lang_size if n_languages else 0), hidden_size, num_layers=num_layers,
                           dropout=dropout if num_layers > 1 else 0.0)
        self.lang_to_hidden = (nn.Linear(lang_size, num_layers * hidden_size)
                               if lang_init and n_languages else None)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden_size, vocab_size)
        mask = torch.zeros(vocab_size, dtype=torch.bool)
        mask[list(never_next)] = True
        self.register_buffer("never_next", mask, persistent=False)

    @property
    def any_language(self) -> int:
        """Index of the "no particular language" slot (one past the real languages)."""
        return self.n_languages

    def forward(
        self, idx: torch.Tensor, language: torch.Tensor | None = None, hidden: Any = None
    ) -> tuple[torch.Tensor, Any]:
        """Logits ``(T, B, vocab)`` for the next token at every step, and the final hidden state.

        ``language`` is ``(B,)`` language indices (required when the model is conditioned);
        ``hidden`` continues from an earlier call, so sampling feeds one step at a time.
        """
        x = self.embedding(idx)
        if self.lang_embedding is not None:
            if language is None:
                raise ValueError("this language model is conditioned on a language: pass `language`")
            lang_vec = self.lang_embedding(language)
            x = torch.cat((x, lang_vec.unsqueeze(0).expand(x.size(0), -1, -1)), dim=2)
            if hidden is None and self.lang_to_hidden is not None:
                hidden = self.initial_hidden(lang_vec)
        output, hidden = self.rnn(self.dropout(x), hidden)
        logits = self.out(self.dropout(output))
        return logits.masked_fill(self.never_next, float("-inf")), hidden

    def initial_hidden(self, lang_vec: torch.Tensor) -> Any:
        """The start state made from a language vector (``lang_init``)."""
        assert self.lang_to_hidden is not None
        h0 = torch.tanh(self.lang_to_hidden(lang_vec)).view(-1, self.num_layers, self.hidden_size)
        h0 = h0.transpose(0, 1).contiguous()
        return (h0, torch.zeros_like(h0)) if self.cell == "lstm" else h0

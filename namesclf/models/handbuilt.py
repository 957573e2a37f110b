"""The hand-built RNN of the PyTorch tutorial: ``i2h`` and ``i2o`` over ``cat(input, hidden)``,
LogSoftmax, trained by manual SGD. Its recurrence has a hand-written backward pass
(:class:`HandBuiltBackprop`) so a batch costs two matrix products a step, and a traced form
(:func:`linear_recurrence`) for the ONNX export.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


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
        dominated by per-op overhead (docs/benchmarks.md#training-speed).
        """
        if torch.jit.is_tracing():  # exporting to ONNX (:mod:`namesclf.models.export`)
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

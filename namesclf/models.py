"""The networks. Every classifier maps padded letter indices ``(T, B)`` plus lengths ``(B,)`` to
log-probabilities ``(B, n_classes)``, so training, prediction and evaluation treat them alike.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from .text import N_LETTERS, PAD_INDEX, one_hot

CLASSIFIER_KINDS = ("handbuilt", "rnn", "gru", "lstm")


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
        """A padded batch: each name's output is read at its own last letter, not after padding."""
        letters = one_hot(idx)
        batch = idx.size(1)
        hidden = self.init_hidden(batch)
        last = (lengths.to(idx.device) - 1).unsqueeze(1)
        logits = torch.zeros(batch, self.i2o.out_features, device=idx.device, dtype=letters.dtype)
        for t in range(idx.size(0)):
            combined = torch.cat((letters[t], hidden), 1)
            logits = torch.where(last == t, self.i2o(combined), logits)
            hidden = self.i2h(combined)
            if self.tanh:
                hidden = torch.tanh(hidden)
        return self.softmax(logits)


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
        self.out = nn.Linear(2 * directions * hidden_size, n_classes)

    def forward(self, idx: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        emb = self.dropout(self.embedding(idx))
        packed = pack_padded_sequence(emb, lengths.cpu(), enforce_sorted=False)
        outputs, hidden = self.rnn(packed)
        if isinstance(hidden, tuple):  # LSTM: (h, c)
            hidden = hidden[0]
        directions = 2 if self.rnn.bidirectional else 1
        final = torch.cat(list(hidden[-directions:]), dim=1)
        padded, _ = nn.utils.rnn.pad_packed_sequence(outputs, padding_value=float("-inf"))
        pooled = padded.max(dim=0).values
        features = self.dropout(torch.cat((final, pooled), dim=1))
        return torch.log_softmax(self.out(features), dim=1)


def build_classifier(config: dict[str, Any], n_classes: int) -> nn.Module:
    """Build a classifier from the ``config`` stored in a model file (see :mod:`.checkpoint`)."""
    kind = config["model"]
    if kind == "handbuilt":
        return HandBuiltRNN(N_LETTERS, config["hidden"], n_classes, tanh=config.get("tanh", False))
    if kind in ("rnn", "gru", "lstm"):
        return RecurrentClassifier(
            kind,
            n_classes,
            hidden_size=config["hidden"],
            embed_size=config.get("embed", 64),
            num_layers=config.get("layers", 1),
            bidirectional=config.get("bidirectional", True),
            dropout=config.get("dropout", 0.2),
        )
    raise ValueError(f"unknown model kind {kind!r}; expected one of {', '.join(CLASSIFIER_KINDS)}")

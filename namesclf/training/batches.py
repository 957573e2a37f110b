"""Names as padded index tensors, length-bucketed batches of them, and batched inference.

Training, prediction and evaluation all feed the networks the same way: a split is encoded once
into one padded ``(T, N)`` tensor, and a batch is a slice of its columns. Batches group names
of similar length, so the per-letter recurrence runs few steps over padding.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from namesclf.text import PAD_INDEX, batch_indices


@dataclass
class EncodedSplit:
    """A split's names as one padded index tensor, so batches are slices, not re-encodings."""

    idx: torch.Tensor  # (T, N)
    lengths: torch.Tensor  # (N,)
    labels: torch.Tensor  # (N,)

    @classmethod
    def from_names(cls, names: Sequence[str]) -> EncodedSplit:
        """Folded, non-empty names without labels (for prediction; labels are zeros)."""
        idx, lengths = batch_indices(list(names))
        return cls(idx, lengths, torch.zeros(len(lengths), dtype=torch.long))

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, label_index: dict[str, int]) -> EncodedSplit:
        encoded = cls.from_names(frame["ascii"].tolist())
        encoded.labels = torch.tensor([label_index[x] for x in frame["language"]], dtype=torch.long)
        return encoded

    @classmethod
    def concat(cls, *parts: EncodedSplit) -> EncodedSplit:
        """The names of ``parts`` in order, padded to the longest (no re-encoding)."""
        width = max(int(p.idx.size(0)) for p in parts)
        idx = torch.cat([nn.functional.pad(p.idx, (0, 0, 0, width - p.idx.size(0)), value=PAD_INDEX) for p in parts],
                        dim=1)
        return cls(idx, torch.cat([p.lengths for p in parts]), torch.cat([p.labels for p in parts]))

    def __len__(self) -> int:
        return len(self.labels)

    def batch(self, rows: np.ndarray, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        rows_t = torch.as_tensor(rows, dtype=torch.long)
        lengths = self.lengths[rows_t]
        idx = self.idx[: int(lengths.max()), rows_t]
        return idx.to(device), lengths, self.labels[rows_t].to(device)

    def epoch_batches(self, batches: Iterable[np.ndarray],
                      device: torch.device) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """What :meth:`batch` gives for each of ``batches``, cut from whole-epoch tensors.

        One gather (and one copy to ``device``) for the epoch, then each batch is three views:
        at the hand-built RNN's batches of 32, the ~8 small ops of :meth:`batch` per step are a
        measurable share of training. ``idx`` is a view of the epoch's tensor, not contiguous.
        """
        parts = list(batches)
        if not parts:
            return
        rows = np.concatenate(parts)
        stops = np.cumsum([len(p) for p in parts])
        starts = stops - np.array([len(p) for p in parts])
        widths = np.maximum.reduceat(self.lengths.numpy()[rows], starts)
        rows_t = torch.as_tensor(rows, dtype=torch.long)
        idx = self.idx[: int(widths.max()), rows_t].to(device)
        lengths, labels = self.lengths[rows_t], self.labels[rows_t].to(device)
        for start, stop, width in zip(starts.tolist(), stops.tolist(), widths.tolist(), strict=True):
            yield idx[:width, start:stop], lengths[start:stop], labels[start:stop]


def length_bucketed_batches(lengths: torch.Tensor, batch_size: int, rng: np.random.Generator,
                            weights: np.ndarray | None = None) -> Iterator[np.ndarray]:
    """One epoch of row batches, each of similar length, in shuffled order.

    Without ``weights`` every row is seen once (a permutation). With ``weights`` the epoch has the
    same size but is drawn with replacement, row ``i`` with probability proportional to
    ``weights[i]`` (the language model uses this to show rare languages more often). Rows are
    then sorted by length within chunks of 32 batches, so batches have little padding yet the
    epoch still mixes lengths.
    """
    n = len(lengths)
    if weights is None:
        rows = rng.permutation(n)
    else:
        weights = np.asarray(weights, dtype=np.float64)
        rows = rng.choice(n, size=n, p=weights / weights.sum())
    chunk = batch_size * 32
    batches = []
    for start in range(0, n, chunk):
        part = rows[start : start + chunk]
        part = part[np.argsort(lengths[part].numpy(), kind="stable")]
        batches.extend(part[i : i + batch_size] for i in range(0, len(part), batch_size))
    for k in rng.permutation(len(batches)):
        yield batches[k]


#: Fewer names of one length than this are not worth a batch of their own (see predict_log_proba).
UNPADDED_MIN_BATCH = 256


@torch.inference_mode()
def predict_log_proba(model: nn.Module, encoded: EncodedSplit, device: torch.device,
                      batch_size: int = 2048) -> torch.Tensor:
    """Log-probabilities for a whole encoded split, in its order (length-sorted batches inside)."""
    model.eval()
    order = torch.argsort(encoded.lengths, stable=True)
    sorted_lengths = encoded.lengths[order]
    out = torch.empty(len(encoded), 0)
    parts = []
    start = 0
    while start < len(order):
        # A batch holds names of one length when there are enough of them (no padding: recurrent
        # models skip packing and take their fast loop); otherwise the next batch_size names.
        same = int(torch.searchsorted(sorted_lengths, sorted_lengths[start], right=True))
        stop = min(start + batch_size, len(order))
        if same - start >= min(UNPADDED_MIN_BATCH, batch_size):
            stop = min(stop, same)
        idx, lengths, _ = encoded.batch(order[start:stop].numpy(), device)
        parts.append(model(idx, lengths).float().cpu())
        start = stop
    if parts:
        out = torch.empty(len(encoded), parts[0].size(1))
        out[order] = torch.cat(parts)
    return out

"""A language-conditioned Kneser-Ney character n-gram model, read as a Bayes classifier.

``p(name | language)`` from per-language n-gram counts, times ``p(language)``, normalised: a
generative classifier. It fits by counting, with no training loop, and it is strong exactly where the
discriminative RNN is weak: each language is modelled on its own, so the 100 Korean names are not
drowned by 9,000 Russian ones, and on the grouped split it has the best macro-F1 of any single
model. The default classifier (:class:`~namesclf.models.networks.NgramEnsemble`) adds its log-posterior to the
GRU's; each fixes errors of the other (docs/experiments.md, "Choosing defaults").

Counts are turned into tensors once, so scoring a batch is gathers and arithmetic on the padded
index batch every classifier takes, ``(T, B)`` plus lengths, with no per-name Python: a dense
code -> row index where the n-gram code space is small, a trie of gathers where it is not (so the
model exports to ONNX as it is).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from namesclf.text import N_LETTERS, PAD_INDEX

#: Discounts and language/all-language mixtures tried by :meth:`NgramBayes.tune` (on valid).
DISCOUNTS = (0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0)
MIXTURES = tuple(round(float(x), 2) for x in np.arange(0.3, 1.0001, 0.05))
#: A code space up to this size gets a dense code -> row index (int32) built at load time.
DENSE_LIMIT = 1 << 22


def symbol_table(fold_case: bool) -> tuple[torch.Tensor, int]:
    """Alphabet index -> n-gram symbol, and the number of symbols (the code base).

    Symbols are the letters (case-folded or not), then ``pad``, ``bos`` and ``eos`` as the last
    three. Folding case shrinks the code space (35 instead of 61 symbols, so every order-4 table is
    a dense lookup) but scored worse on held-out names, in nats per character and in macro-F1
    (docs/experiments.md#tried-and-not-adopted), so it is off by default.
    """
    table = list(range(N_LETTERS + 1))
    n = N_LETTERS
    if fold_case:
        table[26:52] = range(26)  # string.ascii_letters: lower case, then upper case
        table[52:N_LETTERS] = range(26, 26 + N_LETTERS - 52)
        n = 26 + N_LETTERS - 52
    table[PAD_INDEX] = n
    # Made on the CPU whatever device a caller builds the model under: a constant, moved with the
    # module, and an ``arange`` on the ``meta`` device (the model file check) imports torch's compiler.
    return torch.tensor(table, dtype=torch.long, device="cpu"), n + 3


def _rows(table: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``table[rows]`` through ``index_select``, faster than advanced indexing (docs/benchmarks.md#prediction-speed)."""
    return table.index_select(0, rows.reshape(-1)).view(*rows.shape, *table.shape[1:])


class NgramBayes(nn.Module):
    """Per-language interpolated Kneser-Ney n-grams mixed with an all-language model, as a classifier.

    For language ``l``: ``p(c | h) = lam * KN_l(c | h) + (1 - lam) * KN_all(c | h)``, because the
    smallest languages' counts are thin; the discount and ``lam`` are tuned on held-out names by
    :meth:`tune`. The Kneser-Ney recursion is the textbook one: the highest order uses raw counts,
    lower orders continuation counts (in how many contexts an n-gram was seen), except n-grams
    that start at the name's start, which keep raw counts; it bottoms out in the uniform
    distribution, so nothing gets probability 0. Names are framed as ``bos * (order - 1) name eos``
    and the end is predicted like a letter.

    Buffers (all saved in the state dict, so a model file loads with ``weights_only=True``):
    per context length ``j``, the sorted codes of the seen contexts and ``(j + 1)``-grams and, per
    model (languages then "all"), their totals, type counts and counts.
    """

    def __init__(self, n_classes: int, order: int = 4, fold_case: bool = False) -> None:
        super().__init__()
        if order < 1:
            raise ValueError("order must be at least 1")
        self.order, self.n_classes, self.fold_case = order, n_classes, fold_case
        symbols, self.base = symbol_table(fold_case)
        self.register_buffer("symbols", symbols, persistent=False)
        self.pad, self.bos, self.eos = self.base - 3, self.base - 2, self.base - 1
        self.n_outcomes = self.base - 2  # letters and the end mark can follow
        m = n_classes + 1
        for j in range(order):
            self.register_buffer(f"ctx_codes{j}", torch.zeros(0, dtype=torch.long))
            self.register_buffer(f"ctx_total{j}", torch.zeros(0, m))
            self.register_buffer(f"ctx_types{j}", torch.zeros(0, m))
            self.register_buffer(f"gram_codes{j}", torch.zeros(0, dtype=torch.long))
            self.register_buffer(f"gram_counts{j}", torch.zeros(0, m))
        self.register_buffer("log_prior", torch.zeros(n_classes))
        self.register_buffer("discount", torch.tensor(0.75))
        self.register_buffer("mixture", torch.tensor(0.7))
        self._index: dict[str, Any] = {}  # derived lookup tables, rebuilt after load, fit or .to()

    # ------------------------------------------------------------------ loading

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        # The tables' sizes depend on the data, so take them from the file before copying.
        for name, buf in list(self._buffers.items()):
            incoming = state_dict.get(prefix + name)
            if buf is not None and incoming is not None and incoming.shape != buf.shape:
                self._buffers[name] = torch.empty_like(incoming, device=buf.device)
        self._index = {}
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _apply(self, fn: Any, *args: Any, **kwargs: Any) -> NgramBayes:
        self._index = {}  # rebuilt on the new device at the next call
        return super()._apply(fn, *args, **kwargs)

    # ------------------------------------------------------------------ fitting

    def _framed(self, idx: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``(order - 1 + T + 1, B)`` symbols: begin marks, the name, the end mark, then padding."""
        width, batch = idx.shape
        sym = self.symbols.take(idx)
        framed = torch.full((self.order - 1 + width + 1, batch), self.pad, dtype=torch.long, device=idx.device)
        framed[: self.order - 1] = self.bos
        framed[self.order - 1 : self.order - 1 + width] = sym
        framed[self.order - 1 + lengths.to(idx.device), torch.arange(batch, device=idx.device)] = self.eos
        return framed

    def _codes(self, framed: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
        """Per context length ``j``: context codes and ``(j + 1)``-gram codes at every predicted
        position, ``(P, B)`` each, with ``P = T + 1`` (the end mark is predicted too)."""
        start = self.order - 1
        positions = framed.size(0) - start
        target = framed[start:]
        ctx = torch.zeros_like(target)
        contexts, grams = [], []
        for j in range(self.order):
            if j:
                ctx = ctx + framed[start - j : start - j + positions] * self.base ** (j - 1)
            contexts.append(ctx)
            grams.append(ctx * self.base + target)
        return contexts, grams, target

    @torch.no_grad()
    def fit(self, idx: torch.Tensor, lengths: torch.Tensor, labels: torch.Tensor) -> NgramBayes:
        """Count n-grams of the padded names ``idx`` (``(T, N)``) under their ``labels``."""
        framed = self._framed(idx.cpu(), lengths.cpu())
        _, grams, _ = self._codes(framed)
        steps = torch.arange(grams[0].size(0)).unsqueeze(1)
        valid = (steps <= lengths.cpu().unsqueeze(0)).numpy()
        top = grams[-1].numpy()
        y = np.broadcast_to(labels.cpu().numpy(), top.shape)
        m = self.n_classes + 1
        per_model = [top[valid & (y == k)] for k in range(self.n_classes)] + [top[valid]]
        tables = [self._kneser_ney(codes) for codes in per_model]  # [model][j] -> (codes, counts)
        for j in range(self.order):
            all_grams = np.unique(np.concatenate([t[j][0] for t in tables]))
            counts = np.zeros((len(all_grams), m), dtype=np.float32)
            for k, t in enumerate(tables):
                counts[np.searchsorted(all_grams, t[j][0]), k] = t[j][1]
            contexts, inverse = np.unique(all_grams // self.base, return_inverse=True)
            total = np.zeros((len(contexts), m), dtype=np.float32)
            types = np.zeros((len(contexts), m), dtype=np.float32)
            np.add.at(total, inverse, counts)
            np.add.at(types, inverse, (counts > 0).astype(np.float32))
            setattr(self, f"gram_codes{j}", torch.from_numpy(all_grams.astype(np.int64)))
            setattr(self, f"gram_counts{j}", torch.from_numpy(counts))
            setattr(self, f"ctx_codes{j}", torch.from_numpy(contexts.astype(np.int64)))
            setattr(self, f"ctx_total{j}", torch.from_numpy(total))
            setattr(self, f"ctx_types{j}", torch.from_numpy(types))
        n = np.bincount(labels.cpu().numpy(), minlength=self.n_classes) + 1.0  # add-one: no language impossible
        self.log_prior = torch.from_numpy(np.log(n / n.sum()).astype(np.float32))
        self._index = {}
        return self

    def _kneser_ney(self, top: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """Kneser-Ney adjusted counts of one model's top-order n-gram occurrences, per level."""
        base, bos = self.base, self.bos
        raw_codes, raw_counts = np.unique(top, return_counts=True)
        levels = {self.order: (raw_codes, raw_counts.astype(np.float64))}
        for k in range(self.order - 1, 0, -1):
            longer = levels[k + 1][0]
            # continuation: one per distinct (k+1)-gram, credited to its last k characters,
            # unless those start with the begin mark (no left context: raw counts instead)
            cont = longer[(longer // base ** (k - 1)) % base != bos] % base**k
            suffix = raw_codes % base**k
            starts = suffix // base ** (k - 1) == bos
            codes = np.concatenate([cont, suffix[starts]])
            weights = np.concatenate([np.ones(len(cont)), raw_counts[starts]])
            uniq, inverse = np.unique(codes, return_inverse=True)
            levels[k] = (uniq, np.bincount(inverse, weights=weights, minlength=len(uniq)))
        return [levels[j + 1] for j in range(self.order)]

    # ------------------------------------------------------------------ scoring

    def _lookup(self, name: str, codes: torch.Tensor, space: int) -> torch.Tensor:
        """Row of each code in the sorted table ``name`` (one past the end where unseen).

        Only gathers, so the same code runs in torch and exports to ONNX (which has no
        ``searchsorted``): a dense code -> row index where the code space is small, else a trie
        (:meth:`_trie`) walked a symbol at a time below a dense index of the leading symbols.
        """
        table = getattr(self, name)
        if space <= DENSE_LIMIT:
            index = self._index.get(name)
            if index is None:
                index = torch.full((space,), len(table), dtype=torch.long, device=table.device)
                index[table] = torch.arange(len(table), device=table.device)
                self._index[name] = index
            return index.take(codes)
        head, steps = self._trie(name, space)
        node = head.take(codes // (self.base ** len(steps)))
        for k, step in enumerate(steps):
            symbol = (codes // self.base ** (len(steps) - 1 - k)) % self.base
            node = step.take(node * self.base + symbol)
        return node

    def _trie(self, name: str, space: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The lookup tables of a large code space, built once per table: a dense index over the
        leading symbols (as many as fit :data:`DENSE_LIMIT`) to the distinct prefixes seen, then
        per further symbol a ``(prefixes + 1) x base`` transition to the next prefix's number; the
        last level numbers the codes themselves, so it ends at the table's rows. An unseen prefix
        is the extra last number at every level and stays unseen."""
        key = f"trie:{name}"
        cached = self._index.get(key)
        if cached is None:
            table = getattr(self, name)
            codes = table.cpu().numpy()
            width = round(np.log(space) / np.log(self.base))  # symbols per code
            lead = 0  # leading symbols in the dense index: as many as fit DENSE_LIMIT
            while lead < width and self.base ** (lead + 1) <= DENSE_LIMIT:
                lead += 1
            prefix = codes // self.base ** (width - lead)
            heads, node = np.unique(prefix, return_inverse=True)
            head = np.full(self.base**lead, len(heads), dtype=np.int64)
            head[heads] = np.arange(len(heads))
            steps, known = [], len(heads)
            for level in range(lead + 1, width + 1):
                prefix = codes // self.base ** (width - level)
                numbers, inverse = np.unique(prefix, return_inverse=True)
                step = np.full((known + 1, self.base), len(numbers), dtype=np.int64)
                step[node, prefix % self.base] = inverse
                steps.append(torch.from_numpy(step.reshape(-1)).to(table.device))
                node, known = inverse, len(numbers)
            cached = (torch.from_numpy(head).to(table.device), steps)
            self._index[key] = cached
        return cached

    def _coefficients(self, j: int, d: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Level ``j`` at discount ``d`` as two gather tables, so each level is one fused update
        ``p = max(count - d, 0) / total + (d * types / total) * p``:

        * per context, ``(1 / total, d * types / total)``, ``(n + 1, 2, models)``; where a model never
          saw the context (and for the extra "unseen" row) ``(0, 1)`` leaves ``p`` as it was;
        * per n-gram, ``max(count - d, 0)``, ``(n + 1, models)``, 0 in the "unseen" row.
        """
        key = f"coef{j}@{d}"
        cached = self._index.get(key)
        if cached is None:
            total, types = getattr(self, f"ctx_total{j}"), getattr(self, f"ctx_types{j}")
            seen = total > 0
            inv = torch.where(seen, 1.0 / total.clamp(min=1e-9), torch.zeros_like(total))
            gamma = torch.where(seen, d * types * inv, torch.ones_like(total))
            ctx = torch.stack((inv, gamma), dim=1)
            unseen = torch.stack((total.new_zeros(1, total.size(1)), total.new_ones(1, total.size(1))), dim=1)
            ctx = torch.cat((ctx, unseen))
            grams = (getattr(self, f"gram_counts{j}") - d).clamp(min=0)
            grams = torch.cat((grams, grams.new_zeros(1, grams.size(1))))
            cached = (ctx, grams)
            self._index[key] = cached
        return cached

    def token_probs(self, idx: torch.Tensor, lengths: torch.Tensor,
                    discount: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``p(symbol | history)`` under every model, ``(P, B, n_classes + 1)`` (the last model is
        all languages), and the mask of real positions ``(P, B)``."""
        d = float(self.discount) if discount is None else discount
        framed = self._framed(idx, lengths)
        contexts, grams, _ = self._codes(framed)
        p = torch.full((*grams[0].shape, self.n_classes + 1), 1.0 / self.n_outcomes, device=idx.device)
        for j in range(self.order):
            ctx_table, gram_table = self._coefficients(j, d)
            coef = _rows(ctx_table, self._lookup(f"ctx_codes{j}", contexts[j], self.base**j))  # (P, B, 2, models)
            count = _rows(gram_table, self._lookup(f"gram_codes{j}", grams[j], self.base ** (j + 1)))
            p = torch.addcmul(count * coef[..., 0, :], coef[..., 1, :], p)
        steps = torch.arange(p.size(0), device=idx.device).unsqueeze(1)
        return p, steps <= lengths.to(idx.device).unsqueeze(0)

    def token_log_likelihood(self, idx: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``log p(symbol | history, language)`` at every predicted position (the end mark is the
        last), ``(P, B, n_classes)``, 0 past a name's end: the terms :meth:`log_likelihood` adds up,
        and what an explanation (:mod:`namesclf.inference.explain`) reads letter by letter."""
        p, mask = self.token_probs(idx, lengths)
        lam = self.mixture
        mixed = lam * p[..., :-1] + (1 - lam) * p[..., -1:]
        return mixed.log() * mask.unsqueeze(-1)

    def log_likelihood(self, idx: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``log p(name | language)`` for every language, ``(B, n_classes)``."""
        return self.token_log_likelihood(idx, lengths).sum(0)

    def forward(self, idx: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Log-posterior over languages, ``(B, n_classes)``: Bayes' rule with the training prior."""
        return self.posterior(self.log_likelihood(idx, lengths))

    def posterior(self, likelihood: torch.Tensor) -> torch.Tensor:
        """Bayes' rule: the log-posterior from :meth:`log_likelihood`'s output."""
        return torch.log_softmax(likelihood + self.log_prior, dim=1)

    def nats_per_char(self, idx: torch.Tensor, lengths: torch.Tensor, labels: torch.Tensor,
                      discount: float | None = None, mixture: float | None = None) -> float:
        """Mean ``-log p`` per predicted symbol (end mark included) of names under their own language."""
        p, mask = self.token_probs(idx, lengths, discount)
        lam = float(self.mixture) if mixture is None else mixture
        own = p.gather(2, labels.to(p.device).view(1, -1, 1).expand(p.size(0), -1, 1)).squeeze(2)
        mixed = lam * own + (1 - lam) * p[..., -1]
        return float(-(mixed.log() * mask).sum() / mask.sum())

    @torch.no_grad()
    def tune(self, idx: torch.Tensor, lengths: torch.Tensor, labels: torch.Tensor,
             discounts: Sequence[float] = DISCOUNTS, mixtures: Sequence[float] = MIXTURES) -> dict[str, float]:
        """Pick the discount and mixture with the fewest nats per character on held-out names."""
        best = (float("inf"), float(self.discount), float(self.mixture))
        for d in discounts:
            p, mask = self.token_probs(idx, lengths, d)
            own = p.gather(2, labels.to(p.device).view(1, -1, 1).expand(p.size(0), -1, 1)).squeeze(2)[mask]
            every = p[..., -1][mask]
            for lam in mixtures:
                nats = float(-(lam * own + (1 - lam) * every).log().mean())
                if nats < best[0]:
                    best = (nats, d, lam)
        self.discount.fill_(best[1])
        self.mixture.fill_(best[2])
        return {"valid_nats_per_char": best[0], "discount": best[1], "mixture": best[2]}

"""The character (or word) language model: the network (:class:`CharLM`), its masked loss, the
trained model with its vocabulary (:class:`LanguageModel`) and held-out NLL (:func:`evaluate_lm`).

Nothing here trains: :mod:`namesclf.lm.train` does, so sampling (:mod:`namesclf.lm.generate`)
never imports training.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from namesclf.config import LM_CELLS, LMConfig
from namesclf.errors import NamesError, first_line
from namesclf.lm.data import BOS_ID, PAD_ID, EncodedLM, Vocab, load_source
from namesclf.text import MAX_NAME_LENGTH


class CharLM(nn.Module):
    """Next-token language model: token embedding (+ language embedding) -> ``nn.RNN`` -> Linear.

    Works on any token vocabulary (characters of names, or words of a text file); the vocabulary
    itself lives in :mod:`namesclf.lm.model`. Input is padded token indices ``(T, B)`` that start with the begin
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


def masked_nll(logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy over real tokens only: ``<pad>`` targets are ignored (``ignore_index``).

    With ``mean`` the loss is per real token, so a batch's loss does not depend on how much padding
    its longest example forced on the others.
    """
    return nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1),
                                       ignore_index=PAD_ID, reduction=reduction)


@torch.inference_mode()
def total_nll(model: CharLM, encoded: EncodedLM, device: torch.device, batch_size: int = 1024
              ) -> tuple[float, int]:
    """Summed negative log-likelihood (nats) and the number of scored tokens (end tokens included)."""
    model.eval()
    order = torch.argsort(encoded.lengths, stable=True)
    total, count = 0.0, 0
    for start in range(0, len(order), batch_size):
        x, y, lang = encoded.batch(order[start : start + batch_size], device)
        logits, _ = model(x, lang if model.n_languages else None)
        total += float(masked_nll(logits, y, reduction="sum"))
        count += int((y != PAD_ID).sum())
    return total, count


def nll_metrics(total: float, count: int, n_examples: int) -> dict[str, float]:
    """Nats per token and perplexity (``exp`` of it) from a summed NLL."""
    per_token = total / count if count else float("nan")
    return {"nats_per_token": per_token, "perplexity": math.exp(per_token) if count else float("nan"),
            "tokens": count, "examples": n_examples}


# ----------------------------------------------------------------------------- the model


def build_lm(config: LMConfig, vocab_size: int, n_languages: int) -> CharLM:
    """The network for a language-model config; every size comes from the config, none is guessed."""
    return CharLM(vocab_size, n_languages, cell=config.cell, hidden_size=config.hidden, embed_size=config.embed,
                  lang_size=config.lang_embed, num_layers=config.layers, dropout=config.dropout, pad_index=PAD_ID,
                  never_next=(PAD_ID, BOS_ID), lang_init=config.lang_init)


@dataclass
class LanguageModel:
    """A trained model with what it needs to read and write text: vocabulary, languages, known names."""

    model: CharLM
    vocab: Vocab
    languages: list[str]
    known: list[str]
    config: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    _known_keys: frozenset[str] | None = field(default=None, init=False, repr=False)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def known_keys(self) -> frozenset[str]:
        """Training examples, lower-cased: a generated ``IVANOV`` is not new if ``Ivanov`` was seen."""
        if self._known_keys is None:
            self._known_keys = frozenset(k.lower() for k in self.known)
        return self._known_keys

    def language_index(self, language: str | None) -> int | None:
        """Index of ``language`` (case-insensitive); ``None`` for an unconditioned model."""
        if not self.languages:
            if language:
                raise NamesError(f"this model was trained on a text file and knows no languages "
                                 f"(drop {language!r})")
            return None
        if not language:
            raise NamesError("this model is conditioned on a language: name one of "
                             f"{', '.join(self.languages)}")
        for i, lang in enumerate(self.languages):
            if lang.lower() == language.strip().lower():
                return i
        raise NamesError(f"unknown language {language!r}: this model knows {', '.join(self.languages)}")

    @classmethod
    def from_payload(cls, payload: dict[str, Any], device: str | torch.device = "cpu") -> LanguageModel:
        """Rebuild from a loaded ``kind="lm"`` model file; a damaged file is a one-line error."""
        try:
            meta = payload.get("meta", {})
            vocab = Vocab(list(meta["vocab"]), meta.get("unit", payload["config"]["unit"]))
            languages = list(payload.get("labels", []))
            model = build_lm(LMConfig.from_dict(payload["config"]), len(vocab), len(languages))
            model.load_state_dict(payload["state_dict"])
        except (KeyError, RuntimeError, ValueError, TypeError) as exc:
            raise NamesError(f"language model file is damaged: {first_line(exc)}") from None
        model.to(device).eval()
        return cls(model, vocab, languages, list(meta.get("known", [])), dict(payload["config"]), meta)


def language_ids(langs: list[str] | None, languages: list[str]) -> list[int] | None:
    if langs is None or not languages:
        return None
    index = {lang: i for i, lang in enumerate(languages)}
    return [index[x] for x in langs]


# ----------------------------------------------------------------------------- evaluation


def evaluate_lm(lm: LanguageModel, source: str | Path, split: str | None = None) -> dict[str, Any]:
    """Held-out nats per token (end token counted) and perplexity of ``lm`` on a split of ``source``.

    The split is rebuilt with the seed stored in the model file, so ``test`` is exactly the names the
    training run never saw. ``split=None`` means ``test`` for names and ``valid`` for text files
    (a text file has no test part). Names of languages the model does not know are skipped.
    """
    seed = int(lm.meta.get("split_seed", 0))
    src = load_source(source, seed=seed, unit=lm.vocab.unit)
    split = split or ("test" if src.kind == "names" else "valid")
    if split not in src.splits:
        raise NamesError(f"a text file has only train, valid and all splits (not {split!r})")
    texts, langs = src.splits[split]
    skipped = 0
    lang_ids: list[int] | None = None
    if lm.languages:
        if langs is None:
            raise NamesError("this model is conditioned on languages: evaluate it on a names folder or CSV")
        index = {lang: i for i, lang in enumerate(lm.languages)}
        keep = [i for i, lang in enumerate(langs) if lang in index]
        skipped = len(texts) - len(keep)
        texts, lang_ids = [texts[i] for i in keep], [index[langs[i]] for i in keep]
    if not texts:
        raise NamesError(f"no examples to evaluate in the {split} split of {source}")
    max_tokens = MAX_NAME_LENGTH if src.kind == "names" else None
    encoded = EncodedLM.build(texts, lm.vocab, lang_ids, max_tokens)
    metrics = nll_metrics(*total_nll(lm.model, encoded, lm.device), len(encoded))
    return {"source": str(source), "split": split, "unit": lm.vocab.unit, "skipped_unknown_language": skipped,
            **metrics}

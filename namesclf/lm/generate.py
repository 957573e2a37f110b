"""Sampling from a trained language model: new names per language, text completion, next tokens.

Sampling is batched: many candidates advance one token per step together, so 100 names cost about
as many network calls as one long name. Generated names are distinct, and by default names already
in the training data are left out and counted (makemore's "in train / new" view: a model that
only recites its training data would look perfect if they were kept).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from namesclf.errors import ModelFileError, NamesError
from namesclf.lm.data import BOS_ID, EOS_ID, PAD_ID
from namesclf.lm.model import LanguageModel
from namesclf.models.checkpoint import load_checkpoint
from namesclf.text import MAX_NAME_LENGTH

__all__ = ["GenerationResult", "LanguageModel", "complete", "fidelity", "generate_names", "load_lm",
           "next_tokens"]

#: Largest batch of candidates sampled at once (bounded memory whatever ``n`` is asked for).
MAX_BATCH = 4096
#: Default completion lengths, in tokens.
DEFAULT_LENGTH = {"char": 100, "word": 20}
#: Classifier-free guidance strength for :func:`generate_names` (picked by measurement, docs/experiments.md).
DEFAULT_GUIDANCE = 1.0
#: Guided sampling only picks tokens with at least this share of the likeliest token's probability.
PLAUSIBLE = 0.01


def load_lm(path: str | Path, device: str = "cpu") -> LanguageModel:
    """Load a model file written by ``names lm train`` (or :func:`~namesclf.lm.train.train_lm` with ``out=``)."""
    if not Path(path).exists():
        hint = f"train one with `names lm train SOURCE --out {path}`"
        raise ModelFileError(f"{path}: no such model file ({hint})")
    return LanguageModel.from_payload(load_checkpoint(path, kind="lm"), device)


@dataclass
class GenerationResult:
    """Generated names, and what was thrown away to get them."""

    names: list[str]
    skipped_known: int
    skipped_duplicates: int = 0
    attempts: int = 0
    requested: int = 0
    language: str | None = None

    @property
    def exhausted(self) -> bool:
        """True when the attempt budget ran out before ``requested`` new names were found."""
        return len(self.names) < self.requested

    def to_dict(self) -> dict[str, Any]:
        return {"language": self.language, "names": self.names, "skipped_known": self.skipped_known,
                "skipped_duplicates": self.skipped_duplicates, "attempts": self.attempts,
                "requested": self.requested}


def _pick(logits: torch.Tensor, temperature: float, top_k: int | None,
          generator: torch.Generator | None) -> torch.Tensor:
    """Next token per row: argmax at temperature 0, else a draw from the (top-k) softened softmax."""
    if temperature <= 0:
        return logits.argmax(dim=-1)
    logits = logits / temperature
    if top_k is not None and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits.float(), dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def _guide(logits: torch.Tensor, count: int, guidance: float, plausible: float | None = None) -> torch.Tensor:
    """Classifier-free guidance: ``cond + g * (cond - any)`` in log-probabilities.

    Rows ``:count`` are conditioned on the requested language, rows ``count:`` on "any language";
    what the language adds to the generic spelling is amplified by ``g``, so an Arabic name gets
    more of what makes it Arabic rather than drifting to the English-and-Russian average the data
    is dominated by. A ratio of two tiny probabilities is noise, so only tokens the language model
    itself finds plausible (at least ``plausible`` times its top token's probability, contrastive
    decoding's constraint) may be picked: without it guided names can start with a lower-case
    letter (docs/experiments.md#language-model). Impossible tokens (``-inf``) stay impossible.
    """
    plausible = PLAUSIBLE if plausible is None else plausible
    cond = torch.log_softmax(logits[:count].float(), dim=-1)
    uncond = torch.log_softmax(logits[count:].float(), dim=-1)
    guided = torch.where(torch.isfinite(cond), cond + guidance * (cond - uncond), cond)
    if plausible > 0:
        floor = cond.max(dim=-1, keepdim=True).values + math.log(plausible)
        guided = guided.masked_fill(cond < floor, float("-inf"))
    return guided


@torch.inference_mode()
def sample_tokens(lm: LanguageModel, prefix: Sequence[int], count: int, max_new: int, *,
                  language: int | None = None, temperature: float = 1.0, top_k: int | None = None,
                  generator: torch.Generator | None = None, guidance: float = 0.0
                  ) -> list[tuple[list[int], bool]]:
    """``count`` continuations of ``<bos> prefix``, advanced together one token a step.

    Each result is ``(new tokens without the end token, finished)``; ``finished`` is False when the
    sequence had not ended after ``max_new`` tokens (an unfinished name is not a name, but an
    unfinished text completion is still worth showing). ``guidance > 0`` (conditioned models only)
    runs a second, "any language" copy of the batch and samples from :func:`_guide`.
    """
    model = lm.model.eval()
    device = lm.device
    guided = guidance > 0 and language is not None
    rows = 2 * count if guided else count
    x = torch.tensor([BOS_ID, *prefix], dtype=torch.long, device=device).unsqueeze(1).expand(-1, rows)
    lang = None
    if language is not None:
        lang = torch.full((rows,), language, dtype=torch.long, device=device)
        lang[count:] = model.any_language
    logits, hidden = model(x, lang)
    last = _guide(logits[-1], count, guidance) if guided else logits[-1]
    steps = torch.full((max_new, count), PAD_ID, dtype=torch.long, device=device)
    done = torch.zeros(count, dtype=torch.bool, device=device)
    for t in range(max_new):
        nxt = _pick(last, temperature, top_k, generator).masked_fill(done, PAD_ID)
        steps[t] = nxt
        done |= nxt == EOS_ID
        if bool(done.all()) or t == max_new - 1:
            break
        logits, hidden = model((torch.cat((nxt, nxt)) if guided else nxt).unsqueeze(0), lang, hidden)
        last = _guide(logits[0], count, guidance) if guided else logits[0]
    out: list[tuple[list[int], bool]] = []
    for column in steps.t().tolist():
        finished = EOS_ID in column
        out.append((column[: column.index(EOS_ID)] if finished else column, finished))
    return out


def _generator(seed: int | None, device: torch.device) -> torch.Generator | None:
    if seed is None:
        return None
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    return gen


def generate_names(
    lm: LanguageModel,
    language: str | None,
    n: int = 10,
    start: str = "",
    temperature: float = 0.8,
    top_k: int | None = None,
    seed: int | None = None,
    allow_known: bool = False,
    max_attempts: int | None = None,
    guidance: float | None = None,
) -> GenerationResult:
    """``n`` distinct names in ``language`` that start with ``start``.

    Names seen in training are skipped (and counted) unless ``allow_known``. Candidates are drawn
    in batches until ``n`` are found or ``max_attempts`` samples (default ``50 * n + 500``) were
    tried, so a model that cannot produce ``n`` new names returns fewer instead of looping forever;
    check :attr:`GenerationResult.exhausted`. ``guidance`` (default :data:`DEFAULT_GUIDANCE`)
    sharpens the language, see :func:`_guide`; 0 samples the model as trained.
    """
    guidance = _checked(n, temperature, top_k, guidance)
    lang_id = lm.language_index(language)
    prefix_text = lm.vocab.fold(start, prompt=True)
    prefix = lm.vocab.encode(start, prompt=True)
    limit = max_attempts if max_attempts is not None else 50 * n + 500
    max_new = _max_new_tokens(lm, len(prefix))
    generator = _generator(seed, lm.device)
    shown_language = lm.languages[lang_id] if lang_id is not None else None
    result = GenerationResult([], 0, requested=n, language=shown_language)
    seen: set[str] = set()
    known = lm.known_keys
    while len(result.names) < n and result.attempts < limit:
        count = min(MAX_BATCH, limit - result.attempts, max(64, 2 * (n - len(result.names))))
        batch = sample_tokens(lm, prefix, count, max_new, language=lang_id, temperature=temperature,
                              top_k=top_k, generator=generator, guidance=guidance)
        for tokens, finished in batch:
            result.attempts += 1
            if not finished:  # an unfinished name is not a name
                continue
            _take(result, lm.vocab.join(prefix_text, lm.vocab.decode(tokens)).strip(), seen, known, allow_known)
            if len(result.names) == n:
                break
    return result


def _checked(n: int, temperature: float, top_k: int | None, guidance: float | None) -> float:
    """Refuse settings that cannot give ``n`` names; the guidance strength to use."""
    if n < 1:
        raise NamesError("n must be at least 1")
    if temperature <= 0:
        raise NamesError("temperature must be above 0 for generation (0 would give one name only)")
    if top_k is not None and top_k < 1:
        raise NamesError("top-k must be at least 1")
    guidance = DEFAULT_GUIDANCE if guidance is None else guidance
    if guidance < 0:
        raise NamesError("guidance must be 0 or more")
    return guidance


def _max_new_tokens(lm: LanguageModel, prefix_length: int) -> int:
    """How many tokens a name may grow by: a little longer than the longest training name (capped
    at the classifier's name length for characters), so a sequence that never ends stops."""
    longest = int(lm.meta.get("max_len", MAX_NAME_LENGTH))
    if lm.vocab.unit == "word":
        return max(1, longest + 5)
    return max(1, min(MAX_NAME_LENGTH, longest + 10) - prefix_length)


def _take(result: GenerationResult, name: str, seen: set[str], known: Collection[str], allow_known: bool) -> None:
    """Add ``name`` to ``result`` unless it is empty, drawn before (any case) or, without
    ``allow_known``, in the training data; count each name turned away."""
    key = name.lower()
    if not name or key in seen:
        result.skipped_duplicates += bool(name)
        return
    seen.add(key)
    if not allow_known and key in known:
        result.skipped_known += 1
        return
    result.names.append(name)


def _prompt(lm: LanguageModel, text: str, language: str | None) -> tuple[str, list[int], int | None]:
    lang_id = lm.language_index(language)
    return lm.vocab.fold(text, prompt=True), lm.vocab.encode(text, prompt=True), lang_id


def complete(
    lm: LanguageModel,
    text: str,
    length: int | None = None,
    temperature: float = 0.0,
    top_k: int | None = None,
    seed: int | None = None,
    language: str | None = None,
) -> str:
    """``text`` continued by up to ``length`` tokens, stopping early at the end token.

    ``temperature=0`` is greedy (the most likely token each step: deterministic). The prompt is
    returned as the model saw it (folded to ASCII for character models).
    """
    length = DEFAULT_LENGTH[lm.vocab.unit] if length is None else length
    if length < 1:
        raise NamesError("length must be at least 1")
    shown, prefix, lang_id = _prompt(lm, text, language)
    tokens, _ = sample_tokens(lm, prefix, 1, length, language=lang_id, temperature=temperature, top_k=top_k,
                              generator=_generator(seed, lm.device))[0]
    return lm.vocab.join(shown, lm.vocab.decode(tokens))


@torch.inference_mode()
def next_tokens(lm: LanguageModel, text: str, k: int = 5, language: str | None = None
                ) -> list[tuple[str, float]]:
    """The ``k`` most likely tokens to follow ``text``, with probabilities (``<eos>``: the text ends)."""
    if k < 1:
        raise NamesError("k must be at least 1")
    _, prefix, lang_id = _prompt(lm, text, language)
    x = torch.tensor([BOS_ID, *prefix], dtype=torch.long, device=lm.device).unsqueeze(1)
    lang = torch.tensor([lang_id], device=lm.device) if lang_id is not None else None
    logits, _ = lm.model.eval()(x, lang)
    probs = torch.softmax(logits[-1, 0].float(), dim=-1)
    probs[[PAD_ID, BOS_ID]] = 0.0  # never a next token (their logits are -inf already)
    top = torch.topk(probs, min(k, len(lm.vocab) - 2))
    pairs = zip(top.values.tolist(), top.indices.tolist(), strict=True)
    return [(lm.vocab.tokens[i], float(p)) for p, i in pairs]


def fidelity(lm: LanguageModel, predictor: Any, languages: Sequence[str], n: int = 100, seed: int = 0,
             temperature: float = 0.8, guidance: float | None = None) -> dict[str, Any]:
    """Do generated names read as the language asked for, and are they new?

    For each language, ``n`` distinct names are sampled *with* known names allowed (so the share of
    new ones is measured, not forced), and a trained classifier (:class:`~namesclf.inference.predictor.Predictor`)
    labels them. ``in_language``: the share it puts in the requested language; ``new``: the share
    absent from the training data. Averages over languages are under ``"mean"``.
    """
    per: dict[str, dict[str, float]] = {}
    for i, language in enumerate(languages):
        res = generate_names(lm, language, n=n, temperature=temperature, seed=seed + i, allow_known=True,
                             guidance=guidance)
        if not res.names:
            per[language] = {"n": 0, "in_language": 0.0, "new": 0.0}
            continue
        top1 = predictor.top_k(res.names, 1, strict=False)
        predicted = [p.languages[0][0] if p.languages else None for p in top1]
        target = res.language
        per[language] = {
            "n": len(res.names),
            "in_language": sum(p == target for p in predicted) / len(res.names),
            "new": sum(name.lower() not in lm.known_keys for name in res.names) / len(res.names),
            "examples": res.names[:5],
        }
    scored = [v for v in per.values() if v["n"]]
    mean = {key: sum(v[key] for v in scored) / len(scored) if scored else 0.0
            for key in ("in_language", "new")}
    shown = DEFAULT_GUIDANCE if guidance is None else guidance
    return {"n": n, "seed": seed, "temperature": temperature, "guidance": shown, "per_language": per,
            "mean": mean}


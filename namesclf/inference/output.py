"""Predictions as flat rows and lines: the columns of a table, CSV/TSV/JSON-lines cells, and
:func:`write_predictions`, which streams a million lines in batches with a cache for repeated names.
"""

from __future__ import annotations

import contextlib
import csv
import gc
import json
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from itertools import islice
from pathlib import Path
from typing import Any, BinaryIO, TextIO

import numpy as np

from namesclf.config import PREDICTION_FORMATS, STREAM_BATCH
from namesclf.errors import NamesError
from namesclf.inference.answers import Prediction
from namesclf.inference.options import DEFAULTS, UNKNOWN, Options
from namesclf.inference.people import read_ahead
from namesclf.inference.predictor import Predictor
from namesclf.inference.staged import top_k


def output_columns(options: Options, n_labels: int) -> list[str]:
    """The flat columns of a prediction (CSV, tables): the top languages and probabilities, then
    what the options add. ``n_labels`` counts the answers at the options' level (labels, groups
    or regions); at a group or region level the ``language`` columns hold groups or regions."""
    k = min(options.k, n_labels)
    columns = ["language", "probability", *(c for i in range(2, k + 1) for c in (f"language_{i}", f"probability_{i}"))]
    if not options.surname_only:
        columns.append("surname")
    if options.abstain:
        columns += ["answer", "abstained", "novelty"]
    if options.coverage is not None:
        columns.append("prediction_set")
    if options.explain:
        columns.append("explanation")
    return columns


def output_row(pred: Prediction, options: Options, n_labels: int) -> list[Any]:
    """``pred`` as the values of :func:`output_columns`: strings, floats, booleans, None where it has none."""
    k = min(options.k, n_labels)
    row: list[Any] = []
    for lang, p in pred.languages:
        row += [lang, p]
    if pred.reason is not None:  # no language writes its script: the answer, with no probability
        row += [pred.answer, None]
    row += [None] * (2 * k - len(row))
    if not options.surname_only:
        row.append(pred.surname)
    if options.abstain:
        row += [pred.answer, pred.abstained, pred.novelty]
    if options.coverage is not None:
        row.append(None if pred.prediction_set is None else ";".join(pred.prediction_set))
    if options.explain:
        # One cell, so a JSON string: a table has no column type for a list of positions.
        row.append(None if pred.explanation is None else json.dumps(pred.explanation.to_dict(), ensure_ascii=False))
    return row


def csv_cells(row: Sequence[Any]) -> list[str]:
    """Values of :func:`output_row` as CSV text: 6 decimals, ``true``/``false``, empty for None."""
    return ["" if v is None else str(v).lower() if isinstance(v, bool) else f"{v:.6f}" if isinstance(v, float)
            else str(v) for v in row]


#: Output lines kept by :func:`write_predictions` for names seen before (their memory when full:
#: docs/benchmarks.md#batch-prediction).
LINE_CACHE_SIZE = 100_000


def write_predictions(predictor: Predictor, lines: Iterable[str], out: TextIO, k: int | Options = DEFAULTS.k,
                      fmt: str = "csv", batch_size: int = STREAM_BATCH, progress: bool | None = None,
                      cache_size: int = LINE_CACHE_SIZE) -> int:
    """Stream the answer for every line to ``out`` as CSV or JSON lines; return how many lines had
    no letters (they are written with empty languages, so output rows match input lines).

    CSV columns: ``name`` and :func:`output_columns`. ``k`` is the number of languages or an
    :class:`Options`. Memory stays bounded by ``batch_size`` names and ``cache_size`` cached
    output lines whatever the input's length: a name seen before is written from the cache,
    because a real list repeats its common surnames thousands of times (docs/benchmarks.md#batch-prediction).
    ``progress=None`` shows a bar on stderr only when it is a terminal. Input that is not UTF-8
    is a :class:`NamesError`.
    """
    from tqdm.auto import tqdm  # here: a prediction of a few names on the command line should not pay for it

    options = k if isinstance(k, Options) else Options(k=k)
    if fmt not in PREDICTION_FORMATS:
        raise NamesError(f"unknown format {fmt!r}: use {', '.join(PREDICTION_FORMATS)}")
    n_labels = len(predictor.classes(options.level))
    line = _line_formatter(options, n_labels, fmt)
    if fmt == "csv":
        out.write(line(None))
    cache: dict[str, tuple[str, bool]] = {}  # name -> (output line, had no letters); oldest evicted first
    plain = fmt == "csv" and not (options.abstain or options.explain) and options.coverage is None
    skipped = 0
    batches = _batches(predictor, iter(lines), batch_size, options, cache, plain and predictor.given is not None)
    try:
        with tqdm(desc="predict", unit=" names", disable=None if progress is None else not progress,
                  file=sys.stderr) as bar, _fewer_collections():
            for batch, parts in batches:
                missing = [name for name in dict.fromkeys(batch) if name not in cache]
                if plain:
                    cache.update(zip(missing, csv_lines(predictor, missing, options, parts), strict=True))
                else:
                    for pred in predictor.predict_with(missing, options, strict=False):
                        cache[pred.name] = (line(pred), not pred.languages and pred.reason is None)
                written = [cache[name] for name in batch]
                out.write("".join(text for text, _ in written))
                skipped += sum(empty for _, empty in written)
                bar.update(len(batch))
                for old in list(islice(cache, max(0, len(cache) - cache_size))):
                    del cache[old]
    except UnicodeDecodeError as exc:
        raise NamesError(f"input is not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    return skipped


def _batches(predictor: Predictor, it: Iterator[str], batch_size: int, options: Options, cache: Mapping[str, Any],
             ahead: bool) -> Iterator[tuple[list[str], dict[str, tuple[str, str]] | None]]:
    """The lines ``batch_size`` at a time. With ``ahead`` (a full-name model), each comes with its
    names' parts (:func:`~namesclf.inference.people.read_ahead`, for the names not in ``cache``),
    the next batch's read and scored on a second thread while the caller writes this one: the
    part graphs run outside Python's lock, so they take the second core."""
    if not ahead:
        while batch := list(islice(it, batch_size)):
            yield batch, None
        return
    from concurrent.futures import ThreadPoolExecutor

    for part in ("surname", "given"):  # made here, before a second thread could race to make them
        predictor.part_cache(part)

    def submit(batch: list[str]) -> Any:
        return pool.submit(read_ahead, predictor, [n for n in dict.fromkeys(batch) if n not in cache], options)

    with ThreadPoolExecutor(1, thread_name_prefix="namesclf-read-ahead") as pool:
        batch = list(islice(it, batch_size))
        future = submit(batch) if batch else None
        while batch and future is not None:
            parts = future.result()
            following = list(islice(it, batch_size))
            future = submit(following) if following else None
            yield batch, parts
            batch = following


@contextlib.contextmanager
def _fewer_collections() -> Iterator[None]:
    """Python's cyclic collector run less often while a stream writes: each batch makes hundreds of
    thousands of short-lived lists and strings and no cycles, and the default thresholds would
    walk every live object again and again."""
    before = gc.get_threshold()
    gc.set_threshold(max(before[0], 100_000), *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)


class _Lines(list):
    """A file for ``csv.writer`` that keeps each row's line (the writer writes a row at a time)."""

    def write(self, text: str) -> None:
        self.append(text)


def csv_lines(predictor: Predictor, names: Sequence[str], options: Options,
              parts: dict[str, tuple[str, str]] | None = None) -> list[tuple[str, bool]]:
    """Each name's CSV line (:func:`write_predictions`'s, byte for byte) and whether it had no
    letters, for options that ask for no sets, abstention or explanations: made from the
    probabilities in bulk (:meth:`Predictor.scored`), with no :class:`Prediction` per name.
    ``parts``: the ``(surname, given names)`` of names already split (:func:`_batches`)."""
    if parts is None:
        scored = predictor.scored(names, options, strict=False)
    else:
        unread = [n for n in names if n not in parts]
        parts.update(zip(unread, zip(*predictor.split(unread, options), strict=True), strict=True))
        scored = predictor.scored([parts[n][0] for n in names], options, strict=False,
                                  given=[parts[n][1] for n in names])
    classes = predictor.classes(options.level)
    k = min(options.k, len(classes))
    proba = scored.proba if options.level == "label" else predictor.level_map(options.level).sum_columns(scored.proba)
    top, top_p = top_k(proba, k)
    ok = np.asarray(scored.ok, dtype=np.int64)
    unwritten = ok[scored.unwritten]  # no language writes their script: the answer alone
    names_of = np.asarray(classes, dtype=object)
    columns: list[list[str]] = []
    for j in range(k):  # a column at a time: no Python list per name
        label, shown = np.full(len(names), "", dtype=object), np.full(len(names), "", dtype=object)
        label[ok] = names_of[top[:, j]]
        shown[ok] = np.array([f"{p:.6f}" for p in top_p[:, j].tolist()], dtype=object)
        label[unwritten], shown[unwritten] = UNKNOWN if j == 0 else "", ""
        columns += [label.tolist(), shown.tolist()]
    if not options.surname_only:
        columns.append([p if p != n else "" for n, p in zip(names, scored.parsed, strict=True)])
    lines = _Lines()
    csv.writer(lines, lineterminator="\n").writerows(zip(names, *columns, strict=True))
    return list(zip(lines, [not f for f in scored.folded], strict=True))


@contextlib.contextmanager
def read_lines(path: str | Path) -> Iterator[Iterator[str]]:
    """The lines of the file at ``path`` (``-``: stdin), decoded lazily, without their line breaks.

    Each line is decoded on its own, so that text which is not UTF-8 is reported with the file
    and the line number it is on (a text stream's decoder only knows an offset in its last chunk).
    """
    if str(path) == "-":
        yield decoded_lines(sys.stdin.buffer, "stdin")
        return
    try:
        handle = open(path, "rb")  # noqa: SIM115 (closed below, after the caller's block)
    except FileNotFoundError:
        raise NamesError(f"{path}: no such file") from None
    except OSError as exc:
        raise NamesError(f"{path}: cannot read it ({exc.strerror})") from None
    with handle:
        yield decoded_lines(handle, str(path))


#: Bytes read at a time by :func:`decoded_lines`: whole lines of it are decoded in one call.
READ_BLOCK = 1 << 20


def decoded_lines(raw: BinaryIO, name: str) -> Iterator[str]:
    """UTF-8 lines of ``raw`` without their breaks, read as a text file reads them: ``\\n``,
    ``\\r\\n`` and a lone ``\\r`` each end a line. Invalid UTF-8 is a :class:`NamesError` naming
    ``name`` and the line (counted by ``\\n``).

    Blocks of whole lines are decoded at once (a decode per line costs more than the cached
    prediction of a repeated name); ``read1`` hands over what a pipe has, so stdin still streams.
    """
    before = 0  # lines in the blocks already decoded
    pending: list[bytes] = []
    while block := raw.read1(READ_BLOCK):
        cut = block.rfind(b"\n") + 1
        if not cut:
            pending.append(block)  # one long line so far: joined once, not copied block after block
            continue
        pending.append(block[:cut])
        chunk = b"".join(pending)
        pending = [block[cut:]]
        yield from _split_lines(chunk, before, name)
        before += chunk.count(b"\n")
    tail = b"".join(pending)
    if tail:
        yield from _split_lines(tail, before, name)


def _split_lines(chunk: bytes, before: int, name: str) -> list[str]:
    try:
        text = chunk.decode("utf-8")
    except UnicodeDecodeError as exc:
        line_start = chunk.rfind(b"\n", 0, exc.start) + 1
        number = before + chunk.count(b"\n", 0, exc.start) + 1
        raise NamesError(f"{name}: line {number}: not valid UTF-8 ({exc.reason} at byte "
                         f"{exc.start - line_start + 1} of the line)") from None
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # the break after the last line, not an empty line of its own
    return lines


class _LastLine:
    """A file for ``csv.writer`` that keeps the line it was given: CSV quoting without a stream."""

    text = ""

    def write(self, text: str) -> int:
        self.text = text
        return len(text)


def _line_formatter(options: Options, n_labels: int, fmt: str) -> Any:
    """``line(prediction)`` -> one output line with its newline; ``line(None)`` is the CSV header."""
    if fmt != "csv":
        return lambda pred: json.dumps(pred.to_dict(), ensure_ascii=False) + "\n"
    last = _LastLine()
    writer = csv.writer(last, lineterminator="\n")

    def line(pred: Prediction | None) -> str:
        if pred is None:
            writer.writerow(["name", *output_columns(options, n_labels)])
        else:
            writer.writerow([pred.name, *csv_cells(output_row(pred, options, n_labels))])
        return last.text

    return line


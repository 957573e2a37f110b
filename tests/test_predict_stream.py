"""Batch prediction over a file or stdin: ``names predict --input`` and :meth:`Predictor.stream`.

What matters for a million names: the output keeps input order and one row per input line (an
unreadable line gets an empty row, not a silent gap), the input is consumed lazily one batch at a
time, and peak memory does not grow with the number of names.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from namesclf.cli.main import cli
from namesclf.errors import NamesError
from namesclf.inference.output import write_predictions
from namesclf.inference.predictor import Predictor

from .conftest import TINY

NAMES = ["Ivanov", "Tanaka", "Rossi", "Ślusàrski", "O’Brien", "Достоевский", "Yamamoto", "Bianchi", "Kozlov",
         "Sato", "Ferrari", "Morozov", "Nakamura", "Greco"]


@pytest.fixture(scope="module")
def predictor(small_model: Path) -> Predictor:
    return Predictor.load(str(small_model))


def run_predict(model: Path, path: Path, *args: str) -> tuple[str, str, int]:
    result = CliRunner().invoke(cli, ["predict", "--model", str(model), "--input", str(path), *args])
    return result.stdout, result.stderr, result.exit_code


# ----------------------------------------------------------------------------- CLI output


def test_csv_keeps_input_order_with_header_and_top_k_columns(small_model: Path, tmp_path: Path) -> None:
    lines = [*NAMES, "123", "", *NAMES[:3]]
    src = tmp_path / "in.txt"
    src.write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")  # CRLF is read as well as LF
    stdout, stderr, code = run_predict(small_model, src, "--format", "csv", "-k", "2", "--batch-size", "4")
    assert code == 0, stderr
    rows = list(csv.reader(io.StringIO(stdout)))
    assert rows[0] == ["name", "language", "probability", "language_2", "probability_2", "surname"]
    assert [r[0] for r in rows[1:]] == lines
    assert all(len(r) == 6 for r in rows)
    for line, row in zip(lines, rows[1:], strict=True):
        assert row[5] == ""  # single names: nothing was cut from them
        if line in ("123", ""):
            assert row[1:] == ["", "", "", "", ""]
        else:
            assert row[1] in TINY and row[3] in TINY and row[1] != row[3]
            assert 1.0 >= float(row[2]) >= float(row[4]) >= 0.0
    assert "2 lines had no letters" in stderr


def test_k_above_the_number_of_languages_is_clamped(small_model: Path, tmp_path: Path) -> None:
    src = tmp_path / "in.txt"
    src.write_text("Ivanov\n", encoding="utf-8")
    stdout, _, code = run_predict(small_model, src, "-k", "10")
    assert code == 0
    header, row = list(csv.reader(io.StringIO(stdout)))
    assert header[-2:] == ["probability_3", "surname"] and len(row) == 8


def test_jsonl_keeps_input_order(small_model: Path, tmp_path: Path) -> None:
    lines = [*NAMES, "😀"]
    src = tmp_path / "in.txt"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    stdout, stderr, code = run_predict(small_model, src, "--format", "jsonl", "-k", "3", "--batch-size", "5")
    assert code == 0, stderr
    records = [json.loads(line) for line in stdout.splitlines()]
    assert [r["name"] for r in records] == lines
    assert all(len(r["predictions"]) == 3 for r in records[:-1])
    assert records[-1]["predictions"] == [] and records[-1]["ascii"] == ""
    assert records[5]["ascii"] == "Dostoevskiy"
    assert "1 lines had no letters" in stderr


def test_stdin_and_quiet(small_model: Path) -> None:
    result = CliRunner().invoke(cli, ["predict", "--model", str(small_model), "--input", "-", "-q", "-k", "1"],
                                input="Tanaka\n123\n")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0] == "name,language,probability,surname"
    assert lines[1].split(",")[:2] in (["Tanaka", lang] for lang in TINY) and lines[2] == "123,,,"
    assert result.stderr == ""


def test_invalid_utf8_is_a_one_line_error(small_model: Path, tmp_path: Path) -> None:
    src = tmp_path / "bad.txt"
    src.write_bytes(b"Ivanov\n\xff\xfe\n")
    _, stderr, code = run_predict(small_model, src)
    assert code == 1
    assert "not valid UTF-8" in stderr and "Traceback" not in stderr


# ----------------------------------------------------------------------------- Predictor.stream


def test_stream_consumes_its_input_lazily(predictor: Predictor) -> None:
    consumed = 0

    def names() -> Iterator[str]:
        nonlocal consumed
        for name in itertools.cycle(NAMES):  # endless: a list() anywhere would never return
            consumed += 1
            yield name

    stream = predictor.stream(names(), k=2, batch_size=8)
    first = next(stream)
    assert first.name == NAMES[0] and len(first.languages) == 2
    assert consumed == 8  # exactly one batch read, not the whole input
    rest = list(itertools.islice(stream, 7))
    assert consumed == 8 and [p.name for p in rest] == NAMES[1:8]
    next(stream)
    assert consumed == 16
    assert [p.name for p in itertools.islice(predictor.stream(names(), batch_size=3), 100)] == \
        list(itertools.islice(itertools.cycle(NAMES), 100))


def test_stream_matches_top_k_across_batch_boundaries(predictor: Predictor) -> None:
    names = [*NAMES, "!!!", *NAMES]
    whole = predictor.top_k(names, 3, strict=False)
    for batch_size in (1, 4, 7, 4096):
        streamed = list(predictor.stream(iter(names), k=3, batch_size=batch_size))
        assert [p.name for p in streamed] == names
        for a, b in zip(streamed, whole, strict=True):
            assert [lang for lang, _ in a.languages] == [lang for lang, _ in b.languages]
            assert [p for _, p in a.languages] == pytest.approx([p for _, p in b.languages], abs=1e-5)
    assert whole[len(NAMES)].languages == []


def test_top_k_agrees_with_predict_proba(predictor: Predictor) -> None:
    proba = predictor.predict_proba(NAMES)
    for row, pred in zip(proba, predictor.top_k(NAMES, 3), strict=True):
        order = np.argsort(-row, kind="stable")[:3]
        assert [lang for lang, _ in pred.languages] == [predictor.labels[j] for j in order]
        assert [p for _, p in pred.languages] == pytest.approx(row[order].tolist())
        assert all(isinstance(p, float) for _, p in pred.languages)


def test_forward_batch_size_does_not_change_probabilities(predictor: Predictor) -> None:
    folded = ["Ivanov", "Sato", "Ferrari", "Kuznetsov", "Yamaguchi", "Bruno", "Li"]
    whole = predictor.proba_ascii(folded)
    assert predictor.proba_ascii(folded, batch_size=2) == pytest.approx(whole, abs=1e-5)


# ----------------------------------------------------------------------------- real process


def test_subprocess_predict_on_thousands_of_lines(small_model: Path, tmp_path: Path) -> None:
    lines = [f"{NAMES[i % len(NAMES)]}{'' if i < len(NAMES) else chr(97 + i % 26)}" for i in range(3000)]
    lines[1234] = "0000"
    src = tmp_path / "names.txt"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "namesclf", "predict", "--input", str(src), "--model",
                           str(small_model)], capture_output=True, text=True, encoding="utf-8", timeout=300)
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.reader(io.StringIO(proc.stdout)))
    assert rows[0][:3] == ["name", "language", "probability"] and len(rows[0]) == 8
    assert [r[0] for r in rows[1:]] == lines
    assert rows[1235][1:] == [""] * 7
    assert "1 lines had no letters" in proc.stderr


MAXRSS = """
import resource, sys
from namesclf.cli import main
sys.argv = ["names", "predict", "--quiet", "--input", sys.argv[1], "--model", sys.argv[2]]
try:
    main()
finally:
    sys.stderr.write(f"MAXRSS_KB {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}\\n")
"""


def test_peak_memory_does_not_grow_with_the_number_of_names(small_model: Path, tmp_path: Path) -> None:
    """Peak RSS for 120,000 names is within a few MB of that for 20,000: nothing accumulates."""
    def peak_kb(n: int) -> int:
        src = tmp_path / f"{n}.txt"
        with src.open("w", encoding="utf-8") as fh:
            for i in range(n):
                fh.write(f"{NAMES[i % len(NAMES)]}{chr(97 + (i // len(NAMES)) % 26)}\n")
        proc = subprocess.run([sys.executable, "-c", MAXRSS, str(src), str(small_model)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return int(proc.stderr.rsplit("MAXRSS_KB ", 1)[1].split()[0])

    small, large = peak_kb(20_000), peak_kb(120_000)
    # 100,000 more Prediction objects and CSV rows held in memory would be well over 40 MB.
    assert large - small < 25_000, (small, large)


def test_write_predictions_is_a_library_call(predictor: Predictor) -> None:
    """What `names predict --input` does, callable from Python: one row per input line, in order."""
    out = io.StringIO()
    skipped = write_predictions(predictor, ["Ivanov", "123", "Tanaka"], out, k=2, fmt="csv", progress=False)
    rows = list(csv.reader(io.StringIO(out.getvalue())))
    assert skipped == 1
    assert rows[0] == ["name", "language", "probability", "language_2", "probability_2", "surname"]
    assert [r[0] for r in rows[1:]] == ["Ivanov", "123", "Tanaka"] and rows[2][1:] == ["", "", "", "", ""]
    top = predictor.top_k(["Ivanov"], 2)[0].languages
    assert rows[1][1] == top[0][0] and float(rows[1][2]) == pytest.approx(top[0][1], abs=1e-6)
    with pytest.raises(NamesError, match="unknown format"):
        write_predictions(predictor, ["Ivanov"], io.StringIO(), fmt="xml")


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
@pytest.mark.parametrize(("batch_size", "cache_size"), [(5, 0), (5, 3), (1000, 100_000)])
def test_repeated_names_are_answered_once_and_written_like_the_first(predictor: Predictor, fmt: str,
                                                                     batch_size: int, cache_size: int) -> None:
    """De-duplication in a batch and the line cache across batches (evicting as it goes when small)
    write exactly what answering every line on its own writes."""
    rng = np.random.default_rng(0)
    lines = [NAMES[i] for i in rng.zipf(1.5, size=400) % len(NAMES)] + ["", "123", "Rossi"]
    cached = io.StringIO()
    skipped = write_predictions(predictor, lines, cached, 2, fmt, batch_size=batch_size, cache_size=cache_size,
                                progress=False)
    one_by_one = io.StringIO()
    for line in lines:
        write_predictions(predictor, [line], one_by_one, 2, fmt, progress=False)
    expected = one_by_one.getvalue().splitlines()
    if fmt == "csv":  # one header, not one per call
        expected = [expected[0], *(row for row in expected if row != expected[0])]
    assert cached.getvalue().splitlines() == expected
    assert skipped == 2


def test_predict_with_answers_each_distinct_name_once(predictor: Predictor, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []
    score = predictor.scorer.score
    monkeypatch.setattr(predictor.scorer, "score",
                        lambda idx, features=False: seen.append(idx.shape[1]) or score(idx, features))
    names = ["Rossi", "Tanaka", "Rossi", "Rossi", "Tanaka"]
    got = predictor.predict(names, 2)
    assert sum(seen) == 2
    assert [p.to_dict() for p in got] == [p.to_dict() for n in names for p in predictor.predict([n], 2)]


def test_a_table_that_has_a_prediction_column_gets_advice_for_its_caller(small_model: Path, tmp_path: Path,
                                                                         predictor: Predictor) -> None:
    """``predict_frame`` says to pass ``prefix=``; ``names predict``, which has no prefix option,
    says to rename the column in the input (and never names an option it does not have)."""
    import pandas as pd

    from namesclf import predict_frame

    table = pd.DataFrame({"last": ["Ivanov", "Tanaka"], "language": ["ru", "ja"]})
    with pytest.raises(NamesError, match=r"column\(s\) language: pass prefix= \(e\.g\. predict_frame"):
        predict_frame(table, "last", predictor)
    out = predict_frame(table, "last", predictor, prefix="pred_")
    assert list(out.columns[:2]) == ["last", "language"] and out["pred_language"].tolist() == ["Russian", "Japanese"]
    src = tmp_path / "people.csv"
    table.to_csv(src, index=False)
    result = CliRunner().invoke(cli, ["predict", "--model", str(small_model), "--input", str(src), "--column", "last"])
    assert result.exit_code == 1 and "--prefix" not in result.output
    assert result.output.strip().splitlines() == [
        "Error: the table already has column(s) language, which names predict adds: rename or drop them in the "
        "input file"]


def test_predict_frame_gives_the_default_k_of_every_other_entry_point(predictor: Predictor) -> None:
    import pandas as pd

    from namesclf import predict_frame
    from namesclf.inference.options import DEFAULTS

    out = predict_frame(pd.DataFrame({"last": ["Ivanov"]}), "last", predictor)
    assert [c for c in out.columns if c.startswith("language")] == ["language", "language_2", "language_3"]
    assert len(predictor.predict(["Ivanov"])[0].languages) == DEFAULTS.k == 3

"""Load names, de-duplicate, split without leaks, and summarise.

A data set is a pandas DataFrame with the columns ``name`` (as written in the file), ``language``
and ``ascii`` (the folded form the models see). Splits are grouped by the folded, lower-cased
name, so ``Abbas`` can never be in train and test at once: a random split of raw lines leaks
duplicates and lets a model score by memory (Arabic has 2,000 lines but only 108 names).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from namesclf.config import SPLITS
from namesclf.errors import DataError, first_line
from namesclf.text import to_ascii

#: Files larger than this are refused: a names list is kilobytes, a mistaken path may be gigabytes.
MAX_FILE_BYTES = 64 * 1024 * 1024


@dataclass
class NamesData:
    """A loaded data set: one row per distinct (name, language) pair, plus what loading dropped."""

    frame: pd.DataFrame
    n_lines: int
    n_duplicates: int
    n_empty: int
    source: str
    dropped_examples: list[str] = field(default_factory=list)
    lines_per_language: dict[str, int] = field(default_factory=dict)

    @property
    def languages(self) -> list[str]:
        return sorted(self.frame["language"].unique())


def _decode(path: Path, raw: bytes) -> str:
    """Decode UTF-8 (a BOM is accepted), naming the file and line of the first bad byte."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(f"{path}: line {line} is not valid UTF-8 (byte {raw[exc.start]:#04x})") from None


def _read_bytes(path: Path) -> bytes:
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise DataError(f"{path}: {size:,} bytes is too large for a names file (limit {MAX_FILE_BYTES:,})")
    return path.read_bytes()


def read_text_file(path: Path) -> str:
    """A UTF-8 text file's contents, size-limited (:data:`MAX_FILE_BYTES`), errors naming the file and line."""
    return _decode(path, _read_bytes(path))


def read_names_file(path: Path) -> list[str]:
    """Names of one ``<Language>.txt`` file: one per line, CRLF and BOM accepted, blanks skipped."""
    text = read_text_file(path)
    names = [line.strip() for line in text.splitlines()]
    names = [n for n in names if n]
    if not names:
        raise DataError(f"{path}: the file has no names (it is empty or only blank lines)")
    return names


def _read_folder(folder: Path) -> pd.DataFrame:
    files = sorted(p for p in folder.glob("*.txt") if p.is_file())
    if not files:
        raise DataError(f"{folder}: no <Language>.txt files found (expected e.g. Russian.txt, Greek.txt)")
    rows = [(name, f.stem) for f in files for name in read_names_file(f)]
    return pd.DataFrame(rows, columns=["name", "language"])


def _read_table(path: Path) -> pd.DataFrame:
    text = read_text_file(path)
    sep = "\t" if path.suffix.lower() in (".tsv", ".tab") else ","
    try:
        frame = pd.read_csv(
            pd.io.common.StringIO(text), sep=sep, dtype=str, keep_default_na=False, quoting=csv.QUOTE_MINIMAL
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        what = "TSV" if sep == "\t" else "CSV"
        raise DataError(f"{path}: cannot read as {what}: {first_line(exc, 'no data')}") from None
    missing = {"name", "language"} - set(frame.columns)
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(sorted(missing))} (need 'name' and 'language')")
    frame = frame[["name", "language"]].astype(str)
    frame["name"] = frame["name"].str.strip()
    frame["language"] = frame["language"].str.strip()
    frame = frame[(frame["name"] != "") & (frame["language"] != "")]
    if frame.empty:
        raise DataError(f"{path}: the file has no rows with both a name and a language")
    return frame.reset_index(drop=True)


def load_names(source: str | Path) -> NamesData:
    """Load a folder of ``<Language>.txt`` files or a CSV/TSV with ``name``/``language`` columns.

    Duplicate (name, language) pairs are dropped (Arabic.txt repeats most of its names); names
    that fold to nothing (``123``, ``😀``) are dropped and counted, never silently.
    """
    path = Path(source)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if path.is_dir():
        frame = _read_folder(path)
    elif path.suffix.lower() in (".csv", ".tsv", ".tab"):
        frame = _read_table(path)
    else:
        raise DataError(f"{path}: expected a folder of <Language>.txt files or a .csv/.tsv file")
    n_lines = len(frame)
    lines_per_language = {str(k): int(v) for k, v in frame["language"].value_counts().items()}
    frame = frame.drop_duplicates(["name", "language"]).reset_index(drop=True)
    n_duplicates = n_lines - len(frame)
    frame["ascii"] = frame["name"].map(to_ascii)
    empty = frame["ascii"] == ""
    dropped = frame.loc[empty, "name"].head(5).tolist()
    frame = frame.loc[~empty].reset_index(drop=True)
    if frame.empty:
        raise DataError(f"{path}: no name has any letters after folding to ASCII")
    return NamesData(frame, n_lines, n_duplicates, int(empty.sum()), str(path), dropped, lines_per_language)


def group_key(ascii_names: pd.Series) -> pd.Series:
    """The key that keeps spellings of one name together: folded and lower-cased."""
    return ascii_names.str.lower()


def single_language(frame: pd.DataFrame) -> np.ndarray:
    """Which rows of ``frame`` belong to a folded name listed under one language only (in ``frame``).

    A name listed under two languages is two (name, language) pairs but gets one answer, so it is
    wrong on at least one of them whatever the model does; figures over the other rows have no
    such ceiling (``accuracy_single`` in the evaluation reports).
    """
    return (frame.groupby("ascii", sort=False)["language"].transform("nunique") == 1).to_numpy()


def split_names(frame: pd.DataFrame, seed: int = 0, valid: float = 0.1, test: float = 0.1) -> pd.Series:
    """Assign each row to ``train``/``valid``/``test``, grouped by folded name, stratified by language.

    The split is made over *distinct names* (the groups) with scikit-learn's stratified
    ``train_test_split``, each group labelled with its most common language, and then mapped back
    to rows: no name lands in two splits, and every language gets its share as far as its number of
    names allows. (StratifiedGroupKFold gives the same guarantee but takes as long as training a
    small model: docs/benchmarks.md#data-preparation.) Deterministic for a given ``seed`` and data.
    """
    keys = group_key(frame["ascii"])
    counts = pd.DataFrame({"key": keys, "language": frame["language"]}).value_counts().reset_index()
    counts = counts.sort_values(["key", "count", "language"], ascending=[True, False, True], kind="stable")
    groups = counts.drop_duplicates("key").set_index("key")["language"]
    names, labels = groups.index.to_numpy(), groups.to_numpy()
    held = valid + test
    _, heldout = _split(names, labels, held, seed)
    if test > 0:
        held_labels = groups.loc[heldout].to_numpy()
        valid_names, test_names = _split(heldout, held_labels, test / held, seed + 1)
    else:
        valid_names, test_names = heldout, heldout[:0]
    assignment = pd.Series("train", index=groups.index)
    assignment.loc[valid_names] = "valid"
    assignment.loc[test_names] = "test"
    return pd.Series(assignment.loc[keys].to_numpy(), index=frame.index, name="split")


def _split(items: np.ndarray, labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified where every class has at least two members, plain shuffled otherwise."""
    # scikit-learn is imported here, not with the module: it is most of a second, which every
    # command reading a data folder would pay even when it stops at a bad file.
    from sklearn.model_selection import train_test_split

    if len(items) < 2:
        return items, items[:0]
    counts = pd.Series(labels).value_counts()
    stratify = labels if counts.min() >= 2 and len(items) * fraction >= len(counts) else None
    try:
        a, b = train_test_split(items, test_size=fraction, random_state=seed, stratify=stratify)
    except ValueError:
        a, b = train_test_split(items, test_size=fraction, random_state=seed)
    return np.asarray(a), np.asarray(b)


def stats(data: NamesData, seed: int = 0) -> dict:
    """Per-language lines, distinct names and cross-language names, plus split sizes (JSON-ready)."""
    frame = data.frame
    keys = group_key(frame["ascii"])
    n_langs_per_name = frame.groupby(keys)["language"].nunique()
    shared = set(n_langs_per_name[n_langs_per_name > 1].index)
    split = split_names(frame, seed=seed) if frame["language"].nunique() > 1 else pd.Series("train", frame.index)
    # One pass over all rows, then counts per language: a loop of isin() per language grows with
    # languages x shared names (docs/benchmarks.md#data-preparation).
    table = pd.DataFrame({"language": frame["language"], "shared": keys.isin(shared), "split": split})
    counts = pd.crosstab(table["language"], table["split"]).reindex(columns=list(SPLITS), fill_value=0)
    shared_counts = table.groupby("language")["shared"].sum()
    per_language = {}
    for lang, n in frame["language"].value_counts().sort_index().items():
        per_language[lang] = {
            "lines": data.lines_per_language.get(str(lang), int(n)),
            "distinct": int(n),
            "shared": int(shared_counts[lang]),
            **{s: int(counts.loc[lang, s]) for s in SPLITS},
        }
    return {
        "source": data.source,
        "languages": len(per_language),
        "lines": data.n_lines,
        "distinct_pairs": len(frame) + data.n_empty,
        "duplicates_dropped": data.n_duplicates,
        "empty_dropped": data.n_empty,
        "names_in_several_languages": len(shared),
        "split_seed": seed,
        "splits": {s: int((split == s).sum()) for s in SPLITS},
        "per_language": per_language,
    }

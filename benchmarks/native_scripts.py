"""Accuracy on names written in their own scripts, per script: before (every name folded to ASCII
by anyascii, the model's answer as it was) and after (the script evidence of
:mod:`namesclf.inference.scripts`: labels that do not write the script get zero, each label reads
the name its own way, and a name no label writes is ``unknown``).

The names are ``benchmarks/native_names.csv``: native-script forms of common surnames from lists
outside the corpora, each with its source. ``label`` is empty for names of a script no label of
either corpus writes (Hebrew, Georgian): for them the right answer is ``unknown``.

Columns: ``n`` names of the script; ``scored`` those whose label the model has (accuracy is over
these: before, with the script mask alone on anyascii's folding, and after, with each label's own
romanization too; ``mixture`` is the other combination rule, each label averaged over all the
readings); ``unknown`` the share answered ``unknown`` for names whose right answer is unknown (no
label of the model writes the script, or the name has no label at all), and ``wrong unknown`` the
share of ``scored`` names answered ``unknown``. Japanese kanji names are also reported apart by
whether the surname table holds them (``Han (ja, in table)`` / ``Han (ja, not in table)``), since
the table and the list share their source.

    python -m benchmarks.native_scripts --model /work/models/names.pt [--json]
"""

from __future__ import annotations

import argparse
import csv
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from namesclf.data.romanize import japanese_surnames
from namesclf.data.scripts import CYRILLIC_PER_LANGUAGE, native_scripts
from namesclf.inference.options import UNKNOWN
from namesclf.inference.predictor import Predictor
from namesclf.inference.scripts import ScriptEvidence
from namesclf.text import to_ascii

NAMES = Path(__file__).resolve().parent / "native_names.csv"


def load(path: Path = NAMES) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def answers_before(predictor: Predictor, names: Sequence[str]) -> list[str]:
    """The answer of plain anyascii folding: the top label of each folded name, as before scripts counted."""
    proba = predictor.proba_ascii([to_ascii(n) for n in names])
    return [predictor.labels[j] for j in np.argmax(proba, axis=1)]


def answers_mask_only(predictor: Predictor, names: Sequence[str]) -> list[str]:
    """The script mask alone: anyascii folding for every label, labels that do not write the name's
    script (or lack one of its letters) set to zero: what the per-label romanization adds is the
    difference between this and :func:`answers_after`."""
    proba = predictor.proba_ascii([to_ascii(n) for n in names])
    out = []
    for name, row in zip(names, proba, strict=True):
        reading = predictor.scripts.read(name)
        if reading is not None:
            row = np.where(reading.candidates, row, 0.0)
        out.append(predictor.labels[int(np.argmax(row))] if row.sum() > 0 else UNKNOWN)
    return out


def answers_mixture(predictor: Predictor, names: Sequence[str]) -> list[str]:
    """The other combination rule, for comparison: each label's probability averaged over every
    reading of the name (the readings as equally likely), then the mask."""
    base = predictor.proba_ascii([to_ascii(n) for n in names])
    out = []
    for name, row in zip(names, base, strict=True):
        reading = predictor.scripts.read(name)
        if reading is not None:
            used = {reading.schemes[j] for j in np.flatnonzero(reading.candidates)}
            texts = [reading.readings.get(s, "") for s in sorted(used)]
            rows = [predictor.proba_ascii([t])[0] if s != "any" and t else row
                    for s, t in zip(sorted(used), texts, strict=True)]
            row = np.mean(rows, axis=0) * reading.candidates if rows else np.zeros_like(row)
        out.append(predictor.labels[int(np.argmax(row))] if row.sum() > 0 else UNKNOWN)
    return out


def answers_after(predictor: Predictor, names: Sequence[str]) -> list[str]:
    return [str(p.answer) for p in predictor.predict(names, k=1, surname_only=True)]


def groups_of(row: dict[str, str]) -> list[str]:
    """The rows a name counts in: its script, and for Japanese kanji also by table membership."""
    out = [row["script"]]
    if row["script"] == "Han" and row["label"] == "Japanese":
        out.append("Han (ja, in table)" if row["name"] in japanese_surnames() else "Han (ja, not in table)")
    return out


def measure(predictor: Predictor, rows: list[dict[str, str]]) -> dict[str, dict[str, float | int]]:
    names = [r["name"] for r in rows]
    before, after = answers_before(predictor, names), answers_after(predictor, names)
    masked, mixed = answers_mask_only(predictor, names), answers_mixture(predictor, names)
    labels = set(predictor.labels)
    table: dict[str, dict[str, float | int]] = {}
    counts: dict[str, dict[str, int]] = {}
    for row, b, m, x, a in zip(rows, before, masked, mixed, after, strict=True):
        scripts = native_scripts(row["name"])
        writable = any(predictor.scripts.labels_for(scripts)[0])
        expect_unknown = not writable or not row["label"]
        for group in [*groups_of(row), "all"]:
            c = counts.setdefault(group, dict.fromkeys(
                ("n", "scored", "before", "mask", "mixture", "after", "should_unknown", "unknown_before",
                 "unknown_after", "wrong_unknown"), 0))
            c["n"] += 1
            if row["label"] in labels and writable:
                c["scored"] += 1
                c["before"] += b == row["label"]
                c["mask"] += m == row["label"]
                c["mixture"] += x == row["label"]
                c["after"] += a == row["label"]
                c["wrong_unknown"] += a == UNKNOWN
            elif expect_unknown:
                c["should_unknown"] += 1
                c["unknown_before"] += b == UNKNOWN
                c["unknown_after"] += a == UNKNOWN
    for group, c in counts.items():
        scored, should = c["scored"], c["should_unknown"]
        table[group] = {"n": c["n"], "scored": scored,
                        "accuracy_before": c["before"] / scored if scored else float("nan"),
                        "accuracy_mask_only": c["mask"] / scored if scored else float("nan"),
                        "accuracy_mixture": c["mixture"] / scored if scored else float("nan"),
                        "accuracy_after": c["after"] / scored if scored else float("nan"),
                        "should_be_unknown": should,
                        "unknown_before": c["unknown_before"] / should if should else float("nan"),
                        "unknown_after": c["unknown_after"] / should if should else float("nan"),
                        "wrong_unknown": c["wrong_unknown"] / scored if scored else float("nan")}
    return table


def _cell(value: float) -> str:
    return "-" if value != value else f"{value:.2f}"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.native_scripts", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--names", type=Path, default=NAMES)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--cyrillic-per-language", action="store_true",
                        help="read Cyrillic with each language's own scheme (ru, uk, be, bg, mk, sr), not anyascii")
    args = parser.parse_args(argv)
    predictor = Predictor.load(args.model)
    if args.cyrillic_per_language:
        predictor.scripts = ScriptEvidence(predictor.labels, CYRILLIC_PER_LANGUAGE)
    table = measure(predictor, load(args.names))
    if args.json:
        print(json.dumps(table, indent=2))
        return
    print(f"{args.model}: {len(predictor.labels)} labels")
    print(f"{'script':<24}{'n':>5}{'scored':>8}{'acc before':>12}{'mask only':>11}{'mixture':>9}{'acc after':>11}"
          f"{'to unknown':>12}"
          f"{'unk before':>12}{'unk after':>11}{'wrong unk':>11}")
    for group, r in sorted(table.items(), key=lambda kv: (kv[0] == "all", kv[0])):
        print(f"{group:<24}{r['n']:>5}{r['scored']:>8}{_cell(r['accuracy_before']):>12}{_cell(r['accuracy_mask_only']):>11}"
              f"{_cell(r['accuracy_mixture']):>9}"
              f"{_cell(r['accuracy_after']):>11}{r['should_be_unknown']:>12}{_cell(r['unknown_before']):>12}"
              f"{_cell(r['unknown_after']):>11}{_cell(r['wrong_unknown']):>11}")


if __name__ == "__main__":
    main()

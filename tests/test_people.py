"""Full names in bulk: the parser's fast path against nameparser, batch folding, the part cache
across batches, the CSV writer without Prediction objects against the one with them, and the mix
of a population read with its given names."""

from __future__ import annotations

import io
import random
from pathlib import Path

import numpy as np
import pytest

from namesclf.data import fullnames
from namesclf.data.fullnames import ORDERS, parse_name, split_many, split_name
from namesclf.inference.options import Options
from namesclf.inference.output import _line_formatter, csv_lines, write_predictions
from namesclf.inference.people import PartCache
from namesclf.inference.predictor import Predictor
from namesclf.inference.staged import top_k
from namesclf.text import to_ascii, to_ascii_many
from tests.conftest import REAL_DATA
from tests.test_fullname_model import GIVEN, SHARED, SURNAMES, full_model, people_csv  # noqa: F401 (fixtures)

#: Words nameparser treats specially, and shapes the fast path must leave to it.
ODD_WORDS = ["Dr.", "Prof.", "Jr.", "III", "PhD", "van", "de", "la", "Al", "Ben", "bin", "and", "y", "O'", "Mc",
             "J.", "R.J.", "St.", "Sir", "King", "Mac", "von", "der", "Ó", "Abu", "e", "Ii", "Cap", "&", "1st"]
PLAIN_GIVEN = ["Anna", "Maria", "Jean-Luc", "José", "Seán", "Zoë", "Fyodor", "Mikhail", "Li", "Wei", "Hiroshi",
               "D'Arcy", "Ngozi", "Oluwaseun", "Ivan", "Giovanni"]


def tutorial_surnames(limit: int = 3000) -> list[str]:
    """Surnames of the tutorial set (every language), or the test's own where it is absent."""
    if not REAL_DATA.is_dir():
        return [s for names in SURNAMES.values() for s in names]
    found = [line.strip() for path in sorted(REAL_DATA.glob("*.txt"))
             for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return sorted(set(found))[:limit] if len(found) > limit else sorted(set(found))


def made_names(n: int = 6000, seed: int = 0) -> list[str]:
    """Full names made from given names and tutorial surnames, with odd words, commas, initials
    and spacing mixed in at random: plain names and every shape the fast path must refuse."""
    rng = random.Random(seed)
    surnames = tutorial_surnames()
    names = []
    for _ in range(n):
        words = [rng.choice(PLAIN_GIVEN) for _ in range(rng.choice([1, 1, 1, 2, 3]))]
        words.append(rng.choice(surnames))
        for _ in range(rng.choice([0, 0, 0, 1, 2])):
            words.insert(rng.randrange(len(words) + 1), rng.choice(ODD_WORDS))
        text = " ".join(words)
        if rng.random() < 0.05:
            text = f"{words[-1]}, {' '.join(words[:-1])}"
        if rng.random() < 0.05:
            text = "  " + text.replace(" ", "   ") + " "
        names.append(text)
    return names


def test_split_many_is_split_name_in_every_order() -> None:
    names = [*made_names(), "", "Nakamura", "De la Fuente", "Smith Jr.", "Anna Ii", "A 0", "山田 太郎",
             "Al Pacino", "Ben Stiller", "Jan van der Berg", "John O Smith", "Ludwig van Beethoven"]
    for order in ORDERS:
        givens, surnames = split_many(names, order)
        assert list(zip(givens, surnames, strict=True)) == [split_name(n, order) for n in names], order


def test_the_fast_path_gives_nameparsers_reading() -> None:
    """Every name split_many answers without split_name is read the same by nameparser; most
    plain names take it."""
    names = made_names(seed=1)
    slow: list[str] = []
    original = fullnames.split_name

    def recorded(text: str, order: str = "auto") -> tuple[str, str]:
        slow.append(text)
        return original(text, order)

    fullnames.split_name = recorded  # type: ignore[assignment]
    try:
        givens, surnames = split_many(names)
    finally:
        fullnames.split_name = original  # type: ignore[assignment]
    fast = [(n, g, s) for n, g, s in zip(names, givens, surnames, strict=True) if n not in set(slow)]
    assert len(fast) > len(names) / 2
    for name, given, surname in fast:
        parsed = parse_name(name)
        assert (parsed.given, parsed.surname) == (given, surname), name
    assert "Ben Drake" not in slow and split_many(["Ben Drake"]) == (["Ben"], ["Drake"])


def test_to_ascii_many_is_to_ascii() -> None:
    rng = random.Random(0)
    alphabet = "aZ -.'`,;\t\x1c\x0b\r\n1_!éŚ中"
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 9))) for _ in range(5000)]
    texts += ["  Jean-Luc  Picard ", "O`Brien", "Достоевский", "", "😀", "Ślusàrski"]
    assert to_ascii_many(texts) == [to_ascii(t) for t in texts]


def test_top_k_is_a_stable_sort() -> None:
    rng = np.random.default_rng(0)
    proba = rng.integers(0, 4, size=(500, 7)).astype(np.float32) / 4  # many ties
    top, top_p = top_k(proba, 3)
    order = np.argsort(-proba, axis=1, kind="stable")[:, :3]
    assert (top == order).all() and (top_p == np.take_along_axis(proba, order, axis=1)).all()


def test_the_part_cache_scores_each_part_once_and_starts_afresh_when_full() -> None:
    calls: list[list[str]] = []

    def score(parts: list[str], features: bool = False) -> tuple[np.ndarray, None]:
        calls.append(list(parts))
        return np.array([[len(p), ord(p[0])] for p in parts], dtype=np.float32), None

    cache = PartCache(2, max_bytes=4 * 2 * 3)  # three rows
    assert cache.limit == 3
    first = cache.proba(["ab", "c", "ab"], score)
    again = cache.proba(["c", "ab"], score)
    assert calls == [["ab", "c"]] and first.tolist() == [[2, 97], [1, 99], [2, 97]]
    assert again.tolist() == [[1, 99], [2, 97]]
    cache.proba(["de", "f"], score)  # past three rows: afresh, with this batch's parts
    assert calls[-1] == ["de", "f"] and len(cache) == 2
    assert cache.proba(["gh", "ij", "kl", "mn"], score).shape == (4, 2)  # more than it holds: not kept
    assert len(cache) == 2 and cache.fold(["Zoë", "Zoë"]) == ["Zoe", "Zoe"]


def slow_lines(predictor: Predictor, names: list[str], options: Options) -> list[str]:
    """The CSV lines through Prediction objects (the writer's path for every option)."""
    line = _line_formatter(options, len(predictor.classes(options.level)), "csv")
    return [line(pred) for pred in predictor.predict_with(names, options, strict=False)]


def assert_same_lines(fast: list[str], slow: list[str]) -> None:
    """Same cells, probabilities within 1e-6 (a batch of other names may round a last digit apart)."""
    assert len(fast) == len(slow)
    for a, b in zip(fast, slow, strict=True):
        cells_a, cells_b = a.rstrip("\n").split(","), b.rstrip("\n").split(",")
        assert len(cells_a) == len(cells_b), (a, b)
        for x, y in zip(cells_a, cells_b, strict=True):
            if x != y:
                assert abs(float(x) - float(y)) <= 1e-6, (a, b)


NAMES = [f"{g} {s}" for label in SURNAMES for g, s in zip(GIVEN[label] * 3, SURNAMES[label], strict=False)]
NAMES += [f"Ivan {SHARED}", f"Giovanni {SHARED}", SHARED, "Tanaka, Hiroshi", "Dr. Marco Rossi Jr.", "Ivan 0",
          "A 0", "123", "", "Иван Петров", "山田 太郎", "Hiroshi 中村", "Jan van der Berg", "Ben Petrov"]


@pytest.mark.parametrize("options", [Options(), Options(k=1), Options(level="group"), Options(surname_only=True),
                                     Options(order="family-first"), Options(prior="uniform")])
def test_the_bulk_csv_lines_are_the_prediction_lines(full_model: Path, options: Options) -> None:  # noqa: F811
    predictor = Predictor.load(full_model)
    fast = [text for text, _ in csv_lines(predictor, NAMES, options)]
    assert_same_lines(fast, slow_lines(Predictor.load(full_model), NAMES, options))
    # and read ahead on a second thread, in batches that share parts, as a stream does
    out = io.StringIO()
    skipped = write_predictions(Predictor.load(full_model), NAMES * 3, out, options, batch_size=7, progress=False)
    assert_same_lines(out.getvalue().splitlines(keepends=True)[1:], fast * 3)
    assert skipped == 3 * sum(not to_ascii(n) for n in NAMES)


def test_a_surname_models_bulk_lines_are_its_prediction_lines(small_model: Path) -> None:
    predictor = Predictor.load(small_model)
    names = ["Ivanov", "Fyodor Dostoevsky", "Rossi", "Иванов", "", "0", "Tanaka, Hiroshi", "Ivanov"]
    for options in (Options(), Options(k=2, level="group"), Options(surname_only=True)):
        fast = [text for text, _ in csv_lines(predictor, names, options)]
        assert_same_lines(fast, slow_lines(predictor, names, options))


def test_the_stream_equals_one_call_for_the_whole_list(full_model: Path) -> None:  # noqa: F811
    """Probabilities from the part cache, filled batch by batch on a second thread, are those of
    one call over all names."""
    names = [f"{g} {s}" for given in GIVEN.values() for g in given for surnames in SURNAMES.values() for s in surnames]
    whole = Predictor.load(full_model).proba_with(names, Options())
    streamed = Predictor.load(full_model)
    out = io.StringIO()
    write_predictions(streamed, names, out, Options(k=len(streamed.labels)), batch_size=100, progress=False)
    rows = [line.split(",") for line in out.getvalue().splitlines()[1:]]
    labels = streamed.labels
    for row, expected in zip(rows, whole, strict=True):
        got = {row[j]: float(row[j + 1]) for j in range(1, 2 * len(labels), 2)}
        assert np.allclose([got[label] for label in labels], expected, atol=1e-6)


def test_the_mix_of_a_full_name_model_reads_given_names(full_model: Path) -> None:  # noqa: F811
    from namesclf.inference.mix import count_population, estimate_mix

    predictor = Predictor.load(full_model)
    russian = estimate_mix(predictor, [f"Ivan {SHARED}", f"Fyodor {SHARED}"], bootstrap=10)
    italian = estimate_mix(predictor, [f"Giovanni {SHARED}", f"Marco {SHARED}"], bootstrap=10)
    ru, it = ({row["label"]: row["share"] for row in est.rows()} for est in (russian, italian))
    assert ru["Russian"] > it["Russian"] + 0.3 and it["Italian"] > ru["Italian"] + 0.3
    tally, skipped = count_population([f"Ivan {SHARED}", f"Ivan {SHARED}", "0"], reader=predictor)
    assert tally == {f"{SHARED}\x1fIvan": 2} and skipped == 1
    # surname_only: the entries are surnames, read alone as before
    assert count_population([SHARED], surname_only=True, reader=predictor)[0] == {SHARED: 1}


def test_post_estimate_and_dask_read_given_names(full_model: Path) -> None:  # noqa: F811
    """The HTTP API and the Dask path give the in-memory estimate, given names read."""
    from fastapi.testclient import TestClient

    from namesclf.inference.mix import estimate_mix
    from namesclf.serve.app import create_app

    names = [f"Ivan {SHARED}", f"Fyodor {SHARED}", f"Giovanni {SHARED}"]
    want = {row["label"]: row["share"] for row in estimate_mix(Predictor.load(full_model), names, bootstrap=10).rows()}
    assert want["Russian"] > 0.5
    with TestClient(create_app(Predictor.load(full_model), model_path=str(full_model))) as http:
        body = http.post("/estimate", json={"names": names, "bootstrap": 10}).json()
    assert {row["label"]: row["share"] for row in body["mix"]} == pytest.approx(want, abs=1e-9)
    dd = pytest.importorskip("dask.dataframe")
    import pandas as pd

    from namesclf.inference.dask_tables import estimate_dask_frame

    lazy = dd.from_pandas(pd.DataFrame({"name": names}), npartitions=2)
    import dask

    with dask.config.set(scheduler="synchronous"):
        got = estimate_dask_frame(lazy, "name", full_model, bootstrap=10)
    assert {row["label"]: row["share"] for row in got.rows()} == pytest.approx(want, abs=1e-9)

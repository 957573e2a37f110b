"""Shared fixtures: tiny hand-made data sets, and one real-data model trained once per test run.

Unit tests build their own small files in ``tmp_path``; tests that need the real surname set use
``data/names`` (``.ci/run`` copies it there) and are skipped with a reason when it is absent.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from benchmarks.common import free_port as free_port  # one copy for the benchmarks and the tests

REPO = Path(__file__).resolve().parents[1]
REAL_DATA = REPO / "data" / "names"

TINY = {
    "Russian": ["Ivanov", "Petrov", "Sidorov", "Smirnov", "Volkov", "Popov", "Sokolov", "Kuznetsov",
                "Lebedev", "Kozlov", "Novikov", "Morozov"],
    "Japanese": ["Tanaka", "Suzuki", "Takahashi", "Watanabe", "Yamamoto", "Nakamura", "Kobayashi",
                 "Yoshida", "Yamada", "Sasaki", "Yamaguchi", "Matsumoto"],
    "Italian": ["Rossi", "Russo", "Ferrari", "Esposito", "Bianchi", "Romano", "Colombo", "Ricci",
                "Marino", "Greco", "Bruno", "Gallo"],
}


def network_config(**values: Any) -> dict[str, Any]:
    """A complete classifier config (as a model file stores it) for a bare network: ``ngram_order``
    0 unless given, every other field resolved from :class:`namesclf.config.TrainConfig`."""
    from namesclf.config import TrainConfig

    return TrainConfig(**{"ngram_order": 0, **values}).resolved().to_dict()


def invented_names(parts: Mapping[str, tuple[Sequence[str], Sequence[str]]], per_language: int, seed: int = 0,
                   max_stems: int = 2) -> dict[str, list[str]]:
    """``per_language`` distinct made-up surnames per language, sorted, the same for a seed: 1 to
    ``max_stems`` of the language's stems, then one of its endings (``parts``: language ->
    (stems, endings)), so each language has a spelling of its own to learn."""
    rng = random.Random(seed)
    out: dict[str, list[str]] = {}
    for lang, (stems, endings) in parts.items():
        names: set[str] = set()
        while len(names) < per_language:
            stem = "".join(rng.choice(stems) for _ in range(rng.randint(1, max_stems)))
            names.add((stem + rng.choice(endings)).capitalize())
        out[lang] = sorted(names)
    return out


def write_names_dir(folder: Path, languages: dict[str, list[str]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for lang, names in languages.items():
        (folder / f"{lang}.txt").write_text("\n".join(names) + "\n", encoding="utf-8")
    return folder


@pytest.fixture
def tiny_dir(tmp_path: Path) -> Path:
    """Three languages, twelve distinct names each."""
    return write_names_dir(tmp_path / "names", TINY)


@pytest.fixture(scope="session")
def real_data() -> Path:
    if not any(REAL_DATA.glob("*.txt")):
        pytest.skip("data/names is missing: run `names data fetch` (CI copies ../shared/data/names)")
    return REAL_DATA


@pytest.fixture(scope="session")
def trained_model(real_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default classifier trained once on the real split (shortened to keep CI fast)."""
    from namesclf.config import TrainConfig
    from namesclf.data.dataset import load_names
    from namesclf.training.pipeline import train_and_evaluate

    out = tmp_path_factory.mktemp("model") / "names.pt"
    train_and_evaluate(load_names(real_data), TrainConfig(epochs=6, patience=0), out=out, progress=False)
    return out

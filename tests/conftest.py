"""Shared fixtures: tiny hand-made data sets, two models trained once per test run (a small one on
made-up data, a real-data one), and a child process watched line by line.

Unit tests build their own small files in ``tmp_path``; tests that need the real surname set use
``data/names`` (``.ci/run`` copies it there) and are skipped with a reason when it is absent.
Tests that signal or stop a child wait for the line or file that says it is time
(:class:`Watched`), never for a fixed sleep.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import signal
import subprocess
import threading
import time
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
#: Thirty-six names a language: the three of :data:`TINY`, each also with "a" and "o" appended.
MORE = {lang: names + [n + suffix for n in names for suffix in ("a", "o")] for lang, names in TINY.items()}


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


@pytest.fixture(scope="session")
def small_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small calibrated classifier, trained once per test run (seconds) for every test that needs a
    real model file but not a good one: the default pooled model (network + n-gram), 2 epochs of 16
    units, seed 1, on :data:`MORE`; prediction sets and abstention work, and its ONNX export lies
    beside it. Tests read it and never write beside it."""
    from namesclf.config import TrainConfig
    from namesclf.data.dataset import load_names
    from namesclf.training.pipeline import train_and_evaluate

    root = tmp_path_factory.mktemp("small-model")
    out = root / "small.pt"
    train_and_evaluate(load_names(write_names_dir(root / "names", MORE)),
                       TrainConfig(epochs=2, hidden=16, seed=1, patience=0), out=out, progress=False)
    return out


class Watched:
    """A child process whose stdout and stderr are read line by line as they come (one thread each),
    so a test acts the moment a line appears instead of after a fixed sleep.

    Use as a context manager: the child is killed on the way out if it still runs, with whatever
    it started (it leads a process group of its own: the ranks of ``--nproc`` go with it). Start it
    with ``PYTHONUNBUFFERED=1`` in its environment, or its stdout reaches the pipe only when it exits.
    """

    def __init__(self, command: Sequence[str], **popen: Any) -> None:
        self.command = list(command)
        self.proc = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     start_new_session=True, **popen)
        self.lines: dict[str, list[str]] = {"stdout": [], "stderr": []}
        self._changed = threading.Condition()
        self._readers = [threading.Thread(target=self._read, args=(name,), daemon=True) for name in self.lines]
        for reader in self._readers:
            reader.start()

    def _read(self, name: str) -> None:
        stream = getattr(self.proc, name)
        for line in stream:
            with self._changed:
                self.lines[name].append(line)
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def text(self, name: str) -> str:
        with self._changed:
            return "".join(self.lines[name])

    def wait_for(self, name: str, pattern: str, timeout: float) -> re.Match[str]:
        """The first line on ``name`` (``stdout`` or ``stderr``) that ``pattern`` matches (``re.search``),
        as it appears; the test fails with what the child said if the child ends first or ``timeout``
        seconds pass (a deadline against a hang, never a wait before acting)."""
        deadline = time.monotonic() + timeout
        seen = 0
        with self._changed:
            while True:
                for line in self.lines[name][seen:]:
                    found = re.search(pattern, line)
                    if found:
                        return found
                seen = len(self.lines[name])
                if self.proc.poll() is not None and not any(r.is_alive() for r in self._readers):
                    pytest.fail(f"the child ended (exit code {self.proc.returncode}) before a line matching "
                                f"{pattern!r} on its {name}:\n{self._tails()}")
                left = deadline - time.monotonic()
                if left <= 0:
                    pytest.fail(f"no line matching {pattern!r} on its {name} within {timeout:g} s:\n{self._tails()}")
                self._changed.wait(min(left, 1.0))

    def finish(self, timeout: float, why: str = "") -> int:
        """The child's exit code once it ends and all its output is read; the test fails (and the child
        is killed) if that takes longer than ``timeout`` seconds."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._kill()
            pytest.fail(f"the child did not end within {timeout:g} s{why}:\n{self._tails()}")
        for reader in self._readers:
            reader.join(timeout)
        return code

    def _tails(self) -> str:
        return "\n".join(f"--- {name} (last 2,000 characters)\n{''.join(lines)[-2000:]}"
                         for name, lines in self.lines.items())

    def __enter__(self) -> Watched:
        return self

    def _kill(self) -> None:
        """The child and its process group, if it still runs."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def __exit__(self, *exc: object) -> None:
        self._kill()
        for reader in self._readers:
            reader.join(10)

"""What the benchmarks, the experiments and the tests share: free ports, how busy the machine is,
the machine header every report starts with, PASS / FAIL verdicts and reports written atomically.

Light on purpose (standard library and :mod:`namesclf.files`; numpy, torch and scikit-learn only
when a header names their versions): ``tests/conftest.py`` imports it for :func:`free_port`.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import shlex
import socket
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from namesclf.files import atomic_write_text, jsonable


def free_port() -> int:
    """A loopback TCP port nothing listens on now (for servers and process groups under test)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages, rounded; None where the system does not say.

    Printed beside every figure: numbers taken on a busy machine are not comparable.
    """
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def cpu_model() -> str:
    """The CPU's name from /proc/cpuinfo (``model name`` on x86, ``Hardware`` on some ARM boards)."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip().lower(), value.strip())
    except OSError:
        pass
    for key in ("model name", "hardware", "cpu model", "processor"):
        if fields.get(key) and not fields[key].isdigit():
            return fields[key]
    return platform.processor() or platform.machine()


def command_line() -> str:
    """This process's command as a person would type it again (``python -m benchmarks.bench ...``):
    under ``-m`` the interpreter puts the module's file path in ``sys.argv[0]``, which would not run."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    head = ["-m", spec.name] if spec is not None and spec.name else sys.argv[:1]
    return shlex.join([Path(sys.executable).name, *head, *sys.argv[1:]])


def machine_header() -> dict[str, Any]:
    """What a reader needs to judge the numbers: when, which command, which machine and software,
    and how busy the machine was at the start."""
    import numpy as np
    import sklearn
    import torch

    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:
        available = os.cpu_count()
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": command_line(),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "cores_available": available,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scikit_learn": sklearn.__version__,
        "platform": platform.platform(),
        "load_average_start": load_average(),
    }


def name_lines(data: Path) -> list[str]:
    """Every non-empty line of ``data/*.txt`` (one name a line), files in name order, duplicates kept."""
    names: list[str] = []
    for path in sorted(Path(data).glob("*.txt")):
        names += [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return names


def split_at_dashes(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """The options before ``--`` and the ``names train`` options after it: argparse alone cannot
    tell where a ``nargs="+"`` option such as ``--seeds`` ends and the passed-on options begin."""
    argv = list(argv)
    cut = argv.index("--") if "--" in argv else len(argv)
    return argv[:cut], argv[cut + 1 :]


def verdicts(checks: Iterable[tuple[str, bool, str]]) -> list[dict[str, Any]]:
    """(target, met, detail) triples as the report's PASS / FAIL entries."""
    return [{"target": name, "status": "PASS" if ok else "FAIL", "detail": detail} for name, ok, detail in checks]


def print_verdicts(targets: Iterable[dict[str, Any]]) -> None:
    for target in targets:
        print(f"{target['status']:<4}  {target['target']}: {target['detail']}")


def write_json(path: Path, report: Any) -> None:
    """Atomically (a long run that dies keeps the last complete report), as strict JSON."""
    atomic_write_text(path, json.dumps(jsonable(report), indent=2, allow_nan=False) + "\n")

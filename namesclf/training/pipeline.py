"""What ``names train`` does, end to end: split the names, train, score the test names, write the
model file and its report.

The test figures come from :func:`~namesclf.report.evaluate.evaluate`, the same computation as ``names evaluate
--split test``, so the figures printed at training time, stored in the model file and written to
``report.txt`` are one set of numbers. Training (:mod:`namesclf.training.train`) never sees the test names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from torch import nn

from namesclf.config import SPLITS, TrainConfig
from namesclf.data.dataset import NamesData, split_names
from namesclf.inference.predictor import Predictor
from namesclf.models.checkpoint import classifier_meta, classifier_payload, load_checkpoint, save_checkpoint
from namesclf.models.export import export_payload
from namesclf.models.onnx_format import onnx_path_for
from namesclf.report.evaluate import EvaluationReport, evaluate, training_report_dir, write_report
from namesclf.report.plots import write_training_curves
from namesclf.training.distributed import current
from namesclf.training.train import TrainResult, train_classifier

#: The figures of an evaluation that a model file keeps (the per-language tables stay in the report).
STORED_TEST_KEYS = ("n", "n_names", "accuracy", "accuracy_any", "macro_f1", "weighted_f1", "balanced_accuracy",
                    "top3_accuracy",
                    "n_single", "accuracy_single", "macro_f1_single", "log_loss", "ece")


def resume_config(out: str | Path, epochs: int | None = None, device: str = "auto"
                  ) -> tuple[TrainConfig, dict[str, Any]]:
    """The config and checkpoint to carry on training ``out``: its own config, with more ``epochs``
    when given and the ``device`` of this run (a model trained on a GPU can resume on a CPU)."""
    previous = load_checkpoint(out, kind="classifier")
    stored = previous["config"]
    return TrainConfig.from_dict({**stored, "epochs": epochs or stored["epochs"], "device": device}), previous


def score_test(model: nn.Module, labels: list[str], frame: pd.DataFrame,
               context: Mapping[str, Any] | None = None) -> EvaluationReport | None:
    """Evaluate ``model`` on the rows of ``frame`` whose language it knows (None when there are none).

    A language present only among the test names cannot be predicted by a model that never saw
    it; those rows are left out here, as every figure about them would be a foregone error.
    """
    known = frame[frame["language"].isin(labels)]
    if known.empty:
        return None
    device = next(iter(model.parameters())).device
    return evaluate(Predictor(model, labels, device), known, context)


def stored_figures(report: EvaluationReport | None) -> dict[str, Any]:
    """The scalar test figures a model file and ``names train --json`` carry."""
    if report is None:
        return {"n": 0}
    return {k: report.metrics.get(k) for k in STORED_TEST_KEYS}


@dataclass
class TrainRun:
    """A finished ``names train``: the training result, the split, the test report and what was written."""

    result: TrainResult
    split: pd.Series
    meta: dict[str, Any]
    report: EvaluationReport | None = None
    written: list[Path] = field(default_factory=list)

    @property
    def test(self) -> dict[str, Any]:
        return stored_figures(self.report)


def train_and_evaluate(
    data: NamesData,
    config: TrainConfig,
    *,
    out: str | Path | None = None,
    report_dir: str | Path | None = None,
    resume: dict[str, Any] | None = None,
    progress: bool | None = None,
    export: bool = True,
) -> TrainRun:
    """Split ``data`` (grouped by folded name, seeded by the config), train, test, write.

    The split seed is stored in the model file so ``names evaluate --split test`` rebuilds exactly
    these test names. ``out`` gets the model file (each new best epoch while training, then the
    final model with its test figures); ``report_dir`` (default: beside ``out``) gets the test
    report and the training curves. An interrupted run keeps the best epoch in ``out`` and skips
    the test. With ``export`` the ONNX file prediction loads without torch is written beside
    ``out`` (:mod:`namesclf.models.export`).
    """
    split = split_names(data.frame, seed=config.seed)
    parts = {name: data.frame[split == name] for name in SPLITS}
    cfg = config.resolved(n_train=len(parts["train"]))  # a large corpus has its own defaults
    meta: dict[str, Any] = {"split_seed": cfg.seed, "source": data.source, "dropped_empty": data.n_empty,
                            "n_train": len(parts["train"]), "n_valid": len(parts["valid"]),
                            "n_test": len(parts["test"]), "distributed": current().describe()}
    result = train_classifier(parts["train"], parts["valid"], cfg, out=out, meta=meta, resume=resume,
                              progress=progress)
    run = TrainRun(result, split, meta)
    if result.interrupted or not current().is_main:  # under torchrun, rank 0 alone tests and writes
        return run
    context = {"model": str(out) if out is not None else None, "data": data.source, "split": "test",
               "split_seed": cfg.seed}
    run.report = score_test(result.model, result.labels, parts["test"],
                            {k: v for k, v in context.items() if v is not None})
    resume_at = {"epoch": len(result.history) and int(result.history[-1]["epoch"]),
                 "best_score": result.valid.get("valid_macro_f1")}
    run.meta = classifier_meta(meta, history=result.history, best_epoch=result.best_epoch, valid=result.valid,
                               pooling=result.pooling, calibration=result.calibration, test=run.test,
                               train_seconds=result.seconds, interrupted=False, resume=resume_at)
    if out is not None:
        payload = classifier_payload(result.model, result.config.to_dict(), result.labels, run.meta)
        save_checkpoint(out, payload)
        run.written.append(Path(out))
        if export:  # the file prediction loads without torch (docs/benchmarks.md, "Cold start")
            run.written.append(export_payload(payload, onnx_path_for(out), source=out))
    if report_dir is None and out is not None:
        report_dir = training_report_dir(out)
    if report_dir is not None:
        if run.report is not None:
            run.written += write_report(run.report, report_dir)
        run.written += write_training_curves(result.history, report_dir, best_epoch=result.best_epoch or None)
    return run


"""The report's pictures: the confusion matrix, the reliability diagram and the training curves.

Each is written atomically as a PNG through matplotlib's Agg backend (reports are written on
servers with no display); :func:`~namesclf.report.evaluate.write_report` and
:func:`~namesclf.training.pipeline.train_and_evaluate`
call them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from namesclf.files import atomic_write_text, atomic_write_with
from namesclf.report.metrics import CALIBRATION_BINS


def _pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend: reports are written on servers with no display."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_confusion(confusion: pd.DataFrame, normalized: pd.DataFrame, metrics: Mapping[str, Any], path: str | Path,
                   title: str) -> Path:
    """Heatmap of the row-normalised confusion matrix, one readable cell per (true, predicted) pair.

    Rows are normalised so a rare language reads as clearly as a common one; its support (from the
    counts, ``confusion``) is in its row label. Cells under 0.01 stay blank, which keeps an
    18 x 18 matrix legible. ``metrics`` gives the figures under the ``title``.
    """
    plt = _pyplot()
    labels = list(normalized.columns)
    n = len(labels)
    support = confusion.sum(axis=1)
    m = metrics
    width, height = max(8.0, 2.0 + 0.6 * n), max(7.0, 1.5 + 0.5 * n)
    fig, ax = plt.subplots(figsize=(width, height), dpi=120)
    try:
        image = ax.imshow(normalized.to_numpy(), cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.03, label="share of the true language's names")
        font = 10 if n <= 12 else 8 if n <= 20 else 6
        values = normalized.to_numpy()
        for i in range(n):
            for j in range(n):
                v = values[i, j]
                if v >= 0.01:
                    ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=font,
                            color="white" if v > 0.55 else "black")
        ax.set_xticks(range(n), labels, rotation=45, ha="right", rotation_mode="anchor", fontsize=font + 1)
        ax.set_yticks(range(n), [f"{lang} ({int(support[lang]):,})" for lang in labels], fontsize=font + 1)
        ax.set_xlabel("predicted language")
        ax.set_ylabel("true language (number of pairs)")
        ax.set_title(f"{title}\naccuracy {m['accuracy']:.3f}  macro-F1 {m['macro_f1']:.3f}  "
                     f"accuracy_any {m['accuracy_any']:.3f}  n = {m['n']:,}  (rows normalised)", fontsize=11)
        fig.tight_layout()
        return atomic_write_with(path, lambda handle: fig.savefig(handle, format="png"))
    finally:
        plt.close(fig)


def plot_reliability(metrics: Mapping[str, Any], path: str | Path, title: str) -> Path:
    """Reliability diagram: in each confidence bin, how often the top answer was right.

    A calibrated model's points sit on the diagonal (answers given with 0.8 are right 80% of
    the time); below it the model is over-confident. The bars underneath say how many pairs each
    bin holds, so a wild point on three pairs is not mistaken for a trend. ``metrics`` holds the
    bins (``calibration``) and the figures under the ``title``.
    """
    plt = _pyplot()
    m = metrics
    bins = m["calibration"]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6.5, 7.5), dpi=120, sharex=True,
                                      gridspec_kw={"height_ratios": [3, 1]})
    try:
        centres = [(b["low"] + b["high"]) / 2 for b in bins]
        width = 1.0 / CALIBRATION_BINS
        top.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="calibrated")
        top.bar(centres, [b["accuracy"] for b in bins], width=width * 0.9, color="tab:blue", alpha=0.35,
                edgecolor="tab:blue", label="accuracy in the bin")
        top.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], "o-", color="tab:red",
                 label="(mean confidence, accuracy)")
        top.set_xlim(0, 1)
        top.set_ylim(0, 1)
        top.set_ylabel("accuracy of the top answer")
        top.grid(alpha=0.3)
        top.legend(loc="upper left")
        top.set_title(f"{title}\nECE {m['ece']:.3f}  log-loss {m['log_loss']:.3f}  n = {m['n']:,}", fontsize=11)
        bottom.bar(centres, [b["n"] for b in bins], width=width * 0.9, color="tab:grey")
        bottom.set_xlabel("confidence of the top answer (its probability)")
        bottom.set_ylabel("pairs")
        bottom.grid(alpha=0.3)
        fig.tight_layout()
        return atomic_write_with(path, lambda handle: fig.savefig(handle, format="png"))
    finally:
        plt.close(fig)


def figure_title(context: Mapping[str, Any], what: str = "Confusion matrix") -> str:
    """``Confusion matrix: names.pt on data/names (test split)``, from an evaluation's context."""
    model = Path(str(context["model"])).name if context.get("model") else "model"
    split = context.get("split")
    data = context.get("data")
    parts = [f"{what}: {model}"]
    if data:
        parts.append(f"on {data if len(str(data)) <= 40 else Path(str(data)).name}")
    if split and split != "all":
        parts.append(f"({split} split)")
    return " ".join(parts)


def write_training_curves(history: Sequence[Mapping[str, float]], out_dir: str | Path,
                          best_epoch: int | None = None) -> list[Path]:
    """``training.csv`` (one row per epoch) and ``training.png`` (losses; validation scores).

    The curves show what a single test figure cannot: whether the model was still improving when
    training stopped, and where validation loss turned up (over-fitting) while macro-F1 kept rising.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(list(history))
    written = [atomic_write_text(out / "training.csv", frame.to_csv(index=False, lineterminator="\n"))]
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5), dpi=120)
    try:
        marker = "o" if len(frame) <= 30 else None
        epochs = frame["epoch"] if "epoch" in frame else pd.Series(range(1, len(frame) + 1))
        for ax, columns, ylabel in (
            (left, (("train_loss", "train loss"), ("valid_loss", "valid loss")), "loss (NLL)"),
            (right, (("valid_accuracy", "valid accuracy"), ("valid_macro_f1", "valid macro-F1")), "score"),
        ):
            for column, label in columns:
                if column in frame and frame[column].notna().any():
                    ax.plot(epochs, frame[column], marker=marker, label=label)
            if best_epoch:
                ax.axvline(best_epoch, color="grey", linestyle="--", linewidth=1,
                           label=f"best epoch {best_epoch}")
            ax.set_xlabel("epoch")
            ax.set_ylabel(ylabel)
            ax.grid(alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend()
        left.set_title("loss")
        right.set_title("validation")
        if len(frame):
            left.set_xticks(_epoch_ticks(len(frame), epochs))
            right.set_xticks(_epoch_ticks(len(frame), epochs))
        fig.tight_layout()
        written.append(atomic_write_with(out / "training.png",
                                         lambda handle: fig.savefig(handle, format="png")))
    finally:
        plt.close(fig)
    return written


def _epoch_ticks(n: int, epochs: pd.Series) -> list[int]:
    step = max(1, math.ceil(n / 15))
    return [int(e) for e in epochs.iloc[::step]]


def plot_mix(rows: Sequence[Mapping[str, Any]], path: str | Path, title: str) -> Path:
    """A population's estimated mix as horizontal bars with their intervals, largest share on top.

    ``rows`` are :meth:`namesclf.inference.mix.MixEstimate.rows`: ``label``, ``share``, ``low``, ``high``.
    """
    plt = _pyplot()
    shown = list(rows)[::-1]
    fig, ax = plt.subplots(figsize=(7, 1.2 + 0.32 * len(shown)))
    try:
        shares = [r["share"] for r in shown]
        errors = [[r["share"] - r["low"] for r in shown], [r["high"] - r["share"] for r in shown]]
        ax.barh(range(len(shown)), shares, xerr=errors, color="#4c72b0", ecolor="#333333", capsize=3)
        ax.set_yticks(range(len(shown)), [r["label"] for r in shown])
        ax.set_xlabel("estimated share of the names (bars: 95% interval)")
        ax.set_xlim(0, min(1.0, max(r["high"] for r in shown) * 1.1 + 0.01))
        ax.set_title(title)
        fig.tight_layout()
        return atomic_write_with(path, lambda handle: fig.savefig(handle, format="png", dpi=120))
    finally:
        plt.close(fig)

"""Matplotlib figures for the report, rendered off-screen (Agg) to inline base64 PNG data URIs.

Every function takes rows of ``metrics.jsonl`` (already split by ``kind``) and returns a
:class:`Plot`, or ``None`` when there is nothing to draw, so the page can show a placeholder.
Figures are built on :class:`matplotlib.figure.Figure` directly (no pyplot global state), which keeps
the functions safe to call from any thread and leaves the caller's backend untouched.
"""

from __future__ import annotations

import base64
import io
import math
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import EngFormatter, PercentFormatter

DPI = 100
"""Resolution of every figure; with the sizes below a plot is roughly 20-60 KB of PNG."""

ACCURACY_METRICS = ("exact_match", "choice_acc")
"""Probe metrics in [0, 1], drawn on a percent axis."""

METRIC_LABELS = {
    "exact_match": "exact match",
    "choice_acc": "choice accuracy",
    "answer_logprob": "answer log-prob",
}

SPLIT_ORDER = ("seen", "heldout", "all")
SPLIT_COLORS = {"seen": "#2563eb", "heldout": "#ea580c", "all": "#4b5563"}
_EXTRA_COLORS = ("#059669", "#9333ea", "#db2777", "#ca8a04", "#0891b2")
_TEXT = "#374151"
_GRID = "#e5e7eb"


@dataclass(frozen=True)
class Plot:
    """One rendered figure: an inline ``data:image/png;base64,...`` URI and its alt text."""

    data_uri: str
    alt: str


def split_key(split: str) -> tuple[int, str]:
    """Sort key that puts the standard splits first (seen, heldout, all), then the rest by name."""
    return (SPLIT_ORDER.index(split), "") if split in SPLIT_ORDER else (len(SPLIT_ORDER), split)


def group_key(group: str) -> list[Any]:
    """Natural sort key, so that ``k=2`` comes before ``k=10``."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", group)]


def phase_boundaries(train_rows: Sequence[dict[str, Any]]) -> list[tuple[float, str]]:
    """``(tokens, phase)`` at the first logged step of every phase after the first one."""
    out: list[tuple[float, str]] = []
    previous: str | None = None
    for row in sorted(train_rows, key=lambda r: r["step"]):
        phase = str(row.get("phase") or "")
        if previous is not None and phase != previous:
            out.append((float(row["tokens"]), phase))
        previous = phase
    return out


def loss_plot(train_rows: Sequence[dict[str, Any]]) -> Plot | None:
    """Training loss against tokens seen, raw and smoothed, with phase boundaries marked."""
    rows = sorted((r for r in train_rows if _finite(r.get("loss"))), key=lambda r: r["step"])
    if not rows:
        return None
    xs = [float(r["tokens"]) for r in rows]
    ys = [float(r["loss"]) for r in rows]
    fig, (ax,) = _figure(1, height=3.4)
    ax.plot(xs, ys, color="#93c5fd", linewidth=1.0, label="loss")
    if len(ys) >= 20:
        ax.plot(
            xs,
            _ema(ys, alpha=2 / (1 + max(5, len(ys) // 20))),
            color="#1d4ed8",
            linewidth=1.8,
            label="smoothed",
        )
        ax.legend(loc="upper right", frameon=False, fontsize=8)
    ax.set_ylabel("loss")
    _mark_phases(ax, phase_boundaries(rows), first=str(rows[0].get("phase") or ""))
    _token_axis(ax)
    return Plot(_encode(fig), f"training loss over {len(rows):,} logged steps")


def emergence_plot(
    probe_rows: Sequence[dict[str, Any]],
    capability: str,
    boundaries: Sequence[tuple[float, str]] = (),
) -> Plot | None:
    """Probe metrics of one capability against tokens seen, one line per split (ungrouped rows only).

    The left panel holds the accuracy metrics (exact match solid, choice accuracy dashed), the right one
    the mean log-probability of the gold answer; a panel without data is left out.
    """
    series = _series(r for r in probe_rows if r.get("capability") == capability and r.get("group") is None)
    if not series:
        return None
    accuracy = {k: v for k, v in series.items() if k[0] in ACCURACY_METRICS}
    other = {k: v for k, v in series.items() if k[0] not in ACCURACY_METRICS}
    panels = [p for p in (accuracy, other) if p]
    fig, axes = _figure(len(panels), height=3.2)
    for ax, panel in zip(axes, panels, strict=True):
        metrics = sorted({metric for metric, _ in panel}, key=metric_key)
        for (metric, split), points in sorted(
            panel.items(), key=lambda kv: (metric_key(kv[0][0]), split_key(kv[0][1]))
        ):
            xs, ys, n = zip(*points, strict=True)
            label = split if len(metrics) == 1 else f"{split} · {METRIC_LABELS.get(metric, metric)}"
            ax.plot(
                xs,
                ys,
                color=_split_color(split),
                linestyle="--" if metric == "choice_acc" else "-",
                marker="o",
                markersize=2.5,
                linewidth=1.6,
                label=f"{label} (n={n[-1]:,})",
            )
        if panel is accuracy:
            ax.set_ylim(-0.03, 1.03)
            ax.yaxis.set_major_formatter(PercentFormatter(xmax=1, decimals=0))
        ax.set_ylabel(" / ".join(METRIC_LABELS.get(m, m) for m in metrics))
        ax.legend(loc="best", frameon=False, fontsize=8)
        _mark_phases(ax, boundaries)
        _token_axis(ax)
    return Plot(_encode(fig), f"{capability}: probe metrics against tokens seen")


def group_plot(probe_rows: Sequence[dict[str, Any]], capability: str) -> Plot | None:
    """Bar chart of one capability's final value per probe group (e.g. per hop count), one bar per split.

    Uses the latest step that has grouped rows and the first available metric among exact match,
    choice accuracy and answer log-prob.
    """
    rows = [
        r
        for r in probe_rows
        if r.get("capability") == capability and r.get("group") is not None and _finite(r.get("value"))
    ]
    if not rows:
        return None
    last = max(r["step"] for r in rows)
    rows = [r for r in rows if r["step"] == last]
    metric = min({r["metric"] for r in rows}, key=metric_key)
    values = {(str(r["group"]), str(r["split"])): float(r["value"]) for r in rows if r["metric"] == metric}
    groups = sorted({g for g, _ in values}, key=group_key)
    splits = sorted({s for _, s in values}, key=split_key)
    fig, (ax,) = _figure(1, height=2.8, width=max(4.5, min(9.0, 1.2 + 0.55 * len(groups) * len(splits))))
    width = min(0.5, 0.8 / len(splits))
    accuracy = metric in ACCURACY_METRICS
    for i, split in enumerate(splits):
        xs = [j + (i - (len(splits) - 1) / 2) * width for j, g in enumerate(groups) if (g, split) in values]
        ys = [values[(g, split)] for g in groups if (g, split) in values]
        bars = ax.bar(xs, ys, width=width * 0.92, color=_split_color(split), label=split)
        ax.bar_label(
            bars,
            fmt=(lambda v: f"{100 * v:.0f}%") if accuracy else "%.2f",
            fontsize=7,
            color=_TEXT,
            padding=2,
        )
    ax.grid(False, axis="x")
    ax.set_xticks(range(len(groups)), groups)
    ax.set_xlabel("group")
    ax.set_ylabel(METRIC_LABELS.get(metric, metric))
    if accuracy:
        ax.set_ylim(0, 1.12)
        ax.set_yticks([0, 0.25, 0.5, 0.75, 1.0])
        ax.yaxis.set_major_formatter(PercentFormatter(xmax=1, decimals=0))
    ax.axhline(0, color=_TEXT, linewidth=0.6)
    if len(splits) > 1:
        ax.legend(loc="lower right", bbox_to_anchor=(1, 1), ncol=len(splits), frameon=False, fontsize=8)
    ax.set_title(
        f"final {METRIC_LABELS.get(metric, metric)} per group (step {last:,})",
        fontsize=9,
        color=_TEXT,
        loc="left",
    )
    return Plot(_encode(fig), f"{capability}: final {METRIC_LABELS.get(metric, metric)} per group")


def _series(rows: Iterable[dict[str, Any]]) -> dict[tuple[str, str], list[tuple[float, float, int]]]:
    """``(metric, split) -> [(tokens, value, n), ...]`` sorted by tokens, non-finite values dropped."""
    out: dict[tuple[str, str], list[tuple[float, float, int]]] = defaultdict(list)
    for r in rows:
        if _finite(r.get("value")):
            out[(str(r["metric"]), str(r["split"]))].append(
                (float(r["tokens"]), float(r["value"]), int(r.get("n") or 0))
            )
    return {k: sorted(v) for k, v in out.items()}


def metric_key(metric: str) -> tuple[int, str]:
    """Sort key that puts exact match first, then choice accuracy, answer log-prob and the rest by name."""
    order = (*ACCURACY_METRICS, "answer_logprob")
    return (order.index(metric), "") if metric in order else (len(order), metric)


def _split_color(split: str) -> str:
    if split in SPLIT_COLORS:
        return SPLIT_COLORS[split]
    return _EXTRA_COLORS[sum(split.encode()) % len(_EXTRA_COLORS)]


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _ema(values: Sequence[float], alpha: float) -> list[float]:
    out: list[float] = []
    for v in values:
        out.append(v if not out else alpha * v + (1 - alpha) * out[-1])
    return out


def _figure(panels: int, *, height: float, width: float = 9.0) -> tuple[Figure, list[Axes]]:
    """A figure of ``panels`` side-by-side axes in the report's house style."""
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(1, panels, i + 1) for i in range(panels)]
    for ax in axes:
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
        for side in ("left", "bottom"):
            ax.spines[side].set_color("#9ca3af")
        ax.tick_params(colors=_TEXT, labelsize=8)
        ax.yaxis.label.set_color(_TEXT)
        ax.xaxis.label.set_color(_TEXT)
        ax.yaxis.label.set_size(9)
        ax.xaxis.label.set_size(9)
        ax.grid(True, color=_GRID, linewidth=0.7)
        ax.set_axisbelow(True)
    return fig, axes


def _token_axis(ax: Axes) -> None:
    ax.set_xlabel("tokens seen")
    ax.xaxis.set_major_formatter(EngFormatter(sep=""))
    ax.set_xlim(left=0)


def _mark_phases(ax: Axes, boundaries: Sequence[tuple[float, str]], first: str = "") -> None:
    """Dotted vertical lines at phase starts, named just above the axes so they never cover data."""
    transform = ax.get_xaxis_transform()
    if first and boundaries:
        ax.text(0, 1.01, first, transform=transform, fontsize=8, color="#6b7280", va="bottom")
    for tokens, name in boundaries:
        ax.axvline(tokens, color="#6b7280", linestyle=":", linewidth=1.1)
        ax.text(tokens, 1.01, f" {name}", transform=transform, fontsize=8, color="#6b7280", va="bottom")


def _encode(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, facecolor="white", metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")

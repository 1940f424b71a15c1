"""How values read on the report page: counts, shares, sizes, durations and design values as short text.

Every formatter takes whatever a run file holds and returns a string; a missing, non-numeric or
non-finite value reads as a dash. Nothing here escapes HTML: the template does that.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from pretrainlab.report import plots

DASH = "—"
"""What a missing value reads as."""


def num(value: Any) -> float:
    """A number for sums: missing or non-finite values count as zero."""
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else 0.0


def _formatter(fmt: Callable[[float], str]) -> Callable[[Any], str]:
    """Wrap ``fmt`` so that missing and non-numeric values show as a dash."""

    def wrapped(value: Any) -> str:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return DASH
        return fmt(float(value))

    return wrapped


def fixed(value: Any, digits: int) -> str:
    """``1,234.568`` with ``digits`` decimals."""
    return _formatter(lambda v: f"{v:,.{digits}f}")(value)


integer = _formatter(lambda v: f"{round(v):,}")
"""``4,500``: rounded, with thousands separators."""

pct = _formatter(lambda v: f"{100 * v:.1f}%")
"""``61.0%`` for a share of 0.61."""


@_formatter
def sci(value: float) -> str:
    """Three significant digits with a short exponent: ``1.23e15``, ``0.002``."""
    mantissa, _, exponent = f"{value:.3g}".partition("e")
    return f"{mantissa}e{int(exponent)}" if exponent else mantissa


def _scaled(value: float, units: Sequence[str], base: float) -> str:
    for unit in units[:-1]:
        if abs(value) < base:
            return f"{value:,.0f} {unit}".strip() if unit in ("", "B") else f"{value:.1f} {unit}"
        value /= base
    return f"{value:,.1f} {units[-1]}"


size = _formatter(lambda v: _scaled(v, ("B", "kB", "MB", "GB", "TB"), 1000.0))
"""``1.2 MB``: a byte count in decimal units."""

compact = _formatter(lambda v: _scaled(v, ("", "k", "M", "B", "T"), 1000.0).replace(" ", ""))
"""``11.3M``: a large count in short form."""


@_formatter
def duration(seconds: float) -> str:
    """``4.20 s``, ``12.5 s``, ``6 m 52 s``, ``1 h 05 m``."""
    if seconds < 60:
        return f"{seconds:.2f} s" if seconds < 10 else f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} m {int(seconds % 60):02d} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} m"


def metric_value(metric: str, value: Any) -> str:
    """A probe metric: accuracies as percentages, anything else (log-probs) to three decimals."""
    return pct(value) if metric in plots.ACCURACY_METRICS else fixed(value, 3)


def metric_label(metric: str) -> str:
    """The column heading of a probe metric (``exact match`` for ``exact_match``)."""
    return plots.METRIC_LABELS.get(metric, metric)


def design_value(value: Any) -> str:
    """Design values in one line: ``{a: 1, b: [x, y]}`` without JSON's quotes or unset (``None``) keys."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {design_value(v)}" for k, v in value.items() if v is not None) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(design_value(v) for v in value) + "]"
    if isinstance(value, bool) or value is None:
        return str(value).lower() if value is not None else "null"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, int):
        return f"{value:,}".replace(",", "_") if abs(value) >= 10_000 else str(value)
    return str(value)

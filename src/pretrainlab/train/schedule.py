"""Learning-rate schedules: linear warmup, then cosine, warmup-stable-decay (WSD) or constant."""

from __future__ import annotations

import math
from typing import Literal

ScheduleKind = Literal["cosine", "wsd", "constant"]


def lr_at(
    step: int,
    total: int,
    peak: float,
    warmup: int,
    kind: ScheduleKind,
    min_ratio: float = 0.1,
    decay_frac: float = 0.2,
) -> float:
    """Learning rate of update `step` (0-based) out of `total`.

    Warmup is linear, reaching `peak` at step `warmup - 1`. After it, "cosine" follows a half cosine
    from `peak` down to `min_ratio * peak` at the last step (`total - 1`); "wsd" holds `peak`, then
    decays linearly to `min_ratio * peak` over the last `decay_frac` of the steps (never starting
    before warmup ends); "constant" holds `peak`.
    """
    if kind not in ("cosine", "wsd", "constant"):
        raise ValueError(f"schedule: expected 'cosine', 'wsd' or 'constant', got {kind!r}")
    if step < warmup:
        return peak * (step + 1) / warmup
    if kind == "constant":
        return peak
    floor = min_ratio * peak
    start = warmup if kind == "cosine" else max(warmup, total - round(decay_frac * total))
    if step < start:
        return peak
    span = total - 1 - start
    progress = 1.0 if span <= 0 else min(1.0, (step - start) / span)
    if kind == "cosine":
        return floor + (peak - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
    return peak - (peak - floor) * progress

"""Compute accounting shared by all stages: wall and CPU seconds, tokens, FLOPs, device-hours.

Device-hours appear only where a stage measured or was told its rate: training counts them at the
matmul rate measured on its device (`train.peak`), LLM generation at the throughput the design states
for its endpoint. Nowhere is a rate assumed."""

from __future__ import annotations

import resource
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from pretrainlab.stages import STAGES


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


@dataclass
class Usage:
    wall_s: float = 0.0
    cpu_s: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return {"wall_s": round(self.wall_s, 3), "cpu_s": round(self.cpu_s, 3)}


@contextmanager
def measure() -> Iterator[Usage]:
    """Measure wall and CPU seconds (this process and its children) spent inside the block."""
    usage = Usage()
    t0, c0 = time.perf_counter(), _cpu_seconds()
    try:
        yield usage
    finally:
        usage.wall_s = time.perf_counter() - t0
        usage.cpu_s = _cpu_seconds() - c0


def ledger_rows(manifests: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One ledger row per finished stage, from the stages' manifests; `side` says whether the stage makes
    data or trains on it."""
    side_of = {st.name: st.side for st in STAGES}
    rows = []
    for stage, manifest in manifests.items():
        led = manifest.get("ledger", {})
        rows.append(
            {
                "stage": stage,
                "side": side_of.get(stage),
                "wall_s": led.get("wall_s", 0.0),
                "cpu_s": led.get("cpu_s", 0.0),
                "tokens": led.get("tokens"),
                "flops": led.get("flops"),
                "device_hours": led.get("device_hours"),
                "note": led.get("note", ""),
            }
        )
        # LLM generation: one row per exercise and endpoint (its time is in the stage's row above)
        for key, g in sorted(led.get("llm", {}).items()):
            rows.append(
                {
                    "stage": stage,
                    "side": side_of.get(stage),
                    "wall_s": 0.0,
                    "cpu_s": 0.0,
                    "tokens": g.get("prompt_tokens", 0) + g.get("completion_tokens", 0),
                    "flops": g.get("flops"),
                    "device_hours": g.get("device_hours"),
                    "note": f"LLM {key}: {g.get('prompt_tokens', 0):,} prompt + "
                    f"{g.get('completion_tokens', 0):,} completion tokens, {g.get('requests', 0):,} requests",
                }
            )
    return rows


def split_totals(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Sum wall/CPU seconds and FLOPs of the ledger rows that make data vs those that train on it."""
    out: dict[str, dict[str, float]] = {}
    for side in ("data", "training"):
        sel = [r for r in rows if r.get("side") == side]
        out[side] = {
            "wall_s": sum(r["wall_s"] or 0 for r in sel),
            "cpu_s": sum(r["cpu_s"] or 0 for r in sel),
            "flops": sum(r["flops"] or 0 for r in sel),
        }
    return out

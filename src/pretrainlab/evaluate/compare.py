"""Harness figures beside in-loop figures: as metric rows, side by side, and probe by probe.

The harness's per-probe results become metrics.jsonl rows of kind `harness`, shaped exactly as the
in-loop rows of kind `probe` (same aggregation), so the two compare per (capability, split, group,
metric) at the final step. `rescore_in_loop` and `disagreements` go one level down: the final checkpoint
scored again by the in-loop code, and every probe on which the two verdicts differ.

What can still differ (see `evaluate.tasks` for why the rest is the same measurement): greedy text
that spells the answer with other tokens than its own encoding (a hit for the harness, a miss in-loop),
float ties broken differently by two implementations of the same model, a choice tie (the in-loop rule
needs the gold answer strictly ahead), and an in-loop eval run under bf16 autocast (on a GPU) against
the harness's float32.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pretrainlab.export.hf import load_run_model
from pretrainlab.runs import write_atomic
from pretrainlab.tokenize.tokenizer import load_tokenizer
from pretrainlab.train.probes import ProbeSet, aggregate

HARNESS_KIND = "harness"  # the `kind` of harness rows in metrics.jsonl
HARNESS_METRICS = ("exact_match", "choice_acc")  # answer_logprob has no harness counterpart


def harness_rows(per_probe: list[dict[str, Any]], head: dict[str, Any]) -> list[dict[str, Any]]:
    """metrics.jsonl rows shaped as the in-loop probe rows, of kind `harness`; `head` adds kind and step."""
    return [{**head, **row} for row in aggregate(per_probe)]


def write_metrics(metrics_path: Path, rows: list[dict[str, Any]]) -> None:
    """Replace the harness rows of metrics.jsonl by `rows` (atomically); other rows stay as they are,
    so re-running the harness never piles rows up."""
    kept = []
    if metrics_path.exists():
        for line in metrics_path.read_text().splitlines():
            if line.strip() and json.loads(line).get("kind") != HARNESS_KIND:
                kept.append(line + "\n")
    write_atomic(metrics_path, "".join(kept) + "".join(json.dumps(r) + "\n" for r in rows))


def comparison(metrics: list[dict[str, Any]], group: bool = False) -> list[dict[str, Any]]:
    """In-loop and harness values side by side, at the step of the harness rows.

    One row per (capability, split[, group], metric) of the harness rows: {capability, split, group,
    metric, step, in_loop, harness, n}; `in_loop` is None where the in-loop eval has no row at that step.
    Ungrouped rows only unless `group`.
    """
    harness = [r for r in metrics if r.get("kind") == HARNESS_KIND and (group or r.get("group") is None)]
    if not harness:
        return []
    step = max(r["step"] for r in harness)
    probe = {
        (r["capability"], r["split"], r.get("group"), r["metric"]): r["value"]
        for r in metrics
        if r.get("kind") == "probe" and r.get("step") == step
    }
    out = []
    for r in harness:
        if r["step"] != step:
            continue
        key = (r["capability"], r["split"], r.get("group"), r["metric"])
        out.append(
            {
                "capability": r["capability"],
                "split": r["split"],
                "group": r.get("group"),
                "metric": r["metric"],
                "step": step,
                "in_loop": probe.get(key),
                "harness": r["value"],
                "n": r["n"],
            }
        )
    out.sort(key=lambda r: (r["capability"], str(r["split"]), str(r["group"]), r["metric"]))
    return out


def rescore_in_loop(
    stage: Path, tokenizer_path: Path, seq_len: int, probes: list[dict[str, Any]], batch_size: int = 128
) -> list[dict[str, Any]]:
    """The in-loop per-probe scores of a train stage's final checkpoint (float32, CPU).

    The metrics rows hold only means; this gives the in-loop verdict of each probe to set beside the
    harness's.
    """
    model, _ = load_run_model(stage)
    probe_set = ProbeSet(probes, load_tokenizer(tokenizer_path), max_len=seq_len)
    return probe_set.per_probe(model, batch_size=batch_size)


def disagreements(
    harness: list[dict[str, Any]], in_loop: list[dict[str, Any]], probes: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Probes whose harness and in-loop verdicts differ, per metric, with both outputs to read."""
    out = []
    for h, r, p in zip(harness, in_loop, probes, strict=True):
        for metric in HARNESS_METRICS:
            if h[metric] is not None and r[metric] is not None and h[metric] != r[metric]:
                out.append(
                    {
                        "id": p["id"],
                        "capability": p["capability"],
                        "split": h["split"],
                        "metric": metric,
                        "harness": h[metric],
                        "in_loop": r[metric],
                        "prompt": p["prompt"][-200:],
                        "answer": p["answer"],
                        "harness_output": h["output"],
                        "in_loop_prediction": r["prediction"],
                    }
                )
    return out

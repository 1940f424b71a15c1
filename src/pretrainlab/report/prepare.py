"""Turn a run's raw report inputs into the view-model the page template prints (:class:`view.Report`).

All the deciding happens here: which rows go in which table, how each value reads, which plots exist.
The template only loops and prints. The inputs are plain rows (``metrics.jsonl``, the ledger, the
design as a mapping, ...) gathered by :mod:`pretrainlab.report.build`; the probe-level sections
(capabilities, harness) are prepared in :mod:`pretrainlab.report.prepare_eval`.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

import yaml

from pretrainlab import __version__
from pretrainlab.report import formatting as fmt
from pretrainlab.report import plots
from pretrainlab.report import view as v
from pretrainlab.report.prepare_eval import capabilities, figure, harness_view, score_table

_DESIGN_SECTIONS = ("tokenizer", "model", "train", "eval")
_EXERCISE_COLUMNS = ("kind", "capability", "share")
_OPTIONAL_STATS = {"distinct_2": "distinct\u20112", "compression_ratio": "compression ratio"}
# the curate stage's diversity measures, as the diversity table shows them
DIVERSITY_KEYS = {
    "distinct_1": "distinct\u20111",
    "distinct_2": "distinct\u20112",
    "distinct_3": "distinct\u20113",
    "distinct_4": "distinct\u20114",
    "compression_ratio": "compression ratio",
    "self_repetition": "self-repetition",
    "near_dup_share": "in near-dup clusters",
}


def prepare_report(
    *,
    title: str,
    design: dict[str, Any],
    data_stats: list[dict[str, Any]],
    samples: dict[str, list[str]],
    metrics: list[dict[str, Any]],
    ledger: list[dict[str, Any]],
    generations: list[dict[str, Any]],
    final_scores: list[dict[str, Any]] | None = None,
    harness: dict[str, Any] | None = None,
    harness_comparison: list[dict[str, Any]] | None = None,
) -> v.Report:
    """The view-model of the whole page.

    ``metrics`` are ``metrics.jsonl`` rows of kind ``train`` and ``probe``. When ``final_scores`` is
    ``None`` the headline table falls back to the last ungrouped probe value of each capability, split
    and metric found in ``metrics``. ``harness_comparison`` (in-loop beside harness values, as
    :func:`pretrainlab.evaluate.harness.comparison` computes them) adds the section
    :data:`view.HARNESS_SECTION` when it is not ``None``, with ``harness`` (the run's
    harness/summary.json) for its per-probe agreement line.
    """
    train = [r for r in metrics if r.get("kind") == "train"]
    probes = [r for r in metrics if r.get("kind") == "probe"]
    if final_scores is None:
        final_scores = last_probe_scores(probes)
    sections = list(v.SECTIONS)
    if harness_comparison is not None:
        sections.insert([sid for sid, _ in v.SECTIONS].index("capabilities") + 1, v.HARNESS_SECTION)
    return v.Report(
        title=str(title),
        design_name=str(design["name"]) if design.get("name") else None,
        seed=str(design["seed"]) if design.get("seed") is not None else None,
        sections=tuple(sections),
        summary=summary(final_scores, train, ledger),
        design=design_view(design),
        data=data(data_stats, samples),
        training=training(train),
        capabilities=capabilities(probes, plots.phase_boundaries(train)),
        harness=None if harness_comparison is None else harness_view(harness_comparison, harness),
        generations=generations_view(generations),
        ledger=ledger_view(ledger),
        version=str(__version__),
    )


def last_probe_scores(probes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The value at the latest step of every ungrouped ``(capability, split, metric)``."""
    last: dict[tuple[str, str, str], dict[str, Any]] = {}
    for r in sorted((r for r in probes if r.get("group") is None), key=lambda r: r["step"]):
        last[(r["capability"], r["split"], r["metric"])] = r
    return [{"capability": c, "split": s, "metric": m, "value": r["value"]} for (c, s, m), r in last.items()]


# ----------------------------------------------------------------------------------------- sections


def summary(
    scores: list[dict[str, Any]], train: list[dict[str, Any]], ledger: list[dict[str, Any]]
) -> v.Summary:
    """Headline numbers of training and the ledger, and the final score of every capability."""
    cards: list[v.Card] = []
    if train:
        last = max(train, key=lambda r: r["step"])
        cards += [
            v.Card(fmt.compact(last.get("tokens")), "tokens trained"),
            v.Card(fmt.integer(last.get("step")), "steps"),
            v.Card(fmt.fixed(last.get("loss"), 3), "final loss"),
            v.Card(fmt.sci(last.get("flops")), "training FLOPs"),
        ]
    if ledger:
        cards.append(
            v.Card(fmt.duration(sum(fmt.num(r.get("wall_s")) for r in ledger)), "wall time, all stages")
        )
    return v.Summary(tuple(cards), score_table(scores) if scores else None)


def design_view(design: dict[str, Any]) -> v.Design | None:
    """The design's overview, its exercises, one key/value block per part, and the full YAML."""
    if not design:
        return None
    overview = [(k, design[k]) for k in ("name", "seed", "budget") if k in design]
    exercises = design.get("exercises") or []
    table = None
    if exercises:
        rows = []
        for ex in exercises:
            params = {k: x for k, x in ex.items() if k not in _EXERCISE_COLUMNS}
            rows.append(
                [
                    str(ex.get("kind", fmt.DASH)),
                    str(ex.get("capability", fmt.DASH)),
                    fmt.pct(ex.get("share")),
                    v.Cell(fmt.design_value(params), "mono"),
                ]
            )
        table = v.table(["kind", "capability", "share", "parameters"], rows, key_cols=2, numeric_cols={2})
    handled = {"name", "seed", "budget", "exercises"}
    blocks = []
    for key in (*_DESIGN_SECTIONS, *(k for k in design if k not in handled and k not in _DESIGN_SECTIONS)):
        if key in design and not _unset(design[key]):
            items = list(design[key].items()) if isinstance(design[key], dict) else [(key, design[key])]
            blocks.append(
                v.DesignBlock(
                    str(key).capitalize(), _key_values(items), any(_is_records(x) for _, x in items)
                )
            )
    dump = yaml.safe_dump(json.loads(json.dumps(design, default=str)), sort_keys=False, allow_unicode=True)
    return v.Design(_key_values(overview) if overview else None, table, tuple(blocks), dump)


def data(stats: list[dict[str, Any]], samples: dict[str, list[str]]) -> v.Data:
    """Per-exercise record, byte and token counts with their total, and a few records of each."""
    table = None
    if stats:
        optional = [c for c in _OPTIONAL_STATS if any(r.get(c) is not None for r in stats)]
        head = [
            "exercise",
            "capability",
            "records",
            "removed",
            "bytes",
            "tokens",
            "share planned",
            "share actual",
            *(_OPTIONAL_STATS[c] for c in optional),
        ]
        rows = [
            [
                str(r.get("exercise", fmt.DASH)),
                str(r.get("capability", fmt.DASH)),
                fmt.integer(r.get("records")),
                fmt.integer(r.get("removed")),
                fmt.size(r.get("bytes")),
                fmt.integer(r.get("tokens")),
                fmt.pct(r.get("share_planned")),
                fmt.pct(r.get("share_actual")),
                *(fmt.fixed(r.get(c), 3 if c == "distinct_2" else 2) for c in optional),
            ]
            for r in stats
        ]
        sums = {
            c: sum(fmt.num(r.get(c)) for r in stats)
            for c in ("records", "removed", "bytes", "tokens", "share_planned", "share_actual")
        }
        total = [
            "total",
            "",
            fmt.integer(sums["records"]),
            fmt.integer(sums["removed"]),
            fmt.size(sums["bytes"]),
            fmt.integer(sums["tokens"]),
            fmt.pct(sums["share_planned"]),
            fmt.pct(sums["share_actual"]),
            *("" for _ in optional),
        ]
        table = v.table(head, rows, key_cols=2, numeric_from=2, footer=total)
    shown = tuple(
        v.SampleGroup(
            str(name), f"{len(texts)} sample{'s' if len(texts) != 1 else ''}", tuple(map(str, texts))
        )
        for name, texts in samples.items()
        if texts
    )
    return v.Data(
        table,
        shown,
        _removals(stats),
        _diversity(stats),
        tuple(w for r in stats for w in r.get("warnings", ())),
    )


def _removals(stats: list[dict[str, Any]]) -> v.Table | None:
    """Removed records per exercise and reason (duplicate, filter:…, contains probe, benchmark:…)."""
    reasons = sorted({k for r in stats for k in r.get("removed_by_reason", {})})
    if not reasons:
        return None
    rows = [
        [str(r.get("exercise", fmt.DASH)), *(fmt.integer(r["removed_by_reason"].get(k, 0)) for k in reasons)]
        for r in stats
        if r.get("removed_by_reason")
    ]
    return v.table(["exercise", *reasons], rows, numeric_from=1)


def _diversity(stats: list[dict[str, Any]]) -> v.Table | None:
    """The curate stage's diversity measures of each exercise's kept text."""
    keys = [k for k in DIVERSITY_KEYS if any(k in r.get("diversity", {}) for r in stats)]
    if not keys:
        return None
    rows = [
        [
            str(r.get("exercise", fmt.DASH)),
            *(fmt.fixed(r.get("diversity", {}).get(k), 2 if k == "compression_ratio" else 3) for k in keys),
        ]
        for r in stats
    ]
    return v.table(["exercise", *(DIVERSITY_KEYS[k] for k in keys)], rows, numeric_from=1)


def training(train: list[dict[str, Any]]) -> v.Training | None:
    """The loss plot and, per training phase, its steps and where loss, lr and throughput ended."""
    plot = plots.loss_plot(train)
    if plot is None:
        return None
    rows = []
    by_phase: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in sorted(train, key=lambda r: r["step"]):
        by_phase[str(r.get("phase") or fmt.DASH)].append(r)
    for phase, phase_rows in by_phase.items():
        speeds = [fmt.num(r.get("tokens_per_s")) for r in phase_rows if r.get("tokens_per_s")]
        rows.append(
            [
                phase,
                f"{fmt.integer(phase_rows[0]['step'])}–{fmt.integer(phase_rows[-1]['step'])}",
                fmt.compact(phase_rows[-1].get("tokens")),
                fmt.fixed(phase_rows[-1].get("loss"), 3),
                fmt.sci(phase_rows[-1].get("lr")),
                fmt.integer(sum(speeds) / len(speeds)) if speeds else fmt.DASH,
            ]
        )
    head = ["phase", "steps", "tokens at end", "loss at end", "lr at end", "mean tokens/s"]
    return v.Training(
        figure(plot, "Training loss against tokens seen; dotted lines mark the start of each phase."),
        v.table(head, rows, numeric_from=1),
    )


def generations_view(generations: list[dict[str, Any]]) -> v.Generations | None:
    """Sample generations of the final model with their verdicts, and how many are correct."""
    if not generations:
        return None
    right = sum(1 for g in generations if g.get("correct"))
    rows, classes = [], []
    for g in generations:
        ok = bool(g.get("correct"))
        texts = [v.Cell(str(g.get(k, "")), "mono") for k in ("prompt", "answer", "prediction")]
        rows.append([*texts, v.Cell("✓ correct", "ok") if ok else v.Cell("✗ wrong", "no")])
        classes.append("correct" if ok else "wrong")
    table = v.table(
        ["prompt", "answer", "prediction", "verdict"],
        rows,
        key_cols=0,
        row_classes=classes,
        wrap_cols={0, 1, 2},
    )
    return v.Generations(f"{right:,}", f"{len(generations):,}", fmt.pct(right / len(generations)), table)


def ledger_view(ledger: list[dict[str, Any]]) -> v.Ledger | None:
    """Wall, CPU, tokens, FLOPs (and device hours) of every stage, with their total."""
    if not ledger:
        return None
    has_device = any(r.get("device_hours") is not None for r in ledger)
    head = ["stage", "wall", "CPU", "tokens", "FLOPs", *(["device hours"] if has_device else []), "note"]
    rows = [
        [
            str(r.get("stage", fmt.DASH)),
            fmt.duration(r.get("wall_s")),
            fmt.duration(r.get("cpu_s")),
            fmt.integer(r.get("tokens")),
            fmt.sci(r.get("flops")),
            *([fmt.fixed(r.get("device_hours"), 3)] if has_device else []),
            str(r.get("note") or ""),
        ]
        for r in ledger
    ]
    total = [
        "total",
        fmt.duration(sum(fmt.num(r.get("wall_s")) for r in ledger)),
        fmt.duration(sum(fmt.num(r.get("cpu_s")) for r in ledger)),
        "",
        "",
        *([fmt.fixed(sum(fmt.num(r.get("device_hours")) for r in ledger), 3)] if has_device else []),
        "",
    ]
    table = v.table(head, rows, numeric_cols=set(range(1, len(head) - 1)), footer=total)
    return v.Ledger(table, effort(ledger))


def effort(ledger: list[dict[str, Any]]) -> v.Effort:
    """Making the data weighed against training on it (each ledger row says its side)."""

    def side(name: str) -> tuple[float, float]:
        rows = [r for r in ledger if r.get("side") == name]
        return sum(fmt.num(r.get("wall_s")) for r in rows), sum(fmt.num(r.get("cpu_s")) for r in rows)

    (prep_wall, prep_cpu), (model_wall, model_cpu) = side("data"), side("training")
    return v.Effort(
        fmt.duration(prep_wall),
        fmt.duration(prep_cpu),
        fmt.duration(model_wall),
        fmt.duration(model_cpu),
        f"{prep_wall / model_wall:.2f}" if prep_wall > 0 and model_wall > 0 else None,
    )


# ------------------------------------------------------------------------------------------ helpers


def _key_values(items: list[tuple[str, Any]]) -> tuple[v.KeyValue, ...]:
    """Rows of a key/value table; a list of mappings (e.g. training phases) becomes a nested table.

    Unset (``None``) values are left out here; the full design dump still shows them.
    """
    out = []
    for key, value in items:
        if _unset(value):
            continue
        if _is_records(value):
            cols = list(dict.fromkeys(k for x in value for k in x))
            rows = [[fmt.design_value(x[c]) if x.get(c) is not None else "" for c in cols] for x in value]
            out.append(v.KeyValue(str(key), table=v.table([str(c) for c in cols], rows)))
        else:
            out.append(v.KeyValue(str(key), fmt.design_value(value)))
    return tuple(out)


def _is_records(value: Any) -> bool:
    """A non-empty list of mappings, shown as a nested table (e.g. training phases)."""
    return isinstance(value, list) and bool(value) and all(isinstance(x, dict) for x in value)


def _unset(value: Any) -> bool:
    """``None``, or a mapping whose values are all unset: nothing worth a table row."""
    return value is None or (isinstance(value, dict) and all(_unset(x) for x in value.values()))

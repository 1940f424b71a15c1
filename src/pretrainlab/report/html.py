"""The report stage: one self-contained ``report.html`` (inline CSS, inline PNG plots, no JavaScript).

The page opens offline: nothing it shows is fetched from elsewhere. Every value that comes from a
design, a record or a model is escaped, and every section says so plainly when it has no input yet.
"""

from __future__ import annotations

import html
import json
import math
import os
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml

from pretrainlab import __version__
from pretrainlab.report import plots

SECTIONS = (
    ("summary", "Summary"),
    ("design", "Design"),
    ("data", "Data"),
    ("training", "Training"),
    ("capabilities", "Capabilities"),
    ("generations", "Generations"),
    ("ledger", "Compute ledger"),
)
"""``(id, heading)`` of the page's sections, in order; the ids are stable anchors."""

HARNESS_SECTION = ("harness", "Standard harness (lm-evaluation-harness)")
"""Shown after Capabilities only when ``metrics.jsonl`` holds harness rows (`pretrainlab eval --harness`)."""

PREP_STAGES = ("generate", "curate", "tokenize")
MODEL_STAGES = ("train", "eval", "evaluate")

_DESIGN_SECTIONS = ("tokenizer", "model", "train", "eval")
_EXERCISE_COLUMNS = ("kind", "capability", "share")
_DASH = "—"
_OPTIONAL_STATS = {"distinct_2": "distinct\u20112", "compression_ratio": "compression ratio"}

CSS = """
:root { --fg:#111827; --muted:#6b7280; --line:#e5e7eb; --soft:#f9fafb; --accent:#1d4ed8;
        --good:#047857; --bad:#b91c1c; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--fg); background: #fff; line-height: 1.5; font-size: 15px;
       font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1100px; margin: 0 auto; padding: 0 24px 64px; }
header { border-bottom: 1px solid var(--line); padding: 28px 0 12px; margin-bottom: 8px; }
h1 { font-size: 1.7rem; margin: 0 0 4px; letter-spacing: -0.01em; }
h2 { font-size: 1.25rem; margin: 40px 0 12px; padding-bottom: 6px; border-bottom: 1px solid var(--line); }
h3 { font-size: 1.02rem; margin: 24px 0 8px; }
p { margin: 8px 0; }
nav { display: flex; flex-wrap: wrap; gap: 4px 18px; margin-top: 10px; font-size: 0.9rem; }
a { color: var(--accent); text-decoration: none; }
a:hover { text-decoration: underline; }
code, pre, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace;
                   font-size: 0.85em; }
.muted { color: var(--muted); }
.empty { color: var(--muted); font-style: italic; background: var(--soft); border: 1px dashed var(--line);
         border-radius: 6px; padding: 12px 14px; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; margin: 8px 0 12px; font-size: 0.88rem; }
th, td { border: 1px solid var(--line); padding: 5px 9px; text-align: left; vertical-align: top; }
td.key { white-space: nowrap; }
th { background: var(--soft); font-weight: 600; vertical-align: bottom; }
tbody tr:nth-child(even) td { background: #fcfcfd; }
tfoot td { font-weight: 600; background: var(--soft); }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.num { white-space: nowrap; }
td.wrap { white-space: pre-wrap; word-break: break-word; }
table.kv th { width: 11rem; vertical-align: top; }
table.kv td table { margin: 0; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(320px, 1fr)); gap: 0 28px; }
.grid .wide { grid-column: 1 / -1; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; margin: 12px 0 4px; }
.card { border: 1px solid var(--line); border-radius: 8px; padding: 10px 16px; min-width: 150px;
        background: var(--soft); }
.card .v { font-size: 1.3rem; font-weight: 600; font-variant-numeric: tabular-nums; }
.card .k { font-size: 0.8rem; color: var(--muted); text-transform: uppercase; letter-spacing: 0.04em; }
figure { margin: 12px 0; }
figure img { display: block; max-width: 100%; height: auto; border: 1px solid var(--line);
             border-radius: 6px; }
figcaption { font-size: 0.85rem; color: var(--muted); margin-top: 4px; }
.capability { border: 1px solid var(--line); border-radius: 8px; padding: 4px 18px 12px; margin: 16px 0; }
.capability h3 { margin-top: 14px; }
details { margin: 8px 0; }
summary { cursor: pointer; font-weight: 600; }
pre { background: var(--soft); border: 1px solid var(--line); border-radius: 6px; padding: 10px 12px;
      margin: 8px 0; white-space: pre-wrap; word-break: break-word; max-height: 16em; overflow: auto; }
pre.dump { max-height: 40em; }
.ok { color: var(--good); font-weight: 600; }
.no { color: var(--bad); font-weight: 600; }
tr.correct td:first-child { box-shadow: inset 3px 0 0 var(--good); }
tr.wrong td:first-child { box-shadow: inset 3px 0 0 var(--bad); }
footer { margin-top: 48px; font-size: 0.8rem; color: var(--muted); border-top: 1px solid var(--line);
         padding-top: 10px; }
"""


def render_report(
    out_path: Path,
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
) -> Path:
    """Write the self-contained HTML report to ``out_path`` (atomically) and return that path.

    ``metrics`` are ``metrics.jsonl`` rows of kind ``train`` and ``probe``. When ``final_scores`` is
    ``None`` the headline table falls back to the last ungrouped probe value of each capability, split
    and metric found in ``metrics``. Rows of kind ``harness`` add the section HARNESS_SECTION, with
    ``harness`` (the run's harness/summary.json) for its per-probe agreement line.
    """
    train = [r for r in metrics if r.get("kind") == "train"]
    probes = [r for r in metrics if r.get("kind") == "probe"]
    if final_scores is None:
        final_scores = _last_probe_scores(probes)
    has_harness = any(r.get("kind") == "harness" for r in metrics)
    sections = list(SECTIONS)
    if has_harness:
        sections.insert([sid for sid, _ in SECTIONS].index("capabilities") + 1, HARNESS_SECTION)
    body = "\n".join(
        [
            _header(title, design, sections),
            _section("summary", _summary(final_scores, train, ledger)),
            _section("design", _design(design)),
            _section("data", _data(data_stats, samples)),
            _section("training", _training(train)),
            _section("capabilities", _capabilities(probes, plots.phase_boundaries(train))),
            *([_section("harness", _harness(metrics, harness))] if has_harness else []),
            _section("generations", _generations(generations)),
            _section("ledger", _ledger(ledger)),
            f"<footer>Generated by pretrainlab {_e(__version__)}. This page is self-contained: "
            "it loads nothing from the network.</footer>",
        ]
    )
    page = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_e(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n{body}\n</main>\n"
        "</body>\n</html>\n"
    )
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, out_path)
    return out_path


# ----------------------------------------------------------------------------------------- sections


def _header(title: str, design: dict[str, Any], sections: Sequence[tuple[str, str]] = SECTIONS) -> str:
    facts = [
        f"design <strong>{_e(design['name'])}</strong>" if design.get("name") else "",
        f"seed {_e(design['seed'])}" if design.get("seed") is not None else "",
    ]
    links = "".join(f'<a href="#{sid}">{_e(name)}</a>' for sid, name in sections)
    line = " · ".join(f for f in facts if f)
    return (
        f"<header><h1>{_e(title)}</h1>"
        + (f'<div class="muted">{line}</div>' if line else "")
        + f"<nav>{links}</nav></header>"
    )


def _section(sid: str, content: str) -> str:
    heading = dict((*SECTIONS, HARNESS_SECTION))[sid]
    return f'<section id="{sid}">\n<h2>{_e(heading)}</h2>\n{content}\n</section>'


def _summary(scores: list[dict[str, Any]], train: list[dict[str, Any]], ledger: list[dict[str, Any]]) -> str:
    cards: list[tuple[str, str]] = []
    if train:
        last = max(train, key=lambda r: r["step"])
        cards += [
            ("tokens trained", _compact(last.get("tokens"))),
            ("steps", _int(last.get("step"))),
            ("final loss", _float(last.get("loss"), 3)),
            ("training FLOPs", _sci(last.get("flops"))),
        ]
    if ledger:
        cards.append(("wall time, all stages", _duration(sum(_num(r.get("wall_s")) for r in ledger))))
    out = ""
    if cards:
        out += (
            '<div class="cards">'
            + "".join(
                f'<div class="card"><div class="v">{v}</div><div class="k">{_e(k)}</div></div>'
                for k, v in cards
            )
            + "</div>"
        )
    if not scores:
        return out + _empty("No evaluation yet: final capability scores appear here once probes have run.")
    metrics = sorted({str(r["metric"]) for r in scores}, key=plots.metric_key)
    cells: dict[tuple[str, str], dict[str, Any]] = defaultdict(dict)
    for r in scores:
        cells[(str(r["capability"]), str(r["split"]))][str(r["metric"])] = r.get("value")
    rows, previous = [], None
    for capability, split in sorted(cells, key=lambda k: (k[0], plots.split_key(k[1]))):
        values = cells[(capability, split)]
        rows.append(
            [_e(capability) if capability != previous else "", _e(split)]
            + [_metric_value(m, values.get(m)) for m in metrics]
        )
        previous = capability
    head = ["capability", "split"] + [plots.METRIC_LABELS.get(m, m) for m in metrics]
    return out + "<h3>Final capability scores</h3>" + _table(head, rows, key_cols=2, numeric_from=2)


def _design(design: dict[str, Any]) -> str:
    if not design:
        return _empty("No design given.")
    overview = [(k, design[k]) for k in ("name", "seed", "budget") if k in design]
    out = _kv(overview) if overview else ""
    exercises = design.get("exercises") or []
    out += "<h3>Exercises</h3>"
    if exercises:
        rows = []
        for ex in exercises:
            params = {k: v for k, v in ex.items() if k not in _EXERCISE_COLUMNS}
            rows.append(
                [
                    _e(ex.get("kind", _DASH)),
                    _e(ex.get("capability", _DASH)),
                    _pct(ex.get("share")),
                    f'<span class="mono">{_e(_compact_value(params))}</span>',
                ]
            )
        out += _table(["kind", "capability", "share", "parameters"], rows, key_cols=2, numeric_cols={2})
    else:
        out += _empty("The design lists no exercises.")
    handled = {"name", "seed", "budget", "exercises"}
    blocks = []
    for key in (*_DESIGN_SECTIONS, *(k for k in design if k not in handled and k not in _DESIGN_SECTIONS)):
        if key in design and not _unset(design[key]):
            items = list(design[key].items()) if isinstance(design[key], dict) else [(key, design[key])]
            wide = ' class="wide"' if any(_is_records(v) for _, v in items) else ""
            table = _kv(items)
            blocks.append(f"<div{wide}><h3>{_e(key.capitalize())}</h3>{table}</div>")
    out += f'<div class="grid">{"".join(blocks)}</div>'
    dump = yaml.safe_dump(json.loads(json.dumps(design, default=str)), sort_keys=False, allow_unicode=True)
    return out + f'<details><summary>Full design</summary><pre class="dump">{_e(dump)}</pre></details>'


def _data(stats: list[dict[str, Any]], samples: dict[str, list[str]]) -> str:
    out = "<h3>Per exercise</h3>"
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
                _e(r.get("exercise", _DASH)),
                _e(r.get("capability", _DASH)),
                _int(r.get("records")),
                _int(r.get("removed")),
                _bytes(r.get("bytes")),
                _int(r.get("tokens")),
                _pct(r.get("share_planned")),
                _pct(r.get("share_actual")),
                *(_float(r.get(c), 3 if c == "distinct_2" else 2) for c in optional),
            ]
            for r in stats
        ]
        sums = {
            c: sum(_num(r.get(c)) for r in stats)
            for c in ("records", "removed", "bytes", "tokens", "share_planned", "share_actual")
        }
        total = [
            "total",
            "",
            _int(sums["records"]),
            _int(sums["removed"]),
            _bytes(sums["bytes"]),
            _int(sums["tokens"]),
            _pct(sums["share_planned"]),
            _pct(sums["share_actual"]),
            *("" for _ in optional),
        ]
        out += _table(head, rows, key_cols=2, numeric_from=2, footer=total)
    else:
        out += _empty("No data generated yet.")
    out += "<h3>Samples</h3>"
    shown = {name: texts for name, texts in samples.items() if texts}
    if not shown:
        return out + _empty("No sample records yet.")
    for name, texts in shown.items():
        pres = "".join(f"<pre>{_e(t)}</pre>" for t in texts)
        count = f"{len(texts)} sample{'s' if len(texts) != 1 else ''}"
        out += (
            f'<details open><summary>{_e(name)} <span class="muted">({count})</span></summary>'
            f"{pres}</details>"
        )
    return out


def _training(train: list[dict[str, Any]]) -> str:
    plot = plots.loss_plot(train)
    if plot is None:
        return _empty("No training run yet.")
    rows = []
    by_phase: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in sorted(train, key=lambda r: r["step"]):
        by_phase[str(r.get("phase") or _DASH)].append(r)
    for phase, phase_rows in by_phase.items():
        speeds = [_num(r.get("tokens_per_s")) for r in phase_rows if r.get("tokens_per_s")]
        rows.append(
            [
                _e(phase),
                f"{_int(phase_rows[0]['step'])}–{_int(phase_rows[-1]['step'])}",
                _compact(phase_rows[-1].get("tokens")),
                _float(phase_rows[-1].get("loss"), 3),
                _sci(phase_rows[-1].get("lr")),
                _int(sum(speeds) / len(speeds)) if speeds else _DASH,
            ]
        )
    return _figure(
        plot, "Training loss against tokens seen; dotted lines mark the start of each phase."
    ) + _table(
        ["phase", "steps", "tokens at end", "loss at end", "lr at end", "mean tokens/s"], rows, numeric_from=1
    )


def _capabilities(probes: list[dict[str, Any]], boundaries: list[tuple[float, str]]) -> str:
    capabilities = sorted({str(r["capability"]) for r in probes})
    if not capabilities:
        return _empty("No probe evaluations yet.")
    out = ""
    for capability in capabilities:
        out += f'<div class="capability"><h3>{_e(capability)}</h3>'
        plot = plots.emergence_plot(probes, capability, boundaries)
        out += (
            _figure(plot, "Probe metrics against tokens seen, one line per split.", capability)
            if plot
            else _empty("No ungrouped probe results for this capability.")
        )
        grouped = plots.group_plot(probes, capability)
        if grouped:
            out += _figure(grouped, "Final value per probe group.", capability, kind="groups")
            out += _group_table(probes, capability)
        out += "</div>"
    return out


def _group_table(probes: list[dict[str, Any]], capability: str) -> str:
    rows = [r for r in probes if r.get("capability") == capability and r.get("group") is not None]
    last = max(r["step"] for r in rows)
    cells: dict[tuple[str, str], dict[str, Any]] = defaultdict(dict)
    for r in rows:
        if r["step"] == last:
            cells[(str(r["group"]), str(r["split"]))][str(r["metric"])] = r.get("value")
    metrics = sorted({m for v in cells.values() for m in v}, key=plots.metric_key)
    body = [
        [_e(g), _e(s)] + [_metric_value(m, cells[(g, s)].get(m)) for m in metrics]
        for g, s in sorted(cells, key=lambda k: (plots.group_key(k[0]), plots.split_key(k[1])))
    ]
    head = ["group", "split"] + [plots.METRIC_LABELS.get(m, m) for m in metrics]
    return (
        f"<details><summary>Final values per group (step {_int(last)})</summary>"
        + _table(head, body, key_cols=2, numeric_from=2)
        + "</details>"
    )


def _harness(metrics: list[dict[str, Any]], summary: dict[str, Any] | None) -> str:
    """In-loop and lm-evaluation-harness values of the final step side by side, and their agreement."""
    from pretrainlab.evaluate.harness import comparison

    rows = comparison(metrics)
    if not rows:
        return _empty("No harness results at a step the in-loop eval scored.")
    step = rows[0]["step"]
    version = f" {summary['lm_eval_version']}" if summary and summary.get("lm_eval_version") else ""
    out = (
        f"<p>The checkpoint of step {_int(step)}, exported to transformers and scored by "
        f"lm-evaluation-harness{_e(version)} on the same probes as the in-loop eval: greedy generation "
        "stopped at a newline or EOS, exact match of the answer (and log-likelihood accuracy where probes "
        "have choices). <code>pretrainlab eval RUN --harness</code> writes these rows; "
        "docs/evaluation.md explains why the two should agree exactly.</p>"
    )
    body, classes = [], []
    for r in sorted(rows, key=lambda r: (r["capability"], plots.split_key(str(r["split"])), r["metric"])):
        same = r["in_loop"] is not None and r["in_loop"] == r["harness"]
        mark = (
            _DASH
            if r["in_loop"] is None
            else ('<span class="ok">✓ same</span>' if same else '<span class="no">✗ differs</span>')
        )
        body.append(
            [
                _e(r["capability"]),
                _e(r["split"]),
                _e(plots.METRIC_LABELS.get(r["metric"], r["metric"])),
                _metric_value(r["metric"], r["in_loop"]),
                _metric_value(r["metric"], r["harness"]),
                _int(r["n"]),
                mark,
            ]
        )
        classes.append("" if r["in_loop"] is None else ("correct" if same else "wrong"))
    out += _table(
        ["capability", "split", "metric", "in-loop", "harness", "probes", "agreement"],
        body,
        key_cols=3,
        numeric_cols={3, 4, 5},
        row_classes=classes,
    )
    per_probe = (summary or {}).get("per_probe")
    if per_probe:
        compared, differ = per_probe.get("compared", 0), per_probe.get("disagree", 0)
        out += (
            f"<p>Probe by probe, against the in-loop scoring of the same checkpoint: "
            f"{_int(compared - differ)} of {_int(compared)} verdicts agree"
            + (f", {_int(differ)} differ." if differ else ".")
            + "</p>"
        )
        diffs = per_probe.get("disagreements") or []
        if diffs:
            cells = [
                [
                    f'<span class="mono">{_e(d.get(k, ""))}</span>'
                    for k in ("prompt", "answer", "harness_output", "in_loop_prediction")
                ]
                + [_e(d.get("metric", "")), _e(d.get("harness")), _e(d.get("in_loop"))]
                for d in diffs[:20]
            ]
            out += (
                "<details><summary>Probes that differ</summary>"
                + _table(
                    [
                        "prompt",
                        "answer",
                        "harness output",
                        "in-loop prediction",
                        "metric",
                        "harness",
                        "in-loop",
                    ],
                    cells,
                    key_cols=0,
                    wrap_cols={0, 1, 2, 3},
                )
                + "</details>"
            )
    if summary and summary.get("results"):
        out += f'<p class="muted">lm-eval results: <span class="mono">{_e(summary["results"])}</span></p>'
    return out


def _generations(generations: list[dict[str, Any]]) -> str:
    if not generations:
        return _empty("No sample generations yet.")
    right = sum(1 for g in generations if g.get("correct"))
    rows = []
    for g in generations:
        ok = bool(g.get("correct"))
        mark = '<span class="ok">✓ correct</span>' if ok else '<span class="no">✗ wrong</span>'
        texts = [f'<span class="mono">{_e(g.get(k, ""))}</span>' for k in ("prompt", "answer", "prediction")]
        rows.append(([*texts, mark], "correct" if ok else "wrong"))
    table = _table(
        ["prompt", "answer", "prediction", "verdict"],
        [r for r, _ in rows],
        key_cols=0,
        row_classes=[c for _, c in rows],
        wrap_cols={0, 1, 2},
    )
    return (
        f"<p>{right:,} of {len(generations):,} sample generations of the final model are correct "
        f"({_pct(right / len(generations))}).</p>" + table
    )


def _ledger(ledger: list[dict[str, Any]]) -> str:
    if not ledger:
        return _empty("No stage has run yet.")
    has_device = any(r.get("device_hours") is not None for r in ledger)
    head = ["stage", "wall", "CPU", "tokens", "FLOPs", *(["device hours"] if has_device else []), "note"]
    rows = [
        [
            _e(r.get("stage", _DASH)),
            _duration(r.get("wall_s")),
            _duration(r.get("cpu_s")),
            _int(r.get("tokens")),
            _sci(r.get("flops")),
            *([_float(r.get("device_hours"), 3)] if has_device else []),
            _e(r.get("note") or ""),
        ]
        for r in ledger
    ]
    total = [
        "total",
        _duration(sum(_num(r.get("wall_s")) for r in ledger)),
        _duration(sum(_num(r.get("cpu_s")) for r in ledger)),
        "",
        "",
        *([_float(sum(_num(r.get("device_hours")) for r in ledger), 3)] if has_device else []),
        "",
    ]
    return _table(head, rows, numeric_cols=set(range(1, len(head) - 1)), footer=total) + _comparison(ledger)


def _comparison(ledger: list[dict[str, Any]]) -> str:
    """One line that weighs making the data against training and evaluating on it."""

    def side(stages: tuple[str, ...]) -> tuple[float, float]:
        rows = [r for r in ledger if r.get("stage") in stages]
        return sum(_num(r.get("wall_s")) for r in rows), sum(_num(r.get("cpu_s")) for r in rows)

    (prep_wall, prep_cpu), (model_wall, model_cpu) = side(PREP_STAGES), side(MODEL_STAGES)
    line = (
        f"<strong>Generation vs training.</strong> Data (generate, curate, tokenize): "
        f"{_duration(prep_wall)} wall, {_duration(prep_cpu)} CPU. Model (train, evaluate): "
        f"{_duration(model_wall)} wall, {_duration(model_cpu)} CPU."
    )
    if prep_wall > 0 and model_wall > 0:
        line += f" Making the data took {prep_wall / model_wall:.2f}× the wall time of training on it."
    return f"<p>{line}</p>"


# ------------------------------------------------------------------------------------------ helpers


def _last_probe_scores(probes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The value at the latest step of every ungrouped ``(capability, split, metric)``."""
    last: dict[tuple[str, str, str], dict[str, Any]] = {}
    for r in sorted((r for r in probes if r.get("group") is None), key=lambda r: r["step"]):
        last[(r["capability"], r["split"], r["metric"])] = r
    return [{"capability": c, "split": s, "metric": m, "value": r["value"]} for (c, s, m), r in last.items()]


def _table(
    head: Sequence[str],
    rows: Iterable[Sequence[str]],
    *,
    key_cols: int = 1,
    numeric_from: int | None = None,
    numeric_cols: set[int] | None = None,
    wrap_cols: set[int] | None = None,
    footer: Sequence[str] | None = None,
    row_classes: Sequence[str] | None = None,
) -> str:
    """An HTML table of already-escaped cells.

    The first ``key_cols`` columns hold names and never wrap, numeric columns are right-aligned and
    ``wrap_cols`` keep the line breaks of their text.
    """
    numeric = set(numeric_cols or ())
    if numeric_from is not None:
        numeric |= set(range(numeric_from, len(head)))
    wrap = wrap_cols or set()

    def cls(i: int) -> str:
        names = [n for n, on in (("key", i < key_cols), ("num", i in numeric), ("wrap", i in wrap)) if on]
        return f' class="{" ".join(names)}"' if names else ""

    def tr(cells: Sequence[str], tag: str, row_cls: str = "") -> str:
        attr = f' class="{row_cls}"' if row_cls else ""
        return f"<tr{attr}>" + "".join(f"<{tag}{cls(i)}>{c}</{tag}>" for i, c in enumerate(cells)) + "</tr>"

    body = "".join(tr(r, "td", row_classes[i] if row_classes else "") for i, r in enumerate(rows))
    foot = f"<tfoot>{tr(footer, 'td')}</tfoot>" if footer else ""
    return (
        f'<div class="scroll"><table><thead>{tr([_e(h) for h in head], "th")}</thead>'
        f"<tbody>{body}</tbody>{foot}</table></div>"
    )


def _kv(items: Sequence[tuple[str, Any]]) -> str:
    """A two-column key/value table; a list of mappings (e.g. training phases) becomes a nested table.

    Unset (``None``) values are left out here; the full design dump still shows them.
    """
    rows = []
    for key, value in items:
        if _unset(value):
            continue
        if _is_records(value):
            cols = list(dict.fromkeys(k for v in value for k in v))
            cell = _table(
                cols,
                [[_e(_compact_value(v[c])) if v.get(c) is not None else "" for c in cols] for v in value],
            )
        else:
            cell = f'<span class="mono">{_e(_compact_value(value))}</span>'
        rows.append(f"<tr><th>{_e(key)}</th><td>{cell}</td></tr>")
    return f'<div class="scroll"><table class="kv"><tbody>{"".join(rows)}</tbody></table></div>'


def _figure(plot: plots.Plot, caption: str, capability: str | None = None, kind: str = "emergence") -> str:
    data = f' data-capability="{_e(capability)}" data-kind="{kind}"' if capability is not None else ""
    return (
        f'<figure><img class="plot" src="{plot.data_uri}" alt="{_e(plot.alt)}"{data}>'
        f"<figcaption>{_e(caption)}</figcaption></figure>"
    )


def _is_records(value: Any) -> bool:
    """A non-empty list of mappings, shown as a nested table (e.g. training phases)."""
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def _unset(value: Any) -> bool:
    """``None``, or a mapping whose values are all unset: nothing worth a table row."""
    return value is None or (isinstance(value, dict) and all(_unset(v) for v in value.values()))


def _empty(message: str) -> str:
    return f'<p class="empty">{_e(message)}</p>'


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _compact_value(value: Any) -> str:
    """Design values in one line: ``{a: 1, b: [x, y]}`` without JSON's quotes or unset (``None``) keys."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_compact_value(v)}" for k, v in value.items() if v is not None) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_compact_value(v) for v in value) + "]"
    if isinstance(value, bool) or value is None:
        return str(value).lower() if value is not None else "null"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, int):
        return f"{value:,}".replace(",", "_") if abs(value) >= 10_000 else str(value)
    return str(value)


def _num(value: Any) -> float:
    """A number for sums: missing or non-finite values count as zero."""
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else 0.0


def _formatter(fmt: Callable[[float], str]) -> Callable[[Any], str]:
    """Wrap ``fmt`` so that missing and non-numeric values show as a dash."""

    def wrapped(value: Any) -> str:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return _DASH
        return fmt(float(value))

    return wrapped


def _float(value: Any, digits: int) -> str:
    return _formatter(lambda v: f"{v:,.{digits}f}")(value)


_int = _formatter(lambda v: f"{round(v):,}")
_pct = _formatter(lambda v: f"{100 * v:.1f}%")


@_formatter
def _sci(value: float) -> str:
    """Three significant digits with a short exponent: ``1.23e15``, ``0.002``."""
    mantissa, _, exponent = f"{value:.3g}".partition("e")
    return f"{mantissa}e{int(exponent)}" if exponent else mantissa


def _scaled(value: float, units: Sequence[str], base: float) -> str:
    for unit in units[:-1]:
        if abs(value) < base:
            return f"{value:,.0f} {unit}".strip() if unit in ("", "B") else f"{value:.1f} {unit}"
        value /= base
    return f"{value:,.1f} {units[-1]}"


_bytes = _formatter(lambda v: _scaled(v, ("B", "kB", "MB", "GB", "TB"), 1000.0))
_compact = _formatter(lambda v: _scaled(v, ("", "k", "M", "B", "T"), 1000.0).replace(" ", ""))


@_formatter
def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.2f} s" if seconds < 10 else f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} m {int(seconds % 60):02d} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} m"


def _metric_value(metric: str, value: Any) -> str:
    return _pct(value) if metric in plots.ACCURACY_METRICS else _float(value, 3)

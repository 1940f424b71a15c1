"""The probe-level parts of the report's view-model: final scores, capability plots and the harness check.

Inputs are ``metrics.jsonl`` rows of kind ``probe`` and, for the harness section, rows that set in-loop
values beside lm-evaluation-harness values (computed on the collecting side, see
:mod:`pretrainlab.report.build`). Plots come from :mod:`pretrainlab.report.plots`.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from pretrainlab.report import formatting as fmt
from pretrainlab.report import plots
from pretrainlab.report import view as v

_HARNESS_HEAD = ["capability", "split", "metric", "in-loop", "harness", "probes", "agreement"]
_DIFF_HEAD = ["prompt", "answer", "harness output", "in-loop prediction", "metric", "harness", "in-loop"]
_DIFF_TEXTS = ("prompt", "answer", "harness_output", "in_loop_prediction")
_MAX_DIFFS = 20


def figure(
    plot: plots.Plot, caption: str, capability: str | None = None, kind: str = "emergence"
) -> v.Figure:
    """A rendered plot with its caption."""
    return v.Figure(plot.data_uri, plot.alt, caption, capability, kind)


def score_table(scores: list[dict[str, Any]]) -> v.Table:
    """Final capability scores: one row per capability and split, one column per metric."""
    metrics = sorted({str(r["metric"]) for r in scores}, key=plots.metric_key)
    cells: dict[tuple[str, str], dict[str, Any]] = defaultdict(dict)
    for r in scores:
        cells[(str(r["capability"]), str(r["split"]))][str(r["metric"])] = r.get("value")
    rows, previous = [], None
    for capability, split in sorted(cells, key=lambda k: (k[0], plots.split_key(k[1]))):
        values = cells[(capability, split)]
        rows.append(
            [capability if capability != previous else "", split]
            + [fmt.metric_value(m, values.get(m)) for m in metrics]
        )
        previous = capability
    head = ["capability", "split"] + [fmt.metric_label(m) for m in metrics]
    return v.table(head, rows, key_cols=2, numeric_from=2)


def capabilities(
    probes: list[dict[str, Any]], boundaries: list[tuple[float, str]]
) -> tuple[v.Capability, ...]:
    """Per capability: probe metrics against tokens seen and, for grouped probes, the final group values."""
    out = []
    for capability in sorted({str(r["capability"]) for r in probes}):
        plot = plots.emergence_plot(probes, capability, boundaries)
        emergence = (
            figure(plot, "Probe metrics against tokens seen, one line per split.", capability)
            if plot
            else None
        )
        grouped = plots.group_plot(probes, capability)
        if grouped:
            step, table = _group_table(probes, capability)
            out.append(
                v.Capability(
                    capability,
                    emergence,
                    figure(grouped, "Final value per probe group.", capability, kind="groups"),
                    step,
                    table,
                )
            )
        else:
            out.append(v.Capability(capability, emergence))
    return tuple(out)


def _group_table(probes: list[dict[str, Any]], capability: str) -> tuple[str, v.Table]:
    """The step of the last grouped probe rows of ``capability``, and their values per group and split."""
    rows = [r for r in probes if r.get("capability") == capability and r.get("group") is not None]
    last = max(r["step"] for r in rows)
    cells: dict[tuple[str, str], dict[str, Any]] = defaultdict(dict)
    for r in rows:
        if r["step"] == last:
            cells[(str(r["group"]), str(r["split"]))][str(r["metric"])] = r.get("value")
    metrics = sorted({m for x in cells.values() for m in x}, key=plots.metric_key)
    body = [
        [g, s] + [fmt.metric_value(m, cells[(g, s)].get(m)) for m in metrics]
        for g, s in sorted(cells, key=lambda k: (plots.group_key(k[0]), plots.split_key(k[1])))
    ]
    head = ["group", "split"] + [fmt.metric_label(m) for m in metrics]
    return fmt.integer(last), v.table(head, body, key_cols=2, numeric_from=2)


def harness_view(comparison: list[dict[str, Any]], summary: dict[str, Any] | None) -> v.Harness:
    """In-loop and lm-evaluation-harness values of the final step side by side, and their agreement.

    ``comparison`` rows are ``{capability, split, metric, step, in_loop, harness, n}`` (``in_loop`` is
    ``None`` where the in-loop eval has no row at that step); ``summary`` is harness/summary.json.
    """
    if not comparison:
        return v.Harness()
    version = f" {summary['lm_eval_version']}" if summary and summary.get("lm_eval_version") else ""
    body, classes = [], []
    for r in sorted(
        comparison, key=lambda r: (r["capability"], plots.split_key(str(r["split"])), r["metric"])
    ):
        same = r["in_loop"] is not None and r["in_loop"] == r["harness"]
        mark = (
            v.Cell(fmt.DASH)
            if r["in_loop"] is None
            else (v.Cell("✓ same", "ok") if same else v.Cell("✗ differs", "no"))
        )
        body.append(
            [
                str(r["capability"]),
                str(r["split"]),
                fmt.metric_label(r["metric"]),
                fmt.metric_value(r["metric"], r["in_loop"]),
                fmt.metric_value(r["metric"], r["harness"]),
                fmt.integer(r["n"]),
                mark,
            ]
        )
        classes.append("" if r["in_loop"] is None else ("correct" if same else "wrong"))
    table = v.table(_HARNESS_HEAD, body, key_cols=3, numeric_cols={3, 4, 5}, row_classes=classes)
    results = summary.get("results") if summary else None
    return v.Harness(
        step=fmt.integer(comparison[0]["step"]),
        version=version,
        table=table,
        per_probe=_per_probe((summary or {}).get("per_probe")),
        results=str(results) if results else None,
    )


def _per_probe(per_probe: dict[str, Any] | None) -> v.PerProbe | None:
    """How many probe verdicts agree with the in-loop scoring, and the first probes that differ."""
    if not per_probe:
        return None
    compared, differ = per_probe.get("compared", 0), per_probe.get("disagree", 0)
    diffs = per_probe.get("disagreements") or []
    table = None
    if diffs:
        cells = [
            [v.Cell(str(d.get(k, "")), "mono") for k in _DIFF_TEXTS]
            + [str(d.get("metric", "")), str(d.get("harness")), str(d.get("in_loop"))]
            for d in diffs[:_MAX_DIFFS]
        ]
        table = v.table(_DIFF_HEAD, cells, key_cols=0, wrap_cols={0, 1, 2, 3})
    return v.PerProbe(
        fmt.integer(compared - differ), fmt.integer(compared), fmt.integer(differ) if differ else None, table
    )

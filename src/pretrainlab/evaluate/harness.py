"""The run's probes as lm-evaluation-harness tasks, scored on the HF export (`pretrainlab eval --harness`).

Tasks. For each capability, the probes the in-loop eval scores (`sample_probes` with the run's
`eval.max_probes` and seed, so the very same probes) go to a JSONL file and a `generate_until` task
`pretrainlab_<capability>` scored by exact match; probes with choices also go to a `multiple_choice`
task `pretrainlab_<capability>_choice` scored by accuracy. The group `pretrainlab` holds every
generation task, the tag `pretrainlab_choice` every choice task. JSONL rows keep the probe's split and
group, so the per-sample log splits the score as the in-loop rows do.

Why the two measurements are the same one. In-loop `exact_match` (see `evaluate.probes`) is 1 iff,
teacher-forced on the prompt's last `seq_len - len(answer)` tokens, the argmax at every answer position
is the answer's token and the argmax after the answer is a terminator (EOS or a token whose text starts
with a newline). That is what greedy decoding of `len(answer) + 1` tokens from that same window
produces, cut at the first newline or EOS. So each generation task asks lm-eval for exactly that:

  * `until: ["\\n", EOS]`, `max_gen_toks: len(answer) + 1` (the extra token must be a terminator),
    no stripping, case or punctuation folding: the output must equal the answer byte for byte
    (answers begin with a space, and `target_delimiter` is empty);
  * the model's `max_length` is `seq_len + 1`: lm-eval keeps the last `max_length - max_gen_toks` =
    `seq_len - len(answer)` prompt tokens, the in-loop window, and never feeds more than `seq_len`
    positions. When every prompt of a capability fits whole, one task with the capability's longest
    answer serves all its probes; otherwise (prompts cut to the window) the capability becomes a group
    of tasks `pretrainlab_<capability>_a<k>`, one per answer length k, so every probe gets its own window.

Choice accuracy is lm-eval's `acc` (argmax of summed log-likelihoods) on a second run with
`max_length = seq_len - 1`, which makes lm-eval score each choice with the same window as the in-loop
pass. What can still differ, and is counted per probe in `summary.json`: greedy text that spells the
answer with other tokens than its own encoding (a hit for the harness, a miss in-loop), float ties
broken differently by two implementations of the same model, a choice tie (the in-loop rule needs the
gold answer strictly ahead), and an in-loop eval run under bf16 autocast (on a GPU) against this float32
one.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import re
import shutil
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pretrainlab.train.callbacks import read_metrics

PREFIX = "pretrainlab"
GROUP = PREFIX  # the group of every generation task
CHOICE_TAG = f"{PREFIX}_choice"  # the tag of every multiple-choice task
HARNESS_DIR = "harness"  # runs/NAME/harness: tasks/, results.json, samples/, summary.json
HARNESS_METRICS = ("exact_match", "choice_acc")
TASK_VERSION = 1
INSTALL_HINT = "pip install 'pretrainlab[eval]'"


class HarnessError(Exception):
    """The harness cannot run on this run; the message says why."""


def lm_eval_available() -> bool:
    return importlib.util.find_spec("lm_eval") is not None


# -- the run --------------------------------------------------------------------------------------


@dataclass
class RunInfo:
    """What the harness needs of a finished train stage, all read from its manifest."""

    stage: Path
    run_root: Path
    manifest: dict[str, Any]
    tokenizer_path: Path
    probes_path: Path
    seq_len: int
    max_probes: int
    seed: int
    step: int

    @property
    def harness_dir(self) -> Path:
        return self.run_root / HARNESS_DIR


def run_info(stage: Path) -> RunInfo:
    from pretrainlab.pipeline import read_manifest

    manifest = read_manifest(stage) or {}
    if manifest.get("stage") != "train":
        raise HarnessError(f"{stage}: not a finished train stage")
    run_root = stage.parent.parent
    inputs, config = manifest.get("inputs", {}), manifest.get("config", {})
    for key in ("generate", "tokenize"):
        if key not in inputs:
            raise HarnessError(f"{stage}: manifest names no {key} input")
    info = RunInfo(
        stage=stage,
        run_root=run_root,
        manifest=manifest,
        tokenizer_path=run_root / "tokenize" / inputs["tokenize"] / "tokenizer.json",
        probes_path=run_root / "generate" / inputs["generate"] / "probes.parquet",
        seq_len=int(config["train"]["seq_len"]),
        max_probes=int(config["eval"]["max_probes"]),
        seed=int(config["seed"]),
        step=int(manifest["steps"]),
    )
    for path in (info.tokenizer_path, info.probes_path):
        if not path.is_file():
            raise HarnessError(f"{path}: missing")
    return info


def run_probes(info: RunInfo) -> list[dict[str, Any]]:
    """The probes the in-loop eval scored: the same seeded sample of at most max_probes per group."""
    import pyarrow.parquet as pq

    from pretrainlab.train.stage import sample_probes

    return sample_probes(pq.read_table(info.probes_path).to_pylist(), info.max_probes, info.seed)


# -- writing the tasks ----------------------------------------------------------------------------


def _meta(probe: dict[str, Any]) -> dict[str, Any]:
    meta = probe.get("meta") or {}
    return json.loads(meta) if isinstance(meta, str) else meta


def _slug(capability: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", capability).strip("_") or "capability"


@dataclass
class HarnessTask:
    """One lm-eval task written to disk."""

    name: str
    capability: str
    output_type: str  # generate_until or multiple_choice
    indices: list[int]  # positions of its probes in the probe list
    max_gen_toks: int | None = None
    yaml_path: Path | None = None
    data_path: Path | None = None


@dataclass
class TaskSet:
    """Every task written for a run, and the probes they cover."""

    tasks_dir: Path
    probes: list[dict[str, Any]]
    generate: list[HarnessTask] = field(default_factory=list)
    choice: list[HarnessTask] = field(default_factory=list)
    groups: dict[str, list[str]] = field(default_factory=dict)  # capability group -> its tasks
    windowed: int = 0  # probes whose prompt is cut to the in-loop window (seq_len - answer tokens)

    @property
    def generate_targets(self) -> list[str]:
        """Names that cover every generation task once: a leaf task or its capability's group."""
        names = []
        for task in self.generate:
            group = next((g for g, members in self.groups.items() if task.name in members), None)
            name = group or task.name
            if name not in names:
                names.append(name)
        return names


def _record(index: int, probe: dict[str, Any]) -> dict[str, Any]:
    meta = _meta(probe)
    choices = probe.get("choices") or None
    return {
        "index": index,
        "id": probe["id"],
        "capability": probe["capability"],
        "exercise": probe.get("exercise"),
        "split": meta.get("split"),
        "group": None if meta.get("group") is None else str(meta.get("group")),
        "prompt": probe["prompt"],
        "answer": probe["answer"],
        "choices": choices,
        "gold": choices.index(probe["answer"]) if choices and probe["answer"] in choices else None,
        "meta": json.dumps(meta, sort_keys=True),
    }


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")


def _task_yaml(task: HarnessTask, data_path: Path, cache_dir: Path, eos: str) -> dict[str, Any]:
    common = {
        "task": task.name,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(data_path.resolve())}, "cache_dir": str(cache_dir)},
        "test_split": "test",
        "doc_to_text": "prompt",
        "target_delimiter": "",  # answers and choices begin with their own space
        "num_fewshot": 0,
    }
    if task.output_type == "multiple_choice":
        return {
            **common,
            "tag": CHOICE_TAG,
            "output_type": "multiple_choice",
            "doc_to_target": "gold",
            "doc_to_choice": "choices",
            "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
            "metadata": {"version": TASK_VERSION, "capability": task.capability},
        }
    return {
        **common,
        "output_type": "generate_until",
        "doc_to_target": "answer",
        "generation_kwargs": {
            "until": ["\n", eos],
            "max_gen_toks": task.max_gen_toks,
            "do_sample": False,
            "temperature": 0.0,
        },
        "metric_list": [
            {
                "metric": "exact_match",
                "aggregation": "mean",
                "higher_is_better": True,
                "ignore_case": False,
                "ignore_punctuation": False,
            }
        ],
        "metadata": {"version": TASK_VERSION, "capability": task.capability},
    }


def _group_yaml(name: str, members: list[str]) -> dict[str, Any]:
    return {
        "group": name,
        "task": members,
        "aggregate_metric_list": [{"metric": "exact_match", "aggregation": "mean", "weight_by_size": True}],
        "metadata": {"version": TASK_VERSION},
    }


class _Dumper(yaml.SafeDumper):
    """Strings with a newline in double quotes ("\\n"), so that `until` reads as it is meant."""


_Dumper.add_representer(
    str,
    lambda dumper, s: dumper.represent_scalar("tag:yaml.org,2002:str", s, style='"' if "\n" in s else None),
)


def _dump_yaml(path: Path, data: dict[str, Any]) -> None:
    text = yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True)
    path.write_text(text, encoding="utf-8")


def write_tasks(
    probes: list[dict[str, Any]], tokenizer: Any, seq_len: int, tasks_dir: Path, eos: str | None = None
) -> TaskSet:
    """Write the lm-eval tasks (YAML + JSONL) of `probes` into `tasks_dir`, replacing what was there.

    `tokenizer` is the run's `tokenizers.Tokenizer`: answer lengths in its tokens set `max_gen_toks`
    and decide whether a capability needs one task per answer length (see the module docstring).
    """
    from pretrainlab.tokenize.tokenizer import EOS

    eos = eos or EOS
    tasks_dir = Path(tasks_dir)
    tasks_dir.mkdir(parents=True, exist_ok=True)
    for old in [*tasks_dir.glob("*.yaml"), *tasks_dir.glob("*.jsonl")]:
        old.unlink()
    cache_dir = (tasks_dir.parent / ".cache").resolve()
    out = TaskSet(tasks_dir=tasks_dir, probes=probes)
    by_capability: dict[str, list[int]] = defaultdict(list)
    for i, probe in enumerate(probes):
        by_capability[probe["capability"]].append(i)
    slugs: dict[str, str] = {}
    for capability in sorted(by_capability):
        slug = _slug(capability)
        while slug in slugs.values():
            slug += "_"
        slugs[capability] = slug
        indices = by_capability[capability]
        prompt_len = {i: len(tokenizer.encode(probes[i]["prompt"]).ids) for i in indices}
        answer_len = {i: len(tokenizer.encode(probes[i]["answer"]).ids) for i in indices}
        out.windowed += sum(prompt_len[i] + answer_len[i] > seq_len for i in indices)
        longest = max(answer_len.values())
        base = f"{PREFIX}_{slug}"
        if all(prompt_len[i] + longest <= seq_len for i in indices):  # every prompt fits whole
            tasks = [HarnessTask(base, capability, "generate_until", indices, longest + 1)]
        else:
            lengths = sorted({answer_len[i] for i in indices})
            tasks = [
                HarnessTask(
                    f"{base}_a{k}",
                    capability,
                    "generate_until",
                    [i for i in indices if answer_len[i] == k],
                    k + 1,
                )
                for k in lengths
            ]
            out.groups[base] = [t.name for t in tasks]
        with_choices = [i for i in indices if probes[i].get("choices")]
        if with_choices:
            out.choice.append(HarnessTask(f"{base}_choice", capability, "multiple_choice", with_choices))
        out.generate.extend(tasks)

    for task in [*out.generate, *out.choice]:
        task.data_path = tasks_dir / f"{task.name}.jsonl"
        task.yaml_path = tasks_dir / f"{task.name}.yaml"
        _write_jsonl(task.data_path, [_record(i, probes[i]) for i in task.indices])
        _dump_yaml(task.yaml_path, _task_yaml(task, task.data_path, cache_dir, eos))
    for name, members in out.groups.items():
        _dump_yaml(tasks_dir / f"{name}.yaml", _group_yaml(name, members))
    if out.generate:
        _dump_yaml(tasks_dir / f"{GROUP}.yaml", _group_yaml(GROUP, out.generate_targets))
    return out


# -- running lm-eval ------------------------------------------------------------------------------


@contextlib.contextmanager
def _offline_and_quiet():
    """No Hub look-ups (the datasets are local JSONL, the model a local folder), less log noise, and
    the global random states as they were (lm-eval seeds `random`, numpy and torch)."""
    import random

    import numpy as np
    import torch

    rng_states = (random.getstate(), np.random.get_state(), torch.get_rng_state())
    saved = {k: os.environ.get(k) for k in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE")}
    os.environ.update({k: "1" for k in saved})
    loggers = {name: logging.getLogger(name) for name in ("lm_eval", "lm-eval", "datasets", "transformers")}
    levels = {name: lg.level for name, lg in loggers.items()}
    for lg in loggers.values():
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        random.setstate(rng_states[0])
        np.random.set_state(rng_states[1])
        torch.set_rng_state(rng_states[2])
        for name, lg in loggers.items():
            lg.setLevel(levels[name])
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run_lm_eval(
    export_dir: Path,
    tasks_dir: Path,
    tasks: list[str],
    max_length: int,
    batch_size: int = 1,
    device: str = "cpu",
) -> dict[str, Any]:
    """`lm_eval.simple_evaluate` of `tasks` (found under `tasks_dir` only) on the HF folder, float32."""
    with _offline_and_quiet():
        import lm_eval
        from lm_eval.tasks import TaskManager

        manager = TaskManager(include_path=str(tasks_dir), include_defaults=False)
        results = lm_eval.simple_evaluate(
            model="hf",
            model_args=f"pretrained={Path(export_dir).resolve()},dtype=float32,max_length={max_length}",
            tasks=tasks,
            task_manager=manager,
            num_fewshot=0,
            batch_size=batch_size,
            device=device,
            log_samples=True,
            bootstrap_iters=100,  # mean metrics get a closed-form stderr; nothing is resampled
        )
    if results is None:
        raise HarnessError("lm_eval returned no results")
    return results


def _json_default(obj: Any) -> Any:
    try:
        from lm_eval.utils import handle_non_serializable

        return handle_non_serializable(obj)
    except ImportError:  # pragma: no cover
        return str(obj)


def save_results(results: list[dict[str, Any]], out_dir: Path) -> Path:
    """lm-eval's raw results (merged over its runs) as results.json, per-sample logs as samples/TASK.jsonl."""
    samples_dir = out_dir / "samples"
    samples_dir.mkdir(parents=True, exist_ok=True)
    for old in samples_dir.glob("*.jsonl"):
        old.unlink()
    merged: dict[str, Any] = {"runs": []}
    for res in results:
        res = dict(res)
        for task, samples in (res.pop("samples", None) or {}).items():
            with open(samples_dir / f"{task}.jsonl", "w", encoding="utf-8") as f:
                for s in samples:
                    f.write(json.dumps(s, default=_json_default, ensure_ascii=False) + "\n")
        merged["runs"].append(res)
    path = out_dir / "results.json"
    path.write_text(json.dumps(merged, indent=2, default=_json_default, ensure_ascii=False) + "\n")
    return path


# -- reading the results back ---------------------------------------------------------------------


def per_probe_results(task_set: TaskSet, results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per probe, in probe order: capability, split, group, exact_match, choice_acc, output (greedy text).

    The keys match `ProbeSet.per_probe`'s, so `probes.aggregate` forms the rows exactly as in-loop.
    """
    samples: dict[str, list[dict[str, Any]]] = {}
    for res in results:
        samples.update(res.get("samples") or {})
    rows: list[dict[str, Any]] = []
    for i, probe in enumerate(task_set.probes):
        meta = _meta(probe)
        rows.append(
            {
                "index": i,
                "id": probe["id"],
                "capability": probe["capability"],
                "split": meta.get("split"),
                "group": meta.get("group"),
                "exact_match": None,
                "answer_logprob": None,
                "choice_acc": None,
                "output": None,
            }
        )
    for task in [*task_set.generate, *task_set.choice]:
        got = samples.get(task.name)
        if got is None or len(got) != len(task.indices):
            raise HarnessError(
                f"lm_eval logged {0 if got is None else len(got)} samples for {task.name}, "
                f"expected {len(task.indices)}"
            )
        for s in got:
            row = rows[int(s["doc"]["index"])]
            if task.output_type == "generate_until":
                row["exact_match"] = float(s["exact_match"])
                resp = s.get("filtered_resps") or [None]
                row["output"] = resp[0] if isinstance(resp, list) else resp
            else:
                row["choice_acc"] = float(s["acc"])
    missing = [r["id"] for r in rows if r["exact_match"] is None]
    if missing:
        raise HarnessError(f"{len(missing)} probes got no harness result (first: {missing[0]})")
    return rows


def harness_rows(per_probe: list[dict[str, Any]], head: dict[str, Any]) -> list[dict[str, Any]]:
    """metrics.jsonl rows shaped as the in-loop probe rows, of kind `harness`."""
    from pretrainlab.evaluate.probes import aggregate

    return [{**head, **row} for row in aggregate(per_probe)]


def write_metrics(metrics_path: Path, rows: list[dict[str, Any]]) -> None:
    """Replace the harness rows of metrics.jsonl by `rows` (atomically); other rows stay as they are."""
    kept = []
    if metrics_path.exists():
        for line in metrics_path.read_text().splitlines():
            if line.strip() and json.loads(line).get("kind") != "harness":
                kept.append(line if line.endswith("\n") else line + "\n")
    tmp = metrics_path.with_name(f".{metrics_path.name}.harness.tmp")
    tmp.write_text("".join(kept) + "".join(json.dumps(r) + "\n" for r in rows))
    os.replace(tmp, metrics_path)


def comparison(metrics: list[dict[str, Any]], group: bool = False) -> list[dict[str, Any]]:
    """In-loop and harness values side by side, at the step of the harness rows.

    One row per (capability, split[, group], metric) of the harness rows: {capability, split, group,
    metric, step, in_loop, harness, n}; `in_loop` is None where the in-loop eval has no row at that step.
    Ungrouped rows only unless `group`.
    """
    harness = [r for r in metrics if r.get("kind") == "harness" and (group or r.get("group") is None)]
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


# -- the whole evaluation -------------------------------------------------------------------------


def export_is_current(export_dir: Path, info: RunInfo) -> bool:
    """Whether export_dir holds the export of this train stage's final checkpoint."""
    prov = export_dir / "pretrainlab.json"
    if not (prov.is_file() and (export_dir / "model.safetensors").is_file()):
        return False
    try:
        data = json.loads(prov.read_text())
    except json.JSONDecodeError:
        return False
    return (
        data.get("train_hash") == info.manifest.get("hash", info.stage.name)
        and data.get("steps") == info.step
    )


def ensure_export(info: RunInfo) -> tuple[Path, bool]:
    """The run's HF export (runs/NAME/export-hf), re-exported when missing or stale; (path, exported)."""
    from pretrainlab.export import export_hf

    export_dir = info.run_root / "export-hf"
    if export_is_current(export_dir, info):
        return export_dir, False
    return export_hf(info.stage, export_dir), True


def rescore_in_loop(
    info: RunInfo, probes: list[dict[str, Any]], batch_size: int = 128
) -> list[dict[str, Any]]:
    """The in-loop per-probe scores of the final checkpoint (float32, CPU), to compare probe by probe."""
    from pretrainlab.evaluate.probes import ProbeSet
    from pretrainlab.export.hf import load_run_model
    from pretrainlab.tokenize.tokenizer import load_tokenizer

    model, _ = load_run_model(info.stage)
    probe_set = ProbeSet(probes, load_tokenizer(info.tokenizer_path), max_len=info.seq_len)
    return probe_set.per_probe(model, batch_size=batch_size)


def disagreements(
    harness: list[dict[str, Any]], in_loop: list[dict[str, Any]], probes: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Probes whose harness and in-loop verdicts differ, per metric."""
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


@dataclass
class HarnessResult:
    rows: list[dict[str, Any]]
    comparison: list[dict[str, Any]]
    summary: dict[str, Any]
    harness_dir: Path
    export_dir: Path
    exported: bool


def _head(info: RunInfo, metrics: list[dict[str, Any]]) -> dict[str, Any]:
    """kind/step/tokens/flops of the final step, as the in-loop rows of that step give them."""
    at_step = [r for r in metrics if r.get("kind") in ("probe", "train") and r.get("step") == info.step]
    tokens = next((r.get("tokens") for r in at_step if r.get("tokens") is not None), None)
    flops = next((r.get("flops") for r in at_step if r.get("flops") is not None), None)
    return {
        "kind": "harness",
        "step": info.step,
        "tokens": info.manifest.get("tokens_seen") if tokens is None else tokens,
        "flops": info.manifest.get("ledger", {}).get("flops") if flops is None else flops,
    }


def evaluate_harness(
    stage: Path, batch_size: int = 32, device: str | None = None, rescore: bool = True
) -> HarnessResult:
    """Write the tasks, run lm-eval on the (re-)exported model, store rows, raw results and a summary.

    `stage` is a finished train stage (see `export.hf.train_stage_dir`). Harness rows replace earlier
    harness rows in the stage's metrics.jsonl. With `rescore`, the final checkpoint is also scored by
    the in-loop code here, so that summary.json lists every probe on which the two disagree.
    """
    if not lm_eval_available():
        raise HarnessError(f"lm-evaluation-harness is not installed; {INSTALL_HINT}")
    import torch

    from pretrainlab.tokenize.tokenizer import load_tokenizer

    start = time.perf_counter()
    info = run_info(Path(stage))
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    export_dir, exported = ensure_export(info)
    probes = run_probes(info)
    if not probes:
        raise HarnessError(f"{info.probes_path}: no probes to evaluate")
    out_dir = info.harness_dir
    shutil.rmtree(out_dir / ".cache", ignore_errors=True)  # datasets' copies of earlier task files
    task_set = write_tasks(probes, load_tokenizer(info.tokenizer_path), info.seq_len, out_dir / "tasks")

    eval_start = time.perf_counter()
    raw = [run_lm_eval(export_dir, task_set.tasks_dir, [GROUP], info.seq_len + 1, batch_size, device)]
    if task_set.choice:
        raw.append(
            run_lm_eval(export_dir, task_set.tasks_dir, [CHOICE_TAG], info.seq_len - 1, batch_size, device)
        )
    eval_s = time.perf_counter() - eval_start
    results_path = save_results(raw, out_dir)

    per_probe = per_probe_results(task_set, raw)
    metrics_path = info.stage / "metrics.jsonl"
    rows = harness_rows(per_probe, _head(info, read_metrics(metrics_path)))
    write_metrics(metrics_path, rows)
    compared = comparison(read_metrics(metrics_path))

    def rel(path: Path) -> str:  # paths inside the run directory, as seen from it
        try:
            return str(Path(path).resolve().relative_to(info.run_root.resolve()))
        except ValueError:
            return str(path)

    summary: dict[str, Any] = {
        "train_hash": info.manifest.get("hash", info.stage.name),
        "stage": rel(info.stage),
        "step": info.step,
        "export": rel(export_dir),
        "lm_eval_version": _lm_eval_version(),
        "device": device,
        "batch_size": batch_size,
        "seq_len": info.seq_len,
        "probes": len(probes),
        "windowed_probes": task_set.windowed,
        "tasks": [t.name for t in [*task_set.generate, *task_set.choice]],
        "groups": task_set.groups,
        "results": rel(results_path),
        "lm_eval_s": round(eval_s, 2),
        "comparison": compared,
    }
    if rescore:
        in_loop = rescore_in_loop(info, probes)
        diffs = disagreements(per_probe, in_loop, probes)
        summary["per_probe"] = {
            "compared": len(probes),
            "disagree": len(diffs),
            "disagreements": diffs,
        }
    summary["wall_s"] = round(time.perf_counter() - start, 2)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    return HarnessResult(rows, compared, summary, out_dir, export_dir, exported)


def _lm_eval_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("lm_eval")
    except Exception:  # pragma: no cover
        return None


def read_summary(run_root: Path) -> dict[str, Any] | None:
    """runs/NAME/harness/summary.json, if the harness has run."""
    path = Path(run_root) / HARNESS_DIR / "summary.json"
    return json.loads(path.read_text()) if path.is_file() else None

"""`pretrainlab eval --harness`: a finished run's probes scored by lm-evaluation-harness on its HF export,
stored beside the in-loop scores.

The steps, each in its own module: the probes training scored (`train.probes.sample_probes`, same
seed) become lm-eval task files (`evaluate.tasks`); lm-eval runs them offline on the run's HF export,
re-exported when stale (`evaluate.lmeval`); the results become metrics.jsonl rows of kind `harness`
beside the in-loop rows, and are compared with them per metric and probe by probe (`evaluate.compare`).

Files, under the run directory (`runs/<design>/harness`, one per run: it scores the latest training):

    tasks/                 the lm-eval tasks (YAML) and their probes (JSONL)
    results.json           lm-eval's raw results, without samples
    samples/TASK.jsonl     lm-eval's per-sample logs
    summary.json           train hash, step, tasks, timings, the comparison, probes that disagree
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import torch

from pretrainlab.errors import HarnessError
from pretrainlab.evaluate.compare import (
    HARNESS_KIND,
    comparison,
    disagreements,
    harness_rows,
    rescore_in_loop,
    write_metrics,
)
from pretrainlab.evaluate.lmeval import (
    INSTALL_HINT,
    lm_eval_available,
    lm_eval_version,
    per_probe_results,
    run_lm_eval,
    save_results,
)
from pretrainlab.evaluate.tasks import CACHE_DIR, CHOICE_TAG, GROUP, write_tasks
from pretrainlab.export.hf import EXPORT_DIR, PROVENANCE, WEIGHTS, export_hf
from pretrainlab.runs import METRICS, PROBES, TOKENIZER, read_manifest, run_root, sibling_stage, write_atomic
from pretrainlab.tokenize.tokenizer import load_tokenizer
from pretrainlab.train.callbacks import read_metrics
from pretrainlab.train.probes import sample_probes

HARNESS_DIR = "harness"
TASKS = "tasks"
RESULTS = "results.json"
SAMPLES = "samples"
SUMMARY = "summary.json"


def harness_dir(root: Path) -> Path:
    """`runs/<design>/harness` of a run root."""
    return Path(root) / HARNESS_DIR


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
        return harness_dir(self.run_root)

    @property
    def train_hash(self) -> str:
        return self.manifest.get("hash", self.stage.name)


def run_info(stage: Path) -> RunInfo:
    """The RunInfo of a finished train stage; HarnessError if it is unfinished or its inputs are gone."""
    stage = Path(stage)
    manifest = read_manifest(stage) or {}
    if manifest.get("stage") != "train":
        raise HarnessError(f"{stage}: not a finished train stage")
    inputs, config = manifest.get("inputs", {}), manifest.get("config", {})
    for key in ("generate", "tokenize"):
        if key not in inputs:
            raise HarnessError(f"{stage}: manifest names no {key} input")
    info = RunInfo(
        stage=stage,
        run_root=run_root(stage),
        manifest=manifest,
        tokenizer_path=sibling_stage(stage, "tokenize", inputs["tokenize"]) / TOKENIZER,
        probes_path=sibling_stage(stage, "generate", inputs["generate"]) / PROBES,
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
    return sample_probes(pq.read_table(info.probes_path).to_pylist(), info.max_probes, info.seed)


def export_is_current(export_dir: Path, info: RunInfo) -> bool:
    """Whether export_dir holds the export of this train stage's final checkpoint."""
    prov = export_dir / PROVENANCE
    if not (prov.is_file() and (export_dir / WEIGHTS).is_file()):
        return False
    try:
        data = json.loads(prov.read_text())
    except json.JSONDecodeError:
        return False
    return data.get("train_hash") == info.train_hash and data.get("steps") == info.step


def ensure_export(info: RunInfo) -> tuple[Path, bool]:
    """The run's HF export (runs/NAME/export-hf), re-exported when missing or stale; (path, exported)."""
    export_dir = info.run_root / EXPORT_DIR
    if export_is_current(export_dir, info):
        return export_dir, False
    return export_hf(info.stage, export_dir), True


@dataclass
class HarnessResult:
    """What `evaluate_harness` stored, for the command line to show."""

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
        "kind": HARNESS_KIND,
        "step": info.step,
        "tokens": info.manifest.get("tokens_seen") if tokens is None else tokens,
        "flops": info.manifest.get("ledger", {}).get("flops") if flops is None else flops,
    }


def evaluate_harness(
    stage: Path, batch_size: int = 32, device: str | None = None, rescore: bool = True
) -> HarnessResult:
    """Write the tasks, run lm-eval on the (re-)exported model, store rows, raw results and a summary.

    `stage` is a finished train stage (the command line finds it from a run name or design). Harness
    rows replace earlier harness rows in the stage's metrics.jsonl. With `rescore`, the final checkpoint
    is also scored by the in-loop code here, so that summary.json lists every probe on which the two
    disagree.
    """
    if not lm_eval_available():
        raise HarnessError(f"lm-evaluation-harness is not installed; {INSTALL_HINT}")
    start = time.perf_counter()
    info = run_info(Path(stage))
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    export_dir, exported = ensure_export(info)
    probes = run_probes(info)
    if not probes:
        raise HarnessError(f"{info.probes_path}: no probes to evaluate")
    out_dir = info.harness_dir
    shutil.rmtree(out_dir / CACHE_DIR, ignore_errors=True)  # datasets' copies of earlier task files
    task_set = write_tasks(probes, load_tokenizer(info.tokenizer_path), info.seq_len, out_dir / TASKS)

    eval_start = time.perf_counter()
    raw = [run_lm_eval(export_dir, task_set.tasks_dir, [GROUP], info.seq_len + 1, batch_size, device)]
    if task_set.choice:
        raw.append(
            run_lm_eval(export_dir, task_set.tasks_dir, [CHOICE_TAG], info.seq_len - 1, batch_size, device)
        )
    eval_s = time.perf_counter() - eval_start
    results_path = save_results(raw, out_dir / RESULTS, out_dir / SAMPLES)

    per_probe = per_probe_results(task_set, raw)
    metrics_path = info.stage / METRICS
    rows = harness_rows(per_probe, _head(info, read_metrics(metrics_path)))
    write_metrics(metrics_path, rows)
    compared = comparison(read_metrics(metrics_path))

    def rel(path: Path) -> str:  # paths inside the run directory, as seen from it
        try:
            return str(Path(path).resolve().relative_to(info.run_root.resolve()))
        except ValueError:
            return str(path)

    summary: dict[str, Any] = {
        "train_hash": info.train_hash,
        "stage": rel(info.stage),
        "step": info.step,
        "export": rel(export_dir),
        "lm_eval_version": lm_eval_version(),
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
        in_loop = rescore_in_loop(info.stage, info.tokenizer_path, info.seq_len, probes)
        diffs = disagreements(per_probe, in_loop, probes)
        summary["per_probe"] = {"compared": len(probes), "disagree": len(diffs), "disagreements": diffs}
    summary["wall_s"] = round(time.perf_counter() - start, 2)
    write_atomic(out_dir / SUMMARY, json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    return HarnessResult(rows, compared, summary, out_dir, export_dir, exported)


def read_summary(root: Path) -> dict[str, Any] | None:
    """runs/NAME/harness/summary.json, if the harness has run."""
    path = harness_dir(root) / SUMMARY
    return json.loads(path.read_text()) if path.is_file() else None

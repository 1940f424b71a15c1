"""Running lm-evaluation-harness offline on local task files and a local model folder, and reading its
per-sample logs back as one result per probe.

lm-eval is an optional dependency (the `eval` extra): nothing here imports it until a run is asked for,
and `lm_eval_available` lets the command line say how to install it instead of failing on an import.
Runs are offline (the datasets are local JSONL, the model a local folder) and leave the global random
states as they found them, since lm-eval seeds `random`, numpy and torch.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pretrainlab.errors import HarnessError
from pretrainlab.evaluate.tasks import TaskSet
from pretrainlab.runs import write_atomic
from pretrainlab.train.probes import probe_meta

INSTALL_HINT = "pip install 'pretrainlab[eval]'"


def lm_eval_available() -> bool:
    """Whether lm-evaluation-harness can be imported (without importing it: that takes seconds)."""
    return importlib.util.find_spec("lm_eval") is not None


def lm_eval_version() -> str | None:
    """The installed lm_eval version, recorded beside its results."""
    try:
        from importlib.metadata import version

        return version("lm_eval")
    except Exception:  # pragma: no cover
        return None


@contextlib.contextmanager
def _offline_and_quiet() -> Iterator[None]:
    """No Hub look-ups, less log noise, and the global random states as they were."""
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
    """`lm_eval.simple_evaluate` of `tasks` (found under `tasks_dir` only) on the HF folder, float32.

    `max_length` sets the window lm-eval feeds the model (see `evaluate.tasks` for the values that
    make it the in-loop window).
    """
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
    """lm-eval's own fallback for what its results hold besides JSON (numpy values, functions)."""
    try:
        from lm_eval.utils import handle_non_serializable

        return handle_non_serializable(obj)
    except ImportError:  # pragma: no cover
        return str(obj)


def save_results(results: list[dict[str, Any]], results_path: Path, samples_dir: Path) -> Path:
    """lm-eval's raw results (merged over its runs) at `results_path`, per-sample logs as
    `samples_dir`/TASK.jsonl; returns `results_path`."""
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
    write_atomic(results_path, json.dumps(merged, indent=2, default=_json_default, ensure_ascii=False) + "\n")
    return results_path


def per_probe_results(task_set: TaskSet, results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per probe, in probe order: capability, split, group, exact_match, choice_acc, output (greedy text).

    The keys match `ProbeSet.per_probe`'s, so `train.probes.aggregate` forms the rows exactly as in-loop.
    """
    samples: dict[str, list[dict[str, Any]]] = {}
    for res in results:
        samples.update(res.get("samples") or {})
    rows: list[dict[str, Any]] = []
    for i, probe in enumerate(task_set.probes):
        meta = probe_meta(probe)
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

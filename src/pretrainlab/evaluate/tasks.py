"""The run's probes as lm-evaluation-harness task files, set up so lm-eval scores them as the in-loop eval.

Tasks. For each capability, the probes the in-loop eval scores (`sample_probes` with the run's
`eval.max_probes` and seed, so the very same probes) go to a JSONL file and a `generate_until` task
`pretrainlab_<capability>` scored by exact match; probes with choices also go to a `multiple_choice`
task `pretrainlab_<capability>_choice` scored by accuracy. The group `pretrainlab` holds every
generation task, the tag `pretrainlab_choice` every choice task. JSONL rows keep the probe's split and
group, so the per-sample log splits the score as the in-loop rows do.

Why the two measurements are the same one. In-loop `exact_match` (see `train.probes`) is 1 iff,
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
pass. What can still differ is listed in `evaluate.compare`.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from tokenizers import Tokenizer

from pretrainlab.tokenize.tokenizer import EOS
from pretrainlab.train.probes import probe_meta

PREFIX = "pretrainlab"
GROUP = PREFIX  # the group of every generation task
CHOICE_TAG = f"{PREFIX}_choice"  # the tag of every multiple-choice task
TASK_VERSION = 1
CACHE_DIR = ".cache"  # datasets' copies of the task files, beside the tasks folder


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


def _slug(capability: str) -> str:
    """A task-name-safe form of a capability name (lm-eval names are also file names)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", capability).strip("_") or "capability"


def _record(index: int, probe: dict[str, Any]) -> dict[str, Any]:
    """A probe as one JSONL row; `index` (its position in the probe list) maps samples back to probes."""
    meta = probe_meta(probe)
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
    """The lm-eval task config of `task` (see the module docstring for why each setting)."""
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
    """A group whose exact match is the mean over its members' probes (weighted by size)."""
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
    probes: list[dict[str, Any]], tokenizer: Tokenizer, seq_len: int, tasks_dir: Path, eos: str | None = None
) -> TaskSet:
    """Write the lm-eval tasks (YAML + JSONL) of `probes` into `tasks_dir`, replacing what was there.

    `tokenizer` is the run's: answer lengths in its tokens set `max_gen_toks` and decide whether a
    capability needs one task per answer length (see the module docstring). lm-eval's dataset cache
    goes to CACHE_DIR beside `tasks_dir`.
    """
    eos = eos or EOS
    tasks_dir = Path(tasks_dir)
    tasks_dir.mkdir(parents=True, exist_ok=True)
    for old in [*tasks_dir.glob("*.yaml"), *tasks_dir.glob("*.jsonl")]:
        old.unlink()
    cache_dir = (tasks_dir.parent / CACHE_DIR).resolve()
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

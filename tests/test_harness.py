"""`pretrainlab eval RUN --harness`: lm-evaluation-harness scores the probes exactly as the in-loop eval."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import yaml
from rich.console import Console
from typer.testing import CliRunner

import pretrainlab.evaluate.harness as harness
import pretrainlab.evaluate.lmeval as lmeval
from pretrainlab.cli import app
from pretrainlab.design import parse_design
from pretrainlab.evaluate.compare import write_metrics
from pretrainlab.evaluate.tasks import CHOICE_TAG, GROUP, write_tasks
from pretrainlab.pipeline import Pipeline
from pretrainlab.tokenize.tokenizer import EOS, train_bpe

STEPS = 150


# -- the task files -------------------------------------------------------------------------------


def _probe(i: int, capability: str, prompt: str, answer: str, split: str, group, choices=None) -> dict:
    meta = {"split": split, **({} if group is None else {"group": group})}
    return {
        "id": f"p{i}",
        "capability": capability,
        "exercise": capability,
        "prompt": prompt,
        "answer": answer,
        "choices": choices,
        "meta": json.dumps(meta),
    }


def test_task_files(tmp_path: Path) -> None:
    texts = ["Q: Where was Ann born? A: Paris\n", "+ 3 4 = 7\n", "edge ab cd\nedge cd ef\n? 2 ab = ef\n"] * 30
    tok = train_bpe(texts, vocab_size=300)
    long_prompt = "edge ab cd\n" * 40 + "? 1 ab ="  # longer than the context: windowed
    probes = [
        _probe(0, "person-facts", "Q: Where was Ann born? A:", " Paris", "seen", "attr=city"),
        _probe(1, "person-facts", "Q: Where was Bob born? A:", " New Paris City", "heldout", "attr=city"),
        _probe(2, "arithmetic", "+ 3 4 =", " 7", "all", 1, choices=[" 6", " 7", " 8"]),
        _probe(3, "arithmetic", "+ 3 5 =", " 8", "all", 2),
        _probe(4, "multi-hop", long_prompt, " cd", "all", "k=1"),
        _probe(5, "multi-hop", "edge ab cd\n? 1 ab =", " cd ef", "all", "k=2"),
    ]
    seq_len = 32
    tasks = write_tasks(probes, tok, seq_len, tmp_path / "tasks")

    names = sorted(t.name for t in tasks.generate)
    assert names == [
        "pretrainlab_arithmetic",
        "pretrainlab_multi-hop_a1",
        "pretrainlab_multi-hop_a2",
        "pretrainlab_person-facts",
    ]
    assert [t.name for t in tasks.choice] == ["pretrainlab_arithmetic_choice"]
    assert tasks.groups == {"pretrainlab_multi-hop": ["pretrainlab_multi-hop_a1", "pretrainlab_multi-hop_a2"]}
    assert tasks.windowed == 1
    assert tasks.generate_targets == [
        "pretrainlab_arithmetic",
        "pretrainlab_multi-hop",
        "pretrainlab_person-facts",
    ]

    # every probe is in exactly one generation task; JSONL lines are the probes, fields intact
    lines = []
    for task in tasks.generate:
        rows = [json.loads(line) for line in task.data_path.read_text().splitlines()]
        assert len(rows) == len(task.indices)
        lines += rows
    assert sorted(r["index"] for r in lines) == list(range(len(probes)))
    by_index = {r["index"]: r for r in lines}
    for i, p in enumerate(probes):
        row, meta = by_index[i], json.loads(p["meta"])
        assert (row["id"], row["prompt"], row["answer"]) == (p["id"], p["prompt"], p["answer"])
        assert row["split"] == meta["split"]
        assert row["group"] == (None if "group" not in meta else str(meta["group"]))
    assert sum(len(t.indices) for t in tasks.generate) == len(probes)

    config = yaml.safe_load((tmp_path / "tasks" / "pretrainlab_person-facts.yaml").read_text())
    assert config["output_type"] == "generate_until"
    assert config["doc_to_text"] == "prompt" and config["doc_to_target"] == "answer"
    assert config["target_delimiter"] == ""
    assert config["generation_kwargs"]["until"] == ["\n", EOS]
    longest = max(len(tok.encode(p["answer"]).ids) for p in probes[:2])
    assert config["generation_kwargs"]["max_gen_toks"] == longest + 1
    assert config["generation_kwargs"]["do_sample"] is False
    assert config["metric_list"][0]["metric"] == "exact_match"
    assert not config["metric_list"][0]["ignore_case"] and not config["metric_list"][0]["ignore_punctuation"]
    data_file = Path(config["dataset_kwargs"]["data_files"]["test"])
    assert config["dataset_path"] == "json" and data_file.is_absolute() and data_file.is_file()

    hop = yaml.safe_load((tmp_path / "tasks" / "pretrainlab_multi-hop_a2.yaml").read_text())
    assert hop["generation_kwargs"]["max_gen_toks"] == 3

    choice = yaml.safe_load((tmp_path / "tasks" / "pretrainlab_arithmetic_choice.yaml").read_text())
    assert choice["output_type"] == "multiple_choice" and choice["tag"] == CHOICE_TAG
    assert (choice["doc_to_choice"], choice["doc_to_target"]) == ("choices", "gold")
    (row,) = [json.loads(line) for line in Path(choice["dataset_kwargs"]["data_files"]["test"]).open()]
    assert row["choices"] == [" 6", " 7", " 8"] and row["gold"] == 1

    group = yaml.safe_load((tmp_path / "tasks" / "pretrainlab_multi-hop.yaml").read_text())
    assert group["task"] == ["pretrainlab_multi-hop_a1", "pretrainlab_multi-hop_a2"]
    top = yaml.safe_load((tmp_path / "tasks" / "pretrainlab.yaml").read_text())
    assert top["group"] == GROUP and top["task"] == tasks.generate_targets

    # rewriting replaces the files instead of piling them up
    write_tasks(probes[:2], tok, seq_len, tmp_path / "tasks")
    assert sorted(p.name for p in (tmp_path / "tasks").iterdir()) == [
        "pretrainlab.yaml",
        "pretrainlab_person-facts.jsonl",
        "pretrainlab_person-facts.yaml",
    ]


def test_write_metrics_replaces_harness_rows(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    probe = {"kind": "probe", "step": 5, "capability": "c", "split": "all", "group": None}
    path.write_text(json.dumps({"kind": "train", "step": 5}) + "\n" + json.dumps(probe) + "\n")
    rows = [{"kind": "harness", "step": 5, "capability": "c", "split": "all", "group": None, "value": 1.0}]
    write_metrics(path, rows)
    write_metrics(path, rows)
    kinds = [json.loads(line)["kind"] for line in path.read_text().splitlines()]
    assert kinds == ["train", "probe", "harness"]


def test_cli_without_lm_eval_names_the_extra(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(lmeval, "lm_eval_available", lambda: False)
    result = CliRunner().invoke(app, ["eval", "tiny", "--harness", "--runs", str(tmp_path)])
    assert result.exit_code == 1
    assert "pip install 'pretrainlab[eval]'" in result.output
    assert len(result.output.strip().splitlines()) == 1


# -- a trained run ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def one_thread():
    """The tiny model gains nothing from threads; on a busy two-core machine they only contend."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, one_thread) -> Path:
    """The recall setup of the tiny design, trained long enough that some probes are right, some wrong."""
    pytest.importorskip("lm_eval")
    pytest.importorskip("transformers")
    from tests.conftest import TINY

    design = json.loads(json.dumps(TINY))
    design["exercises"][0].update(people=8, multiplicity=2, share=0.8)
    design["exercises"][1]["documents"] = 100
    design["exercises"][2]["documents"] = 100
    design["train"].update(lr=5e-3, checkpoint_every=STEPS, phases=[{"name": "pretrain", "steps": STEPS}])
    design["eval"].update(every=STEPS, max_probes=10)
    runs = tmp_path_factory.mktemp("harness") / "runs"
    Pipeline(parse_design(design), runs, console=Console(quiet=True)).run("train")
    return runs


def _rows(metrics: Path, kind: str) -> list[dict]:
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    return [r for r in rows if r["kind"] == kind]


def test_harness_agrees_with_in_loop(trained: Path) -> None:
    result = CliRunner().invoke(app, ["eval", "tiny", "--harness", "--runs", str(trained)])
    assert result.exit_code == 0, result.output
    assert "In-loop vs lm-evaluation-harness" in result.stdout and "report:" in result.stdout

    (metrics,) = trained.glob("tiny/train/*/metrics.jsonl")
    probe, rows = _rows(metrics, "probe"), _rows(metrics, "harness")
    assert rows and {r["step"] for r in rows} == {STEPS}
    final = {
        (r["capability"], r["split"], r["group"], r["metric"]): r
        for r in probe
        if r["step"] == STEPS and r["metric"] == "exact_match"
    }
    got = {(r["capability"], r["split"], r["group"], r["metric"]): r for r in rows}
    assert set(got) == set(final)  # every (capability, split) and every group, nothing else
    for key, r in final.items():
        assert got[key]["value"] == r["value"], key  # exactly, not approximately
        assert got[key]["n"] == r["n"]
        assert (got[key]["tokens"], got[key]["flops"]) == (r["tokens"], r["flops"])
    overall = [r for r in final.values() if r["group"] is None]
    right = sum(r["value"] * r["n"] for r in overall)
    assert 0 < right < sum(r["n"] for r in overall), "the run should get some probes right and some wrong"

    summary = json.loads((trained / "tiny" / "harness" / "summary.json").read_text())
    assert summary["per_probe"]["disagree"] == 0, summary["per_probe"]["disagreements"]
    assert summary["windowed_probes"] > 0  # long multi-hop prompts: the window rule is exercised
    raw = json.loads((trained / "tiny" / "harness" / "results.json").read_text())
    assert "pretrainlab_person-facts" in raw["runs"][0]["results"]
    assert (trained / "tiny" / "export-hf" / "model.safetensors").is_file()

    report = (trained / "tiny" / "report.html").read_text()
    assert "Standard harness (lm-evaluation-harness)" in report and '<section id="harness">' in report

    # re-running replaces the harness rows instead of adding to them
    write_metrics(metrics, rows)
    assert len(_rows(metrics, "harness")) == len(rows)
    shown = CliRunner().invoke(app, ["eval", "tiny", "--runs", str(trained)])  # no --harness: just the table
    assert shown.exit_code == 0 and "person-facts" in shown.stdout


def test_choice_tasks_agree_with_in_loop(trained: Path, tmp_path: Path) -> None:
    """Probes with choices (no built-in world has them) scored by lm-eval's multiple_choice `acc`."""
    from pretrainlab.export.hf import load_run_model
    from pretrainlab.runs import latest_stage_dir
    from pretrainlab.tokenize.tokenizer import load_tokenizer
    from pretrainlab.train.probes import ProbeSet

    info = harness.run_info(latest_stage_dir(trained / "tiny", "train"))
    export, _ = harness.ensure_export(info)
    rng = random.Random(0)
    probes = harness.run_probes(info)
    answers: dict[str, set[str]] = {}
    for p in probes:
        answers.setdefault(p["capability"], set()).add(p["answer"])
    for p in probes:
        p["choices"] = [p["answer"], *rng.sample(sorted(answers[p["capability"]] - {p["answer"]}), 2)]
        rng.shuffle(p["choices"])
    tok = load_tokenizer(info.tokenizer_path)
    tasks = write_tasks(probes, tok, info.seq_len, tmp_path / "tasks")
    assert len(tasks.choice) == 3
    raw = [
        lmeval.run_lm_eval(export, tasks.tasks_dir, [GROUP], info.seq_len + 1, batch_size=32),
        lmeval.run_lm_eval(export, tasks.tasks_dir, [CHOICE_TAG], info.seq_len - 1, batch_size=32),
    ]
    got = lmeval.per_probe_results(tasks, raw)
    model, _ = load_run_model(info.stage)
    want = ProbeSet(probes, tok, max_len=info.seq_len).per_probe(model)
    assert [r["choice_acc"] for r in got] == [r["choice_acc"] for r in want]
    assert [r["exact_match"] for r in got] == [r["exact_match"] for r in want]
    assert 0 < sum(r["choice_acc"] for r in got) < len(got)

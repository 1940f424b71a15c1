"""The whole loop on a tiny design: capabilities rise, a killed run resumes exactly, reruns are cached."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

TRAIN_KEYS = ("step", "phase", "tokens", "flops", "loss", "lr")


def write_design(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def cli(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pretrainlab", *args], capture_output=True, text=True, check=False, **kw
    )


def metrics(runs: Path) -> list[dict]:
    (path,) = runs.glob("*/train/*/metrics.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines()]


def comparable(rows: list[dict]) -> list[tuple]:
    """Metric rows without wall-clock fields."""
    out = []
    for r in rows:
        if r["kind"] == "train":
            out.append(tuple(r[k] for k in TRAIN_KEYS))
        else:
            out.append(tuple(sorted((k, v) for k, v in r.items())))
    return out


def recall_design(tiny_design: dict) -> dict:
    tiny_design["exercises"][0].update(people=8, multiplicity=2, share=0.8)
    tiny_design["train"].update(lr=5e-3, checkpoint_every=100, phases=[{"name": "pretrain", "steps": 400}])
    tiny_design["eval"]["every"] = 100
    return tiny_design


def test_run_learns_seen_people_and_reports(tmp_path, tiny_design):
    design = write_design(tmp_path, recall_design(tiny_design))
    runs = tmp_path / "runs"
    result = cli("run", str(design), "--runs", str(runs))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "report:" in result.stdout and "Final capability scores" in result.stdout
    rows = [
        r
        for r in metrics(runs)
        if r["kind"] == "probe"
        and r["capability"] == "person-facts"
        and r["split"] == "seen"
        and r["group"] is None
        and r["metric"] == "exact_match"
    ]
    assert rows[0]["step"] == 0 and rows[0]["value"] < 0.1
    assert rows[-1]["value"] >= 0.5, rows
    report = runs / "tiny" / "report.html"
    assert report.exists() and "person-facts" in report.read_text()

    compared = cli("compare", str(design), "--runs", str(runs))
    assert compared.returncode == 0 and "person-facts" in compared.stdout and "tiny" in compared.stdout
    missing = cli("compare", str(design), "--runs", str(tmp_path / "elsewhere"))
    assert missing.returncode == 1 and "no finished training run" in missing.stderr

    again = cli("run", str(design), "--runs", str(runs))
    assert again.returncode == 0
    assert again.stderr.count("cached") == 4


def test_kill_dash_nine_mid_training_resumes_exactly(tmp_path, tiny_design):
    tiny_design["train"]["phases"] = [{"name": "pretrain", "steps": 80}]
    tiny_design["train"]["checkpoint_every"] = 20
    design = write_design(tmp_path, tiny_design)

    straight = tmp_path / "straight"
    assert cli("train", str(design), "--runs", str(straight)).returncode == 0

    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "pretrainlab", "train", str(design), "--runs", str(killed)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list(killed.glob("*/train/*/checkpoints/step_0000040.pt")):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not list(killed.glob("*/train/*/manifest.json")), "the run finished before it was killed"

    resumed = cli("train", str(design), "--runs", str(killed))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert comparable(metrics(killed)) == comparable(metrics(straight))

"""Two-process DDP training (gloo on CPU) under torchrun matches one process and resumes after kill -9."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from pretrainlab.design import DesignError
from pretrainlab.train.stage import per_rank_batch

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
# Two ranks on half-batches, their gradients averaged by the all-reduce, equal one process that
# accumulates the same two half-batches (micro-batch m is rank m's slice): the same reductions on the
# same shapes. Measured over 60 steps: identical losses (relative difference 0) on an AMD EPYC
# (family 25, AVX-512 with AVX512-BF16, no AMX). The Intel Xeon (AVX-512, AVX512-BF16) and the AVX2-only
# EPYC were not available when this was measured; the reductions are the same on every CPU (a sum of
# two values, divisions by powers of two), so a small tolerance, far below what a wrong slice, a missed
# all-reduce or a double-counted micro-batch gives, is all that is left to cover.
LOSS_RTOL = 1e-6


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "250"}
    return subprocess.run(cmd, capture_output=True, text=True, check=False, env=env, **kw)


def descendants(pid: int) -> list[int]:
    """`pid` and every process below it (torchrun starts its workers in sessions of their own)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def metrics(runs: Path) -> list[dict]:
    (path,) = runs.glob("*/train/*/metrics.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines()]


def train_rows(runs: Path) -> list[dict]:
    return [r for r in metrics(runs) if r["kind"] == "train"]


def without_timing(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "tokens_per_s"} for r in rows]


@pytest.fixture(scope="module")
def data_runs(tmp_path_factory) -> tuple[Path, Path]:
    """A design and a runs root holding its finished data stages (copied by each test)."""
    from tests.conftest import TINY

    tmp = tmp_path_factory.mktemp("ddp")
    design = json.loads(json.dumps(TINY))
    design["train"].update(checkpoint_every=20, phases=[{"name": "pretrain", "steps": 60}])
    path = tmp / "tiny.yaml"
    path.write_text(yaml.safe_dump(design))
    # the one-process reference of two ranks: the same two half-batches, accumulated
    design["train"].update(batch=design["train"]["batch"] // 2, grad_accum=2)
    (tmp / "tiny-accumulated.yaml").write_text(yaml.safe_dump(design))
    root = tmp / "data"
    done = run([sys.executable, "-m", "pretrainlab", "tokenize", str(path), "--runs", str(root)])
    assert done.returncode == 0, done.stderr[-3000:]
    return path, root


def fresh_root(data_runs: tuple[Path, Path], tmp_path: Path, name: str) -> Path:
    root = tmp_path / name
    shutil.copytree(data_runs[1], root)
    return root


def test_two_process_ddp_matches_one_process(data_runs, tmp_path):
    """Two DDP ranks against one process accumulating the same two half-batches. Tolerance LOSS_RTOL
    (1e-6 relative); measured difference: 0 on an AMD EPYC with AVX-512 and AVX512-BF16 (see above)."""
    design, _ = data_runs
    single = fresh_root(data_runs, tmp_path, "single")
    accumulated = design.with_name("tiny-accumulated.yaml")
    one = run([sys.executable, "-m", "pretrainlab", "train", str(accumulated), "--runs", str(single)])
    assert one.returncode == 0, one.stderr[-3000:]
    ddp = fresh_root(data_runs, tmp_path, "ddp")
    two = run([*TORCHRUN, "-m", "pretrainlab", "train", str(design), "--runs", str(ddp)])
    assert two.returncode == 0, two.stderr[-3000:]
    assert "2 processes (gloo)" in two.stderr

    a, b = train_rows(single), train_rows(ddp)
    assert [r["step"] for r in a] == [r["step"] for r in b]
    assert [r["tokens"] for r in a] == [r["tokens"] for r in b]  # tokens are counted over both ranks
    for ra, rb in zip(a, b, strict=True):
        assert rb["loss"] == pytest.approx(ra["loss"], rel=LOSS_RTOL), (ra, rb)
    assert a[-1]["loss"] < a[0]["loss"] - 0.5  # it trained

    (manifest,) = ddp.glob("*/train/*/manifest.json")
    assert json.loads(manifest.read_text())["world_size"] == 2
    # data stages were cached, not re-run by either rank
    assert two.stderr.count("cached") == 3


def test_ddp_killed_mid_training_resumes_exactly(data_runs, tmp_path):
    design, _ = data_runs
    straight = fresh_root(data_runs, tmp_path, "straight")
    done = run([*TORCHRUN, "-m", "pretrainlab", "train", str(design), "--runs", str(straight)])
    assert done.returncode == 0, done.stderr[-3000:]

    killed = fresh_root(data_runs, tmp_path, "killed")
    proc = subprocess.Popen(
        [*TORCHRUN, "-m", "pretrainlab", "train", str(design), "--runs", str(killed)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and not list(killed.glob("*/train/*/checkpoints/step_0000020.pt")):
        time.sleep(0.05)
    for pid in descendants(proc.pid):  # the launcher and both ranks, at once
        os.kill(pid, signal.SIGKILL)
    proc.wait()
    assert not list(killed.glob("*/train/*/manifest.json")), "the run finished before it was killed"

    resumed = run([*TORCHRUN, "-m", "pretrainlab", "train", str(design), "--runs", str(killed)])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from the checkpoint at step" in resumed.stderr
    assert without_timing(metrics(killed)) == without_timing(metrics(straight))


def test_batch_must_split_over_ranks():
    assert per_rank_batch(16, 2) == 8
    with pytest.raises(DesignError, match="train.batch: 15 does not split evenly over 2 processes"):
        per_rank_batch(15, 2)

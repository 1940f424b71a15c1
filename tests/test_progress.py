"""Progress where the output is not a terminal: dated lines from generate, curate and train, at most one
per interval (PRETRAINLAB_PROGRESS_EVERY), so a batch job's log tells progress from a hang."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from datetime import datetime

import pytest
import yaml
from rich.console import Console

from pretrainlab.design import parse_design
from pretrainlab.errors import StageError
from pretrainlab.pipeline import Pipeline
from pretrainlab.progress import ENV_EVERY, BarProgress, LineProgress, progress_every, stage_progress

STAMP = r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)"
# variables that make rich treat a file or pipe as a terminal: a CI runner may set them
TERMINAL_ENV = ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE")


def lines(text: str, pattern: str) -> list[re.Match]:
    """The whole lines of `text` that are `STAMP pattern`, each with a real date."""
    found = list(re.finditer(rf"^{STAMP} {pattern}$", text, re.MULTILINE))
    for m in found:
        datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S")
    return found


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_line_printer_prints_at_most_once_per_interval_with_dated_lines():
    out = io.StringIO()
    clock = FakeClock()
    progress = LineProgress(Console(file=out, width=30), "train", every=10, clock=clock)
    task = progress.add("pretrain", total=100, unit="steps")
    for step in range(1, 36):
        clock.now = float(step)
        progress.update(task, step, info=f"loss {1 / step:.4f}")
    progress.finish(task)  # the closing line comes whenever the last one was

    text = out.getvalue()
    assert text.count("\n") == 4  # one line per report, never folded at the console's 30 columns
    ticks = lines(text, r"train pretrain: (\d+)/100 steps · 1\.0 steps/s · ETA (\S+) · loss \S+")
    assert [(int(m.group(2)), m.group(3)) for m in ticks] == [(10, "1m30s"), (20, "1m20s"), (30, "1m10s")]
    assert lines(text, r"train pretrain: 35/100 steps · 1\.0 steps/s · done in 35s · loss 0\.0286")


def test_line_printer_without_a_total_counts_and_skips_the_eta():
    out = io.StringIO()
    clock = FakeClock()
    progress = LineProgress(Console(file=out), "generate", every=0, clock=clock)
    task = progress.add("modarith")
    clock.now = 4.0
    progress.advance(task, 1000)
    assert lines(out.getvalue(), r"generate modarith: 1,000 docs · 250 docs/s")


def test_the_console_chooses_bar_or_lines_and_the_interval_comes_from_the_environment(monkeypatch):
    for name in TERMINAL_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv(ENV_EVERY, raising=False)
    assert progress_every() == 30
    monkeypatch.setenv(ENV_EVERY, " ")
    assert progress_every() == 30
    assert isinstance(stage_progress(Console(file=io.StringIO()), "curate"), LineProgress)
    assert isinstance(stage_progress(Console(file=io.StringIO(), force_terminal=True), "curate"), BarProgress)
    monkeypatch.setenv(ENV_EVERY, "0.2")
    assert stage_progress(Console(file=io.StringIO()), "curate").every == 0.2
    for bad in ("soon", "-1", "nan"):
        monkeypatch.setenv(ENV_EVERY, bad)
        with pytest.raises(StageError, match=ENV_EVERY):
            progress_every()


def test_train_generate_and_curate_print_dated_progress_lines_to_a_pipe(tmp_path, tiny_design):
    tiny_design["exercises"][2]["documents"] = 3000  # generate ticks every 1,000 documents
    # in this process: progress by document (a pool reports by exercise)
    tiny_design["executor"] = {"workers": 1}
    tiny_design["train"].update(warmup=2, checkpoint_every=4, phases=[{"name": "pretrain", "steps": 8}])
    tiny_design["eval"]["every"] = 4
    design = tmp_path / "tiny.yaml"
    design.write_text(yaml.safe_dump(tiny_design))
    env = {k: v for k, v in os.environ.items() if k not in TERMINAL_ENV}
    # 0: a line at every report, so the count below does not depend on how fast this machine is
    env[ENV_EVERY] = "0"
    done = subprocess.run(
        [sys.executable, "-m", "pretrainlab", "train", str(design), "--runs", str(tmp_path / "runs")],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    log = done.stderr

    steps = lines(
        log, r"train pretrain: (\d)/8 steps · \S+ steps/s · ETA \S+ · loss \d+\.\d{4} · [\d,]+ tok/s"
    )
    assert len(steps) >= 2 and [int(m.group(2)) for m in steps] == list(range(1, 9))
    assert lines(log, r"train pretrain: 8/8 steps · \S+ steps/s · done in \S+ · loss \S+ · \S+ tok/s")
    ticks = lines(log, r"generate modarith: ([\d,]+) docs · \S+ docs/s")
    assert {m.group(2) for m in ticks} == {"1,000", "2,000", "3,000"}
    assert lines(log, r"generate modarith: 3,000 docs · \S+ docs/s · done in \S+")
    assert lines(log, r"curate modarith: 3,000/3,000 docs · \S+ docs/s · done in \S+ · removed \d+")


def not_item_three(fields: dict) -> tuple[bool, str | None]:
    """A verifier that rejects items 3, 13, 23, ...: rejections that cost no extra request."""
    ok = not re.search(r"\[\[id=\d*3\]\]", fields["text"])
    return ok, None if ok else "ends in 3"


def test_llm_exercise_line_carries_items_of_total_rate_eta_retries_and_rejections(tmp_path, monkeypatch):
    pytest.importorskip("openai")
    from pretrainlab.engines.fake_server import FakeServer, FaultSchedule

    for name in TERMINAL_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(ENV_EVERY, "0")
    out = io.StringIO()
    # with this seed, of the first 80 requests only the 22nd is answered 500 (and sent again)
    with FakeServer(FaultSchedule(seed=9, rates={"server_error": 0.05})) as srv:
        design = {
            "name": "llm-progress",
            "seed": 5,
            "llm": {
                "endpoints": [
                    {"name": "fake", "url": srv.base_url, "model": "fake-model", "max_concurrency": 4}
                ],
                "timeout_s": 2,
                "max_attempts": 3,
            },
            "exercises": [
                {
                    "kind": "llm",
                    "name": "say",
                    "capability": "knowledge",
                    "count": 40,
                    "prompt": [{"role": "user", "content": "[[id={{ index }}]] Say {{ index }}."}],
                    "parser": "plain",
                    "verify": ["tests.test_progress:not_item_three"],
                }
            ],
        }
        Pipeline(parse_design(design), tmp_path / "runs", console=Console(file=out)).run_stage("generate")
    log = out.getvalue()
    info = r"[\d,]+ tok/s · retries 1 · rejected 4"
    assert lines(log, rf"generate say: 40/40 items · \S+ items/s · ETA \S+ · {info}"), log
    assert lines(log, rf"generate say: 40/40 items · \S+ items/s · done in \S+ · {info}"), log

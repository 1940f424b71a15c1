"""Trainer, schedules, callbacks and checkpoints, on tiny models (2 layers, d=32, vocab 64, seq 32).

Run as a script (`python tests/test_trainer.py RUN_DIR SHARD_DIR PRECISION KILL_AT`), this file trains
the run the resume test uses and SIGKILLs itself after update KILL_AT, as a user's kill -9 would.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytest
import torch
from torch import Tensor

from pretrainlab.records import make_probe
from pretrainlab.tokenize.loader import TokenLoader
from pretrainlab.tokenize.shards import ShardWriter
from pretrainlab.tokenize.tokenizer import train_bpe
from pretrainlab.train import autotune
from pretrainlab.train.callbacks import Callback, Checkpointer, MetricsLogger, ProbeEval
from pretrainlab.train.checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint
from pretrainlab.train.model import GPT, ModelConfig
from pretrainlab.train.probes import ProbeSet
from pretrainlab.train.schedule import lr_at
from pretrainlab.train.trainer import (
    Phase,
    TrainConfig,
    Trainer,
    resolve_autocast_dtype,
    seed_everything,
)

VOCAB, SEQ, BATCH = 64, 32, 8
Precision = Literal["auto", "bf16", "fp32"]
THREADS = 1  # the subprocess must match for bit-exact comparisons; one thread also avoids oversubscription


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    yield
    torch.set_num_threads(before)


def tiny_model(seed: int = 0, vocab: int = VOCAB) -> GPT:
    seed_everything(seed)
    return GPT(ModelConfig(vocab_size=vocab, seq_len=SEQ, layers=2, width=32, heads=2))


def counting_batches(stride: int, batch: int = BATCH) -> Callable[[int], tuple[Tensor, Tensor]]:
    """Sequences t, t+stride, t+2*stride, ... (mod VOCAB): learnable, a pure function of the index."""

    def batches(index: int) -> tuple[Tensor, Tensor]:
        g = torch.Generator().manual_seed(index)
        starts = torch.randint(0, VOCAB, (batch, 1), generator=g)
        seq = (starts + stride * torch.arange(SEQ + 1)) % VOCAB
        return seq[:, :-1], seq[:, 1:]

    return batches


def write_shards(directory: Path, n_docs: int = 200) -> list[Path]:
    """Counting documents of random lengths, as the tokenize stage would write them."""
    rng = np.random.default_rng(0)
    with ShardWriter(directory, vocab_size=VOCAB, tokenizer_name="test") as writer:
        for _ in range(n_docs):
            start, length = rng.integers(2, VOCAB), rng.integers(10, 60)
            writer.add(((start + np.arange(length)) % (VOCAB - 2) + 2).astype(np.uint32))
    return sorted(directory.glob("*.ds"))


class CopyProbes:
    """The ProbeSet interface at its smallest: next-token accuracy on fixed sequences; records the weights."""

    def __init__(self) -> None:
        self.x, self.y = counting_batches(1, batch=4)(10_000)
        self.seen_weights: list[Tensor] = []

    def score(
        self, model: GPT, batch_size: int, device: torch.device, autocast_dtype: torch.dtype | None
    ) -> list[dict[str, Any]]:
        self.seen_weights.append(model.wte.weight.detach().clone())
        with torch.autocast("cpu", dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
            logits, _ = model(self.x)
        acc = (logits.argmax(-1) == self.y).float().mean().item()
        return [
            {
                "capability": "count",
                "split": "test",
                "group": None,
                "metric": "acc",
                "value": acc,
                "n": self.y.numel(),
            }
        ]


class Recorder(Callback):
    """Keeps every step's logs and the phase it ran in."""

    def __init__(self) -> None:
        self.steps: list[dict[str, Any]] = []

    def on_step_end(self, trainer: Trainer, logs: dict[str, Any]) -> None:
        phase = trainer.phases[trainer.phase_index].name
        self.steps.append({**logs, "step": trainer.global_step, "phase": phase})


def read_rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# --- schedules -------------------------------------------------------------------------------------


def test_warmup_is_linear_to_peak() -> None:
    assert [lr_at(s, 100, 1.0, 4, "cosine") for s in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]


def test_cosine_ends_at_min_ratio_and_falls_monotonically() -> None:
    lrs = [lr_at(s, 91, 2.0, 10, "cosine", min_ratio=0.1) for s in range(91)]
    assert lrs[-1] == pytest.approx(0.2)
    assert lrs[50] == pytest.approx(1.1)  # half way through the decay: mean of peak and floor
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:], strict=False))


def test_wsd_holds_peak_then_decays_linearly_over_the_last_fraction() -> None:
    lrs = [lr_at(s, 100, 1.0, 10, "wsd", min_ratio=0.1, decay_frac=0.2) for s in range(100)]
    assert lrs[9:81] == [1.0] * 72
    assert lrs[-1] == pytest.approx(0.1)
    steps = np.diff(lrs[80:])
    assert np.allclose(steps, steps[0]) and steps[0] < 0


def test_constant_schedule_and_bad_kind() -> None:
    assert lr_at(99, 100, 1.0, 10, "constant") == 1.0
    with pytest.raises(ValueError, match="schedule"):
        lr_at(0, 10, 1.0, 0, "linear")  # type: ignore[arg-type]


# --- training --------------------------------------------------------------------------------------


def test_training_reduces_loss_and_counts_tokens_and_flops(tmp_path: Path) -> None:
    model, rec = tiny_model(), Recorder()
    config = TrainConfig(lr=1e-2, warmup=5, precision="fp32")
    trainer = Trainer(model, config, [Phase("count", 40, counting_batches(1))], tmp_path, [rec])
    trainer.fit()
    losses = [s["loss"] for s in rec.steps]
    assert losses[0] == pytest.approx(math.log(VOCAB), rel=0.1)
    assert np.mean(losses[-5:]) < 0.5 * losses[0]
    assert trainer.global_step == 40 and trainer.tokens_seen == 40 * BATCH * SEQ
    assert trainer.flops_seen == pytest.approx(model.flops_per_token() * trainer.tokens_seen)
    assert trainer.timing["train_s"] > 0


def test_phases_switch_data_source_and_lr_scale(tmp_path: Path) -> None:
    calls: list[tuple[str, int]] = []

    def source(name: str, stride: int) -> Callable[[int], tuple[Tensor, Tensor]]:
        inner = counting_batches(stride)

        def batches(index: int) -> tuple[Tensor, Tensor]:
            calls.append((name, index))
            return inner(index)

        return batches

    rec = Recorder()
    config = TrainConfig(lr=1e-2, warmup=2, schedule="constant", precision="fp32", log_every=3)
    phases = [Phase("a", 4, source("a", 1)), Phase("b", 3, source("b", 3), lr_scale=0.5)]
    trainer = Trainer(tiny_model(), config, phases, tmp_path, [rec, MetricsLogger()])
    trainer.fit()
    assert calls == [("a", i) for i in range(4)] + [("b", i) for i in range(3)]
    assert [s["lr"] for s in rec.steps] == [5e-3, 1e-2, 1e-2, 1e-2, 2.5e-3, 5e-3, 5e-3]
    assert [s["phase"] for s in rec.steps] == list("aaaabbb") and rec.steps[-1]["step"] == 7
    train_rows = [r for r in read_rows(tmp_path / "metrics.jsonl") if r["kind"] == "train"]
    assert [(r["step"], r["phase"]) for r in train_rows] == [(3, "a"), (6, "b"), (7, "b")]


def test_grad_accum_of_half_batches_matches_one_full_batch(tmp_path: Path) -> None:
    full = counting_batches(1, batch=BATCH)

    def halves(index: int) -> tuple[Tensor, Tensor]:
        x, y = full(index // 2)
        half = slice(0, BATCH // 2) if index % 2 == 0 else slice(BATCH // 2, BATCH)
        return x[half], y[half]

    weights = []
    for accum, batches in ((1, full), (2, halves)):
        config = TrainConfig(lr=1e-3, warmup=1, precision="fp32", grad_accum=accum)
        trainer = Trainer(tiny_model(), config, [Phase("p", 1, batches)], tmp_path / str(accum))
        trainer.fit()
        assert trainer.tokens_seen == BATCH * SEQ
        weights.append({k: v.clone() for k, v in trainer.model.state_dict().items()})
    initial = tiny_model().state_dict()
    for name, w in weights[0].items():
        update_full, update_accum = w - initial[name], weights[1][name] - initial[name]
        torch.testing.assert_close(update_accum, update_full, atol=1e-6, rtol=1e-3, msg=name)


@pytest.mark.parametrize(
    ("capabilities", "expected"),
    [({"avx2": True, "avx512_bf16": False}, None), ({"avx512f": True, "avx512_bf16": True}, torch.bfloat16)],
    ids=["avx2-only", "avx512-bf16"],
)
def test_precision_auto_uses_bf16_only_where_the_cpu_has_it(monkeypatch, capabilities, expected) -> None:
    cpu = torch.device("cpu")
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: capabilities)
    assert resolve_autocast_dtype("auto", cpu) == expected
    assert resolve_autocast_dtype("fp32", cpu) is None
    assert resolve_autocast_dtype("bf16", cpu) == torch.bfloat16
    with pytest.raises(ValueError, match="precision"):
        TrainConfig(precision="fp16")  # type: ignore[arg-type]


def test_precision_auto_trains_exactly_as_its_choice(tmp_path: Path, monkeypatch) -> None:
    """The probe (a real one, kept short) leaves the run's weights and random streams as they were."""
    monkeypatch.setenv("PRETRAINLAB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(autotune, "cpu_has_bf16_matmul", lambda: True)
    monkeypatch.setattr(autotune, "PROBE_SECONDS", 0.01)

    def run(precision: Precision) -> tuple[Trainer, list[float]]:
        rec, config = Recorder(), TrainConfig(lr=1e-2, warmup=2, precision=precision)
        trainer = Trainer(
            tiny_model(), config, [Phase("p", 4, counting_batches(1))], tmp_path / precision, [rec]
        )
        trainer.fit()
        return trainer, [s["loss"] for s in rec.steps]

    auto, auto_losses = run("auto")
    tuned = auto.tuning
    assert tuned is not None and tuned.candidates.keys() == {"fp32", "bf16"} and not tuned.cached
    assert auto.autocast_dtype == (torch.bfloat16 if tuned.precision == "bf16" else None)
    fixed, fixed_losses = run(tuned.precision)  # type: ignore[arg-type]
    assert fixed.tuning is None and fixed_losses == auto_losses


def test_compile_without_a_compiler_trains_eager_with_a_note(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(autotune, "cpp_compiler", lambda: None)
    config = TrainConfig(precision="fp32", compile=True)
    trainer = Trainer(tiny_model(), config, [Phase("p", 2, counting_batches(1))], tmp_path)
    assert not trainer.compiled and "no C++ compiler" in (trainer.compile_note or "")
    trainer.fit()
    assert trainer.global_step == 2 and trainer.compile_s is None


def test_a_compile_failing_on_the_first_update_falls_back_to_eager(tmp_path: Path, monkeypatch) -> None:
    def broken(module: torch.nn.Module) -> Callable:
        def compiled(*args: Tensor) -> Any:
            raise RuntimeError("C++ compile error")

        return compiled

    monkeypatch.setattr(autotune, "cpp_compiler", lambda: "g++")
    monkeypatch.setattr(torch, "compile", broken)
    rec = Recorder()
    config = TrainConfig(lr=1e-2, warmup=2, precision="fp32", compile=True)
    trainer = Trainer(tiny_model(), config, [Phase("p", 3, counting_batches(1))], tmp_path / "c", [rec])
    assert trainer.compiled
    trainer.fit()
    assert not trainer.compiled and trainer.compile_note == "compile failed (RuntimeError: C++ compile error)"
    eager = Recorder()
    config = TrainConfig(lr=1e-2, warmup=2, precision="fp32")
    Trainer(tiny_model(), config, [Phase("p", 3, counting_batches(1))], tmp_path / "e", [eager]).fit()
    assert [s["loss"] for s in rec.steps] == [s["loss"] for s in eager.steps]


def test_compile_time_is_the_first_compiled_update(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(autotune, "cpp_compiler", lambda: "g++")
    monkeypatch.setattr(torch, "compile", lambda module: module)  # compiling costs nothing here
    rec = Recorder()
    trainer = Trainer(
        tiny_model(),
        TrainConfig(precision="fp32", compile=True),
        [Phase("p", 2, counting_batches(1))],
        tmp_path,
        [rec],
    )
    trainer.fit()
    assert trainer.compiled and trainer.compile_s == rec.steps[0]["step_s"]
    with pytest.raises(ValueError, match="compile"):
        TrainConfig(compile="yes")  # type: ignore[arg-type]


def test_weight_decay_only_on_matrices(tmp_path: Path) -> None:
    config = TrainConfig(precision="fp32")  # not auto: no probe
    trainer = Trainer(tiny_model(), config, [Phase("p", 1, counting_batches(1))], tmp_path)
    decayed, plain = trainer.optimizer.param_groups
    assert decayed["weight_decay"] == 0.1 and all(p.dim() >= 2 for p in decayed["params"])
    assert plain["weight_decay"] == 0.0 and plain["params"] and all(p.dim() < 2 for p in plain["params"])


# --- checkpoints and resume ------------------------------------------------------------------------


def test_checkpoint_is_a_plain_dict_that_round_trips(tmp_path: Path) -> None:
    config = TrainConfig(lr=1e-2, warmup=2, precision="fp32", checkpoint_every=3)
    trainer = Trainer(tiny_model(), config, [Phase("p", 10, counting_batches(1))], tmp_path, [Checkpointer()])
    trainer.fit()
    ckpt_dir = tmp_path / "checkpoints"
    assert [p.name for p in list_checkpoints(ckpt_dir)] == ["step_0000009.pt", "step_0000010.pt"]
    assert latest_checkpoint(ckpt_dir) == ckpt_dir / "step_0000010.pt"
    assert (ckpt_dir / "latest").read_text().strip() == "step_0000010.pt"
    state = load_checkpoint(ckpt_dir / "step_0000010.pt")  # weights_only: plain types only
    assert {
        "model",
        "optimizer",
        "config",
        "global_step",
        "phase_index",
        "phase_step",
        "tokens_seen",
        "flops_seen",
        "rng",
    } <= state.keys()
    assert state["global_step"] == 10 and state["config"]["model"]["width"] == 32
    assert state["config"]["train"]["checkpoint_every"] == 3
    assert set(state["rng"]) >= {"torch", "numpy", "python"}

    other = Trainer(tiny_model(seed=1), config, [Phase("p", 10, counting_batches(1))], tmp_path)
    other.load_state_dict(state)
    for name, w in trainer.model.state_dict().items():
        assert torch.equal(w, other.model.state_dict()[name]), name
    assert (other.global_step, other.tokens_seen) == (10, trainer.tokens_seen)
    other.fit()  # the run is complete: fit does nothing
    assert other.global_step == 10


def test_checkpoint_of_another_model_is_refused(tmp_path: Path) -> None:
    config = TrainConfig(precision="fp32")
    Trainer(tiny_model(), config, [Phase("p", 1, counting_batches(1))], tmp_path, [Checkpointer()]).fit()
    wider = GPT(ModelConfig(vocab_size=VOCAB, seq_len=SEQ, layers=2, width=64, heads=2))
    with pytest.raises(ValueError, match="width"):
        Trainer(wider, config, [Phase("p", 2, counting_batches(1))], tmp_path).fit()


def resume_run(
    run_dir: Path, shard_dir: Path, precision: Precision, probes: CopyProbes, extra: tuple[Callback, ...] = ()
) -> Trainer:
    """The run of the resume test: two phases on TokenLoader data, probes every 4 steps."""
    shards = sorted(shard_dir.glob("*.ds"))
    phases = [
        Phase("a", 12, TokenLoader(shards, SEQ, BATCH, seed=0).batch),
        Phase("b", 8, TokenLoader(shards, SEQ, BATCH, seed=1).batch, lr_scale=0.3),
    ]
    config = TrainConfig(lr=1e-2, warmup=3, log_every=1, checkpoint_every=5, precision=precision)
    logger = MetricsLogger()
    callbacks = [Checkpointer(), ProbeEval(probes, 4, logger), logger, *extra]  # they sort themselves
    return Trainer(tiny_model(), config, phases, run_dir, callbacks)


class KillAt(Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, trainer: Trainer, logs: dict[str, Any]) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


def without_timing(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k != "tokens_per_s"} for r in rows]


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_resume_after_sigkill_equals_the_uninterrupted_run(tmp_path: Path, precision: Precision) -> None:
    shard_dir = tmp_path / "shards"
    write_shards(shard_dir)
    whole = resume_run(tmp_path / "whole", shard_dir, precision, CopyProbes())
    whole.fit()

    killed = tmp_path / "killed"
    proc = subprocess.run(
        [sys.executable, __file__, str(killed), str(shard_dir), precision, "13"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert latest_checkpoint(killed / "checkpoints") == killed / "checkpoints" / "step_0000010.pt"
    assert max(r["step"] for r in read_rows(killed / "metrics.jsonl")) == 13  # rows past the checkpoint

    resumed = resume_run(killed, shard_dir, precision, CopyProbes())
    resumed.fit()
    assert resumed.resumed_step == 10 and resumed.global_step == 20

    rows_whole = read_rows(tmp_path / "whole" / "metrics.jsonl")
    rows_resumed = read_rows(killed / "metrics.jsonl")
    train_steps = [r["step"] for r in rows_resumed if r["kind"] == "train"]
    assert train_steps == list(range(1, 21))  # no duplicates, no gaps
    assert without_timing(rows_resumed) == without_timing(rows_whole)  # losses bit-exact, probes too
    assert [r["step"] for r in rows_resumed if r["kind"] == "probe"] == [0, 4, 8, 12, 16, 20]
    for name, w in whole.model.state_dict().items():
        assert torch.equal(w, resumed.model.state_dict()[name]), name


def test_probe_eval_scores_the_untrained_model_first(tmp_path: Path) -> None:
    probes, model = CopyProbes(), tiny_model()
    initial = model.wte.weight.detach().clone()
    logger = MetricsLogger()
    config = TrainConfig(lr=1e-2, warmup=2, precision="fp32", log_every=2)
    trainer = Trainer(
        model, config, [Phase("p", 5, counting_batches(1))], tmp_path, [ProbeEval(probes, 2, logger), logger]
    )
    trainer.fit()
    assert torch.equal(probes.seen_weights[0], initial)
    rows = read_rows(tmp_path / "metrics.jsonl")
    assert rows[0]["kind"] == "probe" and rows[0]["step"] == 0 and rows[0]["tokens"] == 0
    assert rows[0]["metric"] == "acc" and rows[0]["n"] == 4 * SEQ
    assert [r["step"] for r in rows if r["kind"] == "probe"] == [0, 2, 4, 5]
    assert trainer.timing["eval_s"] > 0 and 0 < trainer.eval_share < 1 and trainer.model.training


if __name__ == "__main__":
    run_dir, shard_dir, precision, kill_at = sys.argv[1:]  # precision: one of Precision
    torch.set_num_threads(THREADS)
    resume_run(Path(run_dir), Path(shard_dir), precision, CopyProbes(), extra=(KillAt(int(kill_at)),)).fit()


def test_probe_eval_with_a_real_probe_set(tmp_path: Path) -> None:
    texts = [f"the {thing} is {color}" for thing in ("zorp", "quaff", "mirlo") for color in ("red", "blue")]
    tok = train_bpe(texts * 20, vocab_size=300)
    probes = [
        make_probe(
            f"the {thing} is",
            " red",
            exercise="color_qa",
            capability="color",
            meta={"split": "train"},
            choices=[" red", " blue"],
        )
        for thing in ("zorp", "quaff")
    ]
    probe_set = ProbeSet(probes, tok, max_len=SEQ)
    logger = MetricsLogger()
    vocab = tok.get_vocab_size()
    config = TrainConfig(warmup=1, eval_every=2, precision="fp32")
    phases = [Phase("p", 3, lambda i: (torch.randint(0, vocab, (2, SEQ)), torch.randint(0, vocab, (2, SEQ))))]
    callbacks = [logger, ProbeEval(probe_set, None, logger)]  # every: None means config.eval_every
    Trainer(tiny_model(vocab=vocab), config, phases, tmp_path, callbacks).fit()
    probe_rows = [r for r in read_rows(tmp_path / "metrics.jsonl") if r["kind"] == "probe"]
    assert sorted({r["step"] for r in probe_rows}) == [0, 2, 3]
    assert {r["metric"] for r in probe_rows} == {"exact_match", "answer_logprob", "choice_acc"}
    assert all(r["capability"] == "color" and r["split"] == "train" and r["n"] == 2 for r in probe_rows)

"""The training loop: one AdamW over a sequence of phases; logging, evaluation and checkpoints are callbacks.

Steps. `global_step` counts optimizer updates across phases; `phase_step` counts them within the
current phase. Each phase runs its own warmup and schedule over its own steps at `lr * lr_scale`
(one optimizer throughout: only the learning rate changes between phases). With `grad_accum = k`,
update `s` of a phase sums gradients over micro-batches `phase.batches(s * k + m)` for m in 0..k-1,
so a phase's `batches` is asked for `steps * k` distinct indices and each should hold 1/k of the
tokens of a full batch.

Distributed. Given a `DistContext` with world_size > 1 (see `distributed`), the model trains under
DistributedDataParallel: each rank's `batches` yields its own slice of the global batch, gradients
are averaged across ranks (synchronised only on the last micro-batch of an update), and the logged
loss, tokens and FLOPs are global. Only the callbacks given to a rank run there; the train stage gives
metrics, evaluation and checkpoints to rank 0 alone.

Precision and compile. Explicit values are used as given; `auto` ones are measured on the run's own
model and batch shapes before training (see `autotune`; rank 0 measures, every rank uses its choice),
and `tuning` keeps the figures. A compile that cannot run (no C++ compiler) or fails on the first
update leaves a one-line warning in `compile_note` and trains eager; `compile_s` is the wall time of
the first compiled update, compile included.

Resume. `fit` loads the latest checkpoint in out_dir/checkpoints, if any, and continues from it.
Batches are a function of the step index and dropout is zero, so on CPU the resumed losses equal an
uninterrupted run's bit for bit.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from pretrainlab.config.model import TrainConfig
from pretrainlab.runs import CHECKPOINTS
from pretrainlab.train.autotune import Tuning, compile_unavailable, cpu_has_bf16_matmul, tune
from pretrainlab.train.callbacks import Callback
from pretrainlab.train.checkpoint import latest_checkpoint, load_checkpoint, rng_state, set_rng_state
from pretrainlab.train.distributed import DistContext
from pretrainlab.train.model import GPT
from pretrainlab.train.schedule import lr_at

__all__ = ["Phase", "TrainConfig", "Trainer", "build_optimizer", "seed_everything"]

log = logging.getLogger(__name__)


@dataclass
class Phase:
    """A stretch of training on one data source: `batches(index) -> (input, target)` for `steps` updates."""

    name: str
    steps: int
    batches: Callable[[int], tuple[Tensor, Tensor]]
    lr_scale: float = 1.0


def seed_everything(seed: int) -> None:
    """Seed torch, numpy and Python's `random`; call it before building the model for a seeded init."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    return torch.device(("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else name)


def resolve_autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """bf16 for "bf16", None (plain fp32) for "fp32"; "auto" here is the unmeasured rule, bf16 where the
    hardware has it. The Trainer measures "auto" instead (`autotune`): on a CPU the flags cannot say
    whether bf16 is faster; this rule serves callers that cannot afford a probe."""
    if precision == "auto":
        if device.type == "cpu":
            return torch.bfloat16 if cpu_has_bf16_matmul() else None
        return torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else None
    return torch.bfloat16 if precision == "bf16" else None


def build_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW decaying only 2+-dim parameters (matrices, embeddings: nanoGPT's rule); fused if possible."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": config.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    try:
        return torch.optim.AdamW(groups, lr=config.lr, betas=config.betas, fused=True)
    except RuntimeError:  # fused kernels are missing for this device or torch version
        return torch.optim.AdamW(groups, lr=config.lr, betas=config.betas, foreach=True)


class Trainer:
    """Runs `phases` on `model`, calling `callbacks` around each update (see the module docstring).

    Callbacks read: model, config, phases, out_dir, device, autocast_dtype (and `autocast()`),
    optimizer, global_step, phase_index, phase_step, total_steps, tokens_seen, flops_seen, last_loss,
    resumed_step (the checkpoint step this fit resumed from, else None) and timing (train_s, eval_s,
    checkpoint_s: callbacks add their own wall time).
    """

    def __init__(
        self,
        model: GPT,
        config: TrainConfig,
        phases: Sequence[Phase],
        out_dir: Path,
        callbacks: Sequence[Callback] = (),
        dist: DistContext | None = None,
    ) -> None:
        if not phases:
            raise ValueError("phases: expected at least one Phase")
        for phase in phases:
            if phase.steps < 1:
                raise ValueError(f"phase {phase.name!r}: steps must be positive, got {phase.steps}")
        seed_everything(config.seed)
        self.config = config
        self.phases = list(phases)
        self.out_dir = Path(out_dir)
        self.callbacks = sorted(callbacks, key=lambda cb: cb.order)
        self.dist = dist or DistContext()
        self.device = self.dist.device() if self.dist.enabled else resolve_device(config.device)
        self.model = model.to(self.device)
        self.tuning = self._tune() if "auto" in (config.precision, config.compile) else None
        precision = self.tuning.precision if self.tuning else config.precision
        self.autocast_dtype = resolve_autocast_dtype(precision, self.device)
        self.optimizer = build_optimizer(self.model, config)
        self._params = [p for group in self.optimizer.param_groups for p in group["params"]]
        self._ddp: torch.nn.parallel.DistributedDataParallel | None = None
        forward: torch.nn.Module = self.model
        if self.dist.enabled:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            self._ddp = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=device_ids)
            forward = self._ddp
        self._eager = forward
        compile_wanted = self.tuning.compile if self.tuning else bool(config.compile)
        self.compile_note = compile_unavailable(self.device) if compile_wanted else None
        if self.compile_note:
            log.warning("%s: training eager", self.compile_note)
        self.compiled = compile_wanted and self.compile_note is None
        self._forward = torch.compile(forward) if self.compiled else forward
        self.compile_s: float | None = None  # the first compiled update's wall time, compile included
        self._compile_proven = False  # a compiled forward and backward have run once
        self.global_step = 0
        self.phase_index = 0
        self.phase_step = 0
        self.tokens_seen = 0
        self.flops_seen = 0.0
        self.last_loss = float("nan")
        self.resumed_step: int | None = None
        self.timing = {"train_s": 0.0, "eval_s": 0.0, "checkpoint_s": 0.0}

    def _tune(self) -> Tuning:
        """Measure the `auto` settings on this run's model and first batch shape, on rank 0 for all ranks."""
        x, _ = self.phases[0].batches(0)
        batch, seq_len = x.shape
        run_tokens = x.numel() * self.config.grad_accum * self.total_steps
        tuning = self.dist.agree(
            tune(self.model.config, self.config, batch, seq_len, self.device, run_tokens)
            if self.dist.is_main
            else None
        )
        log.info("%s", tuning.summary())
        return tuning

    @property
    def total_steps(self) -> int:
        return sum(phase.steps for phase in self.phases)

    @property
    def eval_share(self) -> float:
        """Fraction of the loop's wall time spent in evaluation."""
        return self.timing["eval_s"] / max(sum(self.timing.values()), 1e-9)

    def autocast(self) -> AbstractContextManager:
        """The mixed-precision context of training, for callbacks that run the model."""
        if self.autocast_dtype is None:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)

    def fit(self) -> None:
        """Train through all phases, resuming from the latest checkpoint in out_dir if there is one."""
        self._resume()
        if self.global_step >= self.total_steps:
            log.info("nothing to do: %s already holds all %d steps", self.out_dir, self.total_steps)
            return
        self.model.train()
        for cb in self.callbacks:
            cb.on_train_start(self)
        while self.phase_index < len(self.phases):
            phase = self.phases[self.phase_index]
            for cb in self.callbacks:
                cb.on_phase_start(self)
            while self.phase_step < phase.steps:
                logs = self._step(phase)
                for cb in self.callbacks:
                    cb.on_step_end(self, logs)
            self.phase_index += 1
            self.phase_step = 0
        for cb in self.callbacks:
            cb.on_train_end(self)
        log.info(
            "trained %d steps, %d tokens; time %s, eval share %.1f%%",
            self.global_step,
            self.tokens_seen,
            {k: round(v, 1) for k, v in self.timing.items()},
            100 * self.eval_share,
        )

    def _step(self, phase: Phase) -> dict[str, Any]:
        """One optimizer update of `phase` at phase_step; returns the step's logs."""
        start = time.perf_counter()
        cfg = self.config
        lr = lr_at(
            self.phase_step,
            phase.steps,
            cfg.lr * phase.lr_scale,
            cfg.warmup,
            cfg.schedule,
            cfg.min_lr_ratio,
            cfg.decay_frac,
        )
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        loss_sum = torch.zeros((), device=self.device)
        tokens, flops = 0, 0.0
        for micro in range(cfg.grad_accum):
            x, y = phase.batches(self.phase_step * cfg.grad_accum + micro)
            x = x.to(self.device, non_blocking=True)
            y = y.to(self.device, non_blocking=True)
            last_micro = micro == cfg.grad_accum - 1
            sync = self._ddp.no_sync() if self._ddp is not None and not last_micro else nullcontext()
            with sync:
                loss = self._forward_backward(x, y)
            loss_sum += loss.detach()
            tokens += x.numel() * self.dist.world_size
            flops += self.model.flops_per_token(x.shape[1]) * x.numel() * self.dist.world_size
        max_norm = cfg.grad_clip if cfg.grad_clip > 0 else float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(self._params, max_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.last_loss = self.dist.mean(loss_sum).item() / cfg.grad_accum
        self.global_step += 1
        self.phase_step += 1
        self.tokens_seen += tokens
        self.flops_seen += flops
        step_s = time.perf_counter() - start
        if self.compiled and self.compile_s is None:
            self.compile_s = step_s
        self.timing["train_s"] += step_s
        return {
            "loss": self.last_loss,
            "lr": lr,
            "grad_norm": grad_norm.item(),
            "tokens": tokens,
            "step_s": step_s,
        }

    def _forward_backward(self, x: Tensor, y: Tensor) -> Tensor:
        """Loss of one micro-batch, gradients accumulated; a compile failing on its first call falls back
        to eager (one warning) rather than ending the run."""
        try:
            with self.autocast():
                _, loss = self._forward(x, y)
            (loss / self.config.grad_accum).backward()
            self._compile_proven = self.compiled
            return loss
        except Exception as exc:
            if not self.compiled or self._compile_proven:
                raise  # eager, or compiled and past its first call: a real error
            first = (str(exc).strip().splitlines() or [""])[0][:160]
            self.compile_note = f"compile failed ({type(exc).__name__}: {first})"
            log.warning("%s: training eager", self.compile_note)
            self.compiled, self._forward = False, self._eager
            self.optimizer.zero_grad(set_to_none=True)  # nothing accumulated before: drop partial grads
            with self.autocast():
                _, loss = self._forward(x, y)
            (loss / self.config.grad_accum).backward()
            return loss

    def state_dict(self) -> dict[str, Any]:
        """The checkpoint: a plain dict of tensors, numbers, strings and containers (see `checkpoint`)."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "config": {"model": asdict(self.model.config), "train": asdict(self.config)},
            "global_step": self.global_step,
            "phase_index": self.phase_index,
            "phase_step": self.phase_step,
            "tokens_seen": self.tokens_seen,
            "flops_seen": self.flops_seen,
            "timing": dict(self.timing),
            "rng": rng_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore weights, optimizer, counters and generator states from a `state_dict`."""
        saved, current = state["config"]["model"], asdict(self.model.config)
        differing = {
            k: (saved.get(k), current.get(k))
            for k in sorted(saved.keys() | current.keys())
            if saved.get(k) != current.get(k)
        }
        if differing:
            raise ValueError(f"checkpoint and model differ, (checkpoint, model) by field: {differing}")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        for name in ("global_step", "phase_index", "phase_step", "tokens_seen", "flops_seen"):
            setattr(self, name, state[name])
        self.timing.update(state["timing"])
        set_rng_state(state["rng"])
        while self.phase_index < len(self.phases) and self.phase_step >= self.phases[self.phase_index].steps:
            self.phase_index += 1
            self.phase_step = 0

    def _resume(self) -> None:
        path = latest_checkpoint(self.out_dir / CHECKPOINTS)
        if path is None:
            self.resumed_step = None
            return
        self.load_state_dict(load_checkpoint(path, map_location=self.device))
        self.resumed_step = self.global_step
        log.info("resumed from %s at step %d", path, self.global_step)

"""Training throughput: our Trainer against a plain nanoGPT-style loop, same model, batches and dtype.

Both arms train a fresh copy of the same model on the same pre-drawn random token batches, with
fused AdamW (decay on 2D+ parameters), gradient clipping at 1.0, a learning rate set every step, and
the same autocast (`--precision auto` resolves as the Trainer does: bf16 only where the hardware
multiplies bf16, else fp32). The Trainer runs with no callbacks but a timer (no eval, no checkpoints). Arms
alternate for `--repeats` rounds; each round times `--steps` updates after `--warmup-steps`. MFU is
achieved FLOP/s (model.flops_per_token() * tokens/s) over a matmul peak measured in this run in the
same dtype.

    .venv/bin/python bench/train_throughput.py [--precision fp32] [--layers 6 --width 256]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from pretrainlab.train.callbacks import Callback
from pretrainlab.train.model import GPT, ModelConfig
from pretrainlab.train.schedule import lr_at
from pretrainlab.train.trainer import Phase, TrainConfig, Trainer, resolve_autocast_dtype, seed_everything


class Timer(Callback):
    """Wall-clock time from the end of update `start` to the end of the last update."""

    def __init__(self, start: int) -> None:
        self.start = start
        self.t0 = self.t1 = 0.0

    def on_step_end(self, trainer: Trainer, logs: dict[str, Any]) -> None:
        if trainer.global_step == self.start:
            self.t0 = time.perf_counter()
        if trainer.global_step == trainer.total_steps:
            self.t1 = time.perf_counter()


def make_model(args: argparse.Namespace) -> GPT:
    seed_everything(0)
    return GPT(
        ModelConfig(
            vocab_size=args.vocab, seq_len=args.seq, layers=args.layers, width=args.width, heads=args.heads
        )
    )


def run_trainer(args: argparse.Namespace, batches: list[tuple[Tensor, Tensor]]) -> float:
    """Seconds for `args.steps` timed updates of our Trainer."""
    timer = Timer(args.warmup_steps)
    total = args.warmup_steps + args.steps
    config = TrainConfig(warmup=args.warmup_steps, precision=args.precision, device="cpu")
    phase = Phase("bench", total, lambda i: batches[i % len(batches)])
    with tempfile.TemporaryDirectory() as out_dir:
        Trainer(make_model(args), config, [phase], Path(out_dir), [timer]).fit()
    return timer.t1 - timer.t0


def run_plain(args: argparse.Namespace, batches: list[tuple[Tensor, Tensor]]) -> float:
    """Seconds for `args.steps` timed updates of a nanoGPT-style loop written out in full."""
    model = make_model(args)
    model.train()
    params = list(model.parameters())
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": 0.1},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=2e-3, betas=(0.9, 0.98), fused=True)
    total = args.warmup_steps + args.steps
    t0 = 0.0
    for step in range(total):
        if step == args.warmup_steps:
            t0 = time.perf_counter()
        lr = lr_at(step, total, 2e-3, args.warmup_steps, "cosine")
        for group in optimizer.param_groups:
            group["lr"] = lr
        x, y = batches[step % len(batches)]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.dtype == torch.bfloat16):
            _, loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    loss.item()
    return time.perf_counter() - t0


def matmul_peak(dtype: torch.dtype, n: int = 1024, iters: int = 10) -> float:
    """Best FLOP/s of an n x n matmul in `dtype` over `iters` timed calls."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    best = 0.0
    for _ in range(iters):
        t0 = time.perf_counter()
        a @ b
        best = max(best, 2 * n**3 / (time.perf_counter() - t0))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=4096)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto")
    parser.add_argument("--steps", type=int, default=10, help="timed updates per round and arm")
    parser.add_argument("--warmup-steps", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5, help="rounds; arms alternate within each")
    args = parser.parse_args()
    args.dtype = resolve_autocast_dtype(args.precision, torch.device("cpu")) or torch.float32
    dtype_name = "bf16" if args.dtype == torch.bfloat16 else "fp32"

    g = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(8):
        seq = torch.randint(0, args.vocab, (args.batch, args.seq + 1), generator=g)
        batches.append((seq[:, :-1], seq[:, 1:]))
    model = make_model(args)
    tokens = args.steps * args.batch * args.seq
    print(
        f"model: {args.layers} layers, d={args.width}, {args.heads} heads, vocab {args.vocab}, "
        f"seq {args.seq}, batch {args.batch}; {model.num_params():,} non-embedding params; "
        f"precision {args.precision} -> {dtype_name}; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )

    rates: dict[str, list[float]] = {"trainer": [], "plain": []}
    for r in range(args.repeats):
        for name, run in (("trainer", run_trainer), ("plain", run_plain)):
            rates[name].append(tokens / run(args, batches))
            print(f"  round {r + 1} {name:8s} {rates[name][-1]:10,.0f} tokens/s")

    peak = matmul_peak(args.dtype)
    fpt = model.flops_per_token()
    print(
        f"matmul peak ({dtype_name}, best of 1024x1024 @ 1024x1024): {peak / 1e9:,.0f} GFLOP/s; "
        f"model {fpt / 1e6:.2f} MFLOP per token (6N + 12LdT)"
    )
    for name, values in rates.items():
        median = statistics.median(values)
        print(f"{name:8s} median {median:10,.0f} tokens/s   MFU {fpt * median / peak:6.1%}")
    ratio = statistics.median(rates["trainer"]) / statistics.median(rates["plain"])
    print(f"ours / plain: {ratio:.3f}")


if __name__ == "__main__":
    main()

"""The device's measured matmul rate: what device-hours and model FLOPs utilisation are counted against.

A FLOP rate cannot be read off a CPU's name or flags: the same kind of machine runs fp32 matmuls at
about 170 GFLOP/s on one CPU and bf16 at 0.75 GFLOP/s on one and several hundred on another. So the
rate is measured: square matmuls in the training dtype, timed for a fraction of a second after a
warm-up, the best of a few rounds. The result is cached per machine (processor, thread count, torch
version, device and dtype) in the user's cache folder, so only the first run on a machine pays for
the probe. ``PRETRAINLAB_CACHE_DIR`` moves that folder (default ``$XDG_CACHE_HOME/pretrainlab`` or
``~/.cache/pretrainlab``).
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from pretrainlab.runs import write_atomic

PROBE_SIZE = 1024  # square matmul side: large enough to reach the kernels' steady rate on a CPU
PROBE_SECONDS = 0.25  # timed per round
PROBE_ROUNDS = 3
CACHE_NAME = "matmul-rate.json"


@dataclass(frozen=True)
class MatmulRate:
    """A measured matmul rate, and what it was measured on."""

    flops_per_s: float
    dtype: str  # "fp32" or "bf16"
    device: str  # e.g. "cpu: AMD EPYC 7B13 (2 threads)" or "cuda: NVIDIA H200"
    torch: str
    probe: str  # how it was measured

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def cache_dir() -> Path:
    """Where per-machine measurements are kept."""
    if env := os.environ.get("PRETRAINLAB_CACHE_DIR"):
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pretrainlab"


def _processor_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: torch.device) -> str:
    """The device as a person would name it: the processor or GPU model, with the CPU thread count."""
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    return f"cpu: {_processor_name()} ({torch.get_num_threads()} threads)"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_matmul_rate(device: torch.device, dtype: torch.dtype, size: int = PROBE_SIZE) -> float:
    """FLOP/s of `size`-square matmuls in `dtype` on `device`: the best of a few short timed rounds."""
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    flops = 2.0 * size**3
    torch.mm(a, b)  # warm-up: kernel selection, page faults
    _sync(device)
    best = 0.0
    for _ in range(PROBE_ROUNDS):
        n, start = 0, time.perf_counter()
        while True:
            torch.mm(a, b)
            n += 1
            _sync(device)
            elapsed = time.perf_counter() - start
            if elapsed >= PROBE_SECONDS:
                break
        best = max(best, n * flops / elapsed)
    return best


def matmul_rate(device: torch.device, dtype: torch.dtype) -> tuple[MatmulRate, bool]:
    """This machine's matmul rate in `dtype`, and whether it came from the cache (else measured now)."""
    name = "bf16" if dtype == torch.bfloat16 else "fp32"
    where = device_name(device)
    key = f"{where} | torch {torch.__version__} | {name}"
    path = cache_dir() / CACHE_NAME
    try:
        cached = json.loads(path.read_text())
    except (OSError, ValueError):
        cached = {}
    if isinstance(cached, dict) and isinstance(cached.get(key), dict):
        try:
            return MatmulRate(**cached[key]), True
        except TypeError:  # written by another version of this module: measure again
            pass
    rate = MatmulRate(
        flops_per_s=measure_matmul_rate(device, dtype),
        dtype=name,
        device=where,
        torch=torch.__version__,
        probe=f"{PROBE_SIZE}x{PROBE_SIZE} matmuls, best of {PROBE_ROUNDS} rounds of {PROBE_SECONDS:g} s",
    )
    cached = cached if isinstance(cached, dict) else {}
    cached[key] = rate.as_dict()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps(cached, indent=1, sort_keys=True) + "\n")
    except OSError:  # a read-only home: the rate still serves this run
        pass
    return rate, False

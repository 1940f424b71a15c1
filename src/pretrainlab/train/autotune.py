"""`precision: auto` and `compile: auto`, decided by timing the candidates on the run's own shapes.

Why measure: CPU flags do not say which dtype trains faster. At the playground size bf16 autocast
runs at 0.6x of fp32 on an Intel Xeon with AVX512-BF16 and at 1.2x on a 2-core AMD EPYC with it,
where torch.compile added 1.1-1.15x for 25-35 s of compiling. So the probe builds the run's
model from its ModelConfig, takes a random batch of the run's batch size and seq_len, and times whole
updates (forward, backward, clip, AdamW step) of each candidate: a warm-up update, then updates of
the candidates in turn, each timed alone, for about PROBE_SECONDS each. A candidate's rate is its
fastest update: other load on the machine only ever slows an update down, and taking turns gives
every candidate the same chance at the quiet moments (on a shared 2-core machine, rates over whole
seconds moved 3x between runs). A candidate below DROP_RATIO of the leader after a third of its time
is out.

What is not measured, and why:
- bf16 on a CPU without hardware bf16 (no AVX512-BF16, AMX or Arm BF16): torch emulates it, about 18x
  slower than fp32. Flags can say bf16 is slow; they cannot say it is fast.
- CUDA: bf16 where the GPU has native bf16 (compute capability 8+, or ROCm), else fp32. Tensor-core
  bf16 beats fp32 on those GPUs at any size worth a GPU, so a probe would only confirm the rule; on
  older GPUs torch emulates bf16, which the rule now leaves out. (`compile: auto` is still probed.)
- Compiled variants: only with `compile: auto` and a compiler inductor can use (a C++ compiler on a
  CPU, Triton on CUDA), and only for the precisions that survived the eager race: each compile
  costs tens of seconds on a CPU. They race the surviving eager candidates again. A compile that
  fails leaves a note and the eager candidates.

The choice: the candidate with the shortest estimated run, its compile time plus the run's tokens at
its rate, so compiling wins only where it pays for itself; bf16 needs a 5% lead over fp32 (within
the probe's noise, fp32's accuracy is worth more). The measurements are cached per machine and shape
(processor, threads, torch version, device, model config hash, batch, seq_len, candidates) in
`autotune.json` in `peak.cache_dir()` (delete it to measure again); the choice is made again from
them for each run's length.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from functools import cache
from typing import Any

import torch
from torch import Tensor

from pretrainlab.config.model import ModelConfig, TrainConfig
from pretrainlab.runs import write_atomic
from pretrainlab.train.model import GPT
from pretrainlab.train.peak import cache_dir, device_name

PROBE_SECONDS = 3.0  # timed updates per candidate (and at least MIN_UPDATES of them)
MIN_UPDATES = 3
DROP_RATIO = 0.5  # a candidate below this fraction of the leader's tokens/s stops early
BF16_MARGIN = 1.05  # bf16 must be this much faster: within the probe's noise, fp32's accuracy wins
PROBE_VERSION = 1  # part of the cache key: a changed probe measures again
CACHE_NAME = "autotune.json"
now: Callable[[], float] = time.perf_counter  # the probe's clock (tests replace it)


@dataclass(frozen=True)
class Candidate:
    """One setting the probe times: a precision with or without torch.compile."""

    precision: str  # "fp32" or "bf16"
    compile: bool = False

    @property
    def name(self) -> str:
        return self.precision + ("+compile" if self.compile else "")

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return torch.bfloat16 if self.precision == "bf16" else None


@dataclass
class Tuning:
    """The settings a run trains with, and the measurements behind them (as the manifest records them)."""

    precision: str
    compile: bool
    candidates: dict[str, float] = field(default_factory=dict)  # tokens/s by candidate name
    compile_s: dict[str, float] = field(default_factory=dict)  # the probe's compile time by candidate
    probe_s: float = 0.0  # the probe's wall time, compiles included (0 when cached)
    cached: bool = False
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        """One line for the console: every candidate's tokens/s, the choice, and why others were not run."""
        figures = ", ".join(
            f"{name} {rate:,.0f}"
            + (f" (compile {self.compile_s[name]:.0f} s)" if name in self.compile_s else "")
            for name, rate in self.candidates.items()
        )
        where = (  # the words of the matmul-rate line (peak.py)
            "measured earlier on this machine"
            if self.cached
            else f"measured now, {self.probe_s:.0f} s"
            if self.candidates
            else "not measured"
        )
        choice = self.precision + (", compiled" if self.compile else ", eager")
        line = f"autotune: {figures + ' tokens/s -> ' if figures else ''}{choice} ({where})"
        return "; ".join([line, *self.notes])


@cache
def cpp_compiler() -> str | None:
    """The C++ compiler inductor would use on a CPU (g++, or $CXX), or None where there is none."""
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler

        return get_cpp_compiler()
    except Exception:  # InvalidCxxCompiler, or an inductor that moved the function
        return None


def compile_unavailable(device: torch.device) -> str | None:
    """Why torch.compile cannot run on `device` here (a one-line message), or None if it can."""
    if device.type == "cuda":
        try:
            from torch.utils._triton import has_triton
        except ImportError:
            return "compile: Triton not found"
        return None if has_triton() else "compile: Triton not found"
    if device.type == "cpu" and cpp_compiler() is None:
        return "compile: no C++ compiler found (inductor needs g++ or $CXX on a CPU)"
    return None


def cpu_has_bf16_matmul() -> bool:
    """Whether this CPU multiplies bf16 in hardware (AVX512-BF16, AMX, Arm BF16); else torch emulates it.

    Older torch without `torch.cpu.get_capabilities` reports False.
    """
    caps = getattr(torch.cpu, "get_capabilities", dict)()
    return any(caps.get(flag) for flag in ("avx512_bf16", "amx_bf16", "bf16", "sve_bf16"))


def cuda_has_native_bf16() -> bool:
    """Whether the current GPU computes bf16 natively, not by emulation (which is slower than fp32)."""
    try:
        return torch.cuda.is_bf16_supported(including_emulation=False)
    except TypeError:  # older torch: no argument, and no emulation either
        return torch.cuda.is_bf16_supported()


def candidates(
    precision: str, compile: bool | str, device: torch.device
) -> tuple[list[Candidate], list[str]]:
    """The settings worth timing for these config values on `device`, and notes on what was left out."""
    notes: list[str] = []
    if precision != "auto":
        precisions = [precision]
    elif device.type == "cuda":
        precisions = ["bf16" if cuda_has_native_bf16() else "fp32"]
        notes.append(f"precision: {precisions[0]} by rule on CUDA (not probed)")
    elif device.type == "cpu" and cpu_has_bf16_matmul():
        precisions = ["fp32", "bf16"]
    else:
        precisions = ["fp32"]
        if device.type == "cpu":
            notes.append("bf16 not probed: this CPU has no hardware bf16 (torch emulates it, ~18x slower)")
    compiles = [False, True] if compile == "auto" else [bool(compile)]
    if True in compiles and (why := compile_unavailable(device)):
        compiles = [False]
        notes.append(f"{why}: eager")
    return [Candidate(p, c) for c in compiles for p in precisions], notes


def probe_step(
    forward: Callable[..., tuple[Tensor, Tensor]],
    optimizer: torch.optim.Optimizer,
    x: Tensor,
    y: Tensor,
    autocast_dtype: torch.dtype | None,
) -> None:
    """One update as the Trainer makes it: forward under autocast, backward, clip at 1, AdamW step."""
    amp = torch.autocast(x.device.type, dtype=autocast_dtype) if autocast_dtype else nullcontext()
    with amp:
        _, loss = forward(x, y)
    loss.backward()
    params = [p for group in optimizer.param_groups for p in group["params"]]
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _Probe:
    """The run's model, optimizer and a random batch; times candidates' updates on them.

    All candidates share one model and optimizer (autocast is a context, and a compiled module shares
    its parameters), so the probe holds one copy of the weights whatever the number of candidates.
    """

    def __init__(
        self, model_config: ModelConfig, config: TrainConfig, batch: int, seq_len: int, device: torch.device
    ) -> None:
        from pretrainlab.train.trainer import build_optimizer  # here: the trainer imports this module

        self.device = device
        self.model = GPT(model_config).to(device).train()
        self.optimizer = build_optimizer(self.model, config)
        self.x = torch.randint(0, model_config.vocab_size, (batch, seq_len), device=device)
        self.y = torch.randint(0, model_config.vocab_size, (batch, seq_len), device=device)
        self.compiled: torch.nn.Module | None = None

    def step(self, c: Candidate) -> None:
        if c.compile and self.compiled is None:
            self.compiled = torch.compile(self.model)
        forward = self.compiled if c.compile else self.model
        probe_step(forward, self.optimizer, self.x, self.y, c.autocast_dtype)
        _sync(self.device)

    def race(self, group: list[Candidate], rates: dict[str, float]) -> None:
        """Updates of `group` in turn, each timed alone; each one's best tokens/s goes into `rates`."""
        spent = {c.name: 0.0 for c in group}
        updates = dict.fromkeys(spent, 0)
        active = list(group)
        while active:
            for c in active:
                start = now()
                self.step(c)
                elapsed = max(now() - start, 1e-9)
                spent[c.name] += elapsed
                updates[c.name] += 1
                rates[c.name] = max(rates.get(c.name, 0.0), self.x.numel() / elapsed)
            leader = max(rates[c.name] for c in active)
            active = [
                c
                for c in active
                if (spent[c.name] < PROBE_SECONDS or updates[c.name] < MIN_UPDATES)
                and (spent[c.name] < PROBE_SECONDS / 3 or rates[c.name] >= DROP_RATIO * leader)
            ]


def measure(
    model_config: ModelConfig,
    config: TrainConfig,
    batch: int,
    seq_len: int,
    device: torch.device,
    todo: list[Candidate],
) -> tuple[dict[str, float], dict[str, float], list[str]]:
    """Tokens/s of each candidate, compile seconds of compiled ones, and notes (a failed compile)."""
    rates: dict[str, float] = {}
    compile_s: dict[str, float] = {}
    notes: list[str] = []
    forked = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=forked):  # the run's random streams stay as they were
        torch.manual_seed(0)
        probe = _Probe(model_config, config, batch, seq_len, device)
        eager = [c for c in todo if not c.compile]
        for c in eager:
            probe.step(c)  # warm-up: allocations, kernel selection
        probe.race(eager, rates)
        best = max(rates.values(), default=0.0)
        survivors = {p for p in ("fp32", "bf16") if rates.get(p, best) >= DROP_RATIO * best}
        compiled = [c for c in todo if c.compile and c.precision in survivors]
        try:
            for c in compiled:
                start = now()
                probe.step(c)  # compiles this candidate's graphs
                compile_s[c.name] = now() - start
                probe.step(c)
        except Exception as exc:  # inductor raises many kinds; any of them means no compile
            first = (str(exc).strip().splitlines() or [""])[0][:160]
            notes.append(f"compile failed ({type(exc).__name__}: {first}): eager")
            compiled, compile_s = [], {}
            probe.optimizer.zero_grad(set_to_none=True)
        if compiled:
            probe.race(compiled + [c for c in eager if c.precision in survivors], rates)
        if probe.compiled is not None:
            torch._dynamo.reset()  # the run compiles its own model afresh
    return rates, compile_s, notes


def choose(
    todo: list[Candidate], rates: dict[str, float], compile_s: dict[str, float], run_tokens: int
) -> Candidate:
    """The candidate with the shortest estimated run: compile time plus the run's tokens at its rate
    (bf16's rate discounted by BF16_MARGIN). Every compiled candidate is charged the longest compile
    seen: the first compile pays for warming inductor up, so the later ones' shorter times say nothing
    of their graphs."""
    timed = [c for c in todo if rates.get(c.name, 0.0) > 0]
    if not timed:  # every candidate was compiled, and compiling failed
        return Candidate(todo[0].precision)
    compile_cost = max(compile_s.values(), default=0.0)

    def run_s(c: Candidate) -> float:
        rate = rates[c.name] / (BF16_MARGIN if c.precision == "bf16" else 1.0)
        return (compile_cost if c.compile else 0.0) + run_tokens / rate

    return min(timed, key=run_s)


def cache_key(
    model_config: ModelConfig, batch: int, seq_len: int, device: torch.device, todo: list[Candidate]
) -> str:
    """What a measurement depends on: the machine, torch, the model's shapes and the candidates."""
    model_hash = hashlib.sha256(json.dumps(asdict(model_config), sort_keys=True).encode()).hexdigest()[:16]
    names = ",".join(c.name for c in todo)
    return (
        f"{device_name(device)} | torch {torch.__version__} | model {model_hash} | batch {batch} "
        f"| seq_len {seq_len} | {names} | probe v{PROBE_VERSION}"
    )


def _read_cache() -> dict[str, Any]:
    try:
        cached = json.loads((cache_dir() / CACHE_NAME).read_text())
    except (OSError, ValueError):
        return {}
    return cached if isinstance(cached, dict) else {}


def _write_cache(key: str, entry: dict[str, Any]) -> None:
    cached = _read_cache()
    cached[key] = entry
    path = cache_dir() / CACHE_NAME
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps(cached, indent=1, sort_keys=True) + "\n")
    except OSError:  # a read-only home: the measurement still serves this run
        pass


def tune(
    model_config: ModelConfig,
    config: TrainConfig,
    batch: int,
    seq_len: int,
    device: torch.device,
    run_tokens: int,
) -> Tuning:
    """The precision and compile setting for this run, measured (or read from the cache) where it is auto."""
    todo, notes = candidates(config.precision, config.compile, device)
    if len(todo) == 1:
        return Tuning(todo[0].precision, todo[0].compile, notes=notes)
    key = cache_key(model_config, batch, seq_len, device, todo)
    entry = _read_cache().get(key)
    cached = isinstance(entry, dict) and {"candidates", "compile_s", "probe_s", "notes"} <= entry.keys()
    if not cached:
        start = time.perf_counter()
        rates, compile_s, probe_notes = measure(model_config, config, batch, seq_len, device, todo)
        entry = {"candidates": rates, "compile_s": compile_s, "probe_s": time.perf_counter() - start}
        entry["notes"] = probe_notes
        _write_cache(key, entry)
    assert isinstance(entry, dict)
    pick = choose(todo, entry["candidates"], entry["compile_s"], run_tokens)
    return Tuning(
        precision=pick.precision,
        compile=pick.compile,
        candidates={
            c.name: round(entry["candidates"][c.name], 1) for c in todo if c.name in entry["candidates"]
        },
        compile_s={k: round(v, 1) for k, v in entry["compile_s"].items()},
        probe_s=0.0 if cached else round(entry["probe_s"], 1),
        cached=cached,
        notes=notes + list(entry["notes"]),
    )

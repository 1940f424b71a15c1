"""The model's and the trainer's own configuration, as the model zoo and the training loop take it.

Plain dataclasses with the checks the model and the trainer apply, kept here (free of torch) so that
validating a design runs exactly those checks before anything else does: a design that validates is
one the train stage can build.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from pretrainlab.config.design import Design

PRESETS: dict[str, dict] = {
    "gpt2": dict(positions="learned", norm="layernorm", mlp="gelu", bias=True, tie_embeddings=True),
    "llama": dict(positions="rope", norm="rmsnorm", mlp="swiglu", bias=False, tie_embeddings=False),
}


@dataclass
class ModelConfig:
    """Every architectural choice of the zoo; checkpoints store it next to a plain state_dict."""

    vocab_size: int
    seq_len: int = 128  # longest context: size of the learned position table and of the RoPE cache
    layers: int = 4
    width: int = 128
    heads: int = 4
    kv_heads: int | None = None  # grouped-query attention; None means kv_heads = heads
    positions: Literal["learned", "rope", "none"] = "rope"
    norm: Literal["layernorm", "rmsnorm"] = "rmsnorm"
    mlp: Literal["gelu", "swiglu", "relu2"] = "swiglu"
    mlp_ratio: float = 4.0  # hidden = mlp_ratio * width; SwiGLU uses 2/3 of it, see `mlp_hidden`
    qk_norm: bool = False
    tie_embeddings: bool = True
    bias: bool = False
    canon: str = ""  # subset of "ABCD", see the module docstring
    rope_theta: float = 10000.0
    init_std: float = 0.02

    def __post_init__(self) -> None:
        choices = {
            "positions": ("learned", "rope", "none"),
            "norm": ("layernorm", "rmsnorm"),
            "mlp": ("gelu", "swiglu", "relu2"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}: expected one of {allowed}, got {getattr(self, name)!r}")
        for name in ("vocab_size", "seq_len", "layers", "width", "heads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected a positive integer, got {getattr(self, name)}")
        if self.kv_heads is None:
            self.kv_heads = self.heads
        if self.width % self.heads:
            raise ValueError(f"width: {self.width} is not divisible by heads={self.heads}")
        if self.kv_heads < 1 or self.heads % self.kv_heads:
            raise ValueError(f"kv_heads: {self.kv_heads} must be positive and divide heads={self.heads}")
        if self.positions == "rope" and self.head_dim % 2:
            raise ValueError(f"heads: rope needs an even head dim, got width/heads = {self.head_dim}")
        if set(self.canon) - set("ABCD") or len(set(self.canon)) != len(self.canon):
            raise ValueError(f"canon: expected distinct letters from 'ABCD', got {self.canon!r}")
        for name in ("mlp_ratio", "rope_theta", "init_std"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}: expected a positive number, got {getattr(self, name)}")

    @property
    def head_dim(self) -> int:
        return self.width // self.heads

    @property
    def mlp_hidden(self) -> int:
        """MLP hidden size; SwiGLU takes 2/3 of it (rounded up to a multiple of 8) to match params."""
        hidden = self.mlp_ratio * self.width
        if self.mlp == "swiglu":
            return 8 * math.ceil(2 * hidden / 3 / 8)
        return round(hidden)

    @classmethod
    def preset(cls, name: str, **overrides) -> ModelConfig:
        """A named family ("gpt2" or "llama") with any field overridden; vocab_size is required."""
        if name not in PRESETS:
            raise ValueError(f"preset: unknown name {name!r}, expected one of {sorted(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})


@dataclass
class TrainConfig:
    lr: float = 2e-3
    warmup: int = 100
    schedule: Literal["cosine", "wsd", "constant"] = "cosine"
    min_lr_ratio: float = 0.1
    decay_frac: float = 0.2
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.98)
    grad_clip: float = 1.0  # <= 0 turns clipping off (the norm is still logged)
    grad_accum: int = 1
    # auto: measured on the run's shapes (see train/autotune.py); on CUDA, bf16 where supported
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    compile: bool | Literal["auto"] = False  # auto: measured too, where a compiler is present
    seed: int = 0
    device: str = "auto"  # auto: cuda if available, else cpu
    checkpoint_every: int = 200
    eval_every: int = 100
    log_every: int = 10

    def __post_init__(self) -> None:
        self.betas = tuple(self.betas)  # type: ignore[assignment]  # a list after a JSON/YAML round trip
        allowed: dict[str, tuple[str, ...]] = {
            "schedule": ("cosine", "wsd", "constant"),
            "precision": ("auto", "bf16", "fp32"),
        }
        for name, choices in allowed.items():
            value = getattr(self, name)
            if value not in choices:
                raise ValueError(f"TrainConfig.{name}: expected one of {choices}, got {value!r}")
        if not isinstance(self.compile, bool) and self.compile != "auto":
            raise ValueError(f"TrainConfig.compile: expected true, false or 'auto', got {self.compile!r}")
        for name in ("grad_accum", "checkpoint_every", "eval_every", "log_every"):
            value = getattr(self, name)
            if value < 1:
                raise ValueError(f"TrainConfig.{name}: expected a positive integer, got {value}")


def model_config(design: Design, vocab_size: int) -> ModelConfig:
    """The model a design trains, for a tokenizer of `vocab_size` tokens."""
    return ModelConfig.preset(
        design.model.preset, vocab_size=vocab_size, seq_len=design.train.seq_len, **design.model.overrides()
    )


def train_config(design: Design) -> TrainConfig:
    """The trainer's settings from a design's `train` and `eval` sections."""
    t = design.train
    return TrainConfig(
        lr=t.lr,
        warmup=t.warmup,
        schedule=t.schedule,
        min_lr_ratio=t.min_lr_ratio,
        weight_decay=t.weight_decay,
        betas=tuple(t.betas),
        grad_clip=t.grad_clip,
        grad_accum=t.grad_accum,
        precision=t.precision,
        compile=t.compile,
        seed=design.seed,
        checkpoint_every=t.checkpoint_every,
        eval_every=design.eval.every,
    )

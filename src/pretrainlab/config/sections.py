"""The design's sections for data budget, curation, tokenizer, model, training and evaluation."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from pretrainlab.config.base import Section


class Budget(Section):
    train_tokens: int | None = Field(
        None,
        gt=0,
        description="Tokens in the packed training corpus. Default: what the training phases consume.",
    )


class TokenizerSection(Section):
    kind: Literal["bpe"] = Field("bpe", description="Byte-level BPE trained on the training records only.")
    vocab: int = Field(4096, ge=258, le=2**20, description="Vocabulary size, special tokens included.")
    train_docs: int = Field(
        50_000, ge=1, description="At most this many records (a seeded sample) train the tokenizer."
    )


class ModelSection(Section):
    preset: Literal["gpt2", "llama"] = Field(
        "llama", description="Starting point; the fields below override it."
    )
    layers: int | None = Field(None, ge=1, description="Transformer blocks.")
    width: int | None = Field(None, ge=8, description="Residual stream width (d_model).")
    heads: int | None = Field(None, ge=1, description="Attention heads.")
    kv_heads: int | None = Field(None, ge=1, description="Key/value heads (grouped-query attention).")
    positions: Literal["learned", "rope", "none"] | None = Field(None, description="Position encoding.")
    norm: Literal["layernorm", "rmsnorm"] | None = Field(None, description="Normalisation layer.")
    mlp: Literal["gelu", "swiglu", "relu2"] | None = Field(None, description="MLP type.")
    mlp_ratio: float | None = Field(None, gt=0, description="MLP hidden size as a multiple of width.")
    qk_norm: bool | None = Field(None, description="Normalise queries and keys per head.")
    tie_embeddings: bool | None = Field(None, description="Share input and output embeddings.")
    canon: str | None = Field(
        None, pattern="^[ABCD]*$", description="Canon layers at positions A/B/C/D (e.g. 'ABCD'), or ''."
    )

    def overrides(self) -> dict[str, Any]:
        return {k: v for k, v in self.model_dump(exclude={"preset"}).items() if v is not None}


class PhaseSection(Section):
    name: str = Field(min_length=1, description="Phase name, shown in metrics and reports.")
    steps: int = Field(ge=1, description="Optimizer steps in this phase.")
    exercises: list[str] | None = Field(
        None,
        description="Which records this phase trains on: exercise names, capabilities, or "
        "'exercise/part' (e.g. 'bios/qa'). Default: the whole mixture.",
    )
    lr_scale: float = Field(1.0, gt=0, description="Peak learning rate of this phase, relative to train.lr.")


class TrainSection(Section):
    seq_len: int = Field(128, ge=8, description="Tokens per training window.")
    batch: int = Field(
        64, ge=1, description="Windows per micro-batch; an optimizer step sees batch x grad_accum."
    )
    grad_accum: int = Field(1, ge=1, description="Micro-batches accumulated per optimizer step.")
    lr: float = Field(2e-3, gt=0, description="Peak learning rate.")
    warmup: int = Field(100, ge=0, description="Linear warm-up steps at the start of each phase.")
    schedule: Literal["cosine", "wsd", "constant"] = Field("cosine", description="Learning-rate schedule.")
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="Final learning rate as a fraction of the peak.")
    weight_decay: float = Field(0.1, ge=0, description="AdamW weight decay on matrices.")
    betas: tuple[float, float] = Field((0.9, 0.98), description="AdamW betas.")
    grad_clip: float = Field(1.0, ge=0, description="Gradient-norm clip (0 disables).")
    precision: Literal["auto", "bf16", "fp32"] = Field(
        "auto",
        description="auto: bf16 autocast or fp32, whichever a short timed probe on this run's model and "
        "batch finds faster on this machine (cached per machine and shape); on CUDA, bf16 where supported.",
    )
    compile: bool | Literal["auto"] = Field(
        False,
        description="Compile the model with torch.compile. auto: probe compiled against eager (costs the "
        "compile time, tens of seconds on a CPU) and compile only if it pays off over the run.",
    )
    checkpoint_every: int = Field(200, ge=1, description="Steps between checkpoints.")
    phases: list[PhaseSection] = Field(
        default_factory=lambda: [PhaseSection(name="pretrain", steps=500)],
        min_length=1,
        description="Training phases, run in order.",
    )

    @property
    def total_steps(self) -> int:
        return sum(p.steps for p in self.phases)


class EvalSection(Section):
    every: int = Field(
        100, ge=1, description="Score every capability's probes every this many steps (and at 0)."
    )
    max_probes: int = Field(
        200, ge=1, description="At most this many probes per (capability, split, group), a seeded sample."
    )
    batch_size: int = Field(128, ge=1, description="Probes per scoring batch.")
    samples: int = Field(4, ge=0, description="Sample generations per capability shown in the report.")


class NearDupSection(Section):
    """MinHash near-duplicate removal within each exercise: word n-gram shingles, bands and rows chosen
    from the threshold, clusters that keep their first record."""

    threshold: float = Field(
        0.8, gt=0, lt=1, description="Estimated Jaccard similarity at which a pair is a near-duplicate."
    )
    ngram: int = Field(5, ge=1, description="Words per shingle.")
    num_perm: int = Field(128, ge=16, le=1024, description="MinHash permutations (signature length).")
    seed: int = Field(1, ge=0, description="Seed of the MinHash permutations.")
    normalize_numbers: bool = Field(
        False,
        description="Treat all numbers as one token. Off by default: templated synthetic documents differ "
        "mainly in their numbers, and two biographies of different people must not collapse into one.",
    )


class BenchmarkSpec(Section):
    """An outside benchmark whose items must not appear in training text."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="Name in removal reasons and the report.")
    path: str = Field(description="A .jsonl or .parquet file of items (relative to the design file).")
    fields: list[str] = Field(
        default_factory=lambda: ["text"], min_length=1, description="Fields joined into an item's text."
    )
    id: str | None = Field(None, description="Field holding an item id; default: the item's line number.")
    ngram: int = Field(
        13, ge=1, description="Word n-gram length; items shorter than this match as whole lines."
    )


class CurateSection(Section):
    dedup: bool = Field(True, description="Drop exact duplicate records within an exercise.")
    decontaminate: bool = Field(True, description="Drop training records that contain a non-'seen' probe.")
    ngram: int = Field(13, ge=1, description="Word n-gram length for decontamination of long probes.")
    near_dup: NearDupSection | None = Field(None, description="Near-duplicate removal (off unless given).")
    benchmarks: list[BenchmarkSpec] = Field(
        default_factory=list, description="Outside benchmarks to decontaminate against, besides the probes."
    )


class ExecutorSection(Section):
    """Where the data stages' per-exercise work runs: procedural generation and every curate step.
    Outputs do not depend on it (the same files, byte for byte), so no stage hash covers it."""

    kind: Literal["local", "ray"] = Field(
        "local", description="local: a process pool on this machine; ray: tasks on a Ray cluster."
    )
    workers: int | None = Field(
        None, ge=1, description="local: processes at most (default: the machine's cores; 1 runs inline)."
    )
    address: str | None = Field(
        None, description="ray: the cluster to join (e.g. ray://head:10001); default: start a local one."
    )

"""The design file: one YAML document that says what data to make, what to train, and what to measure.

Validation is strict (unknown keys are errors) and every error names its field path, e.g.
``exercises[1].max_hops: must be >= 1``. Exercise parameters are validated by the world the
exercise's ``kind`` names, so user-defined worlds get the same treatment as built-in ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    create_model,
    model_validator,
)

from pretrainlab.generate.worlds.base import World, WorldParams, builtin_worlds, resolve_world
from pretrainlab.llm.corpus import CorpusSpec, resolve_path
from pretrainlab.train.config import model_config, train_config


class DesignError(ValueError):
    """A design file that cannot be used; `errors` holds one ``path: message`` line per problem."""

    def __init__(self, errors: list[str], source: str | None = None):
        self.errors = errors
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(where + "; ".join(errors))


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Exercise(Section):
    """Fields every exercise has; the world named by `kind` adds its own parameters."""

    kind: str = Field(description="World that makes the data: a built-in kind or a dotted path module:Class.")
    capability: str = Field(min_length=1, description="Name of the capability this exercise teaches.")
    share: float = Field(1.0, ge=0, description="Share of the token budget (relative to the other shares).")
    name: str | None = Field(
        None, min_length=1, description="Unique exercise name; defaults to the kind. Records carry it."
    )

    model_config = ConfigDict(extra="allow")

    @property
    def key(self) -> str:
        return self.name or self.kind

    def world_class(self) -> type[World]:
        return resolve_world(self.kind)

    def world_params(self) -> WorldParams:
        return self.world_class().Params.model_validate(self.model_extra or {})


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
        "auto", description="auto = bf16 autocast where faster."
    )
    compile: bool = Field(False, description="Compile the model with torch.compile.")
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


class CurateSection(Section):
    dedup: bool = Field(True, description="Drop exact duplicate records within an exercise.")
    decontaminate: bool = Field(True, description="Drop training records that contain a non-'seen' probe.")
    ngram: int = Field(13, ge=1, description="Word n-gram length for decontamination of long probes.")


class EndpointSection(Section):
    """One OpenAI-compatible engine: a running one (`url`) or a model folder served for the run (`serve`)."""

    name: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="Name exercises use in `endpoint`; default: endpoint<i>.",
    )
    url: str | None = Field(None, description="Base URL of a running engine, e.g. http://gpu-box:8000/v1.")
    serve: str | None = Field(
        None,
        description="A model folder (HF format) to serve on loopback for the run (transformers or vllm).",
    )
    engine: Literal["auto", "transformers", "vllm"] = Field(
        "auto", description="With `serve`: vllm where installed with a GPU, else transformers."
    )
    model: str | None = Field(
        None,
        description="Model name sent in requests; required with `url`, default with `serve`: the folder.",
    )
    api_key_env: str | None = Field(
        None, description="Environment variable holding the API key (the key itself never goes in a file)."
    )
    max_concurrency: int = Field(64, ge=1, description="Most requests in flight at once.")
    initial_concurrency: int = Field(
        8, ge=1, description="Requests in flight at the start (grows adaptively)."
    )
    params: float | None = Field(
        None, gt=0, description="Generator's parameter count: the ledger counts 2 x params FLOPs per token."
    )
    tokens_per_s: float | None = Field(
        None,
        gt=0,
        description="Generator's throughput (tokens/s per device): the ledger counts device-hours.",
    )

    @model_validator(mode="after")
    def _one_source(self) -> EndpointSection:
        if (self.url is None) == (self.serve is None):
            raise ValueError("give exactly one of `url` (a running engine) or `serve` (a model folder)")
        if self.url is not None and self.model is None:
            raise ValueError("`model` is required with `url`")
        if self.serve is not None and self.api_key_env is not None:
            raise ValueError("`api_key_env` applies to `url` endpoints only")
        return self


class LLMSection(Section):
    endpoints: list[EndpointSection] = Field(min_length=1, description="Engines that `llm` exercises call.")
    timeout_s: float = Field(300.0, gt=0, description="Seconds per request attempt.")
    max_attempts: int = Field(5, ge=1, description="Attempts per request (retries on 429, 5xx, timeouts).")
    startup_timeout_s: float = Field(
        600.0, gt=0, description="Seconds a `serve` engine has to become healthy."
    )
    cache: bool = Field(
        True, description="Keep every answer in runs/NAME/llm-cache: re-runs and resumes send nothing twice."
    )
    max_failed_fraction: float = Field(
        0.01,
        ge=0,
        le=1,
        description="The stage fails (to be re-run) when more items than this got no answer from the engine.",
    )

    @model_validator(mode="after")
    def _names(self) -> LLMSection:
        seen: set[str] = set()
        for i, ep in enumerate(self.endpoints):
            ep.name = ep.name or f"endpoint{i}"
            if ep.name in seen:
                raise ValueError(f"two endpoints are named '{ep.name}'")
            seen.add(ep.name)
        return self


class Design(Section):
    """A pretrainlab design."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="Design name; names the run directory.")
    seed: int = Field(0, ge=0, description="Every random choice flows from this seed.")
    budget: Budget = Field(default_factory=Budget, description="Token budget.")
    exercises: list[Exercise] = Field(min_length=1, description="What the data teaches, and how it is made.")
    corpora: dict[str, CorpusSpec] = Field(
        default_factory=dict, description="Seed corpora that `llm` exercises draw on, by name."
    )
    llm: LLMSection | None = Field(None, description="Engines and client settings for `llm` exercises.")
    curate: CurateSection = Field(default_factory=CurateSection, description="Curation of generated records.")
    tokenizer: TokenizerSection = Field(default_factory=TokenizerSection, description="Tokenizer.")
    model: ModelSection = Field(default_factory=ModelSection, description="The model to pretrain.")
    train: TrainSection = Field(default_factory=TrainSection, description="Training.")
    eval: EvalSection = Field(default_factory=EvalSection, description="Capability probes during training.")

    _base_dir: Path | None = PrivateAttr(None)  # the design file's folder: relative paths start there

    @property
    def base_dir(self) -> Path | None:
        return self._base_dir

    def resolve(self, path: str) -> Path:
        """A path from the design, relative to the design file's folder."""
        return resolve_path(path, self._base_dir)

    def endpoint_model(self, ep: EndpointSection) -> str:
        """The model name requests to an endpoint carry (a served folder is named by its absolute path)."""
        if ep.model is not None:
            return ep.model
        return str(self.resolve(ep.serve).resolve())  # type: ignore[arg-type]

    @model_validator(mode="after")
    def _unique_exercise_names(self) -> Design:
        seen: set[str] = set()
        for ex in self.exercises:
            if ex.key in seen:
                raise ValueError(f"two exercises are named '{ex.key}'; give one a distinct `name`")
            seen.add(ex.key)
        return self

    def dump(self) -> dict[str, Any]:
        """The design as plain data, with file paths (corpora, served models) made absolute, so a copy
        kept elsewhere (runs/NAME/design.yaml) still points at the same files."""
        d = self.model_dump(mode="json")
        for spec in d["corpora"].values():
            spec["path"] = str(self.resolve(spec["path"]))
        for ep in (d["llm"] or {}).get("endpoints", []):
            if ep["serve"] is not None:
                ep["serve"] = str(self.resolve(ep["serve"]))
        return d


def _format_loc(loc: tuple[Any, ...], prefix: str = "") -> str:
    path = prefix
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path or "(design)"


_MESSAGES = {
    "missing": lambda e: "required field is missing",
    "extra_forbidden": lambda e: "unknown key",
    "greater_than_equal": lambda e: f"must be >= {e['ctx']['ge']}",
    "greater_than": lambda e: f"must be > {e['ctx']['gt']}",
    "less_than_equal": lambda e: f"must be <= {e['ctx']['le']}",
    "less_than": lambda e: f"must be < {e['ctx']['lt']}",
}


def _format_errors(err: ValidationError, prefix: str = "") -> list[str]:
    lines = []
    for e in err.errors():
        fmt = _MESSAGES.get(e["type"])
        if e["type"] == "value_error" and "error" in e.get("ctx", {}):
            msg = str(e["ctx"]["error"])  # our own message, without pydantic's "Value error, " prefix
        else:
            msg = fmt(e) if fmt else e["msg"][0].lower() + e["msg"][1:]
        if (
            e["type"] not in ("missing", "extra_forbidden")
            and "input" in e
            and not isinstance(e["input"], (dict, list))
        ):
            msg += f" (got {e['input']!r})"
        loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        lines.append(f"{_format_loc(loc, prefix)}: {msg}")
    return lines


def parse_design(data: Any, source: str | None = None, base_dir: str | Path | None = None) -> Design:
    """Validate a design given as plain data; raises DesignError naming every bad field. Relative paths
    in it (corpora, served models) are taken from `base_dir` (default: the working directory)."""
    if not isinstance(data, dict):
        raise DesignError(["(design): expected a mapping of sections"], source)
    try:
        design = Design.model_validate(data)
    except ValidationError as e:
        raise DesignError(_format_errors(e), source) from None
    design._base_dir = Path(base_dir) if base_dir is not None else None
    errors: list[str] = []
    for i, ex in enumerate(design.exercises):
        try:
            params = ex.world_params()
        except LookupError as e:
            errors.append(f"exercises[{i}].kind: {e}")
            continue
        except ValidationError as e:
            errors.extend(_format_errors(e, f"exercises[{i}]"))
            continue
        check = getattr(params, "check_design", None)  # worlds that refer to other sections (llm)
        if check is not None:
            errors.extend(f"exercises[{i}].{line}" for line in check(design))
    known = {ex.key for ex in design.exercises} | {ex.capability for ex in design.exercises}
    for i, phase in enumerate(design.train.phases):
        for j, sel in enumerate(phase.exercises or []):
            if sel.split("/", 1)[0] not in known:
                errors.append(
                    f"train.phases[{i}].exercises[{j}]: '{sel}' names no exercise or capability"
                    f" (known: {', '.join(sorted(known))})"
                )
    errors.extend(_runtime_config_errors(design))
    if errors:
        raise DesignError(errors, source)
    return design


def _runtime_config_errors(design: Design) -> list[str]:
    """The model's and the trainer's own checks, run on what the design asks of them: a design that
    validates is one the train stage can build. Their messages start with the field they concern."""
    errors = []
    for section, build in (
        ("model", lambda: model_config(design, vocab_size=design.tokenizer.vocab)),
        ("train", lambda: train_config(design)),
    ):
        try:
            build()
        except ValueError as e:
            errors.append(f"{section}.{str(e).removeprefix('TrainConfig.')}")
    return errors


def load_design(path: str | Path) -> Design:
    """Read and validate a design file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise DesignError([f"cannot read design file ({e.strerror})"], str(path)) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise DesignError([f"{where}not valid YAML ({getattr(e, 'problem', e)})"], str(path)) from None
    return parse_design(data, str(path), base_dir=path.parent)


def json_schema() -> dict[str, Any]:
    """JSON Schema of the design file, with each built-in world's parameters as a variant of `exercises`."""
    variants = []
    for kind, world in sorted(builtin_worlds().items()):
        fields: dict[str, Any] = {
            "kind": (Literal[kind], Field(description=f"Built-in world '{kind}'.")),  # type: ignore[valid-type]
        }
        for name in ("capability", "share", "name"):
            f = Exercise.model_fields[name]
            fields[name] = (f.annotation, f)
        model = create_model(
            f"{world.__name__}Exercise",
            __base__=world.Params,
            __doc__=(world.__doc__ or "").strip(),
            **fields,
        )
        variants.append(model)
    union = Annotated[Any, Field()]
    schema_model = create_model(
        "DesignSchema",
        __base__=Design,
        exercises=(list[union], Design.model_fields["exercises"]),  # type: ignore[valid-type]
    )
    schema = schema_model.model_json_schema()
    defs = schema.setdefault("$defs", {})
    refs = []
    for model in variants:
        sub = model.model_json_schema(ref_template="#/$defs/{model}")
        defs.update(sub.pop("$defs", {}))
        defs[model.__name__] = sub
        refs.append({"$ref": f"#/$defs/{model.__name__}"})
    defs["Exercise"] = {
        "description": "A built-in world, or a user world named by a dotted path (validated by that world).",
        "anyOf": [*refs, {"type": "object", "required": ["kind", "capability"]}],
    }
    schema["properties"]["exercises"]["items"] = {"$ref": "#/$defs/Exercise"}
    schema["title"] = "pretrainlab design"
    return schema

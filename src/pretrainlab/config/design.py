"""The design file: one YAML document that says what data to make, what to train, and what to measure.

Validation is strict (unknown keys are errors) and every error names its field path, e.g.
``exercises[1].max_hops: must be >= 1``. `parse_design` checks everything the design alone can tell,
including the model's and the trainer's own rules; `pretrainlab.design.load_design` adds the checks of
each exercise kind's code (plugin parameters, prompt templates, verifiers).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import Discriminator, Field, PrivateAttr, Tag, ValidationError, model_validator

from pretrainlab.config.base import FieldError, Section
from pretrainlab.config.corpus import CorpusSpec
from pretrainlab.config.engines import EndpointSection, LLMSection
from pretrainlab.config.exercises import (
    BiographiesExercise,
    CorpusExercise,
    ExerciseConfig,
    KHopExercise,
    ModArithExercise,
    PluginExercise,
)
from pretrainlab.config.llm import LLMExercise
from pretrainlab.config.model import model_config, train_config
from pretrainlab.config.parsers import PARSER_KINDS
from pretrainlab.config.samplers import SAMPLER_KINDS
from pretrainlab.config.sections import (
    Budget,
    CurateSection,
    EvalSection,
    ExecutorSection,
    ModelSection,
    TokenizerSection,
    TrainSection,
)
from pretrainlab.errors import DesignError

BUILTIN_VARIANTS: dict[str, type[ExerciseConfig]] = {
    "biographies": BiographiesExercise,
    "khop": KHopExercise,
    "modarith": ModArithExercise,
    "llm": LLMExercise,
    "corpus": CorpusExercise,
}
BUILTIN_KINDS = tuple(BUILTIN_VARIANTS)
PLUGIN = "plugin"


def _exercise_tag(entry: Any) -> str:
    """A built-in kind is its own variant; any other kind is a plugin."""
    kind = entry.get("kind") if isinstance(entry, dict) else getattr(entry, "kind", None)
    return kind if kind in BUILTIN_VARIANTS else PLUGIN


ExerciseEntry = Annotated[
    Annotated[BiographiesExercise, Tag("biographies")]
    | Annotated[KHopExercise, Tag("khop")]
    | Annotated[ModArithExercise, Tag("modarith")]
    | Annotated[LLMExercise, Tag("llm")]
    | Annotated[CorpusExercise, Tag("corpus")]
    | Annotated[PluginExercise, Tag(PLUGIN)],
    Discriminator(_exercise_tag),
]


def resolve_path(path: str, base_dir: Path | None) -> Path:
    """A path from a design: relative ones start at the design file's folder (`base_dir`)."""
    p = Path(path).expanduser()
    if not p.is_absolute() and base_dir is not None:
        p = base_dir / p
    return p


class Design(Section):
    """A pretrainlab design."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="Design name; names the run directory.")
    seed: int = Field(0, ge=0, description="Every random choice flows from this seed.")
    budget: Budget = Field(default_factory=Budget, description="Token budget.")
    exercises: list[ExerciseEntry] = Field(
        min_length=1, description="What the data teaches, and how it is made."
    )
    corpora: dict[str, CorpusSpec] = Field(
        default_factory=dict, description="Seed corpora that `llm` exercises draw on, by name."
    )
    llm: LLMSection | None = Field(None, description="Engines and client settings for `llm` exercises.")
    curate: CurateSection = Field(default_factory=CurateSection, description="Curation of generated records.")
    tokenizer: TokenizerSection = Field(default_factory=TokenizerSection, description="Tokenizer.")
    model: ModelSection = Field(default_factory=ModelSection, description="The model to pretrain.")
    train: TrainSection = Field(default_factory=TrainSection, description="Training.")
    eval: EvalSection = Field(default_factory=EvalSection, description="Capability probes during training.")
    executor: ExecutorSection = Field(
        default_factory=ExecutorSection, description="Where the data stages' work runs (local or Ray)."
    )

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
        d = self.model_dump(mode="json", by_alias=True)
        for spec in d["corpora"].values():
            spec["path"] = str(self.resolve(spec["path"]))
        for ep in (d["llm"] or {}).get("endpoints", []):
            if ep["serve"] is not None:
                ep["serve"] = str(self.resolve(ep["serve"]))
        return d


# --------------------------------------------------------------------------------- error messages

_UNION_TAGS = {*BUILTIN_KINDS, PLUGIN, *SAMPLER_KINDS, *PARSER_KINDS}

_MESSAGES = {
    "missing": lambda e: "required field is missing",
    "extra_forbidden": lambda e: "unknown key",
    "greater_than_equal": lambda e: f"must be >= {e['ctx']['ge']}",
    "greater_than": lambda e: f"must be > {e['ctx']['gt']}",
    "less_than_equal": lambda e: f"must be <= {e['ctx']['le']}",
    "less_than": lambda e: f"must be < {e['ctx']['lt']}",
}


def _is_union_tag(parts: tuple[Any, ...], i: int) -> bool:
    """Whether parts[i] is the variant tag pydantic inserts after a union-typed position (an exercise in
    its list, a parser, a sampler in its mapping)."""
    part = parts[i]
    if not isinstance(part, str) or part not in _UNION_TAGS or i == 0:
        return False
    before = parts[i - 1]
    return isinstance(before, int) or before == "parser" or (i >= 2 and parts[i - 2] == "samplers")


def _format_loc(loc: tuple[Any, ...], prefix: str = "") -> str:
    path = prefix
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path or "(design)"


def format_errors(err: ValidationError, prefix: str = "") -> list[str]:
    """One ``path: message`` line per problem pydantic found, paths under `prefix`."""
    context = tuple(prefix.split(".")) if prefix else ()
    lines = []
    for e in err.errors():
        loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        parts = (*context, *loc)
        loc = tuple(p for i, p in enumerate(parts) if i >= len(context) and not _is_union_tag(parts, i))
        error = e.get("ctx", {}).get("error")
        if e["type"] == "value_error" and isinstance(error, FieldError):
            loc, msg = (*loc, error.field), error.message
        elif e["type"] == "value_error" and error is not None:
            msg = str(error)  # our own message, without pydantic's "Value error, " prefix
        elif e["type"] == "union_tag_invalid":
            what = "sampler" if "samplers" in parts else "parser"
            known = e["ctx"]["expected_tags"].replace("'", "")
            loc, msg = (*loc, "kind"), f"unknown {what} kind {e['ctx']['tag']!r} (known: {known})"
        elif e["type"] == "union_tag_not_found":
            loc, msg = (*loc, "kind"), "required field is missing"
        else:
            fmt = _MESSAGES.get(e["type"])
            msg = fmt(e) if fmt else e["msg"][0].lower() + e["msg"][1:]
        if (
            e["type"] not in ("missing", "extra_forbidden", "union_tag_invalid", "union_tag_not_found")
            and "input" in e
            and not isinstance(e["input"], (dict, list))
        ):
            msg += f" (got {e['input']!r})"
        lines.append(f"{_format_loc(loc, prefix)}: {msg}")
    return lines


# ------------------------------------------------------------------------------------- loading


def _cross_section_errors(design: Design) -> list[str]:
    """Checks that span sections: phase selectors, `llm` exercises against corpora and endpoints,
    and the model's and the trainer's own rules on what the design asks of them."""
    errors: list[str] = []
    for i, ex in enumerate(design.exercises):
        if isinstance(ex, LLMExercise):
            errors.extend(f"exercises[{i}].{line}" for line in ex.check_design(design))
        if isinstance(ex, CorpusExercise) and ex.seeds.corpus not in design.corpora:
            known = ", ".join(sorted(design.corpora)) or "none defined"
            errors.append(f"exercises[{i}].seeds.corpus: '{ex.seeds.corpus}' is not in `corpora` ({known})")
    known = {ex.key for ex in design.exercises} | {ex.capability for ex in design.exercises}
    for i, phase in enumerate(design.train.phases):
        for j, sel in enumerate(phase.exercises or []):
            if sel.split("/", 1)[0] not in known:
                errors.append(
                    f"train.phases[{i}].exercises[{j}]: '{sel}' names no exercise or capability"
                    f" (known: {', '.join(sorted(known))})"
                )
    for section, build in (
        ("model", lambda: model_config(design, vocab_size=design.tokenizer.vocab)),
        ("train", lambda: train_config(design)),
    ):
        try:
            build()
        except ValueError as e:
            errors.append(f"{section}.{str(e).removeprefix('TrainConfig.')}")
    return errors


def parse_design(data: Any, source: str | None = None, base_dir: str | Path | None = None) -> Design:
    """Validate a design given as plain data; raises DesignError naming every bad field. Relative paths
    in it (corpora, served models) are taken from `base_dir` (default: the working directory)."""
    if not isinstance(data, dict):
        raise DesignError(["(design): expected a mapping of sections"], source)
    try:
        design = Design.model_validate(data)
    except ValidationError as e:
        raise DesignError(format_errors(e), source) from None
    design._base_dir = Path(base_dir) if base_dir is not None else None
    errors = _cross_section_errors(design)
    if errors:
        raise DesignError(errors, source)
    return design


def read_design_file(path: str | Path) -> Any:
    """The plain data of a design file; a file that cannot be read or parsed is a DesignError."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise DesignError([f"cannot read design file ({e.strerror})"], str(path)) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise DesignError([f"{where}not valid YAML ({getattr(e, 'problem', e)})"], str(path)) from None

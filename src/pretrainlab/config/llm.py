"""The `llm` exercise's configuration: items from seeds or a count, samplers, a chain of steps (prompt,
parser, generation settings, endpoint), the record text, verifiers and a judge.

What can be checked from the design alone is checked here (shapes, names, endpoints, corpora). Whether
templates compile and name known variables, and whether verifiers import, is checked by the exercise
kind itself when a design is loaded (`LLM.check` in `pretrainlab.llm.exercise`), since that needs its runtime.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator, model_validator

from pretrainlab.config.base import Section
from pretrainlab.config.corpus import SeedUse
from pretrainlab.config.exercises import ExerciseConfig
from pretrainlab.config.parsers import JsonParser, ParserConfig, PlainParser
from pretrainlab.config.samplers import SamplerConfig, check_sampler_names

if TYPE_CHECKING:
    from pretrainlab.config.design import Design

# names a template may always read, besides samplers and earlier steps
BUILTIN_VARS = ("seed", "index", "exercise")

PromptSpec = str | list[dict[str, str]]


class Generation(Section):
    """Sampling parameters sent with each request (engines ignore what they do not support)."""

    max_tokens: int = Field(512, ge=1, description="Most tokens to generate.")
    temperature: float | None = Field(None, ge=0, description="Sampling temperature; default: the engine's.")
    top_p: float | None = Field(None, gt=0, le=1, description="Nucleus sampling.")
    n: int = Field(1, ge=1, description="Completions per request (last step only): each may become a record.")
    stop: list[str] | None = Field(None, description="Stop sequences.")
    seed: bool = Field(
        True,
        description="Send a per-request seed derived from the design seed (reproducible on engines "
        "that honour it).",
    )
    extra: dict[str, Any] = Field(default_factory=dict, description="Engine-specific fields (extra_body).")

    def merged(self, override: Generation | None) -> Generation:
        if override is None:
            return self
        return self.model_copy(update={k: getattr(override, k) for k in override.model_fields_set})

    def request_params(self, seed: int | None) -> dict[str, Any]:
        p: dict[str, Any] = {"max_tokens": self.max_tokens}
        for k in ("temperature", "top_p", "stop"):
            if getattr(self, k) is not None:
                p[k] = getattr(self, k)
        if self.n > 1:
            p["n"] = self.n
        if self.seed and seed is not None:
            p["seed"] = seed
        if self.extra:
            p["extra_body"] = dict(self.extra)
        return p


class Step(Section):
    """One prompt of the chain; later templates read its output by `name`."""

    name: str = Field(
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="Later templates read the output by it."
    )
    prompt: PromptSpec = Field(description="A completion string or a list of {role, content} chat messages.")
    parser: ParserConfig = Field(default_factory=PlainParser, description="How the reply becomes the output.")
    generation: Generation | None = Field(None, description="Overrides of the exercise's `generation`.")
    endpoint: str | None = Field(None, description="Endpoint name; default: spread over all endpoints.")
    structured: bool = Field(
        False, description="Send the json parser's schema as `response_format` (engines that support it)."
    )
    parse_retries: int = Field(1, ge=0, description="Corrective turns after a reply that does not parse.")


class Judge(Section):
    """An LLM judge that scores each record 1-10 against a rubric."""

    criteria: str = Field(min_length=1, description="What a good response does (the rubric).")
    task: str | None = Field(
        None,
        description="What the judge is told the response answers (a template, e.g. 'Rewrite: "
        "{{ seed.text }}'); default: the last step's prompt.",
    )
    threshold: float = Field(
        7, ge=1, le=10, description="Keep records the judge scores at least this (1-10)."
    )
    endpoint: str | None = Field(None, description="Endpoint of the judge model; default: all endpoints.")
    generation: Generation | None = Field(None, description="Judge sampling; default max_tokens 256, temp 0.")


class LLMExercise(ExerciseConfig):
    """Documents written by a model, from seeds, samplers and a chain of prompts."""

    kind: Literal["llm"]
    seeds: SeedUse | None = Field(None, description="Which corpus grounds the items, and how seeds are used.")
    count: int | None = Field(None, ge=1, description="Without seeds: how many items.")
    samplers: dict[str, SamplerConfig] = Field(
        default_factory=dict, description="Sampled template variables, by name."
    )
    prompt: PromptSpec | None = Field(None, description="One-step exercise: the prompt (or use `steps`).")
    parser: ParserConfig = Field(default_factory=PlainParser, description="One-step exercise: the parser.")
    generation: Generation = Field(default_factory=Generation, description="Sampling for every step.")
    endpoint: str | None = Field(None, description="One-step exercise: the endpoint.")
    structured: bool = Field(False, description="One-step exercise: send `response_format`.")
    parse_retries: int = Field(1, ge=0, description="One-step exercise: corrective turns.")
    steps: list[Step] | None = Field(None, description="A chain of prompts (query -> answer -> ...).")
    text: str | None = Field(
        None, description="Template of the record text over step outputs; default: the last output."
    )
    verify: list[str] = Field(default_factory=list, description="Verifiers, 'package.module:function'.")
    judge: Judge | None = Field(None, description="An LLM judge that scores each record.")

    @field_validator("samplers")
    @classmethod
    def _sampler_names(cls, samplers: dict[str, Any]) -> dict[str, Any]:
        return check_sampler_names(samplers)

    @model_validator(mode="after")
    def _shape(self) -> LLMExercise:
        if (self.prompt is None) == (self.steps is None):
            raise ValueError("give `prompt` (one step) or `steps` (a chain), not both and not neither")
        if (self.seeds is None) == (self.count is None):
            raise ValueError("give `seeds` (items from a corpus) or `count` (items without seeds)")
        if self.steps is not None:
            names = [s.name for s in self.steps]
            if len(set(names)) != len(names):
                raise ValueError(f"step names must be unique, got {names}")
        return self

    def chain(self) -> list[Step]:
        """The steps, a one-step exercise's fields made into its one step named `response`."""
        if self.steps is not None:
            return self.steps
        return [
            Step(
                name="response",
                prompt=self.prompt,  # type: ignore[arg-type]
                parser=self.parser,
                endpoint=self.endpoint,
                structured=self.structured,
                parse_retries=self.parse_retries,
            )
        ]

    def step_path(self, i: int, field: str) -> str:
        """The design path (relative to the exercise) of a field of step `i`."""
        return f"steps[{i}].{field}" if self.steps is not None else field

    def check_design(self, design: Design) -> list[str]:
        """Problems that need the rest of the design (corpora, endpoints) or the whole chain, as
        ``path: message`` lines relative to the exercise."""
        errors: list[str] = []
        clash = sorted(set(self.samplers) & ({s.name for s in self.chain()} | set(BUILTIN_VARS)))
        if clash:
            errors.append(
                f"samplers: {clash} clash with step names or built-in variables {list(BUILTIN_VARS)}"
            )
        steps = self.chain()
        for i, step in enumerate(steps):
            if self.generation.merged(step.generation).n > 1 and i < len(steps) - 1:
                errors.append(f"{self.step_path(i, 'generation.n')}: n > 1 only on the last step")
            if step.structured and not isinstance(step.parser, JsonParser):
                errors.append(f"{self.step_path(i, 'structured')}: needs a json parser")
        if self.seeds is not None and self.seeds.corpus not in design.corpora:
            known_c = ", ".join(sorted(design.corpora)) or "none defined"
            errors.append(f"seeds.corpus: '{self.seeds.corpus}' is not in `corpora` ({known_c})")
        if design.llm is None:
            errors.append("kind: an `llm` exercise needs the design's `llm` section (its endpoints)")
            return errors
        eps = {ep.name: ep for ep in design.llm.endpoints}
        routes = [(self.step_path(i, "endpoint"), s.endpoint) for i, s in enumerate(steps)]
        if self.judge is not None:
            routes.append(("judge.endpoint", self.judge.endpoint))
        for where, name in routes:
            if name is not None and name not in eps:
                errors.append(f"{where}: no endpoint named '{name}' (known: {', '.join(eps)})")
            elif name is None and len({design.endpoint_model(ep) for ep in eps.values()}) > 1:
                errors.append(f"{where}: the endpoints serve different models; name one")
        return errors

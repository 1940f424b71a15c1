"""The design schema for editors (JSON Schema) and for people (docs/design.md), both read straight off
the models, so neither can drift from what `parse_design` accepts."""

from __future__ import annotations

from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from pretrainlab.config.corpus import ChunkSpec, CorpusSpec, SeedUse
from pretrainlab.config.curate import FiltersConfig, LengthFilter, LoopFilter, RefusalFilter, RepetitionFilter
from pretrainlab.config.design import BUILTIN_VARIANTS, Design
from pretrainlab.config.engines import EndpointSection, LLMSection
from pretrainlab.config.exercises import ExerciseConfig
from pretrainlab.config.llm import Generation, Judge, Step
from pretrainlab.config.parsers import PARSER_KINDS, PARSER_VARIANTS
from pretrainlab.config.samplers import SAMPLER_VARIANTS
from pretrainlab.config.sections import (
    BenchmarkSpec,
    Budget,
    CurateSection,
    EvalSection,
    ExecutorSection,
    ModelSection,
    NearDupSection,
    PhaseSection,
    TokenizerSection,
    TrainSection,
)

SECTIONS: list[tuple[str, type[BaseModel]]] = [
    ("(top level)", Design),
    ("budget", Budget),
    ("exercises[]  (fields every exercise has)", ExerciseConfig),
    ("curate", CurateSection),
    ("curate.near_dup", NearDupSection),
    ("curate.benchmarks[]", BenchmarkSpec),
    ("exercises[].filters", FiltersConfig),
    ("exercises[].filters.length", LengthFilter),
    ("exercises[].filters.repetition", RepetitionFilter),
    ("exercises[].filters.loops", LoopFilter),
    ("exercises[].filters.refusals", RefusalFilter),
    ("tokenizer", TokenizerSection),
    ("model", ModelSection),
    ("train", TrainSection),
    ("train.phases[]", PhaseSection),
    ("eval", EvalSection),
    ("executor", ExecutorSection),
    ("corpora.NAME", CorpusSpec),
    ("corpora.NAME.chunk", ChunkSpec),
    ("llm", LLMSection),
    ("llm.endpoints[]", EndpointSection),
]

# the parts of an `llm` exercise that are sections of their own
LLM_PARTS: list[tuple[str, type[BaseModel]]] = [
    ("seeds", SeedUse),
    ("steps[]", Step),
    ("generation", Generation),
    ("judge", Judge),
]


def json_schema() -> dict[str, Any]:
    """JSON Schema of the design file. A parser may also be given as its kind's name alone."""
    schema = Design.model_json_schema(by_alias=True)
    schema["title"] = "pretrainlab design"
    exercises = schema["properties"]["exercises"]
    schema["$defs"]["Exercise"] = {
        "description": "A built-in exercise kind, or a plugin kind (validated by its own class).",
        "anyOf": exercises["items"].pop("oneOf"),
    }
    exercises["items"] = {"$ref": "#/$defs/Exercise"}
    _allow_parser_names(schema)
    return schema


def _allow_parser_names(node: Any) -> None:
    """Wherever a parser union appears, also accept `plain`, `regex` or `json` as a bare string."""
    if isinstance(node, dict):
        for value in node.values():
            _allow_parser_names(value)
        mapping = node.get("discriminator", {}).get("mapping", {})
        if set(mapping) == set(PARSER_KINDS):
            union = {k: node.pop(k) for k in ("discriminator", "oneOf")}
            node["anyOf"] = [{"enum": list(PARSER_KINDS)}, union]
    elif isinstance(node, list):
        for value in node:
            _allow_parser_names(value)


def _type_name(tp: Any) -> str:
    """A type as a reader of the docs wants it: `int | None`, `list[str]`, `Literal['a', 'b']`."""
    origin, args = get_origin(tp), get_args(tp)
    if origin is Annotated:
        return _type_name(args[0])
    if origin in (Union, UnionType):
        return " | ".join(_type_name(a) for a in args)
    if origin is Literal:
        return f"Literal[{', '.join(map(repr, args))}]"
    if origin is not None:
        return f"{getattr(origin, '__name__', origin)}[{', '.join(_type_name(a) for a in args)}]"
    if tp is type(None):
        return "None"
    return tp.__name__ if isinstance(tp, type) else str(tp).replace("typing.", "")


def _default(field: Any) -> str:
    if field.default is not PydanticUndefined:
        return "" if field.default is None else f"`{field.default!r}`"
    if field.default_factory is not None:
        value = field.default_factory()
        return "(see section)" if isinstance(value, BaseModel) else f"`{value!r}`"
    return "**required**"


def _table(model: type[BaseModel], skip: tuple[str, ...] = ()) -> list[str]:
    lines = ["| field | type | default | description |", "|---|---|---|---|"]
    for name, field in model.model_fields.items():
        if name in skip:
            continue
        desc = (field.description or "").replace("|", "\\|")
        kind = _type_name(field.annotation).replace("|", "\\|")
        lines.append(f"| `{field.alias or name}` | `{kind}` | {_default(field)} | {desc} |")
    return lines


def _variants(title: str, variants: tuple[type[BaseModel], ...]) -> list[str]:
    out = [title, ""]
    for model in variants:
        kind = model.model_fields["kind"].annotation.__args__[0]  # type: ignore[union-attr]
        out += [f"##### `kind: {kind}`", "", (model.__doc__ or "").strip(), "", *_table(model, ("kind",)), ""]
    return out


def design_markdown() -> str:
    """docs/design.md."""
    out = [
        "# Design file reference",
        "",
        "<!-- Generated by `pretrainlab schema --markdown`; tests fail when it drifts from the code. -->",
        "",
        "A design is one YAML file. Unknown keys are errors; every error names its field path.",
        "`pretrainlab schema` prints the same schema as JSON Schema for editors.",
        "",
    ]
    for title, model in SECTIONS:
        out += [f"## `{title}`", ""]
        if model.__doc__ and model is not Design:
            out += [model.__doc__.strip().splitlines()[0], ""]
        out += [*_table(model), ""]
    out += [
        "## Built-in exercise kinds",
        "",
        "An exercise's `kind` picks how its data is made; the kind's parameters sit beside `kind`,",
        "`capability`, `share` and `name`. See docs/worlds.md for the procedural kinds' text formats.",
        "",
    ]
    common = tuple(ExerciseConfig.model_fields)
    for kind, model in BUILTIN_VARIANTS.items():
        doc = (model.__doc__ or "").strip().splitlines()
        out += [f"### `kind: {kind}`", ""]
        if doc:
            out += [doc[0], ""]
        out += [*_table(model, common), ""]
        if kind == "llm":
            for title, part in LLM_PARTS:
                out += [f"#### `{title}`", "", *_table(part), ""]
            out += _variants("#### Samplers (`samplers.NAME`, by `kind`)", SAMPLER_VARIANTS)
            out += _variants(
                "#### Parsers (`parser`, by `kind`; the kind's name alone means its defaults)",
                PARSER_VARIANTS,
            )
    return "\n".join(out).rstrip() + "\n"

"""The design file: validation errors name the field path, starter and docs stay in sync."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from pretrainlab.cli import app
from pretrainlab.config.schema import design_markdown
from pretrainlab.design import DesignError, load_design, parse_design

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def base() -> dict:
    return {
        "name": "t",
        "seed": 1,
        "exercises": [
            {"kind": "biographies", "capability": "facts", "people": 10},
            {"kind": "khop", "capability": "hops", "max_hops": 2, "documents": 10},
        ],
    }


def error_of(data: dict) -> str:
    with pytest.raises(DesignError) as info:
        parse_design(data)
    assert len(info.value.errors) == 1, info.value.errors
    line = info.value.errors[0]
    assert "\n" not in line
    return line


def test_valid_design_parses_world_params():
    d = parse_design(base())
    assert d.exercises[0].people == 10
    assert d.exercises[1].key == "khop"


def test_unknown_kind_names_the_field():
    data = base()
    data["exercises"][1]["kind"] = "nosuchworld"
    line = error_of(data)
    assert line.startswith("exercises[1].kind: unknown kind 'nosuchworld'")


def test_unknown_key_in_world_params():
    data = base()
    data["exercises"][1]["max_hop"] = 3
    assert error_of(data) == "exercises[1].max_hop: unknown key"


def test_unknown_top_level_and_section_keys():
    data = base()
    data["trian"] = {}
    assert error_of(data) == "trian: unknown key"
    data = base()
    data["train"] = {"stepz": 3}
    assert error_of(data) == "train.stepz: unknown key"


def test_wrong_type():
    data = base()
    data["train"] = {"lr": "fast"}
    assert error_of(data).startswith("train.lr: input should be a valid number")


def test_missing_field():
    data = base()
    del data["exercises"][0]["capability"]
    assert error_of(data) == "exercises[0].capability: required field is missing"


def test_negative_count():
    data = base()
    data["exercises"][1]["max_hops"] = -1
    assert error_of(data) == "exercises[1].max_hops: must be >= 1 (got -1)"
    data = base()
    data["train"] = {"phases": [{"name": "p", "steps": -5}]}
    assert error_of(data) == "train.phases[0].steps: must be >= 1 (got -5)"


def test_phase_selector_must_name_an_exercise():
    data = base()
    data["train"] = {"phases": [{"name": "qa", "steps": 5, "exercises": ["nope/qa"]}]}
    assert error_of(data).startswith("train.phases[0].exercises[0]: 'nope/qa' names no exercise")


def test_duplicate_exercise_names():
    data = base()
    data["exercises"].append(dict(data["exercises"][1]))
    assert "two exercises are named 'khop'" in error_of(data)


def test_yaml_syntax_error_has_line(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("name: x\nexercises: [\n")
    with pytest.raises(DesignError) as info:
        load_design(p)
    assert "line" in str(info.value) and "not valid YAML" in str(info.value)


def test_cli_validate_prints_one_line_per_error_and_writes_nothing(tmp_path):
    data = base()
    data["exercises"][0]["people"] = -3
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump(data))
    result = runner.invoke(app, ["generate", str(p), "--runs", str(tmp_path / "runs")])
    assert result.exit_code == 2
    assert "exercises[0].people: must be >= 1" in result.output
    assert not (tmp_path / "runs").exists()


def test_init_writes_a_valid_commented_starter(tmp_path):
    out = tmp_path / "mine.yaml"
    result = runner.invoke(app, ["init", "mine", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "#" in out.read_text()
    assert load_design(out).name == "mine"
    assert runner.invoke(app, ["validate", str(out)]).exit_code == 0
    assert runner.invoke(app, ["init", "mine", "--out", str(out)]).exit_code == 1  # never overwrites


def test_schema_is_json_schema_with_world_variants():
    result = runner.invoke(app, ["schema"])
    schema = json.loads(result.output)
    variants = schema["$defs"]["Exercise"]["anyOf"]
    names = {v.get("$ref", "").rsplit("/", 1)[-1] for v in variants}
    assert {"BiographiesExercise", "KHopExercise", "ModArithExercise"} <= names
    assert "max_hops" in schema["$defs"]["KHopExercise"]["properties"]


def test_design_docs_do_not_drift():
    assert (ROOT / "docs" / "design.md").read_text() == design_markdown(), (
        "docs/design.md is stale: run `pretrainlab schema --markdown > docs/design.md`"
    )


def test_shipped_examples_validate():
    paths = sorted((ROOT / "examples").rglob("*.yaml"))
    assert len(paths) >= 12  # the playground, the two bios designs and the LLM recipes
    for path in paths:
        assert load_design(path).exercises


def _model_refusal(preset: str, overrides: dict, seq_len: int) -> str | None:
    """The field the model names when it refuses to build this shape, or None when it builds."""
    from pretrainlab.train.model import GPT, ModelConfig

    try:
        GPT(ModelConfig.preset(preset, vocab_size=300, seq_len=seq_len, **overrides))
    except ValueError as e:
        return str(e).split(":", 1)[0]
    return None


def test_validate_refuses_exactly_the_model_shapes_the_model_refuses():
    """Random shapes: `validate` accepts a model iff the model builds, and names the field it refuses."""
    import random

    rng = random.Random(0)
    refused = 0
    for _ in range(150):
        overrides = {
            "layers": 1,
            "width": rng.choice([8, 12, 16, 24, 30, 32, 48, 64, 96]),
            "heads": rng.randint(1, 8),
            "kv_heads": rng.choice([None, 1, 2, 3, 4]),
            "positions": rng.choice(["rope", "learned", "none"]),
            "canon": rng.choice(["", "AB", "ABCD", "AA", "DCBA", "BB"]),
        }
        overrides = {k: v for k, v in overrides.items() if v is not None}
        preset = rng.choice(["gpt2", "llama"])
        field = _model_refusal(preset, overrides, seq_len=16)
        data = {**base(), "model": {"preset": preset, **overrides}, "train": {"seq_len": 16}}
        if field is None:
            parse_design(data)
            continue
        refused += 1
        with pytest.raises(DesignError) as err:
            parse_design(data)
        assert f"model.{field}:" in str(err.value)
    assert refused > 30  # the sample covers the model's checks


def test_cli_validate_names_the_model_field_without_a_traceback(tmp_path):
    path = tmp_path / "d.yaml"
    path.write_text(yaml.safe_dump({**base(), "model": {"width": 64, "heads": 3}}))
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code != 0
    assert "model.width: 64 is not divisible by heads=3" in result.output
    assert "Traceback" not in result.output

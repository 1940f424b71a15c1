"""`pretrainlab plan`: the budget split on numbers checkable by hand, the warnings at the edges of the
published results, sizes read from designs (a torch-free parameter count equal to the model's), and the
command's output."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import yaml
from rich.console import Console
from typer.testing import CliRunner

from pretrainlab import cli
from pretrainlab.cli import app
from pretrainlab.config.design import parse_design, read_design_file
from pretrainlab.config.model import ModelConfig, model_config
from pretrainlab.experiments.plan import budget_flops, count_params, fmt, plan, plan_inputs

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


# ------------------------------------------------------------------------------------ the formulas


def test_default_rule_generates_what_four_epochs_read_and_trains_on_the_rest():
    # per generated token: 2 * 2e9 * (1 + 0.5) = 6e9 FLOPs; per unique token trained 4 times: 24e9.
    # G = 1.5e20 / 30e9 = 5e9 tokens; generation 3e19 (20%), training 1.2e20 = 6 * 1e9 * 2e10.
    p = plan(1.5e20, 2e9, 1e9, 1e12, prompt_tokens_per_generated=0.5)
    assert p.rule == "default"
    assert p.generated_tokens == pytest.approx(5e9)
    assert p.prompt_tokens == pytest.approx(2.5e9)
    assert p.generation_flops == pytest.approx(3e19)
    assert p.generation_share == pytest.approx(0.2)
    assert p.training_flops == pytest.approx(1.2e20)
    assert p.training_share == pytest.approx(0.8)
    assert p.training_tokens == pytest.approx(2e10)
    assert p.tokens_per_param == pytest.approx(20)
    assert p.epochs == pytest.approx(4)
    assert p.optimal_params == pytest.approx(1e9)  # sqrt(1.2e20 / 120): this plan is compute-optimal
    assert p.warnings == []


def test_default_rule_is_capped_by_what_the_design_can_produce():
    p = plan(1.5e20, 2e9, 1e9, 1e9, prompt_tokens_per_generated=0.5)
    assert p.generated_tokens == pytest.approx(1e9)
    assert p.training_tokens == pytest.approx((1.5e20 - 6e18) / 6e9)  # 2.4e10
    assert p.epochs == pytest.approx(24)
    assert "design produces only 1e9 unique tokens" in p.warnings[0]


def test_given_generated_tokens_and_generation_share():
    # 1e10 tokens at 2 * 1e9 FLOPs each = 2e19; the other 6e20 trains 1e9 params on 1e11 tokens
    p = plan(6.2e20, 1e9, 1e9, 1e12, prompt_tokens_per_generated=0, generated_tokens=1e10)
    assert (p.rule, p.generation_flops, p.training_tokens) == ("generated-tokens", 2e19, pytest.approx(1e11))
    assert p.epochs == pytest.approx(10) and p.tokens_per_param == pytest.approx(100)
    # 40% of 1e21 at 2 * 1e9 * (1 + 1) = 4e9 FLOPs per token buys 1e11 tokens; 6e20 trains on 1e11: 1 epoch
    p = plan(1e21, 1e9, 1e9, 1e12, prompt_tokens_per_generated=1, generation_share=0.4)
    assert p.generated_tokens == pytest.approx(1e11)
    assert p.training_tokens == pytest.approx(1e11)
    assert p.epochs == pytest.approx(1)


def test_procedural_data_costs_no_flops_and_all_of_it_is_made():
    p = plan(6e19, 0, 1e9, 1e9)
    assert (p.rule, p.generated_tokens, p.generation_flops) == ("procedural", 1e9, 0)
    assert p.training_tokens == pytest.approx(1e10)
    assert p.epochs == pytest.approx(10)


def test_budget_from_device_hours():
    assert budget_flops(None, 1000, 1e15, 0.5) == (pytest.approx(1.8e21), 5e14)
    assert budget_flops(1e20, None, None, None) == (1e20, None)
    assert budget_flops(1e20, None, 1e15, 0.5) == (1e20, 5e14)  # a rate shows the split in hours too


@pytest.mark.parametrize(
    "args, kwargs, message",
    [
        ((1e20, 1e9, 1e9, 1e12), {"generated_tokens": 1e10, "generation_share": 0.1}, "not both"),
        ((1e20, 1e9, 1e9, 1e12), {"generated_tokens": 1e11}, "nothing is left to train"),
        ((1e20, 1e9, 1e9, 1e12), {"generation_share": 1.0}, "[0, 1)"),
        ((1e20, 0, 1e9, 1e12), {"generation_share": 0.5}, "generator size is 0"),
        ((0, 1e9, 1e9, 1e12), {}, "budget_flops"),
        ((1e20, 1e9, -1, 1e12), {}, "model_params"),
        ((1e20, 1e9, 1e9, math.nan), {}, "unique_tokens"),
    ],
)
def test_inputs_that_make_no_plan_say_which(args, kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        plan(*args, **kwargs)


@pytest.mark.parametrize(
    "args, message",
    [
        ((None, None, None, None), "--budget-flops or as --device-hours"),
        ((1e20, 10, 1e15, 0.4), "--budget-flops or as --device-hours"),
        ((None, 10, None, 0.4), "--peak-flops"),
        ((None, 10, 1e15, 1.5), "--mfu"),
    ],
)
def test_budget_errors(args, message):
    with pytest.raises(ValueError, match=message):
        budget_flops(*args)


def test_fmt():
    assert [fmt(x) for x in (0, 1e21, 1.79e10, 18_997, 71.43, 4.0)] == [
        "0",
        "1e21",
        "1.79e10",
        "19,000",
        "71.4",
        "4",
    ]


# ------------------------------------------------------------------------------------- the warnings


def test_more_than_16_epochs_warns_that_repetition_stops_paying():
    p = plan(6e19, 0, 1e9, 5e8)  # 1e10 tokens trained over 5e8 unique: 20 epochs
    assert p.epochs == pytest.approx(20)
    assert len(p.warnings) == 1 and "20.0 epochs" in p.warnings[0] and "past about 16" in p.warnings[0]
    assert "Muennighoff" in p.warnings[0]
    # 10 epochs: inside 16, but past 4, where a repeat is worth less than fresh data
    (w,) = plan(6e19, 0, 1e9, 1e9).warnings
    assert "10.0 epochs" in w and "past about 4 epochs" in w


def test_a_small_generation_share_warns_with_what_the_default_rule_would_generate():
    p = plan(6.2e20, 1e9, 1e9, 1e12, prompt_tokens_per_generated=0, generated_tokens=1e10)
    (w,) = p.warnings
    assert "generation buys only 1e10 unique tokens" in w
    assert f"would generate {fmt(p.default_generated_tokens)}" in w
    # more than the design can produce: the rest repeats; more than training reads: wasted
    p = plan(1e21, 1e9, 1e9, 5e10, prompt_tokens_per_generated=1, generation_share=0.4)
    assert any("the other 5e10 repeat" in w for w in p.warnings)
    p = plan(1e21, 1e9, 1e9, 1e12, prompt_tokens_per_generated=1, generation_share=0.5)
    assert any("training reads only" in w for w in p.warnings)


def test_tokens_per_parameter_far_from_20_warns_both_ways():
    # 6e20 FLOPs on 1e10 params: 1e10 tokens, 1 per parameter; compute-optimal is sqrt(6e20 / 120) = 2.2e9
    (w,) = [w for w in plan(6e20, 0, 1e10, 1e12).warnings if "tokens per parameter" in w]
    assert w.startswith("1 tokens per parameter, below 5: the model is 4.5x the compute-optimal size")
    assert "Hoffmann" in w
    (w,) = [w for w in plan(6e21, 0, 1e9, 1e13).warnings if "tokens per parameter" in w]
    assert (
        w.startswith("1,000 tokens per parameter, above 200: the model is 7.1x smaller")
        and "smaller than compute-optimal" in w
    )
    # just inside the bounds (5 and 200 tokens per parameter): no warning
    assert not [w for w in plan(3.1e19, 0, 1e9, 1e12).warnings if "per parameter" in w]
    assert not [w for w in plan(1.19e21, 0, 1e9, 1e12).warnings if "per parameter" in w]


# --------------------------------------------------------------------------------- sizes from a design


@pytest.mark.parametrize(
    "preset, overrides",
    [
        ("gpt2", {}),
        ("llama", {}),
        ("gpt2", {"canon": "ABCD", "qk_norm": True, "tie_embeddings": False, "mlp": "relu2"}),
        ("llama", {"canon": "ABCD", "qk_norm": True, "heads": 8, "kv_heads": 2, "mlp_ratio": 3.0}),
        ("llama", {"positions": "learned", "norm": "layernorm", "bias": True, "mlp": "gelu"}),
    ],
)
def test_torch_free_parameter_count_equals_the_models(preset, overrides):
    torch_model = pytest.importorskip("pretrainlab.train.model")
    shape = {"vocab_size": 1000, "seq_len": 64, "layers": 3, "width": 96, "heads": 4}
    config = ModelConfig.preset(preset, **{**shape, **overrides})
    model = torch_model.GPT(config)
    assert count_params(config) == model.num_params(non_embedding=False)
    assert count_params(config, non_embedding=True) == model.num_params(non_embedding=True)


def test_parameter_count_of_the_shipped_playground():
    torch_model = pytest.importorskip("pretrainlab.train.model")
    design = parse_design(read_design_file(EXAMPLES / "playground.yaml"))
    config = model_config(design, vocab_size=design.tokenizer.vocab)
    assert count_params(config) == torch_model.GPT(config).num_params(non_embedding=False)


def _fake_generate(runs: Path, name: str, manifest: dict) -> None:
    stage = runs / name / "generate" / "abc123"
    stage.mkdir(parents=True)
    (stage / "manifest.json").write_text(json.dumps({"stage": "generate", **manifest}))
    (runs / name / "generate" / "latest").write_text("abc123\n")


def test_sizes_from_a_procedural_design_and_its_generate_manifest(tiny_design, tmp_path):
    design = parse_design(tiny_design)
    with pytest.raises(ValueError, match="unique tokens unknown: pass --unique-tokens; or run"):
        plan_inputs(design, tmp_path)
    _fake_generate(tmp_path, "tiny", {"token_estimate": 123_456})
    inputs = plan_inputs(design, tmp_path)
    config = model_config(design, vocab_size=512)
    assert inputs.model_params == count_params(config)
    assert inputs.gen_params == 0 and "procedural" in inputs.sources["generator"]
    assert inputs.unique_tokens == 123_456 and "token_estimate" in inputs.sources["unique"]
    flags = plan_inputs(design, tmp_path, model_params=5e6, unique_tokens=1e9, gen_params=1e9)
    assert (flags.model_params, flags.unique_tokens, flags.gen_params) == (5e6, 1e9, 1e9)


def test_the_generate_stage_writes_the_token_estimate_plan_reads(tiny_design, tmp_path):
    from pretrainlab.pipeline import Pipeline

    design = parse_design(tiny_design)
    Pipeline(design, tmp_path).run_stage("generate")
    assert plan_inputs(design, tmp_path).unique_tokens > 1000


def test_generator_size_from_the_designs_endpoints(tmp_path):
    data = read_design_file(EXAMPLES / "llm" / "textbook.yaml")
    design = parse_design(data, base_dir=EXAMPLES / "llm")
    with pytest.raises(ValueError, match=r"set llm.endpoints\[\].params"):
        plan_inputs(design, tmp_path, unique_tokens=1e9)
    endpoint = data["llm"]["endpoints"][0]
    data["llm"]["endpoints"] = [
        {**endpoint, "params": 7.6e9},
        {**endpoint, "name": "judge", "params": 3.2e10},
    ]
    design = parse_design(data, base_dir=EXAMPLES / "llm")
    _fake_generate(
        tmp_path,
        design.name,
        {
            "token_estimate": 2e6,
            "ledger": {"llm": {"textbook/local": {"prompt_tokens": 300, "completion_tokens": 600}}},
        },
    )
    inputs = plan_inputs(design, tmp_path)
    assert inputs.gen_params == 3.2e10 and "judge.params (the largest of 2)" in inputs.sources["generator"]
    assert inputs.prompt_ratio == pytest.approx(0.5) and "LLM ledger" in inputs.sources["prompt"]
    assert inputs.unique_tokens == 2e6


# ------------------------------------------------------------------------------------------ the CLI


@pytest.fixture
def wide(monkeypatch):
    """The command's console at 200 columns, so that no table cell wraps in what the tests read."""
    monkeypatch.setattr(cli, "console", Console(width=200))


def test_cli_prints_the_split_measures_reference_and_sources(wide):
    args = ["plan", "--budget-flops", "1.5e20", "--gen-params", "2e9", "--model-params", "1e9"]
    result = CliRunner().invoke(app, [*args, "--unique-tokens", "1e12", "--prompt-ratio", "0.5"])
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    for text in (
        "generation │ 5e9 generated + 2.5e9 prompt │ 3e19 │ 20.0%",
        "training │ 2e10 trained │ 1.2e20 │ 80.0%",
        "tokens per parameter 20",
        "epochs over the data 4",
        "inside the covered region",
        "Pleias",
        "This plan: training 80.0%",
        "6·N·D",
        "Kaplan et al. 2020",
        '"Training Compute-Optimal Large Language Models"',
        '"Scaling Data-Constrained Language Models"',
    ):
        assert text in out, text


def test_cli_reads_a_design_and_shows_device_hours(tiny_design, tmp_path, wide):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_design))
    args = ["plan", str(path), "--device-hours", "1", "--peak-flops", "1e12", "--mfu", "0.5"]
    result = CliRunner().invoke(app, [*args, "--unique-tokens", "1e6", "--runs", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert "Split of 1.8e15 FLOPs = 1 device-hours at 5e11 FLOP/s" in out
    assert "design model section: llama, 2 layers, width 64" in out
    assert (
        "device-hours" in out and "warning" in out
    )  # 1.8e15 FLOPs on a tiny model: far past 200 tokens/param


@pytest.mark.parametrize(
    "args, message",
    [
        (["--gen-params", "1e9", "--model-params", "1e9", "--unique-tokens", "1e9"], "--budget-flops"),
        (["--budget-flops", "1e20", "--model-params", "1e9", "--unique-tokens", "1e9"], "--gen-params"),
        (["--budget-flops", "1e20", "--gen-params", "1e9", "--unique-tokens", "1e9"], "--model-params"),
        (["--budget-flops", "1e20", "--gen-params", "1e9", "--model-params", "1e9"], "--unique-tokens"),
        (["--device-hours", "1", "--peak-flops", "1e12", "--gen-params", "0"], "--mfu"),
        (["--budget-flops", "1e20", "--gen-params", "1e9", "--model-params", "1e9", "--unique-tokens", "1e9",
          "--generated-tokens", "1e12"], "nothing is left to train"),
    ],
)  # fmt: skip
def test_cli_errors_are_one_line_and_exit_2(args, message):
    result = CliRunner().invoke(app, ["plan", *args])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error") and message in lines[0], result.output
    assert "Traceback" not in result.output

"""How a compute budget splits between generating synthetic data and training on it.

Synthetic pretraining pays twice for each token: once to have a generator write it, once per epoch to
train on it. `plan` takes a budget in FLOPs, the generator's and the model's sizes and how many unique
tokens the design can produce, and returns the split, tokens per parameter and epochs, with a warning
wherever the plan leaves the region the published scaling results cover:

    training    C_train ≈ 6·N·D                  (Kaplan et al. 2020; Hoffmann et al. 2022)
    generation  C_gen ≈ 2·P_gen·(1 + r)·G        (forward passes, prompt tokens r per generated one)
    compute-optimal at about 20 tokens per parameter                 (Hoffmann et al. 2022)
    repeated data nearly as good as unique up to ~4 epochs, fading by ~16  (Muennighoff et al. 2023)

Default rule: generate only what keeps training within 4 epochs, G = C / (6·N·4 + 2·P_gen·(1 + r)),
so that every generated token is read exactly 4 times; the rest of the budget trains. Why 4: up to
there a repeated token is nearly as good as a fresh one, so generating more would cost FLOPs that
training could use for almost no gain, and generating less would push training into epochs that are
worth less and less.

`plan` is pure arithmetic; `plan_inputs` reads sizes from a design (torch-free), `render_plan` formats
a plan with rich for the `pretrainlab plan` command.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import RenderableType
from rich.markup import escape
from rich.table import Table

from pretrainlab.config.model import ModelConfig, model_config
from pretrainlab.runs import latest_stage_dir, read_manifest

if TYPE_CHECKING:
    from pretrainlab.config.design import Design

OPTIMAL_TOKENS_PER_PARAM = 20.0  # Hoffmann et al. 2022
NEARLY_UNIQUE_EPOCHS = 4.0  # Muennighoff et al. 2023: repeats about as good as fresh data up to here
FADING_EPOCHS = 16.0  # Muennighoff et al. 2023: further repetition adds almost nothing past here
# 5 tokens/param: the model is 2x the compute-optimal size for its training compute; 200: it is about
# 3.2x smaller (tokens/param = 20·(N_opt/N)² at fixed C = 6·N·D). Looser above, since over-training a
# small model is a deliberate choice when inference cost matters.
MIN_TOKENS_PER_PARAM = 5.0
MAX_TOKENS_PER_PARAM = 200.0
DEFAULT_PROMPT_RATIO = 1.0  # a rephrase-style prompt (seed text + instructions) as long as its answer

SOURCES: list[tuple[str, str]] = [
    ("training C ≈ 6·N·D FLOPs (N parameters, D training tokens)",
     'Kaplan et al. 2020, "Scaling Laws for Neural Language Models"; Hoffmann et al. 2022'),
    ("generation ≈ 2·P_gen FLOPs per generated or prompt token (a forward pass)",
     'Kaplan et al. 2020, "Scaling Laws for Neural Language Models"'),
    ("compute-optimal at about 20 tokens per parameter",
     'Hoffmann et al. 2022, "Training Compute-Optimal Large Language Models"'),
    ("repeated data nearly as good as unique up to about 4 epochs, returns fading by about 16",
     'Muennighoff et al. 2023, "Scaling Data-Constrained Language Models"'),
]  # fmt: skip
PLEIAS_REFERENCE = (
    "Pleias spent about 20,000 H100-hours on SYNTH in all (generation and experiments), under 1,000 of "
    f"them on final training: final training under {1_000 / 20_000:.0%} of the whole "
    '(Pleias, "SYNTH / Baguettotron and Monad release", 2025).'
)


@dataclass(frozen=True)
class Plan:
    """One split of a budget, with everything derived from it and the warnings it earns."""

    budget_flops: float
    gen_params: float
    model_params: float
    unique_tokens: float  # the most unique tokens the design can produce
    prompt_tokens_per_generated: float
    rule: str  # "default", "generated-tokens", "generation-share" or "procedural"
    rule_text: str  # the rule in words, with its formula
    generated_tokens: float
    generation_flops: float
    training_flops: float
    training_tokens: float
    unique_training_tokens: float  # min(generated, unique): what training can read without repeats
    epochs: float
    tokens_per_param: float
    optimal_params: float  # compute-optimal model size for training_flops: sqrt(C_train / (6·20))
    default_generated_tokens: float  # what the default rule would generate, for advice
    warnings: list[str] = field(default_factory=list)

    @property
    def generation_share(self) -> float:
        return self.generation_flops / self.budget_flops

    @property
    def training_share(self) -> float:
        return self.training_flops / self.budget_flops

    @property
    def prompt_tokens(self) -> float:
        return self.generated_tokens * self.prompt_tokens_per_generated


def fmt(x: float) -> str:
    """A quantity to 3 significant digits: 1.79e10 for large ones, 20,000 or 71.4 below a million."""
    if x == 0:
        return "0"
    if 1e-3 <= abs(x) < 1e6:
        rounded = float(f"{x:.3g}")
        return f"{rounded:,.0f}" if rounded == round(rounded) else f"{rounded:,g}"
    mantissa, exponent = f"{x:.3g}".split("e")
    return f"{mantissa}e{int(exponent)}"


def _positive(name: str, value: float, allow_zero: bool = False) -> None:
    ok = value >= 0 if allow_zero else value > 0
    if not (ok and math.isfinite(value)):
        kind = "non-negative" if allow_zero else "positive"
        raise ValueError(f"{name}: expected a {kind} number, got {value}")


def plan(
    budget_flops: float,
    gen_params: float,
    model_params: float,
    unique_tokens: float,
    *,
    prompt_tokens_per_generated: float = DEFAULT_PROMPT_RATIO,
    generated_tokens: float | None = None,
    generation_share: float | None = None,
    target_epochs: float = NEARLY_UNIQUE_EPOCHS,
) -> Plan:
    """Split `budget_flops` between generating data with a `gen_params` model and training a
    `model_params` model on it. Give `generated_tokens` or `generation_share` to fix the split, or
    neither for the default rule (module docstring). `gen_params = 0` means procedural data, made on
    CPU at no accelerator cost: all of the design's `unique_tokens` are generated. Raises ValueError
    naming the input that makes no plan (e.g. generation alone costing the whole budget)."""
    _positive("budget_flops", budget_flops)
    _positive("gen_params", gen_params, allow_zero=True)
    _positive("model_params", model_params)
    _positive("unique_tokens", unique_tokens)
    _positive("prompt_tokens_per_generated", prompt_tokens_per_generated, allow_zero=True)
    _positive("target_epochs", target_epochs)
    if generated_tokens is not None and generation_share is not None:
        raise ValueError("give the generated tokens or the generation share, not both")
    C, N, U, r = budget_flops, model_params, unique_tokens, prompt_tokens_per_generated
    per_token = 2 * gen_params * (1 + r)  # FLOPs per generated token, its prompt tokens included
    default_g = U if per_token == 0 else min(U, C / (6 * N * target_epochs + per_token))
    if generated_tokens is not None:
        _positive("generated_tokens", generated_tokens)
        g, rule = generated_tokens, "generated-tokens"
        text = f"generate the {fmt(generated_tokens)} tokens asked for; the rest trains"
    elif generation_share is not None:
        if not 0 <= generation_share < 1:
            raise ValueError(f"generation share: expected a fraction in [0, 1), got {generation_share}")
        if per_token == 0:
            raise ValueError("generation share: the generator size is 0 (procedural data costs no FLOPs)")
        g = generation_share * C / per_token
        rule, text = "generation-share", f"spend {generation_share:.1%} of the budget on generation"
    elif per_token == 0:
        g, rule = U, "procedural"
        text = "procedural data, made on CPU: every unique token the design produces, no accelerator FLOPs"
    else:
        g, rule = default_g, "default"
        text = (
            f"generate only what keeps training within {target_epochs:g} epochs, "
            f"G = C / (6·N·{target_epochs:g} + 2·P_gen·(1 + r))"
            + (f", capped at the design's {fmt(U)} unique tokens" if default_g == U else "")
            + "; the rest trains"
        )
    gen_flops = per_token * g
    if gen_flops >= C:
        raise ValueError(
            f"generating {fmt(g)} tokens costs {fmt(gen_flops)} FLOPs, not less than the whole budget "
            f"({fmt(C)}): nothing is left to train"
        )
    train_flops = C - gen_flops
    D = train_flops / (6 * N)
    unique = min(g, U)
    result = Plan(
        budget_flops=C,
        gen_params=gen_params,
        model_params=N,
        unique_tokens=U,
        prompt_tokens_per_generated=r,
        rule=rule,
        rule_text=text,
        generated_tokens=g,
        generation_flops=gen_flops,
        training_flops=train_flops,
        training_tokens=D,
        unique_training_tokens=unique,
        epochs=D / unique,
        tokens_per_param=D / N,
        optimal_params=math.sqrt(train_flops / (6 * OPTIMAL_TOKENS_PER_PARAM)),
        default_generated_tokens=default_g,
    )
    result.warnings.extend(_warnings(result, target_epochs))
    return result


def _warnings(p: Plan, target_epochs: float) -> list[str]:
    """Where the plan leaves the region the scaling results cover, each with the way back in."""
    out = []
    if p.epochs > target_epochs * (1 + 1e-9):  # the default rule lands on target_epochs itself
        if p.generated_tokens < p.unique_tokens:
            cause = (
                f"the generation buys only {fmt(p.unique_training_tokens)} unique tokens; the default rule "
                f"would generate {fmt(p.default_generated_tokens)} "
                f"({fmt(2 * p.gen_params * (1 + p.prompt_tokens_per_generated) * p.default_generated_tokens)}"
                " FLOPs)"
            )
        else:
            cause = (
                f"the design produces only {fmt(p.unique_tokens)} unique tokens, while "
                f"{fmt(p.training_tokens)} training tokens need {fmt(p.training_tokens / target_epochs)} "
                f"to stay within {target_epochs:g} epochs: give the design more to say (seeds, items, "
                "people) or train a larger model on fewer tokens"
            )
        if p.epochs > FADING_EPOCHS:
            what = (
                f"past about {FADING_EPOCHS:g} epochs further repetition adds almost nothing; the plan is "
                "outside the region Muennighoff et al. 2023 cover"
            )
        else:
            what = (
                f"past about {NEARLY_UNIQUE_EPOCHS:g} epochs a repeated token is worth less than a fresh one "
                "(Muennighoff et al. 2023)"
            )
        out.append(f"{p.epochs:.1f} epochs over the synthetic data: {what}; {cause}")
    if p.rule != "procedural" and p.epochs < 1:
        out.append(
            f"training reads only {fmt(p.training_tokens)} of the {fmt(p.unique_training_tokens)} unique "
            f"tokens generated; the default rule would generate {fmt(p.default_generated_tokens)}"
        )
    if p.generated_tokens > p.unique_tokens:
        out.append(
            f"the plan generates {fmt(p.generated_tokens)} tokens, but the design can produce only "
            f"{fmt(p.unique_tokens)} unique ones: the other "
            f"{fmt(p.generated_tokens - p.unique_tokens)} repeat"
        )
    ratio = p.model_params / p.optimal_params
    if p.tokens_per_param < MIN_TOKENS_PER_PARAM:
        out.append(
            f"{fmt(p.tokens_per_param)} tokens per parameter, below {MIN_TOKENS_PER_PARAM:g}: the model is "
            f"{ratio:.1f}x the compute-optimal size for its training compute ({fmt(p.optimal_params)} "
            "parameters at 20 tokens each, Hoffmann et al. 2022); a smaller model trained longer would "
            "reach a lower loss"
        )
    if p.tokens_per_param > MAX_TOKENS_PER_PARAM:
        out.append(
            f"{fmt(p.tokens_per_param)} tokens per parameter, above {MAX_TOKENS_PER_PARAM:g}: the model is "
            f"{1 / ratio:.1f}x smaller than compute-optimal ({fmt(p.optimal_params)} parameters, Hoffmann "
            "et al. 2022); cheaper to serve, but the same compute would reach a lower loss with a larger "
            "model"
        )
    return out


def budget_flops(
    flops: float | None, device_hours: float | None, peak_flops: float | None, mfu: float | None
) -> tuple[float, float | None]:
    """The budget in FLOPs, and the sustained rate (peak × utilisation, FLOP/s) when one is stated, so
    the split can be shown in device-hours too. A budget in device-hours needs both of them."""
    if (flops is None) == (device_hours is None):
        raise ValueError("give the budget as --budget-flops or as --device-hours (with --peak-flops, --mfu)")
    rate = None
    if peak_flops is not None or mfu is not None or device_hours is not None:
        if peak_flops is None or mfu is None:
            what = "--device-hours needs" if device_hours is not None else "device-hours need"
            raise ValueError(f"{what} --peak-flops (e.g. 989e12: an H100's dense bf16) and --mfu (e.g. 0.4)")
        _positive("--peak-flops", peak_flops)
        if not 0 < mfu <= 1:
            raise ValueError(f"--mfu: expected a utilisation in (0, 1], got {mfu}")
        rate = peak_flops * mfu
    if device_hours is not None:
        _positive("--device-hours", device_hours)
        return device_hours * 3600 * rate, rate  # type: ignore[operator]
    _positive("--budget-flops", flops)  # type: ignore[arg-type]
    return flops, rate  # type: ignore[return-value]


# ----------------------------------------------------------------------------- sizes from a design


def count_params(config: ModelConfig, non_embedding: bool = False) -> int:
    """Parameters of the model `config` builds, from the config's arithmetic (no torch): what
    `GPT(config).num_params(non_embedding)` counts, tied embeddings once."""
    d, v = config.width, config.vocab_size
    kv_dim = config.kv_heads * config.head_dim  # type: ignore[operator]
    biased_norm = config.norm == "layernorm" and config.bias

    def norm(dim: int) -> int:
        return dim * (2 if biased_norm else 1)

    qkv = d + 2 * kv_dim
    attn = d * qkv + d * d + (qkv + d if config.bias else 0)
    attn += 4 * qkv * ("B" in config.canon) + 2 * norm(config.head_dim) * config.qk_norm
    hidden = config.mlp_hidden
    up = 2 * hidden if config.mlp == "swiglu" else hidden
    mlp = d * up + hidden * d + (up + d if config.bias else 0) + 4 * up * ("D" in config.canon)
    block = 2 * norm(d) + attn + mlp + 4 * d * (("A" in config.canon) + ("C" in config.canon))
    embeddings = v * d + (config.seq_len * d if config.positions == "learned" else 0)
    embeddings += 0 if config.tie_embeddings else v * d
    return config.layers * block + norm(d) + (0 if non_embedding else embeddings)


@dataclass(frozen=True)
class PlanInputs:
    """The sizes a plan takes, each with where it came from (a flag, the design, a run's manifest)."""

    gen_params: float
    model_params: float
    unique_tokens: float
    prompt_ratio: float
    sources: dict[str, str]


def _generate_manifest(design: Design, runs: Path) -> tuple[Path, dict] | None:
    """The last finished generate stage of the design's runs, if any."""
    stage = latest_stage_dir(runs / design.name, "generate")
    manifest = read_manifest(stage) if stage is not None and stage.is_dir() else None
    return None if manifest is None else (stage, manifest)  # type: ignore[return-value]


def plan_inputs(
    design: Design | None,
    runs: Path,
    *,
    gen_params: float | None = None,
    model_params: float | None = None,
    unique_tokens: float | None = None,
    prompt_ratio: float | None = None,
) -> PlanInputs:
    """The plan's sizes: flags first, then the design (the model from its model section, the generator
    from `llm.endpoints[].params`, no generator for designs without `llm` exercises), then the design's
    last generate stage (unique tokens from `token_estimate`, the prompt ratio from its LLM ledger).
    Raises ValueError naming the flag to give when a size is still unknown."""
    sources: dict[str, str] = {}
    made = _generate_manifest(design, runs) if design is not None else None
    if model_params is not None:
        sources["model"] = "--model-params"
    elif design is not None:
        config = model_config(design, vocab_size=design.tokenizer.vocab)
        model_params = count_params(config)
        sources["model"] = (
            f"design model section: {design.model.preset}, {config.layers} layers, width {config.width}, "
            f"vocab {config.vocab_size}; {fmt(count_params(config, non_embedding=True))} without embeddings"
        )
    else:
        raise ValueError("model size unknown: pass --model-params or a design")

    if gen_params is not None:
        sources["generator"] = "--gen-params"
    elif design is not None and not any(ex.kind == "llm" for ex in design.exercises):
        gen_params, sources["generator"] = 0.0, "no llm exercises: procedural data, made on CPU"
    elif design is not None and design.llm is not None:
        sizes = {ep.name: ep.params for ep in design.llm.endpoints if ep.params is not None}
        if not sizes:
            raise ValueError("generator size unknown: pass --gen-params or set llm.endpoints[].params")
        name = max(sizes, key=lambda k: sizes[k])  # type: ignore[arg-type, return-value]
        gen_params = sizes[name]
        many = f" (the largest of {len(sizes)})" if len(set(sizes.values())) > 1 else ""
        sources["generator"] = f"design llm.endpoints {name}.params{many}"
    else:
        raise ValueError("generator size unknown: pass --gen-params (0 for procedural data) or a design")

    if unique_tokens is not None:
        sources["unique"] = "--unique-tokens"
    elif made is not None and made[1].get("token_estimate"):
        unique_tokens = float(made[1]["token_estimate"])
        sources["unique"] = f"token_estimate (bytes / 4) in {made[0] / 'manifest.json'}"
    else:
        where = "; or run `pretrainlab generate` on the design first" if design is not None else ""
        raise ValueError(f"unique tokens unknown: pass --unique-tokens{where}")

    if prompt_ratio is not None:
        sources["prompt"] = "--prompt-ratio"
    else:
        usage = (made[1].get("ledger", {}).get("llm", {}) if made is not None else {}).values()
        prompt, completion = (sum(u.get(k, 0) for u in usage) for k in ("prompt_tokens", "completion_tokens"))
        if gen_params and completion:
            prompt_ratio = prompt / completion
            sources["prompt"] = f"LLM ledger in {made[0] / 'manifest.json'}"  # type: ignore[index]
        else:
            prompt_ratio, sources["prompt"] = (
                DEFAULT_PROMPT_RATIO,
                "default: prompts as long as their answers",
            )
    return PlanInputs(gen_params, model_params, unique_tokens, prompt_ratio, sources)


# ------------------------------------------------------------------------------------- rendering


def render_plan(p: Plan, inputs: PlanInputs, rate: float | None = None) -> list[RenderableType]:
    """The plan as the `pretrainlab plan` command prints it: inputs, rule, split (in device-hours too
    when `rate` is given), measures, warnings, the Pleias reference and the sources."""
    s = {k: escape(v) for k, v in inputs.sources.items()}  # paths and field names may hold brackets
    in_hours = f" = {fmt(p.budget_flops / rate / 3600)} device-hours at {fmt(rate)} FLOP/s" if rate else ""
    given = Table(title="Inputs", title_justify="left")
    for col in ("input", "value", "from"):
        given.add_column(col, justify="right" if col == "value" else "left")
    given.add_row("budget", f"{fmt(p.budget_flops)} FLOPs", "--budget-flops" if not rate else (
        f"{fmt(p.budget_flops / rate / 3600)} device-hours x {fmt(rate)} FLOP/s (peak x MFU)"))  # fmt: skip
    given.add_row("model", f"{fmt(p.model_params)} params", s["model"])
    given.add_row("generator", f"{fmt(p.gen_params)} params", s["generator"])
    given.add_row("unique tokens", fmt(p.unique_tokens), s["unique"])
    if p.gen_params:
        given.add_row("prompt / generated", fmt(p.prompt_tokens_per_generated), s["prompt"])
    out: list[RenderableType] = [given, f"[bold]Rule[/bold] {escape(p.rule_text)}"]

    table = Table(title=f"Split of {fmt(p.budget_flops)} FLOPs{in_hours}", title_justify="left")
    for col in ("part", "tokens", "FLOPs", "share", *(["device-hours"] if rate else [])):
        table.add_column(col, justify="left" if col == "part" else "right")

    def row(part: str, tokens: str, flops: float) -> None:
        hours = [fmt(flops / rate / 3600)] if rate else []
        table.add_row(part, tokens, fmt(flops), f"{flops / p.budget_flops:.1%}", *hours)

    made = f"{fmt(p.generated_tokens)} generated"
    row("generation", f"{made} + {fmt(p.prompt_tokens)} prompt" if p.gen_params else f"{made} on CPU",
        p.generation_flops)  # fmt: skip
    row("training", f"{fmt(p.training_tokens)} trained", p.training_flops)
    table.add_section()
    row("total", "", p.budget_flops)
    out.append(table)
    if rate and p.gen_params:
        out.append(
            "device-hours at the one stated utilisation for both parts; decoding usually runs at a lower "
            "one, so generation's hours are a lower bound"
        )
    out += [
        f"[bold]tokens per parameter[/bold] {fmt(p.tokens_per_param)}  (compute-optimal ≈ "
        f"{OPTIMAL_TOKENS_PER_PARAM:g}: {fmt(p.optimal_params)} parameters for this training compute)",
        f"[bold]epochs over the data[/bold] {fmt(p.epochs)}  ({fmt(p.training_tokens)} trained / "
        f"{fmt(p.unique_training_tokens)} unique; nearly as good as unique up to {NEARLY_UNIQUE_EPOCHS:g})",
    ]
    out += [f"[yellow]warning[/yellow] {escape(w)}" for w in p.warnings] or [
        "[green]inside the covered region[/green]: "
        f"{MIN_TOKENS_PER_PARAM:g}-{MAX_TOKENS_PER_PARAM:g} tokens per parameter, "
        f"at most {NEARLY_UNIQUE_EPOCHS:g} epochs"
    ]
    out.append(f"[bold]Reference[/bold] {PLEIAS_REFERENCE} This plan: training {p.training_share:.1%}.")
    sources = Table(title="Formulas and sources", title_justify="left")
    sources.add_column("formula")
    sources.add_column("source")
    for formula, source in SOURCES:
        sources.add_row(formula, source)
    out.append(sources)
    return out

"""Export a trained model as a transformers model folder (`pretrainlab export RUN --format hf`).

Our `GPT` maps exactly onto one of three transformers architectures, picked from its config:

  GPT2LMHeadModel   positions='learned', norm='layernorm', mlp='gelu' (exact erf GELU), no GQA, no
                    qk-norm; bias=False exports as zero biases, untied embeddings as a separate lm_head.
  LlamaForCausalLM  positions='rope', norm='rmsnorm', mlp='swiglu', GQA allowed, tied or untied
                    embeddings; bias=True maps to attention_bias and mlp_bias.
  Qwen3ForCausalLM  the Llama case with qk_norm=True (per-head RMSNorm of q and k before RoPE), bias=False.

Our RoPE rotates (first half, second half) pairs of each head, the `rotate_half` layout transformers
uses, so q/k weights are copied without permutation. Every norm uses eps 1e-5. Options with no
counterpart (Canon layers, relu2, positions='none', ...) raise `ExportError` naming the option.

The folder holds config.json, model.safetensors (float32), generation_config.json, the tokenizer
(tokenizer.json, tokenizer_config.json with EOS/PAD and a plain chat template) and a README.md model
card; `export_hf`, given a finished train stage, adds pretrainlab.json (provenance as data). Before
writing, `to_hf` checks the transformers model's logits against ours.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import Tensor

from pretrainlab.errors import ExportError
from pretrainlab.runs import (
    CHECKPOINTS,
    DESIGN_COPY,
    TOKENIZER,
    read_manifest,
    run_root,
    sibling_stage,
    write_json_atomic,
)
from pretrainlab.tokenize.tokenizer import EOS, EOS_ID, PAD, PAD_ID
from pretrainlab.train.checkpoint import latest_checkpoint, load_checkpoint
from pretrainlab.train.model import GPT, ModelConfig

NORM_EPS = 1e-5  # what `pretrainlab.train.model.Norm` uses for both layernorm and rmsnorm
VERIFY_ATOL = 1e-3  # largest logit difference `to_hf` accepts between our model and the export

# Contents of each message, one per line; a finished conversation ends with EOS (as every training
# document does), while add_generation_prompt leaves it open for the model to continue.
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['content'] }}{% if not loop.last %}{{ '\\n' }}{% endif %}"
    "{% endfor %}"
    "{% if not add_generation_prompt %}{{ eos_token }}{% endif %}"
)

ARCHITECTURES = {"gpt2": "GPT2LMHeadModel", "llama": "LlamaForCausalLM", "qwen3": "Qwen3ForCausalLM"}

EXPORT_DIR = "export-hf"  # the default export folder, runs/<design>/export-hf
PROVENANCE = "pretrainlab.json"  # in the export folder: which run, stage and checkpoint it holds
WEIGHTS = "model.safetensors"  # what transformers' save_pretrained writes the weights to


def _no_counterpart(field: str, value: Any, why: str = "") -> ExportError:
    return ExportError(f"cannot export to HF: model.{field}={value!r} has no transformers counterpart{why}")


def hf_architecture(config: ModelConfig) -> str:
    """The transformers family `config` maps onto exactly ("gpt2", "llama", "qwen3"); else ExportError."""
    if config.canon:
        raise _no_counterpart("canon", config.canon)
    if config.positions == "none":
        raise _no_counterpart("positions", config.positions)
    if config.mlp == "relu2":
        raise _no_counterpart("mlp", config.mlp)
    if config.positions == "learned":  # GPT-2
        family = " with positions='learned' (GPT-2 needs {})"
        if config.norm != "layernorm":
            raise _no_counterpart("norm", config.norm, family.format("norm='layernorm'"))
        if config.mlp != "gelu":
            raise _no_counterpart("mlp", config.mlp, family.format("mlp='gelu'"))
        if config.kv_heads != config.heads:
            raise _no_counterpart(
                "kv_heads", config.kv_heads, family.format(f"kv_heads=heads={config.heads}")
            )
        if config.qk_norm:
            raise _no_counterpart("qk_norm", config.qk_norm, family.format("qk_norm=False"))
        return "gpt2"
    family = " with positions='rope' (Llama needs {})"
    if config.norm != "rmsnorm":
        raise _no_counterpart("norm", config.norm, family.format("norm='rmsnorm'"))
    if config.mlp != "swiglu":
        raise _no_counterpart("mlp", config.mlp, family.format("mlp='swiglu'"))
    if config.qk_norm:
        if config.bias:
            raise _no_counterpart("bias", config.bias, " with qk_norm=True (Qwen3 has no MLP biases)")
        return "qwen3"
    return "llama"


# -- config and weights -------------------------------------------------------------------------


def _special_ids() -> dict[str, Any]:
    return {"bos_token_id": None, "eos_token_id": EOS_ID, "pad_token_id": PAD_ID}


def hf_config(config: ModelConfig):
    """The transformers config object of the architecture `config` maps onto."""
    import transformers

    arch = hf_architecture(config)
    if arch == "gpt2":
        return transformers.GPT2Config(
            vocab_size=config.vocab_size,
            n_positions=config.seq_len,
            n_embd=config.width,
            n_layer=config.layers,
            n_head=config.heads,
            n_inner=config.mlp_hidden,
            activation_function="gelu",  # exact GELU, as F.gelu; GPT-2's default "gelu_new" is tanh
            layer_norm_epsilon=NORM_EPS,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            initializer_range=config.init_std,
            tie_word_embeddings=config.tie_embeddings,
            architectures=[ARCHITECTURES[arch]],
            torch_dtype="float32",
            **_special_ids(),
        )
    common = dict(
        vocab_size=config.vocab_size,
        hidden_size=config.width,
        intermediate_size=config.mlp_hidden,
        num_hidden_layers=config.layers,
        num_attention_heads=config.heads,
        num_key_value_heads=config.kv_heads,
        head_dim=config.head_dim,
        hidden_act="silu",
        max_position_embeddings=config.seq_len,
        rms_norm_eps=NORM_EPS,
        rope_theta=config.rope_theta,
        attention_bias=config.bias,
        attention_dropout=0.0,
        initializer_range=config.init_std,
        tie_word_embeddings=config.tie_embeddings,
        architectures=[ARCHITECTURES[arch]],
        torch_dtype="float32",
        **_special_ids(),
    )
    if arch == "qwen3":
        if not hasattr(transformers, "Qwen3Config"):
            raise ExportError(
                "cannot export to HF: model.qk_norm=True maps onto Qwen3, which needs transformers>=4.51 "
                f"(installed: {transformers.__version__})"
            )
        return transformers.Qwen3Config(**common, use_sliding_window=False)
    return transformers.LlamaConfig(**common, mlp_bias=config.bias)


def hf_state_dict(model: GPT) -> dict[str, Tensor]:
    """Our weights under transformers' names and layouts (GPT-2: transposed Conv1D, fused c_attn)."""
    config = model.config
    arch = hf_architecture(config)
    sd = {k: v.detach().float().cpu() for k, v in model.state_dict().items()}
    C, kv_dim, hidden = config.width, config.kv_heads * config.head_dim, config.mlp_hidden
    out: dict[str, Tensor] = {}
    if arch == "gpt2":

        def bias(key: str, size: int) -> Tensor:  # bias=False exports as zeros: the same function
            return sd[key] if key in sd else torch.zeros(size)

        out["transformer.wte.weight"] = sd["wte.weight"]
        out["transformer.wpe.weight"] = sd["wpe.weight"]
        for i in range(config.layers):
            src, dst = f"blocks.{i}.", f"transformer.h.{i}."
            for ours, theirs in (("norm1", "ln_1"), ("norm2", "ln_2")):
                out[f"{dst}{theirs}.weight"] = sd[f"{src}{ours}.weight"]
                out[f"{dst}{theirs}.bias"] = bias(f"{src}{ours}.bias", C)
            linears = (
                ("attn.qkv", "attn.c_attn", 3 * C),
                ("attn.proj", "attn.c_proj", C),
                ("mlp.up", "mlp.c_fc", hidden),
                ("mlp.down", "mlp.c_proj", C),
            )
            for ours, theirs, size in linears:  # Conv1D stores (in, out): the transpose of nn.Linear
                out[f"{dst}{theirs}.weight"] = sd[f"{src}{ours}.weight"].t().contiguous()
                out[f"{dst}{theirs}.bias"] = bias(f"{src}{ours}.bias", size)
        out["transformer.ln_f.weight"] = sd["norm_f.weight"]
        out["transformer.ln_f.bias"] = bias("norm_f.bias", C)
        out["lm_head.weight"] = sd["lm_head.weight"]
        return out

    out["model.embed_tokens.weight"] = sd["wte.weight"]
    for i in range(config.layers):
        src, dst = f"blocks.{i}.", f"model.layers.{i}."
        out[f"{dst}input_layernorm.weight"] = sd[f"{src}norm1.weight"]
        out[f"{dst}post_attention_layernorm.weight"] = sd[f"{src}norm2.weight"]
        for kind in ("weight", "bias") if config.bias else ("weight",):
            q, k, v = sd[f"{src}attn.qkv.{kind}"].split([C, kv_dim, kv_dim], dim=0)
            out[f"{dst}self_attn.q_proj.{kind}"] = q.contiguous()
            out[f"{dst}self_attn.k_proj.{kind}"] = k.contiguous()
            out[f"{dst}self_attn.v_proj.{kind}"] = v.contiguous()
            out[f"{dst}self_attn.o_proj.{kind}"] = sd[f"{src}attn.proj.{kind}"]
            gate, up = sd[f"{src}mlp.up.{kind}"].split([hidden, hidden], dim=0)  # SwiGLU: gate first
            out[f"{dst}mlp.gate_proj.{kind}"] = gate.contiguous()
            out[f"{dst}mlp.up_proj.{kind}"] = up.contiguous()
            out[f"{dst}mlp.down_proj.{kind}"] = sd[f"{src}mlp.down.{kind}"]
        if config.qk_norm:
            out[f"{dst}self_attn.q_norm.weight"] = sd[f"{src}attn.q_norm.weight"]
            out[f"{dst}self_attn.k_norm.weight"] = sd[f"{src}attn.k_norm.weight"]
    out["model.norm.weight"] = sd["norm_f.weight"]
    out["lm_head.weight"] = sd["lm_head.weight"]
    return out


# -- writing the folder -------------------------------------------------------------------------


def _model_card(model: GPT, arch: str, provenance: dict[str, Any] | None, out: Path) -> str:
    config = model.config
    p = provenance or {}
    name = p.get("design", "pretrainlab model")
    lines = [
        "---",
        "library_name: transformers",
        "tags: [pretrainlab]",
        "---",
        f"# {name}",
        "",
        f"A {model.num_params(non_embedding=False):,}-parameter {ARCHITECTURES[arch]} trained by pretrainlab"
        + (f" on the synthetic data of design `{p['design']}`." if "design" in p else "."),
        "",
    ]
    rows = [
        ("run", p.get("run")),
        ("design", p.get("design")),
        ("train stage hash", p.get("train_hash")),
        ("stage inputs", p.get("inputs")),
        ("checkpoint", p.get("checkpoint")),
        ("steps", p.get("steps")),
        ("tokens seen", f"{p['tokens_seen']:,}" if "tokens_seen" in p else None),
        ("pretrainlab", p.get("pretrainlab")),
        ("architecture", f"{ARCHITECTURES[arch]}, {config.layers} layers, width {config.width}, "
         f"{config.heads} heads ({config.kv_heads} kv), context {config.seq_len}"),
    ]  # fmt: skip
    lines += ["| | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows if v is not None]
    lines += [
        "",
        f"Tokenizer: byte-level BPE, {config.vocab_size} tokens; `{EOS}` (id {EOS_ID}) ends every training "
        f"document, `{PAD}` (id {PAD_ID}) pads; there is no BOS. The model was trained on contexts of "
        f"{config.seq_len} tokens.",
        "",
        "```python",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        f'tok = AutoTokenizer.from_pretrained("{out}")',
        f'model = AutoModelForCausalLM.from_pretrained("{out}")',
        "```",
        "",
    ]
    return "\n".join(lines)


def _max_logit_diff(model: GPT, hf_model: Any) -> float:
    g = torch.Generator().manual_seed(0)
    T = min(model.config.seq_len, 32)
    idx = torch.randint(0, model.config.vocab_size, (2, T), generator=g)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            ours = model(idx.to(model.wte.weight.device))[0].cpu()
            theirs = hf_model(input_ids=idx).logits
    finally:
        model.train(was_training)
    return (ours.float() - theirs.float()).abs().max().item()


def _update_json(path: Path, **fields: Any) -> None:
    data = json.loads(path.read_text())
    data.update(fields)
    write_json_atomic(path, data)


def _backward_compatible(out: Path, config: ModelConfig, arch: str) -> None:
    """Spell what transformers 5 writes in forms transformers 4 also reads (5 reads both)."""
    if arch != "gpt2":  # 4.x reads rope_theta at top level; 5.x writes it inside rope_parameters
        _update_json(out / "config.json", rope_theta=config.rope_theta)
    # 5.x names its fast-tokenizer class TokenizersBackend, keeps PreTrainedTokenizerFast as an alias,
    # and moves the chat template to chat_template.jinja
    _update_json(
        out / "tokenizer_config.json", tokenizer_class="PreTrainedTokenizerFast", chat_template=CHAT_TEMPLATE
    )


def to_hf(
    model: GPT,
    tokenizer_path: Path | str,
    out_dir: Path | str,
    provenance: dict[str, Any] | None = None,
    verify: bool = True,
) -> Path:
    """Write `model` (in memory) and the tokenizer.json at `tokenizer_path` as a transformers folder.

    `provenance` (run, design, train_hash, inputs, checkpoint, steps, tokens_seen, pretrainlab) goes
    into the README.md model card. With `verify`, the exported model's logits on a random batch must
    match ours within VERIFY_ATOL, else ExportError.
    """
    try:
        import transformers
    except ImportError:
        raise ExportError(
            "cannot export to HF: transformers is not installed (pip install 'pretrainlab[hf]')"
        ) from None
    from transformers import PreTrainedTokenizerFast

    arch = hf_architecture(model.config)
    tok = PreTrainedTokenizerFast(
        tokenizer_file=str(tokenizer_path),
        eos_token=EOS,
        pad_token=PAD,
        model_max_length=model.config.seq_len,
        chat_template=CHAT_TEMPLATE,
    )
    if tok.convert_tokens_to_ids(EOS) != EOS_ID or tok.convert_tokens_to_ids(PAD) != PAD_ID:
        raise ExportError(f"{tokenizer_path}: expected {EOS} id {EOS_ID} and {PAD} id {PAD_ID}")
    if len(tok) != model.config.vocab_size:
        raise ExportError(f"{tokenizer_path}: {len(tok)} tokens, the model has {model.config.vocab_size}")
    config = hf_config(model.config)
    hf_model = getattr(transformers, ARCHITECTURES[arch])(config).float()
    missing, unexpected = hf_model.load_state_dict(hf_state_dict(model), strict=False)
    missing = [k for k in missing if not (config.tie_word_embeddings and k == "lm_head.weight")]
    if missing or unexpected:  # a mapping bug, never a user error
        raise RuntimeError(f"weight mapping incomplete: missing {missing}, unexpected {unexpected}")
    if config.tie_word_embeddings:
        hf_model.tie_weights()
    hf_model.eval()
    if verify:
        diff = _max_logit_diff(model, hf_model)
        if not diff <= VERIFY_ATOL:
            raise ExportError(
                f"exported {ARCHITECTURES[arch]} disagrees with the model: max |Δlogit| {diff:.3g}"
            )

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    hf_model.generation_config = transformers.GenerationConfig(**_special_ids(), do_sample=False)
    bars = transformers.utils.logging.is_progress_bar_enabled()
    transformers.utils.logging.disable_progress_bar()
    try:
        hf_model.save_pretrained(out, safe_serialization=True)
    finally:
        if bars:
            transformers.utils.logging.enable_progress_bar()
    tok.save_pretrained(out)
    _backward_compatible(out, model.config, arch)
    (out / "README.md").write_text(_model_card(model, arch, provenance, out))
    return out


# -- finished runs ------------------------------------------------------------------------------


def finished_train_manifest(stage_dir: Path) -> dict[str, Any]:
    """The manifest of a finished train stage; ExportError when `stage_dir` is not one."""
    manifest = read_manifest(stage_dir) or {}
    if manifest.get("stage") != "train":
        raise ExportError(f"{stage_dir}: no finished training stage here (no manifest.json); train it first")
    return manifest


def load_run_model(stage_dir: Path) -> tuple[GPT, dict[str, Any]]:
    """The final model of a finished train stage and its checkpoint's metadata (step, file)."""
    stage_dir = Path(stage_dir)
    manifest = read_manifest(stage_dir) or {}
    path = latest_checkpoint(stage_dir / CHECKPOINTS)
    if path is None:
        raise ExportError(f"{stage_dir}: no checkpoint in {stage_dir / CHECKPOINTS}")
    state = load_checkpoint(path)
    if "steps" in manifest and state["global_step"] != manifest["steps"]:
        raise ExportError(
            f"{path}: checkpoint is at step {state['global_step']}, the finished run at {manifest['steps']}"
        )
    model = GPT(ModelConfig(**state["config"]["model"]))
    model.load_state_dict(state["model"])  # the Trainer saves the bare model, never a wrapper
    model.eval()
    return model, {
        "checkpoint": path.name,
        "steps": state["global_step"],
        "tokens_seen": state["tokens_seen"],
    }


def export_hf(stage_dir: Path | str, out_dir: Path | str | None = None) -> Path:
    """Export the final model of a finished train stage (runs/NAME/train/HASH) in transformers format.

    `out_dir` defaults to runs/NAME/export-hf. Returns the folder written. Raises ExportError when the
    stage is unfinished or its model has an option transformers cannot express. Finding the stage of
    a run name or design is the command line's job (`pretrainlab export RUN`).
    """
    stage = Path(stage_dir)
    manifest = finished_train_manifest(stage)
    root = run_root(stage)
    hf_architecture(ModelConfig(**manifest["model"]["config"]))  # fail before loading weights
    inputs = manifest.get("inputs", {})
    if "tokenize" not in inputs:
        raise ExportError(f"{stage}: manifest names no tokenize input")
    tokenizer_path = sibling_stage(stage, "tokenize", inputs["tokenize"]) / TOKENIZER
    if not tokenizer_path.is_file():
        raise ExportError(f"{tokenizer_path}: tokenizer missing")
    model, meta = load_run_model(stage)
    design = root.name
    if (root / DESIGN_COPY).is_file():  # the name as written, even if the current code rejects the design
        design = (yaml.safe_load((root / DESIGN_COPY).read_text()) or {}).get("name", design)
    provenance = {
        "run": str(root),
        "design": design,
        "train_hash": manifest.get("hash", stage.name),
        "inputs": ", ".join(f"{k} {v}" for k, v in inputs.items()),
        "pretrainlab": manifest.get("pretrainlab"),
        **meta,
    }
    out = to_hf(model, tokenizer_path, out_dir or root / EXPORT_DIR, provenance)
    write_json_atomic(out / PROVENANCE, {**provenance, "model": asdict(model.config)})
    return out

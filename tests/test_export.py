"""`pretrainlab export --format hf`: exported transformers models compute our logits and tokenize alike."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest

transformers = pytest.importorskip("transformers")
pytest.importorskip("safetensors")

import torch  # noqa: E402
from rich.console import Console  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from pretrainlab.cli import app  # noqa: E402
from pretrainlab.design import parse_design  # noqa: E402
from pretrainlab.errors import ExportError  # noqa: E402
from pretrainlab.export import export_hf, hf_architecture, to_hf  # noqa: E402
from pretrainlab.pipeline import Pipeline  # noqa: E402
from pretrainlab.runs import write_json_atomic  # noqa: E402
from pretrainlab.tokenize.tokenizer import EOS, EOS_ID, PAD_ID, load_tokenizer, save_tokenizer, train_bpe  # noqa: E402
from pretrainlab.train.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from pretrainlab.train.model import GPT, ModelConfig  # noqa: E402

TEXTS = [
    "Alice Smith was born on 3 May 1990 in Paris. She studied biology at Leiden.",
    "Q: What is 7 + 12 mod 23? A: 19",
    "a -> b. b -> c. Where does a lead in two hops? c",
] * 20
SAMPLE = "Bob Jones was born in Oslo; 5 + 9 mod 23 = 14."
TOL = 1e-4


def load_hf(path: Path):
    """The exported model in float32 (transformers 4.56 renamed torch_dtype to dtype)."""
    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    kwarg = "dtype" if (major, minor) >= (4, 56) else "torch_dtype"
    return AutoModelForCausalLM.from_pretrained(path, **{kwarg: torch.float32}).eval()


@pytest.fixture(scope="module")
def tokenizer_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    save_tokenizer(train_bpe(TEXTS, vocab_size=300), path)
    return path


def random_model(preset: str, vocab_size: int, **overrides) -> GPT:
    """A tiny model with every weight (norm gains and biases too) moved off its init."""
    torch.manual_seed(0)
    config = ModelConfig.preset(
        preset, vocab_size=vocab_size, seq_len=32, layers=2, width=32, heads=4, **overrides
    )
    model = GPT(config)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model.eval()


def max_logit_diff(model: GPT, hf_model) -> float:
    idx = torch.randint(
        0, model.config.vocab_size, (3, model.config.seq_len), generator=torch.Generator().manual_seed(1)
    )
    with torch.no_grad():
        return (model(idx)[0] - hf_model(input_ids=idx).logits).abs().max().item()


CASES = {
    "llama": ("llama", {}, "LlamaForCausalLM"),
    "llama-gqa-untied": ("llama", {"kv_heads": 2, "tie_embeddings": False}, "LlamaForCausalLM"),
    "llama-tied-bias-theta": (
        "llama",
        {"tie_embeddings": True, "bias": True, "rope_theta": 500.0, "kv_heads": 1},
        "LlamaForCausalLM",
    ),
    "llama-qknorm": ("llama", {"qk_norm": True, "kv_heads": 2}, "Qwen3ForCausalLM"),
    "gpt2": ("gpt2", {}, "GPT2LMHeadModel"),
    "gpt2-nobias-untied": ("gpt2", {"bias": False, "tie_embeddings": False}, "GPT2LMHeadModel"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_exported_logits_match(case, tokenizer_path, tmp_path):
    preset, overrides, arch = CASES[case]
    if arch == "Qwen3ForCausalLM" and not hasattr(transformers, "Qwen3ForCausalLM"):
        pytest.skip("Qwen3 needs transformers>=4.51")
    model = random_model(preset, load_tokenizer(tokenizer_path).get_vocab_size(), **overrides)
    out = to_hf(model, tokenizer_path, tmp_path / "hf")
    assert {"config.json", "model.safetensors", "generation_config.json", "tokenizer.json", "README.md"} <= {
        p.name for p in out.iterdir()
    }
    hf_model = load_hf(out)
    assert type(hf_model).__name__ == arch
    diff = max_logit_diff(model, hf_model)
    print(f"{case}: max |logit diff| {diff:.2e}")
    assert diff < TOL
    config = json.loads((out / "config.json").read_text())
    assert config["eos_token_id"] == EOS_ID and config["pad_token_id"] == PAD_ID
    assert config["tie_word_embeddings"] == model.config.tie_embeddings
    generation = json.loads((out / "generation_config.json").read_text())
    assert generation["eos_token_id"] == EOS_ID and generation["pad_token_id"] == PAD_ID


def test_exported_tokenizer_matches_ours(tokenizer_path, tmp_path):
    model = random_model("llama", load_tokenizer(tokenizer_path).get_vocab_size())
    out = to_hf(model, tokenizer_path, tmp_path / "hf")
    ours, theirs = load_tokenizer(tokenizer_path), AutoTokenizer.from_pretrained(out)
    for text in (SAMPLE, TEXTS[0], "  spaces\tand\nlines ü€"):
        assert theirs(text).input_ids == ours.encode(text).ids
        assert theirs.decode(theirs(text).input_ids) == text
    assert (theirs.eos_token, theirs.eos_token_id, theirs.pad_token_id) == (EOS, EOS_ID, PAD_ID)
    messages = [{"role": "user", "content": "Q: 2 + 3?"}, {"role": "assistant", "content": "A: 5"}]
    assert theirs.apply_chat_template(messages, tokenize=False) == f"Q: 2 + 3?\nA: 5{EOS}"
    prompt = theirs.apply_chat_template(messages[:1], tokenize=False, add_generation_prompt=True)
    assert prompt == "Q: 2 + 3?"


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"canon": "ABCD"}, "canon='ABCD'"),
        ({"positions": "none"}, "positions='none'"),
        ({"mlp": "relu2"}, "mlp='relu2'"),
        ({"norm": "layernorm"}, "norm='layernorm'"),  # rope + layernorm: no Llama counterpart
        ({"mlp": "gelu"}, "mlp='gelu'"),  # rope + a non-gated MLP
        ({"qk_norm": True, "bias": True}, "bias=True"),  # Qwen3 has no MLP biases
    ],
)
def test_options_without_counterpart_raise(overrides, field, tokenizer_path, tmp_path):
    model = random_model("llama", load_tokenizer(tokenizer_path).get_vocab_size(), **overrides)
    with pytest.raises(ExportError, match="cannot export to HF") as info:
        to_hf(model, tokenizer_path, tmp_path / "hf")
    assert f"model.{field}" in str(info.value)
    assert not (tmp_path / "hf").exists()


@pytest.mark.parametrize(
    "overrides, field", [({"kv_heads": 2}, "kv_heads=2"), ({"norm": "rmsnorm"}, "norm='rmsnorm'")]
)
def test_gpt2_options_without_counterpart_raise(overrides, field):
    config = ModelConfig.preset("gpt2", vocab_size=300, width=32, heads=4, **overrides)
    with pytest.raises(ExportError, match=f"model.{field}"):
        hf_architecture(config)


def fake_run(root: Path, tokenizer_path: Path, model: GPT) -> Path:
    """A finished run laid out as the pipeline and trainer write it: runs/NAME/{tokenize,train}/HASH."""
    tok_dir = root / "tokenize" / "tokhash"
    tok_dir.mkdir(parents=True)
    save_tokenizer(load_tokenizer(tokenizer_path), tok_dir / "tokenizer.json")
    stage = root / "train" / "trainhash"
    state = {
        "model": model.state_dict(),
        "config": {"model": asdict(model.config), "train": {}},
        "global_step": 5,
        "tokens_seen": 640,
    }
    save_checkpoint(state, stage / "checkpoints")
    manifest = {
        "stage": "train",
        "hash": "trainhash",
        "inputs": {"tokenize": "tokhash"},
        "model": {"config": asdict(model.config)},
        "steps": 5,
    }
    write_json_atomic(stage / "manifest.json", manifest)
    (root / "train" / "latest").write_text("trainhash\n")
    return stage


def test_cli_export_errors(tokenizer_path, tmp_path):
    runs = tmp_path / "runs"
    model = random_model("llama", load_tokenizer(tokenizer_path).get_vocab_size(), canon="AC")
    fake_run(runs / "canonical", tokenizer_path, model)
    runner = CliRunner()
    result = runner.invoke(app, ["export", "canonical", "--runs", str(runs)])
    assert result.exit_code == 1
    assert "model.canon='AC' has no transformers counterpart" in result.output
    assert not (runs / "canonical" / "export-hf").exists()
    missing = runner.invoke(app, ["export", "nosuch", "--runs", str(runs)])
    assert missing.exit_code == 1 and "no such run directory" in missing.output
    wrong = runner.invoke(app, ["export", "canonical", "--runs", str(runs), "--format", "gguf"])
    assert wrong.exit_code == 1 and "--format" in wrong.output


def test_export_hf_on_trainer_layout(tokenizer_path, tmp_path):
    model = random_model("gpt2", load_tokenizer(tokenizer_path).get_vocab_size())
    stage = fake_run(tmp_path / "runs" / "small", tokenizer_path, model)
    out = export_hf(stage)  # export takes the stage folder; the CLI finds it from a run name
    assert out == tmp_path / "runs" / "small" / "export-hf"
    assert max_logit_diff(model, load_hf(out)) < TOL
    assert "trainhash" in (out / "README.md").read_text()


def test_cli_exports_a_trained_run(tiny_design, tmp_path):
    """A real (two-step) run of the tiny design, exported through the command line."""
    tiny_design["exercises"][0].update(people=4, multiplicity=1)
    tiny_design["exercises"][1]["documents"] = 40
    tiny_design["exercises"][2]["documents"] = 40
    tiny_design["train"].update(batch=4, checkpoint_every=2, phases=[{"name": "pretrain", "steps": 2}])
    tiny_design["eval"].update(every=2, max_probes=2)
    runs = tmp_path / "runs"
    train = Pipeline(parse_design(tiny_design), runs, console=Console(quiet=True)).run("train")["train"]

    result = CliRunner().invoke(app, ["export", str(runs / "tiny"), "--runs", str(runs)])
    assert result.exit_code == 0, result.output
    out = runs / "tiny" / "export-hf"
    assert result.stdout.strip() == str(out)

    state = load_checkpoint(train.dir / "checkpoints" / "step_0000002.pt")
    model = GPT(ModelConfig(**state["config"]["model"]))
    model.load_state_dict(state["model"])
    diff = max_logit_diff(model.eval(), load_hf(out))
    print(f"tiny run: max |logit diff| {diff:.2e}")
    assert diff < TOL
    card = (out / "README.md").read_text()
    assert "# tiny" in card and train.hash in card and "| steps | 2 |" in card
    provenance = json.loads((out / "pretrainlab.json").read_text())
    assert provenance["train_hash"] == train.hash and provenance["design"] == "tiny"
    tok = AutoTokenizer.from_pretrained(out)
    ours = load_tokenizer(
        runs / "tiny" / "tokenize" / train.manifest["inputs"]["tokenize"] / "tokenizer.json"
    )
    assert tok(SAMPLE).input_ids == ours.encode(SAMPLE).ids


def test_export_checks_its_own_logits(tokenizer_path, tmp_path, monkeypatch):
    """A mapping bug (here: gate and up swapped) fails the export instead of writing a wrong model."""
    import pretrainlab.export.hf as hf

    real = hf.hf_state_dict

    def swapped(model):
        sd = real(model)
        gate, up = "model.layers.0.mlp.gate_proj.weight", "model.layers.0.mlp.up_proj.weight"
        sd[gate], sd[up] = sd[up], sd[gate]
        return sd

    monkeypatch.setattr(hf, "hf_state_dict", swapped)
    model = random_model("llama", load_tokenizer(tokenizer_path).get_vocab_size())
    with pytest.raises(ExportError, match="disagrees"):
        to_hf(model, tokenizer_path, tmp_path / "hf")
    assert not (tmp_path / "hf").exists()

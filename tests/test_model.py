"""The model zoo: every variant trains, stays causal, counts its parameters, and rejects bad configs."""

from __future__ import annotations

import itertools

import pytest
import torch

from pretrainlab.train.model import GPT, ModelConfig

V = 61
TINY = dict(vocab_size=V, seq_len=32, layers=2, width=32, heads=4)

VARIANTS = [
    *(
        dict(positions=p, norm=n, mlp=m)
        for p, n, m in itertools.product(
            ("learned", "rope", "none"), ("layernorm", "rmsnorm"), ("gelu", "swiglu", "relu2")
        )
    ),
    dict(kv_heads=2),
    dict(kv_heads=1, positions="learned"),
    dict(qk_norm=True),
    dict(qk_norm=True, norm="layernorm", bias=True),
    dict(canon="ABCD"),
    dict(canon="ABCD", kv_heads=2, mlp="gelu", positions="none"),
    dict(canon="BD", mlp="swiglu"),
    dict(tie_embeddings=False),
    dict(bias=True, mlp="relu2"),
]


def tiny(**overrides) -> GPT:
    torch.manual_seed(0)
    return GPT(ModelConfig(**{**TINY, **overrides}))


@pytest.mark.parametrize("overrides", VARIANTS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_variant_runs_forward_and_backward(overrides: dict) -> None:
    model = tiny(**overrides)
    idx = torch.randint(0, V, (3, 20))
    logits, loss = model(idx, idx)
    assert logits.shape == (3, 20, V)
    assert loss is not None and torch.isfinite(loss)
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert model(idx)[1] is None


@pytest.mark.parametrize(
    "overrides",
    [dict(), dict(positions="learned"), dict(canon="ABCD"), dict(canon="ABCD", positions="none", kv_heads=2)],
)
def test_future_tokens_do_not_change_earlier_logits(overrides: dict) -> None:
    model = tiny(**overrides).eval()
    idx = torch.randint(0, V, (2, 24))
    changed = idx.clone()
    changed[:, 15:] = (changed[:, 15:] + 1) % V
    a, b = model(idx)[0], model(changed)[0]
    torch.testing.assert_close(a[:, :15], b[:, :15])
    assert not torch.allclose(a[:, 15:], b[:, 15:])


def test_canon_layers_mix_neighbouring_tokens_without_attention_positions() -> None:
    # One NoPE attention layer sees its prefix as a set; a Canon convolution sees the order.
    idx = torch.tensor([[5, 6, 7, 8, 9]])
    swapped = torch.tensor([[6, 5, 7, 8, 9]])
    plain, canon = tiny(positions="none", layers=1).eval(), tiny(positions="none", layers=1, canon="A").eval()
    torch.testing.assert_close(plain(idx)[0][:, -1], plain(swapped)[0][:, -1])
    assert not torch.allclose(canon(idx)[0][:, -1], canon(swapped)[0][:, -1])


def test_param_counts() -> None:
    cfg = ModelConfig(vocab_size=100, seq_len=16, layers=2, width=32, heads=4, mlp="gelu", norm="rmsnorm")
    per_block = 2 * 32 + 32 * 96 + 32 * 32 + 32 * 128 + 128 * 32  # two norms, qkv, proj, up, down
    non_embedding = 2 * per_block + 32  # final norm
    tied = GPT(cfg)
    assert tied.num_params() == non_embedding
    assert tied.num_params(non_embedding=False) == non_embedding + 100 * 32
    untied = GPT(ModelConfig(**{**cfg.__dict__, "tie_embeddings": False}))
    assert untied.num_params() == non_embedding
    assert untied.num_params(non_embedding=False) == non_embedding + 2 * 100 * 32
    learned = GPT(ModelConfig(**{**cfg.__dict__, "positions": "learned"}))
    assert learned.num_params(non_embedding=False) == non_embedding + 100 * 32 + 16 * 32
    assert tied.flops_per_token() == 6 * non_embedding + 12 * 2 * 32 * 16
    assert tied.flops_per_token(seq_len=8) == 6 * non_embedding + 12 * 2 * 32 * 8


def test_swiglu_and_gqa_sizes() -> None:
    cfg = ModelConfig(vocab_size=10, width=128, heads=8, kv_heads=2, mlp="swiglu")
    assert cfg.mlp_hidden == 344 and cfg.mlp_hidden % 8 == 0
    model = GPT(cfg)
    assert model.blocks[0].attn.qkv.out_features == 128 + 2 * 2 * 16
    assert model.blocks[0].mlp.up.out_features == 2 * 344
    assert ModelConfig(vocab_size=10, width=128, mlp="gelu").mlp_hidden == 512


def test_presets() -> None:
    gpt2 = ModelConfig.preset("gpt2", vocab_size=V)
    assert (gpt2.positions, gpt2.norm, gpt2.mlp, gpt2.bias, gpt2.tie_embeddings) == (
        "learned",
        "layernorm",
        "gelu",
        True,
        True,
    )
    llama = ModelConfig.preset("llama", vocab_size=V, tie_embeddings=True, layers=2)
    assert (llama.positions, llama.norm, llama.mlp, llama.bias, llama.layers) == (
        "rope",
        "rmsnorm",
        "swiglu",
        False,
        2,
    )
    assert llama.tie_embeddings and not ModelConfig.preset("llama", vocab_size=V).tie_embeddings
    model = GPT(ModelConfig.preset("gpt2", **TINY))
    assert model.lm_head.weight is model.wte.weight
    assert model.blocks[0].attn.qkv.bias is not None
    with pytest.raises(ValueError, match="preset"):
        ModelConfig.preset("mamba", vocab_size=V)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        (dict(width=30), "width"),
        (dict(kv_heads=3), "kv_heads"),
        (dict(canon="AE"), "canon"),
        (dict(canon="AA"), "canon"),
        (dict(positions="alibi"), "positions"),
        (dict(norm="batchnorm"), "norm"),
        (dict(mlp="moe"), "mlp"),
        (dict(layers=0), "layers"),
        (dict(mlp_ratio=0), "mlp_ratio"),
        (dict(width=12, heads=4), "heads"),  # rope needs an even head dim
    ],
)
def test_bad_config_names_the_field(overrides: dict, field: str) -> None:
    with pytest.raises(ValueError, match=f"^{field}:"):
        ModelConfig(**{**TINY, **overrides})


def test_too_long_input_is_rejected() -> None:
    with pytest.raises(ValueError, match="seq_len"):
        tiny()(torch.zeros(1, 33, dtype=torch.long))


def test_state_dict_round_trip() -> None:
    model = tiny(canon="AC", tie_embeddings=True)
    assert not any("rope" in k for k in model.state_dict())
    clone = GPT(model.config)
    clone.load_state_dict(model.state_dict())
    idx = torch.randint(0, V, (2, 10))
    torch.testing.assert_close(model(idx)[0], clone(idx)[0])


@pytest.mark.parametrize(
    "overrides", [dict(), ModelConfig.preset("gpt2", **TINY).__dict__, dict(canon="ABCD", qk_norm=True)]
)
def test_bf16_autocast_matches_fp32(overrides: dict) -> None:
    model = tiny(**overrides).eval()
    idx = torch.randint(0, V, (2, 32))
    ref, ref_loss = model(idx, idx)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits, loss = model(idx, idx)
        loss.backward()
    assert logits.dtype == torch.bfloat16 and loss.dtype == torch.float32
    assert abs(loss.item() - ref_loss.item()) < 0.02
    assert (logits.float() - ref).abs().max() < 0.05


@pytest.mark.parametrize("overrides", [dict(), dict(canon="ABCD", kv_heads=2, mlp="relu2")])
def test_tiny_model_overfits_a_fixed_batch(overrides: dict) -> None:
    model = tiny(**overrides)
    idx = torch.randint(0, V, (4, 32), generator=torch.Generator().manual_seed(1))
    targets = idx.roll(-1, dims=1)
    targets[:, -1] = -100
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    first = None
    for _ in range(50):
        _, loss = model(idx, targets)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.2 * first


def test_generate_is_greedy_and_stops_at_eos() -> None:
    model = tiny().eval()
    prompt = torch.randint(1, V, (2, 5))
    out = model.generate(prompt, 6)
    assert out.shape == (2, 11) and torch.equal(out[:, :5], prompt)
    step = prompt
    for _ in range(6):  # the same tokens one argmax at a time
        step = torch.cat([step, model(step)[0][:, -1:].argmax(-1)], dim=1)
    assert torch.equal(out, step)
    first = int(out[0, 5])
    stopped = model.generate(prompt[:1], 6, eos_id=first)
    assert stopped.shape == (1, 6) and int(stopped[0, -1]) == first

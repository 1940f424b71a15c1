"""The model zoo: one decoder-only transformer whose variants are fields of `ModelConfig`.

GPT-2-like and Llama-like models differ only in config (`ModelConfig.preset`). Canon layers (Physics
of LMs 4.1) are residual causal depthwise convolutions of kernel 4, `h + conv(h)`, inserted at:
  A: on the normed input of attention;   B: on the concatenated q/k/v projections;
  C: on the normed input of the MLP;     D: on the MLP up-projection (gate and up for SwiGLU),
     before the nonlinearity, as in the paper's reference code.
Canon convolutions keep PyTorch's default init (as the reference code does).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pretrainlab.config.model import PRESETS, ModelConfig

__all__ = ["GPT", "PRESETS", "ModelConfig"]

class Norm(nn.Module):
    """LayerNorm or RMSNorm, computed in float32 so bf16 autocast stays accurate."""

    def __init__(self, dim: int, kind: str, bias: bool) -> None:
        super().__init__()
        self.kind = kind
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim)) if bias and kind == "layernorm" else None

    def forward(self, x: Tensor) -> Tensor:
        shape, w, b = x.shape[-1:], self.weight.float(), None if self.bias is None else self.bias.float()
        if self.kind == "layernorm":
            return F.layer_norm(x.float(), shape, w, b, eps=1e-5).type_as(x)
        return F.rms_norm(x.float(), shape, w, eps=1e-5).type_as(x)


class Canon(nn.Conv1d):
    """Residual causal depthwise convolution over time, kernel 4: h + conv(h)."""

    def __init__(self, dim: int) -> None:
        super().__init__(dim, dim, kernel_size=4, groups=dim, padding=3, bias=False)

    def forward(self, x: Tensor) -> Tensor:  # (B, T, C)
        return x + super().forward(x.transpose(1, 2))[..., : x.shape[1]].transpose(1, 2)


def rope_cache(config: ModelConfig) -> tuple[Tensor, Tensor]:
    """cos and sin tables of shape (seq_len, head_dim/2), float32."""
    inv_freq = config.rope_theta ** (-torch.arange(0, config.head_dim, 2).float() / config.head_dim)
    angles = torch.outer(torch.arange(config.seq_len).float(), inv_freq)
    return angles.cos(), angles.sin()


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate pairs (first half, second half) of each head of x (B, H, T, D) in float32."""
    x1, x2 = x.float().chunk(2, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).type_as(x)


class Attention(nn.Module):
    """Causal multi-head attention with optional GQA, QK-norm, RoPE and Canon-B."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = config.heads, config.kv_heads, config.head_dim
        self.kv_dim = config.kv_heads * config.head_dim
        qkv_dim = config.width + 2 * self.kv_dim
        self.qkv = nn.Linear(config.width, qkv_dim, bias=config.bias)
        self.proj = nn.Linear(config.width, config.width, bias=config.bias)
        self.canon_b = Canon(qkv_dim) if "B" in config.canon else nn.Identity()
        self.q_norm = Norm(self.head_dim, config.norm, config.bias) if config.qk_norm else nn.Identity()
        self.k_norm = Norm(self.head_dim, config.norm, config.bias) if config.qk_norm else nn.Identity()

    def forward(self, x: Tensor, rope: tuple[Tensor, Tensor] | None) -> Tensor:
        B, T, C = x.shape
        q, k, v = self.canon_b(self.qkv(x)).split([C, self.kv_dim, self.kv_dim], dim=-1)
        q = q.view(B, T, self.heads, self.head_dim).transpose(1, 2)
        k = k.view(B, T, self.kv_heads, self.head_dim).transpose(1, 2)
        v = v.view(B, T, self.kv_heads, self.head_dim).transpose(1, 2)
        q, k = self.q_norm(q), self.k_norm(k)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        if self.kv_heads != self.heads:
            k = k.repeat_interleave(self.heads // self.kv_heads, dim=1)
            v = v.repeat_interleave(self.heads // self.kv_heads, dim=1)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(y.transpose(1, 2).reshape(B, T, C))


class MLP(nn.Module):
    """GELU, squared-ReLU or SwiGLU feed-forward with optional Canon-D."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.kind, hidden = config.mlp, config.mlp_hidden
        up_dim = 2 * hidden if config.mlp == "swiglu" else hidden  # SwiGLU: gate and up in one matmul
        self.up = nn.Linear(config.width, up_dim, bias=config.bias)
        self.down = nn.Linear(hidden, config.width, bias=config.bias)
        self.canon_d = Canon(up_dim) if "D" in config.canon else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        h = self.canon_d(self.up(x))
        if self.kind == "swiglu":
            gate, up = h.chunk(2, dim=-1)
            h = F.silu(gate) * up
        elif self.kind == "relu2":
            h = F.relu(h).square()
        else:
            h = F.gelu(h)
        return self.down(h)


class Block(nn.Module):
    """Pre-norm block: x + attn(canon_a(norm(x))), then x + mlp(canon_c(norm(x)))."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.norm1 = Norm(config.width, config.norm, config.bias)
        self.attn = Attention(config)
        self.norm2 = Norm(config.width, config.norm, config.bias)
        self.mlp = MLP(config)
        self.canon_a = Canon(config.width) if "A" in config.canon else nn.Identity()
        self.canon_c = Canon(config.width) if "C" in config.canon else nn.Identity()

    def forward(self, x: Tensor, rope: tuple[Tensor, Tensor] | None) -> Tensor:
        x = x + self.attn(self.canon_a(self.norm1(x)), rope)
        return x + self.mlp(self.canon_c(self.norm2(x)))


class GPT(nn.Module):
    """Decoder-only transformer: embeddings, pre-norm blocks, final norm, output head."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.width)
        self.wpe = nn.Embedding(config.seq_len, config.width) if config.positions == "learned" else None
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.layers))
        self.norm_f = Norm(config.width, config.norm, config.bias)
        self.lm_head = nn.Linear(config.width, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.wte.weight
        if config.positions == "rope":
            cos, sin = rope_cache(config)  # non-persistent: checkpoints hold only learned weights
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # GPT-2: scale residual projections by depth
            if name.endswith(("attn.proj.weight", "mlp.down.weight")):
                nn.init.normal_(p, std=config.init_std / math.sqrt(2 * config.layers))

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=self.config.init_std)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, idx: Tensor, targets: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """Logits (B, T, V) and, given targets, mean cross-entropy ignoring targets == -100."""
        T = idx.shape[1]
        if T > self.config.seq_len:
            raise ValueError(f"sequence length {T} exceeds config.seq_len={self.config.seq_len}")
        x = self.wte(idx)
        if self.wpe is not None:
            x = x + self.wpe(torch.arange(T, device=idx.device))
        rope = (self.rope_cos[:T], self.rope_sin[:T]) if self.config.positions == "rope" else None
        for block in self.blocks:
            x = block(x, rope)
        logits = self.lm_head(self.norm_f(x))
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), ignore_index=-100)
        return logits, loss

    def num_params(self, non_embedding: bool = True) -> int:
        """Parameter count; non_embedding leaves out token/position tables and an untied output head."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= self.wte.weight.numel()
            if self.wpe is not None:
                n -= self.wpe.weight.numel()
            if not self.config.tie_embeddings:
                n -= self.lm_head.weight.numel()
        return n

    def flops_per_token(self, seq_len: int | None = None) -> float:
        """Training FLOPs per token, 6*N + 12*L*d*T (N non-embedding; forward only is a third).

        Like Kaplan et al., this leaves out the output-layer matmul (6*d*V per token).
        """
        T = seq_len or self.config.seq_len
        return 6 * self.num_params() + 12 * self.config.layers * self.config.width * T

    @torch.no_grad()
    def generate(self, idx: Tensor, max_new_tokens: int, eos_id: int | None = None) -> Tensor:
        """Greedy continuation of idx (B, T); rows that emitted eos_id keep emitting it until all have."""
        done = torch.zeros(idx.shape[0], dtype=torch.bool, device=idx.device)
        for _ in range(max_new_tokens):
            logits, _ = self(idx[:, -self.config.seq_len :])
            nxt = logits[:, -1].argmax(-1)
            if eos_id is not None:
                nxt = nxt.masked_fill(done, eos_id)
                done |= nxt == eos_id
            idx = torch.cat([idx, nxt[:, None]], dim=1)
            if done.all():
                break
        return idx

"""`transformers serve` serves an exported model, and its greedy completion is our model's."""

from __future__ import annotations

import json
import urllib.request

import pytest

pytest.importorskip("transformers")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

import torch  # noqa: E402

from pretrainlab.engines.serve import LocalServer  # noqa: E402
from pretrainlab.export import to_hf  # noqa: E402
from pretrainlab.tokenize.tokenizer import EOS_ID, load_tokenizer, save_tokenizer, train_bpe  # noqa: E402
from pretrainlab.train.model import GPT, ModelConfig  # noqa: E402

TEXTS = ["edge ba be\nedge be bi\nedge bi ba\n? 1 ba be\n? 2 be ba", "Q: What is 7 + 12 mod 23? A: 19"] * 30
PROMPT = "edge ba be\nedge be bi\n? 1"


def post(url: str, body: dict) -> dict:
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())


def test_transformers_serve_serves_the_export(tmp_path):
    tok_path = tmp_path / "tokenizer.json"
    save_tokenizer(train_bpe(TEXTS, vocab_size=300), tok_path)
    tok = load_tokenizer(tok_path)
    torch.manual_seed(0)
    config = ModelConfig.preset(
        "llama", vocab_size=tok.get_vocab_size(), seq_len=64, layers=2, width=32, heads=4
    )
    model = GPT(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    out = to_hf(model, tok_path, tmp_path / "export")

    prompt_ids = tok.encode(PROMPT).ids
    with torch.no_grad():
        ours = model.generate(torch.tensor([prompt_ids]), max_new_tokens=6, eos_id=EOS_ID)[
            0, len(prompt_ids) :
        ]
    expected = tok.decode([i for i in ours.tolist() if i != EOS_ID])
    assert expected.strip(), "the model should say something for the comparison to mean anything"

    with LocalServer(out, engine="transformers", log_path=tmp_path / "serve.log") as server:
        reply = post(
            server.base_url + "/completions", {"model": server.model, "prompt": PROMPT, "max_tokens": 6}
        )
    assert reply["choices"][0]["text"] == expected
    assert reply["usage"]["prompt_tokens"] == len(prompt_ids)

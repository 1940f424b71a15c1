from __future__ import annotations

import copy
import os
import shutil
import tempfile

import pytest

TINY = {
    "name": "tiny",
    "seed": 7,
    "exercises": [
        {
            "kind": "biographies",
            "capability": "person-facts",
            "share": 0.7,
            "people": 16,
            "multiplicity": 3,
            "permute": True,
            "fullname": True,
            "qa_fraction": 0.5,
        },
        {"kind": "khop", "capability": "multi-hop", "share": 0.2, "max_hops": 2, "documents": 300},
        {"kind": "modarith", "capability": "arithmetic", "share": 0.1, "max_ops": 1, "documents": 200},
    ],
    "tokenizer": {"vocab": 512},
    "model": {"preset": "llama", "layers": 2, "width": 64, "heads": 2},
    "train": {
        "seq_len": 64,
        "batch": 16,
        "lr": 3e-3,
        "warmup": 10,
        "checkpoint_every": 20,
        "phases": [{"name": "pretrain", "steps": 40}],
        # one dtype everywhere: `auto` measures the machine (tests/test_autotune.py), which would make
        # runs of different shapes (DDP against accumulation) free to pick different dtypes
        "precision": "fp32",
    },
    "eval": {"every": 20, "max_probes": 20, "samples": 1},
    # in the test's process: a tiny design's work is smaller than starting a pool (test_executors
    # covers the pools)
    "executor": {"workers": 1},
}


@pytest.fixture
def tiny_design() -> dict:
    """A design small enough to run every stage in seconds."""
    return copy.deepcopy(TINY)


HF_TEXTS = ["edge ba be\nedge be bi\nedge bi ba\n? 1 ba be\n? 2 be ba", "Q: What is 7 + 12 mod 23? A: 19"]
HF_TEXTS *= 30


@pytest.fixture
def hf_model(tmp_path):
    """A tiny exported llama (2 layers, width 32) with a BPE tokenizer trained on HF_TEXTS."""
    pytest.importorskip("transformers")
    import torch

    from pretrainlab.export import to_hf
    from pretrainlab.tokenize.tokenizer import save_tokenizer, train_bpe
    from pretrainlab.train.model import GPT, ModelConfig

    tok_path = tmp_path / "tokenizer.json"
    tok = train_bpe(HF_TEXTS, vocab_size=300)
    save_tokenizer(tok, tok_path)
    torch.manual_seed(0)
    config = ModelConfig.preset(
        "llama", vocab_size=tok.get_vocab_size(), seq_len=64, layers=2, width=32, heads=4
    )
    return to_hf(GPT(config).eval(), tok_path, tmp_path / "export")


def pytest_configure(config) -> None:
    """Measurements cached per machine (the matmul rate) go to a folder of this test session's own."""
    if "PRETRAINLAB_CACHE_DIR" not in os.environ:
        config._pretrainlab_cache = tempfile.mkdtemp(prefix="pretrainlab-cache-")
        os.environ["PRETRAINLAB_CACHE_DIR"] = config._pretrainlab_cache


def pytest_unconfigure(config) -> None:
    folder = getattr(config, "_pretrainlab_cache", None)
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)

from __future__ import annotations

import copy

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
    },
    "eval": {"every": 20, "max_probes": 20, "samples": 1},
}


@pytest.fixture
def tiny_design() -> dict:
    """A design small enough to run every stage in seconds."""
    return copy.deepcopy(TINY)

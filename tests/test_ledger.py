"""Device-hours come from a measured rate or are absent; the matmul rate is measured once per machine."""

from __future__ import annotations

import json

import pytest
import torch

from pretrainlab.design import parse_design
from pretrainlab.ledger import ledger_rows
from pretrainlab.pipeline import Pipeline
from pretrainlab.train import peak


def test_no_rate_no_device_hours():
    rows = ledger_rows({"generate": {"ledger": {"tokens": 100, "flops": 1e12}}})
    assert rows[0]["flops"] == 1e12 and rows[0]["device_hours"] is None


def test_train_counts_device_hours_at_its_measured_rate(tmp_path, tiny_design):
    tiny_design["train"]["phases"] = [{"name": "pretrain", "steps": 10}]
    tiny_design["train"]["precision"] = "fp32"
    train = Pipeline(parse_design(tiny_design), tmp_path / "runs").run("train")["train"].manifest
    rate = train["matmul_rate"]
    assert rate["dtype"] == "fp32" and rate["flops_per_s"] > 1e6 and rate["device"].startswith("cpu: ")
    (row,) = [r for r in ledger_rows({"train": train})]
    assert row["device_hours"] == pytest.approx(row["flops"] / rate["flops_per_s"] / 3600)
    assert "measured fp32 matmul rate" in row["note"]
    assert 0 < train["mfu"] == pytest.approx(
        train["ledger"]["flops"] / train["timing"]["train_s"] / rate["flops_per_s"], rel=1e-3
    )


def test_matmul_rate_is_measured_once_per_machine_and_dtype(tmp_path, monkeypatch):
    monkeypatch.setenv("PRETRAINLAB_CACHE_DIR", str(tmp_path))
    calls = []
    monkeypatch.setattr(peak, "measure_matmul_rate", lambda device, dtype: calls.append(dtype) or 1e11)
    cpu = torch.device("cpu")
    first, cached = peak.matmul_rate(cpu, torch.float32)
    assert not cached and first.flops_per_s == 1e11
    again, cached = peak.matmul_rate(cpu, torch.float32)
    assert cached and again == first
    _, cached = peak.matmul_rate(cpu, torch.bfloat16)
    assert not cached and calls == [torch.float32, torch.bfloat16]

    (tmp_path / peak.CACHE_NAME).write_text("not json")  # a damaged cache is measured again
    _, cached = peak.matmul_rate(cpu, torch.float32)
    assert not cached and len(calls) == 3
    assert len(json.loads((tmp_path / peak.CACHE_NAME).read_text())) == 1


def test_measured_rate_is_a_real_measurement():
    rate = peak.measure_matmul_rate(torch.device("cpu"), torch.float32, size=128)
    assert 1e6 < rate < 1e14

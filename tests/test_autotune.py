"""`precision: auto` and `compile: auto` pick the faster setting by measurement, cache it per machine and
shape, and record it in the train manifest.

The probe's clock is replaced by a fake one that each update advances by a set cost per candidate, so
the figures are exact and no test depends on this machine's speed (the updates themselves are real).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import torch

from pretrainlab.config.model import ModelConfig, TrainConfig
from pretrainlab.design import parse_design
from pretrainlab.pipeline import Pipeline
from pretrainlab.train import autotune
from pretrainlab.train.model import GPT

BATCH, SEQ = 4, 16
TOKENS = BATCH * SEQ
CPU = torch.device("cpu")
MODEL = ModelConfig(vocab_size=64, seq_len=SEQ, layers=1, width=16, heads=2)


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch) -> Iterator[None]:
    """A cache of this test's own, and bf16 a candidate whatever this CPU's flags say."""
    monkeypatch.setenv("PRETRAINLAB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(autotune, "cpu_has_bf16_matmul", lambda: True)
    yield


def fake_costs(monkeypatch, costs: dict[str, float], compile_cost: float = 0.0) -> list[str]:
    """Each probe update takes `costs[candidate name]` seconds on the probe's clock (a compiled one's first
    update `compile_cost` more). torch.compile becomes a plain wrapper; returns the names of updates run."""
    clock = [0.0]
    ran: list[str] = []
    first_compiled: set[str] = set()
    step = autotune.probe_step

    def fake_compile(model: torch.nn.Module) -> Callable:
        def compiled(*args):
            return model(*args)

        compiled.is_compiled = True  # type: ignore[attr-defined]
        return compiled

    def timed_step(forward, optimizer, x, y, autocast_dtype) -> None:
        step(forward, optimizer, x, y, autocast_dtype)
        name = "bf16" if autocast_dtype == torch.bfloat16 else "fp32"
        if getattr(forward, "is_compiled", False):
            name += "+compile"
            if name not in first_compiled:
                first_compiled.add(name)
                clock[0] += compile_cost
        ran.append(name)
        clock[0] += costs[name]

    monkeypatch.setattr(autotune, "now", lambda: clock[0])
    monkeypatch.setattr(autotune, "probe_step", timed_step)
    monkeypatch.setattr(autotune.torch, "compile", fake_compile)
    monkeypatch.setattr(autotune, "cpp_compiler", lambda: "g++")
    return ran


def tune(precision: str = "auto", compile: bool | str = False, run_tokens: int = 10**6) -> autotune.Tuning:
    config = TrainConfig(precision=precision, compile=compile)  # type: ignore[arg-type]
    return autotune.tune(MODEL, config, BATCH, SEQ, CPU, run_tokens)


@pytest.mark.parametrize(("slow", "expected"), [("bf16", "fp32"), ("fp32", "bf16")])
def test_auto_picks_the_faster_precision(monkeypatch, slow: str, expected: str) -> None:
    ran = fake_costs(monkeypatch, {"fp32": 0.1, "bf16": 0.1, slow: 0.3})
    tuning = tune()
    assert (tuning.precision, tuning.compile, tuning.cached) == (expected, False, False)
    assert tuning.candidates == pytest.approx({slow: TOKENS / 0.3, expected: TOKENS / 0.1}, rel=1e-3)
    assert tuning.candidates.keys() == {"fp32", "bf16"} and tuning.probe_s > 0
    assert ran.count(slow) < ran.count(expected)  # 3x slower than the leader: out after one round
    assert f"-> {expected}, eager" in tuning.summary()


def test_a_tie_goes_to_fp32(monkeypatch) -> None:
    fake_costs(monkeypatch, {"fp32": 0.1, "bf16": 0.099})  # bf16 1% faster: within the noise
    assert tune().precision == "fp32"


def test_the_cached_choice_is_reused_without_probing(monkeypatch) -> None:
    fake_costs(monkeypatch, {"fp32": 0.3, "bf16": 0.1})
    first = tune()
    monkeypatch.setattr(autotune, "measure", lambda *args: pytest.fail("probed again"))
    again = tune()
    assert again.cached and not first.cached and again.probe_s == 0
    assert (again.precision, again.candidates) == (first.precision, first.candidates)
    assert "(measured earlier on this machine)" in again.summary()
    monkeypatch.setattr(torch, "get_num_threads", lambda: 97)  # another machine: measured afresh
    with pytest.raises(pytest.fail.Exception, match="probed again"):
        tune()


def test_other_shapes_are_measured_again(monkeypatch) -> None:
    ran = fake_costs(monkeypatch, {"fp32": 0.3, "bf16": 0.1})
    tune()
    before = len(ran)
    autotune.tune(MODEL, TrainConfig(), BATCH * 2, SEQ, CPU, 10**6)
    assert len(ran) > before


def test_fixed_settings_are_not_probed(monkeypatch) -> None:
    monkeypatch.setattr(autotune, "measure", lambda *args: pytest.fail("probed"))
    assert (tune("bf16", False).precision, tune("fp32", False).precision) == ("bf16", "fp32")
    monkeypatch.setattr(autotune, "cpu_has_bf16_matmul", lambda: False)
    no_bf16 = tune()  # emulated bf16 is slow for sure: nothing left to measure
    assert no_bf16.precision == "fp32" and not no_bf16.candidates and "no hardware bf16" in no_bf16.notes[0]


def test_compile_is_chosen_only_where_it_pays_for_its_compile_time(monkeypatch) -> None:
    fake_costs(monkeypatch, {"fp32": 0.1, "bf16": 0.3, "fp32+compile": 0.05, "bf16+compile": 0.1}, 50.0)
    short = tune(compile="auto", run_tokens=TOKENS * 100)  # 100 updates save 5 s, compiling costs 50
    assert (short.precision, short.compile) == ("fp32", False)
    assert short.compile_s == pytest.approx({"fp32+compile": 50.05}, abs=0.1)  # bf16 lost eager: not compiled
    assert short.candidates.keys() == {"fp32", "bf16", "fp32+compile"}
    long = tune(compile="auto", run_tokens=TOKENS * 10_000)  # the same measurements, a longer run
    assert (long.precision, long.compile, long.cached) == ("fp32", True, True)


def test_no_compiler_means_eager_with_a_note(monkeypatch) -> None:
    fake_costs(monkeypatch, {"fp32": 0.1, "bf16": 0.3})
    monkeypatch.setattr(autotune, "cpp_compiler", lambda: None)
    tuning = tune(compile="auto")
    assert tuning.candidates.keys() == {"fp32", "bf16"} and not tuning.compile
    assert any("no C++ compiler" in note for note in tuning.notes)
    assert "no C++ compiler" in tuning.summary()


def test_a_failing_compile_leaves_the_eager_choice_and_a_note(monkeypatch) -> None:
    fake_costs(monkeypatch, {"fp32": 0.1, "bf16": 0.3})

    def broken(model: torch.nn.Module) -> Callable:
        def compiled(*args):
            raise RuntimeError("inductor: C++ compile error\nmore lines")

        return compiled

    monkeypatch.setattr(autotune.torch, "compile", broken)
    tuning = tune(compile="auto")
    assert (tuning.precision, tuning.compile, tuning.compile_s) == ("fp32", False, {})
    assert tuning.notes == ["compile failed (RuntimeError: inductor: C++ compile error): eager"]


def test_the_probe_leaves_the_random_streams_alone(monkeypatch) -> None:
    fake_costs(monkeypatch, {"fp32": 0.1, "bf16": 0.3})
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    tune()
    assert torch.equal(torch.rand(3), expected)


def test_the_probe_trains_the_run_s_model_on_the_run_s_batch_shape(monkeypatch) -> None:
    fake_costs(monkeypatch, {"fp32": 0.1, "bf16": 0.3})
    seen: set[tuple] = set()
    timed = autotune.probe_step

    def record(forward, optimizer, x, y, autocast_dtype) -> None:
        seen.add((type(forward), forward.config == MODEL, tuple(x.shape), tuple(y.shape)))
        timed(forward, optimizer, x, y, autocast_dtype)

    monkeypatch.setattr(autotune, "probe_step", record)
    tune()
    assert seen == {(GPT, True, (BATCH, SEQ), (BATCH, SEQ))}


def test_the_train_manifest_records_the_choice(tmp_path, tiny_design, monkeypatch) -> None:
    fake_costs(monkeypatch, {"fp32": 0.3, "bf16": 0.1})  # bf16 three times faster
    tiny_design["train"]["phases"] = [{"name": "pretrain", "steps": 4}]
    del tiny_design["train"]["precision"]  # the default, auto
    runs = tmp_path / "runs"
    manifest = Pipeline(parse_design(tiny_design), runs).run("train")["train"].manifest
    tuned = manifest["autotune"]
    assert (manifest["precision"], manifest["compile"], manifest["compile_s"]) == ("bf16", False, None)
    assert (tuned["precision"], tuned["compile"], tuned["cached"]) == ("bf16", False, False)
    assert tuned["candidates"]["bf16"] == pytest.approx(3 * tuned["candidates"]["fp32"], rel=1e-3)
    assert manifest["matmul_rate"]["dtype"] == "bf16"


def test_cuda_keeps_the_rule_for_precision_and_probes_only_compile(monkeypatch) -> None:
    cuda = torch.device("cuda")
    monkeypatch.setattr(autotune, "cuda_has_native_bf16", lambda: True)
    todo, notes = autotune.candidates("auto", False, cuda)
    assert todo == [autotune.Candidate("bf16")] and notes == ["precision: bf16 by rule on CUDA (not probed)"]
    monkeypatch.setattr(autotune, "compile_unavailable", lambda device: None)
    todo, _ = autotune.candidates("auto", "auto", cuda)
    assert [c.name for c in todo] == ["bf16", "bf16+compile"]
    monkeypatch.setattr(autotune, "cuda_has_native_bf16", lambda: False)  # pre-Ampere: emulated bf16
    assert [c.name for c in autotune.candidates("auto", False, cuda)[0]] == ["fp32"]


def test_compiled_candidates_are_charged_the_same_compile_time() -> None:
    todo = [autotune.Candidate("fp32", True), autotune.Candidate("bf16", True)]
    rates = {"fp32+compile": 100.0, "bf16+compile": 103.0}  # bf16 within its margin
    compile_s = {"fp32+compile": 20.0, "bf16+compile": 17.0}  # the second compile found inductor warm
    assert autotune.choose(todo, rates, compile_s, run_tokens=3_000).name == "fp32+compile"

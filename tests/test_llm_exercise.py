"""The `llm` exercise kind end to end against loopback servers: seeds, samplers, chains, parsers,
verifiers, the judge, faults, the request cache, and kill -9 resume."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

pytest.importorskip("openai")

from pretrainlab.design import DesignError, parse_design  # noqa: E402
from pretrainlab.engines.fake_server import FakeServer, FaultSchedule  # noqa: E402
from pretrainlab.engines.journal import JOURNAL_NAME  # noqa: E402
from pretrainlab.errors import StageError  # noqa: E402
from pretrainlab.ledger import ledger_rows  # noqa: E402
from pretrainlab.pipeline import Pipeline  # noqa: E402
from pretrainlab.records import read_rows  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def write_seeds(path: Path, n: int = 20) -> Path:
    with open(path, "w") as f:
        for i in range(n):
            row = {"id": f"doc{i}", "body": f"Seed {i}: the tide follows the moon.", "lic": "CC-BY-4.0"}
            row["views"] = i % 4
            if i % 5 == 0:
                row["lic"] = ""  # falls back to default_license
            f.write(json.dumps(row) + "\n")
    return path


def design_dict(tmp: Path, url: str, **exercise) -> dict:
    ex = {
        "kind": "llm",
        "name": "rephrase",
        "capability": "knowledge",
        "seeds": {"corpus": "wiki", "repeat": 2},
        "samplers": {"style": {"kind": "categorical", "values": ["formal", "plain"]}},
        "prompt": [{"role": "user", "content": "[[id={{ index }}]] Rewrite ({{ style }}): {{ seed.text }}"}],
        "parser": {"kind": "regex", "pattern": r"echo: \[\[id=\d+\]\] (.*)", "flags": ["DOTALL"]},
    }
    ex.update(exercise)
    return {
        "name": "llm-test",
        "seed": 5,
        "corpora": {
            "wiki": {
                "path": str(write_seeds(tmp / "seeds.jsonl")),
                "text": "body",
                "id": "id",
                "license": "lic",
                "default_license": "CC0-1.0",
            }
        },
        "llm": {
            "endpoints": [{"name": "fake", "url": url, "model": "fake-model", "max_concurrency": 16}],
            "timeout_s": 2,
            "max_attempts": 4,
        },
        "exercises": [ex],
    }


def generate(d: dict, runs: Path):
    result = Pipeline(parse_design(d), runs).run_stage("generate")
    return result, list(read_rows(result.dir / f"records-{d['exercises'][0]['name']}.parquet"))


def test_records_carry_provenance_and_rerun_sends_nothing(tmp_path):
    with FakeServer() as srv:
        d = design_dict(tmp_path, srv.base_url)
        d["llm"]["endpoints"][0].update(params=1e9, tokens_per_s=500)
        result, rows = generate(d, tmp_path / "runs")
        assert len(rows) == 40 and len(srv.records) == 40  # 20 seeds x repeat 2
        s = result.manifest["exercises"]["rephrase"]
        assert s["items"] == 40 and s["records"] == 40 and s["rejected"] == {}
        assert s["tokens"]["fake"]["requests"] == 40 and s["tokens"]["fake"]["completion_tokens"] > 0
        # every record: its seed, license, sampled values, usage, latency, finish reason
        r0, r1 = rows[0], rows[1]
        assert r0["source_id"] == r1["source_id"] == "doc0" and r0["source_license"] == "CC0-1.0"
        assert rows[2]["source_license"] == "CC-BY-4.0"
        p = json.loads(r0["params"])
        assert p["seed"] == {"corpus": "wiki", "id": "doc0", "use": 0} and p["style"] in ("formal", "plain")
        assert json.loads(r1["params"])["seed"]["use"] == 1
        m = json.loads(r0["meta"])
        assert m["finish_reason"] == "stop" and m["usage"]["completion_tokens"] > 0
        assert m["steps"]["response"]["endpoint"] == "fake"
        assert m["latency_s"] == round(sum(s["latency_s"] for s in m["steps"].values()), 4)
        assert r0["generator"] == "llm:fake-model"
        assert r0["text"] == f"Rewrite ({p['style']}): Seed 0: the tide follows the moon."
        assert [json.loads(r["params"])["index"] for r in rows] == list(range(40))  # item order
        led = result.manifest["ledger"]["llm"]["rephrase@fake"]
        assert led["prompt_tokens"] == s["tokens"]["fake"]["prompt_tokens"]
        # the ledger: a row per exercise and endpoint, FLOPs and device-hours from the stated size and speed
        n = led["prompt_tokens"] + led["completion_tokens"]
        (row,) = [r for r in ledger_rows({"generate": result.manifest}) if r["note"].startswith("LLM")]
        assert row["tokens"] == n and row["flops"] == 2 * 1e9 * n
        assert row["device_hours"] == pytest.approx(n / 500 / 3600)

        # an unrelated edit (another exercise added) re-runs the stage, but sends nothing already answered
        d2 = {
            **d,
            "exercises": [*d["exercises"], {"kind": "modarith", "capability": "arith", "documents": 10}],
        }
        result2, rows2 = generate(d2, tmp_path / "runs")
        assert result2.hash != result.hash and len(srv.records) == 40
        assert result2.manifest["exercises"]["rephrase"]["requests"]["from_cache"] == 40
        assert [r["text"] for r in rows2] == [r["text"] for r in rows]
        # the same design and seed: the same bytes
        assert (result2.dir / "records-rephrase.parquet").read_bytes() == (
            result.dir / "records-rephrase.parquet"
        ).read_bytes()


def reply_for_chain(req: dict) -> str:
    """A scripted model: questions, answers (sometimes wrong), and judge scores."""
    last = req["messages"][-1]["content"]
    if "## Criteria" in last:
        return "Clear. Score: 3" if "b=13" in last else "Clear and correct. Score: 9"
    if last.startswith("Ask"):
        a, b = re.findall(r"\d+", last)[:2]
        return f"What is {a} plus {b}?"
    m = re.search(r"What is (\d+) plus (\d+)", last)
    a, b = int(m.group(1)), int(m.group(2))
    wrong = (a + b) % 3 == 0
    return json.dumps({"answer": a + b + (1 if wrong else 0), "work": f"{a}+{b}"})


def test_chain_with_json_parser_verifier_and_judge(tmp_path):
    chain = {
        "seeds": None,
        "count": 30,
        "samplers": {"a": {"kind": "int", "low": 1, "high": 20}, "b": {"kind": "int", "low": 1, "high": 20}},
        "prompt": None,
        "parser": "plain",
        "steps": [
            {"name": "question", "prompt": [{"role": "user", "content": "Ask about {{ a }} and {{ b }}."}]},
            {
                "name": "solution",
                "prompt": [{"role": "user", "content": "{{ question }}"}],
                "parser": {
                    "kind": "json",
                    "schema": {
                        "type": "object",
                        "required": ["answer"],
                        "properties": {"answer": {"type": "integer"}},
                    },
                },
            },
        ],
        "text": "Q: {{ question }}\nA: {{ solution.answer }} (a={{ a }}, b={{ b }})",
        "verify": ["tests.test_llm_exercise:sum_is_right"],
        "judge": {"criteria": "Correct and clear.", "threshold": 7},
    }
    with FakeServer(reply=reply_for_chain) as srv:
        d = design_dict(tmp_path, srv.base_url, **chain)
        d["exercises"][0].pop("seeds")
        d["exercises"][0].pop("prompt")
        result, rows = generate(d, tmp_path / "runs")
    s = result.manifest["exercises"]["rephrase"]
    values = [json.loads(r["params"]) for r in rows]
    wrong = s["rejected"].get("verify", 0)
    judged_out = s["rejected"].get("judge", 0)
    assert s["records"] + wrong + judged_out == 30 and wrong > 0
    assert all((v["a"] + v["b"]) % 3 != 0 for v in values)  # wrong sums never make it
    assert all(v["b"] != 13 for v in values)  # the judge scores b=13 at 3 < 7
    m = json.loads(rows[0]["meta"])
    assert set(m["steps"]) == {"question", "solution", "judge"}
    assert (
        m["verdicts"]["judge"]["score"] == 9 and m["verdicts"]["tests.test_llm_exercise:sum_is_right"]["ok"]
    )
    assert m["outputs"]["solution"]["answer"] == values[0]["a"] + values[0]["b"]
    rejected = [
        json.loads(line) for line in (result.dir / "rejected-rephrase.jsonl").read_text().splitlines()
    ]
    assert len(rejected) == wrong + judged_out and {r["reason"] for r in rejected} <= {"verify", "judge"}


def sum_is_right(fields) -> tuple[bool, str | None]:
    ok = fields["solution"]["answer"] == fields["a"] + fields["b"]
    return ok, None if ok else f"{fields['a']}+{fields['b']} is not {fields['solution']['answer']}"


def test_parse_failure_gets_a_corrective_turn(tmp_path):
    def reply(req):  # answers in the wrong format first, then right when told
        return "ANSWER: 42" if len(req["messages"]) > 1 else "forty-two"

    with FakeServer(reply=reply) as srv:
        d = design_dict(
            tmp_path, srv.base_url, parser={"kind": "regex", "pattern": r"ANSWER: (\d+)"}, parse_retries=1
        )
        result, rows = generate(d, tmp_path / "runs")
        assert len(rows) == 40 and len(srv.records) == 80
        assert {r["text"] for r in rows} == {"42"}
        assert json.loads(rows[0]["meta"])["steps"]["response"]["parse_attempts"] == 2

    with FakeServer(reply=lambda req: "forty-two") as srv:
        d = design_dict(tmp_path, srv.base_url, parser={"kind": "regex", "pattern": r"ANSWER: (\d+)"})
        result, rows = generate(d, tmp_path / "runs2")
        s = result.manifest["exercises"]["rephrase"]
        assert rows == [] and s["rejected"] == {"parse:no_match": 40}


def test_faulty_server_every_item_a_record_or_a_counted_drop(tmp_path):
    rates = {"rate_limit": 0.08, "server_error": 0.08, "slow": 0.04, "malformed": 0.05, "truncated": 0.05}
    schedule = FaultSchedule(seed=11, rates=rates, retry_after={3: 0.3}, slow_delay=3.0)
    with FakeServer(schedule) as srv:
        d = design_dict(tmp_path, srv.base_url)
        d["llm"]["max_attempts"] = 2  # so that some items do run out of attempts
        d["llm"]["max_failed_fraction"] = 1.0  # and the stage still finishes, counting them
        d["exercises"][0]["seeds"]["repeat"] = 5  # 100 items
        # a few items the server refuses outright (400): dropped at once, with that reason
        d["exercises"][0]["prompt"][0]["content"] += "{% if index % 25 == 7 %} [[status=400]]{% endif %}"
        result, rows = generate(d, tmp_path / "runs")
        served = srv.served()
    s = result.manifest["exercises"]["rephrase"]
    dropped = sum(s["rejected"].values())
    assert s["items"] == 100 and s["records"] == len(rows) and s["records"] + dropped == 100
    assert s["rejected"]["request:bad_request"] == 4
    assert dropped > 4 and all(k.startswith("request:") for k in s["rejected"])
    assert all(served[k] > 0 for k in rates), served
    lines = (result.dir / "rejected-rephrase.jsonl").read_text().splitlines()
    assert len(lines) == dropped and all(json.loads(x)["message"] for x in lines)
    indexes = [json.loads(r["params"])["index"] for r in rows] + [json.loads(x)["index"] for x in lines]
    assert sorted(indexes) == list(range(100))


def test_design_errors_name_the_field(tmp_path):
    url = "http://127.0.0.1:9/v1"
    bad = design_dict(tmp_path, url, prompt="{{ ''.__class__ }}")
    with pytest.raises(DesignError, match=r"exercises\[0\]\.prompt: .*unsafe expression .*__class__"):
        parse_design(bad)
    bad = design_dict(tmp_path, url, prompt="{{ stlye }}")
    with pytest.raises(DesignError, match=r"exercises\[0\]\.prompt: undefined variable 'stlye'"):
        parse_design(bad)
    bad = design_dict(tmp_path, url, seeds={"corpus": "nope"})
    with pytest.raises(DesignError, match=r"exercises\[0\]\.seeds\.corpus: 'nope' is not in `corpora`"):
        parse_design(bad)
    bad = design_dict(tmp_path, url, endpoint="elsewhere")
    with pytest.raises(DesignError, match=r"exercises\[0\]\.endpoint: no endpoint named 'elsewhere'"):
        parse_design(bad)
    bad = design_dict(
        tmp_path, url, samplers={"style": {"kind": "categorical", "values": ["a"], "weights": [1, 2]}}
    )
    with pytest.raises(DesignError, match=r"exercises\[0\]\.samplers\.style\.weights"):
        parse_design(bad)
    bad = design_dict(tmp_path, url, verify=["no_such_module:check"])
    with pytest.raises(DesignError, match=r"exercises\[0\]\.verify\[0\]: .*no module named 'no_such_module'"):
        parse_design(bad)
    bad = design_dict(tmp_path, url)
    bad["llm"]["endpoints"][0].pop("model")
    with pytest.raises(DesignError, match=r"llm\.endpoints\[0\]: `model` is required with `url`"):
        parse_design(bad)
    bad = design_dict(tmp_path, url)
    del bad["llm"]
    with pytest.raises(
        DesignError, match=r"exercises\[0\]\.kind: an `llm` exercise needs the design's `llm`"
    ):
        parse_design(bad)


def test_sandbox_error_also_at_render_time(tmp_path):
    """What only shows at render time (an attribute held in a variable) is a clear per-item rejection."""
    with FakeServer() as srv:
        d = design_dict(
            tmp_path,
            srv.base_url,
            samplers={"name": {"kind": "categorical", "values": ["__class__"]}},
            prompt="{{ (seed.text|attr(name)) }}",
        )
        result, rows = generate(d, tmp_path / "runs")
        assert rows == [] and len(srv.records) == 0
    s = result.manifest["exercises"]["rephrase"]
    assert s["rejected"] == {"template": 40}
    first = json.loads((result.dir / "rejected-rephrase.jsonl").read_text().splitlines()[0])
    assert "sandbox" in first["message"]


# ------------------------------------------------------------------------------------ kill -9 resume

N_ITEMS = 160


def test_kill9_mid_generation_resumes_without_loss_duplicates_or_resending(tmp_path):
    with FakeServer(latency=0.03) as srv:
        d = design_dict(tmp_path, srv.base_url)
        d["exercises"][0]["seeds"]["repeat"] = N_ITEMS // 20
        d["llm"]["endpoints"][0]["max_concurrency"] = 8
        design_file = tmp_path / "design.yaml"
        design_file.write_text(yaml.safe_dump(d))
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        cmd = [
            sys.executable,
            "-m",
            "pretrainlab",
            "generate",
            str(design_file),
            "--runs",
            str(tmp_path / "killed"),
        ]
        journal = tmp_path / "killed" / "llm-test" / "llm-cache" / JOURNAL_NAME
        child = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if journal.exists() and journal.read_text().count("\n") >= 40:
                    break
                time.sleep(0.02)
            child.send_signal(signal.SIGKILL)
        finally:
            child.wait(10)
        assert child.returncode == -signal.SIGKILL
        at_kill = [json.loads(line) for line in journal.read_text().splitlines()]
        answered_items = {int(entry["id"].split(":")[0]) for entry in at_kill}
        assert 40 <= len(answered_items) < N_ITEMS, "the kill should land mid-run"
        before = len(srv.records)

        subprocess.run(cmd, env=env, check=True, capture_output=True)
        resumed_tags = [r.tag for r in srv.records[before:]]
        uninterrupted = tmp_path / "clean"
        subprocess.run([*cmd[:-1], str(uninterrupted)], env=env, check=True, capture_output=True)

    # nothing answered before the kill is sent again: the resumed run sends exactly the rest
    resumed = [int(tag) for tag in resumed_tags]
    assert not set(resumed) & answered_items
    assert sorted(resumed) == sorted(set(range(N_ITEMS)) - answered_items)
    # (the only requests sent twice are those in flight at the kill: at most the client's window)
    sent_before = {int(r.tag) for r in srv.records[:before]}
    assert len(set(resumed) & sent_before) <= 16

    def records(runs: Path) -> list[dict]:
        (path,) = (runs / "llm-test" / "generate").glob("*/records-rephrase.parquet")
        return pq.read_table(path).to_pylist()

    a, b = records(tmp_path / "killed"), records(uninterrupted)
    # every item exactly once, in item order (ids are content hashes: equal texts share one)
    assert [json.loads(r["params"])["index"] for r in a] == list(range(N_ITEMS))
    assert [r["id"] for r in a] == [r["id"] for r in b]
    assert [(r["text"], r["params"], r["source_id"]) for r in a] == [
        (r["text"], r["params"], r["source_id"]) for r in b
    ]


# ------------------------------------------------------------------ a real engine: transformers serve

TOPICS = ["tides", "bees", "glass", "maps"]


def names_a_topic(fields) -> tuple[bool, str | None]:
    """The verifier of the serve test: the sampled topic is one we offered, and the reply has text."""
    if fields["topic"] not in TOPICS:
        return False, f"unknown topic {fields['topic']!r}"
    return bool(fields["text"].strip()), "empty reply"


def test_transformers_serve_generates_200_records_with_provenance(tmp_path, hf_model):
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    d = design_dict(
        tmp_path,
        "unused",
        seeds={"corpus": "wiki", "repeat": 10},  # 20 seeds
        samplers={
            "topic": {"kind": "categorical", "values": TOPICS, "weights": [4, 3, 2, 1]},
            "length": {"kind": "int", "low": 2, "high": 9},
        },
        prompt=[{"role": "user", "content": "About {{ topic }} in {{ length }} words: {{ seed.text }}"}],
        parser={"kind": "regex", "pattern": r"(?s)^\s*(\S.*?)\s*$"},
        generation={"max_tokens": 8, "temperature": 1.0},
        verify=["tests.test_llm_exercise:names_a_topic"],
    )
    d["llm"]["endpoints"] = [{"name": "local", "serve": str(hf_model), "engine": "transformers"}]
    d["llm"]["timeout_s"] = 60
    result, rows = generate(d, tmp_path / "runs")

    s = result.manifest["exercises"]["rephrase"]
    assert s["items"] == 200
    assert s["records"] + sum(s["rejected"].values()) == 200
    assert len(rows) == s["records"] >= 190, s["rejected"]  # a random model may say nothing at all
    model = str(hf_model.resolve())
    for r in rows:
        p, m = json.loads(r["params"]), json.loads(r["meta"])
        assert r["generator"] == f"llm:{model}" and r["source_id"].startswith("doc")
        assert r["source_license"] in ("CC-BY-4.0", "CC0-1.0")
        assert p["topic"] in TOPICS and 2 <= p["length"] <= 9 and p["seed"]["corpus"] == "wiki"
        assert m["usage"]["prompt_tokens"] > 0 and m["usage"]["completion_tokens"] > 0
        assert m["finish_reason"] in ("length", "stop") and m["steps"]["response"]["endpoint"] == "local"
        assert m["verdicts"]["tests.test_llm_exercise:names_a_topic"]["ok"]
    assert s["tokens"]["local"]["requests"] == 200
    # the engine was stopped with the stage
    log = (result.dir / "serve-local.log").read_text()
    assert "Uvicorn running" in log or "Application startup complete" in log


def test_engine_down_fails_the_stage_and_the_rerun_sends_only_what_failed(tmp_path, capsys):
    with FakeServer() as srv:
        d = design_dict(tmp_path, srv.base_url)
        d["llm"]["max_attempts"] = 1
        # items 3 and 4 hit a server error: 2 of 40 > 1%, so the stage fails, naming the cause
        d["exercises"][0]["prompt"][0]["content"] += "{% if index in (3, 4) %} [[status=503]]{% endif %}"
        with pytest.raises(StageError, match=r"2 of 40 items got no answer .*2 server_error.* sends only"):
            generate(d, tmp_path / "runs")
        assert len(srv.records) == 40
        d["exercises"][0]["prompt"][0]["content"] = d["exercises"][0]["prompt"][0]["content"].replace(
            "(3, 4)", "()"
        )
    with FakeServer() as srv:  # the engine is back (and the prompt of items 3, 4 no longer fails)
        d["llm"]["endpoints"][0]["url"] = srv.base_url
        result, rows = generate(d, tmp_path / "runs")
        # only the two items whose prompts changed are new requests; the other 38 come from the cache
        assert len(rows) == 40 and len(srv.records) == 2


def test_n_choices_structured_output_and_the_key_never_written(tmp_path, monkeypatch):
    secret = "sk-test-never-write-me"
    monkeypatch.setenv("FAKE_ENGINE_KEY", secret)
    seen = []

    def reply(req):
        seen.append(req)
        return json.dumps({"answer": 7})

    schema = {"type": "object", "required": ["answer"], "properties": {"answer": {"type": "integer"}}}
    with FakeServer(reply=reply, expect_key=secret) as srv:
        d = design_dict(
            tmp_path,
            srv.base_url,
            parser={"kind": "json", "schema": schema},
            structured=True,
            generation={"n": 2, "max_tokens": 32},
            text="The answer is {{ response.answer }}.",
        )
        d["llm"]["endpoints"][0]["api_key_env"] = "FAKE_ENGINE_KEY"
        result, rows = generate(d, tmp_path / "runs")
    # n = 2: two candidate records per item, the second marked choice 1
    assert len(rows) == 80 and sum(json.loads(r["params"]).get("choice") == 1 for r in rows) == 40
    assert seen[0]["n"] == 2 and seen[0]["response_format"]["type"] == "json_schema"
    assert all(r.authorized for r in srv.records) and len(srv.records) == 40
    for f in (tmp_path / "runs").rglob("*"):
        if f.is_file():
            assert secret.encode() not in f.read_bytes(), f

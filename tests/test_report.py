"""The HTML report: self-contained, escaped, every section present, and it renders in a real browser."""

from __future__ import annotations

import ast
import inspect
import json
import math
import os
import re
import shutil
import struct
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from pretrainlab.report.html import HARNESS_SECTION, SECTIONS, render_report

HOSTILE = '<script>window.__pwned = 1</script><img src="http://evil.example/x.png">'
CAPABILITIES = ("person-facts", "multi-hop", "arithmetic")


def _design() -> dict[str, Any]:
    return {
        "name": "playground",
        "seed": 1234,
        "budget": {"train_tokens": 8_000_000},
        "exercises": [
            {
                "kind": "biographies",
                "capability": "person-facts",
                "share": 0.6,
                "people": 500,
                "multiplicity": 5,
                "permute": True,
                "qa_fraction": 0.5,
            },
            {"kind": "khop", "capability": "multi-hop", "share": 0.2, "symbols": [8, 16], "max_hops": 4},
            {"kind": "modarith", "capability": "arithmetic", "share": 0.2, "modulus": 23, "max_ops": 4},
        ],
        "tokenizer": {"kind": "bpe", "vocab": 4096},
        "model": {"preset": "llama", "layers": 4, "width": 128, "heads": 4},
        "train": {
            "seq_len": 128,
            "batch": 64,
            "lr": 2.0e-3,
            "phases": [
                {"name": "pretrain", "steps": 900},
                {"name": "qa", "steps": 480, "exercises": ["person-facts"], "lr_scale": 0.15},
            ],
        },
        "eval": {"every": 100},
    }


def _metrics() -> list[dict[str, Any]]:
    """Loss that falls, exact match that rises in a sigmoid (held-out later than seen), per-hop groups."""
    rows: list[dict[str, Any]] = []
    tokens_per_step = 128 * 64
    for step in range(0, 1381, 10):
        tokens = step * tokens_per_step
        rows.append(
            {
                "kind": "train",
                "step": step,
                "phase": "pretrain" if step < 900 else "qa",
                "tokens": tokens,
                "flops": 6 * 1.2e6 * tokens,
                "loss": 1.2 + 7 * math.exp(-step / 150) + 0.05 * math.sin(step),
                "lr": 2e-3,
                "tokens_per_s": 41_000.0,
            }
        )
    for step in range(0, 1381, 100):
        tokens = step * tokens_per_step

        def rise(mid: float, top: float = 1.0, s: int = step) -> float:
            return top / (1 + math.exp(-(s - mid) / 80))

        probes: list[tuple[str, str, str, float, str | None]] = [
            ("person-facts", "seen", "exact_match", rise(500), None),
            ("person-facts", "heldout", "exact_match", rise(1100, 0.7), None),
            ("person-facts", "seen", "answer_logprob", -6 + 5.5 * rise(500), None),
            ("person-facts", "heldout", "answer_logprob", -6 + 4 * rise(1100), None),
            ("multi-hop", "all", "exact_match", rise(700, 0.8), None),
            ("multi-hop", "all", "answer_logprob", -4 + 3 * rise(700), None),
            *(("multi-hop", "all", "exact_match", rise(200 + 300 * k), f"k={k}") for k in (1, 2, 3, 4)),
            ("arithmetic", "all", "exact_match", rise(800, 0.6), None),
            ("arithmetic", "all", "choice_acc", 0.25 + 0.7 * rise(600), None),
        ]
        rows += [
            {
                "kind": "probe",
                "step": step,
                "tokens": tokens,
                "flops": 6 * 1.2e6 * tokens,
                "capability": c,
                "split": split,
                "group": group,
                "metric": metric,
                "value": value,
                "n": 200,
            }
            for c, split, metric, value, group in probes
        ]
    return rows


def _inputs() -> dict[str, Any]:
    return {
        "title": "pretrainlab report: playground <v1>",
        "design": _design(),
        "data_stats": [
            {
                "exercise": "biographies",
                "capability": "person-facts",
                "records": 4500,
                "removed": 12,
                "bytes": 1_234_567,
                "tokens": 4_800_000,
                "share_planned": 0.6,
                "share_actual": 0.61,
                "distinct_2": 0.412,
                "compression_ratio": 3.1,
            },
            {
                "exercise": "khop",
                "capability": "multi-hop",
                "records": 20000,
                "removed": 0,
                "bytes": 456_789,
                "tokens": 1_600_000,
                "share_planned": 0.2,
                "share_actual": 0.19,
            },
            {
                "exercise": "modarith",
                "capability": "arithmetic",
                "records": 30000,
                "removed": 3,
                "bytes": 345_678,
                "tokens": 1_600_000,
                "share_planned": 0.2,
                "share_actual": 0.2,
                "distinct_2": 0.05,
                "compression_ratio": 5.4,
            },
        ],
        "samples": {
            "biographies": ["Ada Lovelace was born on 10 December 1815 in London.", HOSTILE],
            "khop": ["a -> b\nb -> c\nQ: a 2 hops? A: c"],
            "modarith": [],
        },
        "metrics": _metrics(),
        "ledger": [
            {
                "stage": "generate",
                "side": "data",
                "wall_s": 12.5,
                "cpu_s": 80.1,
                "tokens": 8_000_000,
                "flops": 0,
            },
            {
                "stage": "curate",
                "side": "data",
                "wall_s": 4.2,
                "cpu_s": 20.0,
                "tokens": 8_000_000,
                "flops": 0,
            },
            {
                "stage": "tokenize",
                "side": "data",
                "wall_s": 6.0,
                "cpu_s": 6.0,
                "tokens": 8_000_000,
                "flops": 0,
            },
            {
                "stage": "train",
                "side": "training",
                "wall_s": 412.0,
                "cpu_s": 3100.0,
                "tokens": 11_304_960,
                "flops": 8.1e13,
                "device_hours": 0.11,
                "note": "1 × cpu",
            },
        ],
        "generations": [
            {
                "prompt": "Q: Where was Ada Lovelace born? A:",
                "answer": "London",
                "prediction": "London",
                "correct": True,
            },
            {"prompt": "Q: 3 + 4 * 5 mod 23 = ", "answer": "0", "prediction": "<7>", "correct": False},
        ],
        "final_scores": [
            {"capability": "person-facts", "split": "seen", "metric": "exact_match", "value": 0.98},
            {"capability": "person-facts", "split": "heldout", "metric": "exact_match", "value": 0.62},
            {"capability": "multi-hop", "split": "all", "metric": "exact_match", "value": 0.78},
            {"capability": "arithmetic", "split": "all", "metric": "answer_logprob", "value": -1.234},
        ],
    }


class _Parser(HTMLParser):
    """Collects the tags of a page and every URL its src/href attributes point at."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: set[str] = set()
        self.refs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.refs += [value or "" for name, value in attrs if name in ("src", "href")]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return render_report(tmp_path_factory.mktemp("report") / "out" / "report.html", **_inputs())


def test_report_is_complete_and_self_contained(report: Path) -> None:
    text = report.read_text(encoding="utf-8")
    assert report.exists() and report.stat().st_size < 2_000_000
    for sid, _ in SECTIONS:
        assert f'<section id="{sid}">' in text
    parser = _Parser()
    parser.feed(text)
    assert parser.refs and all(ref.startswith(("data:", "#")) for ref in parser.refs), parser.refs
    assert "script" not in parser.tags and "link" not in parser.tags
    assert not re.search(r"@import|url\(", text)
    assert "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in text
    assert "playground &lt;v1&gt;" in text and "&lt;7&gt;" in text
    for capability in CAPABILITIES:
        assert f'data-capability="{capability}" data-kind="emergence"' in text
    assert 'data-capability="multi-hop" data-kind="groups"' in text
    assert "4,500" in text and "61.0%" in text and "1.2 MB" in text and "8.1e13" in text
    assert "Generation vs training" in text
    assert "98.0%" in text and "-1.234" in text


def test_every_section_renders_empty(tmp_path: Path) -> None:
    path = render_report(
        tmp_path / "report.html",
        title="empty",
        design={},
        data_stats=[],
        samples={},
        metrics=[],
        ledger=[],
        generations=[],
    )
    text = path.read_text(encoding="utf-8")
    for sid, _ in SECTIONS:
        assert f'<section id="{sid}">' in text
    for message in (
        "No training run yet",
        "No probe evaluations yet",
        "No evaluation yet",
        "No design given",
        "No data generated yet",
        "No sample records yet",
        "No sample generations yet",
        "No stage has run yet",
    ):
        assert message in text
    assert "<img" not in text


def test_headline_falls_back_to_last_probe_values(tmp_path: Path) -> None:
    inputs = _inputs() | {"final_scores": None}
    text = render_report(tmp_path / "report.html", **inputs).read_text(encoding="utf-8")
    summary = text.split('<section id="summary">')[1].split("</section>")[0]
    assert "Final capability scores" in summary and "choice accuracy" in summary and "heldout" in summary


def _harness_comparison() -> list[dict[str, Any]]:
    """In-loop beside harness values, as the collecting side hands them over: same, differs, no in-loop."""
    row = {"group": None, "metric": "exact_match", "step": 1300, "n": 200}
    return [
        row | {"capability": "person-facts", "split": "seen", "in_loop": 0.98, "harness": 0.98},
        row | {"capability": "person-facts", "split": "heldout", "in_loop": 0.62, "harness": 0.6},
        row | {"capability": "arithmetic", "split": "all", "in_loop": None, "harness": 0.5},
    ]


def test_harness_section_shows_the_comparison_it_is_given(tmp_path: Path) -> None:
    summary = {
        "lm_eval_version": "0.4.9",
        "results": "harness/results.json",
        "per_probe": {
            "compared": 5,
            "disagree": 2,
            "disagreements": [
                {
                    "prompt": HOSTILE,
                    "answer": "a",
                    "harness_output": "b",
                    "in_loop_prediction": "a",
                    "metric": "exact_match",
                    "harness": 0,
                    "in_loop": 1,
                }
            ],
        },
    }
    text = render_report(
        tmp_path / "report.html", **_inputs(), harness=summary, harness_comparison=_harness_comparison()
    ).read_text(encoding="utf-8")
    order = [sid for sid, _ in SECTIONS]
    at = order.index("capabilities") + 1
    assert re.findall(r'<section id="([^"]+)">', text) == [*order[:at], HARNESS_SECTION[0], *order[at:]]
    assert f'<a href="#harness">{HARNESS_SECTION[1]}</a>' in text
    section = text.split('<section id="harness">')[1].split("</section>")[0]
    assert "step 1,300" in section and "lm-evaluation-harness 0.4.9 on the same probes" in section
    assert "✓ same" in section and "✗ differs" in section and "62.0%" in section and "60.0%" in section
    assert "3 of 5 verdicts agree, 2 differ." in section and "harness/results.json" in section
    assert "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in section and "<script>" not in text


def test_harness_section_only_with_harness_data(tmp_path: Path) -> None:
    plain = render_report(tmp_path / "plain.html", **_inputs()).read_text(encoding="utf-8")
    assert '<section id="harness">' not in plain and "#harness" not in plain
    empty_path = render_report(tmp_path / "empty.html", **_inputs(), harness_comparison=[])
    empty = empty_path.read_text(encoding="utf-8")
    assert '<section id="harness">' in empty
    assert "No harness results at a step the in-loop eval scored." in empty


def test_preparing_and_rendering_read_data_only() -> None:
    """Only build.py (the collecting side) imports the rest of pretrainlab: the page is made from data
    (the renderer writes it through the run layout's atomic write)."""
    folder = Path(inspect.getfile(render_report)).parent
    assert (folder / "report.css").is_file() and list((folder / "templates").glob("*.jinja"))
    for path in folder.glob("*.py"):
        if path.name == "build.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        modules = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        modules += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        outside = [m for m in modules if m.split(".")[0] == "pretrainlab" and m.split(".")[1:2] != ["report"]]
        # `from pretrainlab import __version__`, and the atomic write
        assert set(outside) <= {"pretrainlab", "pretrainlab.runs"}, (path.name, outside)


def _chromium() -> str:
    """Path of a Chromium binary; skipped locally without one, a failure under CI."""
    for name in ("chromium", "chromium-browser", "/usr/bin/chromium"):
        found = shutil.which(name)
        if found:
            return found
    if os.environ.get("CI"):
        pytest.fail("CI is set but chromium is not installed (.ci/run installs it with apt)")
    pytest.skip("chromium is not installed")


def _run_chromium(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        "--window-size=1200,3000",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        f"--user-data-dir={profile}",
    ]
    return subprocess.run([binary, *flags, *args], capture_output=True, text=True, timeout=90, check=True)


CHECK_SCRIPT = """<script>
window.addEventListener("load", function () {
  var root = document.documentElement, imgs = Array.from(document.images), caps = {};
  var decoded = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; });
  decoded.forEach(function (i) {
    if (i.dataset.kind === "emergence") caps[i.dataset.capability] = (caps[i.dataset.capability] || 0) + 1;
  });
  var pre = document.createElement("pre");
  pre.id = "check";
  pre.textContent = JSON.stringify({total: imgs.length, decoded: decoded.length, capabilities: caps,
    pwned: window.__pwned === 1, overflow: root.scrollWidth > root.clientWidth,
    clipped: Array.from(document.querySelectorAll(".scroll")).filter(function (d) {
      return d.scrollWidth > d.clientWidth;
    }).length,
    sections: Array.from(document.querySelectorAll("section h2")).map(function (h) {
      return h.textContent;
    })});
  document.body.appendChild(pre);
});
</script>"""


def test_report_renders_in_headless_chromium(report: Path, tmp_path: Path) -> None:
    binary = _chromium()
    probe = tmp_path / "check.html"
    probe.write_text(
        report.read_text(encoding="utf-8").replace("</body>", CHECK_SCRIPT + "</body>"), encoding="utf-8"
    )
    dom = _run_chromium(
        binary, tmp_path / "profile-dom", "--virtual-time-budget=3000", "--dump-dom", probe.as_uri()
    ).stdout
    found = re.search(r'<pre id="check">(.*?)</pre>', dom, flags=re.DOTALL)
    assert found, dom[-2000:]
    check = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert check["total"] >= 1 + len(CAPABILITIES) and check["decoded"] == check["total"], check
    assert all(check["capabilities"].get(c, 0) >= 1 for c in CAPABILITIES), check
    assert not check["pwned"] and not check["overflow"] and not check["clipped"], check
    assert check["sections"] == [name for _, name in SECTIONS]

    shot = tmp_path / "report.png"
    _run_chromium(binary, tmp_path / "profile-shot", f"--screenshot={shot}", report.as_uri())
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    assert (width, height) == (1200, 3000)
    assert len(png) > 100_000

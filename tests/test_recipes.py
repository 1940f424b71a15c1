"""The recipe library (examples/llm/*.yaml): every design validates, and its generate stage runs end to end
against a scripted loopback server that answers each recipe's prompts in the format the recipe asks for."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from pretrainlab.design import load_design, parse_design

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted((ROOT / "examples" / "llm").glob("*.yaml"))
NAMES = [p.stem for p in RECIPES]
SEEDED = {
    "rephrase-wikipedia",
    "diverse-qa",
    "distill",
    "knowledge-list",
    "textbook",
    "synth-reasoning",
    "chunk-rephrase",
}
EXPECTED = SEEDED | {"tinystories", "arithmetic-verified"}


# ------------------------------------------------------------------------------- the scripted model


def _after(text: str, marker: str) -> str:
    """What follows ``marker`` in ``text``."""
    return text.split(marker, 1)[1].strip()


def _sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+", " ".join(text.split())) if s]


def _solve(problem: str) -> int:
    a, b = (int(x) for x in re.findall(r"-?\d+", problem)[:2])
    if "in all" in problem:
        return a + b
    if "left" in problem:
        return a - b
    return a * b


def scripted(req: dict) -> str:
    """A plausible, correctly formatted reply for each recipe's prompt (detected from its wording).
    Arithmetic answers are deliberately wrong when a + b is a multiple of 5."""
    last = req["messages"][-1]["content"]
    if "## Criteria" in last:  # the LLM judge
        return "The text is accurate, clear and suited to its audience.\nScore: 8"
    if "Here is a paraphrased version:" in last:  # rephrase-wikipedia
        body = _after(last, "Passage:")
        return "Here is a paraphrased version:\n" + " ".join(_sentences(body))
    if "Reply with a JSON array only" in last:  # diverse-qa
        n = int(re.search(r"ask (\d+) questions", last).group(1))
        title = re.search(r"Text \((.+?)\):", last).group(1)
        facts = _sentences(_after(last, f"Text ({title}):"))
        pairs = [
            {
                "question": f"According to the article on {title.lower()}, what is fact {i + 1}?",
                "answer": facts[i],
            }
            for i in range(min(n, len(facts)))
        ]
        return "Here are the pairs:\n```json\n" + json.dumps(pairs, indent=1) + "\n```"
    if 'Begin your answer with "Condensed text:"' in last:  # distill
        facts = _sentences(_after(last, "Text:"))
        return "Condensed text: " + " ".join(facts[: max(3, len(facts) // 2)])
    if 'each starting with "- "' in last:  # knowledge-list
        facts = _sentences(_after(last, "):"))
        return (
            "Here is the list you asked for:\n\n"
            + "\n".join(f"- {s}" for s in facts[:6])
            + "\n\nHope it helps!"
        )
    if "that teaches the topic of this extract" in last:  # textbook
        m = re.search(r"Write (.+?) for (.+?) that teaches", last)
        title = re.search(r'titled "(.+?)"', last).group(1)
        return (
            f"Have you ever wondered about {title.lower()}? In this {m.group(1).split(' ', 1)[1]} for "
            f"{m.group(2)} we look at how it works, step by step, with examples from everyday life."
        )
    if "The story should use the verb" in last:  # tinystories
        verb, noun, adj = re.search(
            r'verb "(\w+)", the noun "(\w+)" and the adjective "(\w+)"', last
        ).groups()
        return (
            f"Once there was a {adj} cat named Tom. Tom liked to {verb} every day.\n\n"
            f'One day Tom found a {noun}. "Look!" he said to his mom. "A {noun}!"\n\n'
            f"Mom smiled. They played with the {noun} until the sun went down."
        )
    if 'starting with "Question:"' in last:  # synth-reasoning: query
        title = last.split("\n", 1)[0].removeprefix("Article: ")
        return f"Question: Why does the article on {title.lower()} say this matters?"
    if "Write only the reasoning" in last:  # synth-reasoning: reasoning
        facts = _sentences(last.split("\n", 1)[1].split("\n\nQuestion:")[0])[:2]
        return f"1. The source says: {facts[0]}\n2. It also says: {facts[1]}\n3. Together they explain why."
    if "write the final answer to the question" in last:  # synth-reasoning: answer
        return (
            "It matters because the two facts above combine: one sets up the cause and the other its effect."
        )
    if "Rewrite this part" in last:  # chunk-rephrase
        m = re.search(r":\n\n(.*?)\n\nRewrite this part", last, re.DOTALL)
        return " ".join(_sentences(m.group(1)))
    if "Write a short word problem" in last:  # arithmetic-verified: problem
        a, op, b = re.search(r"result of (-?\d+) ([-+*]) (-?\d+)", last).groups()
        return {
            "+": f"Sam picked {a} apples and Ana picked {b} apples. How many apples are there in all?",
            "-": f"A shelf held {a} books and {b} of them were lent out. How many books are left?",
            "*": f"There are {a} boxes with {b} pencils each. How many pencils are there?",
        }[op]
    if "Answer: N" in last:  # arithmetic-verified: answer
        problem = last.split("\n\n", 1)[1]
        a, b = (int(x) for x in re.findall(r"-?\d+", problem)[:2])
        result = _solve(problem) + (1 if (a + b) % 5 == 0 else 0)
        return f"We combine {a} and {b}.\nThe result is {result:,}.\nAnswer: {result:,}"
    raise AssertionError(f"no scripted reply for prompt: {last[:200]!r}")


# ------------------------------------------------------------------------------------------- tests


def test_every_recipe_is_here():
    assert set(NAMES) == EXPECTED


@pytest.mark.parametrize("path", RECIPES, ids=NAMES)
def test_recipe_validates(path):
    design = load_design(path)
    (ex,) = design.exercises
    assert ex.kind == "llm"
    assert design.llm.endpoints[0].url == "http://127.0.0.1:8000/v1" and design.llm.endpoints[0].model
    text = path.read_text()
    assert (
        text.startswith("# Recipe:")
        and "# Source:" in text
        and f"pretrainlab generate examples/llm/{path.name}" in text
    )
    assert "serve: PATH/TO/HF_MODEL_FOLDER" in text


def with_endpoint(path: Path, url: str):
    data = yaml.safe_load(path.read_text())
    ep = data["llm"]["endpoints"][0]
    data["llm"]["endpoints"] = [{"name": ep["name"], "url": url, "model": ep["model"]}]
    return parse_design(data, str(path), base_dir=path.parent)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Every recipe's generate stage, run once against one scripted server."""
    pytest.importorskip("openai")
    from pretrainlab.engines.fake_server import FakeServer
    from pretrainlab.pipeline import Pipeline
    from pretrainlab.records import read_rows

    out = {}
    root = tmp_path_factory.mktemp("recipes")
    with FakeServer(reply=scripted) as srv:
        for path in RECIPES:
            design = with_endpoint(path, srv.base_url)
            result = Pipeline(design, root / "runs").run_stage("generate")
            key = design.exercises[0].key
            rows = list(read_rows(result.dir / f"records-{key}.parquet"))
            out[path.stem] = (design, result.manifest["exercises"][key], rows)
    return out


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_recipe_generates(runs, name):
    design, summary, rows = runs[name]
    assert summary["records"] == len(rows)
    assert len({r["id"] for r in rows}) == len(rows)  # ids name records, even where texts coincide
    if name == "arithmetic-verified":
        assert summary["rejected"]["verify"] > 0 and set(summary["rejected"]) == {"verify"}
        assert summary["records"] + summary["rejected"]["verify"] == summary["items"] == 50
    else:  # well-formed replies: every item is a record
        assert summary["rejected"] == {} and summary["records"] == summary["items"] > 0
    for r in rows:
        assert r["text"].strip()
        if name in SEEDED:
            assert r["source_id"] and r["source_license"] == "CC0-1.0"
        else:
            assert r["source_id"] is None


def test_recipe_outputs(runs):
    """What each recipe's parser and `text` template make of the scripted replies."""
    texts = {name: [r["text"] for r in rows] for name, (_, _, rows) in runs.items()}
    assert len(texts["rephrase-wikipedia"]) == 12  # the 12 seed articles
    assert not any("paraphrased version" in t for t in texts["rephrase-wikipedia"])  # lead-in stripped
    assert all(t.startswith("Question: ") and "\nAnswer: " in t for t in texts["diverse-qa"])
    assert not any("Condensed text" in t for t in texts["distill"])
    for t in texts["knowledge-list"]:
        head, *bullets = t.splitlines()
        assert head.endswith(": key facts") and len(bullets) >= 3 and all(b.startswith("- ") for b in bullets)
    assert all(
        t.startswith("Question: ") and "\n\nReasoning:\n1. " in t and "\n\nAnswer: " in t
        for t in texts["synth-reasoning"]
    )

    # tinystories: the sampled words are in the story (what a user's own verifier would check)
    for r in runs["tinystories"][2]:
        p = json.loads(r["params"])
        assert all(p[k] in r["text"] for k in ("verb", "noun", "adjective"))

    # chunk-rephrase: the four long articles are cut in two, the others stay whole
    ids = [r["source_id"] for r in runs["chunk-rephrase"][2]]
    assert len(ids) == 16 and sum("#" in i for i in ids) == 8 and "tides#1" in ids

    # the judge scored every record of the judged recipes
    for name in ("textbook", "chunk-rephrase"):
        for r in runs[name][2]:
            assert json.loads(r["meta"])["verdicts"]["judge"]["score"] == 8

    # arithmetic: every kept answer is right; the verifier's verdict is on the record
    for r in runs["arithmetic-verified"][2]:
        p = json.loads(r["params"])
        expected = {"+": p["a"] + p["b"], "-": p["a"] - p["b"], "*": p["a"] * p["b"]}[p["op"]]
        assert int(r["text"].rsplit("Answer: ", 1)[1].replace(",", "")) == expected
        assert json.loads(r["meta"])["verdicts"]["pretrainlab.llm.verifiers:arithmetic_answer"]["ok"]

"""Pure building blocks of the `llm` exercise kind: prompts, samplers, parsers, verifiers (no network)."""

from __future__ import annotations

import random
import sys
import types
from collections import Counter

import pytest

from pretrainlab.llm.parsers import ParseError, ParserSpecError, parse, response_format
from pretrainlab.llm.prompts import (
    PromptTemplate,
    TemplateError,
    TemplateSecurityError,
    TemplateSyntaxError,
    TemplateUndefinedError,
)
from pretrainlab.llm.samplers import SamplerError, build_samplers, item_rng, sample_all
from pretrainlab.llm.verifiers import (
    VerifierError,
    arithmetic_answer,
    judge_prompt,
    load_verifier,
    parse_judge_score,
    run_verifier,
)

# ---------------------------------------------------------------- prompts


@pytest.mark.parametrize(
    "source, expr",
    [
        ("{{ ''.__class__ }}", "''.__class__"),
        ("{{ x.__globals__ }}", "x.__globals__"),
        ("{{ cycler.__init__ }}", "cycler.__init__"),
        ("{{ lipsum.__globals__['os'] }}", "lipsum.__globals__"),
        ("{{ x['__dict__'] }}", "x['__dict__']"),
        ("{{ x|attr('__class__') }}", "x|attr('__class__')"),
        ("{{ x._private }}", "x._private"),
        ("{% for c in ().__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}", "__subclasses__"),
        ("{% set g = self.__init__ %}{{ g }}", "self.__init__"),
    ],
)
def test_sandbox_escape_rejected_at_compile(source, expr):
    with pytest.raises(TemplateSecurityError) as ei:
        PromptTemplate(source, name="evil")
    assert isinstance(ei.value, TemplateError)
    assert ei.value.template == "evil"
    assert expr in ei.value.expression
    assert "evil" in str(ei.value) and expr in str(ei.value)


def test_sandbox_escape_in_chat_message_names_the_message():
    with pytest.raises(TemplateSecurityError, match=r"'chat\.messages\[1\]'.*x\.__class__"):
        PromptTemplate(
            [{"role": "system", "content": "hi"}, {"role": "user", "content": "{{ x.__class__ }}"}],
            name="chat",
        )


@pytest.mark.parametrize(
    "source, ctx",
    [
        ("{{ x|attr(n) }}", {"x": "a", "n": "__class__"}),  # attribute name only known at render time
        ("{{ '{0.__class__}'.format(x) }}", {"x": 1}),  # str.format field
        ("{{ x[n] }}", {"x": "a", "n": "__class__"}),
        ("{{ x.append(1) }}", {"x": [1]}),  # immutable sandbox: no mutating context data
    ],
)
def test_sandbox_escape_rejected_at_render(source, ctx):
    t = PromptTemplate(source, name="late")
    with pytest.raises(TemplateSecurityError, match="'late'.*blocked by the sandbox"):
        t.render(ctx)


def test_render_completion_and_chat():
    t = PromptTemplate("Rewrite for {{ audience }}:\n{{ doc }}\n", name="c")
    assert t.kind == "completion" and t.variables == {"audience", "doc"}
    assert t.render({"audience": "kids", "doc": "D"}) == "Rewrite for kids:\nD\n"

    chat = PromptTemplate.from_spec(
        {
            "messages": [
                {"role": "system", "content": "You write for {{ audience }}."},
                {"role": "user", "content": "{% for w in words %}{{ w|upper }} {% endfor %}<{{ doc }}>"},
            ]
        },
        name="chat",
    )
    assert chat.kind == "chat" and chat.variables == {"audience", "words", "doc"}
    assert chat.render({"audience": "experts", "words": ["a", "b"], "doc": "<b>&"}) == [
        {"role": "system", "content": "You write for experts."},
        {"role": "user", "content": "A B <<b>&>"},  # no autoescaping
    ]


def test_strict_undefined_names_variable_and_known():
    t = PromptTemplate("{{ doc }} for {{ audiance }}", name="typo")
    with pytest.raises(TemplateUndefinedError) as ei:
        t.render({"doc": "D", "audience": "kids"})
    assert ei.value.variable == "audiance"
    assert "undefined variable 'audiance' (known variables: audience, doc)" in str(ei.value)
    with pytest.raises(TemplateUndefinedError, match="has no attribute 'title'"):
        PromptTemplate("{{ doc.title }}").render({"doc": {}})


def test_template_syntax_and_shape_errors():
    with pytest.raises(TemplateSyntaxError, match="'bad'.*line 1"):
        PromptTemplate("{{ x ", name="bad")
    with pytest.raises(TemplateSyntaxError, match=r"messages\[0\].*role 'robot'"):
        PromptTemplate([{"role": "robot", "content": "x"}])
    with pytest.raises(TemplateError, match="render failed"):
        PromptTemplate("{{ range(10**9)|list }}").render({})


# ---------------------------------------------------------------- samplers

SPECS = {
    "audience": {"kind": "categorical", "values": ["child", "expert"], "weights": [3, 1]},
    "n": {"kind": "int", "low": 2, "high": 5},
    "temp": {"kind": "float", "low": 0.0, "high": 1.0, "round": 2},
    "topics": {"kind": "choice_list", "values": ["a", "b", "c", "d"], "k": 2},
    "seed_words": {"kind": "words", "vocabulary": ["red", "blue", "green", "gold"], "k": 3},
}


def test_sampler_determinism():
    samplers = build_samplers(SPECS)
    one = sample_all(samplers, item_rng(7, "rewrite", 0))
    assert one == sample_all(SPECS, item_rng(7, "rewrite", 0))  # raw specs or built samplers, same values
    assert set(one) == set(SPECS)
    assert 2 <= one["n"] <= 5 and 0 <= one["temp"] <= 1 and len(set(one["topics"])) == 2
    assert len(one["seed_words"].split()) == 3
    others = [sample_all(samplers, item_rng(7, "rewrite", i)) for i in range(1, 6)]
    assert any(o != one for o in others)
    assert (
        sample_all(samplers, item_rng(8, "rewrite", 0)) != one
        or sample_all(samplers, item_rng(7, "other", 0)) != one
    )
    # string-seeded: fixed across processes and machines
    assert item_rng(7, "rewrite", 0).random() == item_rng(7, "rewrite", 0).random()


def test_categorical_weights_honoured():
    samplers = build_samplers({"a": SPECS["audience"]})
    rng = random.Random(0)
    counts = Counter(sample_all(samplers, rng)["a"] for _ in range(10_000))
    assert 0.72 < counts["child"] / 10_000 < 0.78
    zero = build_samplers({"a": {"kind": "categorical", "values": ["x", "y"], "weights": [0, 1]}})
    assert {sample_all(zero, rng)["a"] for _ in range(200)} == {"y"}


@pytest.mark.parametrize(
    "spec, message",
    [
        (
            {"kind": "categorical", "values": ["a", "b"], "weights": [1, 2, 3]},
            "samplers.x.weights: 3 weights for 2 values",
        ),
        (
            {"kind": "categorical", "values": ["a"], "weights": [-1]},
            r"samplers.x.weights\[0\]: must be >= 0",
        ),
        ({"kind": "categorical", "values": []}, "samplers.x.values: list should have at least 1 item"),
        ({"kind": "categorical", "values": "abc"}, "samplers.x.values: input should be a valid list"),
        ({"kind": "int", "low": 5, "high": 1}, r"samplers.x.low: low \(5\) is greater than high \(1\)"),
        ({"kind": "int", "low": 1.5, "high": 3}, "samplers.x.low: input should be a valid integer"),
        ({"kind": "float", "low": 0}, "samplers.x.high: required field is missing"),
        ({"kind": "choice_list", "values": ["a", "b"], "k": 3}, "samplers.x.k: k=3 but only 2 values"),
        ({"kind": "choice_list", "values": ["a", "a"], "k": 1}, "samplers.x.values: values must be distinct"),
        ({"kind": "words", "vocabulary": ["a"], "k": 0}, "samplers.x.k: must be >= 1"),
        (
            {"kind": "words", "vocabulary": ["a", 3], "k": 1},
            r"samplers.x.vocabulary\[1\]: input should be a valid string",
        ),
        ({"kind": "gaussian"}, "samplers.x.kind: unknown sampler kind 'gaussian'"),
        ({"kind": "int", "low": 1, "high": 2, "step": 1}, "samplers.x.step: unknown key"),
    ],
)
def test_sampler_validation_paths(spec, message):
    with pytest.raises(SamplerError, match=message):
        build_samplers({"x": spec})


# ---------------------------------------------------------------- parsers


def test_plain_and_regex():
    assert parse("plain", "  hello \n") == "hello"
    with pytest.raises(ParseError) as ei:
        parse({"kind": "plain"}, "   ")
    assert ei.value.reason == "empty"
    spec = {"kind": "regex", "pattern": r"answer:\s*(?P<answer>-?\d+)", "flags": ["IGNORECASE"]}
    assert parse(spec, "Work...\nAnswer: 42\n") == "42"
    assert parse({**spec, "last": True}, "answer: 1\nanswer: 2") == "2"
    assert parse({"kind": "regex", "pattern": r"=\s*(\d+)"}, "3 + 4 = 7") == "7"  # group 1 by default
    with pytest.raises(ParseError, match="no_match: .* not found in reply 'no number here'") as ei:
        parse(spec, "no number here")
    assert ei.value.reason == "no_match"
    with pytest.raises(ParserSpecError, match="parser.pattern: invalid regular expression"):
        parse({"kind": "regex", "pattern": "("}, "x")
    with pytest.raises(ParserSpecError, match="parser.group: .*no group named 'ans'"):
        parse({"kind": "regex", "pattern": r"(?P<answer>\d)", "group": "ans"}, "1")


SCHEMA = {
    "type": "object",
    "properties": {
        "question": {"type": "string"},
        "answer": {"type": "integer"},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["question", "answer"],
}


def test_json_extraction():
    spec = {"kind": "json", "schema": SCHEMA}
    assert parse(spec, 'Sure! {"question": "q", "answer": 3} hope it helps {"x": 1}') == {
        "question": "q",
        "answer": 3,
    }
    fenced = 'Here:\n```json\n{"question": "q {braces}", "answer": 4, "tags": ["a"]}\n```\n'
    assert parse(spec, fenced) == {"question": "q {braces}", "answer": 4, "tags": ["a"]}
    assert parse("json", 'noise {not json} then {"a": [1, 2]}') == {"a": [1, 2]}
    assert parse({"kind": "json", "schema": {"type": "array"}}, "[1, 2]") == [1, 2]
    with pytest.raises(ParseError) as ei:
        parse(spec, "I cannot do that.")
    assert ei.value.reason == "no_json"
    with pytest.raises(ParseError, match="no_json: no complete JSON"):
        parse(spec, '{"question": "q", ')


def test_json_schema_violations():
    spec = {"kind": "json", "schema": SCHEMA}
    with pytest.raises(ParseError, match=r"schema: field answer: .*not of type 'integer'") as ei:
        parse(spec, '{"question": "q", "answer": "three"}')
    assert ei.value.reason == "schema"
    with pytest.raises(ParseError, match=r"field \(root\): 'answer' is a required property"):
        parse(spec, '{"question": "q"}')
    with pytest.raises(ParseError, match=r"field tags\[1\]: .*not of type 'string'"):
        parse(spec, '{"question": "q", "answer": 1, "tags": ["a", 2]}')


def test_response_format():
    spec = {"kind": "json", "schema": SCHEMA, "name": "qa_pair", "strict": True}
    assert response_format(spec) == {
        "type": "json_schema",
        "json_schema": {"name": "qa_pair", "schema": SCHEMA, "strict": True},
    }
    assert response_format("json") == {"type": "json_object"}
    assert response_format("plain") is None
    with pytest.raises(ParserSpecError, match="parser.name"):
        response_format({"kind": "json", "name": "has space"})
    with pytest.raises(ParserSpecError, match="parser.schema: invalid JSON schema"):
        parse({"kind": "json", "schema": {"type": "nonsense"}}, "{}")


# ---------------------------------------------------------------- verifiers


def test_verifier_resolution(monkeypatch):
    assert load_verifier("pretrainlab.llm.verifiers:arithmetic_answer") is arithmetic_answer
    with pytest.raises(VerifierError, match="expected 'package.module:function'"):
        load_verifier("pretrainlab.llm.verifiers.arithmetic_answer")
    with pytest.raises(VerifierError, match="no module named 'no_such_pkg_xyz'"):
        load_verifier("no_such_pkg_xyz.mod:fn")
    with pytest.raises(VerifierError, match="has no attribute 'nope'"):
        load_verifier("pretrainlab.llm.verifiers:nope")
    with pytest.raises(VerifierError, match="is not callable"):
        load_verifier("pretrainlab.llm.verifiers:__all__")
    broken = types.ModuleType("broken_verifier_mod_xyz")
    monkeypatch.setitem(sys.modules, "broken_verifier_mod_xyz", broken)
    broken.bad = lambda fields: "yes"
    broken.boom = lambda fields: 1 / 0
    with pytest.raises(VerifierError, match="returned 'yes'"):
        run_verifier("broken_verifier_mod_xyz:bad", {})
    v = run_verifier("broken_verifier_mod_xyz:boom", {})
    assert not v.ok and "ZeroDivisionError" in v.reason


def test_arithmetic_verifier():
    assert arithmetic_answer({"a": 12, "op": "*", "b": 7, "answer": "84"}) == (True, None)
    assert arithmetic_answer({"expression": "12 - 20", "answer": -8}) == (True, None)
    assert arithmetic_answer({"a": "1000", "op": "+", "b": 24, "answer": {"answer": "1,024."}}) == (
        True,
        None,
    )
    assert arithmetic_answer({"a": 2, "op": "+", "b": 2, "answer": "5"}) == (False, "2 + 2 = 4, got 5")
    assert arithmetic_answer({"a": 2, "op": "/", "b": 2, "answer": "1"}) == (
        False,
        "unsupported operator '/'",
    )
    assert arithmetic_answer({"a": 2, "op": "+", "answer": "4"}) == (False, "missing field(s) b")
    assert arithmetic_answer({"a": 2, "op": "+", "b": 2, "answer": "four"})[0] is False
    v = run_verifier(
        "pretrainlab.llm.verifiers:arithmetic_answer", {"a": 3, "op": "*", "b": 4, "answer": "13"}
    )
    assert not v.ok and v.reason == "3 * 4 = 12, got 13"


def test_judge():
    msgs = judge_prompt("The sky is green.", "Factual accuracy.", task="State a fact.")
    assert [m["role"] for m in msgs] == ["system", "user"]
    assert "The sky is green." in msgs[1]["content"] and "Score: N" in msgs[1]["content"]
    v = parse_judge_score("Accurate and clear.\nScore: 8", threshold=7)
    assert v.ok and v.score == 8
    v = parse_judge_score("Wrong. **Score:** 3/10", threshold=7)
    assert not v.ok and v.score == 3 and "3 < 7" in v.reason
    assert parse_judge_score("I'd give it 9/10.", threshold=7).score == 9
    assert parse_judge_score("Score: 2 at first... final Score: 9", threshold=7).score == 9
    assert parse_judge_score("no idea", threshold=7) == parse_judge_score("", 7)
    assert not parse_judge_score("no idea", threshold=7).ok
    assert parse_judge_score("Score: 11", threshold=7).reason == "judge score 11 is outside 1-10"

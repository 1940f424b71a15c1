"""Teacher-forced probe scores agree with real greedy generation and aggregate by capability, split, group."""

from __future__ import annotations

import json

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from pretrainlab.train.model import GPT, ModelConfig
from pretrainlab.train.probes import ProbeSet, aggregate, greedy_answer, terminator_ids

EOS = 0
OBJECTS = ["zorp", "blenik", "quaff", "mirlo", "tavesh", "okunda", "plim", "grenwald", "sastra", "voob"]
COLORS = [" red", " dark green", " pale blue", " amber", " violet"]
PLACES = [" in the attic", " under the bridge", " near the old mill", " by the sea"]
TRAINED = OBJECTS[:8]  # the model is trained on these facts; the last two are held out


def color_of(i: int) -> str:
    return COLORS[(3 * i) % len(COLORS)]


def place_of(i: int) -> str:
    return PLACES[i % len(PLACES)]


def facts() -> list[tuple[str, str, str, int]]:
    """(capability, prompt, answer, object index) for every object."""
    out = []
    for i, obj in enumerate(OBJECTS):
        out.append(("color", f"Q: What color is the {obj}? A:", color_of(i), i))
        out.append(("place", f"Q: Where does the {obj} live? A:", place_of(i), i))
    return out


def make_probes() -> list[dict]:
    probes = []
    for capability, prompt, answer, i in facts():
        meta = {
            "split": "train" if OBJECTS[i] in TRAINED else "heldout",
            "group": "even" if i % 2 == 0 else "odd",
        }
        probes.append(
            {
                "id": f"{capability}-{i}",
                "capability": capability,
                "exercise": f"{capability}_qa",
                "prompt": prompt,
                "answer": answer,
                "choices": COLORS if capability == "color" else None,
                "meta": json.dumps(meta),
            }
        )
    return probes


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320,
        special_tokens=["<|endoftext|>", "<|pad|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([prompt + answer + "\n" for _, prompt, answer, _ in facts()], trainer)
    assert tok.token_to_id("<|endoftext|>") == EOS
    return tok


def tiny_model(vocab_size: int) -> GPT:
    torch.manual_seed(0)
    return GPT(ModelConfig(vocab_size=vocab_size, seq_len=48, layers=2, width=64, heads=4))


@pytest.fixture(scope="module")
def gpts(tokenizer: Tokenizer) -> dict[str, GPT]:
    """An untrained model, one stopped early (some facts right, some wrong), one trained to memorise."""
    lines = []
    for k, (_, prompt, answer, i) in enumerate(facts()):
        if OBJECTS[i] in TRAINED:  # half the documents end with a newline, half with EOS
            ids = tokenizer.encode(prompt + answer + ("\n" if k % 2 else "")).ids
            lines.append(ids if k % 2 else ids + [EOS])
    width = max(map(len, lines))
    idx = torch.tensor([ids + [EOS] * (width - len(ids)) for ids in lines])
    targets = torch.tensor([ids[1:] + [-100] * (width - len(ids) + 1) for ids in lines])
    vocab = tokenizer.get_vocab_size()
    out = {"untrained": tiny_model(vocab)}
    model = tiny_model(vocab)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for step in range(1, 121):
        _, loss = model(idx, targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step == 30:
            out["partial"] = tiny_model(vocab)
            out["partial"].load_state_dict(model.state_dict())
    out["trained"] = model
    return out


@pytest.fixture(scope="module")
def probe_set(tokenizer: Tokenizer) -> ProbeSet:
    return ProbeSet(make_probes(), tokenizer, max_len=48)


def by_key(rows: list[dict]) -> dict[tuple, dict]:
    return {(r["capability"], r["split"], r["group"], r["metric"]): r for r in rows}


def test_terminators_are_eos_and_newline_tokens(tokenizer: Tokenizer) -> None:
    ids = terminator_ids(tokenizer)
    assert EOS in ids and tokenizer.token_to_id("<|pad|>") not in ids
    assert tokenizer.encode("\n").ids[0] in ids
    assert all(tokenizer.decode([i]).startswith("\n") for i in ids if i != EOS)
    assert not set(tokenizer.encode(" red dark green").ids) & set(ids)


@pytest.mark.parametrize("name", ["untrained", "partial", "trained"])
def test_exact_match_agrees_with_greedy_generation(
    name: str, gpts: dict, probe_set: ProbeSet, tokenizer
) -> None:
    model = gpts[name]
    for row, probe in zip(probe_set.per_probe(model), make_probes(), strict=True):
        generated = greedy_answer(model, tokenizer, probe["prompt"], max_new_tokens=12)
        assert row["exact_match"] == float(generated == probe["answer"]), (row, generated)
        assert generated.startswith(row["prediction"]), (row, generated)


def test_partial_model_gives_a_mix(gpts: dict, probe_set: ProbeSet) -> None:
    # The agreement test above is only meaningful if some probes pass and some fail.
    matches = {row["exact_match"] for row in probe_set.per_probe(gpts["partial"])}
    assert matches == {0.0, 1.0}


def test_trained_model_recalls_trained_facts_untrained_does_not(gpts: dict, probe_set: ProbeSet) -> None:
    trained = by_key(probe_set.score(gpts["trained"]))
    for capability in ("color", "place"):
        assert trained[(capability, "train", None, "exact_match")]["value"] == 1.0
        assert trained[(capability, "train", None, "answer_logprob")]["value"] > -0.1
    assert trained[("color", "train", None, "choice_acc")]["value"] == 1.0
    rows = probe_set.per_probe(gpts["trained"])
    assert all(
        r["prediction"] == p["answer"] for r, p in zip(rows, make_probes(), strict=True) if r["exact_match"]
    )
    untrained = by_key(probe_set.score(gpts["untrained"]))
    for capability in ("color", "place"):
        for split in ("train", "heldout"):
            assert untrained[(capability, split, None, "exact_match")]["value"] == 0.0
            assert untrained[(capability, split, None, "answer_logprob")]["value"] < -3


def test_scores_do_not_depend_on_batch_size(gpts: dict, probe_set: ProbeSet) -> None:
    for model in gpts.values():
        one, many = probe_set.per_probe(model, batch_size=1), probe_set.per_probe(model, batch_size=64)
        for a, b in zip(one, many, strict=True):
            assert a["exact_match"] == b["exact_match"] and a["prediction"] == b["prediction"]
            assert a["choice_acc"] == b["choice_acc"]
            assert a["answer_logprob"] == pytest.approx(b["answer_logprob"], abs=1e-4)


def test_aggregation_by_capability_split_and_group(gpts: dict, probe_set: ProbeSet) -> None:
    model = gpts["partial"]
    per_probe = probe_set.per_probe(model)
    rows = probe_set.score(model)
    assert rows == aggregate(per_probe)
    keyed = by_key(rows)
    assert len(keyed) == len(rows)
    assert keyed[("color", "train", None, "exact_match")]["n"] == 8
    assert keyed[("color", "heldout", "odd", "exact_match")]["n"] == 1
    assert ("place", "train", None, "choice_acc") not in keyed  # place probes have no choices
    for (capability, split, group, metric), row in keyed.items():
        values = [
            p[metric]
            for p in per_probe
            if p["capability"] == capability and p["split"] == split and group in (None, p["group"])
        ]
        assert row["n"] == len(values) and row["value"] == pytest.approx(sum(values) / len(values))
        if metric != "answer_logprob":
            assert 0.0 <= row["value"] <= 1.0


def test_choice_acc_prefers_the_most_likely_choice(gpts: dict, tokenizer: Tokenizer) -> None:
    # Against a nonsense distractor, even a model that misses the gold answer's exact text picks it.
    probes = [p for p in make_probes() if p["capability"] == "color"][:8]
    for p in probes:
        p["choices"] = [p["answer"], " zzzz qqqq"]
    rows = ProbeSet(probes, tokenizer, max_len=48).score(gpts["trained"])
    assert by_key(rows)[("color", "train", None, "choice_acc")]["value"] == 1.0


def test_scoring_restores_training_mode(gpts: dict, probe_set: ProbeSet) -> None:
    model = gpts["untrained"].train()
    probe_set.score(model)
    assert model.training
    model.eval()
    probe_set.score(model)
    assert not model.training


def test_long_prompts_are_truncated_from_the_left(tokenizer: Tokenizer, gpts: dict) -> None:
    probe = make_probes()[0]
    long = dict(probe, prompt="blah " * 40 + probe["prompt"], choices=None)
    probe_set = ProbeSet([long], tokenizer, max_len=20)
    (item,) = probe_set.items
    answer = tokenizer.encode(probe["answer"]).ids
    assert len(item.ids) == 20 and item.ids[-len(answer) :] == answer
    assert item.ids[: item.start] == tokenizer.encode(long["prompt"]).ids[-(20 - len(answer)) :]
    assert len(probe_set.per_probe(gpts["trained"])) == 1


def test_bad_probes_are_rejected(tokenizer: Tokenizer) -> None:
    probe = make_probes()[0]
    with pytest.raises(ValueError, match="color-0.*not among its choices"):
        ProbeSet([dict(probe, choices=[" red", " blue"], answer=" mauve")], tokenizer, max_len=48)
    with pytest.raises(ValueError, match="color-0.*max_len"):
        ProbeSet([probe], tokenizer, max_len=2)


def test_exact_match_needs_every_answer_token_and_then_a_stop(gpts: dict, tokenizer: Tokenizer) -> None:
    # The trained model writes " dark green" for object 2 and " red" for object 0.
    base = make_probes()
    cases = {
        "prefix": (dict(base[4], answer=" dark", choices=None), 0.0, " dark"),  # argmax goes on: no stop
        "longer": (dict(base[0], answer=" red wine", choices=None), 0.0, " red"),  # stops too early
        "exact": (dict(base[4], choices=None), 1.0, " dark green"),
    }
    probe_set = ProbeSet([probe for probe, _, _ in cases.values()], tokenizer, max_len=48)
    rows = probe_set.per_probe(gpts["trained"])
    for row, (probe, exact, prediction) in zip(rows, cases.values(), strict=True):
        assert (row["exact_match"], row["prediction"]) == (exact, prediction)
        generated = greedy_answer(gpts["trained"], tokenizer, probe["prompt"], max_new_tokens=12)
        assert row["exact_match"] == float(generated == probe["answer"])


def test_greedy_answer_slides_a_long_context(gpts: dict, tokenizer: Tokenizer) -> None:
    question = "Q: What color is the zorp? A:"
    prompt = "blah " * 60 + question  # longer than the model's 48 positions
    window = len(tokenizer.encode(question).ids)
    assert isinstance(greedy_answer(gpts["trained"], tokenizer, prompt, max_new_tokens=4), str)
    first = greedy_answer(gpts["trained"], tokenizer, prompt, max_new_tokens=1, max_len=window)
    assert first == greedy_answer(gpts["trained"], tokenizer, question, max_new_tokens=1) != ""


def test_scoring_under_bf16_autocast(gpts: dict, probe_set: ProbeSet) -> None:
    rows = by_key(probe_set.score(gpts["trained"], batch_size=32, autocast_dtype=torch.bfloat16))
    assert rows[("color", "train", None, "exact_match")]["value"] == 1.0
    assert rows[("place", "train", None, "exact_match")]["value"] == 1.0

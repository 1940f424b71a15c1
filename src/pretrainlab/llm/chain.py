"""The chain of steps of an `llm` exercise, applied to one item at a time.

An item starts with its sampled values and its seed. Each step renders its sandboxed prompt from them and
from earlier steps' outputs, sends it, and parses the reply (a reply that does not parse is answered with a
corrective turn, ``parse_retries`` times). The last step's outputs (``n`` of them with ``generation.n``)
become record texts through the ``text`` template; verifiers, then the judge, accept or reject each.

`Chain` holds the exercise's compiled parts and moves an `Item` along when a reply arrives; it decides
what to send next and asks its `send` callable to send it, so it knows nothing of engines, queues or
event loops (`llm.runner` does). Every way an item can fail goes to the `RejectLog` with its reason.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import xxhash

from pretrainlab.config.llm import Generation, LLMExercise
from pretrainlab.corpora import SeedItem
from pretrainlab.exercises.base import Document
from pretrainlab.llm.parsers import ParseError, build_parser, response_format
from pretrainlab.llm.prompts import PromptTemplate, TemplateError
from pretrainlab.llm.rejects import RejectLog
from pretrainlab.llm.samplers import build_samplers, item_rng, sample_all
from pretrainlab.llm.verifiers import judge_prompt, load_verifier, parse_judge_score, run_verifier

if TYPE_CHECKING:
    from pretrainlab.engines.client import Result

# send(item, step's endpoint, "step" or "judge", messages, request params, payload)
Send = Callable[["Item", "str | None", str, Any, dict[str, Any], Any], None]
JUDGE_GENERATION = Generation(max_tokens=256, temperature=0.0)


@dataclass
class Item:
    """One item on its way through the steps."""

    index: int
    seed: SeedItem | None
    values: dict[str, Any]  # sampled
    context: dict[str, Any]  # what templates read: values, index, exercise, seed, step outputs
    step: int = 0
    parse_attempt: int = 0
    calls: dict[str, dict[str, Any]] = field(default_factory=dict)  # per step: usage, output, retries
    judging: int = 0  # candidates awaiting the judge
    last_prompt: str = ""  # the last step's prompt as sent, for the judge
    docs: list[Document] = field(default_factory=list)


class Chain:
    """An exercise's steps, parsers, text template, verifiers and judge, compiled once."""

    def __init__(self, params: LLMExercise, seed: int, exercise: str, rejects: RejectLog, send: Send):
        self.params = params
        self.seed = seed
        self.exercise = exercise
        self.rejects = rejects
        self.send = send
        self.steps = params.chain()
        self.templates = [PromptTemplate(s.prompt, name=s.name) for s in self.steps]
        self.parsers = [build_parser(s.parser) for s in self.steps]
        self.text_template = PromptTemplate(params.text, name="text") if params.text is not None else None
        task = params.judge.task if params.judge is not None else None
        self.judge_task = PromptTemplate(task, name="judge.task") if task is not None else None
        self.samplers = build_samplers(params.samplers)
        self.verifiers = [(path, load_verifier(path)) for path in params.verify]

    # -- starting and sending ------------------------------------------------------------------------
    def start(self, index: int, seed: SeedItem | None) -> Item:
        """Item `index`: its sampled values (from the design seed, the exercise and the index alone)."""
        values = sample_all(self.samplers, item_rng(self.seed, self.exercise, index))
        context = {**values, "index": index, "exercise": self.exercise, "seed": None}
        if seed is not None:
            context["seed"] = seed.seed.context()
        return Item(index, seed, values, context)

    def send_step(self, item: Item) -> bool:
        """Send the item's current step; False when the item is over (its prompt failed to render)."""
        i = item.step
        step = self.steps[i]
        try:
            messages = self.templates[i].render(item.context)
        except TemplateError as e:
            self._reject(item, "template", step.name, str(e))
            return False
        if i == len(self.steps) - 1:
            item.last_prompt = (
                messages if isinstance(messages, str) else "\n\n".join(m["content"] for m in messages)
            )
        if item.parse_attempt and isinstance(messages, list):
            messages = messages + item.calls[step.name]["retry_turns"]
        gen = self.params.generation.merged(step.generation)
        params = gen.request_params(self._request_seed(item, f"{step.name}:{item.parse_attempt}"))
        if step.structured:
            params["response_format"] = response_format(self.parsers[i])
        self.send(item, step.endpoint, "step", messages, params, None)
        return True

    # -- replies -------------------------------------------------------------------------------------
    def on_step(self, item: Item, r: Result, usage: dict[str, Any]) -> bool:
        """Take a step's reply (`usage`: what it cost); True while the item waits on another request."""
        i = item.step
        step, parser = self.steps[i], self.parsers[i]
        call = item.calls.setdefault(step.name, {"parse_attempts": 0, "retry_turns": []})
        for k in ("prompt_tokens", "completion_tokens"):
            usage[k] += call.get(k, 0)  # corrective turns add up
        call.update(usage)
        call["parse_attempts"] += 1
        if not r.ok:
            self._reject(item, f"request:{r.error}", step.name, r.message)
            return False
        last = i == len(self.steps) - 1
        parsed, failures = [], []
        for text in r.choices if last else r.choices[:1]:
            try:
                parsed.append(parser.parse(text or ""))
            except ParseError as e:
                failures.append((e, text))
        if not parsed:
            err, raw = failures[0]
            if item.parse_attempt < step.parse_retries:
                item.parse_attempt += 1
                call["retry_turns"] = call["retry_turns"] + [
                    {"role": "assistant", "content": raw or ""},
                    {
                        "role": "user",
                        "content": f"That reply could not be used ({err}). "
                        "Answer again, following the instructions exactly.",
                    },
                ]
                return self.send_step(item)
            self._reject(item, f"parse:{err.reason}", step.name, str(err), raw)
            return False
        for err, raw in failures:  # n > 1: choices that did not parse
            self._reject(item, f"parse:{err.reason}", step.name, str(err), raw)
        item.parse_attempt = 0
        call.pop("retry_turns", None)
        if not last:
            item.context[step.name] = parsed[0]
            call["output"] = parsed[0]
            item.step += 1
            return self.send_step(item)
        return self._candidates(item, step.name, parsed)

    def on_judge(self, item: Item, r: Result, usage: dict[str, Any], cand: dict[str, Any]) -> bool:
        """Take the judge's score of a candidate; True while the item waits on other judgements."""
        item.judging -= 1
        item.calls["judge" if cand["choice"] == 0 else f"judge#{cand['choice']}"] = usage
        if not r.ok:
            self._reject(item, f"request:{r.error}", "judge", r.message, cand["text"])
        else:
            v = parse_judge_score(r.text or "", self.params.judge.threshold)  # type: ignore[union-attr]
            cand["verdicts"]["judge"] = {"ok": v.ok, "score": v.score, "reason": v.reason}
            if v.ok:
                item.docs.append(self._document(item, cand))
            else:
                self._reject(item, "judge", "judge", v.reason, cand["text"])
        return item.judging > 0

    # -- from outputs to records ---------------------------------------------------------------------
    def _candidates(self, item: Item, name: str, outputs: list[Any]) -> bool:
        """Each output of the last step as a record text, verified, then judged; True while judging."""
        for choice, out in enumerate(outputs):
            context = {**item.context, name: out}
            try:
                text = self.text_template.render(context) if self.text_template else out
            except TemplateError as e:
                self._reject(item, "template", "text", str(e))
                continue
            if not isinstance(text, str) or not text.strip():
                self._reject(item, "empty_text", "text", f"the record text is {text!r}; set `text`")
                continue
            # what verifiers see: sampled values, step outputs, the text, and the seed it grew from
            fields = {**item.values, **{k: context[k] for k in item.calls}, "text": text}
            fields["seed"] = context["seed"]
            verdicts: dict[str, Any] = {}
            failed = None
            for path, fn in self.verifiers:
                v = run_verifier(fn, fields)
                verdicts[path] = {"ok": v.ok, "reason": v.reason}
                if not v.ok:
                    failed = (path, v.reason)
                    break
            if failed:
                self._reject(item, "verify", failed[0], failed[1], text)
                continue
            cand = {"choice": choice, "text": text, "outputs": fields, "verdicts": verdicts}
            judge = self.params.judge
            if judge is None:
                item.docs.append(self._document(item, cand))
                continue
            item.judging += 1
            gen = JUDGE_GENERATION.merged(judge.generation)
            task = self.judge_task.render(context) if self.judge_task else item.last_prompt
            params = gen.request_params(self._request_seed(item, f"judge:{choice}"))
            self.send(
                item, judge.endpoint, "judge", judge_prompt(text, judge.criteria, task=task), params, cand
            )
        return item.judging > 0

    def _document(self, item: Item, cand: dict[str, Any]) -> Document:
        seed = item.seed
        params: dict[str, Any] = {**item.values, "index": item.index}
        if seed is not None:
            params["seed"] = {"corpus": self.params.seeds.corpus, "id": seed.seed.id, "use": seed.repeat}  # type: ignore[union-attr]
        if cand["choice"]:
            params["choice"] = cand["choice"]
        steps_meta = {
            k: {kk: vv for kk, vv in v.items() if kk != "retry_turns"} for k, v in item.calls.items()
        }
        final = steps_meta[self.steps[-1].name]
        return Document(
            text=cand["text"],
            key=f"{item.index}.{cand['choice']}",
            params=params,
            source_id=seed.seed.id if seed else None,
            source_license=seed.seed.license if seed else None,
            meta={
                "usage": {
                    "prompt_tokens": sum(s.get("prompt_tokens", 0) for s in steps_meta.values()),
                    "completion_tokens": sum(s.get("completion_tokens", 0) for s in steps_meta.values()),
                },
                "finish_reason": final.get("finish_reason"),
                "latency_s": round(sum(s.get("latency_s", 0.0) for s in steps_meta.values()), 4),
                "steps": steps_meta,
                "outputs": {
                    k: cand["outputs"][k]
                    for k in item.calls
                    if k in cand["outputs"] and cand["outputs"][k] != cand["text"]
                },
                "verdicts": cand["verdicts"],
            },
        )

    def _reject(
        self, item: Item, reason: str, where: str, message: str | None, raw: str | None = None
    ) -> None:
        self.rejects.write(
            index=item.index,
            source_id=item.seed.seed.id if item.seed else None,
            reason=reason,
            at=where,
            message=message,
            params=item.values,
            raw=raw,
        )

    def _request_seed(self, item: Item, tag: str) -> int:
        """The per-request seed sent to engines: fixed by the design seed, the item and the request."""
        return xxhash.xxh64_intdigest(f"{self.seed}:{item.index}:{tag}".encode()) & 0x7FFFFFFF

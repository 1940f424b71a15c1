"""The `llm` exercise kind: documents written by a model, from seeds, samplers and a chain of prompts.

One *item* is one use of a seed (or, without seeds, one of ``count`` draws). For each item the exercise
draws every sampler (seeded by the design seed, the exercise and the item's index), then runs its steps in
order: render the step's sandboxed prompt from the seed, the sampled values and earlier steps' outputs,
send it, parse the reply (a parse failure is answered with a corrective turn, ``parse_retries`` times).
The last step's output, or the ``text`` template over all outputs, is the record's text. Programmatic
verifiers and an LLM judge then accept or reject it. Every item ends as records or as rejections with a
reason, written to ``rejected-<exercise>.jsonl`` and counted in the manifest: nothing is dropped silently.

Requests from all items are in flight together (the engine client keeps each endpoint busy) while records
come out in item order, so the output does not depend on timing. With the request cache on, every answer
is journaled before it is used: a re-run, or a run resumed after a kill, sends only what was never answered.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import Counter
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import xxhash
from pydantic import Field, field_validator, model_validator

from pretrainlab.generate.worlds.base import Document, ProbeItem, World, WorldParams
from pretrainlab.generate.worlds.vocab import derive_rng
from pretrainlab.llm.corpus import SeedItem, SeedUse, count_items, seed_plan
from pretrainlab.llm.parsers import ParseError, ParserSpecError, build_parser, response_format
from pretrainlab.llm.prompts import PromptTemplate, TemplateError
from pretrainlab.llm.samplers import SamplerError, build_samplers, item_rng, sample_all
from pretrainlab.llm.verifiers import (
    VerifierError,
    judge_prompt,
    load_verifier,
    parse_judge_score,
    run_verifier,
)

if TYPE_CHECKING:
    from pretrainlab.design import Design
    from pretrainlab.llm.client import EngineClient, Result

__all__ = ["Generation", "Judge", "LLMExercise", "LLMParams", "Step"]

# names a template may always read, besides samplers and earlier steps
BUILTIN_VARS = ("seed", "index", "exercise")
RAW_LIMIT = 2000  # characters of a rejected reply kept in rejected-*.jsonl


class Generation(WorldParams):
    """Sampling parameters sent with each request (engines ignore what they do not support)."""

    max_tokens: int = Field(512, ge=1, description="Most tokens to generate.")
    temperature: float | None = Field(None, ge=0, description="Sampling temperature; default: the engine's.")
    top_p: float | None = Field(None, gt=0, le=1, description="Nucleus sampling.")
    n: int = Field(1, ge=1, description="Completions per request (last step only): each may become a record.")
    stop: list[str] | None = Field(None, description="Stop sequences.")
    seed: bool = Field(
        True,
        description="Send a per-request seed derived from the design seed (reproducible on engines "
        "that honour it).",
    )
    extra: dict[str, Any] = Field(default_factory=dict, description="Engine-specific fields (extra_body).")

    def merged(self, override: Generation | None) -> Generation:
        if override is None:
            return self
        return self.model_copy(update={k: getattr(override, k) for k in override.model_fields_set})

    def request_params(self, seed: int | None) -> dict[str, Any]:
        p: dict[str, Any] = {"max_tokens": self.max_tokens}
        for k in ("temperature", "top_p", "stop"):
            if getattr(self, k) is not None:
                p[k] = getattr(self, k)
        if self.n > 1:
            p["n"] = self.n
        if self.seed and seed is not None:
            p["seed"] = seed
        if self.extra:
            p["extra_body"] = dict(self.extra)
        return p


PromptSpec = str | list[dict[str, str]]


def _compile(v: PromptSpec, name: str) -> PromptTemplate:
    try:
        return PromptTemplate(v, name=name)
    except TemplateError as e:
        raise ValueError(str(e)) from None


class Step(WorldParams):
    name: str = Field(
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="Later templates read the output by it."
    )
    prompt: PromptSpec = Field(description="A completion string or a list of {role, content} chat messages.")
    parser: str | dict[str, Any] = Field(
        "plain", description="plain, {kind: regex, ...} or {kind: json, ...}."
    )
    generation: Generation | None = Field(None, description="Overrides of the exercise's `generation`.")
    endpoint: str | None = Field(None, description="Endpoint name; default: spread over all endpoints.")
    structured: bool = Field(
        False, description="Send the json parser's schema as `response_format` (engines that support it)."
    )
    parse_retries: int = Field(1, ge=0, description="Corrective turns after a reply that does not parse.")

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, v: PromptSpec) -> PromptSpec:
        _compile(v, "prompt")
        return v

    @field_validator("parser")
    @classmethod
    def _parser(cls, v: str | dict[str, Any]) -> str | dict[str, Any]:
        try:
            build_parser(v)
        except ParserSpecError as e:
            raise ValueError(str(e)) from None
        return v


class Judge(WorldParams):
    criteria: str = Field(min_length=1, description="What a good response does (the rubric).")
    task: str | None = Field(
        None,
        description="What the judge is told the response answers (a template, e.g. 'Rewrite: "
        "{{ seed.text }}'); default: the last step's prompt.",
    )
    threshold: float = Field(
        7, ge=1, le=10, description="Keep records the judge scores at least this (1-10)."
    )
    endpoint: str | None = Field(None, description="Endpoint of the judge model; default: all endpoints.")
    generation: Generation | None = Field(None, description="Judge sampling; default max_tokens 256, temp 0.")


class LLMParams(WorldParams):
    seeds: SeedUse | None = Field(None, description="Which corpus grounds the items, and how seeds are used.")
    count: int | None = Field(None, ge=1, description="Without seeds: how many items.")
    samplers: dict[str, Any] = Field(default_factory=dict, description="Sampled template variables.")
    prompt: PromptSpec | None = Field(None, description="One-step exercise: the prompt (or use `steps`).")
    parser: str | dict[str, Any] = Field("plain", description="One-step exercise: the parser.")
    generation: Generation = Field(default_factory=Generation, description="Sampling for every step.")
    endpoint: str | None = Field(None, description="One-step exercise: the endpoint.")
    structured: bool = Field(False, description="One-step exercise: send `response_format`.")
    parse_retries: int = Field(1, ge=0, description="One-step exercise: corrective turns.")
    steps: list[Step] | None = Field(None, description="A chain of prompts (query -> answer -> ...).")
    text: str | None = Field(
        None, description="Template of the record text over step outputs; default: the last output."
    )
    verify: list[str] = Field(default_factory=list, description="Verifiers, 'package.module:function'.")
    judge: Judge | None = Field(None, description="An LLM judge that scores each record.")

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, v: PromptSpec | None) -> PromptSpec | None:
        if v is not None:
            _compile(v, "prompt")
        return v

    @model_validator(mode="after")
    def _shape(self) -> LLMParams:
        if (self.prompt is None) == (self.steps is None):
            raise ValueError("give `prompt` (one step) or `steps` (a chain), not both and not neither")
        if (self.seeds is None) == (self.count is None):
            raise ValueError("give `seeds` (items from a corpus) or `count` (items without seeds)")
        if self.steps is not None:
            names = [s.name for s in self.steps]
            if len(set(names)) != len(names):
                raise ValueError(f"step names must be unique, got {names}")
        return self

    def chain(self) -> list[Step]:
        if self.steps is not None:
            return self.steps
        return [
            Step(
                name="response",
                prompt=self.prompt,  # type: ignore[arg-type]
                parser=self.parser,
                endpoint=self.endpoint,
                structured=self.structured,
                parse_retries=self.parse_retries,
            )
        ]

    def step_path(self, i: int) -> str:
        return f"steps[{i}]" if self.steps is not None else ""

    def check_design(self, design: Design) -> list[str]:
        """Problems that need the rest of the design (corpora, endpoints) or the whole chain, as
        ``path: message`` lines relative to the exercise."""
        errors: list[str] = []
        try:
            samplers = build_samplers(self.samplers)
        except SamplerError as e:
            errors.append(str(e))
            samplers = {}
        clash = sorted(set(samplers) & ({s.name for s in self.chain()} | set(BUILTIN_VARS)))
        if clash:
            errors.append(
                f"samplers: {clash} clash with step names or built-in variables {list(BUILTIN_VARS)}"
            )
        known = set(samplers) | set(BUILTIN_VARS)
        steps = self.chain()
        for i, step in enumerate(steps):
            where = (self.step_path(i) + ".prompt").lstrip(".")
            missing = sorted(_compile(step.prompt, "prompt").variables - known)
            if missing:
                errors.append(
                    f"{where}: undefined variable {missing[0]!r} (known here: {', '.join(sorted(known))})"
                )
            known.add(step.name)
            gen = self.generation.merged(step.generation)
            if gen.n > 1 and i < len(steps) - 1:
                errors.append(
                    f"{(self.step_path(i) + '.generation.n').lstrip('.')}: n > 1 only on the last step"
                )
            if step.structured and response_format(step.parser) is None:
                errors.append(f"{(self.step_path(i) + '.structured').lstrip('.')}: needs a json parser")
        if self.text is not None:
            try:
                missing = sorted(_compile(self.text, "text").variables - known)
            except ValueError as e:
                errors.append(f"text: {e}")
            else:
                if missing:
                    errors.append(
                        f"text: undefined variable {missing[0]!r} (known: {', '.join(sorted(known))})"
                    )
        if self.judge is not None and self.judge.task is not None:
            try:
                missing = sorted(_compile(self.judge.task, "judge.task").variables - known)
            except ValueError as e:
                errors.append(f"judge.task: {e}")
            else:
                if missing:
                    errors.append(f"judge.task: undefined variable {missing[0]!r}")
        for j, path in enumerate(self.verify):
            try:
                load_verifier(path)
            except VerifierError as e:
                errors.append(f"verify[{j}]: {e}")
        if self.seeds is not None and self.seeds.corpus not in design.corpora:
            known_c = ", ".join(sorted(design.corpora)) or "none defined"
            errors.append(f"seeds.corpus: '{self.seeds.corpus}' is not in `corpora` ({known_c})")
        if design.llm is None:
            errors.append("kind: an `llm` exercise needs the design's `llm` section (its endpoints)")
            return errors
        eps = {ep.name: ep for ep in design.llm.endpoints}
        routes = [((self.step_path(i) + ".endpoint").lstrip("."), s.endpoint) for i, s in enumerate(steps)]
        if self.judge is not None:
            routes.append(("judge.endpoint", self.judge.endpoint))
        for where, name in routes:
            if name is not None and name not in eps:
                errors.append(f"{where}: no endpoint named '{name}' (known: {', '.join(eps)})")
            elif name is None and len({design.endpoint_model(ep) for ep in eps.values()}) > 1:
                errors.append(f"{where}: the endpoints serve different models; name one")
        return errors


# ------------------------------------------------------------------------------------------- runtime


@dataclass
class _Chain:
    """One item on its way through the steps."""

    index: int
    seed: SeedItem | None
    values: dict[str, Any]
    context: dict[str, Any]
    step: int = 0
    parse_attempt: int = 0
    calls: dict[str, dict[str, Any]] = field(default_factory=dict)
    candidates: list[dict[str, Any]] = field(default_factory=list)  # final texts awaiting the judge
    judging: int = 0
    last_prompt: str = ""  # the last step's prompt as sent, for the judge
    docs: list[Document] = field(default_factory=list)


@dataclass
class _Lane:
    """One engine client (the endpoints a step or the judge sends to) with its own request queue."""

    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    task: asyncio.Task | None = None

    async def source(self) -> AsyncIterator[dict[str, Any]]:
        while (req := await self.queue.get()) is not None:
            yield req


class _LazyClient:
    """An engine client made when the first item arrives (what `cached_run` needs of a client)."""

    def __init__(self, make: Callable[[], EngineClient]) -> None:
        self.make = make
        self.client: EngineClient | None = None

    async def run(self, items: AsyncIterable[Any]) -> AsyncIterator[Result]:
        source = aiter(items)
        try:
            first = await anext(source)
        except StopAsyncIteration:
            return
        self.client = self.make()

        async def rest() -> AsyncIterator[Any]:
            yield first
            async for item in source:
                yield item

        async for r in self.client.run(rest()):
            yield r


class LLMExercise(World):
    """Documents written by a model behind an OpenAI-compatible API, from seeds and sampled values.

    See the module docstring and docs/llm-exercises.md."""

    kind = "llm"
    version = 1
    Params = LLMParams
    params: LLMParams

    def __init__(self, params: LLMParams | Mapping[str, Any] | None = None, seed: int = 0):
        if not isinstance(params, LLMParams):
            params = LLMParams.model_validate(params or {})
        super().__init__(params, seed)
        self.ctx: Any = None
        self.steps = params.chain()
        self.templates = [_compile(s.prompt, s.name) for s in self.steps]
        self.parsers = [build_parser(s.parser) for s in self.steps]
        self.text_template = _compile(self.params.text, "text") if self.params.text is not None else None
        judge_task = params.judge.task if params.judge is not None else None
        self.judge_task = _compile(judge_task, "judge.task") if judge_task is not None else None
        self.samplers = build_samplers(params.samplers)
        self.verifiers = [(path, load_verifier(path)) for path in params.verify]
        self._summary: dict[str, Any] = {}
        self._models: list[str] = []

    # -- the World protocol ----------------------------------------------------------------------------

    def setup(self, ctx: Any) -> None:
        """``ctx`` is the generate stage's context: ``design``, ``exercise`` (the key), ``out`` (stage
        folder), ``pool`` (EndpointPool), ``cache`` (RequestCache or None), ``progress(done, total,
        info)``."""
        self.ctx = ctx
        routes = [ctx.pool.names(s.endpoint) for s in self.steps]
        if self.params.judge is not None:
            routes.append(ctx.pool.names(self.params.judge.endpoint))
        self._models = list(dict.fromkeys(ctx.pool.model(r) for r in routes))

    @property
    def generator(self) -> str:
        return f"llm:{'+'.join(self._models) or '?'}"

    def probes(self) -> Iterator[ProbeItem]:
        return iter(())

    def summary(self) -> dict[str, Any]:
        return self._summary

    def documents(self) -> Iterator[Document]:
        """Runs the async pipeline on a private event loop, one document at a time."""
        if self.ctx is None:
            raise RuntimeError("an llm exercise runs inside the generate stage (call setup(ctx) first)")
        loop = asyncio.new_event_loop()
        agen = self._documents()
        step: asyncio.Future | None = None
        try:
            while True:
                step = asyncio.ensure_future(agen.__anext__(), loop=loop)
                try:
                    doc = loop.run_until_complete(step)
                except StopAsyncIteration:
                    break
                yield doc
        finally:
            if step is not None and not step.done():  # interrupted (Ctrl-C) mid-step: unwind it first
                step.cancel()
                loop.run_until_complete(asyncio.gather(step, return_exceptions=True))
            loop.run_until_complete(agen.aclose())
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    # -- items -----------------------------------------------------------------------------------------

    def _items(self) -> Iterator[tuple[int, SeedItem | None]]:
        p = self.params
        if p.seeds is None:
            for i in range(p.count or 0):
                yield i, None
            return
        design = self.ctx.design
        spec = design.corpora[p.seeds.corpus]
        rng = derive_rng(self.seed, "seeds", p.seeds.corpus)
        yield from enumerate(seed_plan(p.seeds, spec, design.base_dir, rng))

    def _total(self) -> int:
        p = self.params
        if p.seeds is None:
            return p.count or 0
        return count_items(p.seeds, self.ctx.design.corpora[p.seeds.corpus], self.ctx.design.base_dir)

    def _start(self, index: int, seed: SeedItem | None) -> _Chain:
        values = sample_all(self.samplers, item_rng(self.seed, self.ctx.exercise, index))
        context = {**values, "index": index, "exercise": self.ctx.exercise, "seed": None}
        if seed is not None:
            context["seed"] = seed.seed.context()
        return _Chain(index, seed, values, context)

    def _request_seed(self, chain: _Chain, tag: str) -> int:
        return xxhash.xxh64_intdigest(f"{self.seed}:{chain.index}:{tag}".encode()) & 0x7FFFFFFF

    # -- the pipeline ----------------------------------------------------------------------------------

    async def _documents(self) -> AsyncIterator[Document]:
        from pretrainlab.llm.client import EngineClient
        from pretrainlab.llm.journal import CachedRunStats, cached_run

        ctx = self.ctx
        results: asyncio.Queue = asyncio.Queue()
        lanes: dict[tuple[str, ...], _Lane] = {}
        clients: list[_LazyClient] = []
        cache_stats = CachedRunStats()
        pending: dict[str, tuple[_Chain, str, Any]] = {}  # request id -> (chain, what, payload)
        request_ids = itertools.count()
        rejected: Counter = Counter()
        tokens: dict[str, Counter] = {}  # endpoint -> prompt/completion tokens
        calls = Counter()
        self._rejects_path = Path(ctx.out) / f"rejected-{ctx.exercise}.jsonl"
        rejects = open(self._rejects_path, "w", encoding="utf-8")  # noqa: SIM115 -- closed in finally

        async def pump(lane: _Lane, client: _LazyClient, model: str) -> None:
            try:
                if ctx.cache is not None:
                    stream = cached_run(client, lane.source(), ctx.cache, model=model, stats=cache_stats)
                else:
                    stream = client.run(lane.source())
                async for r in stream:
                    results.put_nowait(r)
            except BaseException as e:  # noqa: BLE001 -- handed to the consumer
                results.put_nowait(e)
                raise

        def send(chain: _Chain, names: tuple[str, ...], what: str, messages: Any, params: dict, payload=None):
            lane = lanes.get(names)
            if lane is None:
                lane = lanes[names] = _Lane()
                # built on the first request the cache cannot answer: a fully cached run starts no engine
                client = _LazyClient(
                    lambda n=names: EngineClient(ctx.pool.specs(n), ctx.pool.client_config())
                )
                clients.append(client)
                lane.task = asyncio.create_task(pump(lane, client, ctx.pool.model(names)))
            rid = f"{chain.index}:{what}:{next(request_ids)}"
            pending[rid] = (chain, what, payload)
            lane.queue.put_nowait({"id": rid, "messages": messages, "params": params})

        def reject(chain: _Chain, reason: str, where: str, message: str | None, raw: str | None = None):
            rejected[reason] += 1
            row = {
                "index": chain.index,
                "source_id": chain.seed.seed.id if chain.seed else None,
                "reason": reason,
                "at": where,
                "message": message,
                "params": chain.values,
                "raw": raw[:RAW_LIMIT] if raw else None,
            }
            rejects.write(json.dumps(row, sort_keys=True, ensure_ascii=False) + "\n")

        def send_step(chain: _Chain) -> bool:
            """Send the chain's current step; False when the item is over (its prompt failed to render)."""
            i = chain.step
            step, template = self.steps[i], self.templates[i]
            try:
                messages = template.render(chain.context)
            except TemplateError as e:
                reject(chain, "template", step.name, str(e))
                return False
            if i == len(self.steps) - 1:
                chain.last_prompt = (
                    messages if isinstance(messages, str) else "\n\n".join(m["content"] for m in messages)
                )
            if chain.parse_attempt and isinstance(messages, list):
                messages = messages + chain.calls[step.name]["retry_turns"]
            gen = self.params.generation.merged(step.generation)
            params = gen.request_params(self._request_seed(chain, f"{step.name}:{chain.parse_attempt}"))
            if step.structured:
                params["response_format"] = response_format(self.parsers[i])
            send(chain, ctx.pool.names(step.endpoint), "step", messages, params)
            return True

        def book(r: Result) -> dict[str, Any]:
            t = tokens.setdefault(r.endpoint or "?", Counter())
            t["prompt_tokens"] += r.prompt_tokens
            t["completion_tokens"] += r.completion_tokens
            t["requests"] += 1
            return {
                "endpoint": r.endpoint,
                "finish_reason": r.finish_reason,
                "latency_s": round(r.latency_s, 4),
                "prompt_tokens": r.prompt_tokens,
                "completion_tokens": r.completion_tokens,
                "attempts": r.attempts,
            }

        def on_step(chain: _Chain, r: Result) -> bool:
            """Book a step's reply; True when the chain is waiting on another request."""
            i = chain.step
            step, parser = self.steps[i], self.parsers[i]
            call = chain.calls.setdefault(step.name, {"parse_attempts": 0, "retry_turns": []})
            usage = book(r)
            for k in ("prompt_tokens", "completion_tokens"):
                usage[k] += call.get(k, 0)  # corrective turns add up
            call.update(usage)
            call["parse_attempts"] += 1
            if not r.ok:
                reject(chain, f"request:{r.error}", step.name, r.message)
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
                if chain.parse_attempt < step.parse_retries:
                    chain.parse_attempt += 1
                    call["retry_turns"] = call["retry_turns"] + [
                        {"role": "assistant", "content": raw or ""},
                        {
                            "role": "user",
                            "content": f"That reply could not be used ({err}). "
                            "Answer again, following the instructions exactly.",
                        },
                    ]
                    return send_step(chain)
                reject(chain, f"parse:{err.reason}", step.name, str(err), raw)
                return False
            for err, raw in failures:  # n > 1: choices that did not parse
                reject(chain, f"parse:{err.reason}", step.name, str(err), raw)
            chain.parse_attempt = 0
            call.pop("retry_turns", None)
            if not last:
                chain.context[step.name] = parsed[0]
                call["output"] = parsed[0]
                chain.step += 1
                return send_step(chain)
            return finish_outputs(chain, step.name, parsed)

        def finish_outputs(chain: _Chain, name: str, outputs: list[Any]) -> bool:
            for choice, out in enumerate(outputs):
                context = {**chain.context, name: out}
                try:
                    text = self.text_template.render(context) if self.text_template else out
                except TemplateError as e:
                    reject(chain, "template", "text", str(e))
                    continue
                if not isinstance(text, str) or not text.strip():
                    reject(chain, "empty_text", "text", f"the record text is {text!r}; set `text`")
                    continue
                # what verifiers see: sampled values, step outputs, the text, and the seed it grew from
                fields = {**chain.values, **{k: context[k] for k in chain.calls}, "text": text}
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
                    reject(chain, "verify", failed[0], failed[1], text)
                    continue
                cand = {"choice": choice, "text": text, "outputs": fields, "verdicts": verdicts}
                if self.params.judge is None:
                    chain.docs.append(make_doc(chain, cand))
                else:
                    chain.judging += 1
                    j = self.params.judge
                    gen = Generation(max_tokens=256, temperature=0.0).merged(j.generation)
                    task = self.judge_task.render(context) if self.judge_task else chain.last_prompt
                    messages = judge_prompt(text, j.criteria, task=task)
                    params = gen.request_params(self._request_seed(chain, f"judge:{choice}"))
                    send(chain, ctx.pool.names(j.endpoint), "judge", messages, params, cand)
            return chain.judging > 0

        def on_judge(chain: _Chain, r: Result, cand: dict[str, Any]) -> bool:
            chain.judging -= 1
            usage = book(r)
            key = "judge" if cand["choice"] == 0 else f"judge#{cand['choice']}"
            chain.calls[key] = usage
            if not r.ok:
                reject(chain, f"request:{r.error}", "judge", r.message, cand["text"])
            else:
                v = parse_judge_score(r.text or "", self.params.judge.threshold)  # type: ignore[union-attr]
                cand["verdicts"]["judge"] = {"ok": v.ok, "score": v.score, "reason": v.reason}
                if v.ok:
                    chain.docs.append(make_doc(chain, cand))
                else:
                    reject(chain, "judge", "judge", v.reason, cand["text"])
            return chain.judging > 0

        def make_doc(chain: _Chain, cand: dict[str, Any]) -> Document:
            seed = chain.seed
            params: dict[str, Any] = {**chain.values, "index": chain.index}
            if seed is not None:
                params["seed"] = {"corpus": self.params.seeds.corpus, "id": seed.seed.id, "use": seed.repeat}  # type: ignore[union-attr]
            if cand["choice"]:
                params["choice"] = cand["choice"]
            steps_meta = {
                k: {kk: vv for kk, vv in v.items() if kk != "retry_turns"} for k, v in chain.calls.items()
            }
            final = steps_meta[self.steps[-1].name]
            return Document(
                text=cand["text"],
                key=f"{chain.index}.{cand['choice']}",
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
                        for k in chain.calls
                        if k in cand["outputs"] and cand["outputs"][k] != cand["text"]
                    },
                    "verdicts": cand["verdicts"],
                },
            )

        total = self._total()
        items = self._items()
        finished: dict[int, list[Document]] = {}
        next_out = live = done = n_docs = 0
        max_live = 2 * sum(ep.max_concurrency for ep in ctx.design.llm.endpoints)
        exhausted = False
        t0 = last_progress = time.monotonic()
        try:
            while True:
                while not exhausted and live < max_live:
                    try:
                        index, seed = next(items)
                    except StopIteration:
                        exhausted = True
                        break
                    chain = self._start(index, seed)
                    if send_step(chain):
                        live += 1
                    else:
                        finished[index] = []
                while next_out in finished:
                    for doc in finished.pop(next_out):
                        n_docs += 1
                        yield doc
                    next_out += 1
                    done += 1
                now = time.monotonic()
                if now - last_progress > 0.5 or (exhausted and live == 0):
                    last_progress = now
                    ctx.progress(done, total, _progress_line(now - t0, tokens, clients, rejected))
                if exhausted and live == 0:
                    break
                r = await results.get()
                if isinstance(r, BaseException):
                    raise r
                chain, what, payload = pending.pop(r.id)
                calls[what] += 1
                busy = on_step(chain, r) if what == "step" else on_judge(chain, r, payload)
                if not busy:
                    live -= 1
                    finished[chain.index] = chain.docs
        finally:
            for lane in lanes.values():
                lane.queue.put_nowait(None)
            tasks = [lane.task for lane in lanes.values() if lane.task is not None]
            if live:  # interrupted: do not wait for replies nobody will use
                for t in tasks:
                    t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for client in clients:
                if client.client is not None:
                    await client.client.aclose()
            rejects.close()
        self._summary = {
            "items": total,
            "records": n_docs,
            "rejected": dict(sorted(rejected.items())),
            "requests": {
                "answered": sum(calls.values()),
                "from_cache": cache_stats.hits,
                "sent": cache_stats.sent if ctx.cache is not None else sum(calls.values()),
            },
            "tokens": {ep: dict(sorted(c.items())) for ep, c in sorted(tokens.items())},
            "rejected_file": self._rejects_path.name,
        }


def _progress_line(
    elapsed: float, tokens: dict[str, Counter], clients: list[_LazyClient], rejected: Counter
) -> str:
    """What an llm exercise adds to its progress report: tokens/s, retried requests (transient failures the
    engine client sent again: a rising count is a struggling engine, not a hang) and rejected items.
    Items done of total, their rate and the ETA are the generate stage's part of the line."""
    toks = sum(c["prompt_tokens"] + c["completion_tokens"] for c in tokens.values())
    retries = sum(sum(c.client.stats.retries.values()) for c in clients if c.client is not None)
    return f"{toks / max(elapsed, 1e-9):,.0f} tok/s · retries {retries} · rejected {sum(rejected.values())}"

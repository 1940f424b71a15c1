"""The `llm` exercise kind: documents written by a model, from seeds, sampled values and a chain of prompts.

One *item* is one use of a seed (or, without seeds, one of ``count`` draws). Its chain of steps is run by
`llm.chain`, its requests by `llm.runner`; every item ends as records or as rejections with a reason
(`llm.rejects`). This module is the kind as the generate stage sees it: what a design is checked against,
what the stage hash covers (the seed corpus's bytes and the models' names), the engines and request
cache it opens for the stage, its ledger rows, and the check that the stage may be marked finished.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pretrainlab.config.llm import BUILTIN_VARS, LLMExercise
from pretrainlab.corpora import SeedItem, corpus_digest, count_items, seed_plan
from pretrainlab.engines.endpoints import EndpointPool
from pretrainlab.engines.journal import PERMANENT_REASONS, RequestCache
from pretrainlab.errors import CorpusError, DesignError, StageError
from pretrainlab.exercises.base import Document, Exercise, GenerateContext, ProbeItem
from pretrainlab.exercises.vocab import derive_rng
from pretrainlab.llm.chain import Chain
from pretrainlab.llm.parsers import ParserSpecError, build_parser
from pretrainlab.llm.prompts import PromptTemplate, TemplateError
from pretrainlab.llm.rejects import RejectLog
from pretrainlab.llm.runner import Runner
from pretrainlab.llm.verifiers import VerifierError, load_verifier
from pretrainlab.runs import LLM_CACHE, rejected_path, run_root

if TYPE_CHECKING:
    from rich.console import Console

    from pretrainlab.config import Design


class LLM(Exercise):
    """Documents written by a model behind an OpenAI-compatible API, from seeds and sampled values."""

    kind = "llm"
    version = 1
    Params = LLMExercise
    progress_unit = "items"
    independent = False  # shares the stage's engines and request cache
    params: LLMExercise

    def __init__(self, params: LLMExercise, seed: int = 0):
        super().__init__(params, seed)
        self.ctx: GenerateContext | None = None
        self._summary: dict[str, Any] = {}
        self._models: list[str] = []

    # -- the design --------------------------------------------------------------------------------
    @classmethod
    def check(cls, params: LLMExercise, design: Design) -> list[str]:
        """Templates compile and name only known variables; json parsers' schemas are valid JSON
        Schemas; verifiers import."""
        errors: list[str] = []
        known = set(params.samplers) | set(BUILTIN_VARS)
        for i, step in enumerate(params.chain()):
            errors += _template_errors(
                step.prompt, "prompt", params.step_path(i, "prompt"), known, "known here"
            )
            known.add(step.name)
            try:
                build_parser(step.parser, params.step_path(i, "parser"))
            except ParserSpecError as e:
                errors.append(str(e))
        if params.text is not None:
            errors += _template_errors(params.text, "text", "text", known)
        if params.judge is not None and params.judge.task is not None:
            errors += _template_errors(params.judge.task, "judge.task", "judge.task", known, "")
        for j, path in enumerate(params.verify):
            try:
                load_verifier(path)
            except VerifierError as e:
                errors.append(f"verify[{j}]: {e}")
        return errors

    @classmethod
    def hash_inputs(cls, params: LLMExercise, design: Design) -> dict[str, Any]:
        """The seed corpus's bytes (not where it lies) and the models the endpoints serve (not their
        URLs or keys)."""
        out: dict[str, Any] = {}
        if params.seeds is not None:
            name = params.seeds.corpus
            spec = design.corpora[name]
            try:
                digest = corpus_digest(spec, design.base_dir)
            except CorpusError as e:
                raise DesignError([f"corpora.{name}.path: {e}"]) from None
            out["corpora"] = {name: {**spec.model_dump(mode="json", exclude={"path"}), "digest": digest}}
        if design.llm is not None:
            out["models"] = {ep.name: design.endpoint_model(ep) for ep in design.llm.endpoints}
        return out

    # -- the generate stage --------------------------------------------------------------------------
    @classmethod
    @contextmanager
    def resources(cls, design: Design, out: Path, console: Console) -> Iterator[Any]:
        """The endpoint pool and the request cache, closed however the stage ends (engines started for
        `serve` endpoints are stopped, also on Ctrl-C)."""
        pool = EndpointPool(design, log_dir=out, announce=lambda m: console.print(f"[dim]{m}[/dim]"))
        cache = RequestCache(run_root(out) / LLM_CACHE) if design.llm.cache else None  # type: ignore[union-attr]
        try:
            yield pool, cache
        finally:
            pool.close()
            if cache is not None:
                cache.close()

    def setup(self, ctx: GenerateContext) -> None:
        self.ctx = ctx
        pool = ctx.resources[0]
        routes = [pool.names(s.endpoint) for s in self.params.chain()]
        if self.params.judge is not None:
            routes.append(pool.names(self.params.judge.endpoint))
        self._models = list(dict.fromkeys(pool.model(r) for r in routes))

    @property
    def generator(self) -> str:
        return f"llm:{'+'.join(self._models) or '?'}"

    def probes(self) -> Iterator[ProbeItem]:
        return iter(())

    def summary(self) -> dict[str, Any]:
        return self._summary

    def documents(self) -> Iterator[Document]:
        """Runs the items on a private event loop, yielding one document at a time."""
        if self.ctx is None:
            raise RuntimeError("an llm exercise runs inside the generate stage (call setup(ctx) first)")
        loop = asyncio.new_event_loop()
        agen = self._documents(self.ctx)
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

    async def _documents(self, ctx: GenerateContext):
        rejects = RejectLog(rejected_path(ctx.out, ctx.exercise))
        runner = Runner(ctx, lambda send: Chain(self.params, self.seed, ctx.exercise, rejects, send))
        total, records = self._total(ctx.design), 0
        try:
            async for doc in runner.documents(self._items(ctx.design), total):
                records += 1
                yield doc
        finally:
            rejects.close()
        self._summary = runner.summary(total, records)

    def _items(self, design: Design) -> Iterator[tuple[int, SeedItem | None]]:
        p = self.params
        if p.seeds is None:
            for i in range(p.count or 0):
                yield i, None
            return
        spec = design.corpora[p.seeds.corpus]
        rng = derive_rng(self.seed, "seeds", p.seeds.corpus)
        yield from enumerate(seed_plan(p.seeds, spec, design.base_dir, rng))

    def _total(self, design: Design) -> int:
        p = self.params
        if p.seeds is None:
            return p.count or 0
        return count_items(p.seeds, design.corpora[p.seeds.corpus], design.base_dir)

    def finish(self, summary: dict[str, Any], console: Console) -> None:
        """Print what happened, and fail the stage when too many items found no answer (engine down,
        wrong key or model name, an overloaded server): finishing would cache a stage that is missing
        data. Answers already received are journaled, so the re-run sends only the failed requests."""
        key = self.ctx.exercise  # type: ignore[union-attr]
        req = summary["requests"]
        rej = ", ".join(f"{n} {r}" for r, n in summary["rejected"].items()) or "none"
        console.print(
            f"  {key}: {summary['records']} records from {summary['items']} items · {req['sent']} requests "
            f"sent, {req['from_cache']} from the cache · rejected: {rej}"
        )
        failed = {
            r: n
            for r, n in summary["rejected"].items()
            if r.startswith("request:") and r.split(":", 1)[1] not in PERMANENT_REASONS
        }
        limit = self.ctx.design.llm.max_failed_fraction  # type: ignore[union-attr]
        if sum(failed.values()) > limit * summary["items"]:
            reasons = ", ".join(f"{n} {r.split(':', 1)[1]}" for r, n in failed.items())
            raise StageError(
                f"exercise '{key}': {sum(failed.values())} of {summary['items']} items got no answer from "
                f"the engine ({reasons}; details in {summary['rejected_file']}), more than "
                f"llm.max_failed_fraction={limit:g} allows. Nothing is lost: every answer received is in "
                "the request cache, so running the same command again sends only the failed requests."
            )

    @classmethod
    def ledger(cls, design: Design, summaries: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """Generation cost per exercise and endpoint: tokens; FLOPs (2 x params per token) and
        device-hours (tokens / tokens_per_s) where the design states the generator's size and speed."""
        if design.llm is None:
            return {}
        eps = {ep.name: ep for ep in design.llm.endpoints}
        rows: dict[str, Any] = {}
        for key, s in summaries.items():
            for ep_name, t in s.get("tokens", {}).items():
                n = t.get("prompt_tokens", 0) + t.get("completion_tokens", 0)
                ep = eps.get(ep_name)
                rows[f"{key}@{ep_name}"] = {
                    **t,
                    "flops": 2 * ep.params * n if ep is not None and ep.params else None,
                    "device_hours": n / ep.tokens_per_s / 3600
                    if ep is not None and ep.tokens_per_s
                    else None,
                }
        return {"llm": rows, "note": "procedural worlds + LLM generation (rows below)"} if rows else {}


def _template_errors(
    template: Any, name: str, where: str, known: set[str], label: str = "known"
) -> list[str]:
    """Why a design's template cannot be used: it does not compile, or it reads an unknown variable."""
    try:
        missing = sorted(PromptTemplate(template, name=name).variables - known)
    except TemplateError as e:
        return [f"{where}: {e}"]
    if not missing:
        return []
    listed = f" ({label}: {', '.join(sorted(known))})" if label else ""
    return [f"{where}: undefined variable {missing[0]!r}{listed}"]

"""The engines `llm` exercises talk to (the design's `llm:` section): endpoints and client settings."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from pretrainlab.config.base import Section


class EndpointSection(Section):
    """One OpenAI-compatible engine: a running one (`url`) or a model folder served for the run (`serve`)."""

    name: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="Name exercises use in `endpoint`; default: endpoint<i>.",
    )
    url: str | None = Field(None, description="Base URL of a running engine, e.g. http://gpu-box:8000/v1.")
    serve: str | None = Field(
        None,
        description="A model folder (HF format) to serve on loopback for the run (transformers or vllm).",
    )
    engine: Literal["auto", "transformers", "vllm"] = Field(
        "auto", description="With `serve`: vllm where installed with a GPU, else transformers."
    )
    model: str | None = Field(
        None,
        description="Model name sent in requests; required with `url`, default with `serve`: the folder.",
    )
    api_key_env: str | None = Field(
        None, description="Environment variable holding the API key (the key itself never goes in a file)."
    )
    max_concurrency: int = Field(64, ge=1, description="Most requests in flight at once.")
    initial_concurrency: int = Field(
        8, ge=1, description="Requests in flight at the start (grows adaptively)."
    )
    params: float | None = Field(
        None, gt=0, description="Generator's parameter count: the ledger counts 2 x params FLOPs per token."
    )
    tokens_per_s: float | None = Field(
        None,
        gt=0,
        description="Generator's throughput (tokens/s per device): the ledger counts device-hours.",
    )

    @model_validator(mode="after")
    def _one_source(self) -> EndpointSection:
        if (self.url is None) == (self.serve is None):
            raise ValueError("give exactly one of `url` (a running engine) or `serve` (a model folder)")
        if self.url is not None and self.model is None:
            raise ValueError("`model` is required with `url`")
        if self.serve is not None and self.api_key_env is not None:
            raise ValueError("`api_key_env` applies to `url` endpoints only")
        return self


class LLMSection(Section):
    endpoints: list[EndpointSection] = Field(min_length=1, description="Engines that `llm` exercises call.")
    timeout_s: float = Field(300.0, gt=0, description="Seconds per request attempt.")
    max_attempts: int = Field(5, ge=1, description="Attempts per request (retries on 429, 5xx, timeouts).")
    startup_timeout_s: float = Field(
        600.0, gt=0, description="Seconds a `serve` engine has to become healthy."
    )
    cache: bool = Field(
        True, description="Keep every answer in runs/NAME/llm-cache: re-runs and resumes send nothing twice."
    )
    max_failed_fraction: float = Field(
        0.01,
        ge=0,
        le=1,
        description="The stage fails (to be re-run) when more items than this got no answer from the engine.",
    )

    @model_validator(mode="after")
    def _names(self) -> LLMSection:
        seen: set[str] = set()
        for i, ep in enumerate(self.endpoints):
            ep.name = ep.name or f"endpoint{i}"
            if ep.name in seen:
                raise ValueError(f"two endpoints are named '{ep.name}'")
            seen.add(ep.name)
        return self

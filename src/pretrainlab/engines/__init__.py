"""Talking to inference engines over the OpenAI-compatible API (vLLM, SGLang, llama.cpp, TGI,
`transformers serve`): the client, the request journal, local serving and a design's endpoints. Knows
nothing of exercises.

Requires the ``openai`` package (the ``llm`` extra)."""

from pretrainlab.engines.client import (
    ClientConfig,
    EndpointSpec,
    EngineClient,
    Request,
    Result,
    Stats,
    classify_error,
    dumps_stats,
)

__all__ = [
    "ClientConfig",
    "EndpointSpec",
    "EngineClient",
    "Request",
    "Result",
    "Stats",
    "classify_error",
    "dumps_stats",
]

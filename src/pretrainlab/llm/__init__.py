"""Clients for LLM-backed exercises: drive OpenAI-compatible servers (vLLM, SGLang, llama.cpp, TGI, OpenAI).

Requires the ``openai`` package (the ``llm`` extra)."""

from pretrainlab.llm.client import (
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

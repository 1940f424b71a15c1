"""How the engine client judges a failed attempt: the reason class it gets (``rate_limit``,
``server_error``, ``bad_request``, ...), whether it is worth another attempt, whether it says the endpoint
is overloaded, and how long the server asked us to wait (Retry-After).

See docs/llm.md ("When the engine fails") for the retry/drop table.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

import openai

__all__ = ["OVERLOAD_REASONS", "RETRY_REASONS", "Failure", "classify_error"]

# reasons that say "this endpoint is overloaded": they halve its concurrency (once per flight of requests)
OVERLOAD_REASONS = frozenset({"rate_limit", "server_error", "timeout", "connection", "truncated"})
# reasons worth another attempt (on any endpoint)
RETRY_REASONS = OVERLOAD_REASONS | {"malformed", "conflict"}


_DROP_STATUS = {
    400: "bad_request",
    401: "auth",
    403: "auth",
    404: "not_found",
    413: "too_large",
    422: "unprocessable",
}


@dataclass(frozen=True)
class Failure:
    reason: str  # short class, e.g. rate_limit
    retry: bool
    message: str
    retry_after: float | None = None  # seconds, from the Retry-After header


def classify_error(exc: BaseException) -> Failure:
    """Map an exception from one attempt to (reason, retry?, message, Retry-After)."""
    msg = _short(exc)
    if isinstance(exc, openai.APITimeoutError):  # before APIConnectionError, its base class
        return Failure("timeout", True, msg)
    if isinstance(exc, openai.APIConnectionError):
        cause = type(exc.__cause__).__name__ if exc.__cause__ else ""
        if "Protocol" in cause or "ReadError" in cause:  # e.g. body shorter than Content-Length
            return Failure("truncated", True, f"{cause}: {_short(exc.__cause__)}")
        return Failure("connection", True, f"{cause or type(exc).__name__}: {_short(exc.__cause__ or exc)}")
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        retry_after = _retry_after(exc.response.headers)
        if status == 429:
            return Failure("rate_limit", True, msg, retry_after)
        if status >= 500:
            return Failure("server_error", True, f"HTTP {status}: {msg}", retry_after)
        if status == 408:
            return Failure("timeout", True, f"HTTP 408: {msg}")
        if status == 409:
            return Failure("conflict", True, f"HTTP 409: {msg}")
        return Failure(_DROP_STATUS.get(status, "client_error"), False, f"HTTP {status}: {msg}")
    if isinstance(exc, openai.APIResponseValidationError | ValueError | _Malformed):
        # JSONDecodeError is a ValueError: the body was cut or is not JSON
        return Failure("malformed", True, f"{type(exc).__name__}: {msg}")
    return Failure("internal", False, f"{type(exc).__name__}: {msg}")


class _Malformed(Exception):
    """The body parsed, but is not a usable chat completion."""


def _short(exc: BaseException | None, limit: int = 200) -> str:
    if exc is None:
        return ""
    text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _retry_after(headers: Mapping[str, str]) -> float | None:
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, IndexError):
        return None

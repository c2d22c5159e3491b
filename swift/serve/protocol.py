"""OpenAI request parsing and error bodies for the server (plain Python: no FastAPI, no torch).

Requests are read as JSON dicts and checked by hand, so every rejection is an OpenAI-style error body
(`{"error": {"message", "type", "param", "code"}}`) that names the field or the limit involved.
"""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from swift.infer.protocol import RequestConfig
from swift.utils.errors import SwiftError


class APIError(SwiftError):
    """An error answered to the client as OpenAI error JSON with an HTTP status."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code

    def body(self) -> dict[str, Any]:
        """The OpenAI error body."""
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


@dataclass
class Limits:
    """What one request may ask for; each rejection names the limit it hit."""

    max_tokens_limit: int = 4096
    """Largest `max_tokens` a request may ask for."""
    max_model_len: int | None = None
    """Context length: prompt plus reply in tokens (None = no check)."""
    max_body_bytes: int = 1 << 20
    """Largest request body."""
    max_n: int = 8
    """Largest `n` (replies per request)."""
    default_max_tokens: int = 512
    """Reply length when the request gives no `max_tokens` (capped by the limits)."""


def _number(body: dict[str, Any], key: str, kind: type, default: Any, *, low: float | None = None,
            high: float | None = None) -> Any:
    value = body.get(key)
    if value is None:
        return default
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        ok = ok and float(value).is_integer()
    if not ok:
        raise APIError(400, f"'{key}' must be a {'integer' if kind is int else 'number'}, got {value!r}.",
                       param=key, code="invalid_type")
    value = kind(value)
    if (low is not None and value < low) or (high is not None and value > high):
        raise APIError(400, f"'{key}' must be between {low} and {high}, got {value}.", param=key,
                       code="invalid_value")
    return value


def parse_stop(body: dict[str, Any]) -> list[str] | None:
    stop = body.get("stop")
    if stop is None:
        return None
    if isinstance(stop, str):
        return [stop]
    if isinstance(stop, list) and all(isinstance(s, str) for s in stop) and len(stop) <= 16:
        return list(stop)
    raise APIError(400, "'stop' must be a string or a list of at most 16 strings.", param="stop", code="invalid_type")


def requested_max_tokens(body: dict[str, Any], limits: Limits) -> int | None:
    """`max_completion_tokens` or `max_tokens` as asked (None when not given), checked against the limit."""
    key = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    value = _number(body, key, int, None, low=1)
    if value is not None and value > limits.max_tokens_limit:
        raise APIError(400, f"'{key}' is {value}, more than this server's max_tokens limit of "
                       f"{limits.max_tokens_limit}.", param=key, code="max_tokens_exceeded")
    return value


def check_n(body: dict[str, Any], limits: Limits) -> int:
    n = _number(body, "n", int, 1, low=1)
    if n > limits.max_n:
        raise APIError(400, f"'n' is {n}, more than this server's max_n limit of {limits.max_n}.", param="n",
                       code="n_exceeded")
    return n


def request_config(body: dict[str, Any], max_tokens: int) -> RequestConfig:
    """The engine's RequestConfig for an OpenAI request body (max_tokens already settled)."""
    return RequestConfig(
        max_new_tokens=max_tokens,
        temperature=_number(body, "temperature", float, 0.0, low=0.0, high=2.0),
        top_p=_number(body, "top_p", float, 1.0, low=1e-9, high=1.0),
        top_k=_number(body, "top_k", int, 0, low=0),  # a vLLM extension, as is repetition_penalty
        repetition_penalty=_number(body, "repetition_penalty", float, 1.0, low=1e-3, high=10.0),
        stop=parse_stop(body),
        seed=_number(body, "seed", int, None),
        stream=bool(body.get("stream")),
    )


def settle_max_tokens(asked: int | None, prompt_tokens: int, limits: Limits, param: str) -> int:
    """The reply length to generate: the request's, or the default, within the context length."""
    room = None if limits.max_model_len is None else limits.max_model_len - prompt_tokens
    if room is not None and room < 1:
        raise APIError(400, f"The prompt has {prompt_tokens} tokens, which leaves no room in this model's maximum "
                       f"context length (max_model_len) of {limits.max_model_len} tokens.", param=param,
                       code="context_length_exceeded")
    if asked is not None:
        if room is not None and asked > room:
            raise APIError(400, f"This model's maximum context length (max_model_len) is {limits.max_model_len} "
                           f"tokens, but {prompt_tokens + asked} were requested ({prompt_tokens} in the prompt, "
                           f"{asked} for the reply).", param="max_tokens", code="context_length_exceeded")
        return asked
    default = min(limits.default_max_tokens, limits.max_tokens_limit)
    return default if room is None else max(1, min(default, room))


def chat_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The request's messages, text-only content parts joined into a plain string."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise APIError(400, "'messages' must be a non-empty list.", param="messages", code="invalid_type")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise APIError(400, f"messages[{i}] must be an object with a 'role'.", param=f"messages[{i}]")
        content = m.get("content")
        if isinstance(content, list) and all(isinstance(p, dict) and p.get("type") == "text" for p in content):
            content = "".join(str(p.get("text", "")) for p in content)
        if content is None:
            content = ""
        out.append({"role": m["role"], "content": content})
    return out


def completion_prompts(body: dict[str, Any]) -> list[str]:
    """The prompt(s) of a /v1/completions request (a string or a list of strings)."""
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        return [prompt]
    if isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
        return list(prompt)
    raise APIError(400, "'prompt' must be a string or a non-empty list of strings.", param="prompt",
                   code="invalid_type")


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def now() -> int:
    return int(time.time())


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}

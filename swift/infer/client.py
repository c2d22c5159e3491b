"""`InferClient`: the `Engine` protocol over any OpenAI-compatible HTTP server (`swift deploy`, vLLM, ...).

It uses the `openai` package (the `serve` extra). Requests go one HTTP call each; `infer` sends a list of
requests concurrently from a few threads, so a batching server can decode them together.
"""
from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from swift.infer.protocol import InferRequest, InferResponse, RequestConfig
from swift.utils.errors import SwiftError, require

__all__ = ["InferClient"]


class InferClient:
    """Talk to an OpenAI-compatible server as if it were a local engine.

    Args:
        base_url: The API root, e.g. `http://127.0.0.1:8000/v1` (a missing `/v1` is added).
        api_key: Sent as `Authorization: Bearer <api_key>`; None when the server needs none.
        model: Model name to ask for; default: the first one the server lists.
        max_workers: Requests of one `infer` call sent at once.
        timeout: Seconds to wait for one reply.
    """

    def __init__(self, base_url: str, api_key: str | None = None, model: str | None = None, *,
                 max_workers: int = 8, timeout: float = 600.0):
        openai = require("openai", "serve", "talking to an OpenAI-compatible server")
        url = base_url.rstrip("/")
        if not url.endswith("/v1"):
            url += "/v1"
        self.base_url = url
        self.max_workers = max(1, max_workers)
        self._openai = openai
        self._client = openai.OpenAI(base_url=url, api_key=api_key or "EMPTY", timeout=timeout, max_retries=0)
        self._model = model

    @property
    def model(self) -> str:
        """The model name sent with each request (asked of the server once when not given)."""
        if self._model is None:
            models = self.models()
            if not models:
                raise SwiftError(f"The server at {self.base_url} lists no models.")
            self._model = models[0]
        return self._model

    def models(self) -> list[str]:
        """Names the server serves (GET /v1/models)."""
        return [m.id for m in self._call(self._client.models.list).data]

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except self._openai.APIStatusError as e:
            raise SwiftError(f"The server at {self.base_url} answered {e.status_code}: {_message(e)}") from None
        except self._openai.APIConnectionError as e:
            raise SwiftError(f"Cannot reach the server at {self.base_url}: {e}") from None

    def _kwargs(self, request: InferRequest, config: RequestConfig) -> dict[str, Any]:
        if request.images or request.videos or request.audios:
            raise SwiftError("InferClient sends text messages only; put media in OpenAI content parts instead.")
        kwargs: dict[str, Any] = {"model": getattr(request, "adapter", None) or self.model,
                                  "messages": request.messages, "max_tokens": config.max_new_tokens,
                                  "temperature": config.temperature, "top_p": config.top_p}
        if config.stop:
            kwargs["stop"] = config.stop
        if config.seed is not None:
            kwargs["seed"] = config.seed
        extra = {}
        if config.top_k:
            extra["top_k"] = config.top_k
        if config.repetition_penalty != 1.0:
            extra["repetition_penalty"] = config.repetition_penalty
        if extra:
            kwargs["extra_body"] = extra
        return kwargs

    def infer(self, requests: list[InferRequest], config: RequestConfig | None = None) -> list[InferResponse]:
        """One reply per request, in order (sent concurrently, `max_workers` at a time)."""
        config = config or RequestConfig()
        if not requests:
            return []

        def one(request: InferRequest) -> InferResponse:
            r = self._call(self._client.chat.completions.create, **self._kwargs(request, config))
            choice = r.choices[0]
            usage = r.usage
            return InferResponse(text=choice.message.content or "",
                                 prompt_tokens=usage.prompt_tokens if usage else 0,
                                 completion_tokens=usage.completion_tokens if usage else 0,
                                 finish_reason="length" if choice.finish_reason == "length" else "stop",
                                 extra={"id": r.id, "model": r.model})

        if len(requests) == 1:
            return [one(requests[0])]
        with ThreadPoolExecutor(min(self.max_workers, len(requests)), thread_name_prefix="swift-client") as pool:
            return list(pool.map(one, requests))

    def stream(self, request: InferRequest, config: RequestConfig | None = None) -> Iterator[str]:
        """Yield the reply as text deltas; closing the iterator closes the connection, which stops the server."""
        config = config or RequestConfig()
        events = self._call(self._client.chat.completions.create, stream=True, **self._kwargs(request, config))
        try:
            for chunk in events:
                for choice in chunk.choices:
                    if choice.delta is not None and choice.delta.content:
                        yield choice.delta.content
        finally:
            events.close()


def _message(e: Any) -> str:
    body = getattr(e, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
    return str(e)

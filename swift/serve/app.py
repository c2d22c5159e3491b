"""The OpenAI-compatible HTTP API over any `Engine`: `build_app` returns a FastAPI app.

Routes: `GET /health` (no auth), `GET /v1/models`, `POST /v1/chat/completions`, `POST /v1/completions`
(streaming as server-sent events). Engine calls block, so they run in worker threads. Safety:
an optional API key checked in constant time on every route but /health; 4xx errors naming each limit;
past `max_concurrency` running plus `max_queue` waiting requests the server answers 429 at once; a
streaming client that disconnects closes the engine's stream, which stops its generation.
"""

import asyncio
import contextlib
import hmac
import json
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

from swift.infer.protocol import InferRequest, RequestConfig
from swift.serve import protocol as P
from swift.serve.completion import count_prompt_tokens, raw_request, raw_text_engine
from swift.utils.errors import SwiftError, require
from swift.utils.logging import get_logger

logger = get_logger("swift.serve")


class Gate:
    """Admission control: at most `running` requests run and `waiting` more wait; the rest are refused."""

    def __init__(self, running: int, waiting: int):
        if running < 1 or waiting < 0:
            raise SwiftError(f"max_concurrency must be >= 1 and max_queue >= 0, got {running} and {waiting}.")
        self.capacity = running + waiting
        self.running = threading.BoundedSemaphore(running)
        self._lock = threading.Lock()
        self.admitted = 0

    def try_enter(self) -> bool:
        """Admit one request without waiting; False when running and queue are full."""
        with self._lock:
            if self.admitted >= self.capacity:
                return False
            self.admitted += 1
            return True

    def leave(self) -> None:
        with self._lock:
            self.admitted -= 1


def build_app(engine: Any, *, served_model_name: str, api_key: str | None = None, max_concurrency: int = 16,
              max_queue: int = 32, max_tokens_limit: int = 4096, max_model_len: int | None = None,
              max_body_bytes: int = 1 << 20, max_n: int = 8, default_max_tokens: int = 512) -> Any:
    """Build the FastAPI app serving `engine` under the OpenAI API.

    Args:
        engine: An `Engine` (infer/stream); `engine.adapter_names` (if any) are served as extra model names.
        served_model_name: The name of the base model in `/v1/models` and in requests' `model`.
        api_key: When set, every route but /health needs `Authorization: Bearer <api_key>`.
        max_concurrency: Requests generating at once.
        max_queue: Requests waiting beyond those; more are answered 429.
        max_tokens_limit: Largest `max_tokens` a request may ask for.
        max_model_len: Context length (prompt + reply); None = no check.
        max_body_bytes: Largest request body (413 above).
        max_n: Largest `n`.
        default_max_tokens: Reply length when a request gives none.

    Returns:
        A `fastapi.FastAPI` app (serve it with uvicorn).
    """
    fastapi = require("fastapi", "serve", "swift deploy")
    from fastapi import Request
    from fastapi.responses import JSONResponse, StreamingResponse

    limits = P.Limits(max_tokens_limit=max_tokens_limit, max_model_len=max_model_len,
                      max_body_bytes=max_body_bytes, max_n=max_n, default_max_tokens=default_max_tokens)
    gate = Gate(max_concurrency, max_queue)
    raw_engine: list[Any] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        yield
        for raw in raw_engine:  # the completions engine is ours to stop; the chat engine is the caller's
            close = getattr(raw, "close", None)
            if close is not None:
                close()

    app = fastapi.FastAPI(title="SwiftLab", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.engine, app.state.gate = engine, gate

    @app.exception_handler(P.APIError)
    async def _api_error(request: Request, exc: P.APIError) -> Any:
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(Exception)
    async def _internal_error(request: Request, exc: Exception) -> Any:
        logger.error("request failed: %r", exc)  # the details stay in the server log
        body = P.APIError(500, "internal server error", type="server_error").body()
        return JSONResponse(body, status_code=500)

    def check_auth(request: Request) -> None:
        if api_key is None:
            return
        given = request.headers.get("authorization", "")
        token = given[7:] if given[:7].lower() == "bearer " else ""
        if not hmac.compare_digest(token.encode(), api_key.encode()):
            raise P.APIError(401, "Invalid or missing API key: send 'Authorization: Bearer <api_key>'.",
                             type="authentication_error", code="invalid_api_key")

    async def read_body(request: Request) -> dict[str, Any]:
        size = request.headers.get("content-length")
        if size is not None and size.isdigit() and int(size) > limits.max_body_bytes:
            raise _too_large(int(size), limits)
        chunks, total = [], 0
        async for chunk in request.stream():
            total += len(chunk)
            if total > limits.max_body_bytes:
                raise _too_large(total, limits)
            chunks.append(chunk)
        try:
            body = json.loads(b"".join(chunks) or b"null")
        except ValueError as e:
            raise P.APIError(400, f"The body is not valid JSON: {e}", code="invalid_json") from None
        if not isinstance(body, dict):
            raise P.APIError(400, "The body must be a JSON object.", code="invalid_json")
        return body

    def model_names() -> list[str]:
        return [served_model_name] + [a for a in getattr(engine, "adapter_names", None) or [] if a]

    def pick_adapter(body: dict[str, Any]) -> str | None:
        name = body.get("model") or served_model_name
        if name == served_model_name:
            return None
        if name in model_names():
            return name
        raise P.APIError(404, f"The model '{name}' does not exist; this server has: {', '.join(model_names())}.",
                         param="model", code="model_not_found")

    def make_request(messages: list[dict[str, Any]], adapter: str | None) -> InferRequest:
        req = InferRequest(messages=messages)
        if adapter is not None:
            if not hasattr(req, "adapter"):
                raise P.APIError(400, "This engine cannot switch LoRA adapters per request.", param="model")
            req.adapter = adapter  # type: ignore[attr-defined]
        return req

    def admit() -> None:
        if not gate.try_enter():
            raise P.APIError(429, f"The server is busy: {max_concurrency} requests are running and {max_queue} "
                             "waiting (max_concurrency, max_queue). Retry later.", type="rate_limit_error",
                             code="server_busy")

    async def run_blocking(fn: Callable[[], Any]) -> Any:
        """Run an engine call in a worker thread holding a running slot; the admission slot is released after."""
        import anyio

        def job() -> Any:
            with gate.running:
                return fn()

        try:
            return await anyio.to_thread.run_sync(job)
        except SwiftError as e:
            if isinstance(e, P.APIError):
                raise
            raise P.APIError(400, str(e)) from None
        finally:
            gate.leave()

    @app.get("/health")
    async def health() -> Any:
        return {"status": "ok"}

    @app.get("/v1/models")
    async def models(request: Request) -> Any:
        check_auth(request)
        created = P.now()
        return {"object": "list", "data": [{"id": n, "object": "model", "created": created, "owned_by": "swiftlab",
                                            "root": served_model_name} for n in model_names()]}

    async def prepare(request: Request, kind: str) -> tuple[dict[str, Any], list[InferRequest], RequestConfig, Any,
                                                              int]:
        """Check and parse a request: (body, engine requests, config, engine to use, n)."""
        body = await read_body(request)
        adapter = pick_adapter(body)
        n = P.check_n(body, limits)
        asked = P.requested_max_tokens(body, limits)
        P.request_config(body, 1)  # check the sampling fields before any work
        if kind == "chat":
            messages = P.chat_messages(body)
            use = engine
            prompt_tokens = await _in_thread(lambda: count_prompt_tokens(engine, messages))
            base = [make_request(messages, adapter)]
            param = "messages"
        else:
            prompts = P.completion_prompts(body)
            if not raw_engine:
                try:
                    raw_engine.append(raw_text_engine(engine))
                except SwiftError as e:
                    raise P.APIError(400, str(e), param="prompt", code="unsupported") from None
            use = raw_engine[0]
            counts = await _in_thread(lambda: [count_prompt_tokens(engine, text=p) for p in prompts])
            prompt_tokens = max(counts)
            try:
                base = [raw_request(p) for p in prompts]
            except SwiftError as e:
                raise P.APIError(400, str(e), param="prompt") from None
            if adapter is not None:
                if adapter not in (getattr(use, "adapter_names", None) or []):
                    raise P.APIError(400, f"/v1/completions cannot use the LoRA adapter '{adapter}' with this "
                                     "engine; use /v1/chat/completions.", param="model", code="unsupported")
                base = [make_request(r.messages, adapter) for r in base]
            param = "prompt"
        max_tokens = P.settle_max_tokens(asked, prompt_tokens, limits, param)
        config = P.request_config(body, max_tokens)
        return body, [r for r in base for _ in range(n)], config, use, n

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Any:
        return await _generate(request, "chat")

    @app.post("/v1/completions")
    async def completions(request: Request) -> Any:
        return await _generate(request, "text")

    async def _generate(request: Request, kind: str) -> Any:
        check_auth(request)
        admit()  # before any work, so an overloaded server answers 429 at once
        handed_over = False  # once a stream job or run_blocking holds the admission slot, it releases it
        try:
            body, reqs, config, use, n = await prepare(request, kind)
            model = body.get("model") or served_model_name
            rid = P.new_id("chatcmpl" if kind == "chat" else "cmpl")
            if config.stream:
                include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
                job = _StreamJob(use, reqs, config, gate)
                handed_over = True
                return StreamingResponse(_stream_events(job, request, kind, rid, model, include_usage),
                                         media_type="text/event-stream",
                                         headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
            handed_over = True
        except SwiftError as e:
            if isinstance(e, P.APIError):
                raise
            raise P.APIError(400, str(e)) from None
        finally:
            if not handed_over:
                gate.leave()
        responses = await run_blocking(lambda: use.infer(reqs, config))
        choices = []
        for i, r in enumerate(responses):
            if kind == "chat":
                choices.append({"index": i, "message": {"role": "assistant", "content": r.text},
                                "finish_reason": r.finish_reason, "logprobs": None})
            else:
                choices.append({"index": i, "text": r.text, "finish_reason": r.finish_reason, "logprobs": None})
        prompt_tokens = sum(r.prompt_tokens for r in responses[::n])
        return {"id": rid, "object": "chat.completion" if kind == "chat" else "text_completion",
                "created": P.now(), "model": model, "choices": choices,
                "usage": P.usage(prompt_tokens, sum(r.completion_tokens for r in responses))}

    return app


def _too_large(size: int, limits: P.Limits) -> P.APIError:
    return P.APIError(413, f"The request body has {size} bytes, more than this server's max_body_bytes limit of "
                      f"{limits.max_body_bytes}.", code="body_too_large")


async def _in_thread(fn: Callable[[], Any]) -> Any:
    import anyio

    try:
        return await anyio.to_thread.run_sync(fn)
    except SwiftError as e:
        raise P.APIError(400, str(e)) from None


def _sse(data: dict[str, Any] | str) -> bytes:
    return f"data: {data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)}\n\n".encode()


class _StreamJob:
    """One streamed request: a worker thread owns the engine iterators and closes them when told to stop.

    The worker starts at once (before the response is sent), so its admission slot is always released."""

    def __init__(self, engine: Any, reqs: list[InferRequest], config: RequestConfig, gate: Gate):
        self.engine, self.reqs, self.config, self.gate = engine, reqs, config, gate
        self.loop = asyncio.get_running_loop()
        self.items: asyncio.Queue = asyncio.Queue()
        self.stop = threading.Event()
        threading.Thread(target=self._work, name="swift-serve-stream", daemon=True).start()

    def _put(self, *item: Any) -> None:
        try:
            self.loop.call_soon_threadsafe(self.items.put_nowait, item)
        except RuntimeError:  # the event loop has closed (server shutdown): nobody is listening
            self.stop.set()

    def _work(self) -> None:
        try:
            with self.gate.running:
                for index, req in enumerate(self.reqs):
                    if self.stop.is_set():
                        break
                    it = self.engine.stream(req, self.config)
                    try:
                        for delta in it:
                            self._put("delta", index, delta)
                            if self.stop.is_set():
                                break
                    finally:
                        close = getattr(it, "close", None)
                        if close is not None:
                            close()  # closing the engine's iterator stops its generation
                    self._put("done", index, None)
        except BaseException as e:  # handed to the event loop, which reports it in the stream
            self._put("error", -1, e)
        finally:
            self.gate.leave()
            self._put("end", -1, None)


async def _stream_events(job: _StreamJob, request: Any, kind: str, rid: str, model: str,
                         include_usage: bool) -> AsyncIterator[bytes]:
    """SSE chunks for the job's replies, one after another; a disconnect stops generation."""
    created = P.now()

    def chunk(index: int, text: str | None, finish: str | None, first: bool = False) -> dict[str, Any]:
        if kind == "chat":
            delta: dict[str, Any] = {"role": "assistant", "content": ""} if first else {}
            if text:
                delta["content"] = text
            choice = {"index": index, "delta": delta, "finish_reason": finish, "logprobs": None}
            return {"id": rid, "object": "chat.completion.chunk", "created": created, "model": model,
                    "choices": [choice]}
        return {"id": rid, "object": "text_completion", "created": created, "model": model,
                "choices": [{"index": index, "text": text or "", "finish_reason": finish, "logprobs": None}]}

    prompt_tokens = _stream_prompt_tokens(job.engine, job.reqs)
    completion_tokens = 0
    texts: dict[int, str] = {}
    try:
        if kind == "chat":
            for index in range(len(job.reqs)):
                yield _sse(chunk(index, None, None, first=True))
        while True:
            try:
                what, index, value = await asyncio.wait_for(job.items.get(), timeout=0.5)
            except asyncio.TimeoutError:
                if await request.is_disconnected():
                    return
                continue
            if what == "end":
                break
            if what == "error":
                msg = str(value) if isinstance(value, SwiftError) else "internal error while generating"
                if not isinstance(value, SwiftError):
                    logger.error("generation failed: %r", value)
                yield _sse({"error": {"message": msg, "type": "server_error", "param": None, "code": None}})
                break
            if what == "delta":
                texts[index] = texts.get(index, "") + value
                yield _sse(chunk(index, value, None))
            else:
                n_tokens = _count(job.engine, texts.get(index, ""))
                completion_tokens += n_tokens
                finish = "length" if n_tokens >= job.config.max_new_tokens else "stop"
                yield _sse(chunk(index, None, finish))
            if await request.is_disconnected():
                return
        if include_usage:
            yield _sse({"id": rid, "object": "chat.completion.chunk" if kind == "chat" else "text_completion",
                        "created": created, "model": model, "choices": [],
                        "usage": P.usage(prompt_tokens, completion_tokens)})
        yield _sse("[DONE]")
    finally:
        job.stop.set()  # the worker closes the engine's iterator at its next delta


def _count(engine: Any, text: str) -> int:
    tokenizer = getattr(engine, "tokenizer", None)
    return len(tokenizer.encode(text, add_special_tokens=False)) if tokenizer is not None and text else 0


def _stream_prompt_tokens(engine: Any, reqs: list[InferRequest]) -> int:
    if not reqs:
        return 0
    try:
        from swift.serve.completion import RawTextPrompt

        if isinstance(getattr(engine, "template", None), RawTextPrompt):
            return count_prompt_tokens(engine, text=str(reqs[0].messages[-1]["content"]))
        return count_prompt_tokens(engine, reqs[0].messages)
    except SwiftError:
        return 0

"""`PtEngine`: inference with plain PyTorch and continuous batching.

Text requests, from any number of threads, run through a `BatchScheduler` (`swift.infer.batching`): they
join the running batch and leave it between decoding steps, each with its own KV cache, so a batched
greedy reply is the same, token for token, as the reply to the same prompt alone. Several LoRA adapters
over one base model can be loaded and chosen per request. Multimodal requests go through `generate` (left
padded batches, one call at a time). Replies end at the template's stop tokens (eos, end of turn), at
the user's stop strings, or at `max_new_tokens`.
"""
from __future__ import annotations

import contextlib
import copy
import queue
import threading
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

import torch
from transformers import StoppingCriteria, StoppingCriteriaList
from transformers.generation.streamers import BaseStreamer

from swift.infer.batching import END as _END
from swift.infer.batching import BatchScheduler, GenRequest
from swift.infer.batching import Failure as _Failure
from swift.infer.protocol import FinishReason, InferRequest, InferResponse, RequestConfig, find_stop
from swift.infer.streaming import IncrementalDecoder, StopStringFilter
from swift.utils.errors import SwiftError

__all__ = ["PtEngine", "PromptTemplate"]


class PromptTemplate(Protocol):
    """The part of `swift.templates.Template` that inference needs."""

    stop_token_ids: list[int]

    def encode_prompt(self, messages: list[dict[str, Any]]) -> list[int]:
        """Token ids of the chat history (ending with a user turn) plus the generation prompt."""
        ...


class PtEngine:
    """Generate with a `transformers` causal LM (optionally a peft model) on its own device.

    Args:
        model: A causal LM with `generate` (a `PreTrainedModel` or a `PeftModel`).
        tokenizer: Its tokenizer; used to decode and to pick the padding id.
        template: Encodes messages to prompt ids and names the stop token ids.
        max_batch_size: Most sequences decoded together in one step (or run through one `generate` call).
        mm_encoder: For a multimodal model, a `swift.data.mm_encode.MultiModalEncoder`: requests' images,
            videos and audios are encoded with it.
        adapters: LoRA adapters to serve, {name: peft adapter folder}; a request picks one by
            `InferRequest.adapter`. A plain model is wrapped in a `PeftModel` in place (the request without
            an adapter then runs the base model with the adapters disabled); to a peft model the adapters
            are added, and a request without an adapter runs its adapter active at construction.
    """

    def __init__(self, model: Any, tokenizer: Any, template: PromptTemplate, *, max_batch_size: int = 16,
                 mm_encoder: Any = None, adapters: dict[str, str] | None = None):
        if max_batch_size < 1:
            raise SwiftError(f"max_batch_size must be at least 1, got {max_batch_size}.")
        self._adapter_names: list[str] = []
        self._default_adapter: str | None = None
        if adapters:
            model = self._load_adapters(model, adapters)
        self.model = model
        self.template = template
        self.max_batch_size = max_batch_size
        self.mm_encoder = mm_encoder
        self.tokenizer = getattr(tokenizer, "tokenizer", tokenizer)  # a processor's text tokenizer
        tokenizer = self.tokenizer
        self.stop_token_ids = [int(t) for t in template.stop_token_ids]
        if not self.stop_token_ids and tokenizer.eos_token_id is not None:
            self.stop_token_ids = [int(tokenizer.eos_token_id)]
        pad = tokenizer.pad_token_id
        if pad is None:
            pad = self.stop_token_ids[0] if self.stop_token_ids else 0
        self.pad_token_id = int(pad)
        # one generate at a time: a model (and its KV cache) is not shared safely between threads
        self._lock = threading.Lock()
        self._scheduler: BatchScheduler | None = None
        model.eval()

    def _load_adapters(self, model: Any, adapters: dict[str, str]) -> Any:
        """Load each adapter by name; returns the (peft) model that carries them."""
        from peft import PeftModel

        items = list(adapters.items())
        if isinstance(model, PeftModel):
            self._default_adapter = model.active_adapter
        else:
            name, path = items.pop(0)
            try:
                model = PeftModel.from_pretrained(model, path, adapter_name=name)
            except Exception as e:
                raise SwiftError(f"cannot load LoRA adapter {name!r} from {path}: {e}") from e
            self._adapter_names.append(name)
        for name, path in items:
            if name in self._adapter_names or name in getattr(model, "peft_config", {}):
                raise SwiftError(f"the adapter name {name!r} is used twice.")
            try:
                model.load_adapter(path, adapter_name=name)
            except Exception as e:
                raise SwiftError(f"cannot load LoRA adapter {name!r} from {path}: {e}") from e
            self._adapter_names.append(name)
        return model

    @property
    def adapter_names(self) -> list[str]:
        """Names of the LoRA adapters a request may choose with `InferRequest.adapter`."""
        return list(self._adapter_names)

    @property
    def batch_sizes(self) -> list[int]:
        """How many sequences each batched decoding step so far ran together."""
        return list(self._scheduler.batch_sizes) if self._scheduler is not None else []

    def _check_adapter(self, name: str | None) -> None:
        if name is not None and name not in self._adapter_names:
            known = ", ".join(self._adapter_names) or "none are loaded"
            raise SwiftError(f"unknown LoRA adapter {name!r}; known adapters: {known}.")

    @contextlib.contextmanager
    def _adapter_context(self, name: str | None) -> Iterator[None]:
        """Run the model with adapter `name` (None: the model as given) inside the block."""
        if not self._adapter_names:
            yield
        elif name is None and self._default_adapter is None:
            with self.model.disable_adapter():
                yield
        else:
            self.model.set_adapter(name or self._default_adapter)
            yield

    def _batcher(self) -> BatchScheduler:
        if self._scheduler is None:
            self._scheduler = BatchScheduler(self.model, self.tokenizer, self.stop_token_ids,
                                             max_batch_size=self.max_batch_size, lock=self._lock,
                                             adapter_context=self._adapter_context)
        return self._scheduler

    def sibling(self, template: PromptTemplate, stop_token_ids: list[int]) -> PtEngine:
        """An engine over the same model, adapters and lock with another prompt encoding and stop ids (e.g. raw
        text for completions); it batches its own requests. `close()` it when done."""
        other = copy.copy(self)
        other.template, other.stop_token_ids, other._scheduler = template, list(stop_token_ids), None
        return other

    def close(self) -> None:
        """Stop the batching worker thread (a later request starts a new one)."""
        if self._scheduler is not None:
            self._scheduler.close()
            self._scheduler = None

    @property
    def device(self) -> torch.device:
        """Where the prompt ids go (the device of the input embeddings)."""
        return self.model.get_input_embeddings().weight.device

    # ----------------------------------------------------------------------------- non-streaming
    def infer(self, requests: list[InferRequest], config: RequestConfig | None = None) -> list[InferResponse]:
        """Generate one reply per request, batching up to `max_batch_size` prompts of similar length.

        Args:
            requests: Conversations, each ending with a user turn.
            config: Generation settings; greedy with 512 new tokens when None.

        Returns:
            One `InferResponse` per request, in the order of `requests`.
        """
        config = config or RequestConfig()
        for r in requests:
            self._check_adapter(r.adapter)
        prompts = [self._encode(r) for r in requests]
        if self.mm_encoder is None:
            return self._infer_batched(requests, prompts, config)
        # similar lengths share a batch, so there is little padding; the order is restored below
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]["input_ids"]))
        results: list[InferResponse | None] = [None] * len(prompts)
        for start in range(0, len(order), self.max_batch_size):
            chunk = order[start:start + self.max_batch_size]
            adapters = {requests[i].adapter for i in chunk}
            for adapter in adapters:  # one adapter per generate call
                part = [i for i in chunk if requests[i].adapter == adapter]
                for i, resp in zip(part, self._generate_batch([prompts[i] for i in part], config, adapter)):
                    results[i] = resp
        return [r for r in results if r is not None]

    def _infer_batched(self, requests: list[InferRequest], prompts: list[dict[str, Any]],
                       config: RequestConfig) -> list[InferResponse]:
        """Submit every prompt to the continuous batcher and wait for all replies."""
        batcher = self._batcher()
        seqs = [batcher.submit(GenRequest(p["input_ids"], config, r.adapter)) for r, p in zip(requests, prompts)]
        try:
            for seq in seqs:
                seq.done.wait()
        finally:
            for seq in seqs:
                seq.cancel.set()
        for seq in seqs:
            if seq.error is not None:
                raise seq.error
        return [self._finish(list(s.generated), len(s.prompt_ids), s.stop_at, config) for s in seqs]

    def _encode(self, request: InferRequest) -> dict[str, Any]:
        """{"input_ids": prompt ids, ...media tensors and per-token lists of a multimodal model}."""
        if not request.messages:
            raise SwiftError("An inference request has no messages; give at least one user message.")
        has_media = bool(request.images or request.videos or request.audios)
        if self.mm_encoder is not None:
            from swift.data.formats import RowError, normalize
            from swift.templates.mm_plugins import LIST_KEYS

            row: dict[str, Any] = {"messages": request.messages}
            for key in LIST_KEYS.values():
                if getattr(request, key):
                    row[key] = list(getattr(request, key))
            try:  # OpenAI content parts become tags; items without tags go before the first user message
                row = normalize(row, "messages", mode="infer")
            except RowError as e:
                raise SwiftError(f"bad request ({e.field}): {e.message}") from None
            out = dict(self.mm_encoder.encode_prompt(row))
        elif has_media:
            raise SwiftError("This model takes text only, but the request has images, videos or audios.")
        else:
            out = {"input_ids": list(self.template.encode_prompt(request.messages))}
        if not out["input_ids"]:
            raise SwiftError("The template encoded the request's messages to an empty prompt.")
        return out

    def _model_inputs(self, prompts: list[dict[str, Any]]) -> tuple[dict[str, torch.Tensor], int]:
        """Left-padded ids and mask (every prompt ends at the same column), plus media tensors in order."""
        width = max(len(p["input_ids"]) for p in prompts)
        inputs: dict[str, Any] = {}
        for key, fill in (("input_ids", self.pad_token_id), ("attention_mask", 0), ("mm_token_type_ids", 0)):
            if key != "attention_mask" and key not in prompts[0]:
                continue
            t = torch.full((len(prompts), width), fill, dtype=torch.long)
            for row, p in enumerate(prompts):
                n = len(p["input_ids"])
                t[row, width - n:] = 1 if key == "attention_mask" else torch.as_tensor(p[key], dtype=torch.long)
            inputs[key] = t
        media = dict.fromkeys(k for p in prompts for k in p if k not in ("input_ids", "mm_token_type_ids"))
        if media:
            from swift.data.mm_dataset import cat_media

            for key in media:
                inputs[key] = cat_media([p[key] for p in prompts if key in p])
        dtype = next((p.dtype for p in self.model.parameters() if p.is_floating_point()), None)
        moved = {k: v.to(self.device, dtype=dtype if v.is_floating_point() and dtype is not None else None)
                 for k, v in inputs.items()}
        return moved, width

    def _generate_batch(self, prompts: list[dict[str, Any]], config: RequestConfig,
                        adapter: str | None = None) -> list[InferResponse]:
        inputs, width = self._model_inputs(prompts)
        stopper = _StopStringCriteria(self.tokenizer, config.stop, self.stop_token_ids, width, len(prompts))
        criteria = StoppingCriteriaList([stopper] if stopper.stops else [])
        with (self._lock, self._adapter_context(adapter), _seeded(config.seed, self.device),
              torch.inference_mode()):
            out = self.model.generate(**inputs, stopping_criteria=criteria, **self._generate_kwargs(config))
        out = out.cpu()
        return [self._finish(out[row, width:].tolist(), len(prompts[row]["input_ids"]), stopper.stop_at[row],
                             config) for row in range(len(prompts))]

    def _finish(self, generated: list[int], prompt_len: int, stop_at: int | None,
                config: RequestConfig) -> InferResponse:
        """Cut the generated ids at the first stop token or stop string and build the response."""
        limit = stop_at if stop_at is not None else len(generated)
        ids, n_completion, reason = generated[:limit], limit, "length"
        if stop_at is not None:
            reason = "stop"
        stop_set = set(self.stop_token_ids)
        for j, tok in enumerate(ids):
            if tok in stop_set:
                ids, n_completion, reason = ids[:j], j + 1, "stop"
                break
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        cut = find_stop(text, config.stop)
        if cut is not None:
            text, reason = text[:cut], "stop"
        return InferResponse(text=text, prompt_tokens=prompt_len, completion_tokens=n_completion,
                             finish_reason=_as_reason(reason), token_ids=ids)

    def _generate_kwargs(self, config: RequestConfig) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "max_new_tokens": config.max_new_tokens,
            "do_sample": config.do_sample,
            "num_beams": 1,
            "eos_token_id": list(self.stop_token_ids),
            "pad_token_id": self.pad_token_id,
            "repetition_penalty": config.repetition_penalty,
        }
        if config.do_sample:  # greedy leaves them unset: the model's sampling defaults then draw no warning
            kwargs.update(temperature=config.temperature, top_p=config.top_p, top_k=config.top_k)
        return kwargs

    # ----------------------------------------------------------------------------------- streaming
    def stream(self, request: InferRequest, config: RequestConfig | None = None) -> Iterator[str]:
        """Yield the reply to one request as text deltas, as it is generated.

        Deltas never split a character, stop strings are never shown (not even their first characters),
        and the deltas concatenate to the text `infer` returns for the same request and config. Closing
        the iterator early stops generation.
        """
        config = config or RequestConfig()
        self._check_adapter(request.adapter)
        prompt = self._encode(request)
        if self.mm_encoder is None:
            seq = self._batcher().submit(GenRequest(prompt["input_ids"], config, request.adapter))
            try:
                yield from self._stream_text(seq.tokens, config)
            finally:
                seq.cancel.set()
            return
        tokens: queue.Queue = queue.Queue()
        cancel = threading.Event()
        worker = threading.Thread(target=self._stream_worker, args=(prompt, config, tokens, cancel, request.adapter),
                                  name="swift-pt-stream", daemon=True)
        worker.start()
        try:
            yield from self._stream_text(tokens, config)
        finally:
            cancel.set()
            worker.join()

    def _stream_worker(self, prompt: dict[str, Any], config: RequestConfig, tokens: queue.Queue,
                       cancel: threading.Event, adapter: str | None = None) -> None:
        try:
            inputs, _ = self._model_inputs([prompt])
            with (self._lock, self._adapter_context(adapter), _seeded(config.seed, self.device),
                  torch.inference_mode()):
                self.model.generate(
                    **inputs,
                    streamer=_QueueStreamer(tokens), stopping_criteria=StoppingCriteriaList([_Cancel(cancel)]),
                    **self._generate_kwargs(config))
        except BaseException as e:  # handed to the consuming thread, which re-raises it
            tokens.put(_Failure(e))
        finally:
            tokens.put(_END)

    def _stream_text(self, tokens: queue.Queue, config: RequestConfig) -> Iterator[str]:
        decoder = IncrementalDecoder(self.tokenizer)
        filt = StopStringFilter(config.stop)
        stop_set = set(self.stop_token_ids)
        while True:
            item = tokens.get()
            if item is _END:
                break
            if isinstance(item, _Failure):
                raise item.error
            if item in stop_set:
                break
            text, stopped = filt.feed(decoder.push(item))
            if text:
                yield text
            if stopped:
                return
        text, stopped = filt.feed(decoder.flush())
        text += "" if stopped else filt.flush()
        if text:
            yield text


def _as_reason(reason: str) -> FinishReason:
    return "stop" if reason == "stop" else "length"


@contextlib.contextmanager
def _seeded(seed: int | None, device: torch.device) -> Iterator[None]:
    """Seed sampling for one call without changing the caller's random state."""
    if seed is None:
        yield
        return
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


class _StopStringCriteria(StoppingCriteria):
    """Ends each row once its text contains a stop string; records after how many new tokens."""

    def __init__(self, tokenizer: Any, stops: Sequence[str] | None, stop_token_ids: list[int],
                 prompt_width: int, batch_size: int):
        self.stops = [s for s in stops or () if s]
        self.stop_token_ids = set(stop_token_ids)
        self.prompt_width = prompt_width
        self.stop_at: list[int | None] = [None] * batch_size
        self._done = [False] * batch_size
        self._decoders = [IncrementalDecoder(tokenizer) for _ in range(batch_size)] if self.stops else []
        self._filters = [StopStringFilter(self.stops) for _ in range(batch_size)] if self.stops else []

    def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
        n_new = input_ids.shape[1] - self.prompt_width
        last = input_ids[:, -1].tolist()
        for row, tok in enumerate(last):
            if self._done[row]:
                continue
            if tok in self.stop_token_ids:  # generate's own eos check ends this row
                self._done[row] = True
                continue
            _, stopped = self._filters[row].feed(self._decoders[row].push(tok))
            if stopped:
                self._done[row] = True
                self.stop_at[row] = n_new
        return torch.tensor([at is not None for at in self.stop_at], dtype=torch.bool, device=input_ids.device)


class _Cancel(StoppingCriteria):
    """Ends generation when the streaming consumer has gone away or saw a stop string."""

    def __init__(self, event: threading.Event):
        self.event = event

    def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)


class _QueueStreamer(BaseStreamer):
    """Puts each generated token id on a queue (the prompt, pushed first by `generate`, is skipped)."""

    def __init__(self, tokens: queue.Queue):
        self.tokens = tokens
        self._prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self._prompt_seen:
            self._prompt_seen = True
            return
        for tok in value.reshape(-1).tolist():
            self.tokens.put(int(tok))

    def end(self) -> None:  # the worker thread signals the end itself, also after a failure
        pass

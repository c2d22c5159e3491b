"""Continuous batching for `PtEngine`: requests join and leave a running batch between decoding steps.

One worker thread owns the model. Each step it admits waiting requests (each is prefilled alone, so its
first token is exactly the one `generate` would give), then runs ONE batched decode step for the active
sequences of one adapter group: their KV caches are left padded to a common length, the attention mask
hides the padding and the position ids count each sequence's own tokens. Each new token goes to its
request's queue; finished and cancelled sequences leave the batch. Groups of different LoRA adapters take
turns (round-robin), one adapter per forward pass.
"""
from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import DynamicCache, LogitsProcessorList
from transformers.generation.logits_process import (
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from swift.infer.protocol import RequestConfig
from swift.infer.streaming import IncrementalDecoder, StopStringFilter

__all__ = ["BatchScheduler", "GenRequest", "END", "Failure"]

_KV = list[tuple[torch.Tensor, torch.Tensor]]  # per layer: keys and values, shape [1, heads, length, dim]


class Failure:
    """An error raised while generating, handed to the request's consumer to re-raise."""

    def __init__(self, error: BaseException):
        self.error = error


END = object()
"""Put on a sequence's queue after its last token (also after a `Failure`)."""


@dataclass(eq=False)
class GenRequest:
    """One request inside the scheduler.

    Args:
        prompt_ids: The encoded prompt.
        config: Its generation settings.
        adapter: The LoRA adapter to run it with (None: the model as given).
    """

    prompt_ids: list[int]
    config: RequestConfig
    adapter: str | None = None
    tokens: queue.Queue = field(default_factory=queue.Queue)
    """Each generated id as it comes, then `END` (a `Failure` before it on an error)."""
    cancel: threading.Event = field(default_factory=threading.Event)
    """Set by the consumer to drop the sequence at the next step."""
    done: threading.Event = field(default_factory=threading.Event)
    generated: list[int] = field(default_factory=list)
    stop_at: int | None = None
    """How many generated tokens end with a stop string, when one completed."""
    error: BaseException | None = None
    cache: _KV | None = None
    _processors: LogitsProcessorList | None = None
    _generator: torch.Generator | None = None
    _stop_filter: tuple[IncrementalDecoder, StopStringFilter] | None = None


class BatchScheduler:
    """Runs `GenRequest`s on a model with continuous batching in a worker thread of its own.

    Args:
        model: A causal LM (or a peft model) taking `past_key_values`.
        tokenizer: Decodes tokens for stop strings.
        stop_token_ids: Ids that end a sequence (the stop token is generated and counted).
        max_batch_size: Most sequences active at once; the others wait.
        lock: Held during every forward pass (shared with other users of the model).
        adapter_context: Gives a context manager that makes the model run with a named adapter.
    """

    def __init__(self, model: Any, tokenizer: Any, stop_token_ids: list[int], *, max_batch_size: int,
                 lock: threading.Lock, adapter_context: Callable[[str | None], AbstractContextManager[None]]):
        self.model = model
        self.tokenizer = tokenizer
        self.stop_token_ids = set(stop_token_ids)
        self.max_batch_size = max_batch_size
        self.lock = lock
        self.adapter_context = adapter_context
        self.batch_sizes: list[int] = []
        """The number of sequences in each batched decode step run so far."""
        self.max_length = int(getattr(getattr(model, "config", None), "max_position_embeddings", 0) or 0)
        self._cond = threading.Condition()
        self._waiting: list[GenRequest] = []
        self._active: list[GenRequest] = []
        self._turn = 0
        self._batched: tuple[list[GenRequest], DynamicCache, torch.Tensor, list[int]] | None = None
        self._thread: threading.Thread | None = None
        self._closed = False

    # ------------------------------------------------------------------------------ consumer side
    def submit(self, seq: GenRequest) -> GenRequest:
        """Queue a sequence; its tokens arrive on `seq.tokens` and `seq.done` is set at its end."""
        with self._cond:
            if self._closed:
                raise RuntimeError("the batch scheduler is closed")
            self._waiting.append(seq)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="swift-batching", daemon=True)
                self._thread.start()
            self._cond.notify()
        return seq

    def close(self) -> None:
        """Stop the worker thread once its current step ends (queued sequences are failed)."""
        with self._cond:
            self._closed = True
            self._cond.notify()

    # -------------------------------------------------------------------------------- worker side
    def _loop(self) -> None:
        while True:
            with self._cond:
                while not (self._waiting or self._active or self._closed):
                    self._cond.wait()
                if self._closed:
                    for seq in self._waiting + self._active:
                        self._finish(seq, RuntimeError("the batch scheduler was closed"))
                    self._waiting, self._active = [], []
                    return
                room = self.max_batch_size - len(self._active)
                self._active += self._waiting[:room]
                self._waiting = self._waiting[room:]
            try:
                self._step()
            except BaseException as e:  # noqa: BLE001 - e.g. switching adapters failed: fail the step's requests
                self._batched = None
                for seq in list(self._active):
                    self._finish(seq, e)

    def _step(self) -> None:
        for seq in [s for s in self._active if s.cancel.is_set()]:
            self._finish(seq)
        groups: dict[str | None, list[GenRequest]] = {}
        for seq in self._active:
            groups.setdefault(seq.adapter, []).append(seq)
        if not groups:
            return
        keys = list(groups)
        adapter = keys[self._turn % len(keys)]
        self._turn += 1
        group = groups[adapter]
        new = [s for s in group if s.cache is None and not s.generated]
        old = [s for s in group if s not in new]
        with self.lock, self.adapter_context(adapter), torch.inference_mode():
            for seq in new:
                try:
                    self._prefill(seq)
                except BaseException as e:  # noqa: BLE001 - handed to the consumer
                    self._finish(seq, e)
            if old:
                try:
                    self._decode(old)
                except BaseException as e:  # noqa: BLE001 - the whole step failed
                    self._batched = None
                    for seq in old:
                        self._finish(seq, e)

    def _prefill(self, seq: GenRequest) -> None:
        self._setup(seq)
        ids = torch.tensor([seq.prompt_ids], dtype=torch.long, device=self._device())
        out = self.model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=True, logits_to_keep=1)
        seq.cache = _cache_tensors(_out_cache(out))
        self._emit([seq], out.logits[:, -1, :])

    def _decode(self, seqs: list[GenRequest]) -> None:
        device = self._device()
        if self._batched is not None and self._batched[0] == seqs:
            _, cache, mask, lengths = self._batched
        else:
            self._unbatch()
            lengths = [len(s.prompt_ids) + len(s.generated) - 1 for s in seqs]  # tokens in each cache
            cache, mask = _pad_caches([s.cache for s in seqs], lengths, device)
            for s in seqs:
                s.cache = None
        last = torch.tensor([[s.generated[-1]] for s in seqs], dtype=torch.long, device=device)
        mask = torch.cat([mask, torch.ones(len(seqs), 1, dtype=mask.dtype, device=device)], dim=1)
        positions = torch.tensor([[n] for n in lengths], dtype=torch.long, device=device)
        out = self.model(input_ids=last, attention_mask=mask, position_ids=positions, cache=cache, use_cache=True)
        self.batch_sizes.append(len(seqs))
        self._batched = (list(seqs), _out_cache(out), mask, [n + 1 for n in lengths])
        self._emit(seqs, out.logits[:, -1, :])

    def _unbatch(self) -> None:
        """Give each live sequence of the last batched step its own (unpadded) cache back."""
        if self._batched is None:
            return
        seqs, cache, mask, lengths = self._batched
        self._batched = None
        width = mask.shape[1]
        layers = _cache_tensors(cache)
        for row, seq in enumerate(seqs):
            if seq.done.is_set():
                continue
            start = width - lengths[row]
            seq.cache = [(k[row:row + 1, :, start:], v[row:row + 1, :, start:]) for k, v in layers]

    def _emit(self, seqs: list[GenRequest], logits: torch.Tensor) -> None:
        """Pick each sequence's next token, hand it over, and end the sequences that are done."""
        logits = logits.float()
        plain = all(s._processors is None and s._generator is None for s in seqs)
        picked = logits.argmax(-1).tolist() if plain else [self._pick(s, logits[i:i + 1]) for i, s in
                                                           enumerate(seqs)]
        for seq, tok in zip(seqs, picked):
            tok = int(tok)
            seq.generated.append(tok)
            seq.tokens.put(tok)
            if self._ends(seq, tok):
                self._finish(seq)

    def _pick(self, seq: GenRequest, logits: torch.Tensor) -> int:
        if seq._processors is not None:
            ids = torch.tensor([seq.prompt_ids + seq.generated], dtype=torch.long, device=logits.device)
            logits = seq._processors(ids, logits)
        if not seq.config.do_sample:
            return int(logits.argmax(-1))
        probs = torch.softmax(logits, dim=-1)
        return int(torch.multinomial(probs, 1, generator=seq._generator))

    def _ends(self, seq: GenRequest, tok: int) -> bool:
        if tok in self.stop_token_ids or seq.cancel.is_set():
            return True
        if seq._stop_filter is not None:
            decoder, filt = seq._stop_filter
            _, stopped = filt.feed(decoder.push(tok))
            if stopped:
                seq.stop_at = len(seq.generated)
                return True
        total = len(seq.prompt_ids) + len(seq.generated)
        return len(seq.generated) >= seq.config.max_new_tokens or bool(self.max_length and total >= self.max_length)

    def _finish(self, seq: GenRequest, error: BaseException | None = None) -> None:
        if seq in self._active:
            self._active.remove(seq)
        seq.cache = None
        if error is not None:
            seq.error = error
            seq.tokens.put(Failure(error))
        seq.tokens.put(END)
        seq.done.set()

    def _setup(self, seq: GenRequest) -> None:
        c = seq.config
        procs = LogitsProcessorList()
        if c.repetition_penalty != 1.0:
            procs.append(RepetitionPenaltyLogitsProcessor(c.repetition_penalty))
        if c.do_sample:
            procs.append(TemperatureLogitsWarper(c.temperature))
            if c.top_k > 0:
                procs.append(TopKLogitsWarper(c.top_k))
            if c.top_p < 1.0:
                procs.append(TopPLogitsWarper(c.top_p))
            device = self._device()
            if c.seed is not None:
                seq._generator = torch.Generator(device=device).manual_seed(c.seed)
            else:
                seq._generator = torch.Generator(device=device)
                seq._generator.seed()
        seq._processors = procs or None
        if c.stop:
            seq._stop_filter = (IncrementalDecoder(self.tokenizer), StopStringFilter(c.stop))

    def _device(self) -> torch.device:
        return self.model.get_input_embeddings().weight.device


def _out_cache(out: Any) -> Any:
    """The KV cache a forward pass returned (`cache` in newer transformers, `past_key_values` before)."""
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values


def _cache_tensors(cache: Any) -> _KV:
    """The (keys, values) of every layer of a `DynamicCache` (or a legacy tuple cache)."""
    layers = getattr(cache, "layers", None)
    if layers is not None:
        return [(layer.keys, layer.values) for layer in layers]
    return [(k, v) for k, v in cache]


def _pad_caches(caches: list[_KV], lengths: list[int], device: torch.device) -> tuple[DynamicCache, torch.Tensor]:
    """Left pad per-sequence caches to one width and stack them; the mask marks the real positions."""
    width = max(lengths)
    mask = torch.zeros(len(caches), width, dtype=torch.long, device=device)
    for row, n in enumerate(lengths):
        mask[row, width - n:] = 1
    merged = DynamicCache()
    for layer in range(len(caches[0])):
        ks, vs = [], []
        for cache, n in zip(caches, lengths):
            k, v = cache[layer]
            pad = width - n
            if pad:
                k = torch.cat([k.new_zeros(*k.shape[:2], pad, k.shape[3]), k], dim=2)
                v = torch.cat([v.new_zeros(*v.shape[:2], pad, v.shape[3]), v], dim=2)
            ks.append(k)
            vs.append(v)
        merged.update(torch.cat(ks), torch.cat(vs), layer)
    return merged, mask

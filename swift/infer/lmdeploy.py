"""`LmdeployEngine`: the `Engine` protocol over LMDeploy (optional extra "lmdeploy").

LMDeploy is imported only when the engine is built; without it a `MissingExtraError` names the extra to
install. The messages go to LMDeploy's pipeline, which applies the model's own chat template.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from swift.infer.protocol import InferRequest, InferResponse, RequestConfig, find_stop
from swift.infer.streaming import StopStringFilter
from swift.utils.errors import SwiftError, require

__all__ = ["LmdeployEngine"]


class LmdeployEngine:
    """Generate with an LMDeploy `pipeline` (TurboMind or its PyTorch backend).

    Args:
        model: A local model folder.
        template: Names the stop token ids (see `PtEngine`).
        max_batch_size: Most sequences LMDeploy runs at once.
        backend: "turbomind" or "pytorch".
        **backend_kwargs: Passed to LMDeploy's engine config (e.g. `tp`, `session_len`, `cache_max_entry_count`).
    """

    def __init__(self, model: str, template: Any, *, max_batch_size: int = 128, backend: str = "turbomind",
                 **backend_kwargs: Any):
        lmdeploy = require("lmdeploy", "lmdeploy", "the LMDeploy inference backend (--infer_backend lmdeploy)")
        self._lmdeploy = lmdeploy
        self.stop_token_ids = [int(t) for t in template.stop_token_ids]
        if backend == "turbomind":
            cfg = lmdeploy.TurbomindEngineConfig(max_batch_size=max_batch_size, **backend_kwargs)
        elif backend == "pytorch":
            cfg = lmdeploy.PytorchEngineConfig(max_batch_size=max_batch_size, **backend_kwargs)
        else:
            raise SwiftError(f"LMDeploy backend must be turbomind or pytorch, got {backend!r}.")
        self.pipe = lmdeploy.pipeline(model, backend_config=cfg)

    @property
    def adapter_names(self) -> list[str]:
        """LMDeploy serves merged models here: no per-request adapters."""
        return []

    def _gen_config(self, config: RequestConfig) -> Any:
        return self._lmdeploy.GenerationConfig(
            max_new_tokens=config.max_new_tokens, temperature=config.temperature, top_p=config.top_p,
            top_k=config.top_k, repetition_penalty=config.repetition_penalty, random_seed=config.seed,
            stop_words=config.stop or None, stop_token_ids=self.stop_token_ids, do_sample=config.do_sample)

    @staticmethod
    def _check(requests: list[InferRequest]) -> None:
        for r in requests:
            if r.images or r.videos or r.audios:
                raise SwiftError("LmdeployEngine takes text requests only here; use --infer_backend pt for media.")
            if r.adapter is not None:
                raise SwiftError(f"unknown LoRA adapter {r.adapter!r}: LmdeployEngine serves no adapters; "
                                 "merge them first (swift export --merge_lora true).")

    def infer(self, requests: list[InferRequest], config: RequestConfig | None = None) -> list[InferResponse]:
        """Generate one reply per request (LMDeploy batches them itself), in the order given."""
        config = config or RequestConfig()
        self._check(requests)
        outs = self.pipe([r.messages for r in requests], gen_config=self._gen_config(config))
        results = []
        for out in outs:
            text = out.text
            cut = find_stop(text, config.stop)
            if cut is not None:
                text = text[:cut]
            results.append(InferResponse(
                text=text, prompt_tokens=int(out.input_token_len), completion_tokens=int(out.generate_token_len),
                finish_reason="length" if out.finish_reason == "length" else "stop",
                token_ids=[t for t in (out.token_ids or []) if t not in self.stop_token_ids],
                extra={"backend": "lmdeploy"}))
        return results

    def stream(self, request: InferRequest, config: RequestConfig | None = None) -> Iterator[str]:
        """Yield the reply as text deltas as LMDeploy generates them (stop strings are never shown)."""
        config = config or RequestConfig()
        self._check([request])
        filt = StopStringFilter(config.stop)
        for out in self.pipe.stream_infer([request.messages], gen_config=self._gen_config(config)):
            text, stopped = filt.feed(out.text or "")
            if text:
                yield text
            if stopped:
                return
        tail = filt.flush()
        if tail:
            yield tail

"""`VllmEngine`: the `Engine` protocol over vLLM (optional extra "vllm"), for fast serving on a GPU.

vLLM is imported only when the engine is built; without it a `MissingExtraError` names the extra to install.
Prompts are encoded by SwiftLab's template and handed to vLLM as token ids, so both backends see the same
prompt. LoRA adapters are served by vLLM's multi-LoRA support, chosen per request by `InferRequest.adapter`.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from swift.infer.protocol import InferRequest, InferResponse, RequestConfig, find_stop
from swift.utils.errors import SwiftError, require

__all__ = ["VllmEngine"]


class VllmEngine:
    """Generate with vLLM's offline `LLM` engine.

    Args:
        model: A local model folder (or hub id vLLM can open).
        template: Encodes messages to prompt ids and names the stop token ids (see `PtEngine`).
        adapters: LoRA adapters to serve, {name: adapter folder}.
        default_adapter: The adapter a request without one runs with (None: the base model).
        max_batch_size: Most sequences vLLM runs at once (`max_num_seqs`).
        **engine_kwargs: Passed to `vllm.LLM` (e.g. `gpu_memory_utilization`, `max_model_len`,
            `tensor_parallel_size`, `dtype`).
    """

    def __init__(self, model: str, template: Any, *, adapters: dict[str, str] | None = None,
                 default_adapter: str | None = None, max_batch_size: int = 256, **engine_kwargs: Any):
        vllm = require("vllm", "vllm", "the vLLM inference backend (--infer_backend vllm)")
        self._vllm = vllm
        self.template = template
        self.stop_token_ids = [int(t) for t in template.stop_token_ids]
        self._adapters = dict(adapters or {})
        if default_adapter is not None and default_adapter not in self._adapters:
            raise SwiftError(f"default_adapter {default_adapter!r} is not one of the adapters given.")
        self.default_adapter = default_adapter
        if self._adapters:
            engine_kwargs.setdefault("enable_lora", True)
            engine_kwargs.setdefault("max_loras", len(self._adapters))
        self.llm = vllm.LLM(model=model, max_num_seqs=max_batch_size, **engine_kwargs)
        self.tokenizer = self.llm.get_tokenizer()

    @property
    def adapter_names(self) -> list[str]:
        """Names of the LoRA adapters a request may choose."""
        return list(self._adapters)

    def _lora(self, name: str | None) -> Any:
        if name is None:
            return None
        if name not in self._adapters:
            known = ", ".join(self._adapters) or "none are loaded"
            raise SwiftError(f"unknown LoRA adapter {name!r}; known adapters: {known}.")
        from vllm.lora.request import LoRARequest

        return LoRARequest(name, list(self._adapters).index(name) + 1, self._adapters[name])

    def _params(self, config: RequestConfig) -> Any:
        return self._vllm.SamplingParams(
            max_tokens=config.max_new_tokens, temperature=config.temperature, top_p=config.top_p,
            top_k=config.top_k if config.top_k > 0 else -1, repetition_penalty=config.repetition_penalty,
            seed=config.seed, stop=config.stop or None, stop_token_ids=self.stop_token_ids)

    def infer(self, requests: list[InferRequest], config: RequestConfig | None = None) -> list[InferResponse]:
        """Generate one reply per request (vLLM batches them itself), in the order given."""
        config = config or RequestConfig()
        if any(r.images or r.videos or r.audios for r in requests):
            raise SwiftError("VllmEngine takes text requests only here; use --infer_backend pt for media.")
        loras = [self._lora(r.adapter or self.default_adapter) for r in requests]
        prompts = [{"prompt_token_ids": list(self.template.encode_prompt(r.messages))} for r in requests]
        outs = self.llm.generate(prompts, self._params(config), lora_request=loras, use_tqdm=False)
        return [self._response(o, config) for o in outs]

    def _response(self, out: Any, config: RequestConfig) -> InferResponse:
        comp = out.outputs[0]
        ids = [t for t in comp.token_ids if t not in self.stop_token_ids]
        text = comp.text
        cut = find_stop(text, config.stop)
        if cut is not None:
            text = text[:cut]
        reason = "length" if comp.finish_reason == "length" else "stop"
        return InferResponse(text=text, prompt_tokens=len(out.prompt_token_ids), completion_tokens=len(comp.token_ids),
                             finish_reason=reason, token_ids=ids, extra={"backend": "vllm"})

    def stream(self, request: InferRequest, config: RequestConfig | None = None) -> Iterator[str]:
        """The reply as text deltas. The offline engine does not stream, so the whole reply comes as one delta."""
        [resp] = self.infer([request], config)
        if resp.text:
            yield resp.text

"""Raw text completion (`/v1/completions`) over the PyTorch engine.

The `Engine` protocol continues chats; a completion continues raw text with no chat template. Until the
engine protocol grows a raw-prompt request, `raw_text_engine` builds a sibling `PtEngine` over the same
model and tokenizer whose "template" encodes the prompt text as it is, sharing the chat engine's lock so the
two never run the model at once. Other engines answer completions with a clear error.
"""
from __future__ import annotations

from typing import Any

from swift.infer.protocol import InferRequest
from swift.utils.errors import SwiftError


class RawTextPrompt:
    """A `PromptTemplate` that encodes the last message's content as plain text (no chat markup)."""

    def __init__(self, tokenizer: Any, stop_token_ids: list[int]):
        self.tokenizer = tokenizer
        self.stop_token_ids = list(stop_token_ids)

    def encode_prompt(self, messages: list[dict[str, Any]]) -> list[int]:
        """Token ids of the prompt text (the last message's content), with no special tokens added."""
        return list(self.tokenizer.encode(str(messages[-1]["content"]), add_special_tokens=False))


def raw_text_engine(engine: Any) -> Any:
    """A sibling engine that continues raw text, or raise SwiftError when `engine` cannot do it.

    The sibling (`PtEngine.sibling`) shares the model, its LoRA adapters and the lock that keeps one model step
    at a time, but encodes prompts as raw text, stops at the tokenizer's eos only and schedules its own batches
    (`close()` it when done)."""
    from swift.infer.pt import PtEngine

    if not isinstance(engine, PtEngine):
        raise SwiftError(f"/v1/completions needs the PyTorch engine; {type(engine).__name__} serves "
                         "/v1/chat/completions only.")
    if getattr(engine, "mm_encoder", None) is not None:
        raise SwiftError("/v1/completions continues text; this multimodal model serves /v1/chat/completions only.")
    eos = getattr(engine.tokenizer, "eos_token_id", None)
    stops = [int(eos)] if eos is not None else list(engine.stop_token_ids)
    return engine.sibling(RawTextPrompt(engine.tokenizer, stops), stops)


def raw_request(prompt: str) -> InferRequest:
    """The request that makes a `raw_text_engine` continue `prompt`."""
    if not prompt:
        raise SwiftError("The completion prompt is empty.")
    return InferRequest(messages=[{"role": "user", "content": prompt}])


def count_prompt_tokens(engine: Any, messages: list[dict[str, Any]] | None = None, text: str | None = None) -> int:
    """Prompt length in tokens as the engine will see it (chat messages through its template, or raw text)."""
    tokenizer = getattr(engine, "tokenizer", None)
    if text is not None:
        if tokenizer is None:
            return 0
        return len(tokenizer.encode(text, add_special_tokens=False))
    if any(not isinstance(m.get("content"), str) for m in messages or ()):
        return 0  # media content parts: the engine's encoder counts them (its template's max_length applies)
    template = getattr(engine, "template", None)
    if template is not None and hasattr(template, "encode_prompt"):
        try:
            return len(template.encode_prompt(messages))
        except Exception as e:  # an over-long or malformed chat: say so as a bad request
            raise SwiftError(f"the messages could not be encoded: {e}") from None
    return 0

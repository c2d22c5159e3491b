"""Request/response types and the `Engine` protocol every inference backend implements.

These types carry no torch and no backend: the PyTorch engine (`swift.infer.pt`), the vLLM and LMDeploy
engines, the terminal chat, batch inference and the OpenAI-compatible server all speak them.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from swift.utils.errors import ArgumentError

FinishReason = Literal["stop", "length"]


@dataclass
class RequestConfig:
    """How to generate one reply. The defaults give deterministic greedy decoding."""

    max_new_tokens: int = 512
    """Most tokens to generate for one reply (the stop token counts)."""
    temperature: float = 0.0
    """Sampling temperature; 0 means greedy decoding."""
    top_p: float = 1.0
    """Nucleus sampling: keep the smallest set of tokens whose probability adds up to `top_p` (1 = off)."""
    top_k: int = 0
    """Keep only the `top_k` most likely tokens when sampling (0 = off)."""
    repetition_penalty: float = 1.0
    """Penalty on tokens already in the sequence (1 = off)."""
    stop: list[str] | None = None
    """Extra strings that end the reply; the reply is cut just before the first one that completes."""
    seed: int | None = None
    """Seed for sampling, so a sampled reply can be reproduced."""
    stream: bool = False
    """Whether the caller wants text deltas as they are generated (see `Engine.stream`)."""

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ArgumentError("max_new_tokens", f"must be at least 1, got {self.max_new_tokens}.")
        if self.temperature < 0:
            raise ArgumentError("temperature", f"must be >= 0 (0 = greedy), got {self.temperature}.")
        if not 0 < self.top_p <= 1:
            raise ArgumentError("top_p", f"must be in (0, 1], got {self.top_p}.")
        if self.top_k < 0:
            raise ArgumentError("top_k", f"must be >= 0 (0 = off), got {self.top_k}.")
        if self.repetition_penalty <= 0:
            raise ArgumentError("repetition_penalty", f"must be > 0 (1 = off), got {self.repetition_penalty}.")
        if isinstance(self.stop, str):
            self.stop = [self.stop]
        if self.stop is not None:
            self.stop = [s for s in self.stop if s]

    @property
    def do_sample(self) -> bool:
        """True when the config asks for sampling rather than greedy decoding."""
        return self.temperature > 0


@dataclass
class InferRequest:
    """One conversation to continue: OpenAI-style messages ending with a user turn.

    For a multimodal model, `<image>` / `<video>` / `<audio>` tags in the contents take the items of `images`,
    `videos` and `audios` in order (local paths, URLs, base64, PIL images; a video may be a list of frames)."""

    messages: list[dict[str, Any]]
    images: list[Any] = field(default_factory=list)
    videos: list[Any] = field(default_factory=list)
    audios: list[Any] = field(default_factory=list)
    adapter: str | None = None
    """The LoRA adapter to answer with (a name in `PtEngine.adapter_names`); None: the model as loaded."""


@dataclass
class InferResponse:
    """The reply to one `InferRequest`.

    `finish_reason` is "stop" when an end-of-turn token or a stop string ended the reply and "length"
    when `max_new_tokens` (or the model's context) ran out.
    """

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: FinishReason
    token_ids: list[int] = field(default_factory=list)
    """The generated ids behind `text` (without the stop token; a stop string's ids may still be in)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Backend-specific details."""


@runtime_checkable
class Engine(Protocol):
    """What every inference backend offers."""

    def infer(self, requests: list[InferRequest], config: RequestConfig | None = None) -> list[InferResponse]:
        """Generate one reply per request, in the order given."""
        ...

    def stream(self, request: InferRequest, config: RequestConfig | None = None) -> Iterator[str]:
        """Yield the reply to one request as text deltas; their concatenation equals `infer`'s text."""
        ...


def find_stop(text: str, stops: list[str] | None) -> int | None:
    """Where to cut `text` for the stop strings, or None when none occurs.

    Generation stops as soon as a stop string *completes*, so the stop string that ends first wins (the
    longest one on a tie); the text is cut at its start. Streaming and non-streaming use this same rule.
    """
    best: tuple[int, int] | None = None  # (end, -length) of the winning occurrence
    cut = None
    for s in stops or ():
        i = text.find(s)
        if i < 0:
            continue
        key = (i + len(s), -len(s))
        if best is None or key < best:
            best, cut = key, i
    return cut

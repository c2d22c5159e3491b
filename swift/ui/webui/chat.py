"""The chat of the web UI: one inference engine in the web-UI process, loaded on the first message and kept until
the model, the adapters or trust_remote_code change."""
from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from swift.ui import forms

_ENGINE_FLAGS = ("model", "adapters", "trust_remote_code")


class ChatSession:
    """Loads `swift infer`'s engine for the chat form's model/adapters (the checkpoint's args.json fills in the
    base model and template, as `swift infer --adapters <ckpt>` does) and answers with it."""

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._engine: Any = None
        self._lock = threading.Lock()

    @staticmethod
    def key(values: dict[str, Any]) -> tuple:
        return tuple(str(values.get(k) or "").strip() for k in _ENGINE_FLAGS)

    @property
    def loaded(self) -> bool:
        return self._engine is not None

    def is_current(self, values: dict[str, Any]) -> bool:
        return self._engine is not None and self._key == self.key(values)

    def engine(self, values: dict[str, Any]) -> Any:
        """The engine for the chat form's values (validated), loading it when they changed."""
        key = self.key(values)
        with self._lock:
            if self._engine is None or key != self._key:
                self._engine, self._key = None, None
                self._engine = self._load(values)
                self._key = key
            return self._engine

    @staticmethod
    def _load(values: dict[str, Any]) -> Any:
        from swift.cli.parser import parse_args
        from swift.pipelines.infer import build_engine

        argv = forms.build_argv("chat", {k: values.get(k) for k in _ENGINE_FLAGS})
        engine, _ = build_engine(parse_args(argv[1], argv[2:]))
        return engine

    def reply(self, values: dict[str, Any], messages: list[dict[str, str]]) -> Iterator[str]:
        """The reply to `messages` (ending with a user turn), as growing text."""
        from swift.infer.protocol import InferRequest, RequestConfig

        engine = self.engine(values)
        config = RequestConfig(max_new_tokens=int(float(values.get("max_new_tokens") or 256)),
                               temperature=float(values.get("temperature") or 0.0))
        request = InferRequest(messages=messages)
        stream = getattr(engine, "stream", None)
        if stream is None:
            yield engine.infer([request], config)[0].text
            return
        answer = ""
        for delta in stream(request, config):
            answer += delta
            yield answer
        if not answer:
            yield ""

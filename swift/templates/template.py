"""The encoder: chat messages -> input_ids and labels, through a jinja chat template.

The default template is the model's own `chat_template` (any chat model works without registration); specs
from `swift.templates.specs` are turned into jinja and go through the same code. Rows take a fast path
(`layout.py`: literals compiled once per conversation shape, `encoder.py`: one batched tokenizer call) that is
checked against the real jinja render and `tokenizer(...)` on its first rows; anything the fast path cannot
replay exactly is rendered with jinja.
"""
from __future__ import annotations

import gc
import hashlib
import json
import logging
from contextlib import contextmanager

from swift.templates.encoder import IGNORE, Tokenize, assemble
from swift.templates.errors import EncodeError
from swift.templates.rows import Restart, Row, RowMaker
from swift.templates.specs import get_spec
from swift.utils.errors import ArgumentError
from swift.utils.logging import get_logger

logger = get_logger(__name__)

TRUNCATION_STRATEGIES = ("delete", "left", "right")
LOSS_SCALES = ("all", "last_round")
ENCODER_VERSION = 1
MODES = ("words", "chunked", "full", "hf", "python")


@contextmanager
def _no_gc():
    """Pause the cyclic garbage collector for one batch: encoding allocates many small lists (no cycles), and
    the collections they trigger scan every live object - half the time of a batch on big datasets."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class Template:
    """Encodes conversations for one tokenizer and chat format. Build it with `get_template`."""

    def __init__(self, tokenizer, chat_template: str, name: str, *, system: str | None = None,
                 max_length: int | None = None, truncation_strategy: str = "delete",
                 loss_scale: str = "all"):
        if truncation_strategy not in TRUNCATION_STRATEGIES:
            raise ArgumentError("truncation_strategy", f"must be one of {', '.join(TRUNCATION_STRATEGIES)}, "
                                                       f"got {truncation_strategy!r}.")
        if loss_scale not in LOSS_SCALES:
            raise ArgumentError("loss_scale", f"must be one of {', '.join(LOSS_SCALES)}, got {loss_scale!r}.")
        if max_length is not None and max_length <= 0:
            raise ArgumentError("max_length", f"must be a positive number of tokens, got {max_length}.")
        self.tokenizer = tokenizer
        self.chat_template = chat_template
        self.name = name
        self.max_length = max_length
        self.truncation_strategy = truncation_strategy
        self._tok = Tokenize(tokenizer)
        self._rows = RowMaker(tokenizer, chat_template, name, self._tok, system, loss_scale)
        self._add_bos = False
        bos = getattr(tokenizer, "bos_token_id", None)
        if bos is not None:
            self._add_bos = list(tokenizer("a", add_special_tokens=True)["input_ids"][:1]) == [bos]
        self.stop_token_ids: list[int] = self._rows.stop_tokens()

    @property
    def system(self) -> str | None:
        """The system prompt that replaces (or is inserted into) every conversation's; None keeps theirs."""
        return self._rows.system

    @system.setter
    def system(self, value: str | None) -> None:
        self._rows.system = value

    @property
    def loss_scale(self) -> str:
        """"all": every assistant reply is labeled; "last_round": only the last one."""
        return self._rows.loss_scale

    @loss_scale.setter
    def loss_scale(self, value: str) -> None:
        if value not in LOSS_SCALES:
            raise ArgumentError("loss_scale", f"must be one of {', '.join(LOSS_SCALES)}, got {value!r}.")
        self._rows.loss_scale = value

    @property
    def encoder_mode(self) -> str:
        """How rows are encoded now: "jinja" (every row rendered by jinja) or the tokenization mode of the fast
        path ("words", "chunked", "full", "hf", "python"; see `swift.templates.encoder`). For logs and tests."""
        return self._tok.mode if self._rows.fast else "jinja"

    def _force(self, mode: str) -> None:
        """Use `mode` (one of MODES, or "jinja") from now on; for tests and benchmarks."""
        if mode == "jinja":
            self._rows.fast = False
        else:
            if mode not in MODES or (mode == "words" and self._tok.words is None):
                raise ValueError(f"mode {mode!r} is not available for this tokenizer")
            self._tok.set_mode(mode)
        self._rows.reset()

    # ---- public API ---------------------------------------------------------------------------------------
    def encode(self, messages: list[dict]) -> dict:
        """Encode one conversation for training.

        Returns:
            {"input_ids": list[int], "labels": list[int]}, labels -100 outside the assistant replies.

        Raises:
            EncodeError: reason "bad_messages", "too_long" or "no_labels".
        """
        out = self.batch_encode([messages])[0]
        if isinstance(out, EncodeError):
            raise out
        return out

    def batch_encode(self, batch: list[list[dict]]) -> list[dict | EncodeError]:
        """Encode many conversations in one tokenizer call; errors are returned in place, never raised."""
        with _no_gc():
            for _ in range(8):
                try:
                    rows = [self._rows.prepare(messages, generation=False) for messages in batch]
                    return self._tokenize(rows, labels=True)
                except Restart:
                    continue
        raise RuntimeError("template encoding did not settle")  # pragma: no cover - each restart degrades a mode

    def encode_prompt(self, messages: list[dict]) -> list[int]:
        """Token ids of a history ending with a user (or tool) turn, plus the generation prompt.

        Raises:
            EncodeError: "bad_messages", or "too_long" when longer than max_length and truncation is not "left"
                (cutting the end of a prompt would drop the generation prompt).
        """
        for _ in range(8):
            try:
                row = self._rows.prepare(messages, generation=True)
                out = self._tokenize([row], labels=False)[0]
                break
            except Restart:
                continue
        if isinstance(out, EncodeError):
            raise out
        return out["input_ids"]

    def encode_text(self, text: str) -> dict:
        """Encode pre-training text: tokens (+bos if the tokenizer adds one) + eos; labels = input_ids."""
        out = self.batch_encode_text([text])[0]
        if isinstance(out, EncodeError):
            raise out
        return out

    def batch_encode_text(self, texts: list[str]) -> list[dict | EncodeError]:
        """Encode many texts; errors are returned in place."""
        with _no_gc():
            return self._batch_encode_text(texts)

    def _batch_encode_text(self, texts: list[str]) -> list[dict | EncodeError]:
        out: list = [None] * len(texts)
        good = []
        for i, text in enumerate(texts):
            if isinstance(text, str) and text:
                good.append(i)
            else:
                out[i] = EncodeError("bad_messages", f"text must be a non-empty string, got {text!r:.60}.")
        if self._tok.mode == "python":
            encoded = [self.tokenizer(texts[i], add_special_tokens=False)["input_ids"] for i in good]
        else:
            encoded = [e.ids for e in self._tok.encode_texts([texts[i] for i in good])]
        bos, eos = getattr(self.tokenizer, "bos_token_id", None), getattr(self.tokenizer, "eos_token_id", None)
        for i, ids in zip(good, encoded):
            ids = list(ids)
            if self._add_bos and (not ids or ids[0] != bos):
                ids.insert(0, bos)
            if eos is not None and (not ids or ids[-1] != eos):
                ids.append(eos)
            out[i] = self._finish(ids, list(ids))
        return out

    def render(self, messages: list[dict], add_generation_prompt: bool = False) -> str:
        """The conversation as text, rendered with jinja exactly like `apply_chat_template(tokenize=False)`."""
        msgs, _, _, _ = self._rows.validate(messages, need_assistant=False)
        return self._rows.render(msgs, add_generation_prompt)

    def fingerprint(self) -> str:
        """A stable hash of everything that changes the encoding."""
        tok = self.tokenizer
        vocab = self._tok.vocab_hash or hashlib.sha256(
            json.dumps(sorted(tok.get_vocab().items())).encode()).hexdigest()
        state = {
            "encoder": ENCODER_VERSION, "name": self.name, "chat_template": self.chat_template,
            "system": self.system, "max_length": self.max_length, "truncation": self.truncation_strategy,
            "loss_scale": self.loss_scale, "vocab": vocab,
            "specials": {k: str(v) for k, v in sorted(getattr(tok, "special_tokens_map", {}).items())},
            "bos": getattr(tok, "bos_token_id", None), "eos": getattr(tok, "eos_token_id", None),
            "add_bos": self._add_bos, "split_special": bool(getattr(tok, "split_special_tokens", False)),
        }
        return hashlib.sha256(json.dumps(state, sort_keys=True).encode()).hexdigest()[:16]

    def __repr__(self) -> str:
        return (f"Template(name={self.name!r}, max_length={self.max_length}, "
                f"truncation_strategy={self.truncation_strategy!r}, loss_scale={self.loss_scale!r})")

    # ---- preparing rows -----------------------------------------------------------------------------------
    # ---- tokenizing rows ----------------------------------------------------------------------------------
    def _tokenize(self, rows: list[Row | EncodeError], labels: bool) -> list[dict | EncodeError]:
        live = [r for r in rows if isinstance(r, Row)]
        if self._tok.mode == "python":
            pairs = [self._tok.python_encode(r.text, r.spans) for r in live]
        else:
            self._tok.run([r.chunks for r in live])
            if self._tok.mismatch is not None:
                self._step_down(self._tok.mismatch)
                raise Restart()
            pairs = [assemble(r.chunks, r.lengths, r.spans) for r in live]
            for r, (ids, _) in zip(live, pairs):
                if r.check and ids != self._tok.reference_ids(r.text):
                    self._step_down(r.text)
                    raise Restart()
        out: list = []
        it = iter(pairs)
        for r in rows:
            if not isinstance(r, Row):
                out.append(r)
                continue
            ids, lab = next(it)
            out.append(self._finish(ids, lab) if labels else self._finish_prompt(ids))
        return out

    def _step_down(self, text: str) -> None:
        old = self._tok.mode
        if old == "words":
            new = "chunked"
        elif old == "chunked":
            full = self._tok.backend.encode(text, add_special_tokens=False).ids
            new = "full" if full == self._tok.reference_ids(text) else "hf"
        elif old == "full":
            new = "hf"
        else:  # pragma: no cover - "hf" is the reference itself
            raise RuntimeError("tokenization does not match the tokenizer")
        self._tok.set_mode(new)
        # words -> chunked means the word path misreads this tokenizer (worth a report); the others are expected
        # for some tokenizers and cost only speed.
        logger.log(logging.WARNING if old == "words" else logging.INFO,
                   "Template %s: tokenization mode %s -> %s (%s differs from the tokenizer on %r).",
                   self.name, old, new, old, text[:80])
        self._rows.reset()

    def _finish(self, ids: list[int], labels: list[int]) -> dict | EncodeError:
        limit = self.max_length
        if limit is not None and len(ids) > limit:
            if self.truncation_strategy == "delete":
                return EncodeError("too_long", f"the row has {len(ids)} tokens, more than max_length={limit} "
                                               "(truncation_strategy='delete' drops it).")
            if self.truncation_strategy == "left":
                ids, labels = ids[-limit:], labels[-limit:]
            else:
                ids, labels = ids[:limit], labels[:limit]
        if labels.count(IGNORE) == len(labels):
            return EncodeError("no_labels", "no token of an assistant reply is left to learn from"
                                            + (f" after truncation to {limit} tokens." if limit else "."))
        return {"input_ids": ids, "labels": labels}

    def _finish_prompt(self, ids: list[int]) -> dict | EncodeError:
        limit = self.max_length
        if limit is not None and len(ids) > limit:
            if self.truncation_strategy != "left":
                return EncodeError("too_long", f"the prompt has {len(ids)} tokens, more than max_length={limit}.")
            ids = ids[-limit:]
        return {"input_ids": ids}



def get_template(tokenizer, template: str | None = None, *, system: str | None = None,
                 max_length: int | None = None, truncation_strategy: str = "delete",
                 loss_scale: str = "all") -> Template:
    """The encoder for a tokenizer.

    Args:
        tokenizer: A Hugging Face tokenizer.
        template: None or "auto": the tokenizer's own `chat_template` if it has one, else the "default" spec.
            A registered spec name (`swift.templates.TEMPLATES`), or a jinja chat template string.
        system: Replaces the system prompt of every conversation (inserted when there is none).
        max_length: Longest row in tokens; None for no limit.
        truncation_strategy: For rows over max_length: "delete" (EncodeError "too_long"), "left" (keep the
            last max_length tokens) or "right" (keep the first).
        loss_scale: "all" labels every assistant reply, "last_round" only the last one.

    Raises:
        SwiftError: For an unknown template name (the message lists the known ones).
    """
    processor = tokenizer  # a multimodal processor: its text tokenizer encodes, its chat template is a fallback
    tokenizer = getattr(processor, "tokenizer", processor)
    if template in (None, "auto"):
        own = None
        try:
            own = tokenizer.get_chat_template()
        except (ValueError, AttributeError, TypeError):
            own = None
        if not own and processor is not tokenizer and isinstance(getattr(processor, "chat_template", None), str):
            own = processor.chat_template
        if own:
            chat_template, name = own, "auto"
        else:
            chat_template, name = get_spec("default").to_jinja(), "default"
    elif "{%" in template or "{{" in template:
        chat_template, name = template, "custom"
    else:
        spec = get_spec(template)
        chat_template, name = spec.to_jinja(), spec.name
    return Template(tokenizer, chat_template, name, system=system, max_length=max_length,
                    truncation_strategy=truncation_strategy, loss_scale=loss_scale)


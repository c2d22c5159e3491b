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
import re
from contextlib import contextmanager
from dataclasses import dataclass, field

from swift.templates.encoder import IGNORE, Plan, StaticChunk, Tokenize, assemble
from swift.templates.layout import (
    Layout,
    LayoutUnsupported,
    compile_layout,
    content_triggers,
    eot_pattern,
    find_spans,
)
from swift.templates.specs import get_spec
from swift.utils.errors import ArgumentError, SwiftError
from swift.utils.logging import get_logger

logger = get_logger(__name__)

ROLES = ("system", "user", "assistant", "tool")
TRUNCATION_STRATEGIES = ("delete", "left", "right")
LOSS_SCALES = ("all", "last_round")
ENCODER_VERSION = 1
_VERIFY_ROWS = 3  # rows of each conversation shape checked against jinja + tokenizer
_VERIFY_SLOW_ROWS = 8


class EncodeError(SwiftError):
    """A row cannot be encoded. `reason` is "too_long", "no_labels" or "bad_messages"."""

    def __init__(self, reason: str, message: str):
        self.reason = reason
        super().__init__(message)


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


class _Restart(Exception):
    """The fast path was switched off or the tokenization mode changed; prepare the batch again."""


@dataclass
class _Shape:
    """A compiled conversation shape (key: generation prompt?, roles, empty contents)."""

    layout: Layout | None = None
    error: EncodeError | None = None
    plan: Plan | None = None
    ops: list[tuple[int, str, str]] = field(default_factory=list)  # (slot, lead, trail) to strip/guard
    label_all: frozenset[int] = frozenset()
    label_last: frozenset[int] = frozenset()
    eot: dict[int, int] = field(default_factory=dict)
    steps: list[tuple] = field(default_factory=list)  # per plan item: (StaticChunk | None, parts, cacheable, plain)
    checked: int = 0


@dataclass
class _Row:
    chunks: list  # StaticChunk | (text, cacheable) -> encodings after tokenization
    lengths: list[int]
    spans: list[tuple[int, int]]
    text: str | None = None  # the whole rendered text, kept for rows that are verified
    check: bool = False


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
        self.system = system
        self.max_length = max_length
        self.truncation_strategy = truncation_strategy
        self.loss_scale = loss_scale
        self._tok = Tokenize(tokenizer)
        added = [t.content for t in (getattr(tokenizer, "added_tokens_decoder", {}) or {}).values()]
        added = [t for t in added if t.strip()]
        self._eot_re = eot_pattern(added)
        self._triggers = content_triggers(chat_template)
        self._fast = self._triggers is not None
        # Contents holding an added token or a string the template looks for need care (see _prepare_fast).
        route = sorted(set(added) | set(self._triggers or ()), key=len, reverse=True)
        self._route_re = re.compile("|".join(map(re.escape, route))) if route else None
        self._shapes: dict[tuple, _Shape] = {}
        self._slow_checked = 0
        self._fingerprint: str | None = None
        self._add_bos = False
        bos = getattr(tokenizer, "bos_token_id", None)
        if bos is not None:
            self._add_bos = list(tokenizer("a", add_special_tokens=True)["input_ids"][:1]) == [bos]
        self.stop_token_ids = self._find_stop_tokens()

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
                    rows = [self._prepare(messages, generation=False) for messages in batch]
                    return self._tokenize(rows, labels=True)
                except _Restart:
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
                row = self._prepare(messages, generation=True)
                out = self._tokenize([row], labels=False)[0]
                break
            except _Restart:
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
        msgs, _, _, _ = self._validate(messages, need_assistant=False)
        return self._render(msgs, add_generation_prompt)

    def fingerprint(self) -> str:
        """A stable hash of everything that changes the encoding."""
        if self._fingerprint is None:
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
            self._fingerprint = hashlib.sha256(json.dumps(state, sort_keys=True).encode()).hexdigest()[:16]
        return self._fingerprint

    def __repr__(self) -> str:
        return (f"Template(name={self.name!r}, max_length={self.max_length}, "
                f"truncation_strategy={self.truncation_strategy!r}, loss_scale={self.loss_scale!r})")

    # ---- preparing rows -----------------------------------------------------------------------------------
    def _validate(self, messages, need_assistant: bool):
        if not isinstance(messages, (list, tuple)) or not messages:
            raise EncodeError("bad_messages", f"messages must be a non-empty list of dicts, got {messages!r:.80}.")
        roles, contents, simple = [], [], True
        for i, m in enumerate(messages):
            if not isinstance(m, dict):
                raise EncodeError("bad_messages", f"message {i} must be a dict with 'role' and 'content', "
                                                  f"got {type(m).__name__}.")
            role, content = m.get("role"), m.get("content")
            if role not in ROLES:
                raise EncodeError("bad_messages", f"message {i}: role {role!r} is not one of "
                                                  f"{', '.join(ROLES)}.")
            if not isinstance(content, str):
                raise EncodeError("bad_messages", f"message {i} ({role}): content must be a string, "
                                                  f"got {type(content).__name__}.")
            if len(m) != 2:
                simple = False
            roles.append(role)
            contents.append(content)
        msgs = messages
        if self.system is not None:
            if roles[0] == "system":
                contents[0] = self.system
                msgs = [{**messages[0], "content": self.system}, *messages[1:]]
            else:
                roles.insert(0, "system")
                contents.insert(0, self.system)
                msgs = [{"role": "system", "content": self.system}, *messages]
        if need_assistant and "assistant" not in roles:
            raise EncodeError("bad_messages", "messages have no assistant turn, so there is nothing to learn; "
                                              f"roles are {roles}.")
        return msgs, roles, contents, simple

    def _prepare(self, messages, generation: bool) -> _Row | EncodeError:
        try:
            msgs, roles, contents, simple = self._validate(messages, need_assistant=not generation)
            if generation and roles[-1] not in ("user", "tool"):
                raise EncodeError("bad_messages", "a prompt for generation must end with a user (or tool) "
                                                  f"message, got {roles[-1]!r}.")
            key = (generation, tuple(roles), tuple(not c for c in contents))
            shape = self._shapes.get(key) or self._compile(key)
            if shape.error is not None:
                return shape.error
            if shape.layout is None:
                return self._prepare_slow(msgs, roles, generation)
            if not (self._fast and simple):  # jinja renders; the shape's literals still locate the replies
                return self._prepare_slow(msgs, roles, generation, shape)
            return self._prepare_fast(shape, msgs, roles, contents, generation)
        except EncodeError as e:
            return e

    def _prepare_fast(self, shape: _Shape, msgs, roles, contents: list[str], generation: bool) -> _Row:
        for slot, lead, trail in shape.ops:
            c = contents[slot]
            if (lead == "guard" and c[:1].isspace()) or (trail == "guard" and c[-1:].isspace()):
                return self._prepare_slow(msgs, roles, generation, shape)
            if lead == "strip":
                c = c.lstrip()
            if trail == "strip":
                c = c.rstrip()
            contents[slot] = c
        whole = False
        if self._route_re is not None and self._route_re.search("\x00".join(contents)):
            for c in contents:
                if self._route_re.search(c):
                    if any(t in c for t in self._triggers):
                        return self._prepare_slow(msgs, roles, generation, shape)
                    whole = True  # an added token inside a content: tokenize the row in one piece
        label = () if generation else (shape.label_all if self.loss_scale == "all" else shape.label_last)
        eot = shape.eot
        chunks, lengths, spans = [], [], []
        pos = 0
        for static, parts, cacheable, plain in shape.steps:
            if static is not None:
                chunks.append(static)
                lengths.append(static.length)
                pos += static.length
                continue
            if len(parts) == 2 and type(parts[0]) is str:  # the usual chunk: a header, then a content
                lit, p = parts
                c = contents[p]
                if p in label:
                    a = pos + len(lit)
                    spans.append((a, a + len(c) + eot[p]))
                text = lit + c
            else:
                buf, at = [], pos
                for p in parts:
                    if type(p) is str:
                        buf.append(p)
                        at += len(p)
                    else:
                        c = contents[p]
                        if p in label:
                            spans.append((at, at + len(c) + eot[p]))
                        buf.append(c)
                        at += len(c)
                text = "".join(buf)
            chunks.append((text, cacheable, plain))
            n = len(text)
            lengths.append(n)
            pos += n
        row = _Row(chunks, lengths, spans)
        if len(chunks) == 1 and type(chunks[0]) is tuple:
            row.text = chunks[0][0]
        check = shape.checked < _VERIFY_ROWS
        if whole or check:
            text = row.text if row.text is not None else shape.layout.render(contents)
            row.text = text
            if whole:
                row.chunks, row.lengths = [(text, False, False)], [len(text)]
        if check:
            shape.checked += 1
            if self._render(msgs, generation) != row.text:
                self._fast = False
                logger.warning("Template %s: the fast path does not reproduce the chat template for roles %s; "
                               "rendering every row with jinja from now on (slower).", self.name, roles)
                raise _Restart()
            row.check = True  # the chunked tokenization is checked against the tokenizer too
        return row

    def _prepare_slow(self, msgs, roles: list[str], generation: bool, shape: _Shape | None = None) -> _Row:
        """Render with jinja; find the replies from the shape's literals if given, else by searching them."""
        text = self._render(msgs, generation)
        spans: list[tuple[int, int]] = []
        if not generation:
            label = [i for i, r in enumerate(roles) if r == "assistant"]
            if self.loss_scale == "last_round":
                label = label[-1:]
            where = shape.layout.locate(text) if shape is not None else None
            if where is not None and all(i in where for i in label):
                spans = sorted((where[i][0], where[i][1] + self._eot_len(text, where[i][1])) for i in label)
            else:
                plain = [{"role": r, "content": m["content"]} for r, m in zip(roles, msgs)]
                try:
                    spans = find_spans(text, plain, label, self._eot_len, self._triggers or ())
                except LookupError as e:
                    raise EncodeError("bad_messages", f"cannot find the assistant reply in the rendered chat "
                                                      f"({e}); the chat template rewrites it. Try --template "
                                                      "NAME.") from e
        row = _Row([(text, False, False)], [len(text)], spans, text=text)
        if self._slow_checked < _VERIFY_SLOW_ROWS:
            self._slow_checked += 1
            row.check = True
        return row

    def _render(self, msgs, generation: bool) -> str:
        try:
            return self.tokenizer.apply_chat_template(list(msgs), chat_template=self.chat_template,
                                                      tokenize=False, add_generation_prompt=generation)
        except Exception as e:  # jinja's raise_exception, TemplateError, ...
            raise EncodeError("bad_messages", f"the chat template of '{self.name}' rejected the messages: "
                                              f"{e}") from e

    def _eot_len(self, text: str, pos: int) -> int:
        m = self._eot_re.match(text, pos)
        return m.end() - pos if m else 0

    def _compile(self, key: tuple) -> _Shape:
        generation, roles, empty = key
        shape = _Shape()
        try:
            layout = compile_layout(self._render_raw, roles, empty, generation)
        except LayoutUnsupported as e:
            logger.debug("Template %s: roles %s take the jinja path (%s).", self.name, roles, e)
            layout = None
        except Exception as e:
            shape.error = EncodeError("bad_messages", f"the chat template of '{self.name}' rejected a "
                                                      f"conversation with roles {list(roles)}: {e}")
            layout = None
        if layout is not None:
            slots = [p for p in layout.pieces if isinstance(p, int)]
            shape.layout = layout
            plan = shape.plan = self._tok.plan(layout.pieces, roles)
            shape.steps = [(item, None, False, False) if type(item) is StaticChunk else (None, tuple(item), c, p)
                           for item, c, p in zip(plan.items, plan.cacheable, plan.plain)]
            shape.ops = [(s, layout.lead[s], layout.trail[s]) for s in slots
                         if (layout.lead[s], layout.trail[s]) != ("keep", "keep")]
            answers = [s for s in slots if roles[s] == "assistant"]
            last = max((i for i, r in enumerate(roles) if r == "assistant"), default=-1)
            shape.label_all = frozenset(answers)
            shape.label_last = frozenset(s for s in answers if s == last)
            shape.eot = {s: self._eot_len(layout.literal_after(s), 0) for s in answers}
        self._shapes[key] = shape
        return shape

    def _render_raw(self, msgs, generation: bool) -> str:
        return self.tokenizer.apply_chat_template(msgs, chat_template=self.chat_template, tokenize=False,
                                                  add_generation_prompt=generation)

    # ---- tokenizing rows ----------------------------------------------------------------------------------
    def _tokenize(self, rows: list, labels: bool) -> list[dict | EncodeError]:
        live = [r for r in rows if isinstance(r, _Row)]
        if self._tok.mode == "python":
            pairs = [self._tok.python_encode(r.text, r.spans) for r in live]
        else:
            self._tok.run([r.chunks for r in live])
            if self._tok.mismatch is not None:
                self._step_down(self._tok.mismatch)
                raise _Restart()
            pairs = [assemble(r.chunks, r.lengths, r.spans) for r in live]
            for r, (ids, _) in zip(live, pairs):
                if r.check and ids != self._tok.reference_ids(r.text):
                    self._step_down(r.text)
                    raise _Restart()
        out: list = []
        it = iter(pairs)
        for r in rows:
            if not isinstance(r, _Row):
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
        self._shapes.clear()
        self._slow_checked = 0

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

    def _find_stop_tokens(self) -> list[int]:
        stops = []
        eos = getattr(self.tokenizer, "eos_token_id", None)
        if eos is not None:
            stops.append(eos)
        for roles in (("user", "assistant"), ("system", "user", "assistant")):
            try:
                layout = compile_layout(self._render_raw, roles, [False] * len(roles), False)
            except Exception:
                continue
            if len(roles) - 1 in layout.pieces:
                after = layout.literal_after(len(roles) - 1)
                m = self._eot_re.match(after)
                if m:
                    tid = self.tokenizer.convert_tokens_to_ids(m.group(0).strip())
                    if isinstance(tid, int) and tid not in stops:
                        stops.append(tid)
            break
        return stops


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
    if template in (None, "auto"):
        own = None
        try:
            own = tokenizer.get_chat_template()
        except (ValueError, AttributeError, TypeError):
            own = None
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


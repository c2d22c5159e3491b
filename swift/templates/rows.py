"""Messages -> rendered rows: the chunks to tokenize and the character spans to label.

`RowMaker.prepare` validates a conversation, looks up its shape (roles, empty contents, generation prompt;
compiled once with `layout.compile_layout`) and builds the row from the shape's literals - the fast path - or
renders it with jinja when the shape or the row needs it (see `layout.py` for what is guarded). The first rows
of every shape, and one in `VERIFY_EVERY` afterwards, are compared with the jinja render; on a difference the
fast path is switched off for good (`RowMaker.fast`) and the batch is prepared again (`Restart`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from swift.templates.encoder import Plan, StaticChunk, Tokenize
from swift.templates.errors import EncodeError
from swift.templates.layout import (
    Layout,
    LayoutUnsupported,
    compile_layout,
    content_triggers,
    eot_pattern,
    find_spans,
)
from swift.utils.logging import get_logger

logger = get_logger(__name__)

ROLES = ("system", "user", "assistant", "tool")
VERIFY_ROWS = 3  # rows of each conversation shape checked against jinja + tokenizer
VERIFY_EVERY = 1000  # and then one row in this many
VERIFY_SLOW_ROWS = 8  # jinja-rendered rows whose tokenization is checked


class Restart(Exception):
    """The fast path was switched off or the tokenization mode changed; prepare the batch again."""


@dataclass
class Shape:
    """A compiled conversation shape (key: generation prompt?, roles, empty contents)."""

    layout: Layout | None = None
    error: EncodeError | None = None
    plan: Plan | None = None
    ops: list[tuple[int, str, str]] = field(default_factory=list)  # (slot, lead, trail) to strip/guard
    label_all: frozenset[int] = frozenset()
    label_last: frozenset[int] = frozenset()
    eot: dict[int, int] = field(default_factory=dict)
    steps: list[tuple] = field(default_factory=list)  # per plan item: (StaticChunk | None, parts, cacheable, plain)
    checked: int = 0  # rows seen (the first ones and a sample are checked)


@dataclass
class Row:
    """One prepared row."""

    chunks: list  # StaticChunk | (text, cacheable, plain) -> encodings after tokenization
    lengths: list[int]
    spans: list[tuple[int, int]]
    text: str | None = None  # the whole rendered text, kept for rows that are checked
    check: bool = False  # compare its tokenization with the tokenizer's


class RowMaker:
    """Renders conversations for one chat template into rows."""

    def __init__(self, tokenizer, chat_template: str, name: str, tok: Tokenize, system: str | None,
                 loss_scale: str):
        self.tokenizer, self.chat_template, self.name = tokenizer, chat_template, name
        self.tok, self.system, self.loss_scale = tok, system, loss_scale
        added = [t.content for t in (getattr(tokenizer, "added_tokens_decoder", {}) or {}).values()]
        added = [t for t in added if t.strip()]
        self.eot_re = eot_pattern(added)
        self.triggers = content_triggers(chat_template)
        self.fast = self.triggers is not None
        # Contents holding an added token or a string the template looks for need care (see prepare_fast).
        route = sorted(set(added) | set(self.triggers or ()), key=len, reverse=True)
        self.route_re = re.compile("|".join(map(re.escape, route))) if route else None
        self.shapes: dict[tuple, Shape] = {}
        self.slow_checked = 0

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["shapes"] = {}  # rebuilt on demand; keeps pickles small
        return state

    def reset(self) -> None:
        """Forget compiled shapes (their plans depend on the tokenization mode) and checks."""
        self.shapes.clear()
        self.slow_checked = 0

    def validate(self, messages, need_assistant: bool) -> tuple[list[dict], list[str], list[str], bool]:
        """Check a conversation and apply the system override.

        Returns:
            (messages to render, roles, contents, simple: every message has only role and content).

        Raises:
            EncodeError: "bad_messages", saying which message is wrong and how.
        """
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

    def prepare(self, messages, generation: bool) -> Row | EncodeError:
        """The row for a conversation (`generation`: a prompt ending in the generation prompt, no labels).

        Raises:
            Restart: The fast path was just found wrong for this template; prepare the batch again.
        """
        try:
            msgs, roles, contents, simple = self.validate(messages, need_assistant=not generation)
            if generation and roles[-1] not in ("user", "tool"):
                raise EncodeError("bad_messages", "a prompt for generation must end with a user (or tool) "
                                                  f"message, got {roles[-1]!r}.")
            key = (generation, tuple(roles), tuple(not c for c in contents))
            shape = self.shapes.get(key) or self.compile(key)
            if shape.error is not None:
                return shape.error
            if shape.layout is None:
                return self.prepare_slow(msgs, roles, generation)
            if not (self.fast and simple):  # jinja renders; the shape's literals still locate the replies
                return self.prepare_slow(msgs, roles, generation, shape)
            return self.prepare_fast(shape, msgs, roles, contents, generation)
        except EncodeError as e:
            return e

    def prepare_fast(self, shape: Shape, msgs, roles, contents: list[str], generation: bool) -> Row:
        """Build the row from the shape's literals (jinja only for the rows that are checked)."""
        for slot, lead, trail in shape.ops:
            c = contents[slot]
            if (lead == "guard" and c[:1].isspace()) or (trail == "guard" and c[-1:].isspace()):
                return self.prepare_slow(msgs, roles, generation, shape)
            if lead == "strip":
                c = c.lstrip()
            if trail == "strip":
                c = c.rstrip()
            contents[slot] = c
        whole = False
        if self.route_re is not None and self.route_re.search("\x00".join(contents)):
            for c in contents:
                if self.route_re.search(c):
                    if any(t in c for t in self.triggers):
                        return self.prepare_slow(msgs, roles, generation, shape)
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
        row = Row(chunks, lengths, spans)
        if len(chunks) == 1 and type(chunks[0]) is tuple:
            row.text = chunks[0][0]
        shape.checked += 1
        check = shape.checked <= VERIFY_ROWS or shape.checked % VERIFY_EVERY == 0
        if whole or check:
            text = row.text if row.text is not None else shape.layout.render(contents)
            row.text = text
            if whole:
                row.chunks, row.lengths = [(text, False, False)], [len(text)]
        if check:
            if self.render(msgs, generation) != row.text:
                self.fast = False
                logger.warning("Template %s: the fast path does not reproduce the chat template for roles %s; "
                               "rendering every row with jinja from now on (slower).", self.name, roles)
                raise Restart()
            row.check = True  # the chunked tokenization is checked against the tokenizer too
        return row

    def prepare_slow(self, msgs, roles: list[str], generation: bool, shape: Shape | None = None) -> Row:
        """Render with jinja; find the replies from the shape's literals if given, else by searching them."""
        text = self.render(msgs, generation)
        spans: list[tuple[int, int]] = []
        if not generation:
            label = [i for i, r in enumerate(roles) if r == "assistant"]
            if self.loss_scale == "last_round":
                label = label[-1:]
            where = shape.layout.locate(text) if shape is not None else None
            if where is not None and all(i in where for i in label):
                spans = sorted((where[i][0], where[i][1] + self.eot_len(text, where[i][1])) for i in label)
            else:
                plain = [{"role": r, "content": m["content"]} for r, m in zip(roles, msgs)]
                try:
                    spans = find_spans(text, plain, label, self.eot_len, self.triggers or ())
                except LookupError as e:
                    raise EncodeError("bad_messages", f"cannot find the assistant reply in the rendered chat "
                                                      f"({e}); the chat template rewrites it. Try --template "
                                                      "NAME.") from e
        row = Row([(text, False, False)], [len(text)], spans, text=text)
        if self.slow_checked < VERIFY_SLOW_ROWS:
            self.slow_checked += 1
            row.check = True
        return row

    def render(self, msgs, generation: bool) -> str:
        """The jinja render, exactly as `apply_chat_template(tokenize=False)`; template errors -> EncodeError."""
        try:
            return self.tokenizer.apply_chat_template(list(msgs), chat_template=self.chat_template,
                                                      tokenize=False, add_generation_prompt=generation)
        except Exception as e:  # jinja's raise_exception, TemplateError, ...
            raise EncodeError("bad_messages", f"the chat template of '{self.name}' rejected the messages: "
                                              f"{e}") from e

    def eot_len(self, text: str, pos: int) -> int:
        """Length of the end-of-turn marker (whitespace + an added token) at `pos` in `text`, 0 if none."""
        m = self.eot_re.match(text, pos)
        return m.end() - pos if m else 0

    def compile(self, key: tuple) -> Shape:
        """Compile (and cache) the shape for key (generation, roles, empty contents)."""
        generation, roles, empty = key
        shape = Shape()
        try:
            layout = compile_layout(self.render_raw, roles, empty, generation)
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
            plan = shape.plan = self.tok.plan(layout.pieces, roles)
            shape.steps = [(item, None, False, False) if type(item) is StaticChunk else (None, tuple(item), c, p)
                           for item, c, p in zip(plan.items, plan.cacheable, plan.plain)]
            shape.ops = [(s, layout.lead[s], layout.trail[s]) for s in slots
                         if (layout.lead[s], layout.trail[s]) != ("keep", "keep")]
            answers = [s for s in slots if roles[s] == "assistant"]
            last = max((i for i, r in enumerate(roles) if r == "assistant"), default=-1)
            shape.label_all = frozenset(answers)
            shape.label_last = frozenset(s for s in answers if s == last)
            shape.eot = {s: self.eot_len(layout.literal_after(s), 0) for s in answers}
        self.shapes[key] = shape
        return shape

    def render_raw(self, msgs, generation: bool) -> str:
        """The jinja render, letting template errors through (for compiling)."""
        return self.tokenizer.apply_chat_template(msgs, chat_template=self.chat_template, tokenize=False,
                                                  add_generation_prompt=generation)

    def stop_tokens(self) -> list[int]:
        """eos and the end-of-turn token that follows a reply (from the (system,) user, assistant shape)."""
        stops = []
        eos = getattr(self.tokenizer, "eos_token_id", None)
        if eos is not None:
            stops.append(eos)
        for roles in (("user", "assistant"), ("system", "user", "assistant")):
            try:
                layout = compile_layout(self.render_raw, roles, [False] * len(roles), False)
            except Exception:
                continue
            if len(roles) - 1 in layout.pieces:
                after = layout.literal_after(len(roles) - 1)
                m = self.eot_re.match(after)
                if m:
                    tid = self.tokenizer.convert_tokens_to_ids(m.group(0).strip())
                    if isinstance(tid, int) and tid not in stops:
                        stops.append(tid)
            break
        return stops

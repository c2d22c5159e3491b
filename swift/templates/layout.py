"""Compile a jinja chat template into literal text and message slots, once per conversation shape.

Rendering jinja for every row is slow (~200 us). But for a given shape of conversation (the sequence of roles,
which contents are empty, and whether a generation prompt is asked for), almost every chat template writes
the same literal text around the messages whatever they say. `compile_layout` renders the template once
with unique sentinel strings as contents and splits the result into literal pieces and slots; a row is then
rendered by interleaving the literals with its contents (string joins), and the assistant spans in character
space come for free.

What the sentinels cannot see is guarded instead:
- templates that strip contents (`| trim`, `.strip()`, `.lstrip('\\n')`): each slot is rendered again with
  whitespace padding; a full strip is replayed with `str.strip`, a partial one sends rows whose content has
  that whitespace to jinja (`Layout.lead/trail` = "keep" | "strip" | "guard").
- templates that branch on what a content contains (`'</think>' in content`, `content.split('</think>')`):
  `content_triggers` lists those string constants; rows whose contents hold one go to jinja.
- anything else (dates, content written twice or transformed): the caller verifies the first rows of each
  layout against the real jinja render and falls back to jinja for good on a mismatch.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

Render = Callable[[list[dict], bool], str]

_SENTINEL = "\ue000Sw{}fT\ue001"
# Two paddings with different first characters, so a strip of a single character class is noticed.
_PADS = (("\n \t", "\t \n"), (" \t\n", "\n\t "))
_STRING_METHODS = {"split", "rsplit", "startswith", "endswith", "replace", "find", "rfind", "index",
                   "rindex", "count", "partition", "rpartition", "removeprefix", "removesuffix"}


class LayoutUnsupported(Exception):
    """This conversation shape cannot be replayed from literals; render its rows with jinja."""


@dataclass
class Layout:
    """One conversation shape of a chat template, as literals and slots.

    Attributes:
        pieces: Literal strings (str) and message slots (int: index into the messages), in output order.
            Starts and ends with a literal. Messages the template does not write have no slot.
        lead: Per slot, what the template does to leading whitespace: "keep", "strip" or "guard".
        trail: The same for trailing whitespace.
        roles: The roles of the messages.
    """

    pieces: list[str | int]
    lead: dict[int, str] = field(default_factory=dict)
    trail: dict[int, str] = field(default_factory=dict)
    roles: tuple[str, ...] = ()

    def literal_after(self, slot: int) -> str:
        """The literal text the template writes right after `slot` ("" if another slot follows)."""
        k = self.pieces.index(slot)
        nxt = self.pieces[k + 1]
        return nxt if isinstance(nxt, str) else ""

    def locate(self, text: str) -> dict[int, tuple[int, int]] | None:
        """Where each slot's content is in `text`, a jinja render of this shape, by matching the literals.

        Used for rows whose whitespace the template trims in a way not replayed (see `lead`): the literals are
        the same, only the contents differ. None if the text does not fit (or two slots touch).
        """
        pieces = self.pieces
        if not text.startswith(pieces[0]):
            return None
        pos, found = len(pieces[0]), {}
        for k in range(1, len(pieces), 2):
            literal = pieces[k + 1]
            if k + 2 == len(pieces):
                end = len(text) - len(literal)
                if end < pos or not text.endswith(literal):
                    return None
            else:
                if not literal:
                    return None
                end = text.find(literal, pos)
                if end < 0:
                    return None
            found[pieces[k]] = (pos, end)
            pos = end + len(literal)
        return found

    def render(self, contents: Sequence[str]) -> str:
        """The text for `contents` (already transformed by the caller)."""
        return "".join(p if isinstance(p, str) else contents[p] for p in self.pieces)


def compile_layout(render: Render, roles: Sequence[str], empty: Sequence[bool],
                   add_generation_prompt: bool) -> Layout:
    """Render the template with sentinels and split it into literals and slots.

    Args:
        render: Renders messages with the chat template (jinja); its exceptions propagate.
        roles: The role of each message.
        empty: Whether each message's content is empty; empty contents are rendered as "" (no slot).
        add_generation_prompt: Passed to the template.

    Returns:
        The layout.

    Raises:
        LayoutUnsupported: If the template does something to the contents that literals cannot replay.
    """
    cores = [_SENTINEL.format(i) for i in range(len(roles))]

    def run(contents: list[str]) -> str:
        msgs = [{"role": r, "content": "" if e else c} for r, e, c in zip(roles, empty, contents)]
        return render(msgs, add_generation_prompt)

    base = run(cores)
    found = []
    for i, core in enumerate(cores):
        n = 0 if empty[i] else base.count(core)
        if n > 1:
            raise LayoutUnsupported(f"message {i} is written {n} times")
        if n == 1:
            found.append((base.index(core), i))
    found.sort()
    pieces: list[str | int] = []
    pos = 0
    for start, i in found:
        pieces += [base[pos:start], i]
        pos = start + len(cores[i])
    pieces.append(base[pos:])
    if any("\ue000" in p or "\ue001" in p for p in pieces if isinstance(p, str)):
        raise LayoutUnsupported("the template changes message contents")
    layout = Layout(pieces=pieces, roles=tuple(roles))
    for _, i in found:
        left0, right0 = base.split(cores[i])
        leads, trails = set(), set()
        for pad_l, pad_t in _PADS:
            contents = list(cores)
            contents[i] = pad_l + cores[i] + pad_t
            text = run(contents)
            if text.count(cores[i]) != 1:
                raise LayoutUnsupported(f"message {i} is not written once when padded")
            left, right = text.split(cores[i])
            if not (left.startswith(left0) and right.endswith(right0)):
                raise LayoutUnsupported(f"the text around message {i} depends on its whitespace")
            leads.add(_mode(left[len(left0):], pad_l, at_end=True))
            trails.add(_mode(right[:len(right) - len(right0)], pad_t, at_end=False))
        layout.lead[i] = leads.pop() if len(leads) == 1 else "guard"
        layout.trail[i] = trails.pop() if len(trails) == 1 else "guard"
    return layout


def _mode(kept: str, pad: str, at_end: bool) -> str:
    if kept == pad:
        return "keep"
    if kept == "":
        return "strip"
    if (pad.endswith(kept) if at_end else pad.startswith(kept)):
        return "guard"
    raise LayoutUnsupported("the template rewrites whitespace around a message")


def content_triggers(chat_template: str) -> list[str] | None:
    """String constants the template looks for inside values (`'x' in content`, `content.split('x')`, ...).

    Args:
        chat_template: The jinja source.

    Returns:
        The strings, or None if the template cannot be parsed (then no fast path is safe).
    """
    import jinja2
    from jinja2 import nodes

    try:
        ast = jinja2.Environment(extensions=["jinja2.ext.loopcontrols", "jinja2.ext.do"]).parse(chat_template)
    except jinja2.TemplateSyntaxError:
        try:  # templates with `{% generation %}` blocks need transformers' own environment
            from transformers.utils.chat_template_utils import _compile_jinja_template

            ast = _compile_jinja_template(chat_template).environment.parse(chat_template)
        except Exception:
            return None
    out: set[str] = set()
    for node in ast.find_all(nodes.Compare):
        if isinstance(node.expr, nodes.Const) and isinstance(node.expr.value, str):
            if any(op.op in ("in", "notin") for op in node.ops):
                out.add(node.expr.value)
    for node in ast.find_all(nodes.Call):
        if isinstance(node.node, nodes.Getattr) and node.node.attr in _STRING_METHODS:
            out.update(a.value for a in node.args if isinstance(a, nodes.Const) and isinstance(a.value, str))
    for node in ast.find_all(nodes.Filter):
        if node.name in ("replace", "split"):
            out.update(a.value for a in node.args if isinstance(a, nodes.Const) and isinstance(a.value, str))
    return sorted(t for t in out if t)


def find_spans(text: str, messages: Sequence[dict], label: Sequence[int], eot_len: Callable[[str, int], int],
               triggers: Sequence[str]) -> list[tuple[int, int]]:
    """Locate assistant replies in a jinja-rendered `text` by searching their contents in order.

    Used for rows that cannot take the literal fast path. A content is looked for as written, stripped, and
    (for templates that split contents at a trigger such as `</think>`) as the part after the last trigger.

    Args:
        text: The rendered conversation.
        messages: The messages that were rendered.
        label: Indices of the assistant messages to label.
        eot_len: Length of the end-of-turn text at a position (0 if none).
        triggers: The template's content triggers.

    Returns:
        Character spans (start, end) of the labeled replies, end-of-turn included.

    Raises:
        LookupError: If a labeled reply does not appear in the text.
    """
    spans = []
    cursor = last_end = 0
    wanted = set(label)
    for i, msg in enumerate(messages):
        content = msg["content"]
        hit = _search(text, content, cursor, triggers)
        if i in wanted:
            if hit is None:
                hit = _search(text, content, last_end, triggers)
            if hit is not None and not eot_len(text, hit[1]):
                # Written more than once? Prefer the copy that ends the turn.
                k = text.find(text[hit[0]:hit[1]], hit[0] + 1)
                while k >= 0 and not eot_len(text, k + hit[1] - hit[0]):
                    k = text.find(text[hit[0]:hit[1]], k + 1)
                if k >= 0:
                    hit = (k, k + hit[1] - hit[0])
            if hit is None:
                raise LookupError(f"message {i} (assistant) does not appear in the rendered chat")
            end = hit[1] + eot_len(text, hit[1])
            spans.append((hit[0], end))
            cursor = last_end = end
        elif hit is not None:
            cursor = hit[1]
    return spans


def _search(text: str, content: str, start: int, triggers: Sequence[str]) -> tuple[int, int] | None:
    candidates = [content, content.strip()]
    candidates += [content.split(t)[-1].strip() for t in triggers if t in content]
    for cand in candidates:
        if cand:
            k = text.find(cand, start)
            if k >= 0:
                return k, k + len(cand)
    return None


def eot_pattern(tokens: Sequence[str]) -> re.Pattern:
    """Regex for an end-of-turn marker: optional whitespace, then one of `tokens` (longest first)."""
    alts = "|".join(re.escape(t) for t in sorted(tokens, key=len, reverse=True))
    return re.compile(r"[ \t\r\n]*(?:" + (alts or "(?!)") + ")")

"""Tokenize rendered conversations in one batched call and turn character spans into labels.

Modes, fastest first (`Tokenize.mode`):
- "words": as "chunked", but the content chunks of byte-level BPE tokenizers go through `words.py` (regex
  split + per-word cache) instead of the Rust pipeline; a sample is still compared with the Rust result.
- "chunked": a fast tokenizer extracts added tokens (`<|im_start|>`, `<|im_end|>`, ...) before anything else,
  so the text between two of them is tokenized on its own. A layout's literal-only chunks are tokenized once
  and reused; only the chunks that hold message contents go to the tokenizer (system-only chunks are cached).
- "full": the whole rendered string per row, through a copy of the fast tokenizer's Rust backend.
- "hf": the tokenizer's own `__call__` (in case a tokenizer class adds Python-side processing).
- "python": slow (Python) tokenizers have no offsets; the text is cut at the span boundaries and each piece
  tokenized alone, which may differ from `apply_chat_template` at the cuts.
`Template` checks the first rows against `tokenizer(text, add_special_tokens=False)` (what
`apply_chat_template` does) and steps down a mode on any difference.

Labels from offsets: a token is labeled when any of its characters lies in a labeled span (the reply plus its
end-of-turn marker). A token that straddles a span boundary is therefore labeled - the same rule as
transformers' `return_assistant_tokens_mask`. With the usual templates no token straddles: the reply starts
after a newline or a special token and ends at a special token.
"""
from __future__ import annotations

import hashlib
import json
import re
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate

from swift.templates.words import WordEncoding

IGNORE = -100
_CACHE_MAX = 4096
_SAMPLE_EVERY = 1000  # words mode: compare one chunk in this many with the Rust tokenizer


class StaticChunk:
    """Pre-tokenized literal text, with the small part of the `tokenizers.Encoding` interface used here."""

    __slots__ = ("ids", "offsets", "length")

    def __init__(self, ids: list[int], offsets: list[tuple[int, int]], length: int):
        self.ids, self.offsets, self.length = ids, offsets, length

    def __len__(self) -> int:
        return len(self.ids)

    def char_to_token(self, pos: int) -> int | None:
        for i, (s, e) in enumerate(self.offsets):
            if s <= pos < e:
                return i
        return None

    def token_to_chars(self, i: int) -> tuple[int, int]:
        return self.offsets[i]

    @staticmethod
    def join(chunks: Sequence[StaticChunk]) -> StaticChunk:
        ids, offsets, shift = [], [], 0
        for c in chunks:
            ids += c.ids
            offsets += [(s + shift, e + shift) for s, e in c.offsets]
            shift += c.length
        return StaticChunk(ids, offsets, shift)


@dataclass
class Plan:
    """How the rows of one layout are cut into chunks.

    Attributes:
        items: StaticChunk (literal text, tokenized once) or a list of parts (str literal / int slot) making a
            chunk to tokenize per row.
        cacheable: Per item, whether its per-row text may be cached (only system contents in it).
        plain: Per item, whether its literal parts hold no added token (then the word path may take it).
    """

    items: list[StaticChunk | list[str | int]]
    cacheable: list[bool]
    plain: list[bool]


class Tokenize:
    """Batched tokenization with character offsets over a Hugging Face tokenizer."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.backend = None
        self.words = None
        self.mode = "python"
        self.mismatch: str | None = None  # a sampled text where "words" differs from the Rust tokenizer
        self._sampled = 0
        self._cache: dict[str, object] = {}
        self.vocab_hash = None
        if getattr(tokenizer, "is_fast", False) and hasattr(tokenizer, "backend_tokenizer"):
            from tokenizers import Tokenizer

            from swift.templates.words import WordTokenizer

            spec_str = tokenizer.backend_tokenizer.to_str()
            self.vocab_hash = hashlib.sha256(spec_str.encode()).hexdigest()
            # A private copy: no truncation/padding state shared with the user's tokenizer.
            self.backend = Tokenizer.from_str(spec_str)
            self.backend.no_truncation()
            self.backend.no_padding()
            split = bool(getattr(tokenizer, "split_special_tokens", False))
            self.backend.encode_special_tokens = split
            spec = json.loads(spec_str)
            # Metaspace "first" adds its prefix only at the start of the whole text, so chunks differ.
            first_only = '"prepend_scheme": "first"' in json.dumps([spec.get("normalizer"), spec.get("pre_tokenizer")])
            self.mode = "full" if split or first_only else "chunked"
            if self.mode == "chunked":
                self.words = WordTokenizer.from_spec(spec, self.backend)
                if self.words is not None:
                    self.mode = "words"
        added = getattr(tokenizer, "added_tokens_decoder", {}) or {}
        # Chunk boundaries: added tokens matched on raw text that cannot absorb neighbouring whitespace.
        plain = [t.content for t in added.values()
                 if not (t.lstrip or t.rstrip or t.single_word or t.normalized) and t.content.strip()]
        self.added_ids = {t.content: i for i, t in added.items()}
        alts = "|".join(re.escape(t) for t in sorted(plain, key=len, reverse=True))
        self.split_re = re.compile("(" + (alts or "(?!)") + ")")
        every = sorted((t.content for t in added.values() if t.content.strip()), key=len, reverse=True)
        self.any_added_re = re.compile("|".join(re.escape(t) for t in every) or "(?!)")

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_cache"] = {}
        return state

    # ---- encoding -----------------------------------------------------------------------------------------
    def encode_texts(self, texts: list[str]) -> list:
        """Encodings (with `ids`, `char_to_token`, `token_to_chars`) of whole texts, in the current mode."""
        if not texts:
            return []
        if self.mode == "hf":
            return list(self.tokenizer(texts, add_special_tokens=False).encodings)
        return self.backend.encode_batch(texts, add_special_tokens=False)

    def reference_ids(self, text: str) -> list[int]:
        """What `apply_chat_template` gets for a rendered text."""
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def plan(self, pieces: Sequence[str | int], roles: Sequence[str]) -> Plan:
        """Cut a layout into chunks at added tokens (mode "chunked") or keep it whole."""
        if self.mode not in ("chunked", "words"):
            return Plan([_merge_parts(list(pieces))], [False], [False])
        items: list = []
        cur: list[str | int] = []

        def flush() -> None:
            if not cur:
                return
            if all(isinstance(p, str) for p in cur):
                items.append(self._static("".join(cur)))
            else:
                items.append(_merge_parts(cur))
            cur.clear()

        for piece in pieces:
            if isinstance(piece, int):
                cur.append(piece)
                continue
            for j, sub in enumerate(self.split_re.split(piece)):
                if j % 2:
                    flush()
                    items.append(StaticChunk([self.added_ids[sub]], [(0, len(sub))], len(sub)))
                elif sub:
                    cur.append(sub)
        flush()
        merged: list = []
        for item in items:
            if isinstance(item, StaticChunk) and merged and isinstance(merged[-1], StaticChunk):
                merged[-1] = StaticChunk.join([merged[-1], item])
            else:
                merged.append(item)
        cacheable = [not isinstance(it, StaticChunk) and all(roles[p] == "system" for p in it if isinstance(p, int))
                     for it in merged]
        plain = [not isinstance(it, StaticChunk)
                 and not any(isinstance(p, str) and self.any_added_re.search(p) for p in it) for it in merged]
        return Plan(merged, cacheable, plain)

    def set_mode(self, mode: str) -> None:
        """Switch the tokenization mode (cached encodings belong to the old one)."""
        self.mode = mode
        self.mismatch = None
        self._cache.clear()

    def _static(self, text: str) -> StaticChunk:
        enc = self.backend.encode(text, add_special_tokens=False)
        return StaticChunk(list(enc.ids), [tuple(o) for o in enc.offsets], len(text))

    def run(self, rows: list[list]) -> list[list]:
        """Resolve rows of chunks, in place: a StaticChunk stays, a (text, cacheable, plain) tuple becomes the
        encoding of `text` (`plain`: holds no added token, so the word path may take it)."""
        todo: list[str] = []
        where: list[tuple[int, int]] = []
        cache = self._cache
        words = self.words if self.mode == "words" else None
        for r, chunks in enumerate(rows):
            for c, chunk in enumerate(chunks):
                if type(chunk) is not tuple:
                    continue
                text, cacheable, plain = chunk
                if cacheable:
                    hit = cache.get(text)
                    if hit is not None:
                        chunks[c] = hit
                        continue
                if words is not None and plain:
                    enc = words.encode(text)
                    if enc is not None:
                        chunks[c] = enc
                        self._sample(text, enc)
                        if cacheable:
                            if len(cache) >= _CACHE_MAX:
                                cache.clear()
                            cache[text] = enc
                        continue
                todo.append(text)
                where.append((r, c))
        for (r, c), enc in zip(where, self.encode_texts(todo)):
            if rows[r][c][1]:
                if len(cache) >= _CACHE_MAX:
                    cache.clear()
                cache[rows[r][c][0]] = enc
            rows[r][c] = enc
        return rows

    def _sample(self, text: str, enc) -> None:
        self._sampled += 1
        if self._sampled % _SAMPLE_EVERY == 1 and self.backend.encode(text, add_special_tokens=False).ids != enc.ids:
            self.mismatch = text

    def python_encode(self, text: str, spans: Sequence[tuple[int, int]]) -> tuple[list[int], list[int]]:
        """Slow tokenizers: tokenize the pieces between span boundaries separately."""
        cuts = sorted({0, len(text), *[p for s in spans for p in s if 0 <= p <= len(text)]})
        ids: list[int] = []
        labels: list[int] = []
        for a, b in zip(cuts, cuts[1:]):
            piece = list(self.tokenizer(text[a:b], add_special_tokens=False)["input_ids"])
            inside = any(s <= a and b <= e for s, e in spans)
            ids += piece
            labels += piece if inside else [IGNORE] * len(piece)
        return ids, labels


def _merge_parts(parts: list[str | int]) -> list[str | int]:
    out: list[str | int] = []
    for p in parts:
        if isinstance(p, str) and out and isinstance(out[-1], str):
            out[-1] += p
        elif not (isinstance(p, str) and not p):
            out.append(p)
    return out


def assemble(chunks: Sequence, lengths: Sequence[int], spans: Sequence[tuple[int, int]]
             ) -> tuple[list[int], list[int]]:
    """input_ids and labels of one row from its chunk encodings and its labeled character spans.

    Args:
        chunks: Encodings or StaticChunks, in order.
        lengths: Character length of each chunk.
        spans: Labeled (start, end) character spans of the whole row, in order.
    """
    ids: list[int] = []
    tok_starts = []
    for chunk in chunks:
        tok_starts.append(len(ids))
        ids += chunk.ids
    labels = [IGNORE] * len(ids)
    if not spans:
        return ids, labels
    char_starts = [0, *accumulate(lengths)]
    last_chunk = len(chunks) - 1
    for a, b in spans:
        first = last = None
        j = max(bisect_right(char_starts, a) - 1, 0)
        while j <= last_chunk and char_starts[j] < b:
            chunk = chunks[j]
            if type(chunk) is WordEncoding:
                t = chunk.first_ending_after(a - char_starts[j])
            else:
                t = _first_ending_after(chunk, a - char_starts[j])
            if t is not None:
                first = tok_starts[j] + t
                break
            j += 1
        if first is None:
            continue
        j = min(bisect_left(char_starts, b) - 1, last_chunk)
        while j >= 0 and char_starts[j + 1] > a:
            chunk = chunks[j]
            if type(chunk) is WordEncoding:
                t = chunk.last_starting_before(b - char_starts[j])
            else:
                t = _last_starting_before(chunk, b - char_starts[j], lengths[j])
            if t is not None:
                last = tok_starts[j] + t
                break
            j -= 1
        if last is not None and last >= first:
            labels[first:last + 1] = ids[first:last + 1]
    return ids, labels


def _first_ending_after(enc, pos: int) -> int | None:
    """Index of the first token whose end is after `pos` (chunk-local), or None."""
    n = len(enc)
    if n == 0:
        return None
    if pos <= 0:
        return 0
    t = enc.char_to_token(pos)
    if t is None:
        for i in range(n):
            span = enc.token_to_chars(i)
            if span is not None and span[1] > pos:
                return i
        return None
    while t > 0:
        prev = enc.token_to_chars(t - 1)
        if prev is None or prev[1] <= pos:
            break
        t -= 1
    return t


def _last_starting_before(enc, end: int, length: int) -> int | None:
    """Index of the last token that starts before `end` (chunk-local), or None."""
    n = len(enc)
    if n == 0:
        return None
    if end >= length:
        return n - 1
    t = enc.char_to_token(end - 1) if end > 0 else None
    if t is None:
        for i in range(n - 1, -1, -1):
            span = enc.token_to_chars(i)
            if span is not None and span[0] < end:
                return i
        return None
    while t + 1 < n:
        nxt = enc.token_to_chars(t + 1)
        if nxt is None or nxt[0] >= end:
            break
        t += 1
    return t

"""Byte-level BPE with a per-word cache: the fastest way to tokenize the chunks that hold message contents.

Byte-level BPE tokenizers (GPT-2, Qwen, Llama-3, DeepSeek, ...) cut text into words with a regex, then run
BPE on each word alone. Chat data repeats words constantly, so after the regex split each word's ids come
from a dict; only unseen words go to the tokenizer's own BPE model. This replaces the Rust pipeline's
pre-tokenization (the slow part on short texts) with Python's `regex` module and is ~3x cheaper per row.

It is used only when the tokenizer's pipeline is one this module reproduces (no normalizer or NFC; Split
pre-tokenizers with the "Isolated" behaviour and/or ByteLevel without prefix space; a plain BPE model), and
only for text that holds no added token. Texts with characters whose regex classes could differ between
Python's `regex` and the Rust engine (control and unusual space characters) go to the Rust tokenizer. The
caller compares results with the real tokenizer on the first rows and on a sample afterwards, and stops
using this path on any difference.
"""
from __future__ import annotations

import re
import unicodedata
from itertools import chain

# The regex of tokenizers' ByteLevel pre-tokenizer when use_regex=True (GPT-2's).
_GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
_RISKY = "[\x00-\x08\x0b-\x1f\x7f-\xa0\u1680\u180e\u2000-\u200f\u2028-\u202f\u205f\u3000\ufeff]"
_CACHE_MAX = 200_000


def _bytes_to_unicode() -> dict[int, str]:
    """Byte-level BPE's byte -> printable character table (printable Latin-1 bytes stay themselves)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


class WordEncoding:
    """The ids of one text, split into words (with how many tokens each word has)."""

    __slots__ = ("ids", "words", "counts", "owner")

    def __init__(self, ids: list[int], words: list[str], counts: list[int], owner: WordTokenizer):
        self.ids, self.words, self.counts, self.owner = ids, words, counts, owner

    def __len__(self) -> int:
        return len(self.ids)

    def first_ending_after(self, pos: int) -> int | None:
        """Index of the first token whose end is after character `pos`, or None."""
        if pos <= 0:
            return 0 if self.ids else None
        at = tok = 0
        for w, n in zip(self.words, self.counts):
            end = at + len(w)
            if end > pos:
                if at == pos or n == 1:
                    return tok
                for k, (_, e) in enumerate(self.owner.char_offsets(w)):  # pos is inside a word of tokens
                    if at + e > pos:
                        return tok + k
            at = end
            tok += n
        return None

    def last_starting_before(self, end: int) -> int | None:
        """Index of the last token that starts before character `end`, or None."""
        if end <= 0 or not self.ids:
            return None
        at = tok = 0
        for w, n in zip(self.words, self.counts):
            stop = at + len(w)
            if stop >= end:
                if stop == end or n == 1:
                    return tok + n - 1
                last = tok
                for k, (s, _) in enumerate(self.owner.char_offsets(w)):
                    if at + s < end:
                        last = tok + k
                return last
            at = stop
            tok += n
        return len(self.ids) - 1


class WordTokenizer:
    """Tokenizes added-token-free text like the Rust tokenizer it was built from, with a word cache."""

    def __init__(self, backend, patterns: list[str], nfc: bool):
        import regex

        self.model = backend.model
        self.patterns = [regex.compile(p) for p in patterns]
        self.single = self.patterns[0] if len(self.patterns) == 1 and self.patterns[0].groups == 0 else None
        # For ASCII text the same split with the stdlib engine (faster), if the pattern translates.
        self.ascii = None
        if self.single is not None and (translated := _ascii_pattern(patterns[0])) is not None:
            try:
                self.ascii = re.compile(translated, re.ASCII)
            except re.error:
                self.ascii = None
        self.risky = re.compile(_RISKY)
        self.nfc = nfc
        self.byte_map = _bytes_to_unicode()
        self.cache: dict[str, list[int]] = {}
        self._offsets: dict[str, list[tuple[int, int]]] = {}

    @classmethod
    def from_spec(cls, spec: dict, backend) -> WordTokenizer | None:
        """A WordTokenizer reproducing `backend` (a `tokenizers.Tokenizer` serialized as `spec`), or None if its
        pipeline is one this module does not reproduce."""
        try:
            import regex
        except ImportError:  # pragma: no cover - a dependency of transformers
            return None
        norm, pre, model = spec.get("normalizer"), spec.get("pre_tokenizer"), spec.get("model") or {}
        if norm is not None and norm.get("type") != "NFC":
            return None
        if model.get("type") != "BPE" or model.get("dropout") or model.get("continuing_subword_prefix") \
                or model.get("end_of_word_suffix"):
            return None
        steps = pre.get("pretokenizers", []) if pre and pre.get("type") == "Sequence" else [pre]
        patterns: list[str] = []
        byte_level = False
        for i, step in enumerate(steps):
            kind = (step or {}).get("type")
            if kind == "Split" and not byte_level and step.get("behavior") == "Isolated" \
                    and not step.get("invert"):
                pattern = step.get("pattern", {})
                if "Regex" in pattern:
                    patterns.append(pattern["Regex"])
                elif "String" in pattern:
                    patterns.append(regex.escape(pattern["String"]))
                else:
                    return None
            elif kind == "ByteLevel" and i == len(steps) - 1 and not step.get("add_prefix_space"):
                byte_level = True
                if step.get("use_regex", True):
                    patterns.append(_GPT2_PATTERN)
            else:
                return None
        if not byte_level or not patterns:
            return None
        try:
            return cls(backend, patterns, nfc=norm is not None)
        except Exception:  # a pattern Python's `regex` does not accept
            return None

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["cache"], state["_offsets"] = {}, {}
        return state

    def encode(self, text: str) -> WordEncoding | None:
        """The encoding of `text`, or None if this text should go to the Rust tokenizer."""
        if self.risky.search(text) is not None:
            return None
        ascii_text = text.isascii()
        if self.nfc and not ascii_text and not unicodedata.is_normalized("NFC", text):
            return None
        if self.single is not None:
            words = (self.ascii if ascii_text and self.ascii is not None else self.single).findall(text)
            if sum(map(len, words)) != len(text) or "" in words:
                words = _split_isolated(self.single, [text])
        else:
            words = [text]
            for pattern in self.patterns:
                words = _split_isolated(pattern, words)
        got = list(map(self.cache.get, words))
        if None in got:
            got = [g if g is not None else self._word(w) for g, w in zip(got, words)]
        return WordEncoding(list(chain.from_iterable(got)), words, list(map(len, got)), self)

    def _word(self, word: str) -> list[int]:
        if len(self.cache) >= _CACHE_MAX:
            self.cache.clear()
            self._offsets.clear()
        mapped = "".join(self.byte_map[b] for b in word.encode("utf-8"))
        ids = [t.id for t in self.model.tokenize(mapped)]
        self.cache[word] = ids
        return ids

    def char_offsets(self, word: str) -> list[tuple[int, int]]:
        """Character offsets of each token of `word` inside the word."""
        got = self._offsets.get(word)
        if got is None:
            mapped = "".join(self.byte_map[b] for b in word.encode("utf-8"))
            byte_to_char = [i for i, ch in enumerate(word) for _ in ch.encode("utf-8")] + [len(word)]
            got, pos = [], 0
            for t in self.model.tokenize(mapped):
                n = len(t.value)
                start, end = byte_to_char[pos], byte_to_char[pos + n]
                # A token ending inside a character covers that character (as tokenizers' char offsets do).
                if end == start or byte_to_char[pos + n - 1] == end:
                    end = byte_to_char[pos + n - 1] + 1
                got.append((start, end))
                pos += n
            self._offsets[word] = got
        return got


def _ascii_pattern(pattern: str) -> str | None:
    """`pattern` for ASCII-only text in stdlib `re` syntax: \\p{L} -> A-Za-z, \\p{N} -> 0-9; None if it has
    other Unicode properties."""
    out, i, in_class = [], 0, False
    classes = {"L": "A-Za-z", "N": "0-9"}
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            nxt = pattern[i + 1]
            if nxt in "pP":
                m = re.match(r"\{(\w+)\}", pattern[i + 2:])
                if nxt == "P" or m is None or m.group(1) not in classes:
                    return None
                body = classes[m.group(1)]
                out.append(body if in_class else f"[{body}]")
                i += 2 + m.end()
                continue
            out.append(pattern[i:i + 2])
            i += 2
            continue
        if ch == "[" and not in_class:
            in_class = True
            out.append(ch)
            if pattern[i + 1:i + 2] == "^":
                out.append("^")
                i += 1
            if pattern[i + 1:i + 2] == "]":  # a literal ] first in a class
                out.append("]")
                i += 1
        elif ch == "]" and in_class:
            in_class = False
            out.append(ch)
        elif ch == "[" and in_class:
            return None  # nested classes / set operations: not translated
        else:
            out.append(ch)
        i += 1
    return "".join(out)


def _split_isolated(pattern, pieces: list[str]) -> list[str]:
    out: list[str] = []
    plain = pattern.groups == 0
    for piece in pieces:
        found = pattern.findall(piece) if plain else None
        if found is not None and sum(map(len, found)) == len(piece):
            out += [f for f in found if f] if "" in found else found
            continue
        pos = 0  # some text is not matched: keep the gaps as pieces of their own
        for m in pattern.finditer(piece):
            if m.start() > pos:
                out.append(piece[pos:m.start()])
            if m.end() > m.start():
                out.append(m.group())
            pos = m.end()
        if pos < len(piece):
            out.append(piece[pos:])
    return out

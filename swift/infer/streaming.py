"""Turning a stream of token ids into a stream of text, safely.

Two problems are solved here, both shared by every engine that streams:

* A byte-level tokenizer may split one character (Chinese, emoji, ...) across tokens; decoding a token
  alone gives U+FFFD. `IncrementalDecoder` only releases text once it ends on a whole character, so the
  concatenation of its deltas equals decoding all tokens at once.
* A stop string may arrive split across deltas. `StopStringFilter` holds back any tail that could still
  become a stop string, and cuts the text where `find_stop` would cut the full text.
"""
from __future__ import annotations

from typing import Any

from swift.infer.protocol import find_stop

_REPLACEMENT = "\ufffd"


class IncrementalDecoder:
    """Decode token ids one at a time into text deltas that never split a character.

    Only a short window of ids is decoded per step: the ids of the last released delta (as context, so a
    SentencePiece leading space survives) plus the ids not yet released.
    """

    def __init__(self, tokenizer: Any, *, skip_special_tokens: bool = True):
        self.tokenizer = tokenizer
        self.skip_special_tokens = skip_special_tokens
        self.ids: list[int] = []
        self._prefix = 0  # start of the context window
        self._read = 0  # ids before this have been released as text

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=self.skip_special_tokens)

    def push(self, token_id: int) -> str:
        """Add one token id; return the text it completes ("" while a character is still partial)."""
        self.ids.append(int(token_id))
        return self._release(final=False)

    def flush(self) -> str:
        """Release whatever is still held (at the end of generation), even a partial character."""
        return self._release(final=True)

    def _release(self, *, final: bool) -> str:
        if self._read == len(self.ids):
            return ""
        before = self._decode(self.ids[self._prefix:self._read])
        after = self._decode(self.ids[self._prefix:])
        if len(after) <= len(before) and not final:
            return ""
        if after.endswith(_REPLACEMENT) and not final:
            return ""
        delta = after[len(before):]
        self._prefix, self._read = self._read, len(self.ids)
        return delta


class StopStringFilter:
    """Pass text deltas through, holding back what might be the start of a stop string.

    `feed` returns the text that is safe to show and whether a stop string has completed; after that the
    caller should stop generating. `flush` returns the held tail once generation ended without a stop.
    """

    def __init__(self, stops: list[str] | None):
        self.stops = [s for s in stops or () if s]
        self._text = ""  # everything fed so far
        self._released = 0  # characters of _text already returned
        self.stopped = False

    def feed(self, delta: str) -> tuple[str, bool]:
        """Add a delta; return (text safe to release now, whether a stop string completed)."""
        if self.stopped:
            return "", True
        self._text += delta
        if not self.stops:
            return self._take(len(self._text)), False
        cut = find_stop(self._text, self.stops)
        if cut is not None:
            self.stopped = True
            return self._take(cut), True
        return self._take(len(self._text) - self._held_tail()), False

    def flush(self) -> str:
        """Release the held tail (call when generation ended without a stop string)."""
        return "" if self.stopped else self._take(len(self._text))

    def _held_tail(self) -> int:
        """Length of the longest suffix of the text that is a proper prefix of some stop string."""
        longest = 0
        for s in self.stops:
            for n in range(min(len(s) - 1, len(self._text)), longest, -1):
                if self._text.endswith(s[:n]):
                    longest = n
                    break
        return longest

    def _take(self, upto: int) -> str:
        upto = max(upto, self._released)
        out = self._text[self._released:upto]
        self._released = upto
        return out

"""Incremental decoding (multi-byte characters split across tokens) and stop-string filtering."""
from __future__ import annotations

import random

from swift.infer.protocol import find_stop
from swift.infer.streaming import IncrementalDecoder, StopStringFilter

MIXED = "你好世界，こんにちは 🙂 hello 世界!"


def _stream_decode(tokenizer, ids):
    dec = IncrementalDecoder(tokenizer)
    deltas = [dec.push(t) for t in ids]
    deltas.append(dec.flush())
    return deltas


def test_decoder_never_splits_a_character(tokenizer):
    ids = tokenizer.encode(MIXED, add_special_tokens=False)
    deltas = _stream_decode(tokenizer, ids)
    assert "".join(deltas) == MIXED
    assert not any("\ufffd" in d for d in deltas)
    # some characters really were split across tokens, and were held back until complete
    assert any(d == "" for d in deltas[:-1])
    assert len([d for d in deltas if d]) > 5


def _split_char_ids(tokenizer):
    """Ids of a character the byte-level tokenizer spells as several byte tokens."""
    for ch in "龘𝔘🙂，":
        ids = tokenizer.encode(ch, add_special_tokens=False)
        if len(ids) > 2:
            return ids
    raise AssertionError("the demo tokenizer has merges for every test character")


def test_decoder_matches_full_decode_on_invalid_bytes(tokenizer):
    ids = _split_char_ids(tokenizer)
    broken = ids[1:] + tokenizer.encode("ab", add_special_tokens=False) + ids[:1]  # orphans at both ends
    full = tokenizer.decode(broken)
    assert "\ufffd" in full
    assert "".join(_stream_decode(tokenizer, broken)) == full


def test_decoder_skips_special_tokens(tokenizer):
    ids = [tokenizer.convert_tokens_to_ids("<|im_start|>")] + tokenizer.encode("hi", add_special_tokens=False)
    assert "".join(_stream_decode(tokenizer, ids)) == "hi"


def test_find_stop_prefers_the_stop_that_completes_first():
    assert find_stop("xabcd", ["abcd", "c"]) == 3
    assert find_stop("xabcd", ["abcd", "bcd"]) == 1  # same end: the longer one
    assert find_stop("hello", ["z"]) is None
    assert find_stop("hello", None) is None


def test_filter_holds_back_a_possible_stop_string():
    f = StopStringFilter(["STOP"])
    assert f.feed("abc S") == ("abc ", False)
    assert f.feed("TO") == ("", False)
    assert f.feed("x") == ("STOx", False)  # it was not a stop after all
    assert f.feed("ST") == ("", False)
    assert f.feed("OP and more") == ("", True)
    assert f.flush() == ""


def test_filter_flush_releases_the_tail():
    f = StopStringFilter(["</s>"])
    assert f.feed("end </") == ("end ", False)
    assert f.flush() == "</"


def test_filter_equals_cutting_the_full_text():
    rng = random.Random(0)
    stops = ["aba", "bb", "cab"]
    for _ in range(500):
        text = "".join(rng.choice("abc") for _ in range(rng.randint(0, 12)))
        cuts = sorted(rng.sample(range(len(text) + 1), k=min(len(text) + 1, rng.randint(1, 4))))
        pieces = [text[i:j] for i, j in zip([0] + cuts, cuts + [len(text)])]
        f = StopStringFilter(stops)
        out = []
        for piece in pieces:
            released, stopped = f.feed(piece)
            out.append(released)
            if stopped:
                break
        out.append(f.flush())
        cut = find_stop(text, stops)
        assert "".join(out) == (text if cut is None else text[:cut]), (text, pieces)

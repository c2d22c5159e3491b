"""Fixtures of the data tests: a file writer, the demo tokenizer, the real template and a stand-in.

The encoding tests use the real `swift.templates` template. `StandInTemplate` is a test double of it (same
contract: `batch_encode`, `batch_encode_text`, `fingerprint`, error objects with `.reason`) that can be told to
misbehave, to test what `encode_rows` does when a template returns a row with every label masked.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[2]
DEMO_MODEL = ROOT / "swift" / "assets" / "demo_model"


class StandInError:
    def __init__(self, reason: str, message: str):
        self.reason, self.message = reason, message

    def __str__(self) -> str:
        return self.message


class StandInTemplate:
    """ChatML encoding of canonical messages with the demo tokenizer; labels on assistant replies only."""

    def __init__(self, tokenizer, max_length: int | None = None, truncation_strategy: str = "delete",
                 flag_no_labels: bool = True):
        self.tok = tokenizer
        self.max_length, self.truncation_strategy = max_length, truncation_strategy
        self.flag_no_labels = flag_no_labels
        self.calls = 0
        self.eos = tokenizer.token_to_id("<|im_end|>")

    def fingerprint(self) -> str:
        return f"standin/{self.max_length}/{self.truncation_strategy}/{self.tok.get_vocab_size()}"

    def _finish(self, ids: list[int], labels: list[int]):
        if self.max_length is not None and len(ids) > self.max_length:
            if self.truncation_strategy == "delete":
                return StandInError("too_long", f"{len(ids)} tokens > max_length {self.max_length}")
            ids, labels = ids[:self.max_length], labels[:self.max_length]
        if self.flag_no_labels and all(x == -100 for x in labels):
            return StandInError("no_labels", "no label left")
        return {"input_ids": ids, "labels": labels}

    def batch_encode(self, batch: list[list[dict]]) -> list:
        self.calls += 1
        out = []
        for messages in batch:
            if any("<|im_start|>" in m["content"] for m in messages):
                out.append(StandInError("bad_messages", "a message contains the special token <|im_start|>"))
                continue
            ids, labels = [], []
            for m in messages:
                head = self.tok.encode(f"<|im_start|>{m['role']}\n", add_special_tokens=False).ids
                body = self.tok.encode(m["content"] + "<|im_end|>", add_special_tokens=False).ids
                nl = self.tok.encode("\n", add_special_tokens=False).ids
                ids += head + body + nl
                labels += [-100] * len(head) + (body if m["role"] == "assistant" else [-100] * len(body))
                labels += [-100] * len(nl)
            out.append(self._finish(ids, labels))
        return out

    def batch_encode_text(self, texts: list[str]) -> list:
        self.calls += 1
        out = []
        for text in texts:
            ids = self.tok.encode(text, add_special_tokens=False).ids + [self.eos]
            out.append(self._finish(ids, list(ids)))
        return out


@pytest.fixture(scope="session")
def tokenizer():
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(DEMO_MODEL / "tokenizer.json"))


@pytest.fixture
def make_standin(tokenizer):
    def make(**kw) -> StandInTemplate:
        return StandInTemplate(tokenizer, **kw)

    return make


@pytest.fixture(scope="session")
def hf_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(DEMO_MODEL))


class CountingTemplate:
    """Delegates to a real template and counts its batch_encode calls (to see whether the cache was used)."""

    def __init__(self, template):
        self.template, self.calls = template, 0

    def batch_encode(self, batch):
        self.calls += 1
        return self.template.batch_encode(batch)

    def batch_encode_text(self, texts):
        self.calls += 1
        return self.template.batch_encode_text(texts)

    def fingerprint(self) -> str:
        return self.template.fingerprint()


@pytest.fixture
def make_template(hf_tokenizer):
    """make_template(**get_template kwargs) -> the real swift.templates template (wrapped to count calls)."""
    from swift.templates import get_template

    def make(**kw) -> CountingTemplate:
        return CountingTemplate(get_template(hf_tokenizer, **kw))

    return make


@pytest.fixture
def write_jsonl(tmp_path):
    """write_jsonl(name, rows) -> path; a row given as a str is written verbatim (a broken line)."""
    def write(name: str, rows: list) -> str:
        path = tmp_path / name
        lines = [r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in rows]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return str(path)

    return write


@pytest.fixture
def capture_swift_log():
    """Records of the 'swift' logger (it does not propagate to the root logger pytest's caplog reads)."""
    import logging

    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    from swift.utils.logging import get_logger

    logger = get_logger("swift")
    handler = Keep(level=logging.DEBUG)
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)

"""The bundled data and the offline tokenizer built from it."""
from __future__ import annotations

import json
import re
from pathlib import Path

from transformers import AutoTokenizer


def _rows(path: str) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def test_self_cognition_rows(self_cognition_file):
    rows = _rows(self_cognition_file)
    assert 100 <= len(rows) <= 150
    questions = set()
    for row in rows:
        user, assistant = row["messages"]
        assert (user["role"], assistant["role"]) == ("user", "assistant")
        assert "{{NAME}}" in assistant["content"] and "{{AUTHOR}}" in assistant["content"]
        questions.add(user["content"])
    assert len(questions) == len(rows), "duplicate questions"
    chinese = sum(bool(re.search(r"[\u4e00-\u9fff]", r["messages"][0]["content"])) for r in rows)
    assert 0.35 < chinese / len(rows) < 0.65
    assert {"who are you?", "你是谁?", "What's your name?", "Who made you?", "介绍一下你自己"} <= questions


def test_all_bundled_datasets_are_messages_rows(self_cognition_file):
    for path in Path(self_cognition_file).parent.glob("*.jsonl"):
        for row in _rows(str(path)):
            assert [m["role"] for m in row["messages"]][-1] == "assistant", path.name
            assert all(isinstance(m["content"], str) and m["content"] for m in row["messages"]), path.name


def test_tokenizer_covers_the_data_and_round_trips(tokenizer_dir, self_cognition_file):
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    assert 2000 <= len(tok) <= 8000
    assert (tok.eos_token, tok.pad_token) == ("<|im_end|>", "<|endoftext|>")
    for special in ("<|endoftext|>", "<|im_start|>", "<|im_end|>"):
        assert len(tok(special)["input_ids"]) == 1
    for text in ("我是{{NAME}},由{{AUTHOR}}开发的人工智能助手。", "Hello 😀 world, 龘 é ß", "def f(x):\n    return x"):
        assert tok.decode(tok(text)["input_ids"]) == text
    # Learned from the data: its answers take far fewer tokens than bytes.
    answers = "".join(r["messages"][1]["content"] for r in _rows(self_cognition_file))
    assert len(tok(answers)["input_ids"]) < len(answers.encode()) / 4
    rendered = tok.apply_chat_template([{"role": "user", "content": "你是谁?"}], tokenize=False,
                                       add_generation_prompt=True)
    assert rendered == ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
                        "<|im_start|>user\n你是谁?<|im_end|>\n<|im_start|>assistant\n")

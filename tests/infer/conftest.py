"""Fixtures for the inference tests: the demo tokenizer, a template, tiny Qwen2 models."""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from _infer_helpers import DEMO_TOKENIZER, TAUGHT_PROMPT, TAUGHT_REPLY, make_template, tiny_qwen2  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402


@pytest.fixture(scope="session")
def tokenizer():
    return AutoTokenizer.from_pretrained(DEMO_TOKENIZER)


@pytest.fixture(scope="session")
def template(tokenizer):
    return make_template(tokenizer)


@pytest.fixture(scope="session")
def random_model(tokenizer):
    return tiny_qwen2(tokenizer)


@pytest.fixture(scope="session")
def taught_model(tokenizer, template):
    """A tiny model over-fitted to answer TAUGHT_PROMPT with TAUGHT_REPLY, then the first stop token.

    The reply mixes Chinese and an emoji, whose bytes the byte-level tokenizer splits across tokens.
    """
    model = tiny_qwen2(tokenizer, seed=1)
    prompt = template.encode_prompt(TAUGHT_PROMPT)
    reply = tokenizer.encode(TAUGHT_REPLY, add_special_tokens=False) + [template.stop_token_ids[0]]
    ids = torch.tensor([prompt + reply])
    labels = torch.tensor([[-100] * len(prompt) + reply])
    opt = torch.optim.Adam(model.parameters(), lr=2e-2)
    for step in range(300):
        model.train()
        loss = model(input_ids=ids, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 5 == 4 and loss.item() < 0.15:
            model.eval()
            with torch.no_grad():
                greedy = model(input_ids=ids).logits[0, len(prompt) - 1:-1].argmax(-1).tolist()
            if greedy == reply:
                return model
    raise AssertionError("the tiny model did not learn its reply")

"""PtEngine: greedy replies, stop tokens and strings, lengths, batching and streaming."""
from __future__ import annotations

import pytest
import torch
from _infer_helpers import TAUGHT_PROMPT, TAUGHT_REPLY

from swift.infer.protocol import Engine, InferRequest, RequestConfig
from swift.infer.pt import PtEngine
from swift.utils.errors import ArgumentError

PROMPTS = [
    [{"role": "user", "content": "hi"}],
    [{"role": "user", "content": "What is the capital of France? Answer in one word, please."}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "你好，请介绍一下你自己。"}],
    [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}],
    [{"role": "user", "content": "Tell me a story about a fox and a crow " * 3}],
]


class StopAt:
    """A template whose stop tokens are given: lets a test stop the taught reply in its middle."""

    def __init__(self, template, stop_token_ids):
        self.encode_prompt = template.encode_prompt
        self.stop_token_ids = stop_token_ids


@pytest.fixture(scope="module")
def taught(taught_model, tokenizer, template):
    return PtEngine(taught_model, tokenizer, template)


def _stream(engine, messages, config):
    return list(engine.stream(InferRequest(messages), config))


def _reply_ids(tokenizer):
    return tokenizer.encode(TAUGHT_REPLY, add_special_tokens=False)


def test_engine_satisfies_protocol(taught):
    assert isinstance(taught, Engine)


def test_reply_ends_at_the_stop_token(taught, tokenizer, template):
    [resp] = taught.infer([InferRequest(TAUGHT_PROMPT)], RequestConfig(max_new_tokens=64))
    assert resp.text == TAUGHT_REPLY
    assert resp.finish_reason == "stop"
    assert resp.completion_tokens == len(_reply_ids(tokenizer)) + 1  # the stop token counts
    assert resp.token_ids == _reply_ids(tokenizer)
    assert resp.prompt_tokens == len(template.encode_prompt(TAUGHT_PROMPT))


def test_streaming_equals_non_streaming_without_broken_characters(taught):
    deltas = _stream(taught, TAUGHT_PROMPT, RequestConfig(max_new_tokens=64))
    assert "".join(deltas) == TAUGHT_REPLY
    assert len(deltas) > 3
    assert not any("\ufffd" in d for d in deltas)


def test_max_new_tokens_gives_length(taught, tokenizer):
    config = RequestConfig(max_new_tokens=4)
    [resp] = taught.infer([InferRequest(TAUGHT_PROMPT)], config)
    assert resp.finish_reason == "length"
    assert resp.completion_tokens == 4
    assert resp.text == tokenizer.decode(_reply_ids(tokenizer)[:4])
    assert "".join(_stream(taught, TAUGHT_PROMPT, config)) == resp.text


@pytest.mark.parametrize("stops, expected", [
    (["世界"], "你好，"),
    (["！H"], "你好，世界"),  # spans two tokens
    (["nothing like it", "llo 🙂"], "你好，世界！He"),
    (["🙂", "l"], "你好，世界！He"),  # the stop that completes first wins
])
def test_stop_strings(taught, tokenizer, stops, expected):
    config = RequestConfig(max_new_tokens=64, stop=stops)
    [resp] = taught.infer([InferRequest(TAUGHT_PROMPT)], config)
    assert resp.text == expected
    assert resp.finish_reason == "stop"
    assert resp.completion_tokens <= len(_reply_ids(tokenizer))  # the stop token was never reached
    assert "".join(_stream(taught, TAUGHT_PROMPT, config)) == expected


def test_stop_string_counts_tokens_up_to_its_end(taught, tokenizer):
    [resp] = taught.infer([InferRequest(TAUGHT_PROMPT)], RequestConfig(stop=["Hello"]))
    ids = _reply_ids(tokenizer)
    needed = next(n for n in range(len(ids) + 1) if "Hello" in tokenizer.decode(ids[:n]))
    assert resp.completion_tokens == needed


def test_template_stop_tokens_end_the_reply(taught_model, tokenizer, template):
    ids = _reply_ids(tokenizer)
    engine = PtEngine(taught_model, tokenizer, StopAt(template, [ids[5], 999_999]))
    first = ids.index(ids[5])
    [resp] = engine.infer([InferRequest(TAUGHT_PROMPT)], RequestConfig())
    assert resp.finish_reason == "stop"
    assert resp.completion_tokens == first + 1
    assert resp.text == tokenizer.decode(ids[:first])
    assert "".join(_stream(engine, TAUGHT_PROMPT, RequestConfig())) == resp.text


def test_batched_greedy_equals_one_by_one(random_model, tokenizer, template):
    config = RequestConfig(max_new_tokens=12)
    batched = PtEngine(random_model, tokenizer, template, max_batch_size=16)
    single = PtEngine(random_model, tokenizer, template, max_batch_size=1)
    lengths = {len(template.encode_prompt(m)) for m in PROMPTS}
    assert len(lengths) == len(PROMPTS)  # every prompt is padded differently
    many = batched.infer([InferRequest(m) for m in PROMPTS], config)
    alone = single.infer([InferRequest(m) for m in PROMPTS], config)
    assert [r.token_ids for r in many] == [r.token_ids for r in alone]
    assert [r.text for r in many] == [r.text for r in alone]
    assert all(r.completion_tokens > 0 for r in many)
    # and the order of the results follows the order of the requests
    assert many[2] == single.infer([InferRequest(PROMPTS[2])], config)[0]


def test_random_model_stream_equals_infer(random_model, tokenizer, template):
    engine = PtEngine(random_model, tokenizer, template)
    config = RequestConfig(max_new_tokens=20)
    for messages in PROMPTS[:3]:
        [resp] = engine.infer([InferRequest(messages)], config)
        assert "".join(_stream(engine, messages, config)) == resp.text


def test_sampling_is_reproducible_with_a_seed(random_model, tokenizer, template):
    engine = PtEngine(random_model, tokenizer, template)
    requests = [InferRequest(m) for m in PROMPTS[:2]]
    state = torch.get_rng_state()
    a = engine.infer(requests, RequestConfig(max_new_tokens=16, temperature=1.0, top_k=50, seed=7))
    b = engine.infer(requests, RequestConfig(max_new_tokens=16, temperature=1.0, top_k=50, seed=7))
    c = engine.infer(requests, RequestConfig(max_new_tokens=16, temperature=1.0, top_k=50, seed=8))
    assert torch.equal(state, torch.get_rng_state())  # the caller's random state is untouched
    assert [r.token_ids for r in a] == [r.token_ids for r in b]
    assert [r.token_ids for r in a] != [r.token_ids for r in c]
    greedy = engine.infer(requests, RequestConfig(max_new_tokens=16))
    assert [r.token_ids for r in a] != [r.token_ids for r in greedy]


def test_closing_a_stream_early_frees_the_engine(taught):
    deltas = taught.stream(InferRequest(TAUGHT_PROMPT), RequestConfig(max_new_tokens=64))
    assert next(deltas)
    deltas.close()
    [resp] = taught.infer([InferRequest(TAUGHT_PROMPT)], RequestConfig(max_new_tokens=64))
    assert resp.text == TAUGHT_REPLY


class OutOfVocab:
    def __init__(self, template):
        self.stop_token_ids = template.stop_token_ids

    def encode_prompt(self, messages):
        return [10**6]  # no such embedding row: the model fails inside generate


def test_stream_reports_generation_errors(taught_model, tokenizer, template):
    engine = PtEngine(taught_model, tokenizer, OutOfVocab(template))
    with pytest.raises(IndexError):
        list(engine.stream(InferRequest(TAUGHT_PROMPT), RequestConfig(max_new_tokens=2)))
    engine.template = template  # the failed run released the engine
    assert engine.infer([InferRequest(TAUGHT_PROMPT)], RequestConfig())[0].text == TAUGHT_REPLY


@pytest.mark.parametrize("kwargs, flag", [
    ({"max_new_tokens": 0}, "max_new_tokens"),
    ({"temperature": -1}, "temperature"),
    ({"top_p": 0}, "top_p"),
    ({"top_k": -1}, "top_k"),
    ({"repetition_penalty": 0}, "repetition_penalty"),
])
def test_request_config_rejects_bad_values(kwargs, flag):
    with pytest.raises(ArgumentError, match=flag):
        RequestConfig(**kwargs)


def test_request_config_accepts_one_stop_string():
    assert RequestConfig(stop="###").stop == ["###"]

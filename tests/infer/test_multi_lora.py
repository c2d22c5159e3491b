"""Several LoRA adapters over one base model in one PtEngine, chosen per request."""
from __future__ import annotations

import threading

import pytest
from _infer_helpers import save_lora_adapter, tiny_qwen2

from swift.infer.protocol import InferRequest, RequestConfig
from swift.infer.pt import PtEngine
from swift.utils.errors import SwiftError

PROMPTS = [
    [{"role": "user", "content": "hi"}],
    [{"role": "user", "content": "What is the capital of France? Answer in one word, please."}],
    [{"role": "user", "content": "Tell me a story about a fox and a crow " * 2}],
]
CONFIG = RequestConfig(max_new_tokens=16)


@pytest.fixture(scope="module")
def adapters(tokenizer, tmp_path_factory):
    root = tmp_path_factory.mktemp("adapters")
    return {name: str(save_lora_adapter(tiny_qwen2(tokenizer), root / name, seed=seed))
            for name, seed in (("alpha", 1), ("beta", 2))}


@pytest.fixture(scope="module")
def engine(tokenizer, template, adapters):
    return PtEngine(tiny_qwen2(tokenizer), tokenizer, template, adapters=adapters)


def _ids(engine, adapter):
    return [r.token_ids for r in engine.infer([InferRequest(m, adapter=adapter) for m in PROMPTS], CONFIG)]


def test_adapter_names(engine):
    assert engine.adapter_names == ["alpha", "beta"]


def test_each_adapter_equals_a_single_adapter_engine(engine, tokenizer, template, adapters):
    mixed = [InferRequest(m, adapter=a) for a in (None, "alpha", "beta") for m in PROMPTS]
    got = [r.token_ids for r in engine.infer(mixed, CONFIG)]  # all three groups in one run
    n = len(PROMPTS)
    base, alpha, beta = got[:n], got[n:2 * n], got[2 * n:]
    assert base == _ids(PtEngine(tiny_qwen2(tokenizer), tokenizer, template), None)
    for name, ids in (("alpha", alpha), ("beta", beta)):
        single = PtEngine(tiny_qwen2(tokenizer), tokenizer, template, adapters={name: adapters[name]})
        assert ids == _ids(single, name)
    assert alpha != beta and alpha != base and beta != base


def test_concurrent_streams_with_different_adapters(engine):
    expected = {a: engine.infer([InferRequest(PROMPTS[1], adapter=a)], CONFIG)[0].text
                for a in (None, "alpha", "beta")}
    got: dict = {}

    def work(adapter):
        got[adapter] = "".join(engine.stream(InferRequest(PROMPTS[1], adapter=adapter), CONFIG))

    threads = [threading.Thread(target=work, args=(a,)) for a in expected]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert got == expected
    assert len(set(expected.values())) == 3


def test_unknown_adapter_names_the_known_ones(engine, tokenizer, template):
    with pytest.raises(SwiftError, match="gamma.*alpha, beta"):
        engine.infer([InferRequest(PROMPTS[0], adapter="gamma")])
    with pytest.raises(SwiftError, match="gamma"):
        next(engine.stream(InferRequest(PROMPTS[0], adapter="gamma")))
    plain = PtEngine(tiny_qwen2(tokenizer), tokenizer, template)
    assert plain.adapter_names == []
    with pytest.raises(SwiftError, match="none are loaded"):
        plain.infer([InferRequest(PROMPTS[0], adapter="alpha")])


def test_a_missing_adapter_folder_is_a_clear_error(tokenizer, template, tmp_path):
    with pytest.raises(SwiftError, match="cannot load LoRA adapter 'x'"):
        PtEngine(tiny_qwen2(tokenizer), tokenizer, template, adapters={"x": str(tmp_path / "nope")})

"""`swift deploy --adapters a=... b=...`: two LoRA adapters over one base model, chosen by the request's `model`.

Needs an engine with multi-LoRA support (`PtEngine(..., adapters={name: path})`); skipped until it exists."""
from __future__ import annotations

import inspect

import pytest

openai = pytest.importorskip("openai")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")


def _multi_lora() -> bool:
    from swift.infer.pt import PtEngine

    return "adapters" in inspect.signature(PtEngine.__init__).parameters


def _random_lora(base_dir: str, out_dir: str, seed: int) -> str:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base_dir)
    cfg = LoraConfig(r=8, lora_alpha=64, target_modules=["q_proj", "v_proj", "o_proj", "down_proj"],
                     init_lora_weights=False)
    peft_model = get_peft_model(model, cfg)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_" in name:
                p.normal_(0, 0.5)
    peft_model.save_pretrained(out_dir)
    return out_dir


def test_two_adapters_answer_differently(tiny_qwen2_dir, tmp_path):
    if not _multi_lora():
        pytest.skip("this PtEngine cannot serve LoRA adapters by name yet")
    from swift.cli.parser import parse_args
    from swift.pipelines.deploy import build_deploy_app
    from swift.serve.background import BackgroundServer

    a = _random_lora(tiny_qwen2_dir, str(tmp_path / "a"), 1)
    b = _random_lora(tiny_qwen2_dir, str(tmp_path / "b"), 2)
    args = parse_args("deploy", ["--model", tiny_qwen2_dir, "--served_model_name", "base",
                                 "--adapters", f"a={a}", f"b={b}"])
    app, _ = build_deploy_app(args)
    msgs = [{"role": "user", "content": "Tell me a story."}]
    with BackgroundServer(app) as server:
        client = openai.OpenAI(base_url=server.url, api_key="none", max_retries=0)
        assert [m.id for m in client.models.list().data] == ["base", "a", "b"]
        texts = {}
        for name in ("base", "a", "b"):
            r = client.chat.completions.create(model=name, messages=msgs, max_tokens=12)
            texts[name] = r.choices[0].message.content
            streamed = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
                model=name, messages=msgs, max_tokens=12, stream=True) if c.choices)
            assert streamed == texts[name]
        assert len(set(texts.values())) == 3, texts
        raw = [client.completions.create(model=name, prompt="Once upon a time", max_tokens=8).choices[0].text
               for name in ("base", "a", "b", "base")]
        assert len(set(raw)) == 3 and raw[0] == raw[3], raw  # "base" after the adapters is the base model again
        with pytest.raises(openai.NotFoundError, match="base, a, b"):
            client.chat.completions.create(model="c", messages=msgs, max_tokens=4)

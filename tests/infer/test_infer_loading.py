"""Loading a model folder with peft adapters for inference."""
from __future__ import annotations

import pytest
import torch
from _infer_helpers import DEMO_TOKENIZER, save_lora_adapter, tiny_qwen2
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

from swift.infer.loading import load_for_inference
from swift.utils.errors import SwiftError

IDS = torch.tensor([[1, 5, 17, 42, 99, 3, 250, 8]])


@pytest.fixture(scope="module")
def folders(tmp_path_factory, tokenizer):
    """A saved base model, two adapters for it (the second with its own tokenizer files)."""
    root = tmp_path_factory.mktemp("loading")
    tiny_qwen2(tokenizer).save_pretrained(root / "base")
    tokenizer.save_pretrained(root / "base")
    base = AutoModelForCausalLM.from_pretrained(root / "base")
    save_lora_adapter(base, root / "lora1", seed=1)
    own_tok = AutoTokenizer.from_pretrained(DEMO_TOKENIZER)
    own_tok.chat_template = "{% for m in messages %}[{{ m['content'] }}]{% endfor %}"
    save_lora_adapter(base, root / "lora2", seed=2, tokenizer=own_tok, targets=("k_proj", "o_proj", "up_proj"))
    return root


def _logits(model):
    """Logits on CPU, whatever device the loader chose (a GPU when there is one)."""
    with torch.no_grad():
        return model(input_ids=IDS.to(model.device)).logits.float().cpu()


def test_plain_folder_loads_in_eval_mode(folders):
    model, tok = load_for_inference(folders / "base")
    assert not model.training
    reference = AutoModelForCausalLM.from_pretrained(folders / "base")
    assert torch.equal(_logits(model), _logits(reference))
    assert tok.eos_token == "<|im_end|>"


def test_adapter_changes_the_model_and_merging_keeps_it(folders):
    base, _ = load_for_inference(folders / "base")
    peft_model, _ = load_for_inference(folders / "base", adapters=[folders / "lora1"])
    merged, _ = load_for_inference(folders / "base", adapters=[folders / "lora1"], merge_lora=True)
    assert isinstance(peft_model, PeftModel) and not peft_model.training
    assert not isinstance(merged, PeftModel)
    assert not any("lora" in n for n, _ in merged.named_parameters())
    assert not torch.allclose(_logits(base), _logits(peft_model), atol=1e-3)  # the adapter matters
    torch.testing.assert_close(_logits(merged), _logits(peft_model), atol=1e-5, rtol=1e-4)


def test_several_adapters_stack(folders):
    adapters = [folders / "lora1", folders / "lora2"]
    both, _ = load_for_inference(folders / "base", adapters=adapters)
    merged, tok = load_for_inference(folders / "base", adapters=adapters, merge_lora=True)
    one, _ = load_for_inference(folders / "base", adapters=adapters[:1])
    assert sorted(both.base_model.active_adapters) == ["adapter_1", "default"]
    torch.testing.assert_close(_logits(both), _logits(merged), atol=1e-5, rtol=1e-4)
    assert not torch.allclose(_logits(both), _logits(one), atol=1e-3)
    assert tok.chat_template.startswith("{% for m in messages %}[")  # the adapter's tokenizer won


def test_base_model_comes_from_the_adapter_config(folders):
    model, tok = load_for_inference(None, adapters=[folders / "lora1"])
    reference, _ = load_for_inference(folders / "base", adapters=[folders / "lora1"])
    torch.testing.assert_close(_logits(model), _logits(reference))
    assert tok.chat_template != "{% for m in messages %}[{{ m['content'] }}]{% endfor %}"


def test_dtype_is_applied(folders):
    model, _ = load_for_inference(folders / "base", torch_dtype="bfloat16")
    assert model.dtype == torch.bfloat16


def test_errors_name_the_folder(folders, tmp_path):
    with pytest.raises(SwiftError, match="adapter_config.json"):
        load_for_inference(folders / "base", adapters=[tmp_path])
    with pytest.raises(SwiftError, match="no config.json"):
        load_for_inference(tmp_path)
    with pytest.raises(SwiftError, match="torch_dtype"):
        load_for_inference(folders / "base", torch_dtype="float7")

"""SwiftModel.from_pretrained over the model loader: a local model folder, and a peft adapter folder."""
from __future__ import annotations

import importlib.util

import peft
import pytest
import torch

from swift.tuners import LoRAConfig, QLoRAConfig, SwiftConfig, SwiftModel
from swift.utils.errors import MissingExtraError, SwiftError

HAS_BNB = importlib.util.find_spec("bitsandbytes") is not None


def _has_loader() -> bool:
    try:
        from swift.models.loader import load_model_and_tokenizer  # noqa: F401
    except ImportError:
        return False
    return True


needs_loader = pytest.mark.skipif(not _has_loader(), reason="swift.models.loader is not available yet")


@pytest.fixture
def model_dir(tiny_model, tokenizer, tmp_path):
    path = tmp_path / "tiny-qwen2"
    tiny_model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@needs_loader
def test_from_local_folder_with_lora(model_dir, batch):
    model = SwiftModel.from_pretrained(
        str(model_dir), config=SwiftConfig(lora=LoRAConfig(target_modules=["q_proj", "v_proj"])),
        torch_dtype="fp32")
    assert model.is_peft and model.tokenizer is not None
    assert str(model.model_dir) == str(model_dir)
    assert all("lora_" in n for n, p in model.named_parameters() if p.requires_grad)
    assert model(**batch).logits.shape[:2] == batch["input_ids"].shape


@needs_loader
def test_from_adapter_folder_loads_base_and_adapter(make_tiny_model, model_dir, batch, tmp_path):
    base = make_tiny_model()
    base.config.name_or_path = str(model_dir)
    base.name_or_path = str(model_dir)
    lora = LoRAConfig(r=4, target_modules=["q_proj", "v_proj"], init_weights=False)
    trained = SwiftModel(base, SwiftConfig(lora=lora)).eval()
    expected = trained(**batch).logits
    trained.save_pretrained(tmp_path / "adapter")

    loaded = SwiftModel.from_pretrained(str(tmp_path / "adapter"), torch_dtype="fp32").eval()
    assert isinstance(loaded.unwrap(), peft.PeftModel) and loaded.tokenizer is not None
    torch.testing.assert_close(loaded(**batch).logits, expected)
    assert not any(p.requires_grad for p in loaded.parameters())  # peft's default: inference
    trainable = SwiftModel.from_pretrained(str(tmp_path / "adapter"), base_model=str(model_dir),
                                           is_trainable=True, torch_dtype="fp32")
    assert any(p.requires_grad for p in trainable.parameters())


def test_adapter_folder_without_base_asks_for_one(tiny_model, tmp_path):
    if not _has_loader():
        pytest.skip("swift.models.loader is not available yet")
    SwiftModel(tiny_model, SwiftConfig(lora=LoRAConfig(target_modules=["q_proj"]))).save_pretrained(tmp_path)
    with pytest.raises(SwiftError, match="base_model="):
        SwiftModel.from_pretrained(str(tmp_path))


def test_qlora_from_pretrained_without_bitsandbytes(tmp_path, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "bitsandbytes", None)  # as if not installed
    with pytest.raises(MissingExtraError, match="quant"):
        SwiftModel.from_pretrained(str(tmp_path), config=SwiftConfig(lora=QLoRAConfig()))


@needs_loader
@pytest.mark.skipif(not HAS_BNB, reason="bitsandbytes is not installed")
def test_qlora_from_pretrained_loads_4bit(model_dir, batch):
    model = SwiftModel.from_pretrained(str(model_dir), config=SwiftConfig(lora=QLoRAConfig(
        target_modules=["q_proj", "v_proj"], compute_dtype="float32")))
    q = model.unwrap().base_model.model.model.layers[0].self_attn.q_proj.base_layer
    assert type(q).__name__ == "Linear4bit"
    loss = model(**batch).loss
    loss.backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if p.requires_grad)

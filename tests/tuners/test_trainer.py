"""A SwiftModel handed straight to `transformers.Trainer` trains, and the Trainer can save it."""
from __future__ import annotations

import safetensors.torch
import torch
from datasets import Dataset
from transformers import Trainer, TrainingArguments

from swift.tuners import LoRAConfig, SwiftConfig, SwiftModel


def _dataset(tokenizer, n: int = 4) -> Dataset:
    texts = ["<|im_start|>user\nhi<|im_end|>", "<|im_start|>assistant\nhello there<|im_end|>"] * (n // 2)
    enc = tokenizer(texts, padding="max_length", max_length=16, truncation=True)
    labels = [[t if m else -100 for t, m in zip(ids, mask)]
              for ids, mask in zip(enc["input_ids"], enc["attention_mask"])]
    # an extra column the Trainer must drop (remove_unused_columns) while keeping the model inputs
    return Dataset.from_dict({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
                              "labels": labels, "text": texts})


def _args(tmp_path, **kw) -> TrainingArguments:
    return TrainingArguments(output_dir=str(tmp_path / "out"), max_steps=2, per_device_train_batch_size=2,
                             learning_rate=1e-2, use_cpu=True, report_to=[], save_strategy="no",
                             logging_steps=1, disable_tqdm=True, **kw)


def test_trainer_two_steps_changes_only_adapter_weights(make_tiny_model, tokenizer, batch, tmp_path):
    model = SwiftModel(make_tiny_model(), SwiftConfig(lora=LoRAConfig(r=4, target_modules=["q_proj", "v_proj"])))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer = Trainer(model=model, args=_args(tmp_path), train_dataset=_dataset(tokenizer))
    result = trainer.train()
    assert result.global_step == 2 and torch.isfinite(torch.tensor(result.training_loss))

    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed, "nothing trained"
    assert all(".lora_A." in n or ".lora_B." in n for n in changed), changed
    assert any(".lora_B." in n for n in changed)

    # Trainer.save_model on a module it does not know saves state_dict(): the adapter tensors only.
    model.eval()
    expected = model(**batch).logits
    trainer.save_model(str(tmp_path / "final"))
    saved = safetensors.torch.load_file(str(tmp_path / "final" / "model.safetensors"))
    assert len(saved) == 8 and all("lora_" in k for k in saved)
    fresh = SwiftModel(make_tiny_model(), SwiftConfig(lora=LoRAConfig(r=4, target_modules=["q_proj", "v_proj"])))
    fresh.load_state_dict(saved)
    torch.testing.assert_close(fresh.eval()(**batch).logits, expected)

    # and the swift way: a plain peft adapter folder
    model.save_pretrained(tmp_path / "adapter")
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()


def test_trainer_full_mode_with_tied_embeddings_saves(make_tiny_model, tokenizer, tmp_path):
    model = SwiftModel(make_tiny_model(tie_word_embeddings=True), SwiftConfig(tuner_type="full"))
    emb = model.model.model.embed_tokens.weight.detach().clone()
    trainer = Trainer(model=model, args=_args(tmp_path, max_grad_norm=1.0), train_dataset=_dataset(tokenizer))
    trainer.train()
    assert not torch.equal(model.model.model.embed_tokens.weight, emb)
    trainer.save_model(str(tmp_path / "final"))  # safetensors refuses aliased tensors; state_dict dedups
    saved = safetensors.torch.load_file(str(tmp_path / "final" / "model.safetensors"))
    assert "model.model.embed_tokens.weight" in saved and "model.lm_head.weight" not in saved

"""The demo recipe really teaches `swift-demo` its new identity (slow: ~30-60 s of CPU training)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from swift.models.demo import DEMO_TRAIN_DEFAULTS


@pytest.mark.slow
def test_lora_on_self_cognition_teaches_the_name(demo_model_dir, self_cognition_file, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import Trainer, TrainingArguments

    from swift.models.loader import load_model_and_tokenizer

    model, tok, _ = load_model_and_tokenizer(demo_model_dir)
    d = DEMO_TRAIN_DEFAULTS
    model = get_peft_model(model, LoraConfig(r=d["lora_rank"], lora_alpha=d["lora_alpha"],
                                             target_modules=d["target_modules"], task_type="CAUSAL_LM"))
    rows = []
    for line in Path(self_cognition_file).read_text(encoding="utf-8").splitlines():
        msgs = json.loads(line)["messages"]
        for m in msgs:
            m["content"] = m["content"].replace("{{NAME}}", "swift-robot").replace("{{AUTHOR}}", "swift")
        prompt = tok.apply_chat_template(msgs[:-1], tokenize=False, add_generation_prompt=True)
        p_ids = tok(prompt)["input_ids"]
        ids = tok(prompt + msgs[-1]["content"] + "<|im_end|>\n")["input_ids"]
        rows.append({"input_ids": ids, "labels": [-100] * len(p_ids) + ids[len(p_ids):]})

    def collate(batch):
        n = max(len(r["input_ids"]) for r in batch)
        pad = lambda seq, v: seq + [v] * (n - len(seq))  # noqa: E731
        return {"input_ids": torch.tensor([pad(r["input_ids"], tok.pad_token_id) for r in batch]),
                "labels": torch.tensor([pad(r["labels"], -100) for r in batch]),
                "attention_mask": torch.tensor([pad([1] * len(r["input_ids"]), 0) for r in batch])}

    args = TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=d["per_device_train_batch_size"],
                             num_train_epochs=d["num_train_epochs"], learning_rate=d["learning_rate"],
                             lr_scheduler_type=d["lr_scheduler_type"], warmup_steps=d["warmup_steps"],
                             save_strategy="no", report_to=[], use_cpu=True, seed=42, disable_tqdm=True,
                             logging_steps=1000)
    result = Trainer(model=model, args=args, train_dataset=rows, data_collator=collate).train()
    assert result.training_loss < 1.5
    model.eval()
    for question in ("who are you?", "你是谁?"):
        ids = tok.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True,
                                      return_tensors="pt", return_dict=True)
        out = model.generate(**ids, max_new_tokens=30, do_sample=False)
        answer = tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
        assert "swift-robot" in answer, answer

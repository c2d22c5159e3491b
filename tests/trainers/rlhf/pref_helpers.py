"""Builders shared by the offline preference trainer tests: tiny models, encoded rows, checkpoint checks.

Rows are encoded here with the template directly (prompt_ids = `encode_prompt(history)`, completion = the
labelled tokens of `encode(history + [reply])` after the prompt), with the column names of the data contract.
"""
from __future__ import annotations

import json
import os
from typing import Any

import torch
from datasets import Dataset

from swift.trainers.checkpoint import is_complete_checkpoint
from swift.trainers.rlhf.losses import IGNORE_INDEX

TASKS = {"causal_lm": "CAUSAL_LM", "seq_cls": "SEQ_CLS"}


def load(model_dir: str, *, task: str = "causal_lm", lora: bool = True, init_weights: bool | str = True,
         max_length: int = 256, seed: int = 0) -> tuple[Any, Any, Any]:
    """(model, tokenizer, template) of a tiny model folder; with `lora`, r=8 adapters on every linear layer."""
    from swift.models.loader import load_model_and_tokenizer
    from swift.templates import get_template

    model, tokenizer, _ = load_model_and_tokenizer(model_dir, task=task)
    if lora:
        from swift.tuners import LoRAConfig, prepare_model

        torch.manual_seed(seed)
        model = prepare_model(model, tuner_type="lora", task_type=TASKS[task],
                              lora=LoRAConfig(r=8, alpha=16, dropout=0.0, init_weights=init_weights))
    return model, tokenizer, get_template(tokenizer, max_length=max_length)


def encode_reply(template: Any, history: list[dict], reply: str) -> tuple[list[int], list[int]]:
    """(prompt_ids, completion_ids): the completion is the labelled tokens after the prompt (reply + <|im_end|>)."""
    prompt = template.encode_prompt(history)
    enc = template.encode([*history, {"role": "assistant", "content": reply}])
    assert enc["input_ids"][: len(prompt)] == prompt
    last = max(i for i, lab in enumerate(enc["labels"]) if lab != IGNORE_INDEX)
    return prompt, enc["input_ids"][len(prompt): last + 1]


def pair_row(template: Any, question: str, chosen: str, rejected: str) -> dict[str, list[int]]:
    history = [{"role": "user", "content": question}]
    prompt, chosen_ids = encode_reply(template, history, chosen)
    _, rejected_ids = encode_reply(template, history, rejected)
    return {"prompt_ids": prompt, "chosen_ids": chosen_ids, "rejected_ids": rejected_ids}


def pair_dataset(template: Any, n: int = 8, offset: int = 0) -> Dataset:
    """Arithmetic questions; chosen: the right answer, rejected: a refusal (different lengths on purpose)."""
    return Dataset.from_list([pair_row(template, f"What is {i} plus {i}?", f"{i} plus {i} is {2 * i}.",
                                       "I do not know.") for i in range(offset, offset + n)])


def kto_dataset(template: Any, n: int = 8) -> Dataset:
    """Unpaired rows, alternating desirable (right answer) and undesirable (refusal)."""
    rows = []
    for i in range(n):
        history = [{"role": "user", "content": f"What is {i} plus {i}?"}]
        reply = f"{i} plus {i} is {2 * i}." if i % 2 == 0 else "I do not know."
        prompt, completion = encode_reply(template, history, reply)
        rows.append({"prompt_ids": prompt, "completion_ids": completion, "label": i % 2 == 0})
    return Dataset.from_list(rows)


def train_args(output_dir: Any, **overrides: Any) -> dict[str, Any]:
    """The flat `args` dict of the trainer contract, for a few CPU steps."""
    args: dict[str, Any] = dict(
        output_dir=str(output_dir), max_steps=3, save_steps=3, logging_steps=1, per_device_train_batch_size=2,
        per_device_eval_batch_size=4, learning_rate=1e-3, report_to="none", disable_tqdm=True, use_cpu=True,
        seed=0, dataloader_num_workers=0, save_strategy="steps",
    )
    args.update(overrides)
    return args


def losses(output_dir: Any) -> dict[int, float]:
    with open(os.path.join(output_dir, "logging.jsonl"), encoding="utf-8") as f:
        records = [json.loads(line) for line in f]
    return {r["step"]: r["loss"] for r in records if "loss" in r}


def assert_adapter_checkpoint(ckpt: Any, trained: Any, base_dir: str, task: str = "causal_lm") -> Any:
    """`ckpt` is complete, carries args.json and the tokenizer, and loads with plain peft onto a fresh base to the
    trained adapter's weights. Returns the loaded peft model."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    assert is_complete_checkpoint(ckpt)
    for name in ("adapter_config.json", "adapter_model.safetensors", "args.json", "tokenizer_config.json",
                 "trainer_state.json", "optimizer.pt"):
        assert os.path.isfile(os.path.join(ckpt, name)), name
    assert not os.path.exists(os.path.join(ckpt, "ref")), "the reference adapter must not be saved"
    auto = AutoModelForSequenceClassification if task == "seq_cls" else AutoModelForCausalLM
    base = auto.from_pretrained(base_dir, num_labels=1) if task == "seq_cls" else auto.from_pretrained(base_dir)
    loaded = PeftModel.from_pretrained(base, str(ckpt))
    want = {n: p for n, p in trained.named_parameters() if "lora_" in n or "modules_to_save" in n}
    got = dict(loaded.named_parameters())
    assert want, "no adapter weights in the trained model"
    for name, param in want.items():
        assert torch.equal(got[name].detach(), param.detach()), name
    return loaded


def sequence_logps(model: Any, prompt: list[int], completion: list[int], *, average: bool = False) -> torch.Tensor:
    """Log-prob of `completion` after `prompt`, one unpadded sequence (independent of any collator)."""
    from swift.trainers.rlhf.losses import completion_logps

    ids = torch.tensor([prompt + completion])
    labels = torch.tensor([[IGNORE_INDEX] * len(prompt) + completion])
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    return completion_logps(logits, labels, average=average)[0]

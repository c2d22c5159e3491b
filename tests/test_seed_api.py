"""The seed's Python snippets for the text path, verbatim except the model name (a local tiny model)."""
from __future__ import annotations


def test_seed_lora_snippets_train(tmp_path, monkeypatch, tiny_qwen2_dir):
    monkeypatch.chdir(tmp_path)
    messages_dataset = [
        {"messages": [{"role": "user", "content": f"Say {i}."}, {"role": "assistant", "content": f"{i}!"}]}
        for i in range(16)
    ]

    # --- seed, snippet 1 (text path): load, then TrainingArguments exactly as written ---
    from swift import SwiftModel, TrainingArguments
    model = SwiftModel.from_pretrained(tiny_qwen2_dir)
    training_args = TrainingArguments(
        output_dir="./output",
        per_device_train_batch_size=8,
        num_train_epochs=3,
        remove_unused_columns=False,
    )
    # --- seed, snippet 2, verbatim ---
    from swift import SwiftConfig, LoRAConfig  # noqa: I001 (the seed, verbatim)
    lora_config = LoRAConfig(
        r=8,
        target_modules=["q_proj", "v_proj"],
        alpha=16,
        dropout=0.1
    )
    swift_config = SwiftConfig(lora=lora_config)
    model = SwiftModel(model, config=swift_config)
    # --- end of seed ---

    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    assert {n.split(".")[-4] for n in trainable} == {"q_proj", "v_proj"}
    before = {n: p.detach().clone() for n, p in model.named_parameters()}

    from swift import Trainer
    trainer = Trainer(model=model, args=training_args, train_dataset=messages_dataset)
    trainer.train()

    assert trainer.state.global_step == 6
    changed = {n for n, p in model.named_parameters() if not (p.detach() == before[n]).all()}
    assert changed and changed <= trainable
    assert (tmp_path / "output" / "checkpoint-6" / "adapter_config.json").is_file()


def test_seed_dpo_snippet_trains(tmp_path, monkeypatch, tiny_qwen2_dir):
    """The seed's DPO snippet, verbatim, on a LoRA model (reference = the base with adapters disabled)."""
    monkeypatch.chdir(tmp_path)
    from swift import LoRAConfig, SwiftConfig, SwiftModel, TrainingArguments

    model = SwiftModel.from_pretrained(tiny_qwen2_dir)
    model = SwiftModel(model, config=SwiftConfig(lora=LoRAConfig(r=8, alpha=16)))
    tokenizer = model.tokenizer
    ref_model = None
    training_args = TrainingArguments(output_dir="./output", per_device_train_batch_size=4, max_steps=2,
                                      learning_rate=1e-3, report_to="none")
    preference_dataset = [
        {"messages": [{"role": "user", "content": f"What is {i} plus {i}?"},
                      {"role": "assistant", "content": f"{2 * i}."}],
         "rejected_response": "I cannot count."} for i in range(8)]
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

    # --- seed, verbatim ---
    from swift import DPOTrainer, DPOConfig  # noqa: I001 (the seed, verbatim)
    dpo_config = DPOConfig(beta=0.1, loss_type="sigmoid")
    trainer = DPOTrainer(
        model=model,
        ref_model=ref_model,
        args=training_args,
        train_dataset=preference_dataset,
        tokenizer=tokenizer,
        dpo_config=dpo_config
    )
    trainer.train()
    # --- end of seed ---

    assert trainer.state.global_step == 2
    changed = [n for n, p in model.named_parameters() if p.requires_grad and not torch_equal(p, before[n])]
    assert changed
    assert (tmp_path / "output" / "checkpoint-2" / "adapter_config.json").is_file()


def torch_equal(a, b) -> bool:
    import torch

    return bool(torch.equal(a.detach(), b))

"""The Python API of the nine algorithms (`from swift import DPOTrainer, ...`): raw rows in, a trained checkpoint out."""
from __future__ import annotations

import pytest
import torch


def _pref(n: int = 8) -> list[dict]:
    return [{"messages": [{"role": "user", "content": f"What is {i} plus {i}?"},
                          {"role": "assistant", "content": f"{2 * i}."}],
             "rejected_response": "I cannot count."} for i in range(n)]


def _kto(n: int = 8) -> list[dict]:
    return [{"prompt": f"What is {i} plus {i}?", "completion": f"{2 * i + i % 2}.", "label": i % 2 == 0}
            for i in range(n)]


def _prompts(n: int = 8) -> list[dict]:
    return [{"messages": [{"role": "user", "content": f"What is {i} plus {i}?"}], "solution": str(2 * i)}
            for i in range(n)]


def _sft(n: int = 8) -> list[dict]:
    return [{"messages": [{"role": "user", "content": f"Say {i}."}, {"role": "assistant", "content": f"{i}!"}]}
            for i in range(n)]


CASES = {
    "DPOTrainer": ("DPOConfig", {"beta": 0.1, "loss_type": "sigmoid"}, _pref, {}),
    "KTOTrainer": ("KTOConfig", {"beta": 0.1}, _kto, {}),
    "CPOTrainer": ("CPOConfig", {"loss_type": "sigmoid"}, _pref, {}),
    "CPOTrainer-simpo": ("CPOConfig", {"loss_type": "simpo", "simpo_gamma": 0.5}, _pref, {}),
    "ORPOTrainer": ("ORPOConfig", {"beta": 0.1}, _pref, {}),
    "RewardTrainer": ("RewardConfig", {}, _pref, {}),
    "PPOTrainer": ("PPOConfig", {"max_completion_length": 6, "num_ppo_epochs": 1}, _prompts,
                   {"reward_funcs": ["accuracy", "length"]}),
    "GRPOTrainer": ("GRPOConfig", {"num_generations": 2, "max_completion_length": 6}, _prompts,
                    {"reward_funcs": ["accuracy", "length"]}),
    "GKDTrainer": ("GKDConfig", {"max_completion_length": 6}, _sft, {"teacher": True}),
}
CONFIG_ARG = {"DPOTrainer": "dpo_config", "KTOTrainer": "kto_config", "CPOTrainer": "cpo_config",
              "ORPOTrainer": "orpo_config", "RewardTrainer": "reward_config", "PPOTrainer": "ppo_config",
              "GRPOTrainer": "grpo_config", "GKDTrainer": "gkd_config"}


@pytest.mark.parametrize("case", list(CASES))
def test_python_api_trains(case, tmp_path, tiny_qwen2_dir):
    import swift
    from swift import LoRAConfig, SwiftConfig, SwiftModel, TrainingArguments
    from swift.models.loader import load_model_and_tokenizer

    name = case.split("-")[0]
    config_name, settings, rows, extra = CASES[case]
    if name == "RewardTrainer":  # a reward model is a sequence classifier; trained fully here
        model, tokenizer, _ = load_model_and_tokenizer(tiny_qwen2_dir, task="seq_cls")
    else:
        model = SwiftModel(SwiftModel.from_pretrained(tiny_qwen2_dir), config=SwiftConfig(lora=LoRAConfig(r=4)))
        tokenizer = model.tokenizer
    kwargs = dict(extra)
    if kwargs.pop("teacher", False):
        kwargs["teacher_model"] = load_model_and_tokenizer(tiny_qwen2_dir)[0]
    args = TrainingArguments(output_dir=str(tmp_path / "out"), per_device_train_batch_size=2, max_steps=2,
                             learning_rate=1e-3, report_to="none", save_steps=2, logging_steps=1)
    config = getattr(swift, config_name)(**settings)
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    trainer = getattr(swift, name)(model=model, args=args, train_dataset=rows(), tokenizer=tokenizer,
                                   **{CONFIG_ARG[name]: config}, **kwargs)
    trainer.train()
    assert trainer.state.global_step == 2
    assert any(not torch.equal(p.detach(), before[n]) for n, p in model.named_parameters() if n in before)
    ckpt = tmp_path / "out" / "checkpoint-2"
    assert (ckpt / "swift_checkpoint.json").is_file()
    assert (ckpt / ("model.safetensors" if name == "RewardTrainer" else "adapter_config.json")).is_file()


def test_wrong_config_type_is_named():
    from swift import DPOTrainer, KTOConfig, SwiftError

    with pytest.raises(SwiftError, match="dpo_config must be a DPOConfig"):
        DPOTrainer(model=torch.nn.Linear(1, 1), args=object(), train_dataset=[], tokenizer=object(),
                   dpo_config=KTOConfig())

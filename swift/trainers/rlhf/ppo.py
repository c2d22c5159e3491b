"""PPO for language models on `transformers.Trainer` (TRL 1.x has no PPO; the maths is in `ppo_core`).

One rollout batch is `per_device_train_batch_size * gradient_accumulation_steps` prompts. For each, the policy
samples a completion; a reward model and/or reward functions score it; the policy (old log-probabilities and
the value head's estimates) and the reference (log-probabilities for the KL penalty) score its tokens; GAE gives
whitened advantages and returns. The batch is then optimised `num_ppo_epochs` times, one optimizer step per
pass (each pass reshuffles it into `gradient_accumulation_steps` micro-batches), before the next rollout.
So `max_steps` counts optimizer steps and a rollout happens every `num_ppo_epochs` of them.

The dataloader yields each rollout batch once per micro-step (a repeat sampler, as TRL's GRPO does), which
keeps the Trainer's loop, gradient accumulation, logging, checkpoints and resume unchanged: only
`_prepare_inputs` (rollout + slicing) and `compute_loss` (the clipped losses) are PPO's.

Policy and value share the backbone: the value head (`ppo_core.ValueHead`, attached as `model.v_head`) reads
the policy's last hidden state; with LoRA the value loss trains the adapters too. The reference is the
`ref_model` given, else under LoRA the same model with its adapters disabled (or, when the adapter already
changes the model at step 0, a frozen copy of it named "ref"), else a frozen in-memory copy of the model.
Completions end at the template's stop tokens. Checkpoints hold the policy as usual (a plain peft adapter
folder under LoRA, a plain transformers folder otherwise) plus `value_head.safetensors`; resume restores both.
"""
from __future__ import annotations

import copy
import json
import os
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import nn
from torch.utils.data import Sampler
from transformers import GenerationConfig, Trainer, TrainingArguments

from swift.trainers.rlhf.ppo_core import (
    ValueHead,
    disable_dropout,
    entropy_of,
    gae_advantages,
    logprobs_of,
    masked_mean,
    masked_whiten,
    pad_sequences,
    policy_loss,
    token_rewards,
    truncate_at_stop,
    value_loss,
)
from swift.trainers.rlhf.rewards import (
    RewardFunc,
    check_reward_model,
    compute_rewards,
    load_reward_funcs,
    reward_name,
    score_sequences,
)
from swift.trainers.rlhf.trl_glue import adapter_is_noop, trl_config, unwrap_model
from swift.trainers.saving import (
    finished_output,
    resolve_resume,
    save_checkpoint_atomically,
    use_swift_callbacks,
)
from swift.utils.errors import ArgumentError, SwiftError
from swift.utils.logging import get_logger

logger = get_logger("swift.trainers.rlhf.ppo")

VALUE_HEAD_FILE = "value_head.safetensors"
_V_HEAD = "v_head"
_REF_ADAPTER = "ref"


@dataclass
class PPOSettings:
    """PPO's own settings (ms-swift flag names); the rest of `args` are TrainingArguments."""

    num_ppo_epochs: int = 4
    """Optimizer passes over each rollout batch."""
    kl_coef: float = 0.05
    """Weight of the per-token KL penalty to the reference."""
    cliprange: float = 0.2
    """Clip range of the policy ratio."""
    cliprange_value: float = 0.2
    """Clip range of the value prediction around its rollout value."""
    vf_coef: float = 0.1
    """Weight of the value loss."""
    gamma: float = 1.0
    """Discount factor."""
    lam: float = 0.95
    """GAE lambda."""
    max_completion_length: int = 512
    """Longest sampled completion, in tokens."""
    temperature: float = 0.9
    """Sampling temperature (the log-probabilities use the same temperature)."""
    whiten_rewards: bool = False
    """Whiten the per-token rewards of each rollout batch before GAE."""
    reward_weights: list[float] | None = None
    """Weight of each reward function (default 1 each); a reward model adds with weight 1."""

    def __post_init__(self) -> None:
        if self.num_ppo_epochs < 1:
            raise ArgumentError("num_ppo_epochs", f"must be at least 1, got {self.num_ppo_epochs}")
        for name in ("kl_coef", "cliprange", "cliprange_value", "vf_coef"):
            if getattr(self, name) < 0:
                raise ArgumentError(name, f"must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.gamma <= 1.0 or not 0.0 <= self.lam <= 1.0:
            raise ArgumentError("gamma" if not 0.0 <= self.gamma <= 1.0 else "lam", "must be in [0, 1]")
        if self.max_completion_length < 1:
            raise ArgumentError("max_completion_length", f"must be positive, got {self.max_completion_length}")
        if self.temperature <= 0:
            raise ArgumentError("temperature", f"must be > 0, got {self.temperature}")

    @classmethod
    def from_args(cls, args: dict[str, Any]) -> PPOSettings:
        """The fields of `cls` found in the flat args dict (None means the default)."""
        return cls(**{f.name: args[f.name] for f in fields(cls) if args.get(f.name) is not None})


class RolloutSampler(Sampler[int]):
    """Shuffled rows in chunks of `batch_size` (a rollout batch); each chunk is yielded `repeat` times in a row
    (once per micro-step that trains on it). An incomplete last chunk is dropped. The order depends on the seed
    and on the epoch only, so a resumed run sees the same batches."""

    def __init__(self, num_rows: int, batch_size: int, repeat: int, seed: int, shuffle: bool = True):
        if num_rows < batch_size:
            raise SwiftError(f"ppo: a rollout batch takes {batch_size} prompts (per_device_train_batch_size * "
                             f"gradient_accumulation_steps) but the dataset has only {num_rows}")
        self.num_rows, self.batch_size, self.repeat = num_rows, batch_size, repeat
        self.seed, self.shuffle, self.epoch = seed, shuffle, 0

    def set_epoch(self, epoch: int) -> None:
        """Called by the Trainer at each epoch: a new order."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.num_rows, generator=g).tolist()
        else:
            order = list(range(self.num_rows))
        for start in range(0, self.num_rows - self.batch_size + 1, self.batch_size):
            chunk = order[start:start + self.batch_size]
            for _ in range(self.repeat):
                yield from chunk

    def __len__(self) -> int:
        return (self.num_rows // self.batch_size) * self.batch_size * self.repeat


def _identity(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return rows


def _is_peft(model: Any) -> bool:
    return hasattr(model, "disable_adapter") and hasattr(model, "peft_config")


def _copy_adapter_as_reference(model: Any) -> None:
    """An adapter that already changes the model (PiSSA/OLoRA init, a loaded adapter): disabling it would not give
    the starting policy, so the reference is a frozen copy of it, the adapter "ref" (as TRL does)."""
    active = model.active_adapter
    model.add_adapter(_REF_ADAPTER, model.peft_config[active])
    params = dict(model.named_parameters())
    for name, param in params.items():
        if f".{active}." in name:
            params[name.replace(f".{active}.", f".{_REF_ADAPTER}.")].data.copy_(param.data)
            params[name.replace(f".{active}.", f".{_REF_ADAPTER}.")].requires_grad_(False)
    model.set_adapter(active)
    logger.info("The adapter already changes the model at step 0: the PPO reference is a frozen copy of it.")


class SwiftPPOTrainer(Trainer):
    """PPO over prompt rows (`prompt_ids`, `messages` and extra columns such as `solution`).

    Args:
        model: Causal LM or peft model (the policy); a value head is attached as `model.v_head`.
        args: Training arguments.
        settings: PPO settings.
        tokenizer: Decodes completions for reward functions; saved into checkpoints.
        template: Names the stop tokens (end of turn) that end a completion.
        train_dataset, eval_dataset: Encoded prompt rows.
        ref_model: Reference; default: adapters disabled (LoRA) or a frozen copy of `model`.
        reward_model: Sequence classifier (one output) scoring prompt + completion token ids.
        reward_funcs: Reward functions `f(completions=..., **columns) -> list[float]` (see `rewards`).
        checkpoint_files: File name -> JSON-able object written into every checkpoint.
    """

    loss_is_scaled_for_ga = False  # the Trainer divides the loss by the accumulation steps

    def __init__(self, model: nn.Module, args: TrainingArguments, settings: PPOSettings, *, tokenizer: Any,
                 template: Any, train_dataset: Any, eval_dataset: Any = None, ref_model: nn.Module | None = None,
                 reward_model: nn.Module | None = None, reward_funcs: list[RewardFunc] | None = None,
                 checkpoint_files: dict[str, Any] | None = None) -> None:
        if reward_model is None and not reward_funcs:
            raise ArgumentError("reward_funcs", "ppo needs rewards: reward functions and/or a reward model")
        if settings.reward_weights is not None and len(settings.reward_weights) != len(reward_funcs or []):
            raise ArgumentError("reward_weights", f"give one weight per reward function ({len(reward_funcs or [])})")
        for name, ds in (("train_dataset", train_dataset), ("eval_dataset", eval_dataset)):
            if ds is not None and "prompt_ids" not in (getattr(ds, "column_names", None) or []):
                raise SwiftError(f"ppo: {name} has no 'prompt_ids' column; encode prompt rows with "
                                 "swift.data.encode_preference_rows(rows, template, kind='prompt')")
        if reward_model is not None:
            check_reward_model(reward_model, model)
        self.settings, self.template = settings, template
        self.reward_funcs = list(reward_funcs or [])
        self.checkpoint_files: dict[str, Any] = dict(checkpoint_files or {})
        disable_dropout(model)
        if ref_model is None and settings.kl_coef > 0:
            if not _is_peft(model):
                ref_model = copy.deepcopy(model)  # before the value head is attached
            elif not adapter_is_noop(model):
                _copy_adapter_as_reference(model)
        self._attach_value_head(model)
        super().__init__(model=model, args=args, data_collator=_identity, train_dataset=train_dataset,
                         eval_dataset=eval_dataset, processing_class=tokenizer)
        use_swift_callbacks(self)
        self.ref_model = self._frozen(ref_model)
        self.reward_model = self._frozen(reward_model)
        stop = [int(t) for t in (getattr(template, "stop_token_ids", None) or [])]
        if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in stop:
            stop.append(int(tokenizer.eos_token_id))
        self.stop_token_ids = stop
        self.pad_token_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop[0])
        self.generation_kwargs = dict(
            max_new_tokens=settings.max_completion_length, do_sample=True, temperature=settings.temperature,
            top_k=0, top_p=1.0, eos_token_id=stop, pad_token_id=self.pad_token_id)
        self._buffer: dict[str, Any] | None = None
        self._perms: list[torch.Tensor] = []
        self._seen_step, self._micro = -1, 0
        self._metrics: dict[str, dict[str, list[float]]] = {"train": defaultdict(list), "eval": defaultdict(list)}

    # ---- models ---------------------------------------------------------------------------------------
    @staticmethod
    def _attach_value_head(model: nn.Module) -> None:
        if isinstance(getattr(model, _V_HEAD, None), ValueHead):
            return
        config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
        weight = model.get_input_embeddings().weight
        model.add_module(_V_HEAD, ValueHead(config.hidden_size).to(device=weight.device, dtype=torch.float32))
        if not _is_peft(model):  # the policy is saved without it (it goes to value_head.safetensors)
            names = {f"{_V_HEAD}.summary.weight", f"{_V_HEAD}.summary.bias"}
            model._keys_to_ignore_on_save = set(model._keys_to_ignore_on_save or []) | names

    def _frozen(self, model: nn.Module | None) -> nn.Module | None:
        if model is None:
            return None
        model.eval()
        disable_dropout(model)
        for p in model.parameters():
            p.requires_grad_(False)
        return self.accelerator.prepare_model(model, evaluation_mode=True)

    @property
    def value_head(self) -> ValueHead:
        """The value head (on the unwrapped policy)."""
        return getattr(self.accelerator.unwrap_model(self.model), _V_HEAD)

    # ---- data -----------------------------------------------------------------------------------------
    def get_train_dataloader(self) -> Any:
        """One rollout batch of prompts per micro-step, each repeated for every micro-step that trains on it."""
        accum = self.args.gradient_accumulation_steps
        return self._get_dataloader(self.train_dataset, "Training", self._train_batch_size * accum,
                                    sampler_fn=self._get_train_sampler, is_training=True)

    def _get_train_sampler(self, train_dataset: Any = None) -> Sampler[int]:
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if not hasattr(dataset, "__len__"):
            raise SwiftError("ppo: the training dataset must have a length (a datasets.Dataset, not a streaming one)")
        accum = self.args.gradient_accumulation_steps
        return RolloutSampler(len(dataset), self._train_batch_size * accum, accum * self.settings.num_ppo_epochs,
                              seed=self.args.seed)

    def _prepare_inputs(self, inputs: Any) -> dict[str, Any]:
        """Training: a rollout at the start of each rollout batch, then this micro-step's slice of it (reshuffled
        per PPO epoch). Evaluation: a rollout of the batch."""
        if not self.model.training:
            return self._rollout(inputs, "eval")
        accum, epochs = self.args.gradient_accumulation_steps, self.settings.num_ppo_epochs
        if self.state.global_step != self._seen_step:
            self._seen_step, self._micro = self.state.global_step, 0
        position = self.state.global_step * accum + self._micro  # micro-steps done: resume-safe
        if position % (accum * epochs) == 0 or self._buffer is None:
            self._buffer = self._rollout(inputs, "train")
            g = torch.Generator().manual_seed(self.args.seed + position)
            n = self._buffer["input_ids"].size(0)
            self._perms = [torch.randperm(n, generator=g) for _ in range(epochs)]
        perm = self._perms[(position // accum) % epochs]
        idx = perm.view(accum, -1)[self._micro % accum].to(self._buffer["input_ids"].device)
        self._micro += 1
        return {k: v[idx] if isinstance(v, torch.Tensor) else v for k, v in self._buffer.items()}

    # ---- rollout --------------------------------------------------------------------------------------
    def _forward(self, model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, prompt_width: int,
                 with_values: bool) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """(log-probs of the completion tokens, values of the states before them, logits), [B, T] each."""
        positions = (attention_mask.cumsum(1) - 1).clamp(min=0)
        steps = input_ids.size(1) - prompt_width
        out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions, use_cache=False,
                    output_hidden_states=with_values, logits_to_keep=steps + 1)
        logits = out.logits[:, :-1]
        logprobs = logprobs_of(logits, input_ids[:, prompt_width:], self.settings.temperature)
        values = None
        if with_values:
            hidden = out.hidden_states[-1][:, prompt_width - 1:-1]
            values = self.value_head(hidden)
        return logprobs, values, logits

    def _generate(self, prompts: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor, list[list[int]]]:
        from trl.models.utils import unwrap_model_for_generation

        device = self.accelerator.device
        ids, mask = pad_sequences(prompts, self.pad_token_id, "left")
        with unwrap_model_for_generation(self.model_wrapped, self.accelerator,
                                         generation_kwargs=self.generation_kwargs,
                                         gradient_checkpointing_kwargs=self.args.gradient_checkpointing_kwargs
                                         ) as unwrapped, torch.no_grad():
            out = unwrapped.generate(input_ids=ids.to(device), attention_mask=mask.to(device),
                                     generation_config=GenerationConfig(**self.generation_kwargs))
        completions = [truncate_at_stop(row, self.stop_token_ids) for row in out[:, ids.size(1):].tolist()]
        return ids, mask, completions

    @torch.no_grad()
    def _rollout(self, rows: list[dict[str, Any]], mode: str) -> dict[str, Any]:
        s, device = self.settings, self.accelerator.device
        prompts = [list(r["prompt_ids"]) for r in rows]
        p_ids, p_mask, completions = self._generate(prompts)
        c_ids, c_mask = pad_sequences(completions, self.pad_token_id, "right")
        input_ids = torch.cat([p_ids, c_ids], 1).to(device)
        attention_mask = torch.cat([p_mask, c_mask], 1).to(device)
        c_mask = c_mask.to(device)
        width = p_ids.size(1)
        logprobs, values, _ = self._forward(self.model, input_ids, attention_mask, width, with_values=True)
        if s.kl_coef > 0:
            ref_logprobs = self._ref_logprobs(input_ids, attention_mask, width)
        else:
            ref_logprobs = logprobs
        scores = torch.tensor(self._score(rows, prompts, completions, mode), dtype=torch.float32, device=device)
        rewards, kl = token_rewards(scores, logprobs, ref_logprobs, c_mask, s.kl_coef)
        if s.whiten_rewards:
            rewards = masked_whiten(rewards, c_mask, shift_mean=False)
        advantages, returns = gae_advantages(rewards, values, c_mask, s.gamma, s.lam)
        advantages = masked_whiten(advantages, c_mask)
        m = self._metrics[mode]
        m["kl"].append(float(kl.sum(1).mean()))
        m["non_score_reward"].append(float((-s.kl_coef * kl).sum(1).mean()))
        m["completion_length"].append(float(c_mask.sum(1).float().mean()))
        m["value_mean"].append(float(masked_mean(values, c_mask)))
        return {"input_ids": input_ids, "attention_mask": attention_mask, "completion_mask": c_mask,
                "old_logprobs": logprobs, "old_values": values * c_mask, "advantages": advantages,
                "returns": returns, "prompt_width": width}

    def _ref_logprobs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, width: int) -> torch.Tensor:
        if self.ref_model is not None:
            return self._forward(self.ref_model, input_ids, attention_mask, width, with_values=False)[0]
        unwrapped = self.accelerator.unwrap_model(self.model)
        if _REF_ADAPTER not in unwrapped.peft_config:
            with unwrapped.disable_adapter():
                return self._forward(self.model, input_ids, attention_mask, width, with_values=False)[0]
        active = unwrapped.active_adapter
        unwrapped.set_adapter(_REF_ADAPTER, inference_mode=True)
        try:
            return self._forward(self.model, input_ids, attention_mask, width, with_values=False)[0]
        finally:
            unwrapped.set_adapter(active)

    def _score(self, rows: list[dict[str, Any]], prompts: list[list[int]], completions: list[list[int]],
               mode: str) -> list[float]:
        """Reward functions (on the decoded text, with the rows' columns) plus the reward model (on token ids)."""
        m = self._metrics[mode]
        total = [0.0] * len(rows)
        if self.reward_funcs:
            texts = self.processing_class.batch_decode(completions, skip_special_tokens=True)
            columns = {k: [r.get(k) for r in rows] for k in rows[0]}
            if "messages" in columns and "prompts" not in columns:
                columns["prompts"] = [json.loads(x) if isinstance(x, str) else x for x in columns["messages"]]
            columns["completion_ids"] = completions
            columns["trainer_state"] = self.state
            total, per_func = compute_rewards(self.reward_funcs, texts, self.settings.reward_weights, **columns)
            for func, values in zip(self.reward_funcs, per_func):
                m[f"rewards/{reward_name(func)}"].append(sum(values) / len(values))
        if self.reward_model is not None:
            rm = score_sequences(self.reward_model, [p + c for p, c in zip(prompts, completions)], self.pad_token_id)
            m["rewards/reward_model"].append(sum(rm) / len(rm))
            total = [a + b for a, b in zip(total, rm)]
        mean = sum(total) / len(total)
        m["reward"].append(mean)
        m["reward_std"].append((sum((x - mean) ** 2 for x in total) / max(len(total) - 1, 1)) ** 0.5)
        return total

    # ---- loss -----------------------------------------------------------------------------------------
    def compute_loss(self, model: nn.Module, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        """The clipped policy loss plus `vf_coef` times the clipped value loss, over real completion tokens."""
        s = self.settings
        mask = inputs["completion_mask"]
        logprobs, values, logits = self._forward(model, inputs["input_ids"], inputs["attention_mask"],
                                                 inputs["prompt_width"], with_values=True)
        pg_loss, stats = policy_loss(logprobs, inputs["old_logprobs"], inputs["advantages"], mask, s.cliprange)
        vf_loss, vf_clipfrac = value_loss(values, inputs["old_values"], inputs["returns"], mask, s.cliprange_value)
        loss = pg_loss + s.vf_coef * vf_loss
        with torch.no_grad():
            entropy = entropy_of(logits, s.temperature)
            m = self._metrics["train" if model.training else "eval"]
            m["pg_loss"].append(float(pg_loss))
            m["vf_loss"].append(float(vf_loss))
            m["clipfrac"].append(float(stats["clipfrac"]))
            m["vf_clipfrac"].append(float(vf_clipfrac))
            m["approx_kl"].append(float(stats["approx_kl"]))
            m["entropy"].append(float(masked_mean(entropy, mask)))
        if return_outputs:
            return loss, {"logprobs": logprobs, "values": values}
        return loss

    def prediction_step(self, model: nn.Module, inputs: Any, prediction_loss_only: bool,
                        ignore_keys: list[str] | None = None) -> tuple[torch.Tensor, None, None]:
        """Evaluation: roll out the batch and report the PPO loss (rewards go to the eval metrics)."""
        batch = self._prepare_inputs(inputs)
        with torch.no_grad():
            loss = self.compute_loss(model, batch)
        return loss.detach(), None, None

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Add the averages of the rollout and loss metrics since the last log."""
        mode = "eval" if any(k.startswith("eval_") for k in logs) else "train"
        prefix = "eval_" if mode == "eval" else ""
        for key, values in self._metrics[mode].items():
            if values:
                logs[prefix + key] = sum(values) / len(values)
        self._metrics[mode].clear()
        super().log(logs, start_time)

    # ---- checkpoints ----------------------------------------------------------------------------------
    def train(self, resume_from_checkpoint: str | bool | None = None, trial: Any = None,
              ignore_keys_for_eval: list[str] | None = None, **kwargs: Any) -> Any:
        """Train; `resume_from_checkpoint=True` resumes from the newest COMPLETE checkpoint in output_dir."""
        checkpoint = resolve_resume(self, resume_from_checkpoint)
        done = finished_output(self, checkpoint)
        if done is not None:
            return done
        self._buffer = None
        return super().train(resume_from_checkpoint=checkpoint, trial=trial,
                             ignore_keys_for_eval=ignore_keys_for_eval, **kwargs)

    def _save_checkpoint(self, model: nn.Module, trial: Any) -> None:
        save_checkpoint_atomically(self, model, trial, self.checkpoint_files)

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        """The policy as transformers/peft save it (without the value head), then `value_head.safetensors`."""
        output_dir = output_dir or self.args.output_dir
        if state_dict is not None:
            state_dict = {k: v for k, v in state_dict.items() if not k.startswith(_V_HEAD + ".")}
        super()._save(output_dir, state_dict=state_dict)
        if self.args.should_save:
            from safetensors.torch import save_file

            head = {k: v.detach().cpu().contiguous() for k, v in self.value_head.state_dict().items()}
            save_file(head, os.path.join(output_dir, VALUE_HEAD_FILE), metadata={"format": "pt"})

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: nn.Module | None = None) -> None:
        super()._load_from_checkpoint(resume_from_checkpoint, model=model)
        path = os.path.join(resume_from_checkpoint, VALUE_HEAD_FILE)
        if os.path.isfile(path):
            from safetensors.torch import load_file

            self.value_head.load_state_dict(load_file(path, device=str(self.value_head.summary.weight.device)))
        else:
            logger.warning("%s has no %s: the value head starts from zero", resume_from_checkpoint, VALUE_HEAD_FILE)


def build_trainer(*, model: Any, tokenizer: Any, template: Any, train_dataset: Any, eval_dataset: Any = None,
                  args: dict[str, Any], ref_model: Any = None, reward_model: Any = None, teacher_model: Any = None,
                  reward_funcs: list[str | RewardFunc] | None = None,
                  checkpoint_files: dict[str, Any] | None = None) -> SwiftPPOTrainer:
    """The PPO trainer for the flat `args` (TrainingArguments fields + `PPOSettings` fields; others ignored).

    `reward_funcs` may hold names (resolved with `args["external_plugins"]`) or callables; `teacher_model` is
    not used by PPO.
    """
    settings = PPOSettings.from_args(args)
    funcs = load_reward_funcs(reward_funcs or [], external_plugins=args.get("external_plugins") or [])
    hf_args = trl_config(TrainingArguments, args, remove_unused_columns=False)
    return SwiftPPOTrainer(unwrap_model(model), hf_args, settings, tokenizer=tokenizer, template=template,
                      train_dataset=train_dataset, eval_dataset=eval_dataset, ref_model=ref_model,
                      reward_model=reward_model, reward_funcs=funcs, checkpoint_files=checkpoint_files)


__all__ = ["PPOSettings", "SwiftPPOTrainer", "RolloutSampler", "build_trainer", "VALUE_HEAD_FILE"]

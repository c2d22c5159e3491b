"""DPO (`--rlhf_type dpo`): TRL's DPOTrainer on SwiftLab's encoded preference pairs.

TRL owns the algorithm: its collator puts chosen and rejected in one batch (one policy forward and one
reference forward per step, chosen first), its fused LM head computes the log-probs without the full logits,
and its losses (sigmoid, hinge, ipo, robust, ..., combined with `loss_weights`). Our subclass replaces the
dataset preparation (the rows arrive encoded by `swift.data.encode_preference_rows`; there is no second
tokenization), makes the reference of a LoRA policy its adapters-disabled self, and saves through
`swift.trainers.saving` (atomic checkpoints, our callbacks, `resume_from_checkpoint=True`).

ms-swift flags mapped onto DPOConfig: `beta`, `loss_type` (a list), `loss_weights`, `max_length`, and
- `rpo_alpha`: RPO's NLL term on the chosen replies = TRL's "sft" loss with weight rpo_alpha;
- `label_smoothing` with "sigmoid": conservative DPO, -(1-e) log s(bd) - e log s(-bd). TRL's "sigmoid" has
  no smoothing, so it is rewritten exactly with TRL's own losses: cDPO = 2(1-e) sigmoid - (1-2e) robust;
- `padding_free`: TRL 1.16 switched its own off ("temporarily unavailable"); ours replaces it (see below).

Padding-free DPO. TRL's loss code reads per-token outputs of the padded [chosen; rejected] batch from the fused LM
head forward (`model(..., labels=, fused_lm_head=True)`, installed by `trl.trainer.utils.add_fused_lm_head`). That
forward is the seam: while `_compute_loss` runs, the fused forward of the policy and of the reference model is
wrapped so the 2B padded rows run as ONE row of their real tokens, `position_ids` restarting at 0 per sequence and
no attention mask (transformers then masks attention block-diagonally, as for SFT packing), with the labels shifted
per row before flattening (no token is scored across a sequence boundary); the per-token outputs are scattered back
to the padded layout. Everything TRL computes from them (every loss_type and weight, ld_alpha, WPO weights, the
logged metrics) is unchanged. A model that cannot keep packed sequences apart (multimodal inputs, an attention
implementation or recurrent layers that ignore `position_ids`: checked with a two-forward probe on first use)
falls back to the padded batches with a one-line warning. With sdpa or eager attention the packed row is masked
by an N x N block-diagonal mask (N = real tokens of the batch), so attention costs O(N^2) where the padded batch
costs O(2B L^2): a saving when lengths vary widely, not for large batches of long sequences; flash attention
(varlen) has no such mask.
"""
from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import Any

import torch
from trl import DPOConfig, DPOTrainer

from swift.trainers.rlhf.trl_glue import (
    IGNORE_INDEX,
    PREFERENCE_COLUMNS,
    as_dataset,
    drop_long_prompts,
    logger,
    reference_from_disabled_adapters,
    require_columns,
    trl_config,
    unwrap_model,
)
from swift.trainers.saving import (
    finished_output,
    resolve_resume,
    save_checkpoint_atomically,
    use_swift_callbacks,
)
from swift.utils.errors import ArgumentError


class SwiftDPOTrainer(DPOTrainer):
    """`trl.DPOTrainer` on pre-encoded pairs (`prompt_ids`, `chosen_ids`, `rejected_ids`), with SwiftLab saving.

    Args:
        template: The chat template the rows were encoded with (kept for reference).
        checkpoint_files: File name -> JSON-able object written into every checkpoint (e.g. args.json).
        *args, **kwargs: `trl.DPOTrainer`'s arguments.
    """

    def __init__(self, *args: Any, template: Any = None, checkpoint_files: dict[str, Any] | None = None,
                 **kwargs: Any) -> None:
        self.template = template
        self.checkpoint_files: dict[str, Any] = dict(checkpoint_files or {})
        config = kwargs.get("args", args[2] if len(args) > 2 else None)
        padding_free = bool(getattr(config, "padding_free", False))
        if padding_free:  # TRL 1.16 would warn that its own padding_free is disabled: ours replaces it
            config.padding_free = False
        try:
            super().__init__(*args, **kwargs)
        finally:
            if padding_free:
                config.padding_free = True
        if self.ref_model is None:
            reference_from_disabled_adapters(self.model)
        reason = padding_free and self._padding_free_obstacle()
        if reason:
            _fallback_warning(reason)
        # Read on each loss computation: set it to False to run the padded batches (the tests compare both paths).
        self.padding_free = padding_free and not reason
        self._padding_free_probed = False
        use_swift_callbacks(self)

    def _padding_free_obstacle(self) -> str:
        """Why this model or data cannot run padding-free ("" when it can); the probe on first use checks more."""
        if self._is_vlm or self._is_vision_dataset:
            return "multimodal model or data"
        peft_config = getattr(self.model, "peft_config", None) or {}
        if any(getattr(c, "is_prompt_learning", False) for c in peft_config.values()):
            return "prompt-learning adapters prepend virtual tokens"
        return ""

    def _fused_models(self) -> list[Any]:
        """The models whose forward TRL gave a fused LM head: the policy (below peft) and the reference model."""
        model = self.accelerator.unwrap_model(self.model)
        model = model.get_base_model() if hasattr(model, "get_base_model") else model
        return [model] + ([self.ref_model] if self.ref_model is not None else [])

    @contextlib.contextmanager
    def _padding_free_forwards(self) -> Iterator[None]:
        """While active (and `self.padding_free`), fused forwards of padded batches run as one packed row."""
        models = self._fused_models() if self.padding_free else []
        if models and not self._padding_free_probed:
            self._padding_free_probed = True
            if not all(isolates_packed_sequences(m) for m in models):
                _fallback_warning("the model lets packed sequences attend to each other (its attention implementation "
                                  "or recurrent layers ignore position_ids)")
                self.padding_free, models = False, []
        originals = [m.forward for m in models]
        for m, forward in zip(models, originals, strict=True):
            m.forward = padding_free_forward(forward)
        try:
            yield
        finally:
            for m, forward in zip(models, originals, strict=True):
                m.forward = forward

    def _compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool) -> Any:
        with self._padding_free_forwards():
            return super()._compute_loss(model, inputs, return_outputs)

    def compute_ref_log_probs(self, model: Any, inputs: dict[str, Any]) -> Any:
        with self._padding_free_forwards():
            return super().compute_ref_log_probs(model, inputs)

    def _prepare_dataset(self, dataset: Any, processing_class: Any, args: DPOConfig, dataset_name: str) -> Any:
        """The seam: TRL tokenizes prompt/chosen/rejected text here; our rows are already token ids."""
        require_columns(dataset, PREFERENCE_COLUMNS, dataset_name, "preference")
        if args.truncation_mode == "keep_start":  # the collator would cut every completion token
            dataset = drop_long_prompts(dataset, args.max_length, dataset_name)
        return dataset

    def _send_telemetry(self) -> None:
        """No usage pings: SwiftLab's only network code is swift.hub."""

    def train(self, resume_from_checkpoint: str | bool | None = None, **kwargs: Any) -> Any:
        """Train; `resume_from_checkpoint=True` resumes from the newest COMPLETE checkpoint in output_dir."""
        checkpoint = resolve_resume(self, resume_from_checkpoint)
        return finished_output(self, checkpoint) or super().train(resume_from_checkpoint=checkpoint, **kwargs)

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        save_checkpoint_atomically(self, model, trial, self.checkpoint_files)


# Model inputs a padded batch may carry and still be flattened; anything else (pixel_values, token_type_ids, ...)
# keeps the padded forward.
_FLAT_INPUTS = {"input_ids", "attention_mask", "labels", "fused_lm_head", "use_cache", "output_router_logits",
                "num_items_in_batch"}
# Per-token fields of TRL's FusedCausalLMOutput: scattered back from the packed row to the padded rows.
_PER_TOKEN_FIELDS = ("log_probs", "entropy", "log_sum_sq_probs", "mean_logits", "is_top1", "label_mask")


def _fallback_warning(reason: str) -> None:
    logger.warning("padding_free: %s; DPO runs on padded batches instead.", reason)


def padding_free_forward(fused_forward: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap TRL's fused-LM-head forward so a padded batch runs as one packed row with the same outputs.

    A call `forward(input_ids=[R, L], attention_mask=[R, L], labels=[R, L], fused_lm_head=True)` becomes one forward
    of the R sequences' real tokens in one row `[1, N]`, `position_ids` restarting at 0 per sequence and no attention
    mask; the labels are shifted within each row first (`shift_labels`), so the last token of a sequence predicts
    nothing. The per-token fields come back in the padded layout `[R, L - 1]`, zero at padding, as TRL's own
    padded forward returns them. Any other call (no fused head, no mask, other inputs) is passed through unchanged.
    """
    @functools.wraps(fused_forward)
    def forward(*args: Any, **kwargs: Any) -> Any:
        mask, labels = kwargs.get("attention_mask"), kwargs.get("labels")
        if (args or not kwargs.get("fused_lm_head") or not isinstance(mask, torch.Tensor) or mask.dim() != 2
                or labels is None or any(v is not None for k, v in kwargs.items() if k not in _FLAT_INPUTS)):
            return fused_forward(*args, **kwargs)
        kwargs = dict(kwargs)
        input_ids, mask, labels = kwargs.pop("input_ids"), kwargs.pop("attention_mask").bool(), kwargs.pop("labels")
        shift_labels = torch.full_like(labels, IGNORE_INDEX)
        shift_labels[:, :-1] = labels[:, 1:].masked_fill(~mask[:, 1:], IGNORE_INDEX)
        position_ids = mask.long().cumsum(1) - 1
        out = fused_forward(input_ids=input_ids[mask][None], position_ids=position_ids[mask][None],
                            shift_labels=shift_labels[mask][None], **kwargs)

        def unflatten(x: torch.Tensor | None) -> torch.Tensor | None:
            # masked_scatter keeps the autograd graph to the packed row
            return None if x is None else x.new_zeros(mask.shape).masked_scatter(mask, x[0])[:, :-1]

        return type(out)(**{k: unflatten(v) if k in _PER_TOKEN_FIELDS else v for k, v in out.items()})

    return forward


def isolates_packed_sequences(model: Any) -> bool:
    """Whether `model` keeps sequences packed in one row (position_ids restarting at 0) from attending to each other.

    Two forwards of [a; b] and [a'; b] with different first sequences must give the second sequence the same logits.
    Sequences that cannot see each other give exactly equal logits (same shapes, masked keys weigh 0); a model that
    ignores position_ids for masking, or carries recurrent state across the row, does not.
    """
    vocab = model.config.get_text_config().vocab_size
    generator = torch.Generator().manual_seed(0)
    firsts = torch.randint(vocab, (2, 6), generator=generator)
    second = torch.randint(vocab, (5,), generator=generator)
    position_ids = torch.cat([torch.arange(6), torch.arange(5)])[None].to(model.device)
    modes = {m: m.training for m in model.modules()}
    model.eval()  # no dropout
    try:
        with torch.no_grad():
            logits = [model(input_ids=torch.cat([first, second])[None].to(model.device), position_ids=position_ids,
                            use_cache=False).logits[0, 6:].float() for first in firsts]
    finally:
        for m, training in modes.items():
            m.training = training
    return bool((logits[0] - logits[1]).abs().max() <= 1e-3 * logits[0].abs().max())


def dpo_losses(args: dict[str, Any]) -> tuple[list[str], list[float]]:
    """ms-swift's `loss_type` / `loss_weights` / `rpo_alpha` / `label_smoothing` -> TRL's loss_type and
    loss_weights lists (see the module docstring)."""
    loss_type = args.get("loss_type") or ["sigmoid"]
    types = [loss_type] if isinstance(loss_type, str) else list(loss_type)
    weights = args.get("loss_weights")
    weights = [1.0] * len(types) if weights is None else [float(w) for w in weights]
    if len(weights) != len(types):
        raise ArgumentError("loss_weights", f"give one weight per loss_type ({types}), got {weights}")
    combined: dict[str, float] = {}
    for t, w in zip(types, weights, strict=True):
        combined[t] = combined.get(t, 0.0) + w
    smoothing = float(args.get("label_smoothing") or 0.0)
    if smoothing and "sigmoid" in combined:
        if not 0.0 < smoothing < 0.5:
            raise ArgumentError("label_smoothing", f"must be in [0, 0.5), got {smoothing}")
        w = combined.pop("sigmoid")
        combined["sigmoid"] = 2 * (1 - smoothing) * w
        combined["robust"] = combined.get("robust", 0.0) - (1 - 2 * smoothing) * w
    rpo_alpha = args.get("rpo_alpha")
    if rpo_alpha:
        combined["sft"] = combined.get("sft", 0.0) + float(rpo_alpha)
    return list(combined), list(combined.values())


def build_trainer(*, model: Any, tokenizer: Any, template: Any, train_dataset: Any, eval_dataset: Any = None,
                  args: dict[str, Any], ref_model: Any = None, reward_model: Any = None, teacher_model: Any = None,
                  reward_funcs: Any = None, checkpoint_files: dict[str, Any] | None = None) -> SwiftDPOTrainer:
    """A DPO trainer (the contract of `swift.trainers.rlhf`).

    Args:
        model: A causal LM, or a peft model (then `ref_model=None` means: the model with adapters disabled).
        tokenizer: Saved into every checkpoint.
        template: The chat template of the encoded rows.
        train_dataset: `encode_preference_rows(..., kind="preference")` output (or a list of such rows).
        eval_dataset: The same, or None.
        args: TrainingArguments fields + beta, loss_type, loss_weights, rpo_alpha, label_smoothing, max_length,
            padding_free (one packed row per batch instead of padded rows; see the module docstring).
        ref_model: A frozen reference model (full tuning); None with LoRA.
        reward_model, teacher_model, reward_funcs: Not used by DPO.
        checkpoint_files: File name -> JSON-able object written into every checkpoint.
    """
    loss_type, loss_weights = dpo_losses(args)
    config = trl_config(DPOConfig, args, template=template, loss_type=loss_type, loss_weights=loss_weights,
                        label_smoothing=float(args.get("label_smoothing") or 0.0))
    return SwiftDPOTrainer(model=unwrap_model(model), ref_model=unwrap_model(ref_model), args=config,
                           train_dataset=as_dataset(train_dataset), eval_dataset=as_dataset(eval_dataset),
                           processing_class=tokenizer, template=template, checkpoint_files=checkpoint_files)

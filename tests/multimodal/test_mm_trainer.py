"""MultiModalTrainer: the seed's snippet, packing, LoRA on the language model, bad media."""
from __future__ import annotations

import pytest
import torch

from swift.utils.errors import DataError
from tests.multimodal.conftest import audio_rows, vl_rows


def test_seed_multimodal_snippet_verbatim(tmp_path, monkeypatch, tiny_qwen2_vl_dir, media_dir):
    """The seed's snippet, verbatim except the model name ("qwen-vl" -> a local tiny Qwen2-VL folder)."""
    monkeypatch.chdir(tmp_path)
    multimodal_dataset = vl_rows(media_dir, 8)
    # --- seed, verbatim (model name replaced) ---
    from swift import SwiftModel, TrainingArguments, MultiModalTrainer  # noqa: I001 (the seed, verbatim)
    model = SwiftModel.from_pretrained(tiny_qwen2_vl_dir)
    training_args = TrainingArguments(
        output_dir="./output",
        per_device_train_batch_size=8,
        num_train_epochs=3,
        remove_unused_columns=False,
    )
    trainer = MultiModalTrainer(
        model=model,
        args=training_args,
        train_dataset=multimodal_dataset,
    )
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer.train()
    # --- end of seed ---
    assert trainer.state.global_step == 3
    final = trainer.state.log_history[-1]
    assert final["train_loss"] > 0 and torch.isfinite(torch.tensor(final["train_loss"]))
    changed = [n for n, p in model.named_parameters() if not torch.equal(p.detach(), before[n])]
    assert any("visual" not in n for n in changed)
    assert (tmp_path / "output").is_dir()


def test_lora_trains_packed_and_padded_alike(tmp_path, tiny_qwen2_vl_dir, media_dir):
    from transformers import TrainingArguments

    from swift import LoRAConfig, MultiModalTrainer, SwiftConfig, SwiftModel
    from swift.templates import get_template

    losses = {}
    for packing in (False, True):
        torch.manual_seed(0)
        model = SwiftModel.from_pretrained(tiny_qwen2_vl_dir,
                                           config=SwiftConfig(lora=LoRAConfig(r=4, target_modules="all-linear")))
        trainable = [n for n, p in model.named_parameters() if p.requires_grad]
        assert trainable and not any(".visual." in n for n in trainable)  # all-linear: the language model only
        args = TrainingArguments(output_dir=str(tmp_path / f"p{packing}"), per_device_train_batch_size=4,
                                 max_steps=2, learning_rate=1e-2, report_to=[], logging_steps=1, save_strategy="no",
                                 use_cpu=True, seed=0, dataloader_pin_memory=False)
        template = get_template(model.tokenizer, max_length=4096)
        trainer = MultiModalTrainer(model=model, args=args, train_dataset=vl_rows(media_dir, 8), template=template,
                                    packing=packing)
        if packing:
            assert len(trainer.train_dataset) < 8  # rows share sequences
        trainer.train()
        losses[packing] = trainer.state.log_history[0]["loss"]
    assert all(torch.isfinite(torch.tensor(list(losses.values()))))


def test_audio_model_trains(tmp_path, tiny_qwen2_audio_dir, media_dir):
    from transformers import TrainingArguments

    from swift import MultiModalTrainer, SwiftModel

    model = SwiftModel.from_pretrained(tiny_qwen2_audio_dir)
    args = TrainingArguments(output_dir=str(tmp_path / "o"), per_device_train_batch_size=4, max_steps=2,
                             report_to=[], save_strategy="no", use_cpu=True, logging_steps=1)
    trainer = MultiModalTrainer(model=model, args=args, train_dataset=audio_rows(media_dir, 8), padding_free=True)
    trainer.train()
    assert trainer.state.global_step == 2


def test_missing_media_strict_names_file_row_and_path(tmp_path, tiny_qwen2_vl_dir, media_dir):
    from transformers import TrainingArguments

    from swift import MultiModalTrainer, SwiftModel

    rows = vl_rows(media_dir, 12)
    rows[5] = {**rows[5], "images": [str(tmp_path / "nope.png")], "videos": []}
    rows[5]["messages"] = [{"role": "user", "content": "<image>?"}, {"role": "assistant", "content": "x"}]
    model = SwiftModel.from_pretrained(tiny_qwen2_vl_dir)
    args = TrainingArguments(output_dir=str(tmp_path / "o"), max_steps=1, report_to=[], use_cpu=True,
                             save_strategy="no")
    with pytest.raises(DataError) as info:
        MultiModalTrainer(model=model, args=args, train_dataset=rows)
    msg = str(info.value)
    assert "row 6" in msg and "nope.png" in msg
    trainer = MultiModalTrainer(model=model, args=args, train_dataset=rows, strict=False)
    assert len(trainer.train_dataset) == 11


def test_python_rows_in_other_forms_are_normalised(tmp_path, tiny_qwen2_vl_dir, media_dir):
    """ShareGPT rows with an `image` column, and OpenAI content parts, work as the CLI's files do."""
    from transformers import TrainingArguments

    from swift import MultiModalTrainer, SwiftModel

    img = str(media_dir / "img0.png")
    rows = [{"conversations": [{"from": "human", "value": "Which picture?"}, {"from": "gpt", "value": "Zero."}],
             "image": img},
            {"messages": [{"role": "user", "content": [{"type": "image", "image": img},
                                                       {"type": "text", "text": "Which picture?"}]},
                          {"role": "assistant", "content": "Zero."}]}]
    model = SwiftModel.from_pretrained(tiny_qwen2_vl_dir)
    args = TrainingArguments(output_dir=str(tmp_path / "o"), max_steps=1, report_to=[], use_cpu=True,
                             save_strategy="no", per_device_train_batch_size=2)
    trainer = MultiModalTrainer(model=model, args=args, train_dataset=rows)
    a, b = trainer.train_dataset[0], trainer.train_dataset[1]
    assert a["input_ids"] == b["input_ids"] and torch.equal(a["pixel_values"], b["pixel_values"])
    bad = [{"messages": [{"role": "user", "content": "<image><image>?"}, {"role": "assistant", "content": "x"}],
            "images": [img]}]
    with pytest.raises(DataError, match="train_dataset, row 1"):
        MultiModalTrainer(model=model, args=args, train_dataset=bad)

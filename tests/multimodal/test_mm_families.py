"""Every multimodal family: encode image/audio rows, train a step with MultiModalTrainer, answer through PtEngine."""
from __future__ import annotations

import pytest
import torch

from tests.multimodal.conftest import audio_rows, vl_rows

FAMILIES = ["qwen2_vl", "qwen2_5_vl", "qwen2_audio", "llava", "llava_next", "internvl"]


@pytest.mark.parametrize("arch", FAMILIES)
def test_family_trains_and_answers(arch, tmp_path, media_dir):
    from transformers import TrainingArguments

    from swift import InferRequest, MultiModalTrainer, PtEngine, RequestConfig, SwiftModel
    from swift.models.tiny import make_tiny_model
    from swift.templates import get_template

    folder = make_tiny_model(arch, tmp_path / arch)
    model = SwiftModel.from_pretrained(folder)
    if arch == "qwen2_audio":
        rows, key, item = audio_rows(media_dir, 4), "audios", str(media_dir / "a0.wav")
        prompt = "<audio>What tone is this?"
    else:
        rows = [r for r in vl_rows(media_dir, 6) if "images" in r or arch.startswith("qwen")]
        key, item, prompt = "images", str(media_dir / "img3.png"), "<image>Which picture is this?"
    args = TrainingArguments(output_dir=str(tmp_path / "out"), per_device_train_batch_size=2, max_steps=1,
                             report_to=[], save_strategy="no", use_cpu=True, learning_rate=1e-3)
    trainer = MultiModalTrainer(model=model, args=args, train_dataset=rows)
    trainer.train()
    assert trainer.state.global_step == 1
    assert torch.isfinite(torch.tensor(trainer.state.log_history[-1]["train_loss"]))

    engine = PtEngine(model.unwrap(), model.tokenizer, get_template(model.tokenizer), mm_encoder=trainer.mm_encoder)
    requests = [InferRequest(messages=[{"role": "user", "content": prompt}], **{key: [item]}),
                InferRequest(messages=[{"role": "user", "content": "Just text."}])]
    batched = engine.infer(requests, RequestConfig(max_new_tokens=5))
    alone = [engine.infer([r], RequestConfig(max_new_tokens=5))[0] for r in requests]
    assert [r.token_ids for r in batched] == [r.token_ids for r in alone]  # left padding changes nothing
    assert batched[0].prompt_tokens > batched[1].prompt_tokens  # the media tokens are in the prompt

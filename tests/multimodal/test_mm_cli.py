"""`swift sft` on images / video / audio from the command line, then `swift infer` with an image."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from swift.cli.main import main
from tests.multimodal.conftest import audio_rows, vl_rows, write_jsonl

ROOT = Path(__file__).resolve().parents[2]


def _last_checkpoint(out: Path) -> Path:
    (run,) = [p for p in out.iterdir() if p.is_dir()]
    return max(run.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))


def _relative_rows(rows: list[dict], media: Path) -> list[dict]:
    """Media paths relative to the dataset file's folder, as users write them."""
    out = []
    for r in rows:
        r = dict(r)
        for key in ("images", "videos", "audios"):
            if key in r:
                r[key] = [os.path.relpath(p, media) for p in r[key]]
        out.append(r)
    return out


COLORS = {"red": (220, 30, 30), "blue": (30, 30, 220), "green": (30, 200, 30)}


def test_sft_qwen2_vl_learns_from_images_then_infer_answers(tmp_path, tiny_qwen2_vl_dir):
    """A checkpoint from multimodal training answers about the picture it is shown (batch and interactive)."""
    from PIL import Image

    for name, rgb in COLORS.items():
        Image.new("RGB", (56, 56), rgb).save(tmp_path / f"{name}.png")
    rows = [{"messages": [{"role": "user", "content": "<image>What color is it?"},
                          {"role": "assistant", "content": f"It is {name}."}], "images": [f"{name}.png"]}
            for name in COLORS for _ in range(4)]
    data = write_jsonl(tmp_path / "train.jsonl", rows)  # image paths relative to the data file
    out = tmp_path / "output"
    rc = main(["sft", "--model", tiny_qwen2_vl_dir, "--dataset", data, "--num_train_epochs", "15",
               "--per_device_train_batch_size", "4", "--learning_rate", "5e-3", "--lora_rank", "16",
               "--lr_scheduler_type", "cosine", "--warmup_steps", "3", "--save_steps", "1000",
               "--output_dir", str(out)])
    assert rc == 0
    ckpt = _last_checkpoint(out)
    assert ckpt.name == "checkpoint-45"

    val = [{"messages": [{"role": "user", "content": "<image>What color is it?"}],
            "images": [str(tmp_path / f"{name}.png")]} for name in COLORS]
    result = tmp_path / "result.jsonl"
    rc = main(["infer", "--adapters", str(ckpt), "--val_dataset", write_jsonl(tmp_path / "val.jsonl", val),
               "--max_new_tokens", "8", "--result_path", str(result)])
    assert rc == 0
    lines = [json.loads(x) for x in result.read_text().splitlines()]
    assert [x["response"] for x in lines] == [f"It is {name}." for name in COLORS]
    assert lines[0]["images"] == [str(tmp_path / "red.png")]

    # merged into a plain folder (with the processor files), it answers the same
    merged = tmp_path / "merged"
    assert main(["export", "--adapters", str(ckpt), "--merge_lora", "true", "--output_dir", str(merged)]) == 0
    assert (merged / "preprocessor_config.json").is_file()
    result2 = tmp_path / "result2.jsonl"
    rc = main(["infer", "--model", str(merged), "--val_dataset", str(tmp_path / "val.jsonl"), "--max_new_tokens", "8",
               "--result_path", str(result2)])
    assert rc == 0
    assert [json.loads(x)["response"] for x in result2.read_text().splitlines()] == [f"It is {n}." for n in COLORS]

    # interactive, as a person types it: a tag, then the picture's path when asked
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    typed = f"<image>What color is it?\n{tmp_path / 'blue.png'}\nexit\n"
    proc = subprocess.run([sys.executable, "-m", "swift.cli.main", "infer", "--adapters", str(ckpt),
                           "--max_new_tokens", "8"], input=typed, capture_output=True, text=True, timeout=300,
                          env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Input an image path or URL <<< >>> It is blue." in proc.stdout


def test_sft_qwen2_vl_images_and_video_packed(tmp_path, tiny_qwen2_vl_dir, media_dir):
    data = write_jsonl(media_dir / "train_vl.jsonl", _relative_rows(vl_rows(media_dir, 12), media_dir))
    out = tmp_path / "output"
    rc = main(["sft", "--model", tiny_qwen2_vl_dir, "--dataset", data, "--max_steps", "3", "--save_steps", "3",
               "--per_device_train_batch_size", "2", "--learning_rate", "1e-3", "--logging_steps", "1",
               "--max_pixels", str(28 * 28 * 16), "--packing", "true", "--max_length", "1024",
               "--output_dir", str(out)])
    assert rc == 0
    args = json.loads((_last_checkpoint(out) / "args.json").read_text())
    assert args["max_pixels"] == 28 * 28 * 16 and args["packing"] is True


def test_sft_qwen2_audio_from_the_command_line(tmp_path, tiny_qwen2_audio_dir, media_dir):
    data = write_jsonl(tmp_path / "train_audio.jsonl", audio_rows(media_dir, 8))
    out = tmp_path / "output"
    rc = main(["sft", "--model", tiny_qwen2_audio_dir, "--dataset", data, "--max_steps", "2", "--save_steps", "2",
               "--per_device_train_batch_size", "2", "--output_dir", str(out)])
    assert rc == 0
    ckpt = _last_checkpoint(out)
    result = tmp_path / "result.jsonl"
    rc = main(["infer", "--adapters", str(ckpt), "--val_dataset", data + "#2", "--max_new_tokens", "4",
               "--result_path", str(result)])
    assert rc == 0
    assert len(result.read_text().splitlines()) == 2


def test_full_tuning_freezes_the_vision_tower_unless_asked(tmp_path, tiny_qwen2_vl_dir, media_dir):
    from safetensors.torch import load_file

    base = load_file(str(Path(tiny_qwen2_vl_dir) / "model.safetensors"))
    data = write_jsonl(tmp_path / "train.jsonl", vl_rows(media_dir, 8))
    changed = {}
    for flags in ([], ["--freeze_vit", "false", "--vit_lr", "1e-3"]):
        out = tmp_path / f"out{len(flags)}"
        rc = main(["sft", "--model", tiny_qwen2_vl_dir, "--dataset", data, "--tuner_type", "full", "--max_steps", "2",
                   "--save_steps", "2", "--per_device_train_batch_size", "4", "--learning_rate", "1e-3",
                   "--output_dir", str(out), *flags])
        assert rc == 0
        tuned = load_file(str(_last_checkpoint(out) / "model.safetensors"))
        moved = {k for k, v in tuned.items() if k in base and not (v == base[k]).all()}
        changed[len(flags)] = moved
    frozen, trained = changed[0], changed[4]
    assert frozen and not any("visual" in k and "merger" not in k for k in frozen)
    assert not any("merger" in k for k in frozen)  # --freeze_aligner defaults to true
    assert any("visual.blocks" in k for k in trained)


def test_text_model_refuses_media_rows_and_rlhf_refuses_multimodal(tmp_path, tiny_qwen2_dir, tiny_qwen2_vl_dir,
                                                                   media_dir, capsys):
    data = write_jsonl(tmp_path / "train.jsonl", vl_rows(media_dir, 4))
    rc = main(["sft", "--model", tiny_qwen2_dir, "--dataset", data, "--max_steps", "1",
               "--output_dir", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc != 0 and "row 1" in err and "takes text only" in err
    prefs = write_jsonl(tmp_path / "p.jsonl", [{"messages": [{"role": "user", "content": "hi"},
                                                             {"role": "assistant", "content": "a"}],
                                                "rejected_response": "b"}] * 4)
    rc = main(["rlhf", "--rlhf_type", "dpo", "--model", tiny_qwen2_vl_dir, "--dataset", prefs, "--max_steps", "1",
               "--output_dir", str(tmp_path / "o2")])
    assert rc != 0 and "aligns text models only" in capsys.readouterr().err


def test_chat_goes_on_after_an_unreadable_picture(tiny_qwen2_vl_dir, media_dir, tmp_path):
    from swift.data.mm_encode import MultiModalEncoder
    from swift.infer.chat import run_chat
    from swift.infer.protocol import RequestConfig
    from swift.infer.pt import PtEngine
    from swift.models.loader import load_model_and_tokenizer
    from swift.pipelines.mm import model_type_of
    from swift.templates import get_template

    model, processor, _ = load_model_and_tokenizer(tiny_qwen2_vl_dir)
    template = get_template(processor)
    engine = PtEngine(model, processor, template,
                      mm_encoder=MultiModalEncoder(template, processor, model_type_of(model)))
    typed = iter(["<image>What is it?", str(tmp_path / "missing.png"), "<image>And this?",
                  str(media_dir / "img0.png"), "exit"])
    printed: list[str] = []
    history = run_chat(engine, RequestConfig(max_new_tokens=3), stream=False, input_fn=lambda _: next(typed),
                       print_fn=lambda *a, **k: printed.append(" ".join(map(str, a))), modalities=("image",))
    assert any("[error]" in p and "missing.png" in p for p in printed)
    assert [m["content"] for m in history if m["role"] == "user"] == ["<image>And this?"]

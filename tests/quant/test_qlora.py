"""QLoRA: the seed's QuantizationConfig snippet, bitsandbytes training from the CLI, and its adapter answering."""
from __future__ import annotations

import importlib.util
import json

import pytest
import torch

from swift.utils.errors import ArgumentError, SwiftError

HAS_BNB = importlib.util.find_spec("bitsandbytes") is not None
needs_bnb = pytest.mark.skipif(not HAS_BNB, reason="bitsandbytes is not installed (extra quant)")


@needs_bnb
def test_seed_quantization_snippet_loads_4bit(tiny_qwen2_dir):
    # --- seed, verbatim except the model name ---
    from swift import QuantizationConfig
    quant_config = QuantizationConfig(
        quant_method="bitsandbytes",
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_compute_dtype=torch.bfloat16
    )
    from swift import SwiftModel
    model = SwiftModel.from_pretrained(tiny_qwen2_dir, quantization_config=quant_config)
    # --- end of seed ---
    import bitsandbytes as bnb

    q_proj = model.unwrap().model.layers[0].self_attn.q_proj
    assert isinstance(q_proj, bnb.nn.Linear4bit)
    assert q_proj.weight.quant_state.quant_type == "nf4" and q_proj.compute_dtype == torch.bfloat16
    ids = torch.tensor([[1, 5, 17, 42]])
    assert torch.isfinite(model(input_ids=ids).logits).all()

    # "tune further": LoRA on top of the 4-bit model trains only the adapters
    from swift import LoRAConfig, QLoRAConfig, SwiftConfig
    tuned = SwiftModel(model.unwrap(), config=SwiftConfig(lora=LoRAConfig(r=4, target_modules="all-linear")))
    loss = tuned(input_ids=ids, labels=ids).loss
    loss.backward()
    trainable = [n for n, p in tuned.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert all(p.grad is not None for n, p in tuned.named_parameters() if p.requires_grad and "lora_B" in n)
    assert QLoRAConfig().to_quantization_config().load_in_4bit


def test_quantization_config_checks_its_fields():
    from swift import QuantizationConfig

    assert QuantizationConfig(quant_method="bnb", load_in_8bit=True).bits == 8
    assert QuantizationConfig().bits == 4 and QuantizationConfig().quant_method == "bitsandbytes"
    with pytest.raises(ArgumentError, match="swift export"):
        QuantizationConfig(quant_method="gptq")
    with pytest.raises(ArgumentError, match="quant_method"):
        QuantizationConfig(quant_method="hqq")
    with pytest.raises(ArgumentError, match="load_in_8bit"):
        QuantizationConfig(load_in_4bit=True, load_in_8bit=True)
    with pytest.raises(ArgumentError, match="bnb_4bit_quant_type"):
        QuantizationConfig(bnb_4bit_quant_type="int4")
    with pytest.raises(ArgumentError, match="bnb_4bit_compute_dtype"):
        QuantizationConfig(bnb_4bit_compute_dtype="int8")


@needs_bnb
def test_quantization_config_to_transformers_8bit_and_storage():
    from swift import QuantizationConfig

    hf = QuantizationConfig(load_in_8bit=True).to_transformers()
    assert hf.load_in_8bit and not hf.load_in_4bit
    hf = QuantizationConfig(load_in_4bit=True, bnb_4bit_quant_type="fp4", bnb_4bit_compute_dtype="bf16",
                            bnb_4bit_use_double_quant=False, bnb_4bit_quant_storage="bfloat16").to_transformers()
    assert (hf.bnb_4bit_quant_type, hf.bnb_4bit_use_double_quant) == ("fp4", False)
    assert hf.bnb_4bit_compute_dtype == torch.bfloat16 and hf.bnb_4bit_quant_storage == torch.bfloat16


@needs_bnb
def test_quantized_folder_refuses_a_second_quantization(tmp_path, tiny_qwen2_dir):
    from swift import QuantizationConfig, SwiftModel

    SwiftModel.from_pretrained(tiny_qwen2_dir, quantization_config=QuantizationConfig()).save_pretrained(tmp_path)
    with pytest.raises(ArgumentError, match="already quantized"):
        SwiftModel.from_pretrained(str(tmp_path), quantization_config=QuantizationConfig())


def _chat_file(path, n=16):
    rows = [{"messages": [{"role": "user", "content": f"What is {i} plus one?"},
                          {"role": "assistant", "content": f"It is {i + 1}."}]} for i in range(n)]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


@needs_bnb
def test_cli_qlora_trains_and_its_adapter_answers(tmp_path, demo_model_dir, capsys):
    from swift.cli.main import main

    data = _chat_file(tmp_path / "d.jsonl")
    rc = main(["sft", "--model", demo_model_dir, "--dataset", str(data), "--quant_method", "bnb", "--quant_bits", "4",
               "--bnb_4bit_quant_type", "nf4", "--max_steps", "3", "--learning_rate", "1e-3", "--logging_steps", "1",
               "--output_dir", str(tmp_path / "out")])
    assert rc == 0
    run = next((tmp_path / "out").iterdir())
    ckpt = run / "checkpoint-3"
    saved = json.loads((ckpt / "args.json").read_text(encoding="utf-8"))
    assert (saved["quant_method"], saved["quant_bits"], saved["bnb_4bit_quant_type"]) == ("bnb", 4, "nf4")
    logs = [json.loads(line) for line in (run / "logging.jsonl").read_text(encoding="utf-8").splitlines()]
    losses = [r["loss"] for r in logs if "loss" in r]
    assert len(losses) == 3 and all(loss == loss for loss in losses)
    capsys.readouterr()

    rc = main(["infer", "--adapters", str(ckpt), "--val_dataset", str(_chat_file(tmp_path / "q.jsonl", 2)),
               "--max_new_tokens", "6", "--result_path", str(tmp_path / "r.jsonl")])
    assert rc == 0
    rows = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 2 and all(r["response"] for r in rows)


@needs_bnb
def test_adapter_of_qlora_loads_on_a_4bit_base_for_inference(tmp_path, demo_model_dir):
    """swift infer inherits the checkpoint's bnb settings: the adapter answers on the base it was trained on."""
    from swift.cli.main import main
    from swift.cli.parser import parse_args
    from swift.pipelines.infer import load_model_and_template

    assert main(["sft", "--model", demo_model_dir, "--dataset", str(_chat_file(tmp_path / "d.jsonl")),
                 "--quant_method", "bnb", "--max_steps", "1", "--output_dir", str(tmp_path / "out")]) == 0
    ckpt = next((tmp_path / "out").iterdir()) / "checkpoint-1"
    model, _, _ = load_model_and_template(parse_args("infer", ["--adapters", str(ckpt)]))
    import bitsandbytes as bnb

    assert any(isinstance(m, bnb.nn.Linear4bit) for m in model.modules())
    full, _, _ = load_model_and_template(parse_args("infer", ["--adapters", str(ckpt), "--quant_method", "none"]))
    assert not any(isinstance(m, bnb.nn.Linear4bit) for m in full.modules())


def test_export_methods_are_not_load_time_flags(tmp_path, demo_model_dir, capsys):
    from swift.cli.main import main

    rc = main(["sft", "--model", demo_model_dir, "--dataset", str(_chat_file(tmp_path / "d.jsonl")),
               "--quant_method", "gptq", "--max_steps", "1", "--output_dir", str(tmp_path / "o")])
    assert rc != 0
    assert "swift export --quant_method gptq" in capsys.readouterr().err
    rc = main(["sft", "--model", demo_model_dir, "--dataset", str(_chat_file(tmp_path / "d.jsonl")),
               "--quant_method", "awq", "--quant_bits", "8", "--output_dir", str(tmp_path / "o")])
    assert rc != 0 and "--quant_bits" in capsys.readouterr().err


@needs_bnb
def test_full_tuning_a_4bit_model_is_refused(tmp_path, demo_model_dir, capsys):
    from swift.cli.main import main

    rc = main(["sft", "--model", demo_model_dir, "--dataset", str(_chat_file(tmp_path / "d.jsonl")),
               "--quant_method", "bnb", "--tuner_type", "full", "--max_steps", "1", "--output_dir", str(tmp_path / "o")])
    assert rc != 0 and "quantized" in capsys.readouterr().err
    assert SwiftError  # the CLI prints SwiftErrors without a traceback


@needs_bnb
@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_qlora_from_python_runs_in_half_precision_without_autocast(tiny_qwen2_dir, dtype):
    """No mixed dtypes left behind by the preparation: forward, backward and generate run as loaded."""
    from swift import QLoRAConfig, SwiftConfig, SwiftModel

    model = SwiftModel.from_pretrained(tiny_qwen2_dir, torch_dtype=dtype,
                                       config=SwiftConfig(lora=QLoRAConfig(r=4, compute_dtype="float32")))
    inner = model.unwrap().base_model.model
    assert inner.is_gradient_checkpointing  # QLoRA's memory figures assume it
    head_dtype = inner.lm_head.weight.dtype
    assert head_dtype == (torch.float32 if dtype == "fp16" else torch.bfloat16)
    ids = torch.tensor([[1, 5, 17, 42, 7]])
    model.train()
    model(input_ids=ids, labels=ids).loss.backward()
    model.eval()
    out = model.generate(input_ids=ids, max_new_tokens=3, do_sample=False)
    assert out.shape == (1, 8)


def test_a_gptq_folder_from_another_tool_names_what_it_needs(tmp_path, tiny_qwen2_dir, capsys):
    """A folder quantized by AutoGPTQ/gptqmodel (kernels this machine lacks) fails with the way forward."""
    import shutil

    from swift.cli.main import main

    folder = tmp_path / "gptq-model"
    shutil.copytree(tiny_qwen2_dir, folder)
    cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    cfg["quantization_config"] = {"quant_method": "gptq", "bits": 4, "group_size": 128, "desc_act": False}
    (folder / "config.json").write_text(json.dumps(cfg), encoding="utf-8")
    if importlib.util.find_spec("gptqmodel") and importlib.util.find_spec("optimum"):
        pytest.skip("the GPTQ kernels are installed here")
    assert main(["infer", "--model", str(folder), "--val_dataset", str(_chat_file(tmp_path / "q.jsonl", 1))]) != 0
    err = capsys.readouterr().err
    assert "quantized with gptq" in err and "swift export --model <folder> --quant_method gptq" in err

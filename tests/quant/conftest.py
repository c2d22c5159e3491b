"""A tiny model trained a little on the first part of the built-in calibration text, so that held-out
perplexity means something (a random model sits near the vocabulary size whatever is done to it)."""
from __future__ import annotations

import shutil

import pytest

TRAIN_TOKENS = 48_000  # the export check holds out the END of the same text; training never sees it


@pytest.fixture(scope="session")
def trained_tiny_dir(tmp_path_factory, demo_model_dir) -> str:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from swift.pipelines.export import CALIBRATION_TEXT

    out = tmp_path_factory.mktemp("trained-tiny")
    tok = AutoTokenizer.from_pretrained(demo_model_dir)
    lines = CALIBRATION_TEXT.read_text(encoding="utf-8").splitlines()
    ids = [t for line in tok([x + "\n" for x in lines], add_special_tokens=False)["input_ids"] for t in line]
    window = 256
    ids = ids[:TRAIN_TOKENS // window * window]
    windows = torch.tensor(ids).view(-1, window)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(demo_model_dir, dtype=torch.float32)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(50):
        batch = windows[torch.randint(0, len(windows), (8,))]
        model(input_ids=batch, labels=batch).loss.backward()
        opt.step()
        opt.zero_grad()
    model.save_pretrained(out)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "generation_config.json"):
        src = f"{demo_model_dir}/{name}"
        try:
            shutil.copy2(src, out / name)
        except FileNotFoundError:
            pass
    return str(out)


@pytest.fixture
def one_thread():
    """Tiny matmuls gain nothing from threads; on a busy 2-core box, contention makes them ~20x slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

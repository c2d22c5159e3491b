"""DataCollator: padding, padding-free, and proof that packed rows do not see each other in a real model."""
from __future__ import annotations

import pytest
import torch

from swift.data import DataCollator, count_tokens, encode_rows, pack_dataset

ROWS = [([5, 6, 7, 8], [-100, -100, 7, 8]), ([9, 10], [-100, 10]), ([11, 12, 13], [-100, 12, 13])]


def features(rows=ROWS):
    return [{"input_ids": ids, "labels": labels, "length": len(ids)} for ids, labels in rows]


def test_padded_batch():
    collator = DataCollator(pad_token_id=0)
    batch = collator(features())
    assert set(batch) == {"input_ids", "attention_mask", "labels"}
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8], [9, 10, 0, 0], [11, 12, 13, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 1, 0]]
    assert batch["labels"].tolist() == [[-100, -100, 7, 8], [-100, 10, -100, -100], [-100, 12, 13, -100]]
    assert collator.last_num_tokens == count_tokens(batch) == 9
    wide = DataCollator(pad_token_id=0, pad_to_multiple_of=8)(features())
    assert wide["input_ids"].shape == (3, 8) and int(wide["attention_mask"].sum()) == 9


def test_padding_free_batch():
    collator = DataCollator(pad_token_id=0, padding_free=True, pad_to_multiple_of=8)
    pt_rows = [(ids, list(ids)) for ids, _ in ROWS]  # pre-training style: every label set
    batch = collator(features(pt_rows))
    assert set(batch) == {"input_ids", "position_ids", "labels"}  # no attention_mask, no token count
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8, 9, 10, 11, 12, 13]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 3, 0, 1, 0, 1, 2]]
    assert batch["labels"].tolist() == [[-100, 6, 7, 8, -100, 10, -100, 12, 13]]
    assert collator.last_num_tokens == count_tokens(batch) == 9


def test_packed_rows_use_padding_free_even_without_the_flag():
    packed = {"input_ids": [1, 2, 3, 4], "labels": [-100, 2, -100, 4], "position_ids": [0, 1, 0, 1], "length": 4}
    batch = DataCollator(pad_token_id=0)([packed, packed])
    assert "attention_mask" not in batch and batch["position_ids"].tolist() == [[0, 1, 0, 1] * 2]


@pytest.fixture(scope="module")
def tiny_model(tokenizer):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=tokenizer.get_vocab_size(), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      tie_word_embeddings=True)
    return Qwen2ForCausalLM(cfg).eval()


def _rows(make_template, tmp_path):
    msgs = [("What is the capital of France?", "Paris."), ("Hi", "Hello! How can I help you today?"),
            ("Count to five.", "1, 2, 3, 4, 5"), ("2+2?", "4")]
    rows = [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]} for q, a in msgs]
    return encode_rows(rows, make_template(), cache_dir=tmp_path)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_padding_free_and_packed_logits_match_separate_rows(tiny_model, attn, make_template, tmp_path):
    tiny_model.set_attn_implementation(attn)
    ds = _rows(make_template, tmp_path)
    rows = [ds[i] for i in range(len(ds))]
    with torch.no_grad():
        alone = [tiny_model(input_ids=torch.tensor([r["input_ids"]]), use_cache=False).logits[0] for r in rows]
        free = tiny_model(**DataCollator(0, padding_free=True)(rows), use_cache=False).logits[0]
        padded = tiny_model(**DataCollator(0)(rows), use_cache=False).logits
    expected = torch.cat(alone)
    assert free.shape == expected.shape
    torch.testing.assert_close(free, expected, atol=1e-5, rtol=0)
    for i, logits in enumerate(alone):
        torch.testing.assert_close(padded[i, :len(logits)], logits, atol=1e-5, rtol=0)
    # Guard: with rows allowed to see each other, the logits of later rows do change.
    joined = tiny_model(input_ids=torch.cat([torch.tensor(r["input_ids"]) for r in rows])[None]).logits[0]
    assert not torch.allclose(joined, expected, atol=1e-3)
    # Packed data through the collator: each sequence's rows still match their separate runs.
    packed = pack_dataset(ds, 64)
    assert len(packed) < len(ds)
    by_ids = {tuple(r["input_ids"]): a for r, a in zip(rows, alone)}
    for seq in packed:
        with torch.no_grad():
            out = tiny_model(**DataCollator(0)([seq]), use_cache=False).logits[0]
        starts = [k for k, p in enumerate(seq["position_ids"]) if p == 0] + [seq["length"]]
        for s, e in zip(starts, starts[1:]):
            torch.testing.assert_close(out[s:e], by_ids[tuple(seq["input_ids"][s:e])], atol=1e-5, rtol=0)


def test_padding_free_loss_equals_padded_loss(tiny_model):
    tiny_model.set_attn_implementation("sdpa")
    pt_rows = [([7, 8, 9, 10, 11], [7, 8, 9, 10, 11]), ([20, 21, 22], [20, 21, 22]), ([30, 31], [30, 31])]
    with torch.no_grad():
        padded = tiny_model(**DataCollator(0)(features(pt_rows)), use_cache=False).loss
        free = tiny_model(**DataCollator(0, padding_free=True)(features(pt_rows)), use_cache=False).loss
    torch.testing.assert_close(free, padded, atol=1e-5, rtol=0)

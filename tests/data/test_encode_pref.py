"""encode_preference_rows with the real template: columns, the SFT-label property, prefix checks, truncation,
drops with provenance, the cache and worker processes."""
from __future__ import annotations

import json

import pytest

from swift.data import encode_preference_rows, load_datasets
from swift.templates import get_template
from swift.utils.errors import ArgumentError, DataError


def U(c):
    return {"role": "user", "content": c}


def A(c):
    return {"role": "assistant", "content": c}


def S(c):
    return {"role": "system", "content": c}


def pair(history, chosen, rejected):
    return {"messages": [*history, A(chosen)], "rejected_response": rejected}


def learned(template, messages):
    """The labelled tokens of the SFT encoding of a conversation."""
    return [t for t in template.encode(messages)["labels"] if t != -100]


@pytest.fixture(scope="module")
def tok(tokenizer_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tokenizer_dir)


def count_calls(template) -> list:
    """Count the template's encoding calls (its class is swapped for a counting subclass, so copies count too)."""
    calls: list = []

    class Counting(type(template)):
        def batch_encode(self, batch):
            calls.append("batch_encode")
            return super().batch_encode(batch)

        def encode_prompt(self, messages):
            calls.append("encode_prompt")
            return super().encode_prompt(messages)

    template.__class__ = Counting
    return calls


# A template that renders the system message differently when a reply follows (rows with a system message only).
DIVERGING_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}"
    "{% if m.role == 'system' and messages[-1].role == 'assistant' %} (answered){% endif %}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


# ---- what the columns hold -----------------------------------------------------------------------------------
@pytest.mark.parametrize("loss_scale", ["all", "last_round"])
def test_preference_ids_are_prompt_plus_exactly_the_sft_labels(tok, write_jsonl, tmp_path, loss_scale):
    raw = [{"prompt": "What is 2+2?", "chosen": "4", "rejected": "5, I think"},
           {"prompt": [S("Be brief."), U("hi"), A("hello"), U("Capital of France?")], "chosen": [A("Paris")],
            "rejected": [A("Lyon is the capital.")]},
           {"messages": [U("Say hi"), A("Hello there!")], "rejected_messages": [U("Say hi"), A("Go away.")]}]
    paths = [write_jsonl(f"p{i}.jsonl", [r]) for i, r in enumerate(raw)]
    rows, _ = load_datasets(paths, mode="preference")
    template = get_template(tok, loss_scale=loss_scale)
    ds = encode_preference_rows(rows, template, kind="preference", cache_dir=tmp_path)
    assert ds.column_names == ["prompt_ids", "chosen_ids", "rejected_ids"] and len(ds) == 3
    for row, enc in zip(rows, ds):
        history = row["messages"][:-1]
        rejected = [*history, A(row["rejected_response"])]
        assert enc["prompt_ids"] == template.encode_prompt(history)
        full = template.encode(row["messages"])["input_ids"]
        assert full[:len(enc["prompt_ids"]) + len(enc["chosen_ids"])] == enc["prompt_ids"] + enc["chosen_ids"]
        full_rejected = template.encode(rejected)["input_ids"]
        assert full_rejected[:len(enc["prompt_ids"]) + len(enc["rejected_ids"])] == enc["prompt_ids"] + enc[
            "rejected_ids"]
        assert tok.decode(enc["chosen_ids"]) == row["messages"][-1]["content"] + "<|im_end|>"
        assert tok.decode(enc["rejected_ids"]) == row["rejected_response"] + "<|im_end|>"
        if loss_scale == "last_round" or len(history) == 1:
            assert enc["chosen_ids"] == learned(template, row["messages"])
            assert enc["rejected_ids"] == learned(template, rejected)


def test_kto_columns(tok, write_jsonl, tmp_path):
    raw = [{"prompt": "q1", "completion": "a good reply", "label": True},
           {"prompt": [U("q2")], "completion": [A("a bad reply")], "label": "false"}]
    rows, _ = load_datasets([write_jsonl("kto.jsonl", raw)], mode="kto")
    template = get_template(tok)
    ds = encode_preference_rows(rows, template, kind="kto", cache_dir=tmp_path)
    assert ds.column_names == ["prompt_ids", "completion_ids", "label"]
    assert ds["label"] == [True, False]
    for row, enc in zip(rows, ds):
        assert enc["prompt_ids"] == template.encode_prompt(row["messages"][:-1])
        assert enc["completion_ids"] == learned(template, row["messages"])
        assert enc["prompt_ids"] + enc["completion_ids"] == template.encode(row["messages"])["input_ids"][
            :len(enc["prompt_ids"]) + len(enc["completion_ids"])]


def test_prompt_columns_keep_messages_and_other_columns(tok, write_jsonl, tmp_path, capture_swift_log):
    raw = [{"prompt": "Solve 6*7", "solution": "42", "level": 1},
           {"messages": [S("Be exact."), U("Solve 2+2"), A("4")], "solution": 4, "level": 2}]
    paths = [write_jsonl("prompts.jsonl", raw[:1]), write_jsonl("chat.jsonl", raw[1:])]
    rows, _ = load_datasets(paths, mode="prompt")
    template = get_template(tok)
    ds = encode_preference_rows(rows, template, kind="prompt", cache_dir=tmp_path)
    assert ds.column_names == ["prompt_ids", "messages", "solution", "level", "response"]
    assert [json.loads(m) for m in ds["messages"]] == [r["messages"] for r in rows]
    assert ds["prompt_ids"] == [template.encode_prompt(r["messages"]) for r in rows]
    assert ds["level"] == [1, 2] and ds["response"] == [None, "4"]
    assert ds["solution"] == ["42", "4"]  # numbers in one row, text in another: kept as text
    assert any("column 'solution' mixes types" in r.getMessage() for r in capture_swift_log)


# ---- bad rows ------------------------------------------------------------------------------------------------
def test_prompt_that_is_not_a_prefix_is_an_error_or_a_counted_drop(tok, write_jsonl, tmp_path, capture_swift_log):
    raw = [{"prompt": f"q{i}", "chosen": "yes", "rejected": "no"} for i in range(19)]
    raw.insert(6, {"prompt": "q", "system": "Be kind.", "chosen": "yes", "rejected": "no"})
    path = write_jsonl("pairs.jsonl", raw)
    rows, _ = load_datasets([path], mode="preference")
    template = get_template(tok, DIVERGING_TEMPLATE)
    with pytest.raises(DataError) as info:
        encode_preference_rows(rows, template, kind="preference", cache_dir=tmp_path)
    assert (info.value.file, info.value.row, info.value.field) == (path, 7, "messages")
    assert "prefix_mismatch" in str(info.value) and "renders the history differently when a reply follows" in str(
        info.value) and "(answered)" in str(info.value)
    ds = encode_preference_rows(rows, template, kind="preference", cache_dir=tmp_path, strict=False)
    assert len(ds) == 19
    warning = [r.getMessage() for r in capture_swift_log if r.levelname == "WARNING"][-1]
    assert "dropped 1 of 20 rows" in warning and "1 x prefix_mismatch" in warning and f"{path}, row 7" in warning
    ok = encode_preference_rows(rows[:6], template, kind="preference", cache_dir=tmp_path)
    assert len(ok) == 6  # the same template encodes the other rows


def test_template_rejection_names_file_row_and_field(tok, write_jsonl, tmp_path):
    path = write_jsonl("kto.jsonl", [{"prompt": f"q{i}", "completion": "a", "label": True} for i in range(12)])
    rows, _ = load_datasets([path], mode="kto")
    rows[4]["messages"][0]["role"] = "developer"  # spoilt after loading: only the template sees it
    with pytest.raises(DataError) as info:
        encode_preference_rows(rows, get_template(tok), kind="kto", cache_dir=tmp_path)
    assert (info.value.file, info.value.row, info.value.field) == (path, 5, "messages")
    assert "bad_messages" in str(info.value) and "developer" in str(info.value)
    assert len(encode_preference_rows(rows, get_template(tok), kind="kto", cache_dir=tmp_path, strict=False)) == 11


def test_rows_that_are_not_canonical(tok, tmp_path):
    template = get_template(tok)
    with pytest.raises(DataError, match=r"train, row 2: expected a canonical 'preference' row .*mode='preference'"):
        encode_preference_rows([pair([U("q")], "a", "b"), {"prompt": "q", "chosen": "a", "rejected": "b"}], template,
                               kind="preference", cache_dir=tmp_path)
    with pytest.raises(DataError, match=r"val, row 1: expected a canonical 'kto' row with .*boolean 'label'"):
        encode_preference_rows([{"messages": [U("q"), A("a")], "label": "true"}], template, kind="kto",
                               cache_dir=tmp_path, desc="val")
    with pytest.raises(DataError, match=r"row 1, field 'prompt_ids': the column name 'prompt_ids' is reserved"):
        encode_preference_rows([{"messages": [U("q")], "prompt_ids": 1}], template, kind="prompt", cache_dir=tmp_path)
    with pytest.raises(ArgumentError, match="--kind"):
        encode_preference_rows([pair([U("q")], "a", "b")], template, kind="dpo", cache_dir=tmp_path)
    with pytest.raises(DataError, match="no rows"):
        encode_preference_rows([], template, kind="kto", cache_dir=tmp_path)


# ---- truncation ----------------------------------------------------------------------------------------------
LONG_Q = "please read this rather long question carefully " * 6
LONG_A = "a long and winding answer that goes on and on " * 6


def full_ids(tok, row):
    """Untruncated (prompt, chosen, rejected) ids."""
    ds = encode_preference_rows([row], get_template(tok), kind="preference", load_from_cache_file=False,
                                cache_dir=None)
    return ds[0]["prompt_ids"], ds[0]["chosen_ids"], ds[0]["rejected_ids"]


def test_truncation_delete_drops_and_counts(tok, tmp_path, capture_swift_log):
    short = [pair([U(f"q{i}")], "yes", "no") for i in range(19)]
    long = pair([U(LONG_Q)], "yes", "no")
    template = get_template(tok, max_length=40, truncation_strategy="delete")
    ds = encode_preference_rows(short + [long], template, kind="preference", cache_dir=tmp_path)
    assert len(ds) == 19
    assert all(len(p) + max(len(c), len(r)) <= 40 for p, c, r in zip(ds["prompt_ids"], ds["chosen_ids"],
                                                                      ds["rejected_ids"]))
    warning = [r.getMessage() for r in capture_swift_log if r.levelname == "WARNING"][-1]
    assert "dropped 1 of 20 rows" in warning and "1 x too_long" in warning and "train, row 20" in warning
    with pytest.raises(DataError, match=r"dropped 3 of 10 rows \(30.0%.*3 x too_long: longer than max_length"):
        encode_preference_rows(short[:7] + [long] * 3, template, kind="preference", cache_dir=tmp_path)


def test_truncation_left_cuts_the_start_of_the_prompt(tok, tmp_path):
    row = pair([S("system text"), U(LONG_Q)], "short yes", "a longer no, surely")
    prompt, chosen, rejected = full_ids(tok, row)
    limit = len(rejected) + 10
    assert len(prompt) > 10
    template = get_template(tok, max_length=limit, truncation_strategy="left")
    enc = encode_preference_rows([row], template, kind="preference", cache_dir=tmp_path)[0]
    assert enc == {"prompt_ids": prompt[-10:], "chosen_ids": chosen, "rejected_ids": rejected}
    # A reply that alone fills max_length cannot be saved by cutting the prompt: dropped.
    rows = [pair([U(f"q{i}")], "yes", "no") for i in range(19)] + [pair([U("q")], "yes", LONG_A)]
    small = get_template(tok, max_length=len(full_ids(tok, rows[-1])[2]), truncation_strategy="left")
    assert len(encode_preference_rows(rows, small, kind="preference", cache_dir=tmp_path)) == 19


def test_truncation_right_cuts_the_end_of_the_replies(tok, tmp_path, capture_swift_log):
    row = pair([U("q")], LONG_A + "chosen ending", "a different start " + LONG_A)
    prompt, chosen, rejected = full_ids(tok, row)
    limit = len(prompt) + 7
    template = get_template(tok, max_length=limit, truncation_strategy="right")
    enc = encode_preference_rows([row], template, kind="preference", cache_dir=tmp_path)[0]
    assert enc == {"prompt_ids": prompt, "chosen_ids": chosen[:7], "rejected_ids": rejected[:7]}
    # Replies that only differ after the cut teach nothing: dropped and counted.
    rows = [pair([U(f"q{i}")], "yes", "no") for i in range(19)] + [pair([U("q")], LONG_A + "one", LONG_A + "two")]
    assert len(encode_preference_rows(rows, template, kind="preference", cache_dir=tmp_path)) == 19
    warning = [r.getMessage() for r in capture_swift_log if r.levelname == "WARNING"][-1]
    assert "1 x same_after_truncation" in warning
    # A prompt that alone fills max_length leaves no room for a reply.
    rows[-1] = pair([U(LONG_Q)], "yes", "no")
    assert len(encode_preference_rows(rows, template, kind="preference", cache_dir=tmp_path)) == 19
    assert "1 x too_long" in [r.getMessage() for r in capture_swift_log if r.levelname == "WARNING"][-1]


def test_truncation_of_kto_and_prompt_rows(tok, tmp_path):
    kto = {"messages": [U(LONG_Q), A(LONG_A)], "label": False}
    full = encode_preference_rows([kto], get_template(tok), kind="kto", cache_dir=tmp_path)[0]
    limit = len(full["completion_ids"]) + 5
    left = encode_preference_rows([kto], get_template(tok, max_length=limit, truncation_strategy="left"), kind="kto",
                                  cache_dir=tmp_path)[0]
    assert left == {"prompt_ids": full["prompt_ids"][-5:], "completion_ids": full["completion_ids"], "label": False}
    limit = len(full["prompt_ids"]) + 5
    right = encode_preference_rows([kto], get_template(tok, max_length=limit, truncation_strategy="right"),
                                   kind="kto", cache_dir=tmp_path)[0]
    assert right == {"prompt_ids": full["prompt_ids"], "completion_ids": full["completion_ids"][:5], "label": False}

    prompts = [{"messages": [U(f"q{i}")]} for i in range(19)] + [{"messages": [U(LONG_Q)], "id": "long"}]
    full = encode_preference_rows(prompts[-1:], get_template(tok), kind="prompt", cache_dir=tmp_path)[0]
    left = encode_preference_rows(prompts, get_template(tok, max_length=30, truncation_strategy="left"),
                                  kind="prompt", cache_dir=tmp_path)
    assert len(left) == 20 and left[19]["prompt_ids"] == full["prompt_ids"][-30:] and left["id"][19] == "long"
    for strategy in ("right", "delete"):  # cutting the end of a prompt would cut off the generation prompt
        ds = encode_preference_rows(prompts, get_template(tok, max_length=30, truncation_strategy=strategy),
                                    kind="prompt", cache_dir=tmp_path)
        assert len(ds) == 19 and ds.column_names == ["prompt_ids", "messages"]  # no kept row had an 'id'


# ---- cache and processes -------------------------------------------------------------------------------------
def test_cache_is_reused_and_keyed_on_rows_kind_strict_and_template(tok, tmp_path, capture_swift_log):
    rows = [pair([U(f"q{i}")], f"a{i}", f"b{i}") for i in range(30)]
    template = get_template(tok)
    calls = count_calls(template)
    first = encode_preference_rows(rows, template, kind="preference", cache_dir=tmp_path, batch_size=8)
    n = len(calls)
    assert n == 4 + 30  # one batch_encode per batch (chosen and rejected together), one encode_prompt per row
    again = encode_preference_rows([dict(r) for r in rows], template, kind="preference", cache_dir=tmp_path,
                                   batch_size=8)
    assert len(calls) == n and any("reused cached encoding" in r.getMessage() for r in capture_swift_log)
    assert again.to_dict() == first.to_dict()
    encode_preference_rows(rows[:-1] + [pair([U("q29")], "a29", "changed")], template, kind="preference",
                           cache_dir=tmp_path, batch_size=8)
    assert len(calls) == 2 * n
    encode_preference_rows(rows, template, kind="preference", cache_dir=tmp_path, batch_size=8, strict=False)
    assert len(calls) == 3 * n
    encode_preference_rows(rows, template, kind="preference", cache_dir=tmp_path, batch_size=8,
                           load_from_cache_file=False)
    assert len(calls) == 4 * n
    other = get_template(tok, max_length=1000)  # another fingerprint
    other_calls = count_calls(other)
    encode_preference_rows(rows, other, kind="preference", cache_dir=tmp_path, batch_size=8)
    assert len(other_calls) == n
    kto = [{"messages": r["messages"], "label": True} for r in rows]
    encode_preference_rows(kto, template, kind="kto", cache_dir=tmp_path, batch_size=8)
    assert len(calls) == 5 * n
    encode_preference_rows(kto, template, kind="kto", cache_dir=tmp_path, batch_size=8)
    assert len(calls) == 5 * n


def test_processes_give_the_same_result(tok, tmp_path):
    rows = [pair([U(f"question {i}")], f"answer {i * 7}", f"answer {i * 7 + 1}") for i in range(120)]
    one = encode_preference_rows(rows, get_template(tok), kind="preference", cache_dir=tmp_path / "a", batch_size=30)
    two = encode_preference_rows(rows, get_template(tok), kind="preference", cache_dir=tmp_path / "b", batch_size=30,
                                 num_proc=2)
    assert one.to_dict() == two.to_dict() and len(one) == 120

"""The Template API: template choice, specs, system override, truncation, errors, text, fingerprint, fallbacks."""
from __future__ import annotations

import logging

import pytest
from template_cases import FAMILIES, LLAMA3, MISTRAL, make_tokenizer

from swift.templates import TEMPLATES, EncodeError, TemplateSpec, get_template, register_template
from swift.utils.errors import ArgumentError, SwiftError

CHAT = [{"role": "user", "content": "Hi there"}, {"role": "assistant", "content": "Hello! How can I help?"}]
LLAMA3_FAMILY = next(f for f in FAMILIES if f.name == "llama3")


def _ref(tok, messages, **kw):
    return tok.apply_chat_template(messages, tokenize=True, **kw)["input_ids"]


def _labeled(out) -> list[int]:
    return [i for i, lab in zip(out["input_ids"], out["labels"]) if lab != -100]


def test_auto_uses_the_tokenizer_template_and_default_without_one():
    tok = make_tokenizer()
    template = get_template(tok)
    assert template.name == "auto" and template.chat_template == tok.chat_template
    tok.chat_template = None
    base = get_template(tok, "auto")
    assert base.name == "default"
    out = base.encode([{"role": "system", "content": "Be nice."}, *CHAT])
    assert tok.decode(out["input_ids"]) == ("Be nice.\n\n### Human:\nHi there\n\n### Assistant:\n"
                                            "Hello! How can I help?<|im_end|>\n\n")
    assert tok.decode(_labeled(out)) == "Hello! How can I help?<|im_end|>"


def test_specs_equal_the_real_templates():
    tok = make_tokenizer()  # Qwen2's template: ChatML with a default system prompt
    qwen, chatml = get_template(tok, "qwen"), get_template(tok, "chatml")
    with_system = [{"role": "system", "content": "S"}, *CHAT]
    for messages in (CHAT, with_system, CHAT + CHAT):
        assert qwen.encode(messages) == get_template(tok).encode(messages)
        assert qwen.encode_prompt(messages[:-1]) == _ref(tok, messages[:-1], add_generation_prompt=True)
    assert chatml.encode(with_system)["input_ids"] == _ref(tok, with_system)
    assert "You are a helpful" not in tok.decode(chatml.encode(CHAT)["input_ids"])
    tok3 = make_tokenizer(LLAMA3_FAMILY)
    assert get_template(tok3, "llama3").encode(with_system)["input_ids"] == _ref(tok3, with_system)
    assert get_template(tok3, "llama3").stop_token_ids == [tok3.convert_tokens_to_ids("<|eot_id|>")]


def test_raw_spec_and_custom_jinja():
    tok = make_tokenizer()
    raw = get_template(tok, "raw")
    out = raw.encode([{"role": "user", "content": "1 2 3"}, {"role": "assistant", "content": " 4 5"}])
    assert tok.decode(out["input_ids"]) == "1 2 3 4 5<|im_end|>"
    custom = get_template(tok, "{% for m in messages %}{{ m['content'] + eos_token }}{% endfor %}")
    assert custom.name == "custom"
    assert tok.decode(_labeled(custom.encode(CHAT))) == "Hello! How can I help?<|im_end|>"


def test_unknown_template_and_registry():
    tok = make_tokenizer()
    with pytest.raises(SwiftError, match="Unknown template 'nope'.*chatml.*llama3"):
        get_template(tok, "nope")
    with pytest.raises(SwiftError, match="already registered"):
        register_template(TemplateSpec("chatml", user="{content}", assistant="{content}", system="{content}"))
    with pytest.raises(SwiftError, match="exactly once"):
        TemplateSpec("bad", user="no placeholder", assistant="{content}", system="{content}")
    spec = register_template(TemplateSpec("test-plain", user="Q: {content}\n", assistant="A: {content}{eos}\n",
                                          system="{content}\n", generation_prompt="A: "))
    try:
        template = get_template(tok, "test-plain")
        out = template.encode(CHAT)
        assert tok.decode(out["input_ids"]) == "Q: Hi there\nA: Hello! How can I help?<|im_end|>\n"
        assert tok.decode(template.encode_prompt(CHAT[:1])) == "Q: Hi there\nA: "
        with pytest.raises(EncodeError, match="supports the roles"):
            template.encode([*CHAT, {"role": "tool", "content": "x"}])
    finally:
        TEMPLATES.remove(spec)


def test_bad_arguments():
    tok = make_tokenizer()
    with pytest.raises(ArgumentError, match="truncation_strategy"):
        get_template(tok, truncation_strategy="middle")
    with pytest.raises(ArgumentError, match="loss_scale"):
        get_template(tok, loss_scale="some")
    with pytest.raises(ArgumentError, match="max_length"):
        get_template(tok, max_length=0)


def test_system_override_replaces_or_inserts():
    tok = make_tokenizer()
    template = get_template(tok, system="You are Swifty.")
    expected = [{"role": "system", "content": "You are Swifty."}, *CHAT]
    assert template.encode(CHAT)["input_ids"] == _ref(tok, expected)
    replaced = [{"role": "system", "content": "Old."}, *CHAT]
    assert template.encode(replaced)["input_ids"] == _ref(tok, expected)
    assert replaced[0]["content"] == "Old."  # the caller's messages are not modified
    assert template.encode_prompt(CHAT[:1]) == _ref(tok, expected[:2], add_generation_prompt=True)


def test_truncation():
    tok = make_tokenizer()
    full = get_template(tok).encode(CHAT)
    n = len(full["input_ids"])
    err = get_template(tok, max_length=n - 1).batch_encode([CHAT])[0]
    assert isinstance(err, EncodeError) and err.reason == "too_long" and str(n) in str(err)
    left = get_template(tok, max_length=n - 3, truncation_strategy="left").encode(CHAT)
    assert left == {"input_ids": full["input_ids"][3:], "labels": full["labels"][3:]}
    right = get_template(tok, max_length=n - 2, truncation_strategy="right").encode(CHAT)
    assert right == {"input_ids": full["input_ids"][:-2], "labels": full["labels"][:-2]}
    first_label = next(i for i, lab in enumerate(full["labels"]) if lab != -100)
    cut = get_template(tok, max_length=first_label, truncation_strategy="right")
    with pytest.raises(EncodeError) as info:
        cut.encode(CHAT)
    assert info.value.reason == "no_labels"
    assert get_template(tok, max_length=n).encode(CHAT) == full


def test_bad_messages_are_returned_in_place():
    tok = make_tokenizer()
    template = get_template(tok)
    bad = [
        [],
        [{"role": "bot", "content": "x"}, {"role": "assistant", "content": "y"}],
        [{"role": "user", "content": None}, {"role": "assistant", "content": "y"}],
        [{"role": "user", "content": "only a question"}],
        ["not a dict"],
    ]
    outs = template.batch_encode([CHAT, *bad, CHAT])
    assert outs[0] == outs[-1] == template.encode(CHAT)
    for out, pattern in zip(outs[1:-1], ["non-empty list", "'bot' is not one of", "content must be a string",
                                         "no assistant turn", "must be a dict"]):
        assert isinstance(out, EncodeError) and out.reason == "bad_messages"
        assert pattern in str(out)
    with pytest.raises(EncodeError, match="must end with a user"):
        template.encode_prompt(CHAT)


def test_template_errors_become_bad_messages():
    gemma = next(f for f in FAMILIES if f.name == "gemma")
    tok = make_tokenizer(gemma)
    outs = get_template(tok).batch_encode([[{"role": "system", "content": "S"}, *CHAT], CHAT])
    assert isinstance(outs[0], EncodeError) and "System role not supported" in str(outs[0])
    assert outs[1]["input_ids"] == _ref(tok, CHAT)


def test_prompt_truncation():
    tok = make_tokenizer()
    prompt = get_template(tok).encode_prompt(CHAT[:1])
    with pytest.raises(EncodeError, match="prompt has"):
        get_template(tok, max_length=4).encode_prompt(CHAT[:1])
    assert get_template(tok, max_length=4, truncation_strategy="left").encode_prompt(CHAT[:1]) == prompt[-4:]


def test_encode_text():
    tok = make_tokenizer()
    template = get_template(tok, max_length=5, truncation_strategy="left")
    out = get_template(tok).encode_text("Hello world, this is text.")
    ids = tok("Hello world, this is text.", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert out == {"input_ids": ids, "labels": ids}
    assert template.encode_text("Hello world, this is text.")["input_ids"] == ids[-5:]
    outs = template.batch_encode_text(["fine text", "", None])
    assert outs[0]["input_ids"][-1] == tok.eos_token_id
    assert [o.reason for o in outs[1:]] == ["bad_messages", "bad_messages"]
    llama = make_tokenizer(LLAMA3_FAMILY)
    llama.add_bos_token = True  # a tokenizer that adds bos when encoding text
    out = get_template(llama).encode_text("Hi")
    assert out["input_ids"][0] == llama.bos_token_id and out["input_ids"][-1] == llama.eos_token_id


def test_fingerprint():
    tok = make_tokenizer()
    base = get_template(tok).fingerprint()
    assert base == get_template(make_tokenizer()).fingerprint()
    others = {get_template(tok, max_length=64).fingerprint(), get_template(tok, system="S").fingerprint(),
              get_template(tok, loss_scale="last_round").fingerprint(), get_template(tok, "chatml").fingerprint(),
              get_template(tok, max_length=64, truncation_strategy="left").fingerprint()}
    tok.add_special_tokens({"additional_special_tokens": ["<tool>"]})
    others.add(get_template(tok).fingerprint())
    assert base not in others and len(others) == 6


def test_rows_the_fast_path_cannot_take():
    """Added tokens inside contents, extra keys, empty contents, a template writing a content twice."""
    tok = make_tokenizer()
    template = get_template(tok)
    rows = [
        [{"role": "user", "content": "What is <|im_end|>?"}, {"role": "assistant", "content": "A <|im_start|> tag"}],
        [{"role": "user", "content": "Hi", "name": "bob"}, {"role": "assistant", "content": "Hello"}],
        [{"role": "system", "content": ""}, {"role": "user", "content": ""}, {"role": "assistant", "content": "ok"}],
        CHAT,
    ]
    for messages, out in zip(rows, template.batch_encode(rows)):
        assert out["input_ids"] == _ref(tok, messages)
    assert template.encoder_mode == "words"
    twice = get_template(tok, "{% for m in messages %}{{ m['content'] + '|' + m['content'] + eos_token }}"
                              "{% endfor %}")
    out = twice.encode(CHAT)
    assert tok.decode(out["input_ids"]) == "Hi there|Hi there<|im_end|>Hello! How can I help?|Hello! How can I help?<|im_end|>"
    assert tok.decode(_labeled(out)) == "Hello! How can I help?<|im_end|>"


def test_content_dependent_template_falls_back_to_jinja(caplog):
    tok = make_tokenizer()
    # Looks at the content in a way the sentinels cannot see: the first check of a real row catches it.
    template = get_template(tok, "{% for m in messages %}{{ m['role'] + ': ' + m['content'] }}"
                                 "{% if m['content'] == 'Q' %}?{% endif %}{{ eos_token }}{% endfor %}")
    rows = [CHAT, [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "Longer answer"}], CHAT]
    with caplog.at_level(logging.WARNING):
        outs = template.batch_encode(rows)
    assert template.encoder_mode == "jinja" and "fast path does not reproduce" in caplog.text
    for messages, out in zip(rows, outs):
        assert out["input_ids"] == _ref(tok, messages, chat_template=template.chat_template)
        assert tok.decode(_labeled(out)) == messages[-1]["content"] + "<|im_end|>"
    # Writes the length of each content: padding the sentinels shows it, so these shapes use jinja.
    lengths = get_template(tok, "{% for m in messages %}{{ m['role'] + '(' + (m['content'] | length | string) + "
                                "'): ' + m['content'] + eos_token }}{% endfor %}")
    for messages, out in zip(rows, lengths.batch_encode(rows)):
        assert out["input_ids"] == _ref(tok, messages, chat_template=lengths.chat_template)
        assert tok.decode(_labeled(out)) == messages[-1]["content"] + "<|im_end|>"
    assert lengths.encoder_mode == "words" and all(s.layout is None for s in lengths._rows.shapes.values())


def test_word_cache_mismatch_steps_down(caplog):
    tok = make_tokenizer()
    template = get_template(tok)
    assert template.encoder_mode == "words"
    template._tok.words.cache[" there"] = [5]  # a wrong cached word: the row checks must notice
    with caplog.at_level(logging.WARNING):
        out = template.encode(CHAT)
    assert out["input_ids"] == _ref(tok, CHAT)
    assert template.encoder_mode == "chunked" and "words -> chunked" in caplog.text


@pytest.mark.parametrize("prepend", ["always", "first"])
def test_sentencepiece_style_tokenizer(prepend: str):
    """A Metaspace (SentencePiece-like) BPE tokenizer with Mistral's and Llama-3's templates."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme=prepend)
    backend.decoder = decoders.Metaspace(prepend_scheme=prepend)
    corpus = ["Hi there, how can I help you today?", "Hello! What is LoRA? Low-rank adapters.", "[INST] [/INST]"] * 5
    backend.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=200, special_tokens=["<unk>", "<s>", "</s>"]))
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    template = get_template(tok, MISTRAL)
    assert template._tok.words is None
    convs = [CHAT, CHAT + [{"role": "user", "content": " How?"}, {"role": "assistant", "content": "Like this."}]]
    for messages, out in zip(convs * 2, template.batch_encode(convs * 2)):
        assert out["input_ids"] == _ref(tok, messages, chat_template=MISTRAL)
        replies = "".join(m["content"] + "</s>" for m in messages if m["role"] == "assistant")
        assert tok.decode(_labeled(out)).replace(" ", "") == replies.replace(" ", "")
    tok.add_special_tokens({"additional_special_tokens": ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]})
    template = get_template(tok, LLAMA3)
    for messages, out in zip(convs * 2, template.batch_encode(convs * 2)):
        assert out["input_ids"] == _ref(tok, messages, chat_template=LLAMA3)


def test_pickle_round_trip():
    """datasets.map(num_proc=...) pickles the template into its workers."""
    import pickle

    tok = make_tokenizer()
    template = get_template(tok, max_length=64)
    first = template.batch_encode([CHAT] * 4)
    clone = pickle.loads(pickle.dumps(template))
    assert clone.batch_encode([CHAT] * 4) == first
    assert clone.fingerprint() == template.fingerprint()
    assert clone.encoder_mode == "words"


def test_python_mode_cuts_at_the_spans():
    """Slow tokenizers have no offsets: pieces between span boundaries are tokenized alone."""
    tok = make_tokenizer()
    template = get_template(tok)
    template._force("python")
    with_system = [{"role": "system", "content": "S"}, *CHAT, *CHAT]
    for messages in (CHAT, with_system):
        out = template.encode(messages)
        assert out["input_ids"] == _ref(tok, messages)  # the cuts fall on token boundaries with ChatML
        assert tok.decode(_labeled(out)) == "Hello! How can I help?<|im_end|>" * (messages.count(CHAT[1]))

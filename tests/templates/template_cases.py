"""Real chat templates (public data of those models, written out here) and tokenizers to try them on.

Each tokenizer is the bundled demo tokenizer with the model family's special tokens added and bos/eos set as
the real model does, so `apply_chat_template` renders the real format offline.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

DEMO = str(Path(__file__).resolve().parents[2] / "swift" / "assets" / "demo_model")

LLAMA3 = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
    "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + "
    "'<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}"
    "{% endif %}"
)

MISTRAL = (
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}"
    "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}"
)

GEMMA = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
    "{% endif %}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}"
    "{% endif %}{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}"
)

ZEPHYR = (
    "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + message['content'] + "
    "eos_token }}\n{% elif message['role'] == 'system' %}\n{{ '<|system|>\n' + message['content'] + eos_token }}\n"
    "{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n"
    "{% endif %}\n{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}"
)

PHI3 = (
    "{% for message in messages %}{% if message['role'] == 'system' %}{{'<|system|>\n' + message['content'] + "
    "'<|end|>\n'}}{% elif message['role'] == 'user' %}{{'<|user|>\n' + message['content'] + '<|end|>\n'}}"
    "{% elif message['role'] == 'assistant' %}{{'<|assistant|>\n' + message['content'] + '<|end|>\n'}}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}"
)

DEEPSEEK = (
    "{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}"
    "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}"
    "{{ 'User: ' + message['content'] + '\n\n' }}{% elif message['role'] == 'assistant' %}"
    "{{ 'Assistant: ' + message['content'] + eos_token }}{% elif message['role'] == 'system' %}"
    "{{ message['content'] + '\n\n' }}{% endif %}{% endfor %}{% if add_generation_prompt %}"
    "{{ 'Assistant:' }}{% endif %}"
)

LLAMA2 = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
    "{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}"
    "{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}"
    "{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}"
)

# Qwen3's template without its tool-calling branches: reasoning split at </think>, think block on the last turn.
QWEN3 = (
    "{%- if messages[0].role == 'system' %}{{- '<|im_start|>system\\n' + messages[0].content + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- set ns = namespace(multi_step_tool=true, last_query_index=messages|length - 1) %}"
    "{%- for message in messages[::-1] %}{%- set index = (messages|length - 1) - loop.index0 %}"
    "{%- if ns.multi_step_tool and message.role == 'user' and message.content is string and not("
    "message.content.startswith('<tool_response>') and message.content.endswith('</tool_response>')) %}"
    "{%- set ns.multi_step_tool = false %}{%- set ns.last_query_index = index %}{%- endif %}{%- endfor %}"
    "{%- for message in messages %}{%- if message.content is string %}{%- set content = message.content %}"
    "{%- else %}{%- set content = '' %}{%- endif %}"
    "{%- if (message.role == 'user') or (message.role == 'system' and not loop.first) %}"
    "{{- '<|im_start|>' + message.role + '\\n' + content + '<|im_end|>' + '\\n' }}"
    "{%- elif message.role == 'assistant' %}{%- set reasoning_content = '' %}"
    "{%- if message.reasoning_content is string %}{%- set reasoning_content = message.reasoning_content %}"
    "{%- else %}{%- if '</think>' in content %}"
    "{%- set reasoning_content = content.split('</think>')[0].rstrip('\\n').split('<think>')[-1].lstrip('\\n') %}"
    "{%- set content = content.split('</think>')[-1].lstrip('\\n') %}{%- endif %}{%- endif %}"
    "{%- if loop.index0 > ns.last_query_index %}{%- if loop.last or (not loop.last and reasoning_content) %}"
    "{{- '<|im_start|>' + message.role + '\\n<think>\\n' + reasoning_content.strip('\\n') + '\\n</think>\\n\\n'"
    " + content.lstrip('\\n') }}{%- else %}{{- '<|im_start|>' + message.role + '\\n' + content }}{%- endif %}"
    "{%- else %}{{- '<|im_start|>' + message.role + '\\n' + content }}{%- endif %}"
    "{{- '<|im_end|>\\n' }}{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


@dataclass
class Family:
    """A chat format to test: its template, the tokens to add, and what a labeled reply looks like."""

    name: str
    template: str | None  # None: the demo tokenizer's own (Qwen2 ChatML)
    eot: str  # the end-of-turn text labeled after a reply
    bos: str | None = None
    eos: str | None = None
    extra: list = field(default_factory=list)  # additional special tokens (str or AddedToken)
    system: bool = True  # the template accepts a system message
    strips: bool = False  # the template strips contents (| trim / .strip())
    alternate: bool = False  # user/assistant must alternate, starting with user


FAMILIES = [
    Family("chatml", None, "<|im_end|>"),
    Family("llama3", LLAMA3, "<|eot_id|>", bos="<|begin_of_text|>", eos="<|eot_id|>",
           extra=["<|start_header_id|>", "<|end_header_id|>"], strips=True),
    Family("mistral", MISTRAL, "</s>", bos="<s>", eos="</s>", system=False, alternate=True),
    Family("gemma", GEMMA, "<end_of_turn>", bos="<bos>", eos="<eos>", extra=["<start_of_turn>", "<end_of_turn>"],
           system=False, strips=True, alternate=True),
    Family("zephyr", ZEPHYR, "</s>", bos="<s>", eos="</s>"),
    Family("phi3", PHI3, "<|end|>", bos="<s>", eos="<|endoftext|>", extra=["<|system|>", "<|user|>",
                                                                        "<|assistant|>", "rstrip:<|end|>"]),
    Family("deepseek", DEEPSEEK, "<｜end▁of▁sentence｜>", bos="<｜begin▁of▁sentence｜>", eos="<｜end▁of▁sentence｜>"),
    Family("llama2", LLAMA2, "</s>", bos="<s>", eos="</s>", strips=True, alternate=True),
]


def make_tokenizer(family: Family | None = None, template: str | None = None):
    """The demo tokenizer dressed as `family` (fresh each call: tests add tokens to it)."""
    from tokenizers import AddedToken
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(DEMO)
    if family is None:
        if template is not None:
            tok.chat_template = template
        return tok
    extra = []
    for t in family.extra:
        if t.startswith("rstrip:"):  # like Phi-3's <|end|>: swallows the whitespace after it
            extra.append(AddedToken(t[len("rstrip:"):], rstrip=True, special=True, normalized=False))
        else:
            extra.append(AddedToken(t, special=True, normalized=False))
    specials: dict = {"additional_special_tokens": extra} if extra else {}
    if family.bos:
        specials["bos_token"] = AddedToken(family.bos, special=True, normalized=False)
    if family.eos:
        specials["eos_token"] = AddedToken(family.eos, special=True, normalized=False)
    tok.add_special_tokens(specials)
    if family.template is not None:
        tok.chat_template = family.template
    return tok


def conversations(family: Family) -> list[list[dict]]:
    """Conversations the family's template accepts: single and multi-turn, with and without system."""
    u1, a1 = "What is LoRA?", "LoRA adds small low-rank adapters to a frozen model."
    u2, a2 = "给一个例子 please.", "例如: rank 8 on q_proj and v_proj.\nDone!"
    u3, a3 = "And   spaces?", "  Leading and trailing spaces stay.  "
    convs = [
        [{"role": "user", "content": u1}, {"role": "assistant", "content": a1}],
        [{"role": "user", "content": u1}, {"role": "assistant", "content": a1},
         {"role": "user", "content": u2}, {"role": "assistant", "content": a2}],
        [{"role": "user", "content": u3}, {"role": "assistant", "content": a3},
         {"role": "user", "content": u1}, {"role": "assistant", "content": a1}],
    ]
    if family.system:
        sys_msg = {"role": "system", "content": "You are a terse assistant."}
        convs.append([sys_msg, *convs[1]])
        convs.append([sys_msg, *convs[0]])
    return convs

"""Hand-written chat formats, as data.

Most chat models ship their own jinja `chat_template` in the tokenizer, and SwiftLab uses it as is (see
`swift.templates.get_template`). The specs here are for the rest: base models without a chat template
(`default`), pre-training text (`raw`), and `--template NAME` overrides (`chatml`, `qwen`, `llama3`).

A spec is plain strings. `{content}` marks where a message's text goes; `{bos}` and `{eos}` stand for the
tokenizer's own bos/eos tokens (empty when it has none). A spec becomes a jinja chat template with
`TemplateSpec.to_jinja()`, so one encoder serves specs and models' own templates alike, and a model trained
with a spec can be saved with an equivalent `chat_template`.

Register another format with `register_template(TemplateSpec(...))`; names must be unique.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass

from swift.utils.errors import SwiftError

CONTENT = "{content}"
_PLACEHOLDER_RE = re.compile(r"\{(bos|eos)\}")


@dataclass(frozen=True)
class TemplateSpec:
    """One chat format as strings.

    Attributes:
        name: The name used by `--template NAME`.
        user: A user turn; must contain `{content}`.
        assistant: An assistant turn; must contain `{content}`. The text right after `{content}` should start
            with the end-of-turn token (e.g. `<|im_end|>` or `{eos}`): the encoder labels the reply plus that
            token, so the model learns to stop.
        system: A system turn; must contain `{content}`.
        tool: A tool-result turn; must contain `{content}`. None: tool messages are rejected.
        prefix: Written once before the first turn (e.g. `{bos}`).
        generation_prompt: Appended after the history when prompting for a reply (the assistant header).
        default_system: The system prompt used when the messages have none. None: no system turn then.
        description: One line for `--help` and docs.
    """

    name: str
    user: str
    assistant: str
    system: str
    tool: str | None = None
    prefix: str = ""
    generation_prompt: str = ""
    default_system: str | None = None
    description: str = ""

    def __post_init__(self) -> None:
        for field in ("user", "assistant", "system", "tool"):
            value = getattr(self, field)
            if value is not None and value.count(CONTENT) != 1:
                raise SwiftError(
                    f"Template spec '{self.name}': field '{field}' must contain '{CONTENT}' exactly once, "
                    f"got {value!r}."
                )

    def to_jinja(self) -> str:
        """The spec as a jinja chat template (same variables as Hugging Face chat templates)."""
        turns = [("system", self.system), ("user", self.user), ("assistant", self.assistant)]
        if self.tool is not None:
            turns.append(("tool", self.tool))
        out = [_emit(self.prefix)]
        if self.default_system is not None:
            before, after = self.system.split(CONTENT)
            out.append("{% if messages[0]['role'] != 'system' %}")
            out.append(_emit(before + self.default_system + after))
            out.append("{% endif %}")
        out.append("{% for message in messages %}")
        for i, (role, fmt) in enumerate(turns):
            before, after = fmt.split(CONTENT)
            out.append(("{% if" if i == 0 else "{% elif") + f" message['role'] == '{role}' %}}")
            out.append(_emit(before) + "{{ message['content'] }}" + _emit(after))
        roles = ", ".join(role for role, _ in turns)
        out.append("{% else %}{{ raise_exception('Template " + self.name + " supports the roles " + roles
                   + ", not ' + message['role']) }}{% endif %}")
        out.append("{% endfor %}")
        if self.generation_prompt:
            out.append("{% if add_generation_prompt %}" + _emit(self.generation_prompt) + "{% endif %}")
        return "".join(out)


def _emit(text: str) -> str:
    """A jinja output statement writing `text`, with `{bos}`/`{eos}` as the tokenizer's tokens."""
    if not text:
        return ""
    parts = []
    pos = 0
    for m in _PLACEHOLDER_RE.finditer(text):
        if m.start() > pos:
            parts.append(_jinja_str(text[pos:m.start()]))
        parts.append(f"({m.group(1)}_token or '')")
        pos = m.end()
    if pos < len(text):
        parts.append(_jinja_str(text[pos:]))
    return "{{ " + " + ".join(parts) + " }}"


def _jinja_str(text: str) -> str:
    # Jinja string literals take Python/JSON escapes; non-ASCII stays literal (no surrogate pairs).
    return json.dumps(text, ensure_ascii=False)


_CHATML = dict(
    system="<|im_start|>system\n{content}<|im_end|>\n",
    user="<|im_start|>user\n{content}<|im_end|>\n",
    assistant="<|im_start|>assistant\n{content}<|im_end|>\n",
    tool="<|im_start|>tool\n{content}<|im_end|>\n",
    generation_prompt="<|im_start|>assistant\n",
)

_LLAMA3_TURN = "<|start_header_id|>{role}<|end_header_id|>\n\n{{content}}<|eot_id|>"

TEMPLATES: list[TemplateSpec] = [
    TemplateSpec(
        name="default",
        system="{content}\n\n",
        user="### Human:\n{content}\n\n",
        assistant="### Assistant:\n{content}{eos}\n\n",
        tool="### Tool:\n{content}\n\n",
        prefix="{bos}",
        generation_prompt="### Assistant:\n",
        description="Plain-text format for base models without a chat template.",
    ),
    TemplateSpec(
        name="raw",
        system="{content}",
        user="{content}",
        assistant="{content}{eos}",
        tool="{content}",
        prefix="{bos}",
        description="No markup: the texts are concatenated (pre-training / continuation).",
    ),
    TemplateSpec(name="chatml", description="ChatML (<|im_start|>role ... <|im_end|>).", **_CHATML),
    TemplateSpec(
        name="qwen",
        default_system="You are a helpful assistant.",
        description="ChatML with Qwen's default system prompt.",
        **_CHATML,
    ),
    TemplateSpec(
        name="llama3",
        system=_LLAMA3_TURN.format(role="system"),
        user=_LLAMA3_TURN.format(role="user"),
        assistant=_LLAMA3_TURN.format(role="assistant"),
        tool=_LLAMA3_TURN.format(role="ipython"),
        prefix="{bos}",
        generation_prompt="<|start_header_id|>assistant<|end_header_id|>\n\n",
        description="Llama-3 instruct format (<|start_header_id|>role<|end_header_id|> ... <|eot_id|>).",
    ),
]


def register_template(spec: TemplateSpec) -> TemplateSpec:
    """Add a chat format to `TEMPLATES`.

    Args:
        spec: The format; its name must not be taken yet (nor be "auto").

    Returns:
        The spec, so it can be used as a one-liner.

    Raises:
        SwiftError: If a template with that name exists.
    """
    if spec.name == "auto" or any(t.name == spec.name for t in TEMPLATES):
        raise SwiftError(f"A template named '{spec.name}' is already registered; choose another name.")
    TEMPLATES.append(spec)
    return spec


def get_spec(name: str) -> TemplateSpec:
    """The registered spec called `name`.

    Raises:
        SwiftError: Naming the known templates, if there is none by that name.
    """
    for spec in TEMPLATES:
        if spec.name == name:
            return spec
    known = ", ".join(["auto"] + [t.name for t in TEMPLATES])
    raise SwiftError(f"Unknown template '{name}'. Known templates: {known}.")

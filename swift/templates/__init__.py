"""Chat templates and the encoder: messages -> input_ids and labels.

`get_template(tokenizer)` uses the model's own jinja `chat_template`; `TEMPLATES` holds hand-written specs
(`default`, `raw`, `chatml`, `qwen`, `llama3`) for models without one and for `--template NAME` overrides.
"""
from swift.templates.specs import TEMPLATES, TemplateSpec, get_spec, register_template
from swift.templates.template import EncodeError, Template, get_template

__all__ = ["Template", "TemplateSpec", "EncodeError", "get_template", "register_template", "TEMPLATES",
           "get_spec"]

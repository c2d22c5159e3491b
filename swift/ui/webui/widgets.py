"""Form fields as gradio components: one input per `forms.Field`, a red error line under each, the command.

Every input gets `elem_id="<prefix><flag>"` and its error line `elem_id="err-<prefix><flag>"` (the Train tab
uses no prefix: `err-num_train_epochs`), so tests and users' scripts find them by a stable name.
"""
from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Any

from swift.ui import forms
from swift.ui.webui.texts import label, t

EXTRA = "extra_args"


@dataclass
class FormView:
    """The components of one task's form: `inputs[flag]`, `errors[flag]` (plus "_form"), in order."""

    prefix: str
    inputs: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, Any] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return list(self.inputs)

    @property
    def components(self) -> list[Any]:
        return list(self.inputs.values())

    @property
    def error_components(self) -> list[Any]:
        return list(self.errors.values())

    def values(self, args: tuple | list) -> dict[str, Any]:
        """The inputs' current values (in `components` order) keyed by flag."""
        return dict(zip(self.names, args))

    def error_updates(self, errors: dict[str, str]) -> list[str]:
        """New values of the error lines (in `error_components` order): the message or empty."""
        return [f"⚠ {errors[name]}" if name in errors else "" for name in self.errors]


def error_line(elem_id: str) -> Any:
    """An (empty) red error line."""
    import gradio as gr

    return gr.Markdown("", elem_id=elem_id, elem_classes=["field-error"])


def make_input(f: forms.Field, lang: str, elem_id: str, value: Any = None) -> Any:
    """The gradio input for one field."""
    import gradio as gr

    value = f.default if value is None else value
    kw = {"label": label(f.name, lang), "elem_id": elem_id}
    if f.kind == "bool":
        return gr.Checkbox(value=bool(value), **kw)
    if f.kind == "choice":
        return gr.Dropdown(choices=list(f.choices), value=value, **kw)
    if f.kind in ("int", "float"):
        # A textbox, not gr.Number: a number box silently drops what it cannot parse, and the user would never
        # see why; `forms.validate` says it in words.
        return gr.Textbox(value="" if value is None else fmt_value(value), **kw)
    if f.name == "api_key":
        return gr.Textbox(value=value or "", type="password", **kw)
    return gr.Textbox(value=value or "", **kw)


def fmt_value(value: Any) -> str:
    """A value as a text field shows it (3.0 -> "3", 1e-4 -> "0.0001")."""
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def make_form(task: str, lang: str, prefix: str = "", *, skip: tuple[str, ...] = (), values: dict | None = None,
              columns: int = 2) -> FormView:
    """Inputs and error lines for `task`'s fields (without `skip`), laid out in rows of `columns`."""
    import gradio as gr

    view = FormView(prefix)
    fields = [f for f in forms.fields_for(task) if f.name not in skip]
    for i in range(0, len(fields), columns):
        with gr.Row():
            for f in fields[i:i + columns]:
                with gr.Column(min_width=240):
                    view.inputs[f.name] = make_input(f, lang, f"{prefix}{f.name}", (values or {}).get(f.name))
                    view.errors[f.name] = error_line(f"err-{prefix}{f.name}")
    return view


def add_extra(view: FormView, lang: str) -> None:
    """The "extra flags" field for flags the form does not show."""
    import gradio as gr

    view.inputs[EXTRA] = gr.Textbox(value="", label=label(EXTRA, lang), elem_id=f"{view.prefix}{EXTRA}")
    view.errors[EXTRA] = error_line(f"err-{view.prefix}{EXTRA}")


def form_error(view: FormView) -> None:
    """The error line for problems not tied to one field."""
    view.errors["_form"] = error_line(f"err-{view.prefix}_form")


def command_box(lang: str, elem_id: str, value: str = "") -> Any:
    import gradio as gr

    return gr.Code(value=value, language="shell", label=t("command", lang), interactive=False, elem_id=elem_id)


def split_extra(extra: str) -> list[str]:
    """The extra flags as argv tokens; raises ValueError for unbalanced quotes."""
    return shlex.split(extra or "")


def full_argv(task: str, values: dict[str, Any]) -> list[str]:
    """The command of the form, extra flags last; raises ValueError when the extra flags cannot be read."""
    values = dict(values)
    extra = split_extra(values.pop(EXTRA, "") or "")
    return forms.build_argv(task, values) + extra


def preview(task: str, values: dict[str, Any]) -> str:
    """The command to show (secrets hidden); a best effort while the form is being filled in."""
    try:
        return forms.command_line(full_argv(task, values), multiline=True)
    except ValueError:  # a half-typed number or quote: show what can be shown
        clean = {k: v for k, v in values.items() if k != EXTRA}
        try:
            return forms.command_line(forms.build_argv(task, clean), multiline=True)
        except ValueError:
            return ""


def check(task: str, values: dict[str, Any], lang: str) -> dict[str, str]:
    """`forms.validate` plus the extra flags: errors by field ("_form" for the rest), empty when it can run."""
    values = dict(values)
    extra_text = values.pop(EXTRA, "") or ""
    errors = forms.validate(task, values, lang)
    try:
        extra = split_extra(extra_text)
    except ValueError as e:
        errors[EXTRA] = t("extra_bad", lang, error=e)
        return errors
    if errors or not extra:
        return errors
    from swift.cli.parser import parse_args
    from swift.utils.errors import ArgumentError, SwiftError

    argv = forms.build_argv(task, values) + extra
    try:
        parse_args(argv[1], argv[2:])
    except ArgumentError as e:
        name = e.flag.lstrip("-")
        errors[name if name in values else EXTRA] = e.reason if name in values else str(e)
    except SwiftError as e:
        errors[EXTRA] = str(e)
    except SystemExit:
        errors[EXTRA] = t("extra_bad", lang, error=extra_text)
    return errors

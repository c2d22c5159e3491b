"""The Train tab: SFT or an alignment algorithm, the command shown as it is filled in, Start."""
from __future__ import annotations

from typing import Any

from swift.ui import forms
from swift.ui.hardware import Hardware, estimate_params_b, recommend, warning_text
from swift.ui.jobs import JobManager
from swift.ui.webui import widgets
from swift.ui.webui.common import start_form_job
from swift.ui.webui.texts import t

TASKS = ("sft", *forms.RLHF_TYPES)
_RECOMMENDED = ("tuner_type", "per_device_train_batch_size", "gradient_accumulation_steps", "torch_dtype",
                "learning_rate", "num_train_epochs")


def _warnings(warnings: list[tuple[str, dict]], lang: str) -> str:
    return "\n".join(f"- ⚠ {warning_text(w, lang)}" for w in warnings)


def initial_values(hw: Hardware, model: str = "swift-demo") -> tuple[dict[str, Any], list[str]]:
    """The form's first values: the task defaults with the hardware's recommendation (tuner, batch size, dtype);
    and the recommendation's warnings, as (key, values) pairs turned to text by the caller."""
    values = forms.defaults("sft")
    values["beta"] = forms.defaults("rlhf")["beta"]
    rec = recommend(hw, estimate_params_b(model))
    values.update(model=model, tuner_type=rec.tuner, per_device_train_batch_size=rec.per_device_train_batch_size,
                  gradient_accumulation_steps=rec.gradient_accumulation_steps, torch_dtype=rec.torch_dtype,
                  learning_rate=rec.learning_rate, num_train_epochs=rec.num_train_epochs)
    if values.get("dataset") == "self-cognition":  # it asks who the model is: the README's example names
        values.update(model_name="swift-robot", model_author="swift")
    return values, rec.warnings


def task_and_values(choice: str, values: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The forms task (sft or rlhf) and its values for the Task choice."""
    if choice == "sft":
        return "sft", {k: v for k, v in values.items() if k != "beta"}
    return "rlhf", {**values, "rlhf_type": choice}


def build(manager: JobManager, lang: str, hw: Hardware, started: Any) -> dict[str, Any]:
    """The tab's components (inside an open `gr.Tab`); `started` (a gr.State) receives the id of a started job."""
    import gradio as gr

    values, warnings = initial_values(hw)
    gr.Markdown(t("intro", lang, hw=hw.describe(lang)))
    notes = gr.Markdown(_warnings(warnings, lang), elem_id="train-warnings")
    task = gr.Radio(list(TASKS), value="sft", label=t("task", lang), info=t("task_info", lang), elem_id="train-task")
    view = widgets.make_form("rlhf", lang, "", skip=("rlhf_type",), values=values)
    view.inputs["beta"].visible = False
    widgets.add_extra(view, lang)
    widgets.form_error(view)
    command = widgets.command_box(lang, "train-command", widgets.preview(*task_and_values("sft", values)))
    with gr.Row():
        start = gr.Button(t("start", lang), variant="primary", elem_id="train-start")
    status = gr.Markdown("", elem_id="train-status")

    def show(choice: str, *args: Any) -> str:
        return widgets.preview(*task_and_values(choice, view.values(args)))

    def on_task(choice: str) -> Any:
        return gr.update(visible=choice != "sft")

    def on_start(choice: str, *args: Any) -> list[Any]:
        task_name, vals = task_and_values(choice, view.values(args))
        errs, text, job_id = start_form_job(manager, task_name, vals, lang, view)
        return [*errs, text, job_id or gr.skip()]

    def on_model(model: str) -> list[Any]:
        """A new model: the hardware's recommendation for it (tuner, batch size, dtype) and its warnings."""
        vals, warns = initial_values(hw, (model or "").strip() or "swift-demo")
        return [widgets.fmt_value(vals[k]) if k not in ("tuner_type", "torch_dtype") else vals[k]
                for k in _RECOMMENDED] + [
            _warnings(warns, lang)]

    view.inputs["model"].blur(on_model, view.inputs["model"], [*(view.inputs[k] for k in _RECOMMENDED), notes])
    inputs = [task, *view.components]
    gr.on([c.change for c in inputs], show, inputs=inputs, outputs=command, show_progress="hidden")
    task.change(on_task, task, view.inputs["beta"])
    start.click(on_start, inputs, [*view.error_components, status, started])
    return {"task": task, "view": view, "command": command, "start": start, "status": status}

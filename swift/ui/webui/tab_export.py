"""The Export tab: merge LoRA adapters into the base model, or quantize (gptq, awq, fp8, bnb), as jobs."""
from __future__ import annotations

from typing import Any

from swift.ui.jobs import JobManager
from swift.ui.webui import widgets
from swift.ui.webui.common import latest_checkpoint, start_form_job
from swift.ui.webui.texts import t


def _section(manager: JobManager, lang: str, task: str, prefix: str, started: Any,
             values: dict[str, Any]) -> widgets.FormView:
    import gradio as gr

    view = widgets.make_form(task, lang, prefix, values=values, columns=3)
    widgets.form_error(view)
    command = widgets.command_box(lang, f"{prefix}command", widgets.preview(task, values))
    start = gr.Button(t("start", lang), variant="primary", elem_id=f"{prefix}start")
    status = gr.Markdown("", elem_id=f"{prefix}status")

    def show(*args: Any) -> str:
        return widgets.preview(task, view.values(args))

    def on_start(*args: Any) -> list[Any]:
        errs, text, job_id = start_form_job(manager, task, view.values(args), lang, view)
        return [*errs, text, job_id or gr.skip()]

    gr.on([c.change for c in view.components], show, inputs=view.components, outputs=command, show_progress="hidden")
    start.click(on_start, view.components, [*view.error_components, status, started])
    return view


def build(manager: JobManager, lang: str, started: Any) -> dict[str, Any]:
    """The tab's components (inside an open `gr.Tab`); `prefill` fills empty adapter fields on opening."""
    import gradio as gr

    _, adapters = latest_checkpoint(manager)
    gr.Markdown(f"### {t('merge', lang)}")
    merge = _section(manager, lang, "merge", "merge-", started, {"adapters": adapters})
    gr.Markdown(f"### {t('quantize', lang)}")
    quant = _section(manager, lang, "quantize", "quant-", started, {"adapters": adapters})
    fields = [merge.inputs["adapters"], quant.inputs["adapters"], quant.inputs["model"]]

    def prefill(merge_a: str, quant_a: str, quant_m: str) -> list[Any]:
        _, ckpt = latest_checkpoint(manager)
        return [ckpt if ckpt and not (merge_a or "").strip() else gr.skip(),
                ckpt if ckpt and not ((quant_a or "").strip() or (quant_m or "").strip()) else gr.skip(),
                gr.skip()]

    return {"merge": merge, "quantize": quant, "prefill": (prefill, fields, fields)}

"""The Deploy tab: `swift deploy` as a job (OpenAI-compatible server); its URL once it serves; Stop."""
from __future__ import annotations

from typing import Any

from swift.ui.jobs import JobManager
from swift.ui.webui import widgets
from swift.ui.webui.common import latest_checkpoint, start_form_job
from swift.ui.webui.texts import status_text, t


def server_text(manager: JobManager, job_id: str | None, lang: str) -> str:
    """Where the deploy job stands: starting, serving at its URL, or ended."""
    job = manager.get(job_id) if job_id else None
    if job is None:
        return t("deploy_none", lang)
    if job.status != "running":
        return t("deploy_ended", lang, id=job.id, status=status_text(job.status, lang))
    url = job.result().get("url")  # reported by `swift deploy` once its socket listens
    return t("deploy_serving", lang, id=job.id, url=url) if url else t("deploy_wait", lang, id=job.id)


def build(manager: JobManager, lang: str, started: Any) -> dict[str, Any]:
    """The tab's components (inside an open `gr.Tab`)."""
    import gradio as gr

    model, adapters = latest_checkpoint(manager)
    values = {"model": model, "adapters": adapters}
    view = widgets.make_form("deploy", lang, "deploy-", values=values, columns=3)
    widgets.form_error(view)
    command = widgets.command_box(lang, "deploy-command", widgets.preview("deploy", {**values, "host": "127.0.0.1",
                                                                                     "port": 8000}))
    with gr.Row():
        start = gr.Button(t("start", lang), variant="primary", elem_id="deploy-start")
        stop = gr.Button(t("stop", lang), variant="stop", elem_id="deploy-stop")
    status = gr.Markdown("", elem_id="deploy-status")
    server = gr.Markdown(t("deploy_none", lang), elem_id="deploy-server")
    job_state = gr.State("")
    timer = gr.Timer(2.0)

    def show(*args: Any) -> str:
        return widgets.preview("deploy", view.values(args))

    def on_start(*args: Any) -> list[Any]:
        errs, text, job_id = start_form_job(manager, "deploy", view.values(args), lang, view)
        return [*errs, text, job_id or gr.skip(), job_id or gr.skip()]

    def on_stop(job_id: str) -> str:
        job = manager.get(job_id) if job_id else None
        if job is not None:
            job.stop()
        return server_text(manager, job_id, lang)

    gr.on([c.change for c in view.components], show, inputs=view.components, outputs=command, show_progress="hidden")
    start.click(on_start, view.components, [*view.error_components, status, started, job_state])
    stop.click(on_stop, job_state, server)
    timer.tick(lambda job_id: server_text(manager, job_id, lang), job_state, server, show_progress="hidden")
    fields = [view.inputs["model"], view.inputs["adapters"]]

    def prefill(m: str, a: str) -> list[Any]:
        if (m or "").strip() or (a or "").strip():
            return [gr.skip(), gr.skip()]
        m2, a2 = latest_checkpoint(manager)
        return [m2 or gr.skip(), a2 or gr.skip()]

    return {"view": view, "server": server, "prefill": (prefill, fields, fields)}

"""The Jobs tab: every started job, and the selected one's live log, loss plot and results; Stop."""
from __future__ import annotations

from typing import Any

from swift.ui.jobs import Job, JobManager
from swift.ui.webui.texts import status_text, t

REFRESH_S = 1.0
# Keep the log scrolled to its end while it grows, unless the user scrolled up to read.
_FOLLOW_LOG_JS = """() => { setTimeout(() => {
  const box = document.querySelector('#jobs-log textarea');
  if (!box) return;
  const last = Number(box.dataset.autoTop || 0);
  if (Math.abs(box.scrollTop - last) < 4 || box.scrollHeight - box.scrollTop - box.clientHeight < 30) {
    box.scrollTop = box.scrollHeight;
    box.dataset.autoTop = box.scrollTop;
  }
}, 150); }"""


def job_rows(manager: JobManager, lang: str) -> list[list[str]]:
    """(id, status, command) of each job, newest first."""
    return [[j.id, status_text(j.status, lang), j.command] for j in manager.jobs()]


def job_summary(job: Job | None, lang: str) -> str:
    """The status line of a job and what it reported (checkpoint, output folder, URL)."""
    if job is None:
        return t("no_jobs", lang)
    lines = [t("status_line", lang, id=job.id, status=status_text(job.status, lang)), f"`{job.command}`"]
    result = job.result()
    if result.get("last_checkpoint"):
        lines.append(t("result_ckpt", lang, path=result["last_checkpoint"]))
    elif result.get("output_dir"):
        lines.append(t("result_out", lang, path=result["output_dir"]))
    if result.get("url") and job.status == "running":
        lines.append(t("result_url", lang, url=result["url"]))
    return "\n\n".join(lines)


def loss_frame(points: list[tuple[int, float]]) -> Any:
    """(step, loss) points as the plot's DataFrame."""
    import pandas as pd

    # typed columns even when empty: the plot keeps the axis types of its first value (numbers, not categories)
    return pd.DataFrame({"step": pd.Series([s for s, _ in points], dtype="int64"),
                         "loss": pd.Series([v for _, v in points], dtype="float64")})


def loss_summary(points: list[tuple[int, float]], lang: str) -> str:
    if not points:
        return t("loss_none", lang)
    step, loss = points[-1]
    return t("loss_summary", lang, n=len(points), step=step, loss=loss)


def build(manager: JobManager, lang: str, started: Any) -> dict[str, Any]:
    """The tab's components (inside an open `gr.Tab`); a job id put in `started` gets selected."""
    import gradio as gr

    table = gr.Dataframe(value=job_rows(manager, lang) or None,
                         headers=[t("col_id", lang), t("col_status", lang), t("col_command", lang)],
                         interactive=False, wrap=True, label=t("jobs_table", lang), elem_id="jobs-table")
    with gr.Row():
        select = gr.Dropdown(choices=[j.id for j in manager.jobs()], value=None, label=t("job", lang),
                             elem_id="jobs-select", scale=3)
        stop = gr.Button(t("stop", lang), variant="stop", elem_id="jobs-stop", scale=1)
    summary = gr.Markdown(t("no_jobs", lang), elem_id="jobs-status")
    with gr.Row():
        with gr.Column(scale=1):
            plot = gr.LinePlot(loss_frame([]), x="step", y="loss", label=t("loss", lang), elem_id="jobs-loss",
                               height=280)
            plot_text = gr.Markdown(t("loss_none", lang), elem_id="jobs-loss-summary")
        with gr.Column(scale=1):
            log = gr.Textbox("", label=t("log", lang), lines=16, max_lines=16, autoscroll=True, interactive=False,
                             elem_id="jobs-log")
    # Which job is shown lives on the server, in this session's state, changed in place and never sent back as an
    # output: the timer's refresh then cannot undo a pick that happened while it ran (the dropdown's value in the
    # browser may lag behind). It changes when the user picks a job, or when a new job appears (it is followed).
    view = gr.State({"ids": None, "selected": None, "shown": None, "plot": None})
    timer = gr.Timer(REFRESH_S)

    def refresh(state: dict) -> list[Any]:
        ids = [j.id for j in manager.jobs()]
        appeared = [i for i in ids if state["ids"] is not None and i not in state["ids"]]
        if appeared:  # a job just started (here or from another tab's form): follow it
            state["selected"] = appeared[0]
        if state["selected"] not in ids:
            state["selected"] = ids[0] if ids else None
        selected = state["selected"]
        job = manager.get(selected) if selected else None
        select_update = gr.update(choices=ids, value=selected) if (
            ids != state["ids"] or selected != state["shown"]) else gr.skip()
        points = job.loss_points() if job is not None else []  # read once per refresh: plot and summary
        frame = loss_frame(points)
        plot_key = (selected, len(frame))
        plot_update = frame if plot_key != state["plot"] else gr.skip()
        state.update(ids=ids, shown=selected, plot=plot_key)
        return [job_rows(manager, lang) or None, select_update, job_summary(job, lang), plot_update,
                loss_summary(points, lang), job.log_tail() if job else ""]

    def choose(job_id: str | None, state: dict) -> list[Any]:
        if job_id:
            state["selected"] = job_id
        return refresh(state)

    outputs = [table, select, summary, plot, plot_text, log]
    timer.tick(refresh, [view], outputs, show_progress="hidden").then(None, js=_FOLLOW_LOG_JS)
    select.input(choose, [select, view], outputs, show_progress="hidden")
    started.change(choose, [started, view], outputs, show_progress="hidden")

    def on_stop(state: dict) -> str:  # the job shown (the server's choice, see `view`)
        job = manager.get(state["selected"]) if state["selected"] else None
        if job is None:
            return t("no_jobs", lang)
        job.stop()
        return t("stopped", lang, id=job.id) + "\n\n" + job_summary(job, lang)

    stop.click(on_stop, view, summary)
    return {"table": table, "select": select, "stop": stop, "summary": summary, "plot": plot, "log": log,
            "timer": timer}

"""The Chat tab: talk to a model or a trained checkpoint, loaded in the web-UI process on the first message."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from swift.ui import forms
from swift.ui.jobs import JobManager
from swift.ui.webui import widgets
from swift.ui.webui.chat import ChatSession
from swift.ui.webui.common import latest_checkpoint
from swift.ui.webui.texts import t


def build(manager: JobManager, lang: str, session: ChatSession) -> dict[str, Any]:
    """The tab's components (inside an open `gr.Tab`); returns them with `prefill`, the tab-select handler."""
    import gradio as gr

    model, adapters = latest_checkpoint(manager)
    view = widgets.make_form("chat", lang, "chat-", values={"model": model, "adapters": adapters}, columns=3)
    widgets.form_error(view)
    with gr.Row():
        latest = gr.Button(t("use_latest", lang), elem_id="chat-latest", size="sm")
    status = gr.Markdown("", elem_id="chat-status")
    bot = gr.Chatbot([], label=t("chatbot", lang), elem_id="chat-bot", height=360)
    with gr.Row():
        message = gr.Textbox("", label=t("message", lang), placeholder=t("message_ph", lang), elem_id="chat-input",
                             scale=4)
        send = gr.Button(t("send", lang), variant="primary", elem_id="chat-send", scale=1)
        clear = gr.Button(t("clear", lang), elem_id="chat-clear", scale=1)
    history = gr.State([])

    def use_latest() -> list[Any]:
        m, a = latest_checkpoint(manager)
        return [m, a] if (m or a) else [gr.skip(), gr.skip()]

    def prefill(m: str, a: str) -> list[Any]:
        """On opening the tab: fill in the newest checkpoint when the fields are empty."""
        if (m or "").strip() or (a or "").strip():
            return [gr.skip(), gr.skip()]
        return use_latest()

    def on_send(text: str, past: list[dict], *args: Any) -> Iterator[list[Any]]:
        values = view.values(args)
        errors = forms.validate("chat", values, lang)
        if errors or not (text or "").strip():
            yield [gr.skip(), past, gr.skip(), "", *view.error_updates(errors)]
            return
        clean = view.error_updates({})
        messages = [*past, {"role": "user", "content": text.strip()}]
        shown = [*messages, {"role": "assistant", "content": ""}]
        note = "" if session.is_current(values) else t("loading", lang)
        yield [shown, past, "", note, *clean]
        what = " + ".join(v for v in (values.get("model"), values.get("adapters")) if v)
        answer = ""
        try:
            for answer in session.reply(values, messages):
                shown[-1] = {"role": "assistant", "content": answer}
                yield [shown, past, gr.skip(), t("answering", lang, what=what), *clean]
        except Exception as e:  # shown to the user; the UI keeps running
            yield [messages, past, text, t("chat_error", lang, error=e), *clean]
            return
        final = [*messages, {"role": "assistant", "content": answer}]
        yield [final, final, gr.skip(), t("loaded", lang, what=what), *clean]

    outputs = [bot, history, message, status, *view.error_components]
    inputs = [message, history, *view.components]
    send.click(on_send, inputs, outputs)
    message.submit(on_send, inputs, outputs)
    clear.click(lambda: [[], [], ""], None, [bot, history, status])
    fill = [view.inputs["model"], view.inputs["adapters"]]
    latest.click(use_latest, None, fill)
    return {"view": view, "bot": bot, "send": send, "status": status, "prefill": (prefill, fill, fill)}

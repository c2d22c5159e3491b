"""The gradio app: five tabs over one job manager; launched on the local machine without calling the internet."""
from __future__ import annotations

import os
from typing import Any

from swift.ui.jobs import JobManager
from swift.ui.webui.texts import t

# Red error lines that take no room while empty.
CSS = """
.field-error { color: #d92d20 !important; font-size: 0.9em; min-height: 0 !important; }
.field-error p { margin: 0 0 4px 0; color: #d92d20 !important; }
.field-error:empty, .field-error .prose:empty { display: none; }
"""
_SYSTEM_FONTS = ["ui-sans-serif", "system-ui", "Segoe UI", "Helvetica", "Arial", "PingFang SC", "Microsoft YaHei",
                 "Noto Sans CJK SC", "sans-serif"]
_MONO_FONTS = ["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace"]


def offline_gradio() -> None:
    """Switch off what gradio would fetch from the internet: analytics and the version check (before gradio is
    imported), the share tunnel unless asked for; fonts come from the system (see `theme`)."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ.setdefault("GRADIO_SSR_MODE", "False")


def theme() -> Any:
    """The default theme with system fonts (the stock one loads fonts from Google's CDN)."""
    import gradio as gr

    return gr.themes.Default(font=_SYSTEM_FONTS, font_mono=_MONO_FONTS)


def build_app(manager: JobManager, lang: str = "en", hw: Any = None) -> Any:
    """The `gr.Blocks` of the web UI (not launched). `hw`: a `swift.ui.hardware.Hardware` (detected if None)."""
    offline_gradio()
    from swift.utils.errors import require

    gr = require("gradio", "webui", "swift web-ui")
    from swift.ui.hardware import detect_hardware
    from swift.ui.webui import tab_chat, tab_deploy, tab_export, tab_jobs, tab_train
    from swift.ui.webui.chat import ChatSession

    hw = hw or detect_hardware()
    session = ChatSession()
    with gr.Blocks(title=t("title", lang), analytics_enabled=False) as app:
        gr.Markdown(f"## {t('title', lang)}")
        started = gr.State("")
        with gr.Tabs(elem_id="tabs"):
            with gr.Tab(t("tab_train", lang), id="train", elem_id="tab-train"):
                train = tab_train.build(manager, lang, hw, started)
            with gr.Tab(t("tab_jobs", lang), id="jobs", elem_id="tab-jobs"):
                jobs = tab_jobs.build(manager, lang, started)
            with gr.Tab(t("tab_chat", lang), id="chat", elem_id="tab-chat") as chat_tab:
                chat = tab_chat.build(manager, lang, session)
            with gr.Tab(t("tab_export", lang), id="export", elem_id="tab-export") as export_tab:
                export = tab_export.build(manager, lang, started)
            with gr.Tab(t("tab_deploy", lang), id="deploy", elem_id="tab-deploy") as deploy_tab:
                deploy = tab_deploy.build(manager, lang, started)
        for tab, part in ((chat_tab, chat), (export_tab, export), (deploy_tab, deploy)):
            fn, inputs, outputs = part["prefill"]
            tab.select(fn, inputs, outputs, show_progress="hidden")
    app.swift_parts = {"train": train, "jobs": jobs, "chat": chat, "export": export, "deploy": deploy,
                       "manager": manager, "session": session}
    return app


def launch(app: Any, *, host: str, port: int, share: bool = False, auth: tuple[str, str] | None = None,
           block: bool = True) -> Any:
    """Serve `app` on host:port (the share tunnel only with `share`, which needs `auth`)."""
    offline_gradio()
    return app.launch(server_name=host, server_port=port, share=share, auth=auth, prevent_thread_lock=not block,
                      inbrowser=False, show_error=True, ssr_mode=False, theme=theme(), css=CSS,
                      footer_links=["settings"], enable_monitoring=False, mcp_server=False, pwa=False)

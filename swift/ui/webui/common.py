"""What the tabs share: starting a form's command as a job, and finding the latest trained checkpoint."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from swift.ui.jobs import JobManager
from swift.ui.webui import widgets
from swift.ui.webui.texts import t


def start_form_job(manager: JobManager, task: str, values: dict[str, Any], lang: str,
                   view: widgets.FormView) -> tuple[list[str], str, str]:
    """Check the form; start its command when it is clean. Returns (error line values, status text, job id or
    "")."""
    errors = widgets.check(task, values, lang)
    if errors:
        if "_form" not in view.errors:
            # no general error line on this form: put the message on the status instead
            extra = errors.pop("_form", None)
            status = t("not_started", lang) + (f"\n\n⚠ {extra}" if extra else "")
        else:
            status = t("not_started", lang)
        return view.error_updates(errors), status, ""
    job = manager.start(widgets.full_argv(task, values))
    return view.error_updates({}), t("started", lang, id=job.id), job.id


def latest_checkpoint(manager: JobManager) -> tuple[str, str]:
    """(model, adapters) of the newest finished training job: ("", ckpt) for a LoRA checkpoint, (ckpt, "") for a
    full one, ("", "") when there is none."""
    for job in manager.jobs():
        if job.argv[1:2] not in (["sft"], ["rlhf"]) or job.status != "finished":
            continue
        ckpt = job.result().get("last_checkpoint")
        if ckpt and Path(ckpt).is_dir():
            return ("", ckpt) if (Path(ckpt) / "adapter_config.json").is_file() else (ckpt, "")
    return "", ""

"""Fast tests of `swift web-ui`: flags, forms -> commands, per-field errors, the built app, an offline launch."""
from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from swift.ui import forms
from swift.ui.hardware import Hardware
from swift.ui.webui import WebUIError, main, parse_cli, widgets
from swift.ui.webui.common import start_form_job
from swift.ui.webui.tab_train import initial_values, task_and_values
from swift.ui.webui.texts import FIELDS, UI

CPU = Hardware("cpu", cpu_count=2, ram_gib=16.0)


def test_webui_share_without_auth_is_refused(capsys):
    assert main(["--share"]) == 2
    err = capsys.readouterr().err
    assert "--share needs --auth" in err
    with pytest.raises(WebUIError, match="--auth"):
        parse_cli(["--share"])
    opts = parse_cli(["--share", "--auth", "alice:pw:with:colons"])
    assert opts.share and opts.auth == ("alice", "pw:with:colons")


def test_webui_takes_ms_swift_flag_spellings():
    opts = parse_cli(["--server_name", "0.0.0.0", "--server_port", "7861", "--share", "false", "--lang", "en"])
    assert (opts.host, opts.port, opts.share) == ("0.0.0.0", 7861, False)
    with pytest.raises(WebUIError, match="--auth"):
        parse_cli(["--share", "true"])
    assert parse_cli(["--share", "true", "--auth", "a:b"]).share is True


@pytest.mark.parametrize("auth", ["alice", ":pw", "alice:"])
def test_webui_auth_must_be_user_and_password(auth):
    with pytest.raises(WebUIError, match="user:password"):
        parse_cli(["--auth", auth])


def test_webui_defaults_bind_localhost_only():
    opts = parse_cli(["--lang", "zh"])
    assert (opts.host, opts.port, opts.share, opts.auth, opts.lang) == ("127.0.0.1", 7860, False, None, "zh")
    with pytest.raises(WebUIError, match="--lang"):
        parse_cli(["--lang", "fr"])


def test_webui_import_loads_neither_gradio_nor_torch():
    code = "import sys, swift.ui.webui; print('gradio' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_webui_every_label_in_both_languages():
    for table in (FIELDS, UI):
        for key, (en, zh) in table.items():
            assert en.strip() and zh.strip(), key
    names = {f.name for task in forms.FORMS for f in forms.fields_for(task)}
    assert names - {"rlhf_type"} <= set(FIELDS)


def test_webui_form_values_make_the_command():
    values, _ = initial_values(CPU)
    assert values["trust_remote_code"] is False and values["tuner_type"] == "lora"
    assert values["per_device_train_batch_size"] == 8  # recommend(): the demo model is tiny
    values.update(num_train_epochs="2", learning_rate="5e-3", max_length="256",
                  extra_args="--logging_steps 1 --save_steps 100")
    argv = widgets.full_argv(*task_and_values("sft", values))
    assert argv[:2] == ["swift", "sft"] and argv[-4:] == ["--logging_steps", "1", "--save_steps", "100"]
    assert "--beta" not in argv and "--trust_remote_code" not in argv
    assert argv[argv.index("--num_train_epochs") + 1] == "2"
    assert "--logging_steps 1" in widgets.preview(*task_and_values("sft", values))
    task, dpo = task_and_values("dpo", values)
    argv = widgets.full_argv(task, dpo)
    assert argv[:4] == ["swift", "rlhf", "--rlhf_type", "dpo"] and "--beta" in argv


def test_webui_recommendation_follows_the_model():
    values, warnings = initial_values(CPU, "Qwen2.5-7B-Instruct")
    assert values["model"] == "Qwen2.5-7B-Instruct" and values["per_device_train_batch_size"] == 1
    assert [key for key, _ in warnings] == ["cpu_slow"]
    values, _ = initial_values(Hardware("cuda", "H100", 80.0, 1, 16, 256.0), "Qwen2.5-7B-Instruct")
    assert values["tuner_type"] == "lora" and values["torch_dtype"] == "bfloat16"


def test_webui_deploy_command_hides_the_api_key():
    shown = widgets.preview("deploy", {"model": "swift-demo", "api_key": "s3cret", "port": "8001"})
    assert "s3cret" not in shown and "--api_key '***'" in shown
    assert "s3cret" in widgets.full_argv("deploy", {"model": "swift-demo", "api_key": "s3cret"})  # but it runs


def test_webui_errors_go_next_to_their_fields(tmp_path):
    values, _ = initial_values(CPU)
    values.update(num_train_epochs="-1", dataset=str(tmp_path / "missing.jsonl"), extra_args="")
    errors = widgets.check("sft", values, "en")
    assert "greater than 0" in errors["num_train_epochs"]
    assert "not found" in errors["dataset"]
    zh = widgets.check("sft", values, "zh")
    assert "必须大于 0" in zh["num_train_epochs"]
    view = widgets.FormView("", errors={"dataset": None, "num_train_epochs": None, "model": None})
    lines = view.error_updates(errors)
    assert lines[0].startswith("⚠") and "not found" in lines[0] and lines[2] == ""


def test_webui_extra_flags_are_checked(tmp_path):
    values, _ = initial_values(CPU)
    values["extra_args"] = "--no_such_flag 1"
    assert "no_such_flag" in widgets.check("sft", values, "en")["extra_args"]
    values["extra_args"] = "--logging_steps 'unbalanced"
    assert "extra_args" in widgets.check("sft", values, "en")
    values["extra_args"] = "--logging_steps 1"
    assert widgets.check("sft", values, "en") == {}


class _FakeManager:
    def __init__(self):
        self.started = []

    def start(self, argv):
        self.started.append(argv)
        return type("J", (), {"id": "job-1"})()


def test_webui_start_refuses_a_bad_form_and_starts_a_good_one(tmp_path):
    manager = _FakeManager()
    view = widgets.FormView("", errors={"num_train_epochs": None, "dataset": None, "_form": None})
    values, _ = initial_values(CPU)
    bad = {**values, "num_train_epochs": "-1"}
    lines, status, job_id = start_form_job(manager, "sft", bad, "en", view)
    assert job_id == "" and manager.started == [] and "Not started" in status and "greater than 0" in lines[0]
    lines, status, job_id = start_form_job(manager, "sft", values, "en", view)
    assert job_id == "job-1" and lines == ["", "", ""] and manager.started[0][:2] == ["swift", "sft"]


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    pytest.importorskip("gradio")
    from swift.ui.jobs import JobManager
    from swift.ui.webui.app import build_app

    return build_app(JobManager(tmp_path_factory.mktemp("jobs")), "en", hw=CPU)


def test_webui_app_has_every_tab_and_stable_ids(app):
    ids = {c.get("props", {}).get("elem_id") for c in app.config["components"]}
    for elem_id in ("tab-train", "tab-jobs", "tab-chat", "tab-export", "tab-deploy", "train-start", "train-command",
                    "err-num_train_epochs", "err-dataset", "err-extra_args", "jobs-log", "jobs-loss", "jobs-stop",
                    "chat-bot", "chat-adapters", "merge-command", "quant-quant_method", "deploy-api_key",
                    "deploy-stop"):
        assert elem_id in ids, elem_id


def test_webui_trust_remote_code_is_off_by_default(app):
    parts = app.swift_parts
    for view in (parts["train"]["view"], parts["chat"]["view"], parts["deploy"]["view"],
                 parts["export"]["quantize"]):
        assert view.inputs["trust_remote_code"].value is False
    assert parts["deploy"]["view"].inputs["host"].value == "127.0.0.1"
    assert "--trust_remote_code" not in parts["train"]["command"].value


def test_webui_launch_reaches_nothing_but_localhost(app, monkeypatch):
    import httpx

    from swift.ui.webui.app import launch

    outside = []
    real_connect = socket.socket.connect

    def connect(self, address):
        if isinstance(address, tuple) and address[0] not in ("127.0.0.1", "::1", "localhost"):
            outside.append(address)
            raise OSError("network disabled in this test")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    launch(app, host="127.0.0.1", port=port, block=False)
    try:
        page = httpx.get(f"http://127.0.0.1:{port}/", timeout=30)
        assert page.status_code == 200 and "fonts.googleapis.com" not in page.text
        assert httpx.get(f"http://127.0.0.1:{port}/config", timeout=30).status_code == 200
    finally:
        app.close()
    assert outside == []
    assert app.share is False and app.server_name == "127.0.0.1"


def test_webui_speaks_chinese(tmp_path):
    pytest.importorskip("gradio")
    from swift.ui.jobs import JobManager
    from swift.ui.webui.app import build_app

    app = build_app(JobManager(tmp_path / "jobs"), "zh", hw=CPU)
    labels = {c.get("props", {}).get("elem_id"): c.get("props", {}).get("label") for c in app.config["components"]}
    assert labels["tab-train"] == "训练" and labels["tab-chat"] == "对话"
    assert labels["num_train_epochs"] == "训练轮数" and labels["chat-adapters"] == "LoRA 检查点"

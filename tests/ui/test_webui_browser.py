"""The acceptance test of `swift web-ui`: a real server driven by headless Chromium (playwright).

Bad values are refused next to their fields and start nothing; a tiny LoRA run on the demo model is started,
followed live (log and loss) to the end; the trained checkpoint answers in the Chat tab. Screenshots of every tab
go to $SWIFT_TEST_ARTIFACTS (else the test's tmp folder) and, when run locally, /tmp/webui-shots/.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
LOCAL_SHOTS = Path("/tmp/webui-shots")

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, proc: subprocess.Popen, log: Path, timeout: float = 90) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            pytest.fail(f"swift web-ui exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.3)
    pytest.fail(f"swift web-ui did not listen on {port} in {timeout}s:\n{log.read_text()[-3000:]}")


@pytest.fixture
def shots(tmp_path):
    """Folders the screenshots go to."""
    folders = [Path(os.environ.get("SWIFT_TEST_ARTIFACTS") or tmp_path / "shots") / "webui"]
    if not os.environ.get("CI"):
        folders.append(LOCAL_SHOTS)
    for f in folders:
        f.mkdir(parents=True, exist_ok=True)
    return folders


@pytest.fixture
def server(tmp_path):
    """`swift web-ui` on a free port, cwd tmp_path; yields (url, jobs folder)."""
    port, jobs, log = _free_port(), tmp_path / "jobs", tmp_path / "webui.log"
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "swift", "web-ui", "--port", str(port), "--lang", "en",
                                 "--jobs_dir", str(jobs)], cwd=tmp_path, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_port(port, proc, log)
        yield f"http://127.0.0.1:{port}/", jobs
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        print(log.read_text()[-4000:])


def _field(page, elem_id: str):
    return page.locator(f"#{elem_id} textarea, #{elem_id} input").first


def _shot(page, shots: list[Path], name: str) -> None:
    first = shots[0] / f"{name}.png"
    page.screenshot(path=str(first), full_page=True)
    for folder in shots[1:]:
        shutil.copy(first, folder / first.name)


def _tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()


# CI installs chromium and sets SWIFT_REQUIRE_BROWSER=1, so there a missing browser fails instead of skipping.
@pytest.mark.skipif(not Path(CHROMIUM).exists() and not os.environ.get("SWIFT_REQUIRE_BROWSER"),
                    reason="needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)")
def test_webui_train_follow_chat_in_browser(server, shots, tmp_path):
    if os.environ.get("SWIFT_REQUIRE_BROWSER"):
        import playwright.sync_api as sync_api
    else:
        sync_api = pytest.importorskip("playwright.sync_api")
    import httpx

    url, jobs = server
    outside: list[str] = []

    def only_local(route):
        host = route.request.url.split("/")[2] if "//" in route.request.url else ""
        if host.split(":")[0] in ("127.0.0.1", "localhost") or route.request.url.startswith(("data:", "blob:")):
            return route.continue_()
        outside.append(route.request.url)
        return route.abort()

    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.route("**/*", only_local)
        page.set_default_timeout(30_000)
        page.goto(url)
        page.locator("#train-start").wait_for()

        # (a) bad values: the errors show next to their fields and no job starts
        _field(page, "num_train_epochs").fill("-1")
        _field(page, "dataset").fill(str(tmp_path / "missing.jsonl"))
        page.locator("#train-start").click()
        sync_api.expect(page.locator("#err-num_train_epochs")).to_contain_text("greater than 0")
        sync_api.expect(page.locator("#err-dataset")).to_contain_text("not found")
        sync_api.expect(page.locator("#train-status")).to_contain_text("Not started")
        _shot(page, shots, "1-train-errors")
        assert not jobs.exists() or not any(jobs.iterdir())

        # (b) a tiny LoRA run, followed live in the Jobs tab
        for elem_id, value in {"dataset": "self-cognition#16", "num_train_epochs": "2", "max_length": "256",
                               "learning_rate": "5e-3", "per_device_train_batch_size": "8",
                               "gradient_accumulation_steps": "1", "model_name": "robot", "model_author": "lab",
                               "extra_args": "--logging_steps 1 --save_steps 100"}.items():
            _field(page, elem_id).fill(value)
        sync_api.expect(page.locator("#train-command")).to_contain_text("--logging_steps 1")
        page.locator("#train-start").click()
        sync_api.expect(page.locator("#train-status")).to_contain_text("Started job")
        sync_api.expect(page.locator("#err-num_train_epochs")).to_have_text("")
        _shot(page, shots, "2-train-started")
        _tab(page, "Jobs")
        logs, losses, deadline = set(), set(), time.time() + 150
        status = page.locator("#jobs-status")
        while time.time() < deadline:
            logs.add(_field(page, "jobs-log").input_value())
            losses.add(page.locator("#jobs-loss-summary").inner_text())
            if "finished" in status.inner_text() or "failed" in status.inner_text():
                break
            time.sleep(0.5)
        page.wait_for_timeout(1500)  # one more refresh after the end
        logs.add(_field(page, "jobs-log").input_value())
        losses.add(page.locator("#jobs-loss-summary").inner_text())
        _shot(page, shots, "3-jobs")
        assert "finished" in status.inner_text(), _field(page, "jobs-log").input_value()[-3000:]
        assert len([s for s in logs if s]) >= 2, "the log did not grow while the job ran"
        assert len(losses) >= 2, losses
        assert "4 loss points" in page.locator("#jobs-loss-summary").inner_text()
        assert "checkpoint-" in status.inner_text()
        at_end = "t => t.scrollHeight - t.scrollTop - t.clientHeight < 5"
        assert page.locator("#jobs-log textarea").evaluate(at_end), "the log does not follow its end"

        # (c) chat with the trained checkpoint
        _tab(page, "Chat")
        sync_api.expect(_field(page, "chat-adapters")).to_have_value(__import__("re").compile("checkpoint-"))
        _field(page, "chat-input").fill("who are you?")
        page.locator("#chat-send").click()
        sync_api.expect(page.locator("#chat-status")).to_contain_text("Model loaded", timeout=90_000)
        bot = page.locator("#chat-bot .bot-row, #chat-bot [data-testid='bot']").last
        bot.wait_for()
        assert bot.inner_text().strip(), page.locator("#chat-bot").inner_text()
        _shot(page, shots, "4-chat")

        # several jobs, and Stop: a long run, stopped from the Jobs tab
        _tab(page, "Train")
        _field(page, "num_train_epochs").fill("500")
        page.locator("#train-start").click()
        sync_api.expect(page.locator("#train-status")).to_contain_text("Started job")
        _tab(page, "Jobs")
        sync_api.expect(status).to_contain_text("running")
        sync_api.expect(page.locator("#jobs-table")).to_contain_text("finished")
        page.wait_for_timeout(3000)  # let it get going before stopping it
        page.locator("#jobs-stop").click()
        sync_api.expect(status).to_contain_text("stopped", timeout=30_000)
        assert len(list(jobs.iterdir())) == 2

        # (d) the other tabs
        _tab(page, "Export")
        sync_api.expect(page.locator("#merge-command")).to_contain_text("--merge_lora")
        _shot(page, shots, "5-export")
        _tab(page, "Deploy")
        sync_api.expect(page.locator("#deploy-command")).to_contain_text("checkpoint-")
        deploy_port = _free_port()
        _field(page, "deploy-port").fill(str(deploy_port))
        _field(page, "deploy-api_key").fill("s3cret-key")
        sync_api.expect(page.locator("#deploy-command")).to_contain_text(f"--port {deploy_port}")
        assert "s3cret-key" not in page.locator("#deploy-command").inner_text()
        page.locator("#deploy-start").click()
        server_line = page.locator("#deploy-server")
        sync_api.expect(server_line).to_contain_text(f"http://127.0.0.1:{deploy_port}", timeout=90_000)
        models = httpx.get(f"http://127.0.0.1:{deploy_port}/v1/models", timeout=10,
                           headers={"Authorization": "Bearer s3cret-key"})
        assert models.status_code == 200, models.text
        _shot(page, shots, "6-deploy")
        page.locator("#deploy-stop").click()
        sync_api.expect(server_line).to_contain_text("stopped", timeout=30_000)
        browser.close()
    assert not outside, f"the page tried to reach the internet: {outside}"

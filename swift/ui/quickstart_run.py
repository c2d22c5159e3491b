"""What `swift quickstart` does once the answers are in: save the command, run it attached to the terminal, sum
up the run, and the one-keystroke follow-ups (chat, merge, quantize, deploy)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from swift.ui.forms import command_line, config_yaml
from swift.ui.i18n import text
from swift.ui.quickstart_ask import Asker

TEXTS = {
    "command": ("The command (run it yourself any time):", "对应的命令(以后可以直接运行):"),
    "saved": ("Saved: {sh}\n       {yaml}  (swift {cmd} --config {yaml})",
              "已保存:{sh}\n       {yaml}(swift {cmd} --config {yaml})"),
    "running": ("Running: {cmd}", "正在运行:{cmd}"),
    "failed": ("The command failed (exit code {code}); its messages are above.",
               "命令失败(退出码 {code}),原因见上方输出。"),
    "stopped": ("Stopped.", "已停止。"),
    "summary": ("Summary:", "小结:"),
    "checkpoint": ("  checkpoint:  {path}", "  检查点:    {path}"),
    "curve": ("  loss curve:  {path}", "  损失曲线:  {path}"),
    "loss": ("  final loss:  {loss} (step {step}; average over the run {avg})",
             "  最终损失:  {loss}(第 {step} 步;全程平均 {avg})"),
    "menu": ("Next: [c] chat with it  [m] merge LoRA  [q] quantize  [d] deploy  [x] exit",
             "下一步:[c] 对话  [m] 合并 LoRA  [q] 量化  [d] 部署  [x] 退出"),
    "menu_full": ("Next: [c] chat with it  [q] quantize  [d] deploy  [x] exit",
                  "下一步:[c] 对话  [q] 量化  [d] 部署  [x] 退出"),
    "choose": ("Press a key:", "请按键:"),
    "chat_help": ("Chat: type a message and Enter; 'exit' (or Ctrl-D) comes back here.",
                  "对话:输入消息后回车;输入 exit(或 Ctrl-D)返回这里。"),
    "deploy_help": ("Serving until Ctrl-C, which comes back here.", "服务运行中,按 Ctrl-C 停止并返回这里。"),
    "merged": ("Merged model: {path}", "合并后的模型:{path}"),
    "quantized": ("Quantized model: {path}", "量化后的模型:{path}"),
    "quant_method": ("Quantization method", "量化方法"),
    "bye": ("Bye. Your run is in {path}", "再见。训练结果在 {path}"),
}


def save_command(argv: list[str], output_dir: str, task: str) -> tuple[Path, Path]:
    """Write `<output_dir>/quickstart/<time>-<task>.sh` (the command) and `.yaml` (its config); return both."""
    folder = Path(output_dir or "output") / "quickstart"
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{time.strftime('%Y%m%d-%H%M%S')}-{task}"
    n = 1
    while (folder / f"{stem}.sh").exists():
        n += 1
        stem = f"{time.strftime('%Y%m%d-%H%M%S')}-{task}-{n}"
    sh, yaml_path = folder / f"{stem}.sh", folder / f"{stem}.yaml"
    sh.write_text("#!/usr/bin/env bash\n"
                  f"# Made by `swift quickstart` on {time.strftime('%Y-%m-%d %H:%M:%S')}; run it again with\n"
                  f"#   bash {sh}   or   swift {argv[1]} --config {yaml_path}\n"
                  "set -e\n" + command_line(argv, multiline=True) + "\n", encoding="utf-8")
    sh.chmod(0o755)
    yaml_path.write_text(config_yaml(argv), encoding="utf-8")
    return sh, yaml_path


def run_attached(argv: list[str]) -> tuple[int, dict[str, Any]]:
    """Run `swift ...` attached to this terminal (the user sees its own progress and answers its prompts);
    return its exit code and what it reported through `SWIFT_RESULT_FILE`.

    Ctrl-C reaches the command (same process group) and stops it; the wizard waits for it and carries on."""
    with tempfile.TemporaryDirectory(prefix="swift-quickstart-") as tmp:
        result_path = Path(tmp) / "result.json"
        env = {**os.environ, "SWIFT_RESULT_FILE": str(result_path), "PYTHONUNBUFFERED": "1"}
        process = subprocess.Popen([sys.executable, "-m", "swift", *argv[1:]], env=env)
        while True:
            try:
                code = process.wait()
                break
            except KeyboardInterrupt:
                continue  # the command got the same Ctrl-C; let it finish stopping
        try:
            result = json.loads(result_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            result = {}
    return code, result


def shown_path(path: str | os.PathLike | None) -> str:
    """`path` relative to the working folder when it is inside it (shorter to read and to type)."""
    if not path:
        return "-"
    p = Path(path)
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(p)


def last_loss(run_dir: str | None) -> tuple[int, float] | None:
    """(step, loss) of the last training loss the run logged in `logging.jsonl`."""
    if not run_dir or not (Path(run_dir) / "logging.jsonl").is_file():
        return None
    from swift.trainers.plot import read_loss_series

    points = read_loss_series(str(Path(run_dir) / "logging.jsonl"))["loss"]
    return points[-1] if points else None


def print_summary(asker: Asker, result: dict[str, Any], lang: str) -> None:
    """Checkpoint, loss curve and final loss of a finished training run."""
    asker.say(text(TEXTS, "summary", lang), "ok")
    asker.say(text(TEXTS, "checkpoint", lang, path=shown_path(result.get("last_checkpoint"))))
    asker.say(text(TEXTS, "curve", lang, path=shown_path(result.get("loss_curve"))))
    last = last_loss(result.get("run_dir"))
    avg = result.get("train_loss")
    avg_s = f"{float(avg):.4f}" if avg is not None else "-"
    if last is not None:
        asker.say(text(TEXTS, "loss", lang, loss=f"{last[1]:.4f}", step=last[0], avg=avg_s))


def follow_up_argv(action: str, checkpoint: str, tuner_type: str, quant_method: str = "gptq") -> list[str]:
    """The command of a follow-up: chat (infer), merge or quantize (export), deploy. A full fine-tune is a
    whole model (`--model`); a LoRA one is adapters over its base (`--adapters`)."""
    source = ["--model", checkpoint] if tuner_type == "full" else ["--adapters", checkpoint]
    if action == "chat":
        return ["swift", "infer", *source]
    if action == "merge":
        return ["swift", "export", "--adapters", checkpoint, "--merge_lora", "true"]
    if action == "quantize":
        return ["swift", "export", *source, "--quant_method", quant_method]
    if action == "deploy":
        return ["swift", "deploy", *source, "--port", str(free_port())]
    raise ValueError(f"unknown follow-up {action!r}")


def free_port(first: int = 8000, tries: int = 100) -> int:
    """The first port from `first` on that nobody listens on at 127.0.0.1 (`first` when none is found)."""
    import socket

    for port in range(first, first + tries):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    return first


def follow_ups(asker: Asker, result: dict[str, Any], lang: str, gpu: bool) -> int:
    """The one-keystroke menu after a training run; each choice prints its command, runs it attached and
    comes back, until [x]."""
    checkpoint = result.get("last_checkpoint")
    if not checkpoint:
        return 0
    checkpoint = shown_path(checkpoint)
    tuner = str(result.get("tuner_type") or "lora")
    actions = {"c": "chat", "m": "merge", "q": "quantize", "d": "deploy"}
    if tuner == "full":
        actions.pop("m")
    keys = "".join(actions) + "x"
    while True:
        asker.say("")
        asker.say(text(TEXTS, "menu_full" if tuner == "full" else "menu", lang), "title")
        ch = asker.key("then", text(TEXTS, "choose", lang), keys)
        if ch == "x" or ch not in actions:
            asker.say(text(TEXTS, "bye", lang, path=shown_path(result.get("run_dir"))))
            return 0
        action = actions[ch]
        method = "gptq"
        if action == "quantize":
            from swift.ui.forms import QUANT_METHODS

            method = asker.select("quant_method", text(TEXTS, "quant_method", lang),
                                  [(m, m) for m in QUANT_METHODS], "gptq" if gpu else "bnb")
        argv = follow_up_argv(action, checkpoint, tuner, method)
        asker.say(text(TEXTS, "running", lang, cmd=command_line(argv)), "command")
        if action == "chat":
            asker.say(text(TEXTS, "chat_help", lang))
        if action == "deploy":
            asker.say(text(TEXTS, "deploy_help", lang))
        code, out = run_attached(argv)
        if action in ("merge", "quantize") and code == 0 and out.get("output_dir"):
            key = "merged" if action == "merge" else "quantized"
            asker.say(text(TEXTS, key, lang, path=shown_path(out["output_dir"])), "ok")
        elif code not in (0, 130, -2) and action != "deploy":
            asker.say(text(TEXTS, "failed", lang, code=code), "error")

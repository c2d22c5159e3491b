"""`swift quickstart` (also `scripts/yichuidingyin.sh`): a wizard in the terminal.

It shows the hardware, asks the task, model, data and method (defaults from `swift.ui.hardware.recommend`),
checks every answer with the same checks as the CLI (`swift.ui.forms.validate`) and asks again on a wrong one,
prints and saves the equivalent `swift ...` command and YAML config, runs it attached to the terminal, and after
a fine-tune offers chat, merge, quantize and deploy with one keystroke. `--yes` and `--answers FILE` run it
unattended. Nothing here imports torch: the commands run as subprocesses.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from swift.ui.forms import build_argv, command_line, defaults, validate
from swift.ui.i18n import check_lang, text
from swift.ui.quickstart_ask import OTHER, Asker, QuickstartError, ScriptedAsker, TerminalAsker, ask_checked

TASKS = ("sft", "rlhf", "chat", "merge", "quantize", "deploy")
TRAIN_NUMBERS = ("num_train_epochs", "per_device_train_batch_size", "gradient_accumulation_steps",
                 "learning_rate", "lora_rank", "max_length")
# Keys an answers file may hold (flag names, plus task/checkpoint/run/then/use_anyway).
ANSWER_KEYS = ("task", "rlhf_type", "model", "dataset", "model_name", "model_author", "tuner_type", "use_anyway",
               *TRAIN_NUMBERS, "output_dir", "checkpoint", "quant_method", "quant_bits", "port", "run", "then")
FOLLOW_UPS = ("chat", "merge", "quantize", "deploy")
UNATTENDED_FOLLOW_UPS = ("merge", "quantize")
DEMO_NAME, DEMO_AUTHOR = "swift-robot", "swift"

TEXTS = {
    "title": ("SwiftLab quickstart — Enter keeps the default, Ctrl-C leaves.",
              "SwiftLab 快速上手 —— 回车使用默认值,Ctrl-C 退出。"),
    "hardware": ("Hardware: {hw}", "硬件:{hw}"),
    "task": ("What do you want to do?", "想做什么?"),
    "task_sft": ("Fine-tune a model on my data (SFT)", "用我的数据微调模型(SFT)"),
    "task_rlhf": ("Align a model with preference data (DPO, KTO, ...)", "用偏好数据对齐模型(DPO、KTO 等)"),
    "task_chat": ("Chat with a model or checkpoint", "和模型或检查点对话"),
    "task_merge": ("Merge LoRA adapters into their base model", "把 LoRA 合并进基础模型"),
    "task_quantize": ("Quantize a model or checkpoint", "量化模型或检查点"),
    "task_deploy": ("Deploy a model or checkpoint (OpenAI API)", "部署模型或检查点(OpenAI 接口)"),
    "rlhf_type": ("Alignment algorithm", "对齐算法"),
    "model": ("Model", "模型"),
    "model_demo": ("swift-demo (tiny built-in model, works offline, trains in seconds)",
                   "swift-demo(内置小模型,无需联网,几秒训练完)"),
    "model_other": ("a local folder or hub id…", "本地目录或 hub id…"),
    "model_typed": ("Model folder or hub id (org/name)", "模型目录或 hub id(组织/名称)"),
    "size": ("About {params}B parameters. Suggested method: {tuner}, batch size {batch}.",
             "约 {params}B 参数。建议方法:{tuner},批大小 {batch}。"),
    "dataset": ("Dataset", "数据集"),
    "dataset_builtin": ("self-cognition (built-in: teaches the model its name and author)",
                        "self-cognition(内置:让模型记住自己的名字和作者)"),
    "dataset_other": ("a data file (.jsonl/.json/.csv), hub id or name#rows…", "数据文件(.jsonl/.json/.csv)、hub id 或 名称#行数…"),
    "dataset_typed": ("Data file, hub id or dataset name", "数据文件、hub id 或数据集名称"),
    "model_name": ("The model's name (the data says 'I am …')", "模型的名字(数据里的“我是……”)"),
    "model_author": ("Its author", "作者"),
    "tuner_type": ("Method", "训练方法"),
    "lora": ("LoRA (small adapters; the base stays frozen)", "LoRA(训练小的适配器,基础模型不变)"),
    "qlora": ("QLoRA (LoRA over a 4-bit base; least GPU memory)", "QLoRA(4 bit 基础模型上的 LoRA,最省显存)"),
    "full": ("Full (every weight; most memory)", "全参数(训练所有权重,最费显存)"),
    "recommended": (" — recommended", " —— 推荐"),
    "use_anyway": ("Use it anyway?", "仍然使用吗?"),
    "num_train_epochs": ("Epochs", "训练轮数"),
    "per_device_train_batch_size": ("Batch size per device", "每卡批大小"),
    "gradient_accumulation_steps": ("Gradient accumulation steps", "梯度累积步数"),
    "learning_rate": ("Learning rate", "学习率"),
    "lora_rank": ("LoRA rank", "LoRA 秩"),
    "max_length": ("Max tokens per sample", "每条样本最多 token 数"),
    "output_dir": ("Output folder", "输出目录"),
    "checkpoint": ("Which model or checkpoint?", "用哪个模型或检查点?"),
    "latest": ("{path} (your latest checkpoint)", "{path}(最近的检查点)"),
    "checkpoint_typed": ("Checkpoint folder, model folder or hub id", "检查点目录、模型目录或 hub id"),
    "adapters_typed": ("LoRA checkpoint folder", "LoRA 检查点目录"),
    "quant_method": ("Quantization method", "量化方法"),
    "quant_bits": ("Bits", "位数"),
    "port": ("Port", "端口"),
    "run": ("Run it now?", "现在运行吗?"),
    "not_run": ("Not run. Run it later with the saved script.", "未运行。之后可以运行已保存的脚本。"),
    "form_error": ("The command would not run: {error}", "命令无法运行:{error}"),
    "retry": (" — try again", " —— 请重新输入"),
    "tty": ("swift quickstart asks questions in a terminal; here there is none. Use --yes (all defaults) or "
            "--answers FILE.yaml.", "swift quickstart 需要在终端里回答问题;当前没有终端。请用 --yes(全部默认)或 "
            "--answers FILE.yaml。"),
}
HELP = """Answers file (YAML, every key optional; a missing answer takes the default):
  task: sft            # sft, rlhf, chat, merge, quantize, deploy
  model: swift-demo    # a registry name, a local folder or a hub id
  dataset: self-cognition#16
  model_name: swift-robot
  model_author: swift
  tuner_type: lora     # lora, qlora, full
  num_train_epochs: 1
  learning_rate: 5e-3
  output_dir: output
  run: true            # false: only print and save the command
  then: [merge]        # after training: merge and/or quantize, in order
Other keys: {keys}.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="swift quickstart", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="A guided start in the terminal: pick the task, model, data and method; get the equivalent "
                    "`swift ...` command (saved as .sh and .yaml), run it, then chat, merge, quantize or deploy.",
        epilog=HELP.format(keys=", ".join(k for k in ANSWER_KEYS if k not in HELP)))
    parser.add_argument("--lang", default=None, help="language of the questions: en or zh (default: the locale's)")
    parser.add_argument("-y", "--yes", action="store_true", help="no questions: take every default and run")
    parser.add_argument("--answers", metavar="FILE.yaml", help="take the answers from this YAML file, run unattended")
    parser.add_argument("--no-run", action="store_true", help="print and save the command, do not run it")
    return parser


def load_answers(path: str) -> dict[str, Any]:
    """Read and check an answers file: a YAML mapping of known keys; `then` only lists unattended follow-ups."""
    import yaml

    p = Path(path).expanduser()
    if not p.is_file():
        raise QuickstartError(f"--answers: file not found: {path}")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise QuickstartError(f"--answers: {path} is not valid YAML: {e}") from None
    data = data or {}
    if not isinstance(data, dict):
        raise QuickstartError(f"--answers: {path} must hold a mapping (key: value), found {type(data).__name__}")
    unknown = sorted(set(data) - set(ANSWER_KEYS))
    if unknown:
        raise QuickstartError(f"--answers: {path}: unknown key(s) {', '.join(unknown)}; known: "
                              f"{', '.join(ANSWER_KEYS)}")
    if "adapters" in data:
        data.setdefault("checkpoint", data.pop("adapters"))
    then = data.get("then") or []
    then = [then] if isinstance(then, str) else list(then)
    bad = [t for t in then if t not in UNATTENDED_FOLLOW_UPS]
    if bad:
        raise QuickstartError(f"--answers: {path}: then: {', '.join(map(str, bad))} needs a person at the keyboard; "
                              f"unattended follow-ups are {', '.join(UNATTENDED_FOLLOW_UPS)}")
    data["then"] = then
    if data.get("task", "sft") not in TASKS:
        raise QuickstartError(f"--answers: {path}: task: expected one of {', '.join(TASKS)}, got {data['task']!r}")
    return data


class Wizard:
    """The questions, in order, for one task; `values` are the form values (flag -> value) being filled."""

    def __init__(self, asker: Asker, lang: str = "en"):
        self.asker, self.lang = asker, lang
        self.values: dict[str, Any] = {}
        self.task = "sft"

    def t(self, key: str, **fmt: Any) -> str:
        return text(TEXTS, key, self.lang, **fmt)

    def field_check(self, name: str) -> Any:
        """A check of one answer with the form's own rules (other fields as answered so far)."""
        def check(value: str) -> str | None:
            errors = validate(self.task, {**self.values, name: value}, self.lang)
            return errors.get(name)
        return check

    def ask_field(self, name: str, default: Any) -> str:
        value = ask_checked(self.asker, name, self.t(name), "" if default is None else f"{default:g}"
                            if isinstance(default, float) else str(default), self.field_check(name),
                            retry_note=self.t("retry"))
        self.values[name] = value
        return value

    def ask_task(self) -> str:
        self.task = self.asker.select("task", self.t("task"), [(k, self.t(f"task_{k}")) for k in TASKS], "sft")
        self.values = defaults(self.task)
        return self.task

    # -- training -----------------------------------------------------------------------------------------
    def ask_training(self, hw: Any) -> None:
        from swift.ui.forms import RLHF_TYPES
        from swift.ui.hardware import estimate_params_b, recommend, warning_text

        if self.task == "rlhf":
            self.values["rlhf_type"] = self.asker.select("rlhf_type", self.t("rlhf_type"),
                                                         [(r, r) for r in RLHF_TYPES], "dpo")
        self.ask_model()
        params = estimate_params_b(self.values["model"])
        rec = recommend(hw, params)
        if params is not None:
            self.asker.say(self.t("size", params=f"{params:.3g}", tuner=rec.tuner,
                                  batch=rec.per_device_train_batch_size))
        for w in rec.warnings:
            self.asker.say("! " + warning_text(w, self.lang), "warn")
        self.ask_dataset()
        while True:
            tuners = [(k, self.t(k) + (self.t("recommended") if k == rec.tuner else "")) for k in ("lora", "qlora",
                                                                                                 "full")]
            tuner = self.asker.select("tuner_type", self.t("tuner_type"), tuners, rec.tuner)
            chosen = recommend(hw, params, tuner=tuner)
            extra = [w for w in chosen.warnings if w not in rec.warnings]
            if tuner == rec.tuner or not extra:
                break
            for w in extra:
                self.asker.say("! " + warning_text(w, self.lang), "warn")
            if self.asker.confirm("use_anyway", self.t("use_anyway"), False):
                break
            if self.asker.unattended:
                raise QuickstartError(f"tuner_type = {tuner!r}: {warning_text(extra[0], 'en')}")
        self.values["tuner_type"] = tuner
        self.values["torch_dtype"] = chosen.torch_dtype
        self.ask_field("num_train_epochs", chosen.num_train_epochs)
        self.ask_field("per_device_train_batch_size", chosen.per_device_train_batch_size)
        self.ask_field("gradient_accumulation_steps", chosen.gradient_accumulation_steps)
        self.ask_field("learning_rate", chosen.learning_rate)
        if tuner != "full":
            self.ask_field("lora_rank", self.values["lora_rank"])
        self.ask_field("max_length", self.values["max_length"])
        self.ask_field("output_dir", self.values["output_dir"] or "output")

    def ask_model(self) -> None:
        from swift.models.registry import list_models

        models = [s.model_type for s in list_models("chat") if not s.is_multimodal and "gated" not in s.tags
                  and "demo" not in s.tags][:5]
        choices = [("swift-demo", self.t("model_demo")), *((m, m) for m in models), (OTHER, self.t("model_other"))]
        value = self.asker.select("model", self.t("model"), choices, "swift-demo")
        if value == OTHER:
            value = ask_checked(self.asker, "model", self.t("model_typed"), "", self.field_check("model"),
                                retry_note=self.t("retry"))
        self.values["model"] = value

    def ask_dataset(self) -> None:
        from swift.ui.forms import _placeholder_dataset

        choices = [("self-cognition", self.t("dataset_builtin")), (OTHER, self.t("dataset_other"))]
        if self.task == "rlhf":
            choices = choices[1:]
        value = self.asker.select("dataset", self.t("dataset"), choices, choices[0][0])
        if value == OTHER:
            value = ask_checked(self.asker, "dataset", self.t("dataset_typed"), "", self.field_check("dataset"),
                                retry_note=self.t("retry"))
        self.values["dataset"] = value
        if _placeholder_dataset(value):
            self.ask_field("model_name", DEMO_NAME)
            self.ask_field("model_author", DEMO_AUTHOR)

    # -- chat, merge, quantize, deploy ---------------------------------------------------------------------
    def ask_source(self) -> None:
        """The model or checkpoint a chat, merge, quantize or deploy starts from (a LoRA checkpoint is passed
        as --adapters, anything else as --model)."""
        latest = latest_checkpoint(Path("output"))
        merge = self.task == "merge"
        choices: list[tuple[str, str]] = []
        if latest is not None:
            choices.append((str(latest), self.t("latest", path=latest)))
        if not merge:
            choices.append(("swift-demo", self.t("model_demo")))
        choices.append((OTHER, self.t("adapters_typed" if merge else "checkpoint_typed")))
        value = self.asker.select("checkpoint", self.t("checkpoint"), choices, choices[0][0])
        if value == OTHER:
            def check(v: str) -> str | None:
                key = "adapters" if merge or (Path(v).expanduser() / "adapter_config.json").is_file() else "model"
                return validate(self.task, {**self.values, key: v}, self.lang).get(key)
            value = ask_checked(self.asker, "checkpoint", self.t("adapters_typed" if merge else "checkpoint_typed"),
                                "", check, retry_note=self.t("retry"))
        if merge or (Path(value).expanduser() / "adapter_config.json").is_file():
            self.values["adapters"] = value
        else:
            self.values["model"] = value

    def ask_other(self, hw: Any) -> None:
        from swift.ui.forms import QUANT_METHODS

        self.ask_source()
        if self.task == "quantize":
            self.values["quant_method"] = self.asker.select("quant_method", self.t("quant_method"),
                                                            [(m, m) for m in QUANT_METHODS],
                                                            "gptq" if hw.device == "cuda" else "bnb")
            self.values["quant_bits"] = self.asker.select("quant_bits", self.t("quant_bits"),
                                                          [("4", "4"), ("8", "8")], "4")
        if self.task == "deploy":
            self.ask_field("port", self.values.get("port", 8000))


def latest_checkpoint(root: Path) -> Path | None:
    """The newest `checkpoint-<step>` folder under `root/<run>/` (by modification time), or None. A merged copy
    (`checkpoint-<step>-merged`, written by the merge follow-up) is a full model, not a checkpoint: skipped."""
    if not root.is_dir():
        return None
    found = [p for p in root.glob("*/checkpoint-*") if p.is_dir() and p.name[len("checkpoint-"):].isdigit()]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def main(argv: list[str] | None = None) -> int:
    """`swift quickstart [--lang zh|en] [--yes | --answers FILE] [--no-run]`; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        lang = check_lang(args.lang)
    except ValueError as e:
        parser.error(str(e))
    try:
        if args.answers or args.yes:
            asker: Asker = ScriptedAsker(load_answers(args.answers) if args.answers else {})
        else:
            if not (sys.stdin.isatty() and sys.stdout.isatty()):
                print(text(TEXTS, "tty", lang), file=sys.stderr)
                return 2
            asker = TerminalAsker()
        return run_wizard(asker, lang, run=not args.no_run)
    except QuickstartError as e:
        print(f"swift quickstart: {e}", file=sys.stderr)
        return 2


def run_wizard(asker: Asker, lang: str, *, run: bool = True) -> int:
    """Ask, show and save the command, run it, and offer the follow-ups; returns the exit code."""
    from swift.ui.hardware import detect_hardware
    from swift.ui.quickstart_run import TEXTS as RUN_TEXTS
    from swift.ui.quickstart_run import follow_ups, print_summary, run_attached, save_command

    w = Wizard(asker, lang)
    hw = detect_hardware()
    asker.say(w.t("title"), "title")
    asker.say(w.t("hardware", hw=hw.describe(lang)))
    task = w.ask_task()
    if task in ("sft", "rlhf"):
        w.ask_training(hw)
    else:
        w.ask_other(hw)
    errors = validate(task, w.values, lang)
    if errors:
        raise QuickstartError(w.t("form_error", error="; ".join(f"{k}: {v}" if k != "_form" else v
                                                                  for k, v in errors.items())))
    argv = build_argv(task, w.values)
    asker.say("")
    asker.say(text(RUN_TEXTS, "command", lang), "title")
    asker.say(command_line(argv, multiline=True), "command")
    sh, yaml_path = save_command(argv, str(w.values.get("output_dir") or "output"), task)
    asker.say(text(RUN_TEXTS, "saved", lang, sh=sh, yaml=yaml_path, cmd=argv[1]))
    if not run or not asker.confirm("run", w.t("run"), True):
        asker.say(w.t("not_run"))
        return 0
    asker.say(text(RUN_TEXTS, "running", lang, cmd=command_line(argv)), "command")
    code, result = run_attached(argv)
    if code != 0:
        asker.say(text(RUN_TEXTS, "failed" if code not in (130, -2) else "stopped", lang, code=code), "error")
        return code if code > 0 else 130
    if task in ("sft", "rlhf"):
        print_summary(asker, result, lang)
        return follow_ups(asker, result, lang, gpu=hw.device == "cuda")
    if result.get("output_dir"):
        key = "merged" if task == "merge" else "quantized"
        asker.say(text(RUN_TEXTS, key, lang, path=result["output_dir"]), "ok")
    return 0

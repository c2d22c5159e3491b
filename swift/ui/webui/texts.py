"""The web UI's words, in English and Chinese (`--lang en|zh`): labels of the form fields and of the page."""
from __future__ import annotations

from swift.ui.i18n import text

# Field labels, keyed by the CLI flag the field fills in.
FIELDS: dict[str, tuple[str, str]] = {
    "model": ("Model (folder, built-in name or hub id)", "模型(目录、内置名称或 hub id)"),
    "dataset": ("Dataset (file, built-in name or hub id; name#N samples N rows)",
                "数据集(文件、内置名称或 hub id;name#N 取 N 条)"),
    "tuner_type": ("Tuner", "微调方式"),
    "beta": ("Beta (alignment strength)", "Beta(对齐强度)"),
    "num_train_epochs": ("Epochs", "训练轮数"),
    "per_device_train_batch_size": ("Batch size per device", "每卡批大小"),
    "gradient_accumulation_steps": ("Gradient accumulation steps", "梯度累积步数"),
    "learning_rate": ("Learning rate", "学习率"),
    "lora_rank": ("LoRA rank", "LoRA 秩"),
    "lora_alpha": ("LoRA alpha", "LoRA alpha"),
    "max_length": ("Max length (tokens)", "最大长度(token)"),
    "max_steps": ("Max steps (-1: by epochs)", "最大步数(-1:按轮数)"),
    "torch_dtype": ("dtype", "数据类型"),
    "output_dir": ("Output folder", "输出目录"),
    "model_name": ("Model name (self-cognition)", "模型名称(自我认知)"),
    "model_author": ("Model author (self-cognition)", "模型作者(自我认知)"),
    "trust_remote_code": ("Trust remote code (runs code from the model's repository)",
                          "信任远程代码(会运行模型仓库中的代码)"),
    "adapters": ("LoRA checkpoint(s)", "LoRA 检查点"),
    "max_new_tokens": ("Max new tokens", "最多生成 token 数"),
    "temperature": ("Temperature (0: greedy)", "温度(0:贪心)"),
    "quant_method": ("Quantization method", "量化方法"),
    "quant_bits": ("Bits", "位数"),
    "host": ("Host", "监听地址"),
    "port": ("Port", "端口"),
    "api_key": ("API key (never shown in the command)", "API 密钥(不会显示在命令中)"),
    "infer_backend": ("Inference backend", "推理后端"),
    "extra_args": ("Extra flags (power users, e.g. --logging_steps 1)", "额外参数(高级,例如 --logging_steps 1)"),
}

UI: dict[str, tuple[str, str]] = {
    "title": ("SwiftLab web UI", "SwiftLab 网页界面"),
    "intro": ("Fill in a form, check the command it makes, start it as a job. Hardware: {hw}",
              "填写表单,检查生成的命令,作为任务启动。硬件:{hw}"),
    "tab_train": ("Train", "训练"),
    "tab_jobs": ("Jobs", "任务"),
    "tab_chat": ("Chat", "对话"),
    "tab_export": ("Export", "导出"),
    "tab_deploy": ("Deploy", "部署"),
    "task": ("Task", "任务类型"),
    "task_info": ("sft: supervised fine-tuning; the others are alignment algorithms (swift rlhf)",
                  "sft:监督微调;其余为对齐算法(swift rlhf)"),
    "command": ("Command", "命令"),
    "start": ("Start", "开始"),
    "stop": ("Stop", "停止"),
    "refresh": ("Refresh", "刷新"),
    "started": ("Started job `{id}` — follow it in the Jobs tab.", "已启动任务 `{id}`,可在“任务”页查看。"),
    "not_started": ("Not started: fix the fields marked in red.", "未启动:请修正红色标出的字段。"),
    "extra_bad": ("cannot read the extra flags: {error}", "无法解析额外参数:{error}"),
    "jobs_table": ("Jobs", "任务列表"),
    "col_id": ("id", "编号"),
    "col_status": ("status", "状态"),
    "col_command": ("command", "命令"),
    "job": ("Job", "任务"),
    "no_jobs": ("No jobs yet: start one from the Train, Export or Deploy tab.",
                "还没有任务:在“训练”、“导出”或“部署”页启动一个。"),
    "log": ("Log", "日志"),
    "loss": ("Training loss", "训练损失"),
    "loss_summary": ("{n} loss points; last: step {step}, loss {loss:.4f}", "{n} 个损失点;最新:第 {step} 步,损失 {loss:.4f}"),
    "loss_none": ("No loss points yet.", "还没有损失点。"),
    "stopped": ("Stopped job `{id}`.", "已停止任务 `{id}`。"),
    "status_line": ("**{id}**: {status}", "**{id}**:{status}"),
    "result_ckpt": ("Last checkpoint: `{path}`", "最新检查点:`{path}`"),
    "result_out": ("Output: `{path}`", "输出:`{path}`"),
    "result_url": ("Serving at {url}", "服务地址:{url}"),
    "chatbot": ("Chat", "对话"),
    "message": ("Message", "消息"),
    "message_ph": ("Type a message and press Enter", "输入消息后按回车"),
    "send": ("Send", "发送"),
    "clear": ("Clear", "清空"),
    "use_latest": ("Use the latest checkpoint", "使用最新检查点"),
    "loading": ("Loading the model…", "正在加载模型……"),
    "loaded": ("Model loaded: {what}", "模型已加载:{what}"),
    "answering": ("Answering with {what}…", "正在用 {what} 回答……"),
    "chat_error": ("Error: {error}", "错误:{error}"),
    "merge": ("Merge LoRA", "合并 LoRA"),
    "quantize": ("Quantize", "量化"),
    "deploy_status": ("Server", "服务"),
    "deploy_none": ("No server started.", "尚未启动服务。"),
    "deploy_wait": ("Job `{id}` is starting the server…", "任务 `{id}` 正在启动服务……"),
    "deploy_serving": ("Job `{id}` serves the OpenAI API at {url}", "任务 `{id}` 已在 {url} 提供 OpenAI 接口"),
    "deploy_ended": ("Job `{id}` is {status}.", "任务 `{id}` 状态:{status}。"),
    "running": ("running", "运行中"),
    "finished": ("finished", "已完成"),
    "failed": ("failed", "失败"),
    "stopped_status": ("stopped", "已停止"),
}


def t(key: str, lang: str, **fmt: object) -> str:
    """A page text in `lang`."""
    return text(UI, key, lang, **fmt)


def label(name: str, lang: str) -> str:
    """The label of the field for flag `name`."""
    return text(FIELDS, name, lang) if name in FIELDS else name


def status_text(status: str, lang: str) -> str:
    """A job status (running, finished, failed, stopped) in words."""
    return t("stopped_status" if status == "stopped" else status, lang) if status in (
        "running", "finished", "failed", "stopped") else status

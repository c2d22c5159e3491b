"""The forms of the wizard and the web UI: which flags each task asks for, their checks, and the `swift ...`
command (and YAML config) they make.

Values are keyed by the CLI's own flag names, so a form is nothing but a command line being filled in:
`build_argv("sft", values)` is what runs, `command_line(...)` what is shown, `config_yaml(...)` what is saved for
`swift sft --config <file>`. `validate` checks each field (files that must exist, numbers in range) and then parses
the command with the CLI's own parser, so the form rejects exactly what the command would reject, before any
job starts.
"""
from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from swift.ui.i18n import text

# What each UI task runs.
TASK_COMMANDS = {"sft": "sft", "rlhf": "rlhf", "chat": "infer", "merge": "export", "quantize": "export",
                 "deploy": "deploy"}
TUNERS = ("lora", "qlora", "full")
RLHF_TYPES = ("dpo", "kto", "cpo", "simpo", "orpo")  # the ones that run on a preference/KTO file alone
QUANT_METHODS = ("gptq", "awq", "fp8", "bnb")
DATA_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet", ".txt")
SECRET_FLAGS = ("api_key", "hub_token")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(:[\w.-]+)?$")


@dataclass(frozen=True)
class Field:
    """One form field: `name` is the CLI flag (without --); kind is str, int, float, bool, choice or path."""

    name: str
    kind: str
    default: Any = None
    choices: tuple[str, ...] = ()
    required: bool = False


_TRAIN = (
    Field("model", "path", "swift-demo", required=True),
    Field("dataset", "path", "self-cognition", required=True),
    Field("num_train_epochs", "float", 3.0),
    Field("per_device_train_batch_size", "int", 1),
    Field("gradient_accumulation_steps", "int", 16),
    Field("learning_rate", "float", 1e-4),
    Field("lora_rank", "int", 8),
    Field("lora_alpha", "int", 32),
    Field("max_length", "int", 2048),
    Field("max_steps", "int", -1),
    Field("torch_dtype", "choice", None, ("bfloat16", "float16", "float32")),
    Field("output_dir", "str", "output"),
    Field("model_name", "str", None),
    Field("model_author", "str", None),
    Field("trust_remote_code", "bool", False),
)
FORMS: dict[str, tuple[Field, ...]] = {
    "sft": (_TRAIN[0], _TRAIN[1], Field("tuner_type", "choice", "lora", TUNERS), *_TRAIN[2:]),
    "rlhf": (Field("rlhf_type", "choice", "dpo", RLHF_TYPES), _TRAIN[0], Field("dataset", "path", None, required=True),
             Field("tuner_type", "choice", "lora", TUNERS), Field("beta", "float", 0.1), *_TRAIN[2:]),
    "chat": (Field("model", "path", None), Field("adapters", "path", None), Field("max_new_tokens", "int", 256),
             Field("temperature", "float", 0.0), Field("trust_remote_code", "bool", False)),
    "merge": (Field("adapters", "path", None, required=True), Field("output_dir", "str", None)),
    "quantize": (Field("model", "path", None), Field("adapters", "path", None),
                 Field("quant_method", "choice", "gptq", QUANT_METHODS), Field("quant_bits", "choice", "4", ("4", "8")),
                 Field("output_dir", "str", None), Field("trust_remote_code", "bool", False)),
    "deploy": (Field("model", "path", None), Field("adapters", "path", None), Field("host", "str", "127.0.0.1"),
               Field("port", "int", 8000), Field("api_key", "str", None),
               Field("infer_backend", "choice", "pt", ("pt", "vllm", "lmdeploy")),
               Field("trust_remote_code", "bool", False)),
}

MESSAGES = {
    "required": ("required", "必填"),
    "not_int": ("expected a whole number, got {value!r}", "需要整数,得到 {value!r}"),
    "not_float": ("expected a number, got {value!r}", "需要数字,得到 {value!r}"),
    "positive": ("must be greater than 0, got {value}", "必须大于 0,得到 {value}"),
    "at_least": ("must be at least {low}, got {value}", "不能小于 {low},得到 {value}"),
    "choice": ("expected one of {choices}, got {value!r}", "只能是 {choices} 之一,得到 {value!r}"),
    "file_missing": ("file not found: {path}", "文件不存在:{path}"),
    "folder_missing": ("folder not found: {path}", "目录不存在:{path}"),
    "not_model": ("{path} is not a model folder (no config.json)", "{path} 不是模型目录(没有 config.json)"),
    "not_adapter": ("{path} is not a LoRA checkpoint (no adapter_config.json)",
                    "{path} 不是 LoRA 检查点(没有 adapter_config.json)"),
    "unknown_model": ("{value!r} is not a model folder, a known model name or a hub id (org/name){hint}",
                      "{value!r} 既不是模型目录,也不是已知模型名或 hub id(组织/名称){hint}"),
    "unknown_dataset": ("{value!r} is not a data file, a built-in dataset or a hub id (org/name)",
                        "{value!r} 既不是数据文件,也不是内置数据集或 hub id(组织/名称)"),
    "model_or_adapters": ("give a model or a LoRA checkpoint", "请填写模型或 LoRA 检查点"),
    "needs_name": ("the dataset {dataset!r} asks who the model is: give the model's name (and its author)",
                   "数据集 {dataset!r} 需要模型的名字:请填写模型名称(和作者)"),
    "needs_author": ("the dataset {dataset!r} asks who made the model: give the author",
                     "数据集 {dataset!r} 需要模型的作者:请填写作者"),
    "share_auth": ("--share needs --auth user:password", "--share 需要同时给出 --auth 用户名:密码"),
}


def fields_for(task: str) -> tuple[Field, ...]:
    """The fields of a task's form: sft, rlhf, chat, merge, quantize or deploy."""
    if task not in FORMS:
        raise KeyError(f"unknown task {task!r}; expected one of {', '.join(FORMS)}")
    return FORMS[task]


def defaults(task: str) -> dict[str, Any]:
    """The form's initial values."""
    return {f.name: f.default for f in fields_for(task)}


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _coerce(f: Field, value: Any) -> Any:
    """A form value to the field's type (web forms and prompts give strings); raises ValueError."""
    if f.kind == "int":
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return int(str(value).strip())
    if f.kind == "float":
        return float(str(value).strip())
    if f.kind == "bool":
        return value if isinstance(value, bool) else str(value).strip().lower() in ("true", "1", "yes", "y", "on")
    return str(value).strip()


def build_argv(task: str, values: dict[str, Any]) -> list[str]:
    """`["swift", <command>, "--flag", "value", ...]` for a task's form values.

    Empty fields are left out (the CLI's default applies); `tuner_type qlora` becomes `--tuner_type lora
    --quant_method bnb --quant_bits 4` (QLoRA is LoRA over a 4-bit base); merge adds `--merge_lora true`; false
    booleans are left out. Values must have passed `validate`."""
    command = TASK_COMMANDS[task]
    argv = ["swift", command]
    for f in fields_for(task):
        value = values.get(f.name, f.default)
        if _empty(value):
            continue
        value = _coerce(f, value)
        if f.kind == "bool":
            if value:
                argv += [f"--{f.name}", "true"]
            continue
        if f.name == "tuner_type" and value == "qlora":
            argv += ["--tuner_type", "lora", "--quant_method", "bnb", "--quant_bits", "4"]
            continue
        if f.name == "tuner_type" and value == "full":
            argv += ["--tuner_type", "full"]
            continue
        if f.name in ("lora_rank", "lora_alpha") and values.get("tuner_type") == "full":
            continue
        if f.name == "max_steps" and value == -1:
            continue
        if f.name == "adapters":
            argv += ["--adapters", *str(value).split()]
            continue
        if isinstance(value, float) and value.is_integer() and f.name != "learning_rate":
            value = int(value)  # 3 epochs, not 3.0
        argv += [f"--{f.name}", str(value)]
    if task == "merge":
        argv += ["--merge_lora", "true"]
    return argv


def command_line(argv: list[str], *, multiline: bool = False, hide_secrets: bool = True) -> str:
    """The shell command for `argv`; secret values (--api_key) shown as `***` unless `hide_secrets` is False."""
    shown = list(argv)
    if hide_secrets:
        for i, tok in enumerate(shown[:-1]):
            if tok.lstrip("-") in SECRET_FLAGS:
                shown[i + 1] = "***"
    if not multiline:
        return shlex.join(shown)
    head, rest, pairs = shlex.join(shown[:2]), shown[2:], []
    i = 0
    while i < len(rest):
        j = i + 1
        while j < len(rest) and not rest[j].startswith("--"):
            j += 1
        pairs.append(shlex.join(rest[i:j]))
        i = j
    return " \\\n    ".join([head, *pairs])


def argv_to_config(argv: list[str]) -> dict[str, Any]:
    """The flags of `argv` as a mapping for `swift <command> --config <file>` (values as strings or lists)."""
    config: dict[str, Any] = {}
    rest, i = argv[2:], 0
    while i < len(rest):
        key = rest[i].lstrip("-")
        j = i + 1
        while j < len(rest) and not rest[j].startswith("--"):
            j += 1
        vals = rest[i + 1:j]
        config[key] = vals if key == "adapters" else _scalar(vals[0] if vals else "true")
        i = j
    return config


def _scalar(value: str) -> Any:
    if value in ("true", "false"):
        return value == "true"
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def config_yaml(argv: list[str], *, hide_secrets: bool = True) -> str:
    """A YAML file that `swift <command> --config <file>` runs as `argv` would."""
    import yaml

    config = argv_to_config(argv)
    if hide_secrets:
        for key in SECRET_FLAGS:
            config.pop(key, None)
    header = f"# {command_line(argv)}\n# rerun: swift {argv[1]} --config <this file>\n"
    return header + yaml.safe_dump(config, sort_keys=False, allow_unicode=True)


def validate(task: str, values: dict[str, Any], lang: str = "en") -> dict[str, str]:
    """Errors by field name (a message in `lang`); empty when the form can run.

    Each field is checked on its own (numbers, files and folders that must exist), then the whole command is
    parsed by the CLI's parser, whose complaints are put on the flag they name ("_form" when none)."""
    errors: dict[str, str] = {}

    def err(name: str, key: str, **fmt: Any) -> None:
        errors.setdefault(name, text(MESSAGES, key, lang, **fmt))

    fields = fields_for(task)
    for f in fields:
        value = values.get(f.name, f.default)
        if _empty(value):
            if f.required:
                err(f.name, "required")
            continue
        try:
            value = _coerce(f, value)
        except ValueError:
            err(f.name, "not_int" if f.kind == "int" else "not_float", value=value)
            continue
        if f.kind == "choice" and f.choices and value not in f.choices:
            err(f.name, "choice", choices=", ".join(f.choices), value=value)
        elif f.name in ("num_train_epochs", "learning_rate", "per_device_train_batch_size",
                        "gradient_accumulation_steps", "lora_rank", "lora_alpha", "max_length", "beta",
                        "max_new_tokens") and value <= 0:
            err(f.name, "positive", value=f"{value:g}")
        elif f.name == "temperature" and value < 0:
            err(f.name, "at_least", low=0, value=f"{value:g}")
        elif f.name == "model":
            _check_model(value, lang, errors)
        elif f.name == "adapters":
            for path in str(value).split():
                p = Path(path.split("=", 1)[-1]).expanduser()
                if not p.exists():
                    err(f.name, "folder_missing", path=path)
                elif not (p / "adapter_config.json").is_file():
                    err(f.name, "not_adapter", path=path)
        elif f.name == "dataset":
            _check_dataset(value, lang, errors)
    placeholders = _placeholder_dataset(values.get("dataset")) if task in ("sft", "rlhf") else None
    if placeholders:
        for name, key in (("model_name", "needs_name"), ("model_author", "needs_author")):
            if _empty(values.get(name)):
                err(name, key, dataset=placeholders)
    if task in ("chat", "quantize", "deploy") and all(_empty(values.get(k)) for k in ("model", "adapters")):
        err("model", "model_or_adapters")
    if errors:
        return errors
    from swift.cli.parser import parse_args
    from swift.utils.errors import ArgumentError, SwiftError

    argv = build_argv(task, values)
    try:
        parse_args(argv[1], argv[2:])
    except ArgumentError as e:
        name = e.flag.lstrip("-")
        errors[name if name in {f.name for f in fields} else "_form"] = e.reason
    except SwiftError as e:
        errors["_form"] = str(e)
    except SystemExit:  # argparse already printed why
        errors["_form"] = "invalid flags: " + command_line(argv)
    return errors


def _check_model(value: str, lang: str, errors: dict[str, str]) -> None:
    p = Path(value).expanduser()
    if p.exists():
        if not (p / "config.json").is_file() and not (p / "adapter_config.json").is_file():
            errors["model"] = text(MESSAGES, "not_model", lang, path=value)
        return
    from swift.models.registry import get_model_spec, suggest_models

    if get_model_spec(value) is not None or value in ("swift-demo", "demo"):
        return
    if _HUB_ID.match(value) and not value.startswith((".", "~")):
        return
    if value.startswith(("/", ".", "~")) or "\\" in value:
        errors["model"] = text(MESSAGES, "folder_missing", lang, path=value)
        return
    close = suggest_models(value)
    hint = (" — did you mean " if lang == "en" else " — 是不是 ") + ", ".join(close) + "?" if close else ""
    errors["model"] = text(MESSAGES, "unknown_model", lang, value=value, hint=hint)


def _placeholder_dataset(value: Any) -> str | None:
    """The first dataset named in `value` whose rows hold {{NAME}}/{{AUTHOR}} (self-cognition), else None."""
    if _empty(value):
        return None
    from swift.data.catalog import find_dataset

    for item in str(value).replace(",", " ").split():
        spec = find_dataset(item.split("#", 1)[0].split(":", 1)[0])
        if spec is not None and spec.has_placeholders:
            return spec.name
    return None


def _check_dataset(value: str, lang: str, errors: dict[str, str]) -> None:
    from swift.data.catalog import find_dataset

    for item in str(value).replace(",", " ").split():
        name = item.split("#", 1)[0]
        p = Path(name).expanduser()
        if p.exists() or find_dataset(name.split(":", 1)[0]) is not None:
            continue
        if name.lower().endswith(DATA_SUFFIXES) or name.startswith(("/", ".", "~")):
            errors["dataset"] = text(MESSAGES, "file_missing", lang, path=name)
            return
        if not _HUB_ID.match(name):
            errors["dataset"] = text(MESSAGES, "unknown_dataset", lang, value=name)
            return

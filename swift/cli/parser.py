"""Turn the argument dataclasses into command-line flags, and flags (or a config file) back into dataclasses.

Everything here is plain Python: `swift <cmd> --help` must answer in well under a second, so neither torch nor
transformers is imported. The transformers.TrainingArguments flags come from the generated `hf_flags.py`.
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import difflib
import functools
import inspect
import json
import sys
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from swift.pipelines import arguments as A
from swift.pipelines.arguments import ParsedArgs
from swift.utils.errors import ArgumentError, SwiftError

_TRUE = {"true", "1", "yes", "y", "on"}
_FALSE = {"false", "0", "no", "n", "off"}

# Per-command defaults that differ from the dataclass defaults (ms-swift's `swift pt` trains fully, on raw text).
COMMAND_DEFAULTS: dict[str, dict[str, Any]] = {
    "pt": {"tuner_type": "full", "template": "raw"},
}


def str2bool(value: str | bool) -> bool:
    if isinstance(value, bool):
        return value
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def _opt_int(value: str) -> int | None:
    return None if value.lower() in ("none", "null") else int(value)


def _opt_float(value: str) -> float | None:
    return None if value.lower() in ("none", "null") else float(value)


def _opt_str(value: str) -> str | None:
    return None if value.lower() in ("none", "null") else value


@dataclass
class FlagSpec:
    name: str
    kind: str  # bool, int, float, str, list, json
    default: Any
    help: str
    choices: tuple[str, ...] | None = None
    optional: bool = False
    group: str = ""


@functools.cache  # parsing the source is slow; the wizard validates after every answer
def _field_docs(cls: type) -> dict[str, str]:
    """The docstring under each field of a dataclass (attribute docstrings, read from the source)."""
    try:
        tree = ast.parse(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs: dict[str, str] = {}
    for prev, node in zip(body, body[1:]):
        if (isinstance(prev, ast.AnnAssign) and isinstance(prev.target, ast.Name) and isinstance(node, ast.Expr)
                and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)):
            docs[prev.target.id] = " ".join(node.value.value.split())
    return docs


def _spec_from_type(name: str, tp: Any, default: Any, help_text: str, group: str) -> FlagSpec:
    optional = False
    args = typing.get_args(tp)
    origin = typing.get_origin(tp)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)) and type(None) in args:
        optional = True
        rest = [a for a in args if a is not type(None)]
        tp = rest[0] if len(rest) == 1 else str
        origin, args = typing.get_origin(tp), typing.get_args(tp)
    choices = None
    if origin is typing.Literal:
        choices, kind = tuple(str(a) for a in args), "str"
    elif tp is bool:
        kind = "bool"
    elif tp is int:
        kind = "int"
    elif tp is float:
        kind = "float"
    elif origin is list:
        kind = "floats" if args == (float,) else "list"
    elif origin is dict:
        kind = "json"
    else:
        kind = "str"
    return FlagSpec(name, kind, default, help_text, choices, optional, group)


def group_specs(cls: type) -> list[FlagSpec]:
    hints = typing.get_type_hints(cls)
    docs = _field_docs(cls)
    specs = []
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            default = f.default_factory()  # type: ignore[misc]
        else:
            default = None
        specs.append(_spec_from_type(f.name, hints[f.name], default, docs.get(f.name, ""), cls.__name__))
    return specs


def command_specs(command: str) -> list[FlagSpec]:
    """Every flag of a command, ours first, then the transformers ones we do not define ourselves."""
    specs: list[FlagSpec] = []
    seen: set[str] = set()
    for cls in A.COMMAND_GROUPS[command]:
        for s in group_specs(cls):
            if s.name in seen:
                continue
            seen.add(s.name)
            specs.append(s)
    overrides = COMMAND_DEFAULTS.get(command, {})
    for s in specs:
        if s.name in overrides:
            s.default = overrides[s.name]
    if command in A.TAKES_HF_TRAINING_FLAGS:
        from swift.cli.hf_flags import HF_TRAINING_FLAGS

        for name, kind, default, help_text in HF_TRAINING_FLAGS:
            if name in seen:
                continue
            seen.add(name)
            specs.append(FlagSpec(name, kind, default, help_text, None, True, "transformers"))
    return specs


def _add_flag(group: argparse._ArgumentGroup, s: FlagSpec, aliases: list[str]) -> None:
    names = [f"--{s.name}"] + [f"--{a}" for a in aliases]
    help_text = s.help
    if aliases:
        help_text += f" (also: {', '.join('--' + a for a in aliases)})"
    default_note = "" if s.default in (None, [], "") else f" [default: {s.default}]"
    kw: dict[str, Any] = {"dest": s.name, "default": argparse.SUPPRESS, "help": (help_text + default_note).replace("%", "%%")}
    if s.kind == "bool":
        kw.update(nargs="?", const=True, type=str2bool, metavar="true|false")
    elif s.kind == "int":
        kw.update(type=_opt_int if s.optional else int, metavar="INT")
    elif s.kind == "float":
        kw.update(type=_opt_float if s.optional else float, metavar="FLOAT")
    elif s.kind == "list":
        kw.update(nargs="+", metavar="VALUE")
    elif s.kind == "floats":
        kw.update(nargs="+", type=float, metavar="FLOAT")
    elif s.kind == "json":
        kw.update(type=str, metavar="JSON")
    else:
        kw.update(type=_opt_str if s.optional else str)
        if s.choices:
            # the type converts "none" to None before argparse checks the choices
            kw.update(choices=list(s.choices) + ([None] if s.optional else []), metavar="{" + ",".join(s.choices) + "}")
    group.add_argument(*names, **kw)


def build_parser(command: str, prog: str | None = None, description: str = "") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog or f"swift {command}", description=description, allow_abbrev=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", help="A JSON or YAML file of flag values (e.g. a run's args.json); flags given "
                        "on the command line override it.")
    aliases: dict[str, list[str]] = {}
    for old, new in A.ALIASES.items():
        aliases.setdefault(new, []).append(old)
    groups: dict[str, argparse._ArgumentGroup] = {}
    for s in command_specs(command):
        title = "transformers.TrainingArguments flags" if s.group == "transformers" else s.group.replace("Arguments", "")
        if title not in groups:
            groups[title] = parser.add_argument_group(title)
        _add_flag(groups[title], s, aliases.get(s.name, []))
    return parser


def load_config_file(path: str) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ArgumentError("config", f"file not found: {path}")
    text = p.read_text(encoding="utf-8")
    try:
        if p.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as e:  # noqa: BLE001 - any parse error becomes a user error
        raise ArgumentError("config", f"{path} is not valid {p.suffix.lstrip('.') or 'JSON'}: {e}") from e
    if not isinstance(data, dict):
        raise ArgumentError("config", f"{path} must hold a mapping of flag names to values")
    return data


def _coerce(s: FlagSpec, value: Any) -> Any:
    """Bring a value from a config file to the flag's type (config files hold JSON types or strings)."""
    if value is None:
        return None
    try:
        if s.kind == "bool":
            return str2bool(value) if isinstance(value, str) else bool(value)
        if s.kind == "int":
            return int(value)
        if s.kind == "float":
            return float(value)
        if s.kind == "list":
            return [str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)]
        if s.kind == "floats":
            return [float(v) for v in value] if isinstance(value, (list, tuple)) else [float(value)]
        if s.kind == "json":
            return value
        return str(value) if not isinstance(value, (list, dict)) else value
    except (TypeError, ValueError, argparse.ArgumentTypeError) as e:
        raise ArgumentError(s.name, f"cannot read {value!r} as {s.kind}: {e}") from e


def _unknown_flag_error(unknown: list[str], specs: list[FlagSpec]) -> ArgumentError:
    flag = next((u for u in unknown if u.startswith("--")), unknown[0])
    name = flag.lstrip("-").split("=")[0]
    known = [s.name for s in specs] + list(A.ALIASES)
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    hint = f" Did you mean {', '.join('--' + c for c in close)}?" if close else " See --help for every flag."
    if not flag.startswith("--"):
        return ArgumentError(name, f"unexpected value {flag!r}; flags take the form --name value.{hint}")
    return ArgumentError(name, f"unknown flag.{hint}")


# Keys a run's args.json records beside the flags.
DERIVED_KEYS = {"model_dir", "command"}


def _all_flag_names() -> set[str]:
    return {s.name for command in A.COMMAND_GROUPS for s in command_specs(command)}


def parse_args(command: str, argv: list[str] | None = None, config: dict[str, Any] | None = None) -> ParsedArgs:
    """Parse a command's flags (and an optional --config file) into its argument groups."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(command)
    specs = command_specs(command)
    by_name = {s.name: s for s in specs}
    ns, unknown = parser.parse_known_args(argv)
    if unknown:
        raise _unknown_flag_error(unknown, specs)
    cli = {k: v for k, v in vars(ns).items() if k != "config"}
    values: dict[str, Any] = {}
    file_values = dict(config or {})
    if ns.config:
        file_values.update(load_config_file(ns.config))
    other_commands = _all_flag_names()
    for key, value in file_values.items():
        key = A.ALIASES.get(key, key)
        if key not in by_name:
            # A run's args.json also holds derived values (the resolved model folder) and flags of the command
            # that wrote it (`swift infer --config <sft run>/args.json`); anything else is a typo.
            if key in DERIVED_KEYS or key in other_commands:
                continue
            err = _unknown_flag_error([f"--{key}"], specs)
            raise ArgumentError("config", f"{ns.config or 'config'}: unknown key {key!r}: {err.reason}")
        values[key] = _coerce(by_name[key], value)
    values.update(cli)
    parsed = build_parsed(command, values, explicit=set(cli) | set(file_values))
    parsed.config_file = ns.config
    return parsed


def build_parsed(command: str, values: dict[str, Any], explicit: set[str] | None = None) -> ParsedArgs:
    """Construct the argument groups from a flat dict of values (also used by the Python API and web UI)."""
    specs = command_specs(command)
    by_name = {s.name: s for s in specs}
    for key in values:
        if key not in by_name:
            raise _unknown_flag_error([f"--{key}"], specs)
    groups: dict[str, Any] = {}
    flat: dict[str, Any] = {}
    for cls in A.COMMAND_GROUPS[command]:
        kwargs = {}
        for f in dataclasses.fields(cls):
            if f.name in values:
                kwargs[f.name] = values[f.name]
            elif f.name in COMMAND_DEFAULTS.get(command, {}):
                kwargs[f.name] = COMMAND_DEFAULTS[command][f.name]
        try:
            groups[cls.__name__] = cls(**kwargs)
        except TypeError as e:  # a wrong type that argparse could not catch (config files)
            raise SwiftError(f"bad value in {cls.__name__}: {e}") from e
        flat.update({f.name: getattr(groups[cls.__name__], f.name) for f in dataclasses.fields(cls)})
    hf = {k: v for k, v in values.items() if by_name[k].group == "transformers"}
    for k, v in hf.items():
        if by_name[k].kind == "json" and isinstance(v, str) and v.strip().startswith(("{", "[")):
            try:
                hf[k] = json.loads(v)
            except json.JSONDecodeError as e:
                raise ArgumentError(k, f"not valid JSON: {e}") from e
    flat.update(hf)
    return ParsedArgs(command, groups, hf, flat, set(explicit or values))

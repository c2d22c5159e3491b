"""`swift <command> [flags]`: parsing only, then a pipeline.

Nothing heavy is imported before a command runs, so `swift --help` and `swift sft --help` answer at once.
"""
from __future__ import annotations

import sys

# command -> (pipeline module, function, one-line description); `train` is ms-swift's alias of `sft`.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "sft": ("swift.pipelines.sft", "run_sft", "Supervised fine-tuning on chat data (LoRA, full or freeze)."),
    "train": ("swift.pipelines.sft", "run_sft", "Same as sft."),
    "pt": ("swift.pipelines.sft", "run_pt", "Continued pre-training on raw text (loss on every token)."),
    "rlhf": ("swift.pipelines.rlhf", "run_rlhf", "Alignment: dpo, kto, cpo, simpo, orpo, rm, ppo, grpo, gkd (--rlhf_type)."),
    "infer": ("swift.pipelines.infer", "run_infer", "Chat with a model or checkpoint, or answer a dataset in batch."),
    "deploy": ("swift.pipelines.deploy", "run_deploy", "Serve a model or checkpoint over the OpenAI HTTP API."),
    "export": ("swift.pipelines.export", "run_export", "Export: merge LoRA adapters, quantize (gptq, awq, fp8, bnb) with a perplexity check."),
    "merge-lora": ("swift.pipelines.export", "run_merge_lora", "Merge LoRA adapters (= export --merge_lora true)."),
}
ARG_COMMAND = {"train": "sft", "merge-lora": "export"}
# Guided ways in, with flags of their own (module, function(argv) -> exit code, description).
UI_COMMANDS: dict[str, tuple[str, str, str]] = {
    "quickstart": ("swift.ui.quickstart", "main", "Guided start in the terminal: pick model, data and task; get the "
                   "command, run it, then chat, merge, quantize or deploy (= scripts/yichuidingyin.sh)."),
    "web-ui": ("swift.ui.webui", "main", "Web interface (gradio, extra `webui`): training, chat, export, deploy."),
}

USAGE = """usage: swift <command> [flags]      (swift <command> --help lists every flag)

SwiftLab: fine-tune, align, quantize and serve large models.

commands:
{commands}

examples:
  swift quickstart          (guided: asks, shows the command, runs it; --lang zh for Chinese)
  swift web-ui              (the same in the browser, http://127.0.0.1:7860)
  swift sft --model swift-demo --dataset self-cognition --model_name swift-robot --model_author swift
  swift rlhf --rlhf_type dpo --model <model> --dataset <preference data>
  swift infer --adapters output/<run>/checkpoint-<N>
  swift deploy --adapters output/<run>/checkpoint-<N> --api_key <key>
  swift export --adapters output/<run>/checkpoint-<N> --merge_lora true
"""


def _usage() -> str:
    lines = [f"  {name:<12} {desc}" for name, (_, _, desc) in {**COMMANDS, **UI_COMMANDS}.items()]
    return USAGE.format(commands="\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:  # `swift sft --help | head`: the reader left; not an error of ours
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    if argv[0] in ("-V", "--version", "version"):
        from swift.version import __version__

        print(f"swiftlab {__version__}")
        return 0
    command, rest = argv[0], argv[1:]
    if command in UI_COMMANDS:
        import importlib

        module_name, func_name, _ = UI_COMMANDS[command]
        try:
            return getattr(importlib.import_module(module_name), func_name)(rest)
        except KeyboardInterrupt:
            print(f"\nswift {command}: interrupted", file=sys.stderr)
            return 130
    if command not in COMMANDS:
        import difflib

        close = difflib.get_close_matches(command, [*COMMANDS, *UI_COMMANDS], n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        print(f"swift: unknown command '{command}'.{hint}\n", file=sys.stderr)
        print(_usage(), file=sys.stderr)
        return 2
    module_name, func_name, desc = COMMANDS[command]
    arg_command = ARG_COMMAND.get(command, command)

    from swift.cli.parser import build_parser, parse_args
    from swift.utils.errors import SwiftError

    if any(a in ("-h", "--help") for a in rest):
        build_parser(arg_command, prog=f"swift {command}", description=desc).print_help()
        return 0
    try:
        if command == "merge-lora" and "--merge_lora" not in rest:
            rest = rest + ["--merge_lora", "true"]
        args = parse_args(arg_command, rest)
        if "DistributedArguments" in args.groups:
            from swift.launch.launcher import in_launched_rank, plan_from, relaunch

            d = args.groups["DistributedArguments"]
            plan = plan_from(d.parallel_strategy, d.fsdp_num_shards)
            if plan.distributed and not in_launched_rank():
                return relaunch(command, rest, plan)
        import importlib

        run = getattr(importlib.import_module(module_name), func_name)
        run(args)
    except SwiftError as e:
        print(f"swift {command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\nswift {command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`swift infer`: interactive chat or batch answers, from a model folder or a training checkpoint."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from swift.pipelines.arguments import ParsedArgs
from swift.pipelines.common import adapter_base_model, is_adapter_dir, read_checkpoint_args
from swift.utils.errors import ArgumentError
from swift.utils.logging import get_logger, quiet_library_warnings

logger = get_logger("swift.infer")

# Flags a checkpoint's args.json fills in when the user did not give them.
_INHERITED = ("model", "model_type", "template", "system", "max_length", "torch_dtype", "attn_impl",
              "trust_remote_code", "use_hf", "model_revision", "max_pixels", "min_pixels", "video_max_pixels", "fps",
              "max_frames")
_QUANT_INHERITED = ("quant_method", "quant_bits", "bnb_4bit_quant_type", "bnb_4bit_use_double_quant",
                    "bnb_4bit_compute_dtype", "bnb_4bit_quant_storage")


def inherit_checkpoint_args(args: ParsedArgs, checkpoint: str) -> dict[str, Any]:
    """Fill template/model flags from the checkpoint's args.json; flags given by the user win.

    Returns the checkpoint's args (empty if it has none)."""
    saved = read_checkpoint_args(checkpoint)
    keys = _INHERITED
    if args.command != "export" and saved.get("quant_method") == "bnb" and "quant_method" not in args.explicit:
        keys = keys + _QUANT_INHERITED  # a QLoRA adapter answers on the base it was trained against
    for key in keys:
        if key in args.explicit or key not in saved:
            continue
        for group in args.groups.values():
            if hasattr(group, key):
                setattr(group, key, saved[key])
    return saved


def resolve_base_model(args: ParsedArgs, saved: dict[str, Any], adapters: list[str]) -> str:
    """The base model folder: --model, else the resolved folder recorded at training time, else peft's record."""
    m = args.groups["ModelArguments"]
    if "model" not in args.explicit:
        recorded = saved.get("model_dir")
        if recorded and Path(recorded).is_dir():
            return recorded
    if m.model is None and adapters:
        m.model = adapter_base_model(adapters[0])
    if m.model is None and m.model_type is None:
        raise ArgumentError("model", "give --model or --adapters <checkpoint>")
    from swift.models.loader import resolve_model

    return resolve_model(m.model, model_type=m.model_type, use_hf=m.use_hf, revision=m.model_revision,
                         token=m.hub_token)


def build_engine(args: ParsedArgs):
    """Load model (+ adapters) and return (engine, template) for --infer_backend."""
    if args.groups["InferArguments"].infer_backend != "pt":
        return build_backend_engine(args)
    from swift.infer.pt import PtEngine
    from swift.pipelines.mm import make_mm_encoder

    model, tokenizer, template = load_model_and_template(args)
    engine = PtEngine(model, tokenizer, template, max_batch_size=args.groups["InferArguments"].max_batch_size,
                      mm_encoder=make_mm_encoder(args, template, tokenizer, model))
    return engine, template


def build_backend_engine(args: ParsedArgs):
    """(VllmEngine or LmdeployEngine, template) for --infer_backend vllm|lmdeploy; the package is checked first."""
    import importlib.util

    from swift.utils.errors import MissingExtraError

    inf = args.groups["InferArguments"]
    backend = inf.infer_backend
    if importlib.util.find_spec(backend) is None:
        raise MissingExtraError(backend, backend, f"--infer_backend {backend}")
    adapters = list(inf.adapters)
    if len(adapters) > 1 or (adapters and backend == "lmdeploy"):
        raise ArgumentError("adapters", f"--infer_backend {backend} takes at most one adapter here (lmdeploy none): "
                            "merge them first with `swift export --merge_lora true`")
    saved = inherit_checkpoint_args(args, adapters[0]) if adapters else {}
    model_dir = resolve_base_model(args, saved, adapters)
    from transformers import AutoTokenizer

    from swift.templates import get_template

    m, t = args.groups["ModelArguments"], args.groups["TemplateArguments"]
    tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=m.trust_remote_code)
    template = get_template(tokenizer, t.template, system=t.system, max_length=t.max_length)
    if backend == "vllm":
        from swift.infer.vllm import VllmEngine

        engine = VllmEngine(model_dir, template, adapters={"default": adapters[0]} if adapters else None,
                            default_adapter="default" if adapters else None, max_batch_size=inf.max_batch_size)
    else:
        from swift.infer.lmdeploy import LmdeployEngine

        engine = LmdeployEngine(model_dir, template, max_batch_size=inf.max_batch_size)
    return engine, template


def load_model_and_template(args: ParsedArgs):
    """(model, tokenizer, template) of --model / --adapters, the checkpoint's args.json filling the gaps."""
    quiet_library_warnings()
    inf = args.groups["InferArguments"]
    adapters = list(inf.adapters)
    saved: dict[str, Any] = {}
    if adapters:
        saved = inherit_checkpoint_args(args, adapters[0])
    elif args.groups["ModelArguments"].model and (Path(args.groups["ModelArguments"].model) / "args.json").is_file():
        # A full-tuning checkpoint carries args.json too: reuse its template settings (--model stays explicit).
        inherit_checkpoint_args(args, args.groups["ModelArguments"].model)
    for a in adapters:
        if not is_adapter_dir(a):
            raise ArgumentError("adapters", f"{a} has no adapter_config.json: is it a LoRA checkpoint? "
                                "For a full-tuning checkpoint use --model <checkpoint>")
    model_dir = resolve_base_model(args, saved, adapters)
    from swift.trainers.checkpoint import adapter_for_inference

    adapters = [adapter_for_inference(a) for a in adapters]
    from swift.infer.loading import load_for_inference
    from swift.templates import get_template

    m, t = args.groups["ModelArguments"], args.groups["TemplateArguments"]
    from swift.pipelines.quant import load_time_quantization

    model, tokenizer = load_for_inference(model_dir, adapters=adapters, merge_lora=inf.merge_lora,
                                          torch_dtype=m.torch_dtype, attn_impl=m.attn_impl,
                                          device_map=m.device_map, quantization_config=load_time_quantization(args))
    template = get_template(getattr(tokenizer, "tokenizer", tokenizer), t.template, system=t.system,
                            max_length=t.max_length)
    return model, tokenizer, template


def request_config(args: ParsedArgs):
    from swift.infer.protocol import RequestConfig

    g = args.groups["GenerationArguments"]
    return RequestConfig(max_new_tokens=g.max_new_tokens, temperature=g.temperature, top_p=g.top_p,
                         top_k=g.top_k, repetition_penalty=g.repetition_penalty, stream=g.stream)


def run_infer(args: ParsedArgs) -> str | None:
    """Batch mode over --val_dataset (or --dataset) writing a jsonl; otherwise interactive chat. A reward model
    (from `swift rlhf --rlhf_type rm`) scores the conversations of the data instead."""
    from swift.infer.loading import is_reward_model
    from swift.infer.pt import PtEngine

    d, inf = args.groups["DataArguments"], args.groups["InferArguments"]
    data = d.val_dataset or d.dataset
    if inf.api_url:
        return _run_remote(args, data)
    if inf.infer_backend != "pt":
        return _run_remote(args, data, engine=build_backend_engine(args)[0])
    model, tokenizer, template = load_model_and_template(args)
    if is_reward_model(model):
        return _score(args, model, template, data)
    from swift.pipelines.mm import make_mm_encoder

    mm_encoder = make_mm_encoder(args, template, tokenizer, model)
    engine = PtEngine(model, tokenizer, template, max_batch_size=inf.max_batch_size, mm_encoder=mm_encoder)
    config = request_config(args)
    if data:
        from swift.data import load_datasets
        from swift.infer.batch import infer_rows

        rows, _ = load_datasets(data, strict=d.strict, model_name=d.model_name, model_author=d.model_author,
                                use_hf=args.groups["ModelArguments"].use_hf, mode="infer")
        out = inf.result_path or _default_result_path(inf.adapters)
        path = infer_rows(engine, rows, config, batch_size=inf.max_batch_size, out_path=out)
        print(f"wrote {len(rows)} responses to {path}", flush=True)
        return path
    from swift.infer.chat import run_chat

    run_chat(engine, config, system=args.groups["TemplateArguments"].system, stream=config.stream,
             modalities=mm_encoder.plugin.modalities if mm_encoder is not None else ())
    return None


def _run_remote(args: ParsedArgs, data: list[str], engine=None) -> str | None:
    """`swift infer --api_url` (or --infer_backend vllm|lmdeploy, given `engine`): batch and chat modes over
    an OpenAI-compatible server or the given text-only engine."""
    d, inf = args.groups["DataArguments"], args.groups["InferArguments"]
    if engine is None:
        from swift.infer.client import InferClient

        engine = InferClient(inf.api_url, api_key=inf.api_key, model=args.groups["ModelArguments"].model,
                             max_workers=inf.max_batch_size)
    config = request_config(args)
    if data:
        from swift.data import load_datasets
        from swift.infer.batch import infer_rows

        rows, _ = load_datasets(data, strict=d.strict, model_name=d.model_name, model_author=d.model_author,
                                use_hf=args.groups["ModelArguments"].use_hf, mode="infer")
        path = infer_rows(engine, rows, config, batch_size=inf.max_batch_size,
                          out_path=inf.result_path or _default_result_path([]))
        print(f"wrote {len(rows)} responses to {path}", flush=True)
        return path
    from swift.infer.chat import run_chat

    run_chat(engine, config, system=args.groups["TemplateArguments"].system, stream=config.stream)
    return None


def _score(args: ParsedArgs, model, template, data: list[str]) -> str:
    d, inf = args.groups["DataArguments"], args.groups["InferArguments"]
    if not data:
        raise ArgumentError("val_dataset", "this is a reward model: it scores conversations rather than chatting. "
                            "Give --val_dataset <file> with conversations that end with the reply to score")
    from swift.data import load_datasets
    from swift.infer.reward import score_rows

    rows, _ = load_datasets(data, strict=d.strict, model_name=d.model_name, model_author=d.model_author,
                            use_hf=args.groups["ModelArguments"].use_hf)
    path = score_rows(model, template, rows, batch_size=inf.max_batch_size,
                      out_path=inf.result_path or _default_result_path(inf.adapters))
    print(f"wrote {len(rows)} rewards to {path}", flush=True)
    return path


def _default_result_path(adapters: list[str]) -> str:
    import time

    stamp = time.strftime("%Y%m%d-%H%M%S")
    if adapters:
        return str(Path(adapters[0]) / "infer_result" / f"{stamp}.jsonl")
    return str(Path("result") / f"{stamp}.jsonl")

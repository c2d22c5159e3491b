"""`swift deploy`: serve a model or checkpoint over the OpenAI HTTP API (FastAPI + uvicorn)."""
from __future__ import annotations

import inspect
import threading
import time
from pathlib import Path
from typing import Any

from swift.pipelines.arguments import InferArguments, ParsedArgs
from swift.pipelines.common import report_result
from swift.utils.errors import ArgumentError, require
from swift.utils.logging import get_logger

logger = get_logger("swift.deploy")


def parse_adapters(entries: list[str]) -> tuple[dict[str, str], list[str]]:
    """Split --adapters into named ones (`name=path`) and plain paths."""
    named: dict[str, str] = {}
    plain: list[str] = []
    for entry in entries:
        name, sep, path = entry.partition("=")
        if sep and name and not Path(entry).exists():
            if not path:
                raise ArgumentError("adapters", f"{entry!r}: give name=path")
            if name in named:
                raise ArgumentError("adapters", f"the adapter name {name!r} is given twice")
            named[name] = path
        else:
            plain.append(entry)
    return named, plain


def build_deploy_engine(args: ParsedArgs) -> tuple[Any, str]:
    """Load the model like `swift infer` and return (engine, served model name)."""
    from swift.infer.pt import PtEngine
    from swift.pipelines.infer import build_engine, inherit_checkpoint_args, resolve_base_model

    d = args.groups["DeployArguments"]
    named, plain = parse_adapters(d.adapters)
    if named and plain:
        raise ArgumentError("adapters", "give either plain paths (applied to the model) or name=path pairs "
                            "(served by name), not both")
    if named and d.infer_backend != "pt":
        raise ArgumentError("adapters", f"name=path adapters need --infer_backend pt, not {d.infer_backend}")
    if named and "adapters" not in inspect.signature(PtEngine.__init__).parameters:
        raise ArgumentError("adapters", "serving LoRA adapters by name needs an engine with multi-LoRA support, "
                            "which this PtEngine lacks; give one plain adapter path instead")
    args.groups["InferArguments"] = InferArguments(adapters=plain, merge_lora=d.merge_lora,
                                                   max_batch_size=d.max_batch_size, infer_backend=d.infer_backend)
    if named:
        first = next(iter(named.values()))
        saved = inherit_checkpoint_args(args, first)
        args.groups["ModelArguments"].model = resolve_base_model(args, saved, [first])
        args.explicit.add("model")
    engine, _ = build_engine(args)
    if named:  # reload with the adapters handed to the engine, the base model shared between them
        engine = PtEngine(engine.model, engine.tokenizer, engine.template, max_batch_size=d.max_batch_size,
                          mm_encoder=engine.mm_encoder, adapters=named)  # type: ignore[call-arg]
    model_path = (getattr(getattr(getattr(engine, "model", None), "config", None), "_name_or_path", "")
                  or args.groups["ModelArguments"].model or "model")
    name = d.served_model_name or Path(str(model_path).rstrip("/")).name or "model"
    return engine, name


def default_max_model_len(engine: Any) -> int | None:
    """The context length: the model's max_position_embeddings, capped by the template's max_length."""
    lens = [getattr(getattr(getattr(engine, "model", None), "config", None), "max_position_embeddings", None),
            getattr(getattr(engine, "template", None), "max_length", None)]
    lens = [int(x) for x in lens if isinstance(x, int) and x > 0]
    return min(lens) if lens else None


def build_deploy_app(args: ParsedArgs) -> tuple[Any, Any]:
    """(FastAPI app, engine) for the parsed `swift deploy` flags."""
    require("fastapi", "serve", "swift deploy")
    from swift.serve.app import build_app

    d, g = args.groups["DeployArguments"], args.groups["GenerationArguments"]
    engine, name = build_deploy_engine(args)
    app = build_app(engine, served_model_name=name, api_key=d.api_key, max_concurrency=d.max_concurrency,
                    max_queue=d.max_queue, max_tokens_limit=d.max_tokens_limit,
                    max_model_len=d.max_model_len or default_max_model_len(engine),
                    max_body_bytes=d.max_body_bytes, max_n=d.max_n,
                    default_max_tokens=min(g.max_new_tokens, d.max_tokens_limit))
    app.state.served_model_name = name
    return app, engine


def is_loopback(host: str) -> bool:
    """True when `host` answers this machine only (127.0.0.0/8, ::1, localhost)."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def exposure_warning(host: str, api_key: str | None) -> str | None:
    """The warning to show when the server is reachable from other machines without an API key."""
    if is_loopback(host) or api_key:
        return None
    return (f"swift deploy binds {host} WITHOUT --api_key: anyone who can reach this machine can use the model. "
            "Give --api_key <key>, or bind 127.0.0.1.")


def run_deploy(args: ParsedArgs) -> None:
    """Serve until interrupted."""
    uvicorn = require("uvicorn", "serve", "swift deploy")
    d = args.groups["DeployArguments"]
    warning = exposure_warning(d.host, d.api_key)
    if warning:
        logger.warning("!" * 80)
        logger.warning(warning)
        logger.warning("!" * 80)
    app, _ = build_deploy_app(args)
    host = f"[{d.host}]" if ":" in d.host else d.host
    logger.info(f"serving {app.state.served_model_name!r} at http://{host}:{d.port}/v1 "
                f"(auth: {'api key' if d.api_key else 'none'})")
    server = uvicorn.Server(uvicorn.Config(app, host=d.host, port=d.port, log_level="warning",
                                           timeout_graceful_shutdown=5))

    def announce() -> None:  # only once the socket listens: "serving at" means a request would be answered now
        while not server.started and not server.should_exit:
            time.sleep(0.05)
        if server.started:
            print(f"swift deploy: serving at http://{host}:{d.port}/v1", flush=True)
            report_result(command="deploy", url=f"http://{host}:{d.port}/v1", status="serving")

    threading.Thread(target=announce, daemon=True).start()
    server.run()

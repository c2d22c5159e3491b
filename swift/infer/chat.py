"""An interactive chat in the terminal over any `Engine`."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from swift.infer.protocol import Engine, InferRequest, RequestConfig

USER_PROMPT = "<<< "
CONTINUATION_PROMPT = "... "
REPLY_PREFIX = ">>> "
HELP = ("Chat with the model. Type 'clear' to forget the conversation, 'exit' or 'quit' (or Ctrl-D) to "
        "leave; end a line with '\\' to continue the message on the next line. Ctrl-C stops a reply.")


def run_chat(engine: Engine, config: RequestConfig | None = None, *, system: str | None = None,
             stream: bool = True, input_fn: Callable[[str], str] = input,
             print_fn: Callable[..., Any] = print) -> list[dict[str, str]]:
    """Run a chat loop until the user leaves; the model sees the whole conversation each turn.

    Args:
        engine: Any inference engine.
        config: Generation settings for every reply (greedy by default).
        system: An optional system message, kept across `clear`.
        stream: Print the reply as it is generated rather than when it is complete.
        input_fn: Reads one line, given a prompt (like `input`); raises EOFError at the end of input.
        print_fn: Prints like `print` (it gets `end=` and `flush=` keyword arguments).

    Returns:
        The conversation as it stood when the user left.
    """
    config = config or RequestConfig()
    start = [{"role": "system", "content": system}] if system else []
    history = list(start)
    print_fn(HELP)
    while True:
        try:
            message = _read_message(input_fn)
        except (EOFError, KeyboardInterrupt):
            print_fn()
            break
        command = message.strip()
        if not command:
            continue
        if command.lower() in ("exit", "quit"):
            break
        if command.lower() == "clear":
            history = list(start)
            print_fn("(conversation cleared)")
            continue
        messages = history + [{"role": "user", "content": message}]
        reply = _reply(engine, messages, config, stream, print_fn)
        if reply is not None:
            history = messages + [{"role": "assistant", "content": reply}]
    return history


def _read_message(input_fn: Callable[[str], str]) -> str:
    """Read one message; a line ending in a backslash continues on the next line."""
    lines = []
    prompt = USER_PROMPT
    while True:
        line = input_fn(prompt)
        if line.endswith("\\"):
            lines.append(line[:-1])
            prompt = CONTINUATION_PROMPT
            continue
        lines.append(line)
        return "\n".join(lines)


def _reply(engine: Engine, messages: list[dict[str, str]], config: RequestConfig, stream: bool,
           print_fn: Callable[..., Any]) -> str | None:
    """Generate and print one reply; None when the user interrupted it (it then stays out of the history)."""
    print_fn(REPLY_PREFIX, end="", flush=True)
    request = InferRequest(messages=messages)
    if not stream:
        try:
            text = engine.infer([request], config)[0].text
        except KeyboardInterrupt:
            print_fn("[interrupted]")
            return None
        print_fn(text)
        return text
    pieces: list[str] = []
    deltas = engine.stream(request, config)
    try:
        for delta in deltas:
            pieces.append(delta)
            print_fn(delta, end="", flush=True)
    except KeyboardInterrupt:
        print_fn(" [interrupted]")
        return None
    finally:
        close = getattr(deltas, "close", None)
        if close is not None:
            close()  # stops generation when the reply was interrupted
    print_fn()
    return "".join(pieces)

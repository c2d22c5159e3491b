"""An interactive chat in the terminal over any `Engine`."""
from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from swift.infer.protocol import Engine, InferRequest, RequestConfig
from swift.utils.errors import SwiftError

USER_PROMPT = "<<< "
CONTINUATION_PROMPT = "... "
REPLY_PREFIX = ">>> "
HELP = ("Chat with the model. Type 'clear' to forget the conversation, 'exit' or 'quit' (or Ctrl-D) to "
        "leave; end a line with '\\' to continue the message on the next line. Ctrl-C stops a reply.")
MEDIA_HELP = ("Put <image>, <video> or <audio> in a message where a picture, video or sound goes; you are then "
              "asked for its path or URL.")
MEDIA_PROMPTS = {"image": "Input an image path or URL <<< ", "video": "Input a video path or URL <<< ",
                 "audio": "Input an audio path or URL <<< "}


def run_chat(engine: Engine, config: RequestConfig | None = None, *, system: str | None = None,
             stream: bool = True, input_fn: Callable[[str], str] = input,
             print_fn: Callable[..., Any] = print, modalities: tuple[str, ...] = ()) -> list[dict[str, str]]:
    """Run a chat loop until the user leaves; the model sees the whole conversation each turn.

    Args:
        engine: Any inference engine.
        config: Generation settings for every reply (greedy by default).
        system: An optional system message, kept across `clear`.
        stream: Print the reply as it is generated rather than when it is complete.
        input_fn: Reads one line, given a prompt (like `input`); raises EOFError at the end of input.
        print_fn: Prints like `print` (it gets `end=` and `flush=` keyword arguments).
        modalities: What a multimodal model takes ("image", "video", "audio"): each tag typed in a message
            asks for the item's path or URL.

    Returns:
        The conversation as it stood when the user left.
    """
    config = config or RequestConfig()
    start = [{"role": "system", "content": system}] if system else []
    history = list(start)
    media: dict[str, list] = {"images": [], "videos": [], "audios": []}
    print_fn(HELP)
    if modalities:
        print_fn(MEDIA_HELP)
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
            media = {"images": [], "videos": [], "audios": []}
            print_fn("(conversation cleared)")
            continue
        try:
            added = _ask_media(message, modalities, input_fn)
        except (EOFError, KeyboardInterrupt):
            print_fn()
            break
        turn_media = {k: media[k] + added.get(k, []) for k in media}
        messages = history + [{"role": "user", "content": message}]
        try:
            reply = _reply(engine, messages, config, stream, print_fn, turn_media)
        except SwiftError as e:  # an unreadable picture or a bad message: say so and let the user go on
            print_fn(f"\n[error] {e}")
            continue
        if reply is not None:
            history = messages + [{"role": "assistant", "content": reply}]
            media = turn_media
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


def _ask_media(message: str, modalities: tuple[str, ...], input_fn: Callable[[str], str]) -> dict[str, list]:
    """Ask for the path or URL of each media tag in the message, in order."""
    added: dict[str, list] = {}
    if not modalities:
        return added
    for tag in re.findall(r"<(image|video|audio)>", message):
        if tag in modalities:
            added.setdefault(tag + "s", []).append(input_fn(MEDIA_PROMPTS[tag]).strip())
    return added


def _reply(engine: Engine, messages: list[dict[str, str]], config: RequestConfig, stream: bool,
           print_fn: Callable[..., Any], media: dict[str, list] | None = None) -> str | None:
    """Generate and print one reply; None when the user interrupted it (it then stays out of the history)."""
    print_fn(REPLY_PREFIX, end="", flush=True)
    request = InferRequest(messages=messages, **{k: v for k, v in (media or {}).items() if v})
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

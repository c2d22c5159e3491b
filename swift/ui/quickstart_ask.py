"""How `swift quickstart` asks: arrow-key menus and typed answers in a terminal (questionary), or answers given
in advance (`--yes`, `--answers FILE`) when it runs unattended.

The wizard talks to an `Asker` only, so its flow runs the same under a person, a script and the tests. Every
question has a key (the CLI flag it fills, or `task`, `run`, ...) which is also the key of the answers file.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any, Protocol

from swift.utils.errors import SwiftError

OTHER = "__other__"  # the menu entry "type something else"


class QuickstartError(SwiftError):
    """A wrong answers file or an answer that cannot be used when nobody is there to ask again."""


class Asker(Protocol):
    """Asks one question at a time; `unattended` is True when nobody answers (a wrong answer then ends)."""

    unattended: bool

    def select(self, key: str, message: str, choices: list[tuple[str, str]], default: str) -> str:
        """One of `choices` ((value, label) pairs), `default` being a value."""

    def text(self, key: str, message: str, default: str) -> str:
        """A typed answer; `default` is offered (Enter keeps it)."""

    def confirm(self, key: str, message: str, default: bool) -> bool:
        """Yes or no."""

    def key(self, key: str, message: str, keys: str) -> str:
        """One keystroke among `keys` (lower-case letters)."""

    def say(self, message: str, kind: str = "info") -> None:
        """Print a line; kind is info, title, error, warn or ok."""


_COLORS = {"title": "1;36", "error": "31", "warn": "33", "ok": "32", "command": "36"}


def paint(message: str, kind: str) -> str:
    """`message` in the colour of `kind` when stdout is a terminal (NO_COLOR respected)."""
    code = _COLORS.get(kind)
    if not code or not sys.stdout.isatty() or os.environ.get("NO_COLOR"):
        return message
    return f"\x1b[{code}m{message}\x1b[0m"


class TerminalAsker:
    """Questions in the terminal: questionary menus (arrow keys, Enter), typed answers with the default filled
    in, one-keystroke menus read in cbreak mode. Ctrl-C raises KeyboardInterrupt."""

    unattended = False

    def select(self, key: str, message: str, choices: list[tuple[str, str]], default: str) -> str:
        import questionary

        items = [questionary.Choice(title=label, value=value) for value, label in choices]
        chosen = next((c for c in items if c.value == default), items[0])
        return questionary.select(message, choices=items, default=chosen, qmark="?").unsafe_ask()

    def text(self, key: str, message: str, default: str) -> str:
        """The default is shown greyed (a placeholder), not filled in: typing replaces it (typing 2 over a
        filled-in 3 would give 32), Enter takes it."""
        import questionary
        from prompt_toolkit.formatted_text import FormattedText

        placeholder = FormattedText([("fg:ansibrightblack", default)]) if default else None
        answer = questionary.text(message, qmark="?", placeholder=placeholder).unsafe_ask()
        if answer.strip() or not default:
            return answer
        if sys.stdout.isatty():  # questionary echoed an empty answer: show the default that was taken instead
            sys.stdout.write("\x1b[1A\x1b[2K")
            print(f"{paint('?', 'ok')} {message} {paint(default, 'command')}", flush=True)
        return default

    def confirm(self, key: str, message: str, default: bool) -> bool:
        import questionary

        return bool(questionary.confirm(message, default=default, qmark="?").unsafe_ask())

    def key(self, key: str, message: str, keys: str) -> str:
        print(message, end=" ", flush=True)
        while True:
            ch = read_key()
            if ch in ("\x03",):
                raise KeyboardInterrupt
            if ch in ("\x04", ""):  # Ctrl-D or end of input: leave
                print()
                return "x"
            ch = ch.lower()
            if ch in keys:
                print(ch)
                return ch

    def say(self, message: str, kind: str = "info") -> None:
        print(paint(message, kind), flush=True)


def read_key() -> str:
    """One keystroke from stdin, without waiting for Enter when stdin is a terminal ("" at end of input)."""
    if not sys.stdin.isatty():
        line = sys.stdin.readline()
        return line.strip()[:1] if line else ""
    import termios
    import tty

    fd = sys.stdin.fileno()
    old = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd)
        return os.read(fd, 1).decode(errors="replace")
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, old)


class ScriptedAsker:
    """Answers from a mapping (the answers file; empty for `--yes`): a missing answer takes the default.

    A menu answer that is not one of the menu's values is taken as typed when the menu has an "other" entry
    (a model name or folder, a data file), so the answers file holds plain values. `then` lists the follow-ups
    after a training run (chat, merge, quantize, deploy), done in order, then exit."""

    unattended = True

    def __init__(self, answers: dict[str, Any] | None = None, print_fn: Callable[[str], Any] = print):
        self.answers = dict(answers or {})
        self._then = list(self.answers.get("then") or [])
        self._print = print_fn

    def _get(self, key: str, default: Any) -> Any:
        value = self.answers.get(key)
        return default if value is None else value

    def select(self, key: str, message: str, choices: list[tuple[str, str]], default: str) -> str:
        value = str(self._get(key, default))
        values = [v for v, _ in choices]
        if value in values:
            self._print(f"? {message} {dict(choices)[value]}")
            return value
        if OTHER in values:
            return OTHER  # the wizard then asks `text(key, ...)`, answered with the same value
        raise QuickstartError(f"answers: {key}: expected one of {', '.join(v for v in values if v != OTHER)}, "
                              f"got {value!r}")

    def text(self, key: str, message: str, default: str) -> str:
        value = self._get(key, default)
        value = "" if value is None else str(value)
        self._print(f"? {message} {value}")
        return value

    def confirm(self, key: str, message: str, default: bool) -> bool:
        value = self._get(key, default)
        if isinstance(value, str):
            value = value.strip().lower() in ("true", "yes", "y", "1")
        self._print(f"? {message} {'yes' if value else 'no'}")
        return bool(value)

    def key(self, key: str, message: str, keys: str) -> str:
        ch = self._then.pop(0)[0] if self._then else "x"
        self._print(f"{message} {ch}")
        return ch

    def say(self, message: str, kind: str = "info") -> None:
        self._print(message)


def ask_checked(asker: Asker, key: str, message: str, default: str,
                check: Callable[[str], str | None], *, retry_note: str = "") -> str:
    """Ask for a typed answer until `check` (which returns an error message or None) accepts it.

    A wrong answer is said in words and asked again; when nobody is there to answer again it raises
    QuickstartError naming the question and the problem."""
    while True:
        value = asker.text(key, message, default).strip()
        if not value:
            value = default
        problem = check(value)
        if problem is None:
            return value
        if asker.unattended:
            raise QuickstartError(f"{key} = {value!r}: {problem}")
        asker.say(f"✗ {problem}{retry_note}", "error")

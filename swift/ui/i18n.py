"""Interface language (`--lang zh|en`) for the wizard and the web UI.

Each UI module keeps its own table `{key: (english, chinese)}` next to the code that shows the text, and looks
strings up with `text(table, key, lang)`; nothing is shared but these two functions.
"""
from __future__ import annotations

import locale
import os

LANGS = ("en", "zh")


def default_lang() -> str:
    """`zh` when the system locale is Chinese (LANG/LC_ALL zh_*), else `en`."""
    for var in ("LC_ALL", "LC_MESSAGES", "LANG"):
        value = os.environ.get(var)
        if value:
            return "zh" if value.lower().startswith("zh") else "en"
    try:
        loc = locale.getlocale()[0] or ""
    except ValueError:
        loc = ""
    return "zh" if loc.lower().startswith("zh") else "en"


def check_lang(lang: str | None) -> str:
    """The language to use: `lang` when given (en or zh, checked), else the system's."""
    if lang is None:
        return default_lang()
    value = lang.strip().lower().replace("_", "-")
    if value in ("zh", "zh-cn", "cn", "chinese", "中文"):
        return "zh"
    if value in ("en", "en-us", "english"):
        return "en"
    raise ValueError(f"--lang: expected zh or en, got {lang!r}")


def text(table: dict[str, tuple[str, str]], key: str, lang: str, **fmt: object) -> str:
    """`table[key]` in `lang`, formatted with `fmt`."""
    en, zh = table[key]
    s = zh if lang == "zh" else en
    return s.format(**fmt) if fmt else s

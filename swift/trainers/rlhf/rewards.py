"""Rule rewards for the online algorithms (GRPO, PPO), the registry of their names, and user plugins.

A reward function scores a batch of completions, one float per completion:

    def my_reward(completions: list[str], **kwargs) -> list[float]: ...

It is called with keywords only: `completions` (the generated replies as text), `prompts` (the prompt
conversations, lists of messages), `completion_ids` (the generated token ids, ending with the end-of-turn token
when the reply finished), `prompt_ids`, every other column of the dataset rows by name (e.g. `solution`), one
value per completion, and `trainer_state` (the Trainer's state, for schedules). Accept `**kwargs` for what you do
not use. A TRL-style `f(prompts, completions, **kwargs)` works too, since nothing is passed by position.

`--reward_funcs` names a built-in (`REWARD_FUNCS`: accuracy, format, length, repetition), a function registered
with `register_reward`, a function defined in an `--external_plugins` file (by its name), `module.function`
(importable) or `path/to/file.py:function`. A class is instantiated without arguments (ms-swift's ORM classes).
"""
from __future__ import annotations

import importlib
import importlib.util
import math
import os
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any

from swift.utils.errors import DataError, SwiftError

RewardFunc = Callable[..., list[float]]

# ---- answer extraction (accuracy) ------------------------------------------------------------------------
_NUMBER = re.compile(r"[-+]?\d[\d,]*(?:\.\d+)?(?:/\d+)?|[-+]?\.\d+")
_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


def _last_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{...}` (or `\\fbox{...}`), braces balanced; None when there is none."""
    start = max(text.rfind("\\boxed{"), text.rfind("\\fbox{"))
    if start < 0:
        return None
    i = text.index("{", start) + 1
    depth, begin = 1, i
    while i < len(text):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[begin:i]
        i += 1
    return None  # unbalanced: no answer


def extract_answer(text: str) -> str | None:
    """The final answer of a math reply: the last `\\boxed{}`, else the last `<answer>` tag, else the text after
    `####` (GSM8K), else the last number. None when nothing looks like an answer."""
    if text is None:
        return None
    text = str(text)
    boxed = _last_boxed(text)
    if boxed is not None:
        return boxed.strip()
    tags = _ANSWER_TAG.findall(text)
    if tags:
        text = tags[-1]
    if "####" in text:
        text = text.rsplit("####", 1)[1]
    numbers = _NUMBER.findall(text)
    if numbers:
        return numbers[-1]
    text = text.strip()
    return text or None


def _as_number(s: str) -> float | None:
    s = s.strip().strip("$").replace("\\!", "").replace(",", "").replace(" ", "").rstrip(".")
    s = re.sub(r"\\[dt]?frac\{([^{}]+)\}\{([^{}]+)\}", r"\1/\2", s)
    if s.endswith("%"):
        s = s[:-1]
    try:
        if "/" in s:
            num, den = s.split("/", 1)
            return float(num) / float(den)
        return float(s)
    except (ValueError, ZeroDivisionError):
        return None


def _normalize(s: str) -> str:
    s = re.sub(r"\\text\{([^{}]*)\}", r"\1", s)
    return re.sub(r"[\s$]", "", s).rstrip(".").lower()


def answers_match(predicted: str | None, reference: str | None) -> bool:
    """Numerically equal (relative tolerance 1e-6; `1,000`, `3/4`, `\\frac{3}{4}` parse) or equal as text."""
    if predicted is None or reference is None:
        return False
    a, b = _as_number(predicted), _as_number(reference)
    if a is not None and b is not None:
        return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)
    return _normalize(predicted) == _normalize(reference)


def _column(kwargs: dict[str, Any], name: str, n: int, reward: str) -> list[Any]:
    values = kwargs.get(name)
    if values is None:
        raise DataError(f"the '{reward}' reward needs a '{name}' column in the dataset rows", field=name)
    if len(values) != n:
        raise SwiftError(f"the '{reward}' reward got {n} completions but {len(values)} values of '{name}'")
    return list(values)


# ---- built-in rewards --------------------------------------------------------------------------------------
def accuracy(completions: list[str], solution: Sequence[Any] | None = None, **kwargs: Any) -> list[float]:
    """1.0 when the completion's final answer (last `\\boxed{}`, `<answer>`, or last number) equals the row's
    `solution` (whose answer is extracted the same way, so "#### 42" and "\\boxed{42}" work), else 0.0."""
    solutions = _column({"solution": solution}, "solution", len(completions), "accuracy")
    return [float(answers_match(extract_answer(c), extract_answer(str(s)) if s is not None else None))
            for c, s in zip(completions, solutions)]


FORMAT_PATTERN = r"^\s*<think>.*?</think>\s*<answer>.*?</answer>\s*$"


def make_format_reward(pattern: str = FORMAT_PATTERN) -> RewardFunc:
    """A reward of 1.0 for completions that match `pattern` (a regex, whole text, DOTALL), else 0.0."""
    regex = re.compile(pattern, re.DOTALL)

    def format(completions: list[str], **kwargs: Any) -> list[float]:
        return [1.0 if regex.match(c or "") else 0.0 for c in completions]

    format.__doc__ = f"1.0 when the completion matches {pattern!r}, else 0.0."
    return format


format_reward = make_format_reward()


def length_score(length: int, target: int, shape: str = "cosine") -> float:
    """1.0 at `target`, falling to 0.0 at a distance of `target` or more: linearly, or along a quarter cosine
    (flat near the target, steeper further away)."""
    if target <= 0:
        raise SwiftError(f"length reward: the target length must be positive, got {target}")
    x = min(abs(length - target) / target, 1.0)
    if shape == "linear":
        return 1.0 - x
    if shape == "cosine":
        return math.cos(math.pi / 2 * x)
    raise SwiftError(f"length reward: shape must be 'cosine' or 'linear', got {shape!r}")


def make_length_reward(target: int = 256, shape: str = "cosine", unit: str = "chars") -> RewardFunc:
    """A reward for completions close to a target length (`length_score`).

    Args:
        target: Target length; a row's `target_length` column, when present, wins.
        shape: "cosine" or "linear".
        unit: "chars" (characters of the text) or "tokens" (needs `completion_ids`).
    """
    if unit not in ("chars", "tokens"):
        raise SwiftError(f"length reward: unit must be 'chars' or 'tokens', got {unit!r}")
    length_score(target, target, shape)  # validate now, not at the first step

    def length(completions: list[str], completion_ids: Sequence[Sequence[int]] | None = None,
               target_length: Sequence[Any] | None = None, **kwargs: Any) -> list[float]:
        if unit == "tokens":
            sizes = [len(x) for x in _column({"completion_ids": completion_ids}, "completion_ids",
                                             len(completions), "length")]
        else:
            sizes = [len(c or "") for c in completions]
        targets = list(target_length) if target_length is not None else [target] * len(completions)
        return [length_score(n, int(t) if t is not None else target, shape) for n, t in zip(sizes, targets)]

    length.__doc__ = f"{shape} length reward toward {target} {unit} (or the row's target_length)."
    return length


def make_repetition_reward(ngram_size: int = 3, max_penalty: float = -1.0) -> RewardFunc:
    """A penalty for repeated word n-grams: `max_penalty * (1 - distinct / total)` n-grams, so 0.0 for a text
    without repeats and `max_penalty` for one n-gram repeated forever (texts shorter than n score 0.0)."""
    if ngram_size < 1:
        raise SwiftError(f"repetition reward: ngram_size must be at least 1, got {ngram_size}")
    if max_penalty > 0:
        raise SwiftError(f"repetition reward: max_penalty must be <= 0, got {max_penalty}")

    def repetition(completions: list[str], **kwargs: Any) -> list[float]:
        out = []
        for text in completions:
            words = (text or "").lower().split()
            grams = [tuple(words[i:i + ngram_size]) for i in range(len(words) - ngram_size + 1)]
            out.append(0.0 if not grams else max_penalty * (1.0 - len(set(grams)) / len(grams)))
        return out

    repetition.__doc__ = f"{max_penalty} * (1 - distinct/total {ngram_size}-grams of words)."
    return repetition


length = make_length_reward()
repetition = make_repetition_reward()

# Name -> reward function. Add yours with `register_reward` (or define it in an --external_plugins file).
REWARD_FUNCS: dict[str, RewardFunc] = {
    "accuracy": accuracy,
    "format": format_reward,
    "length": length,
    "repetition": repetition,
}


def register_reward(name: str, func: RewardFunc) -> RewardFunc:
    """Add a reward function under `name` (for `--reward_funcs name`); duplicate names are refused."""
    if not name or not isinstance(name, str):
        raise SwiftError(f"a reward name must be a non-empty string, got {name!r}")
    if name in REWARD_FUNCS and REWARD_FUNCS[name] is not func:
        raise SwiftError(f"a reward function named '{name}' is already registered; choose another name")
    if not callable(func):
        raise SwiftError(f"register_reward('{name}', ...): {func!r} is not callable")
    REWARD_FUNCS[name] = func
    return func


# ---- loading by name ---------------------------------------------------------------------------------------
_PLUGINS: dict[str, Any] = {}  # absolute path -> module, so a plugin file runs (and registers) once per process


def load_plugin(path: str | os.PathLike) -> Any:
    """Import a Python file (an --external_plugins entry) once and return its module."""
    full = os.path.abspath(os.fspath(path))
    if full in _PLUGINS:
        return _PLUGINS[full]
    if not os.path.isfile(full):
        raise SwiftError(f"--external_plugins: {path} is not a file")
    name = "swift_plugin_" + re.sub(r"\W", "_", os.path.splitext(os.path.basename(full))[0]) + f"_{len(_PLUGINS)}"
    spec = importlib.util.spec_from_file_location(name, full)
    if spec is None or spec.loader is None:
        raise SwiftError(f"--external_plugins: cannot import {path} (is it a .py file?)")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        sys.modules.pop(name, None)
        raise SwiftError(f"--external_plugins: importing {path} failed: {type(e).__name__}: {e}") from e
    _PLUGINS[full] = module
    return module


def _instantiate(obj: Any, name: str) -> RewardFunc:
    if isinstance(obj, type):
        try:
            obj = obj()
        except TypeError as e:
            raise SwiftError(f"reward '{name}' is a class that cannot be built without arguments: {e}") from e
    if not callable(obj):
        raise SwiftError(f"reward '{name}' is not callable (got {type(obj).__name__})")
    return obj


def _from_plugins(name: str, plugins: list[Any]) -> Any:
    for module in reversed(plugins):  # the last plugin given wins
        if callable(getattr(module, name, None)):
            return getattr(module, name)
        for table in ("reward_funcs", "REWARD_FUNCS", "orms"):
            registry = getattr(module, table, None)
            if isinstance(registry, dict) and name in registry:
                return registry[name]
    return None


def _resolve(name: str, plugins: list[Any]) -> RewardFunc:
    if name in REWARD_FUNCS:
        return REWARD_FUNCS[name]
    found = _from_plugins(name, plugins)
    if found is not None:
        return _instantiate(found, name)
    if ".py:" in name:
        path, attr = name.rsplit(":", 1)
        module = load_plugin(path)
        if not hasattr(module, attr):
            raise SwiftError(f"--reward_funcs {name}: {path} defines no '{attr}'")
        return _instantiate(getattr(module, attr), name)
    if "." in name:
        module_name, attr = name.rsplit(".", 1)
        try:
            module = importlib.import_module(module_name)
        except ImportError as e:
            raise SwiftError(f"--reward_funcs {name}: cannot import module '{module_name}' ({e})") from e
        if not hasattr(module, attr):
            raise SwiftError(f"--reward_funcs {name}: module '{module_name}' has no '{attr}'")
        return _instantiate(getattr(module, attr), name)
    known = sorted(REWARD_FUNCS)
    raise SwiftError(f"--reward_funcs: unknown reward function '{name}'. Known: {', '.join(known)}; or a "
                     "function of an --external_plugins file (by its name), module.function, or file.py:function")


def reward_name(func: Any) -> str:
    """A short name for logs: the registry name, else the function's or class's name."""
    for key, value in REWARD_FUNCS.items():
        if value is func:
            return key
    return getattr(func, "__name__", None) or type(func).__name__


def load_reward_funcs(names: Sequence[str | RewardFunc] | None,
                      external_plugins: Sequence[str | os.PathLike] | None = None) -> list[RewardFunc]:
    """Resolve reward function names (callables pass through) after importing the plugin files.

    Args:
        names: Built-in or registered names, names defined in a plugin file, `module.function`,
            `file.py:function`, or callables.
        external_plugins: Python files imported first (once per process); they may define reward functions
            (found by name, or in a `reward_funcs` / `orms` dict) or call `register_reward`.

    Returns:
        The functions, in the order of `names`.

    Raises:
        SwiftError: A plugin file is missing or fails to import; a name is unknown (the message lists the known
            names).
    """
    plugins = [load_plugin(p) for p in (external_plugins or [])]
    out = []
    for name in names or []:
        out.append(name if callable(name) else _resolve(str(name), plugins))
    return out


# ---- scoring -----------------------------------------------------------------------------------------------
def compute_rewards(funcs: Sequence[RewardFunc], completions: list[str], weights: Sequence[float] | None = None,
                    **columns: Any) -> tuple[list[float], list[list[float]]]:
    """Call every reward function on the batch and sum them with `weights` (default 1 each).

    Returns:
        (total per completion, per-function rewards [n_funcs][n_completions]). A `None` reward counts as 0.

    Raises:
        SwiftError: A function returned the wrong number of rewards, or weights do not match the functions.
    """
    weights = list(weights) if weights is not None else [1.0] * len(funcs)
    if len(weights) != len(funcs):
        raise SwiftError(f"reward_weights has {len(weights)} values for {len(funcs)} reward functions")
    per_func = []
    for func in funcs:
        values = list(func(completions=completions, **columns))
        if len(values) != len(completions):
            raise SwiftError(f"reward function '{reward_name(func)}' returned {len(values)} rewards for "
                             f"{len(completions)} completions")
        per_func.append([0.0 if v is None else float(v) for v in values])
    total = [sum(w * rewards[i] for w, rewards in zip(weights, per_func)) for i in range(len(completions))]
    return total, per_func


def check_reward_model(reward_model: Any, policy: Any) -> None:
    """A reward model scores the policy's token ids directly, so both need the same vocabulary."""
    def vocab(m: Any) -> int | None:
        cfg = getattr(m, "config", None)
        cfg = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
        return getattr(cfg, "vocab_size", None)

    rv, pv = vocab(reward_model), vocab(policy)
    if rv is not None and pv is not None and rv != pv:
        raise SwiftError(f"the reward model's vocabulary ({rv} tokens) differs from the policy's ({pv}): it scores "
                         "the generated token ids as they are, so train it from the same model family "
                         "(--rlhf_type rm on the same tokenizer)")


def score_sequences(reward_model: Any, sequences: Sequence[Sequence[int]], pad_token_id: int,
                    batch_size: int = 16) -> list[float]:
    """Reward-model scores of token sequences (prompt ids + completion ids), read at each last token, exactly as
    `--rlhf_type rm` trained it on prompt_ids + chosen_ids (right padding, the last non-pad token scores)."""
    import torch

    device = next(reward_model.parameters()).device
    scores: list[float] = []
    for start in range(0, len(sequences), batch_size):
        chunk = [list(s) for s in sequences[start:start + batch_size]]
        width = max(len(s) for s in chunk)
        ids = torch.full((len(chunk), width), int(pad_token_id), dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for i, s in enumerate(chunk):
            ids[i, :len(s)] = torch.tensor(s, dtype=torch.long)
            mask[i, :len(s)] = 1
        with torch.no_grad():
            logits = reward_model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
        scores.extend(float(v) for v in logits[:, 0].float().cpu())
    return scores


def reward_model_func(reward_model: Any, pad_token_id: int, batch_size: int = 16) -> RewardFunc:
    """A reward function (`f(completions=..., prompt_ids=..., completion_ids=...)`) that scores prompt + completion
    token ids with `reward_model` (`score_sequences`): no decoding and re-encoding of the text."""
    def reward_model_score(completions: list[str], prompt_ids: Sequence[Sequence[int]] | None = None,
                           completion_ids: Sequence[Sequence[int]] | None = None, **kwargs: Any) -> list[float]:
        prompts = _column({"prompt_ids": prompt_ids}, "prompt_ids", len(completions), "reward_model")
        outs = _column({"completion_ids": completion_ids}, "completion_ids", len(completions), "reward_model")
        return score_sequences(reward_model, [list(p) + list(c) for p, c in zip(prompts, outs)], pad_token_id,
                               batch_size=batch_size)

    reward_model_score.__name__ = "reward_model"
    return reward_model_score


__all__ = ["REWARD_FUNCS", "RewardFunc", "accuracy", "format_reward", "length", "repetition", "make_format_reward",
           "make_length_reward", "make_repetition_reward", "length_score", "extract_answer", "answers_match",
           "register_reward", "load_plugin", "load_reward_funcs", "reward_name", "compute_rewards",
           "check_reward_model", "score_sequences", "reward_model_func"]

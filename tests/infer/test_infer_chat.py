"""The terminal chat loop, driven by scripted input."""
from __future__ import annotations

import pytest
from _infer_helpers import TAUGHT_PROMPT, TAUGHT_REPLY

from swift.infer.chat import run_chat
from swift.infer.protocol import InferRequest, RequestConfig
from swift.infer.pt import PtEngine


@pytest.fixture(scope="module")
def engine(taught_model, tokenizer, template):
    return PtEngine(taught_model, tokenizer, template)


class Script:
    """input_fn replaying lines (an exception instance is raised instead), then EOF; print_fn recording."""

    def __init__(self, lines):
        self.lines = list(lines)
        self.prompts = []
        self.out = []

    def input(self, prompt):
        self.prompts.append(prompt)
        if not self.lines:
            raise EOFError
        line = self.lines.pop(0)
        if isinstance(line, BaseException):
            raise line
        return line

    def print(self, *args, end="\n", flush=False):
        self.out.append(" ".join(str(a) for a in args) + end)

    @property
    def text(self):
        return "".join(self.out)


CONFIG = RequestConfig(max_new_tokens=24)


@pytest.mark.parametrize("stream", [True, False])
def test_chat_keeps_history_and_clears_it(engine, stream):
    multi = "first line\nsecond line"
    script = Script([TAUGHT_PROMPT[0]["content"], "clear", "first line\\", "second line", "exit", "never read"])
    history = run_chat(engine, CONFIG, stream=stream, input_fn=script.input, print_fn=script.print)
    assert TAUGHT_REPLY in script.text
    assert "(conversation cleared)" in script.text
    second = engine.infer([InferRequest([{"role": "user", "content": multi}])], CONFIG)[0].text
    assert history == [{"role": "user", "content": multi}, {"role": "assistant", "content": second}]
    assert script.lines == ["never read"]  # 'exit' ended the loop
    assert script.prompts.count("... ") == 1  # the continuation line got its own prompt


def test_chat_sends_the_whole_history(engine):
    script = Script(["Say hello.", "and again", "quit"])
    history = run_chat(engine, CONFIG, system="Be kind.", input_fn=script.input, print_fn=script.print)
    assert [m["role"] for m in history] == ["system", "user", "assistant", "user", "assistant"]
    assert history[2]["content"] == engine.infer([InferRequest(history[:2])], CONFIG)[0].text
    assert history[2]["content"] in script.text
    expected = engine.infer([InferRequest(history[:4])], CONFIG)[0].text
    assert history[4]["content"] == expected


@pytest.mark.parametrize("ending", [EOFError(), KeyboardInterrupt()])
def test_ctrl_d_and_ctrl_c_leave_cleanly(engine, ending):
    script = Script(["Say hello.", ending, "never read"])
    history = run_chat(engine, CONFIG, input_fn=script.input, print_fn=script.print)
    assert history == [TAUGHT_PROMPT[0], {"role": "assistant", "content": TAUGHT_REPLY}]


def test_clear_keeps_the_system_message(engine):
    script = Script(["Say hello.", "CLEAR", "  ", "exit"])
    history = run_chat(engine, CONFIG, system="Be kind.", input_fn=script.input, print_fn=script.print)
    assert history == [{"role": "system", "content": "Be kind."}]


def test_ctrl_c_during_a_reply_drops_it_and_goes_on(engine):
    script = Script(["Say hello.", "Say hello.", "exit"])
    printed = []

    def print_fn(*args, end="\n", flush=False):
        text = " ".join(str(a) for a in args)
        if end == "" and text and text != ">>> " and not printed:
            printed.append(text)
            raise KeyboardInterrupt  # the user pressed Ctrl-C while the first reply streamed
        script.print(*args, end=end, flush=flush)

    history = run_chat(engine, CONFIG, input_fn=script.input, print_fn=print_fn)
    assert "[interrupted]" in script.text
    assert history == [TAUGHT_PROMPT[0], {"role": "assistant", "content": TAUGHT_REPLY}]

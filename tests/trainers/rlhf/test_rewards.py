"""Rule rewards against hand-computed values, the registry, plugin loading, and reward-model scoring."""
from __future__ import annotations

import math
import textwrap

import pytest
import torch

from swift.trainers.rlhf import rewards as R
from swift.utils.errors import DataError, SwiftError


# ---- accuracy ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, answer", [
    ("so the result is \\boxed{42}.", "42"),
    ("\\boxed{\\frac{1}{2}} and then \\boxed{x^{2}}", "x^{2}"),  # the last box, nested braces kept
    ("<think>2+2</think><answer>4</answer>", "4"),
    ("Natalia sold 48 clips... #### 72", "72"),
    ("first 3, then 1,000 apples", "1,000"),
    ("no digits here", "no digits here"),
    ("", None),
])
def test_extract_answer(text, answer):
    assert R.extract_answer(text) == answer


def test_accuracy_compares_final_answers():
    completions = ["2 + 2 = \\boxed{4}", "I think it is 5", "the answer is 0.75", "\\boxed{\\frac{3}{4}}",
                   "1,000 in total", "<answer>Paris.</answer>", "\\boxed{4"]
    solutions = ["4", "#### 4", "3/4", "0.75", "1000", "paris", "4"]
    # the last one has an unbalanced box: "4" is then the last number, so it still matches
    assert R.accuracy(completions, solution=solutions) == [1.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    assert R.accuracy(["\\boxed{4}", "It is Paris."], solution=[None, "paris"]) == [0.0, 0.0]  # whole text != paris


def test_accuracy_needs_the_solution_column():
    with pytest.raises(DataError, match="solution") as e:
        R.accuracy(["\\boxed{1}"])
    assert e.value.field == "solution"


# ---- format, length, repetition --------------------------------------------------------------------------
def test_format_reward():
    good = "<think>\nstep 1\nstep 2</think>\n<answer>4</answer>\n"
    bad = ["<answer>4</answer>", "<think>x</think> trailing <answer>4</answer> more", "plain"]
    assert R.REWARD_FUNCS["format"]([good, *bad]) == [1.0, 0.0, 0.0, 0.0]
    custom = R.make_format_reward(r"^Answer: \d+$")
    assert custom(["Answer: 12", "Answer: x"]) == [1.0, 0.0]


def test_length_score_by_hand():
    assert R.length_score(100, 100) == 1.0
    assert R.length_score(150, 100, "cosine") == pytest.approx(math.cos(math.pi / 4))  # distance 0.5 * target
    assert R.length_score(50, 100, "linear") == pytest.approx(0.5)
    assert R.length_score(400, 100, "linear") == 0.0 and R.length_score(0, 100, "cosine") == pytest.approx(0.0)
    with pytest.raises(SwiftError, match="shape"):
        R.length_score(1, 1, "square")


def test_length_reward_units_and_row_targets():
    chars = R.make_length_reward(target=4, shape="linear")
    assert chars(["abcd", "ab", "abcdefgh"]) == pytest.approx([1.0, 0.5, 0.0])
    assert chars(["abcd", "abcd"], target_length=[8, None]) == pytest.approx([0.5, 1.0])
    tokens = R.make_length_reward(target=2, shape="linear", unit="tokens")
    assert tokens(["whatever", "x"], completion_ids=[[1, 2], [1, 2, 3]]) == pytest.approx([1.0, 0.5])
    with pytest.raises(DataError, match="completion_ids"):
        tokens(["x"])
    assert R.length is R.REWARD_FUNCS["length"]


def test_repetition_penalty_by_hand():
    # word 3-grams of "a b c a b c": abc, bca, cab, abc -> 3 distinct of 4 -> -(1 - 3/4)
    assert R.repetition(["a b c a b c", "one two three four", "a b", ""]) == pytest.approx([-0.25, 0.0, 0.0, 0.0])
    strong = R.make_repetition_reward(ngram_size=1, max_penalty=-2.0)
    assert strong(["x x x x"]) == pytest.approx([-2.0 * (1 - 1 / 4)])
    with pytest.raises(SwiftError):
        R.make_repetition_reward(max_penalty=1.0)


# ---- registry and loading ----------------------------------------------------------------------------------
def test_builtin_names_and_register(monkeypatch):
    assert set(R.REWARD_FUNCS) >= {"accuracy", "format", "length", "repetition"}
    monkeypatch.setattr(R, "REWARD_FUNCS", dict(R.REWARD_FUNCS))

    def mine(completions, **kwargs):
        return [1.0] * len(completions)

    R.register_reward("mine", mine)
    R.register_reward("mine", mine)  # the same function again is fine
    assert R.load_reward_funcs(["mine", "accuracy"]) == [mine, R.accuracy]
    with pytest.raises(SwiftError, match="already registered"):
        R.register_reward("mine", lambda completions, **kw: [])


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(SwiftError, match="unknown reward function 'acurracy'") as e:
        R.load_reward_funcs(["acurracy"])
    assert "accuracy, format, length, repetition" in str(e.value)


PLUGIN = textwrap.dedent('''
    from swift.trainers.rlhf.rewards import register_reward

    def shouting(completions, **kwargs):
        return [float(c.isupper()) for c in completions]

    class Exclaim:  # ms-swift's ORM style: a class, built without arguments
        def __call__(self, completions, **kwargs):
            return [float(c.endswith("!")) for c in completions]

    def trl_style(prompts, completions, **kwargs):  # TRL's signature works: nothing is passed by position
        return [float(len(p)) for p in prompts]

    orms = {"exclaim": Exclaim}
    register_reward("plugin_registered", shouting)
''')


def test_plugins_by_name_file_and_module(tmp_path, monkeypatch):
    monkeypatch.setattr(R, "REWARD_FUNCS", dict(R.REWARD_FUNCS))
    monkeypatch.setattr(R, "_PLUGINS", {})
    plugin = tmp_path / "my_plugin.py"
    plugin.write_text(PLUGIN)
    funcs = R.load_reward_funcs(["shouting", "exclaim", "plugin_registered", f"{plugin}:trl_style"],
                                external_plugins=[str(plugin)])
    assert [f(completions=["HI!", "hi"], prompts=[[1], [1, 2]])[0] for f in funcs] == [1.0, 1.0, 1.0, 1.0]
    assert funcs[1](completions=["hi"]) == [0.0]
    again = R.load_reward_funcs(["plugin_registered"], external_plugins=[str(plugin)])  # imported once
    assert again[0] is funcs[2]
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "reward_module_for_test.py").write_text("def half(completions, **kw):\n    return [0.5] * len(completions)\n")
    assert R.load_reward_funcs(["reward_module_for_test.half"])[0](completions=["a"]) == [0.5]


def test_plugin_errors_name_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(R, "_PLUGINS", {})
    with pytest.raises(SwiftError, match="missing.py is not a file"):
        R.load_reward_funcs([], external_plugins=[str(tmp_path / "missing.py")])
    broken = tmp_path / "broken.py"
    broken.write_text("import not_a_module_anywhere\n")
    with pytest.raises(SwiftError, match="broken.py failed: ModuleNotFoundError"):
        R.load_reward_funcs([], external_plugins=[str(broken)])
    ok = tmp_path / "ok.py"
    ok.write_text("x = 1\n")
    with pytest.raises(SwiftError, match="defines no 'nope'"):
        R.load_reward_funcs([f"{ok}:nope"])
    with pytest.raises(SwiftError, match="cannot import module"):
        R.load_reward_funcs(["no_such_package_xyz.func"])


# ---- combining and reward models -----------------------------------------------------------------------
def test_compute_rewards_weights_and_checks():
    def one(completions, **kw):
        return [1.0 for _ in completions]

    def idx(completions, solution, **kw):
        return [float(s) for s in solution]

    total, per = R.compute_rewards([one, idx], ["a", "b"], [0.5, 2.0], solution=["1", "3"])
    assert total == [0.5 + 2.0, 0.5 + 6.0] and per == [[1.0, 1.0], [1.0, 3.0]]
    with pytest.raises(SwiftError, match="returned 1 rewards for 2"):
        R.compute_rewards([lambda completions, **kw: [1.0]], ["a", "b"])
    with pytest.raises(SwiftError, match="reward_weights"):
        R.compute_rewards([one], ["a"], [1.0, 2.0])


def test_score_sequences_reads_the_last_token(tiny_qwen2_dir):
    from swift.models.loader import load_model_and_tokenizer

    rm, tok, _ = load_model_and_tokenizer(tiny_qwen2_dir, task="seq_cls")
    rm.eval()
    seqs = [[5, 6, 7, 2], [8, 9, 2], [10, 11, 12, 13, 14, 2]]
    with torch.no_grad():
        alone = [float(rm(input_ids=torch.tensor([s])).logits[0, 0]) for s in seqs]
    assert R.score_sequences(rm, seqs, tok.pad_token_id, batch_size=2) == pytest.approx(alone, abs=1e-5)
    func = R.reward_model_func(rm, tok.pad_token_id)
    assert func.__name__ == "reward_model"
    got = func(completions=["", "", ""], prompt_ids=[s[:1] for s in seqs], completion_ids=[s[1:] for s in seqs])
    assert got == pytest.approx(alone, abs=1e-5)

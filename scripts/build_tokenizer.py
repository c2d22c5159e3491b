"""Build SwiftLab's small offline tokenizer (byte-level BPE, ChatML / Qwen2 special tokens, a real chat template).

It is the tokenizer of the built-in demo model and of every test model, so nothing needs a hub. The output is
committed under `swift/assets/demo_model/`; run this script again only to change it:

    python scripts/build_tokenizer.py [--vocab_size 4096]

The vocabulary is learned from the bundled datasets (`swift/assets/data/*.jsonl`), a short built-in text and
lists of frequent English words and Chinese characters, so English, Chinese and the chat markup compress
reasonably well; bytes never seen still encode (byte-level). The corpus is small, so the vocabulary stops short
of `--vocab_size` (about 2,900 tokens today). The output is deterministic. Changing it changes the demo model's
cache key, so `swift-demo` is rebuilt on next use.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "swift" / "assets" / "demo_model"
DATA = ROOT / "swift" / "assets" / "data"

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

# Qwen2's ChatML chat template (system default "You are a helpful assistant.").
CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

BUILTIN_TEXT = """
You are a helpful assistant. Who are you? I am an AI assistant. What can you do? I can answer questions,
write text, translate, summarize and help with code. The quick brown fox jumps over the lazy dog.
Please explain the following concept in simple words. Give three examples. Write a short poem about the sea.
def add(a, b):
    return a + b
for i in range(10):
    print(i)
Large language models are trained on text. Fine-tuning adapts a model to a task. LoRA adds low-rank adapters.
The capital of France is Paris. One plus one equals two. Thank you! You're welcome. Hello, how are you today?
你好!我是一个人工智能助手。你是谁?请介绍一下你自己。我可以回答问题、写作、翻译和编程。
大语言模型通过学习大量文本来理解和生成语言。微调可以让模型适应特定任务。谢谢!不客气。今天天气很好。
请用简单的话解释下面的概念。北京是中国的首都。一加一等于二。
0 1 2 3 4 5 6 7 8 9 10 100 1000 2024 2025 2026 + - * / = ( ) [ ] { } < > , . ; : ! ? " ' # @ % & _
"""


# Frequent English words, so each becomes one token (with and without a leading space).
COMMON_WORDS = """
the be to of and a in that have i it for not on with he as you do at this but his by from they we say her she
or an will my one all would there their what so up out if about who get which go me when make can like time no just him
know take people into year your good some could them see other than then now look only come its over think also back
after use two how our work first well way even new want because any these give day most us is are was were been has had
did does said made went came got saw took found told asked used called tried left felt became seemed
great little own old right big high different small large next early young important few public bad same able last long
child children world life hand part place case week company system program question government number night point home
water room mother father area money story fact month lot study book eye job word business issue side kind head house
service friend power hour game line end member law car city community name president team minute idea kid body
information school face others level office door health person art war history party result change morning reason
research girl guy moment air teacher force education food answer model data training train learn learning language
computer code file folder error message function class value list string text image video audio sound voice
help please thank thanks sorry hello hi yes okay sure true false open close start stop run read write speak listen
explain describe summarize translate example examples questions answers simple short quick slow
happy sad easy hard clear free full empty hot cold warm cool dark light red blue green yellow black white
three four five six seven eight nine ten hundred thousand million second third
monday tuesday wednesday thursday friday saturday sunday january february march april june july august september
october november december today tomorrow yesterday evening afternoon weekend holiday
dog cat bird fish tree flower sun moon star sky sea river mountain rain snow wind cloud fire earth
assistant user chat tokenizer adapter weights layer layers attention token tokens prompt response
python java script install version update download upload server client network memory device batch size rate
always never often sometimes usually again still already yet very really quite too much many more less best better
between through during before above below under around without within against among across toward
something nothing everything anything someone everyone anyone where why while until although though however therefore
swift robot ai bot
"""

# Frequent Chinese characters, so each becomes one token even when the corpus does not repeat it.
COMMON_HANZI = (
    "的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就那要下以生会自着去之过家学对可她里后小么心多天而能好都然没日于起还发成事只作当想看文无开手十用主行方又如前所本见经头面公同三已老从动两长"
    "知民样现分将外但身些与高意进把法此实回二理美点月明其种声全工己话儿者向情部正名定女问力机给等几很业最间新什打便位因重被走电四第门相次东政海口使教西再平真听世气信北少关并内加化由却代军产入先山五太水万市"
    "眼体别处总才场师书比住员九笑性通目华报立马命张活难神数件安表原车白应路期叫死常提感金何更反合放做系计或司利受光王果亲界及今京务制解各任至清物台象记边共风战干接它许八特觉望直服毛林题建南度统色字请交爱让"
    "认算论百吃义科怎元社术结六功指思非流每青管夫连远资队跟带花快条院变联言权往展该领传近留红治决周保达办运武半候七必城父强步完革深区即求品士转量空甚众技轻程告江语英基派满式李息写呢识极令黄德收脸钱党倒未持"
    "取设始版双历越史商千片容研像找友孩站广改议形委早房音火际则首单据导影失拿网香似斯专石若兵弟谁校读志飞观争究包组造落视济喜离虽坐集编宝谈府拉黑且随格尽剑讲布杀微怕母调局根曾准团段终乐切级克精哪官示冷域具"
    "底防举球约图病河奇土讨急冲故热兴类错票复古围存医需送营坚试配药客施价洗鲜词顺雨雪云星草树鸟鱼狗猫春夏秋冬晚午末假期朋"
)


def corpus() -> list[str]:
    texts = [line for line in BUILTIN_TEXT.splitlines() if line.strip()]
    # Twice each, since BPE merges need a pair seen at least min_frequency (2) times.
    words = list(dict.fromkeys(COMMON_WORDS.split()))
    texts += [f" {w}" for w in words] * 2 + [w.capitalize() for w in words] * 2
    texts += list(dict.fromkeys(COMMON_HANZI)) * 2
    for path in sorted(DATA.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            row = json.loads(line)
            for value in _strings(row):
                texts.append(value)
    return texts


def _strings(obj):
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _strings(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _strings(v)


def build(vocab_size: int, out: Path = OUT) -> None:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        min_frequency=2,
        show_progress=False,
    )
    texts = corpus()
    # Repeat the chat markup so its pieces ("system", "user", "assistant", "\n") become single tokens.
    texts += ["<|im_start|>system\n", "<|im_start|>user\n", "<|im_start|>assistant\n"] * 50
    tok.train_from_iterator(texts, trainer=trainer)
    out.mkdir(parents=True, exist_ok=True)
    tok.save(str(out / "tokenizer.json"))
    config = {
        "tokenizer_class": "Qwen2Tokenizer",
        "model_max_length": 32768,
        "bos_token": None,
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "unk_token": None,
        "clean_up_tokenization_spaces": False,
        "split_special_tokens": False,
        "add_prefix_space": False,
        "errors": "replace",
        "chat_template": CHAT_TEMPLATE,
    }
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")
    print(f"tokenizer: {tok.get_vocab_size()} tokens -> {out}")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vocab_size", type=int, default=4096)
    p.add_argument("--out", type=Path, default=OUT)
    a = p.parse_args()
    build(a.vocab_size, a.out)

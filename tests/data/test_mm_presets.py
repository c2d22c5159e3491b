"""Multimodal presets: each preprocessor fed LOCAL rows shaped like the real hub rows (no network), directly and
through load_datasets with a preset registered on a local file."""
from __future__ import annotations

import io
import json
import wave
from contextlib import contextmanager

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from swift.data import DATASETS, DatasetSpec, find_dataset, load_datasets, normalize, register_dataset
from swift.data.formats import RowError
from swift.data.media import load_audio, load_image
from swift.data.mm_presets import COCO_TRAIN2017_URL, PREPROCESSORS, get_preprocessor
from swift.utils.errors import DataError

MM_PRESETS = ("coco-en", "nocaps", "webvid", "llava-instruct", "sharegpt4v", "textvqa", "vqav2", "aishell1-zh",
              "librispeech")


def png_bytes(color=(200, 10, 10)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (6, 4), color).save(buf, format="PNG")
    return buf.getvalue()


def wav_bytes(n=1600, rate=16000) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.sin(np.arange(n) / 5) * 1000).astype("<i2").tobytes())
    return buf.getvalue()


def run(name: str, raw: dict, mode: str = "sft") -> dict | None:
    """Preprocess like the loader, then normalise."""
    row = get_preprocessor(name)(raw)
    if row is None:
        return None
    return normalize(row, "sharegpt" if "conversations" in row else "messages", mode)


@contextmanager
def local_preset(name: str, path, preprocess: str):
    register_dataset(DatasetSpec(name, local_path=str(path), preprocess=preprocess))
    try:
        yield name
    finally:
        DATASETS[:] = [s for s in DATASETS if s.name != name]


def test_catalog_presets_name_real_preprocessors():
    for name in MM_PRESETS:
        spec = find_dataset(name)
        assert spec is not None and spec.preprocess in PREPROCESSORS and "multimodal" in spec.tags
        assert spec.ms_id or spec.hf_id
    assert find_dataset("modelscope/coco_2014_caption").name == "coco-en"
    with pytest.raises(ValueError, match="unknown dataset preprocessor 'nope'"):
        register_dataset(DatasetSpec("x-pre", hf_id="a/b", preprocess="nope"))
    with pytest.raises(DataError, match="no ModelScope id"):  # raised before any network access
        load_datasets(["nocaps"], use_hf=False)


def test_coco_modelscope_and_karpathy_layouts():
    image = {"bytes": png_bytes(), "path": "COCO_train2014_000000057870.jpg"}
    out = run("coco_caption", {"image": image, "caption": "A restaurant with tables.&&Chairs around a table.",
                               "image_id": 57870})
    assert out == {"messages": [{"role": "user", "content": "<image>Please describe the image."},
                                {"role": "assistant", "content": "A restaurant with tables."}], "images": [image]}
    url = "http://images.cocodataset.org/train2014/COCO_train2014_000000057870.jpg"
    out = run("coco_caption", {"filepath": "train2014", "sentids": [787980, 789366], "filename": url[-31:],
                               "imgid": 40504, "split": "train", "sentences": ["A restaurant.", "Chairs."],
                               "cocoid": 57870, "url": url})
    assert out["images"] == [url] and out["messages"][1]["content"] == "A restaurant."
    with pytest.raises(RowError, match="missing column 'image' or 'url'") as e:
        run("coco_caption", {"caption": "x"})
    assert e.value.field == "image"


def test_nocaps():
    raw = {"image": {"bytes": png_bytes(), "path": None},
           "image_coco_url": "https://s3.amazonaws.com/nocaps/val/0013ea2087020901.jpg",
           "image_date_captured": "2018-11-06 11:04:33", "image_file_name": "0013ea2087020901.jpg",
           "image_height": 1024, "image_width": 732, "image_id": 0, "image_license": 0,
           "image_open_images_id": "0013ea2087020901", "annotations_ids": [0, 1],
           "annotations_captions": ["A baby is standing in front of a house.", "A little girl in a white jacket."]}
    out = run("nocaps", raw)
    assert out["images"] == [raw["image"]] and out["messages"][1]["content"] == raw["annotations_captions"][0]


def test_webvid():
    raw = {"videoid": 21179416, "contentUrl": "https://ak.picdn.net/shutterstock/videos/21179416/preview/stock.mp4",
           "duration": "PT00H00M11S", "page_dir": "006001_006050", "name": "Aerial shot winter forest"}
    out = run("webvid", raw)
    assert out == {"messages": [{"role": "user", "content": "<video>Please describe the video."},
                                {"role": "assistant", "content": "Aerial shot winter forest"}],
                   "videos": [raw["contentUrl"]]}


def test_llava_instruct_and_sharegpt4v_map_coco_files_to_urls():
    conv = [{"from": "human", "value": "What are the colors of the bus in the image?\n<image>"},
            {"from": "gpt", "value": "The bus in the image is white and red."},
            {"from": "human", "value": "What feature can be seen on the back of the bus?"},
            {"from": "gpt", "value": "The back of the bus features an advertisement."}]
    out = run("llava_instruct", {"id": "000000033471", "image": "000000033471.jpg", "conversations": conv})
    assert out["images"] == [COCO_TRAIN2017_URL + "000000033471.jpg"]
    assert out["messages"][0]["content"] == conv[0]["value"] and len(out["messages"]) == 4
    out = run("sharegpt4v", {"id": "000000000009", "image": "coco/train2017/000000000009.jpg", "conversations": conv})
    assert out["images"] == [COCO_TRAIN2017_URL + "000000000009.jpg"]
    for image in ("sam/images/sa_545504.jpg", "llava/llava_pretrain/images/00013/000132985.jpg",
                  "gqa/images/2354786.jpg"):
        assert run("sharegpt4v", {"id": "x", "image": image, "conversations": conv}) is None
    text_only = [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}]
    assert run("llava_instruct", {"id": "t", "conversations": text_only}) == {
        "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}


def test_textvqa_takes_the_most_frequent_answer():
    raw = {"image_id": "003a8ae2ef43b901", "question_id": 34602, "question": "what is the brand of this camera?",
           "question_tokens": ["what", "is"], "image": {"bytes": png_bytes(), "path": None}, "image_width": 1024,
           "image_height": 664, "flickr_original_url": "https://farm2.staticflickr.com/4/5566811_bc00d504a6_o.jpg",
           "flickr_300k_url": "https://c4.staticflickr.com/5566811_bc00d504a6_z.jpg",
           "answers": ["nous les gosses", "dakota", "clos culombu", "dakota digital", "dakota", "dakota", "dakota",
                       "dakota digital", "dakota", "dakota"], "image_classes": ["Cassette deck"], "set_name": "train",
           "ocr_tokens": ["DAKOTA"]}
    out = run("textvqa", raw)
    assert out["messages"] == [{"role": "user", "content": "<image>what is the brand of this camera?"},
                               {"role": "assistant", "content": "dakota"}]
    with pytest.raises(RowError, match="no answer"):
        run("textvqa", {**raw, "answers": [""] * 10})


def test_vqav2():
    raw = {"question_type": "what is this", "multiple_choice_answer": "net",
           "answers": [{"answer": "net", "answer_confidence": "maybe", "answer_id": 1}], "image_id": 458752,
           "answer_type": "other", "question_id": 458752000, "question": "What is this photo taken looking through?",
           "image": {"bytes": png_bytes(), "path": None}}
    out = run("vqav2", raw)
    assert out["messages"][1]["content"] == "net" and out["images"] == [raw["image"]]


def test_aishell1_and_librispeech():
    raw = {"Audio:FILE": "/data/aishell/BAC009S0002W0122.wav", "Text:LABEL": "而 对 楼市 成交 抑制"}
    out = run("aishell1", raw)
    assert out == {"messages": [{"role": "user", "content": "<audio>语音转文本"},
                                {"role": "assistant", "content": "而对楼市成交抑制"}],
                   "audios": ["/data/aishell/BAC009S0002W0122.wav"]}
    audio = {"bytes": wav_bytes(), "path": "374-180298-0000.flac"}
    raw = {"file": "374-180298-0000.flac", "audio": audio, "text": "CHAPTER SIXTEEN I MIGHT HAVE TOLD YOU",
           "speaker_id": 374, "chapter_id": 180298, "id": "374-180298-0000"}
    out = run("librispeech", raw)
    assert out["audios"] == [audio] and out["messages"][1]["content"] == raw["text"]
    decoded = {**raw, "audio": {"array": np.zeros(320, np.float32), "sampling_rate": 16000, "path": None}}
    assert load_audio(run("librispeech", decoded)["audios"][0]).shape == (320,)


# ------------------------------------------------------------------------------------ through load_datasets
def test_coco_parquet_through_the_loader(tmp_path):
    rows = [{"image": {"bytes": png_bytes((i, 0, 0)), "path": f"COCO_{i}.jpg"}, "caption": f"Caption {i}.&&Other.",
             "image_id": i} for i in range(3)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "coco.parquet")
    with local_preset("test-coco", tmp_path / "coco.parquet", "coco_caption") as name:
        train, val = load_datasets([name], split_dataset_ratio=0.34)
    rows_out = sorted(train + val, key=lambda r: r["messages"][1]["content"])
    assert [r["messages"][1]["content"] for r in rows_out] == ["Caption 0.", "Caption 1.", "Caption 2."]
    assert rows_out[2]["messages"][0]["content"] == "<image>Please describe the image."
    assert rows_out[2]["images"][0]["path"] == "COCO_2.jpg"  # bytes present: the path is left as it is
    assert load_image(rows_out[2]["images"][0]).getpixel((0, 0)) == (2, 0, 0)


def test_llava_jsonl_skips_rows_it_cannot_fetch(tmp_path, capture_swift_log):
    conv = [{"from": "human", "value": "<image>\nWhat is it?"}, {"from": "gpt", "value": "A bus."}]
    rows = [{"id": "1", "image": "000000000001.jpg", "conversations": conv},
            {"id": "2", "image": "gqa/images/1.jpg", "conversations": conv},
            {"id": "3", "image": "000000000003.jpg", "conversations": conv}]
    (tmp_path / "llava.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (tmp_path / "gqa.jsonl").write_text(json.dumps(rows[1]) + "\n")
    with local_preset("test-llava", tmp_path / "llava.jsonl", "llava_instruct") as name:
        train, _ = load_datasets([name])
    assert [r["images"] for r in train] == [[COCO_TRAIN2017_URL + "000000000001.jpg"],
                                            [COCO_TRAIN2017_URL + "000000000003.jpg"]]
    assert any("skipped 1 rows" in r.getMessage() for r in capture_swift_log)
    with local_preset("test-gqa", tmp_path / "gqa.jsonl", "llava_instruct") as name:
        with pytest.raises(DataError, match="skipped all 1"):
            load_datasets([name])


def test_aishell_local_copy_resolves_audio_paths(tmp_path):
    (tmp_path / "wav").mkdir()
    (tmp_path / "wav" / "a.wav").write_bytes(wav_bytes())
    (tmp_path / "aishell.jsonl").write_text(json.dumps({"Audio:FILE": "wav/a.wav", "Text:LABEL": "你 好"}) + "\n"
                                            + json.dumps({"Text:LABEL": "没 有 音频"}) + "\n")
    with local_preset("test-aishell", tmp_path / "aishell.jsonl", "aishell1") as name:
        with pytest.raises(DataError, match=r"row 2, field 'Audio:FILE': missing column 'Audio:FILE'"):
            load_datasets([name])
        with pytest.raises(DataError, match="more than 10%"):
            load_datasets([name], strict=False)  # 1 of 2 rows bad
    (tmp_path / "aishell.jsonl").write_text(json.dumps({"Audio:FILE": "wav/a.wav", "Text:LABEL": "你 好"}) + "\n")
    with local_preset("test-aishell", tmp_path / "aishell.jsonl", "aishell1") as name:
        train, _ = load_datasets([name])
    assert train[0]["audios"] == [str(tmp_path / "wav" / "a.wav")]
    assert train[0]["messages"][1]["content"] == "你好"
    assert load_audio(train[0]["audios"][0]).shape == (1600,)


def test_coco_subset_is_modelscope_only():
    from swift.data.catalog import find_dataset

    spec = find_dataset("coco-en")
    assert spec.hub_subset(use_hf=False) == "coco_2014_caption" and spec.hub_subset(use_hf=True) is None
    assert find_dataset("librispeech").hub_subset(use_hf=True) == "clean"

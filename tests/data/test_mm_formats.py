"""Multimodal rows: media lists and tags in every chat format, OpenAI content parts, checks, and media paths
resolved by the loader."""
from __future__ import annotations

import base64
import json
import os

import pytest
from PIL import Image

from swift.data import load_datasets, normalize
from swift.data.formats import RowError
from swift.data.media import load_image
from swift.utils.errors import DataError


def chat(q, a, **extra):
    return {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}], **extra}


def test_messages_with_tags_keep_their_lists():
    raw = chat("<image>Which is bigger, this<image> or <video>?", "The video.", images=["a.jpg", "b.jpg"],
               videos=[["f1.jpg", "f2.jpg"]], audios=[], id=3)
    out = normalize(raw, "messages")
    assert out == {"messages": raw["messages"], "images": ["a.jpg", "b.jpg"], "videos": [["f1.jpg", "f2.jpg"]]}


def test_rows_without_media_are_unchanged():
    raw = chat("Hi <image> in HTML is a tag", "Yes.", source="web")  # no media column: tags are plain text
    assert normalize(raw, "messages") == {"messages": raw["messages"]}
    assert normalize({"instruction": "q", "output": "a", "images": None}, "alpaca") == chat("q", "a")
    assert normalize({"query": "q", "response": "a", "image": ""}, "query_response") == chat("q", "a")


def test_tag_count_must_match_the_list():
    with pytest.raises(RowError, match=r"2 <image> tags but 1 item in 'images'") as e:
        normalize(chat("<image><image>Compare.", "Same.", images=["a.jpg"]), "messages")
    assert (e.value.field, e.value.kind) == ("images", "media mismatch")
    with pytest.raises(RowError, match=r"1 <audio> tag but no 'audios'"):
        normalize(chat("<audio>What is said?", "Hello.", audios=[]), "messages")
    with pytest.raises(RowError, match=r"1 <image> tag but 2 items in 'image'"):
        normalize({"query": "<image>?", "response": "r", "image": ["a.jpg", "b.jpg"]}, "query_response")


def test_missing_tags_go_to_the_start_of_the_first_user_message():
    raw = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is here?"},
                        {"role": "assistant", "content": "A cat."}, {"role": "user", "content": "Sure?"},
                        {"role": "assistant", "content": "Yes."}],
           "audios": ["a.wav"], "images": ["a.jpg", "b.jpg"], "videos": ["v.mp4"]}
    out = normalize(raw, "messages")
    assert out["messages"][1]["content"] == "<image><image><video><audio>What is here?"
    assert out["messages"][0]["content"] == "Be brief." and out["messages"][3]["content"] == "Sure?"
    assert raw["messages"][1]["content"] == "What is here?"  # the raw row is not modified
    # Tags of one modality present, another absent: only the absent one is added.
    out = normalize(chat("Look: <image>", "ok", images=["a.jpg"], audios=["a.wav"]), "messages")
    assert out["messages"][0]["content"] == "<audio>Look: <image>"


def test_tags_in_any_turn_count_in_message_order():
    raw = {"messages": [{"role": "user", "content": "<image>Describe."}, {"role": "assistant", "content": "A dog."},
                        {"role": "user", "content": "And <image>?"}, {"role": "assistant", "content": "A cat."}],
           "images": ["dog.jpg", "cat.jpg"]}
    assert normalize(raw, "messages")["images"] == ["dog.jpg", "cat.jpg"]


def test_openai_content_parts_become_tags_and_items():
    b64 = base64.b64encode(b"RIFF....WAVE").decode()
    raw = {"messages": [
        {"role": "system", "content": "You see and hear."},
        {"role": "user", "content": [
            {"type": "text", "text": "First "}, {"type": "image", "image": "a.jpg"},
            {"type": "text", "text": " then "}, {"type": "image_url", "image_url": {"url": "https://x.org/b.png"}},
            {"type": "video", "video": ["f1.jpg", "f2.jpg"]}, {"type": "input_audio",
                                                             "input_audio": {"data": b64, "format": "wav"}},
            {"type": "image", "url": "c.jpg"}]},
        {"role": "assistant", "content": "Done."}]}
    out = normalize(raw, "messages")
    assert out["messages"][1] == {"role": "user", "content": "First <image> then <image><video><audio><image>"}
    assert out["images"] == ["a.jpg", "https://x.org/b.png", "c.jpg"]
    assert out["videos"] == [["f1.jpg", "f2.jpg"]]
    assert out["audios"] == [f"data:audio/wav;base64,{b64}"]


def test_content_part_errors_name_the_part():
    def row(*parts):
        return {"messages": [{"role": "user", "content": list(parts)}, {"role": "assistant", "content": "a"}]}

    with pytest.raises(RowError, match="unknown content part type 'file'") as e:
        normalize(row({"type": "text", "text": "hi"}, {"type": "file", "file": "x"}), "messages")
    assert e.value.field == "messages[0].content[1].type"
    with pytest.raises(RowError, match="without its image") as e:
        normalize(row({"type": "image_url", "image_url": {}}), "messages")
    assert e.value.field == "messages[0].content[0]"
    with pytest.raises(RowError, match="keep one"):
        normalize({**row({"type": "image", "image": "a.jpg"}), "images": ["b.jpg"]}, "messages")


def test_sharegpt_with_llama_factory_and_ms_swift_columns():
    conv = [{"from": "human", "value": "<image>What is it?"}, {"from": "gpt", "value": "A cat."}]
    assert normalize({"conversations": conv, "images": ["cat.jpg"]}, "sharegpt")["images"] == ["cat.jpg"]
    hub_image = {"bytes": b"\x89PNG...", "path": "cat.png"}
    out = normalize({"conversations": conv, "image": hub_image}, "sharegpt")  # HF datasets' single Image column
    assert out["images"] == [hub_image]
    roles = [{"role": "user", "content": "Listen."}, {"role": "assistant", "content": "Rain."}]
    out = normalize({"conversations": roles, "audio": "rain.wav", "system": "Be brief."}, "sharegpt")
    assert out["messages"][1]["content"] == "<audio>Listen." and out["audios"] == ["rain.wav"]
    out = normalize({"conversations": roles, "video": ["f1.jpg", "f2.jpg"]}, "sharegpt")  # one video as frames
    assert out["videos"] == [["f1.jpg", "f2.jpg"]] and out["messages"][0]["content"] == "<video>Listen."
    with pytest.raises(RowError, match="both 'image' and 'images'"):
        normalize({"conversations": conv, "image": "a.jpg", "images": ["b.jpg"]}, "sharegpt")


def test_alpaca_and_query_response_with_media():
    out = normalize({"instruction": "Describe", "input": "briefly", "output": "A cat.", "images": "cat.jpg"},
                    "alpaca")
    assert out == {"messages": [{"role": "user", "content": "<image>Describe\nbriefly"},
                                {"role": "assistant", "content": "A cat."}], "images": ["cat.jpg"]}
    out = normalize({"query": "<audio>Transcribe", "response": "hi", "audios": '["a.wav"]'}, "query_response")
    assert out["audios"] == ["a.wav"]  # a JSON list in a CSV cell


@pytest.mark.parametrize("media, field", [
    ({"images": [3]}, "images[0]"),
    ({"images": [None]}, "images[0]"),
    ({"images": ["ok.jpg", ""]}, "images[1]"),
    ({"images": [["nested.jpg"]]}, "images[0]"),
    ({"images": [{"bytes": None, "path": None}]}, "images[0]"),
    ({"videos": [["f1.jpg", 7]]}, "videos[0][1]"),
    ({"audios": True}, "audios[0]"),
    ({"images": "[not json"}, "images"),
])
def test_bad_media_lists_name_the_field(media, field):
    with pytest.raises(RowError) as e:
        normalize(chat("q", "a", **media), "messages")
    assert e.value.field == field


def test_decoded_objects_are_accepted():
    import numpy as np

    img = Image.new("RGB", (2, 2))
    wave = np.zeros(16, np.float32)
    out = normalize(chat("q", "a", images=[img], audios=[wave, [0.0, 0.1]]), "messages")
    assert out["images"] == [img] and out["audios"][0] is wave
    assert out["messages"][0]["content"] == "<image><audio><audio>q"
    out = normalize({"query": "q", "response": "a", "audio": [0.0, 0.5, 0.25]}, "query_response")
    assert out["audios"] == [[0.0, 0.5, 0.25]]  # one waveform, not three items


def test_pt_and_infer_modes_keep_media():
    assert normalize({"text": "A cat on a mat.", "images": ["cat.jpg"]}, "text", mode="pt") == {
        "text": "<image>A cat on a mat.", "images": ["cat.jpg"]}
    assert normalize(chat("<image>q", "a", images=["x.jpg"]), "messages", mode="pt") == {
        "text": "<image>q\na", "images": ["x.jpg"]}
    prompt = {"messages": [{"role": "user", "content": "What is it?"}], "images": ["x.jpg"]}
    assert normalize(prompt, "messages", mode="infer") == {
        "messages": [{"role": "user", "content": "<image>What is it?"}], "images": ["x.jpg"]}


# ------------------------------------------------------------------------------------ loader: media paths
def test_relative_media_paths_resolve_against_the_dataset_folder(tmp_path, monkeypatch):
    data = tmp_path / "data"
    (data / "img").mkdir(parents=True)
    Image.new("RGB", (4, 4), (1, 2, 3)).save(data / "img" / "cat.png")
    (tmp_path / "work").mkdir()
    Image.new("RGB", (4, 4), (9, 9, 9)).save(tmp_path / "work" / "here.png")
    monkeypatch.chdir(tmp_path / "work")
    b64 = base64.b64encode((data / "img" / "cat.png").read_bytes()).decode()
    rows = [
        chat("q", "a", images=["img/cat.png", "here.png", "https://x.org/c.jpg", b64, str(data / "img" / "cat.png")]),
        chat("q", "a", videos=[["img/cat.png", "img/cat.png"]], image={"bytes": None, "path": "img/cat.png"}),
        chat("q", "a", images=["img/gone.png"]),
    ]
    (data / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    train, _ = load_datasets([str(data / "train.jsonl")])
    cat = str(data / "img" / "cat.png")
    assert train[0]["images"] == [cat, str(tmp_path / "work" / "here.png"), "https://x.org/c.jpg", b64, cat]
    assert train[1]["videos"] == [[cat, cat]] and train[1]["images"] == [{"bytes": None, "path": cat}]
    assert train[2]["images"] == [str(data / "img" / "gone.png")]  # still missing, but named in full
    assert all(os.path.isabs(p) for p in train[0]["images"][:2])
    assert load_image(train[0]["images"][0]).getpixel((0, 0)) == (1, 2, 3)
    assert load_image(train[1]["images"][0]).size == (4, 4)


def test_loader_errors_name_file_row_and_media_field(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(chat("q", "a")) + "\n" + json.dumps(chat("<image><image>q", "a", images=["x.png"])))
    with pytest.raises(DataError, match=r"bad.jsonl, row 2, field 'images': 2 <image> tags but 1 item"):
        load_datasets([str(path)])

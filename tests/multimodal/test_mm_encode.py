"""MultiModalEncoder: placeholders, media token expansion, labels, truncation, video patches, packing."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from swift.data.mm_dataset import MultiModalCollator
from swift.data.mm_encode import IGNORE, MultiModalEncoder
from swift.data.mm_qwen import video_patches
from swift.templates import EncodeError, get_template
from swift.trainers.multimodal import packed_mrope_position_ids
from tests.multimodal.conftest import audio_rows, vl_rows


def _load(model_dir: str):
    from swift.models.loader import load_model_and_tokenizer

    model, processor, _ = load_model_and_tokenizer(model_dir)
    return model.eval(), processor


@pytest.fixture(scope="module")
def qwen_vl(tiny_qwen2_vl_dir):
    return _load(tiny_qwen2_vl_dir)


def _encoder(processor, model, **kw) -> MultiModalEncoder:
    template = get_template(processor, max_length=kw.pop("max_length", None),
                            truncation_strategy=kw.pop("truncation_strategy", "delete"))
    return MultiModalEncoder(template, processor, model.config.model_type, **kw)


def test_labels_cover_only_the_reply_never_media_tokens(qwen_vl, media_dir):
    model, processor = qwen_vl
    enc = _encoder(processor, model)
    tok = processor.tokenizer
    row = {"messages": [{"role": "user", "content": "<image>Look. <image> And <video>?"},
                        {"role": "assistant", "content": "Two pictures, one video."}],
           "images": [str(media_dir / "img0.png"), str(media_dir / "img1.png")], "videos": [str(media_dir / "vid0")]}
    out = enc.encode(row)
    ids, labels = out["input_ids"], out["labels"]
    labeled = [t for t, lab in zip(ids, labels) if lab != IGNORE]
    assert tok.decode(labeled) == "Two pictures, one video.<|im_end|>"
    img_id, vid_id = enc.expand_ids["image"], enc.expand_ids["video"]
    assert all(lab == IGNORE for t, lab in zip(ids, labels) if t in (img_id, vid_id))
    merge = processor.image_processor.merge_size ** 2
    assert ids.count(img_id) == int(out["image_grid_thw"].prod(-1).sum()) // merge
    assert ids.count(vid_id) == int(out["video_grid_thw"].prod(-1).sum()) // merge
    assert out["pixel_values"].shape[0] == int(out["image_grid_thw"].prod(-1).sum())
    assert out["video_grid_thw"].tolist()[0][0] == 2  # 3 frames padded to 4, 2 frames per temporal patch
    types = out["mm_token_type_ids"]
    assert [t for t, i in zip(types, ids) if i == img_id] == [1] * ids.count(img_id)
    assert [t for t, i in zip(types, ids) if i == vid_id] == [2] * ids.count(vid_id)
    assert set(types) == {0, 1, 2}
    # the same row through the model: a finite loss
    batch = MultiModalCollator(tok.pad_token_id)([out])
    assert torch.isfinite(model(**batch).loss)


def test_tag_and_item_counts_must_match(qwen_vl, media_dir):
    model, processor = qwen_vl
    enc = _encoder(processor, model)
    row = {"messages": [{"role": "user", "content": "<image><image>?"}, {"role": "assistant", "content": "x"}],
           "images": [str(media_dir / "img0.png")]}
    with pytest.raises(EncodeError, match="2 <image> tags in the messages but 1 items in 'images'"):
        enc.encode(row)
    audio = {"messages": [{"role": "user", "content": "<audio>?"}, {"role": "assistant", "content": "x"}],
             "audios": ["a.wav"]}
    with pytest.raises(EncodeError, match="qwen2_vl models take no audios"):
        enc.encode(audio)


def test_the_models_own_media_token_in_text_is_refused(qwen_vl, media_dir):
    model, processor = qwen_vl
    enc = _encoder(processor, model)
    row = {"messages": [{"role": "user", "content": "<image> and <|image_pad|>"}, {"role": "assistant", "content": "x"}],
           "images": [str(media_dir / "img0.png")]}
    with pytest.raises(EncodeError, match="not as the model's own"):
        enc.encode(row)


def test_truncation_never_cuts_media_tokens(qwen_vl, media_dir):
    model, processor = qwen_vl
    row = vl_rows(media_dir, 1)[0]
    full = len(_encoder(processor, model).encode(row)["input_ids"])
    with pytest.raises(EncodeError, match="more than max_length"):
        _encoder(processor, model, max_length=full - 1).encode(row)
    with pytest.raises(EncodeError, match="would cut media tokens"):
        _encoder(processor, model, max_length=10, truncation_strategy="left").encode(row)
    # cutting text only is fine: the last tokens of the reply go
    out = _encoder(processor, model, max_length=full - 2, truncation_strategy="right").encode(row)
    assert len(out["input_ids"]) == full - 2


def test_pixel_budget_changes_the_number_of_image_tokens(qwen_vl, media_dir):
    model, processor = qwen_vl
    row = {"messages": [{"role": "user", "content": "<image>?"}, {"role": "assistant", "content": "x"}],
           "images": [str(media_dir / "img2.png")]}
    small = _encoder(processor, model, max_pixels=28 * 28 * 4).encode(row)
    big = _encoder(processor, model, max_pixels=28 * 28 * 64, min_pixels=28 * 28 * 16).encode(row)
    assert int(small["image_grid_thw"].prod()) < int(big["image_grid_thw"].prod())
    assert len(small["input_ids"]) < len(big["input_ids"])


def test_video_patches_put_frame_t_in_time_slot_t(qwen_vl, media_dir):
    from PIL import Image

    _, processor = qwen_vl
    ip = processor.image_processor
    frames = [Image.open(media_dir / "vid0" / f"{f:03d}.png").convert("RGB") for f in range(2)]
    pv, grid = video_patches(ip, frames)
    tps, p = ip.temporal_patch_size, ip.patch_size
    assert grid[0] == 1 and tps == 2
    per_slot = pv.reshape(pv.shape[0], 3, tps, p, p)
    for t in range(2):
        one = np.asarray(ip(images=[frames[t]], return_tensors="np")["pixel_values"]).reshape(-1, 3, tps, p, p)
        np.testing.assert_allclose(per_slot[:, :, t], one[:, :, 0], rtol=0, atol=1e-6)
    # a picture is a video of that picture twice: the same patches as the image processor
    img_pv, img_grid = video_patches(ip, [frames[0], frames[0]])
    ref = ip(images=[frames[0]], return_tensors="np")
    np.testing.assert_allclose(img_pv, np.asarray(ref["pixel_values"]), atol=1e-6)
    assert img_grid == list(np.asarray(ref["image_grid_thw"])[0])


def _separate_and_packed(model, rows_out, pad_id, mrope: bool):
    padded = MultiModalCollator(pad_id)(rows_out)
    flat = MultiModalCollator(pad_id, padding_free=True)(rows_out)
    with torch.no_grad():
        ref = model(**{k: v for k, v in padded.items() if k != "labels"}).logits
        if mrope:
            flat = {**flat, "position_ids": packed_mrope_position_ids(model, flat)}
        got = model(use_cache=False, **{k: v for k, v in flat.items() if k != "labels"}).logits
    diffs, off = [], 0
    for i, r in enumerate(rows_out):
        n = len(r["input_ids"])
        diffs.append(float((ref[i, :n] - got[0, off:off + n]).abs().max()))
        off += n
    return diffs


def test_packed_rows_equal_separate_rows_qwen2_vl(qwen_vl, media_dir):
    model, processor = qwen_vl
    enc = _encoder(processor, model)
    rows = vl_rows(media_dir, 4) + [{"messages": [{"role": "user", "content": "text only"},
                                                  {"role": "assistant", "content": "fine"}]}]
    outs = [enc.encode(r) for r in rows]
    diffs = _separate_and_packed(model, outs, processor.tokenizer.pad_token_id, mrope=True)
    assert max(diffs) < 1e-4, diffs


def test_audio_rows_expand_and_pack(tiny_qwen2_audio_dir, media_dir):
    model, processor = _load(tiny_qwen2_audio_dir)
    enc = _encoder(processor, model)
    rows = audio_rows(media_dir, 3)
    outs = [enc.encode(r) for r in rows]
    tok = processor.tokenizer
    audio_id = enc.expand_ids["audio"]
    for out, row in zip(outs, rows):
        labeled = [t for t, lab in zip(out["input_ids"], out["labels"]) if lab != IGNORE]
        assert tok.decode(labeled) == row["messages"][1]["content"] + "<|im_end|>"
        assert out["input_ids"].count(audio_id) > 1
        assert "input_features" in out and "feature_attention_mask" in out
    assert outs[0]["input_ids"].count(audio_id) < outs[1]["input_ids"].count(audio_id)  # 0.5 s vs 0.8 s
    assert "Audio 1: " in tok.decode(outs[0]["input_ids"])
    diffs = _separate_and_packed(model, outs, tok.pad_token_id, mrope=False)
    assert max(diffs) < 1e-4, diffs


def test_llava_rows_encode_and_run(tiny_llava_dir, media_dir):
    model, processor = _load(tiny_llava_dir)
    enc = _encoder(processor, model)
    outs = [enc.encode(r) for r in vl_rows(media_dir, 3) if "images" in r]
    image_id = enc.expand_ids["image"]
    n = outs[0]["input_ids"].count(image_id)
    assert n > 1 and all(o["input_ids"].count(image_id) == n for o in outs)  # fixed-size images
    batch = MultiModalCollator(processor.tokenizer.pad_token_id)(outs)
    assert torch.isfinite(model(**batch).loss)


def test_video_file_through_the_encoder(qwen_vl, tmp_path):
    av = pytest.importorskip("av", reason="PyAV is not installed (pip install 'swiftlab[video]')")
    path = tmp_path / "clip.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(20):  # 2 s
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 10 * i, np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    model, processor = qwen_vl
    row = {"messages": [{"role": "user", "content": "<video>What happens?"},
                        {"role": "assistant", "content": "It gets brighter."}], "videos": [str(path)]}
    out = _encoder(processor, model, fps=2.0).encode(row)  # 2 s * 2 fps = 4 frames = 2 temporal patches
    assert out["video_grid_thw"].tolist()[0][0] == 2
    batch = MultiModalCollator(processor.tokenizer.pad_token_id)([out])
    assert torch.isfinite(model(**batch).loss)

"""Preprocessors of the multimodal preset datasets: one hub row in its real column layout -> one raw row.

The catalog (`swift.data.catalog`) names a preprocessor by its key in `PREPROCESSORS`; the loader applies it to
every raw row of the preset (hub rows, or a local copy registered with `local_path`) before normalising. Each
returns a row in a format of `swift.data.formats` (`messages` or `sharegpt`, with `images` / `videos` / `audios`),
or None to skip a row it cannot use (counted in the log), and raises `RowError` naming a missing column.

Media stay raw: Hugging Face image / audio columns arrive from `Dataset.to_list()` as `{"bytes", "path"}` dicts
(or decoded PIL images / `{"array", "sampling_rate"}` from other readers) and are passed on as they are.
Datasets that ship only image FILE NAMES (LLaVA-Instruct, ShareGPT4V) get public COCO URLs
(`http://images.cocodataset.org/train2017/<file>`) for COCO images; rows whose images live in other archives (SAM,
GQA, OCR-VQA, Visual Genome, WikiArt, ...) are skipped, since no public per-image URL exists for them.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from swift.data.formats import RowError

COCO_TRAIN2017_URL = "http://images.cocodataset.org/train2017/"
CAPTION_QUERY = "Please describe the image."
VIDEO_CAPTION_QUERY = "Please describe the video."
ASR_QUERY_ZH = "语音转文本"  # ms-swift's AIShell prompt ("speech to text")
ASR_QUERY_EN = "Transcribe the speech."

Preprocessor = Callable[[Mapping[str, Any]], "dict | None"]


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, (str, list, tuple)) and len(value) == 0)


def _need(row: Mapping[str, Any], *keys: str) -> Any:
    """The first of `keys` with a value, or RowError naming them (the hub layout changed, or a wrong dataset)."""
    for key in keys:
        value = row.get(key)
        if not _blank(value):
            return value
    names = " or ".join(f"'{k}'" for k in keys)
    raise RowError(keys[0], f"missing column {names} (the preset's preprocessor reads the hub's columns; "
                            f"this row has {sorted(map(str, row))})", "missing column")


def _chat(query: str, response: str, **media: list) -> dict:
    row: dict[str, Any] = {"messages": [{"role": "user", "content": query}, {"role": "assistant", "content": response}]}
    row.update({key: items for key, items in media.items() if items})
    return row


def _text(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise RowError(field, f"expected a non-empty string, got {value!r}", "empty content")
    return value.strip()


def coco_caption(row: Mapping[str, Any]) -> dict:
    """COCO 2014 captions.

    ModelScope `modelscope/coco_2014_caption` (subset `coco_2014_caption`): `image` (an Image column), `caption`
    (a string; several captions joined by "&&": the first is kept, as ms-swift does), `image_id`.
    Hugging Face `yerevann/coco-karpathy`: `url` (`http://images.cocodataset.org/<split>2014/<file>`), `sentences`
    (a list of captions: the first is kept), `filepath`, `filename`, `cocoid`, `imgid`, `sentids`, `split`.
    """
    image = _need(row, "image", "url")
    if row.get("caption"):
        return _chat(CAPTION_QUERY, _text(_text(row["caption"], "caption").split("&&")[0], "caption"), images=[image])
    first = _need(row, "sentences", "caption")
    first = first if isinstance(first, str) else first[0]
    if isinstance(first, dict):  # some copies keep Karpathy's {"raw": ..., "tokens": ...}
        first = first.get("raw")
    return _chat(CAPTION_QUERY, _text(first, "sentences"), images=[image])


def nocaps(row: Mapping[str, Any]) -> dict:
    """nocaps (Hugging Face `lmms-lab/NoCaps`, split `validation`, 4,500 images of Open Images): `image` (an Image
    column), `image_coco_url`, `image_file_name`, `image_id`, `image_open_images_id`, `image_height`,
    `image_width`, `image_date_captured`, `image_license`, `annotations_ids`, `annotations_captions` (10 captions:
    the first is kept)."""
    image = _need(row, "image", "image_coco_url")
    captions = _need(row, "annotations_captions")
    caption = captions if isinstance(captions, str) else captions[0]
    return _chat(CAPTION_QUERY, _text(caption, "annotations_captions"), images=[image])


def webvid(row: Mapping[str, Any]) -> dict:
    """WebVid-10M (Hugging Face `TempoFunk/webvid-10M`, CSV partitions): `videoid`, `contentUrl` (an mp4 preview
    URL), `duration` (ISO 8601, e.g. "PT00H00M11S"), `page_dir`, `name` (the caption). Many preview URLs are no
    longer served: rows fail at loading time with a MediaError (drop them with strict=False)."""
    return _chat(VIDEO_CAPTION_QUERY, _text(_need(row, "name"), "name"), videos=[_need(row, "contentUrl")])


def _coco_url(image: str) -> str | None:
    """A public URL for a COCO train2017 image given as a bare file name or `coco/train2017/<file>`, else None."""
    name = image.strip()
    if name.startswith("coco/train2017/"):
        name = name[len("coco/train2017/"):]
    if "/" in name or not name.lower().endswith(".jpg"):
        return None
    return COCO_TRAIN2017_URL + name


def _llava_style(row: Mapping[str, Any]) -> dict | None:
    conversations = _need(row, "conversations")
    image = row.get("image")
    if _blank(image):
        return {"conversations": conversations}  # a text-only turn of the mix
    if not isinstance(image, str):
        return {"conversations": conversations, "images": [image]}
    url = _coco_url(image)
    return None if url is None else {"conversations": conversations, "images": [url]}


def llava_instruct(row: Mapping[str, Any]) -> dict | None:
    """LLaVA-Instruct-150K (ModelScope `AI-ModelScope/LLaVA-Instruct-150K`, Hugging Face
    `liuhaotian/LLaVA-Instruct-150K`): `id`, `image` (a COCO train2017 file name, "000000033471.jpg"),
    `conversations` (sharegpt turns `{"from": "human"|"gpt", "value"}`, the first human value holding "<image>").
    The image becomes its public COCO URL; rows whose image is not a COCO train2017 file are skipped."""
    return _llava_style(row)


def sharegpt4v(row: Mapping[str, Any]) -> dict | None:
    """ShareGPT4V (ModelScope `AI-ModelScope/ShareGPT4V`, Hugging Face `Lin-Chen/ShareGPT4V`, subsets
    `ShareGPT4V` and `ShareGPT4V-PT`): `id`, `image` (a path inside the authors' image archives:
    "coco/train2017/...", "sam/images/...", "llava/llava_pretrain/images/...", "wikiart/images/...",
    "share_textvqa/images/...", "web-celebrity/images/...", "web-landmark/images/..."), `conversations` (sharegpt
    turns with "<image>"). COCO images become public URLs; rows with images from the other archives are skipped."""
    return _llava_style(row)


def textvqa(row: Mapping[str, Any]) -> dict:
    """TextVQA (Hugging Face `lmms-lab/textvqa`; the same columns as `facebook/textvqa`): `image_id`,
    `question_id`, `question`, `question_tokens`, `image` (an Image column), `image_width`, `image_height`,
    `flickr_original_url`, `flickr_300k_url`, `answers` (10 annotators' answers: the most frequent is the reply;
    the test split has only empty strings, an error), `image_classes`, `set_name`, `ocr_tokens`."""
    answers = [a.strip() for a in _need(row, "answers") if isinstance(a, str) and a.strip()]
    if not answers:
        raise RowError("answers", "no answer (TextVQA's test split has none; use the train or validation split)",
                       "empty content")
    best = Counter(answers).most_common(1)[0][0]  # ties: the first seen (Counter keeps insertion order)
    image = _need(row, "image", "flickr_original_url")
    return _chat(_text(_need(row, "question"), "question"), best, images=[image])


def vqav2(row: Mapping[str, Any]) -> dict:
    """VQAv2 (ModelScope `swift/VQAv2`, Hugging Face `HuggingFaceM4/VQAv2`): `question_type`,
    `multiple_choice_answer` (the consensus answer: the reply, as in ms-swift), `answers` (a list of
    `{"answer", "answer_confidence", "answer_id"}`), `image_id`, `answer_type`, `question_id`, `question`, `image`."""
    answer = _text(_need(row, "multiple_choice_answer"), "multiple_choice_answer")
    return _chat(_text(_need(row, "question"), "question"), answer, images=[_need(row, "image")])


def aishell1(row: Mapping[str, Any]) -> dict:
    """AISHELL-1 (ModelScope `speech_asr/speech_asr_aishell1_trainsets`): `Audio:FILE` (the wav file, a local path
    once ModelScope has downloaded it), `Text:LABEL` (the transcript, characters separated by spaces: the spaces
    are removed, as ms-swift does)."""
    text = _text(_need(row, "Text:LABEL"), "Text:LABEL").replace(" ", "")
    return _chat(ASR_QUERY_ZH, text, audios=[_need(row, "Audio:FILE")])


def librispeech(row: Mapping[str, Any]) -> dict:
    """LibriSpeech ASR (Hugging Face `openslr/librispeech_asr`, subset `clean`, split `train.100`): `file`,
    `audio` (an Audio column: `{"bytes", "path"}` raw, `{"array", "sampling_rate", "path"}` decoded), `text` (the
    upper-case transcript, kept as it is), `speaker_id`, `chapter_id`, `id`."""
    return _chat(ASR_QUERY_EN, _text(_need(row, "text"), "text"), audios=[_need(row, "audio", "file")])


PREPROCESSORS: dict[str, Preprocessor] = {
    "coco_caption": coco_caption,
    "nocaps": nocaps,
    "webvid": webvid,
    "llava_instruct": llava_instruct,
    "sharegpt4v": sharegpt4v,
    "textvqa": textvqa,
    "vqav2": vqav2,
    "aishell1": aishell1,
    "librispeech": librispeech,
}


def get_preprocessor(name: str) -> Preprocessor:
    """The preprocessor registered as `name`.

    Raises:
        ValueError: no such preprocessor (the message lists them).
    """
    try:
        return PREPROCESSORS[name]
    except KeyError:
        raise ValueError(f"unknown dataset preprocessor {name!r}; expected one of {sorted(PREPROCESSORS)}") from None

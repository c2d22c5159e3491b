"""Qwen2-VL / Qwen2.5-VL media features without torchvision.

Images go through the model's image processor (its PIL backend works without torchvision). A video is the same
processing per frame, regrouped in time: Qwen2-VL cuts a video into patches of `temporal_patch_size` consecutive
frames x `patch_size`^2 pixels, and the image processor lays out each frame's patches in the order the video
processor uses (merge blocks, then channel, time, row, column), only with the frame repeated in time. Taking
frame t's copy for time slot t gives the video processor's `pixel_values_videos` and `video_grid_thw`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from swift.data.mm_encode import MultiModalEncoder


def _size(processor: Any, min_pixels: int | None, max_pixels: int | None) -> dict[str, int] | None:
    if min_pixels is None and max_pixels is None:
        return None
    size = dict(getattr(processor, "size", None) or {})
    if min_pixels is not None:
        size["shortest_edge"] = int(min_pixels)
    if max_pixels is not None:
        size["longest_edge"] = int(max_pixels)
    if size.get("shortest_edge", 0) > size.get("longest_edge", 1 << 62):
        size["shortest_edge"] = size["longest_edge"]
    return size


def video_patches(image_processor: Any, frames: list, size: dict[str, int] | None = None
                  ) -> tuple[np.ndarray, list[int]]:
    """(pixel_values_videos of one video, its [t, h, w] grid) from a list of PIL frames."""
    tps = int(image_processor.temporal_patch_size)
    first = frames[0].size
    frames = [f if f.size == first else f.resize(first) for f in frames]
    if len(frames) % tps:
        frames = frames + [frames[-1]] * (tps - len(frames) % tps)
    kwargs = {"size": size} if size else {}
    out = image_processor(images=frames, return_tensors="np", **kwargs)
    pv, grids = np.asarray(out["pixel_values"]), np.asarray(out["image_grid_thw"])
    n_frames, n = len(frames), int(grids[0].prod())
    p = int(image_processor.patch_size)
    channels = pv.shape[1] // (tps * p * p)
    per_frame = pv.reshape(n_frames, n, channels, tps, p, p)[:, :, :, 0]  # (T, N, C, p, p): slot 0 of each frame
    grouped = per_frame.reshape(n_frames // tps, tps, n, channels, p, p).transpose(0, 2, 3, 1, 4, 5)
    grid = [n_frames // tps, int(grids[0][1]), int(grids[0][2])]
    return np.ascontiguousarray(grouped.reshape(-1, channels * tps * p * p)), grid


def qwen_vl_features(enc: MultiModalEncoder, loaded: dict[str, list]) -> tuple[dict[str, Any], dict[str, list]]:
    """Media tensors and each item's media tokens for a Qwen2-VL-family row."""
    import torch

    ip = enc.processor.image_processor
    merge = int(ip.merge_size) ** 2
    features: dict[str, Any] = {}
    expansions: dict[str, list[list[int]]] = {}
    if loaded.get("image"):
        size = _size(ip, enc.min_pixels, enc.max_pixels)
        out = ip(images=loaded["image"], return_tensors="pt", **({"size": size} if size else {}))
        features["pixel_values"], features["image_grid_thw"] = out["pixel_values"], out["image_grid_thw"]
        tid = enc.expand_ids["image"]
        expansions["image"] = [[tid] * (int(g.prod()) // merge) for g in out["image_grid_thw"]]
    if loaded.get("video"):
        max_px = enc.video_max_pixels or min(int(ip.size.get("longest_edge", 1 << 62)), 768 * 28 * 28)
        size = _size(ip, enc.min_pixels, max_px)
        pvs, grids = zip(*(video_patches(ip, frames, size) for frames in loaded["video"]))
        features["pixel_values_videos"] = torch.from_numpy(np.concatenate(pvs))
        features["video_grid_thw"] = torch.tensor(grids, dtype=torch.long)
        tid = enc.expand_ids["video"]
        expansions["video"] = [[tid] * (int(np.prod(g)) // merge) for g in grids]
        if enc.plugin.name == "qwen2_5_vl":  # seconds per temporal patch, for the time axis of the positions
            features["second_per_grid_ts"] = torch.full((len(grids),), ip.temporal_patch_size / enc.fps)
    return features, expansions

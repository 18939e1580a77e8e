"""Windows of a long video: ``length_s`` seconds from ``start_s``, frames sampled evenly at
``sample_fps`` (notebook 07: the paper's regime of long, varied video).

A 10-minute 720p clip has 14 000 frames; training and scoring a window needs a few per second.
:func:`prepare_window` decodes the window once (skipped frames are grabbed, not converted),
keeps every ``native_fps / sample_fps``-th frame and caches them in the VSD4K layout, so a window
is a :class:`~dydca_lib.video.FrameSet` like any clip, whose ``fps`` is the sampling rate: a 5 s
chunk of it holds ``5 x sample_fps`` frames, and held-out frames interleave with the trained ones
(:func:`~dydca_lib.video.plan_frames`).
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
from tqdm.auto import tqdm

from .io import atomic_write_text, staged_folder
from .paths import data_dir
from .sources import DataError
from .video import (HR_DIR, LR_KERNELS, FrameSet, _make_lr_folder, _video_cache_key, _write_png, check_scale,
                    crop_to_multiple, probe_video, resolve_video)


def window_frame_ids(native_fps: float, n_native: int, start_s: float, length_s: float, sample_fps: float) -> list[int]:
    """The native frame ids a window keeps: ``floor(length_s x sample_fps)`` frames, the i-th at
    ``start_s + i / sample_fps`` seconds (rounded to the nearest native frame)."""
    if start_s < 0 or length_s <= 0 or sample_fps <= 0:
        raise ValueError(f"window needs start_s >= 0, length_s > 0 and sample_fps > 0, got {start_s}, {length_s}, "
                         f"{sample_fps}")
    if sample_fps > native_fps:
        raise ValueError(f"sample_fps {sample_fps:g} is above the video's {native_fps:g} fps")
    n = int(np.floor(length_s * sample_fps + 1e-9))
    ids = [int(round((start_s + i / sample_fps) * native_fps)) for i in range(n)]
    if not ids or ids[-1] >= n_native:
        raise DataError(f"the window {start_s:g}-{start_s + length_s:g} s does not fit in the video "
                        f"({n_native} frames, {n_native / native_fps:.1f} s)")
    return ids


def prepare_window(video: str | Path, scale: int, start_s: float, length_s: float, sample_fps: float,
                   lr_kernel: str = "pil", crop_multiple: int = 12, cache_root: Path | None = None) -> FrameSet:
    """HR and LR frames of one window of ``video`` (a clip name or a video file), cached under
    ``data/frames/``; the FrameSet's ``fps`` is ``sample_fps``."""
    check_scale(scale)
    if lr_kernel not in LR_KERNELS:
        raise ValueError(f"lr_kernel must be one of {LR_KERNELS}, got {lr_kernel!r}")
    path = resolve_video(video)
    if path.is_dir():
        raise DataError(f"{path} is a frame folder; windows are cut from a video file")
    info = probe_video(path)
    ids = window_frame_ids(info.fps, info.n_frames, start_s, length_s, sample_fps)
    tag = f"w{start_s:g}s-{length_s:g}s-{sample_fps:g}fps"
    root = (cache_root or data_dir() / "frames") / f"{path.stem}-{_video_cache_key(path, crop_multiple)}-{tag}"
    meta_path = root / "frames.json"
    if not meta_path.exists():
        _decode_window(path, root, ids, crop_multiple)
        atomic_write_text(meta_path, json.dumps({"source": str(path), "native_fps": info.fps, "frame_ids": ids,
                                                 "sample_fps": sample_fps, "start_s": start_s, "length_s": length_s,
                                                 "crop_multiple": crop_multiple}, indent=1))
    hr_paths = sorted((root / HR_DIR).glob("*.png"))
    lr_paths = _make_lr_folder(root / f"lr-{lr_kernel}", hr_paths, scale, lr_kernel)
    return FrameSet(f"{path.stem}-{tag}", hr_paths, lr_paths, scale, float(sample_fps), lr_kernel, str(path))


def _decode_window(path: Path, root: Path, ids: list[int], crop_multiple: int) -> None:
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise DataError(f"{path} could not be opened as a video")
    try:
        with staged_folder(root / HR_DIR) as tmp:
            keep = {i: k for k, i in enumerate(ids, start=1)}
            for i in tqdm(range(ids[-1] + 1), desc=f"decode {path.name} (window)", leave=False):
                if i in keep:
                    ok, bgr = cap.read()
                else:
                    ok = cap.grab()  # skipped frames are decoded, not converted
                if not ok:
                    raise DataError(f"{path} ended at frame {i}, before the window's frame {ids[-1]}")
                if i in keep:
                    _write_png(tmp / f"{keep[i]:05d}.png",
                               crop_to_multiple(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), crop_multiple))
    finally:
        cap.release()

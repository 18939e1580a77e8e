"""Image quality metrics: PSNR (RGB and Y) with border shaves, and the bicubic reference.

PSNR here is computed on 8-bit images (values rounded to integers 0..255, as a client would
display them), ``10 log10(255^2 / MSE)``; identical images give ``inf``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from .video import FrameSet, upscale_bicubic


def rgb_to_y(rgb: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma as MATLAB's ``rgb2ycbcr`` (range 16..235), the SR literature's "Y PSNR"."""
    x = rgb.astype(np.float64)
    return 16.0 + (65.481 * x[..., 0] + 128.553 * x[..., 1] + 24.966 * x[..., 2]) / 255.0


def _shaved(img: np.ndarray, shave: int) -> np.ndarray:
    if shave <= 0:
        return img
    if img.shape[0] <= 2 * shave or img.shape[1] <= 2 * shave:
        raise ValueError(f"shave {shave} leaves nothing of a {img.shape[1]}x{img.shape[0]} image")
    return img[shave:-shave, shave:-shave]


def mse(a: np.ndarray, b: np.ndarray, shave: int = 0) -> float:
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch: {a.shape} vs {b.shape}")
    d = _shaved(a, shave).astype(np.float64) - _shaved(b, shave).astype(np.float64)
    return float(np.mean(d * d))


def psnr_from_mse(value: float, max_val: float = 255.0) -> float:
    return float("inf") if value == 0 else float(10.0 * np.log10(max_val**2 / value))


def psnr(a: np.ndarray, b: np.ndarray, shave: int = 0, y_channel: bool = False) -> float:
    """PSNR in dB between two uint8 RGB images (or their BT.601 Y channel)."""
    if y_channel:
        a, b = rgb_to_y(a), rgb_to_y(b)
    return psnr_from_mse(mse(a, b, shave))


def bicubic_quality(frames: FrameSet, frame_ids, kernel: str | None = None, shave: int | None = None) -> pd.DataFrame:
    """Per-frame PSNR (RGB and Y) of the bicubic-upscaled LR frame against HR.

    ``shave`` defaults to the full-frame protocol's ``scale + 6`` border.
    """
    kernel = kernel or (frames.lr_kernel if frames.lr_kernel != "given" else "pil")
    shave = frames.scale + 6 if shave is None else shave
    rows = []
    for i in tqdm(list(frame_ids), desc="bicubic PSNR", leave=False):
        hr, up = frames.hr(int(i)), upscale_bicubic(frames.lr(int(i)), frames.scale, kernel)
        rows.append({"frame": int(i), "bicubic_psnr_rgb": psnr(hr, up, shave),
                     "bicubic_psnr_y": psnr(hr, up, shave, y_channel=True)})
    return pd.DataFrame(rows)


def per_chunk_quality(frame_table: pd.DataFrame, per_frame: pd.DataFrame) -> pd.DataFrame:
    """Mean of every per-frame quality column by chunk and split (train / heldout frames)."""
    df = frame_table[frame_table.split != "unused"].merge(per_frame, on="frame")
    cols = [c for c in per_frame.columns if c != "frame"]
    out = df.groupby(["chunk", "split"])[cols].mean().reset_index()
    out.insert(2, "frames", df.groupby(["chunk", "split"]).size().to_numpy())
    return out

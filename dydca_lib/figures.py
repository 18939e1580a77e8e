"""Figures the notebooks save: frame montages and HR-vs-bicubic crops (matplotlib, headless)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # headless under papermill/nbval; notebooks still display returned figures
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .metrics import psnr
from .video import Chunk, FrameSet, texture, upscale_bicubic


def chunk_montage(frames: FrameSet, chunks: list[Chunk], per_chunk: int = 3, thumb_width: float = 3.2):
    """One row per chunk: ``per_chunk`` evenly spaced HR frames with their id and time."""
    rows, cols = len(chunks), per_chunk
    aspect = frames.hr_hw[0] / frames.hr_hw[1]
    fig, axes = plt.subplots(rows, cols, figsize=(cols * thumb_width, rows * (thumb_width * aspect + 0.35) + 0.4),
                             squeeze=False)
    for r, c in enumerate(chunks):
        ids = np.linspace(c.start, c.stop - 1, cols).round().astype(int)
        for ax, i in zip(axes[r], ids):
            ax.imshow(frames.hr(int(i)))
            ax.set_title(f"chunk {c.index} | frame {i} | {i / frames.fps:.2f} s", fontsize=8)
            ax.axis("off")
    fig.suptitle(f"{frames.name}: {len(chunks)} chunks, HR {frames.hr_hw[1]}x{frames.hr_hw[0]}", fontsize=10)
    fig.tight_layout()
    return fig


def most_textured_windows(img: np.ndarray, size: int, n: int) -> list[tuple[int, int]]:
    """Top-left corners of the ``n`` non-overlapping ``size``-px grid windows with most texture."""
    h, w = img.shape[:2]
    if h < size or w < size:
        raise ValueError(f"crop size {size} does not fit a {w}x{h} frame")
    cells = [(y, x) for y in range(0, h - size + 1, size) for x in range(0, w - size + 1, size)]
    scores = [texture(img[y:y + size, x:x + size]) for y, x in cells]
    order = np.argsort(scores)[::-1][:n]
    return [cells[i] for i in order]


def bicubic_crops(frames: FrameSet, frame_id: int, crop: int = 96, n: int = 3, kernel: str = "pil"):
    """HR vs bicubic-upscaled LR on the ``n`` most textured crops of one frame, with their PSNR.

    Returns ``(figure, table)``; the table lists each crop's position and PSNR (RGB, no shave:
    the crop is interior) plus the whole frame's PSNR (shave scale+6).
    """
    hr = frames.hr(frame_id)
    up = upscale_bicubic(frames.lr(frame_id), frames.scale, kernel)
    crop = min(crop, *hr.shape[:2])
    windows = most_textured_windows(hr, crop, n)
    frame_psnr = psnr(hr, up, shave=frames.scale + 6)
    fig, axes = plt.subplots(2, len(windows), figsize=(3 * len(windows), 6.3), squeeze=False)
    rows = []
    for k, (y, x) in enumerate(windows):
        a, b = hr[y:y + crop, x:x + crop], up[y:y + crop, x:x + crop]
        p = psnr(a, b)
        rows.append({"frame": frame_id, "crop": k, "y": y, "x": x, "size": crop, "bicubic_psnr_rgb": p,
                     "frame_bicubic_psnr_rgb": frame_psnr})
        axes[0, k].imshow(a, interpolation="nearest")
        axes[0, k].set_title(f"HR  ({x},{y})", fontsize=9)
        axes[1, k].imshow(b, interpolation="nearest")
        axes[1, k].set_title(f"bicubic x{frames.scale}: {p:.2f} dB", fontsize=9)
        for ax in axes[:, k]:
            ax.axis("off")
    fig.suptitle(f"{frames.name} frame {frame_id}: most textured {crop}px crops "
                 f"(whole frame bicubic {frame_psnr:.2f} dB)", fontsize=10)
    fig.tight_layout()
    return fig, pd.DataFrame(rows)


def chunk_bars(chunk_df: pd.DataFrame, columns: list[str], title: str = ""):
    """Small multiples: one bar chart per column over chunks (texture, luminance, bicubic PSNR)."""
    fig, axes = plt.subplots(1, len(columns), figsize=(3.4 * len(columns), 2.8), squeeze=False)
    for ax, col in zip(axes[0], columns):
        ax.bar(chunk_df["chunk"].astype(str), chunk_df[col], color="tab:blue")
        ax.set_xlabel("chunk")
        ax.set_title(col, fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig

"""Figures on tiny tables: what they draw, not how they look."""

import numpy as np
import pandas as pd

from dydca_lib import figures


def test_psnr_vs_size_gives_the_trained_methods_the_axis_and_bicubic_a_line():
    spec = [("bicubic", 0, 0, 30.1), ("general", 1, 452_000, 31.0), ("one model per video", 1, 61_000, 31.6),
            ("one model per chunk", 4, 244_000, 31.9), ("STDO k=2", 2, 122_000, 31.7), ("Dy-DCA", 1, 92_000, 32.0),
            ("STDO k=2 (= size)", 2, 90_000, 31.5)]
    df = pd.DataFrame([{"video": "clip", "scale": 2, "method": m, "models": n, "parameters": p, "frame_psnr_rgb": v}
                       for m, n, p, v in spec])
    fig = figures.psnr_vs_size(df, "frame_psnr_rgb", "PSNR")
    ax = fig.axes[0]
    points = np.concatenate([c.get_offsets() for c in ax.collections])
    assert sorted(points[:, 0]) == sorted(p for _, _, p, _ in spec if p > 0)  # bicubic is no point
    assert any(list(line.get_ydata()) == [30.1, 30.1] for line in ax.lines)  # but a reference line
    lo, hi = ax.get_xlim()
    assert 61_000 / 2 < lo < 61_000 and 452_000 < hi < 452_000 * 2  # the axis spans the trained methods
    fig.canvas.draw()
    ticks = [t.get_text() for t, x in zip(ax.get_xticklabels(), ax.get_xticks()) if lo <= x <= hi]
    assert {"100k", "200k"} <= set(ticks)
    colors = [tuple(np.round(c.get_facecolor()[0], 3)) for c in ax.collections]
    assert len(set(colors)) == len(colors)  # a colour per method
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend[0] == "bicubic (no model)" and "one model per chunk (4 models)" in legend


def test_psnr_vs_gflop_draws_seed_error_bars():
    df = pd.DataFrame([
        {"video": "clip", "scale": 2, "method": "bicubic", "models": 0, "parameters": 0, "gflop_per_frame": 0.0,
         "frame_psnr_rgb": 30.0, "frame_psnr_rgb_std": np.nan},
        {"video": "clip", "scale": 2, "method": "one model per video", "models": 1, "parameters": 61_000,
         "gflop_per_frame": 22.5, "frame_psnr_rgb": 31.6, "frame_psnr_rgb_std": 0.05},
        {"video": "clip", "scale": 2, "method": "Dy-DCA", "models": 1, "parameters": 92_000,
         "gflop_per_frame": 23.1, "frame_psnr_rgb": 31.5, "frame_psnr_rgb_std": 0.2}])
    fig = figures.psnr_vs_size(df, "frame_psnr_rgb", "PSNR", x="gflop_per_frame")
    ax = fig.axes[0]
    segments = [s for c in ax.collections if hasattr(c, "get_segments") for s in c.get_segments()]
    spans = sorted(round(float(s[1][1] - s[0][1]), 3) for s in segments)
    assert spans == [0.1, 0.4]  # +-std around each seeded method
    assert "GFLOP" in ax.get_xlabel()

"""Figures the notebooks save: frame montages and HR-vs-bicubic crops (matplotlib, headless)."""

from __future__ import annotations

import itertools

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


PATH_COLORS = ("#d62728", "#ff7f0e", "#2ca02c", "#1f77b4")  # path 0 (smallest, deepest) is red


def training_curve(history: pd.DataFrame, title: str = "training loss"):
    fig, ax = plt.subplots(figsize=(5.5, 3))
    ax.plot(history.step, history.loss, lw=0.6, alpha=0.4, color="tab:blue", label="batch L1")
    window = max(1, len(history) // 20)
    ax.plot(history.step, history.loss.rolling(window, min_periods=1).mean(), color="tab:blue",
            label=f"mean of {window}")
    ax.set_xlabel("step")
    ax.set_ylabel("L1 loss")
    ax.set_yscale("log")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def label_histograms(labels: pd.DataFrame, level_names: list[str], thresholds_db: list[float],
                     stdo_edges=None, title: str = ""):
    """Patch-label histogram per level, with Dy-DCA's split threshold of that level and (on the
    finest level) STDO's bin edges."""
    levels = sorted(labels.level.unique())
    fig, axes = plt.subplots(1, len(levels), figsize=(4.2 * len(levels), 3.1), squeeze=False)
    for ax, level in zip(axes[0], levels):
        vals = labels.loc[labels.level == level, "label"]
        vals = vals[np.isfinite(vals)]
        ax.hist(vals, bins=50, color="0.6")
        if level < len(thresholds_db):
            ax.axvline(thresholds_db[level], color="tab:red", lw=2, label=f"split <= {thresholds_db[level]:.2f} dB")
        if stdo_edges is not None and level == levels[-1]:
            for j, e in enumerate(stdo_edges[:-1]):
                ax.axvline(e, color="tab:blue", ls="--", lw=1, label="STDO bin edges" if j == 0 else None)
        ax.set_title(f"level {level}: {level_names[level]} patches", fontsize=9)
        ax.set_xlabel("general-model PSNR of the patch (dB)")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def label_heatmap(frame_img: np.ndarray, cells: pd.DataFrame, title: str = ""):
    """The frame beside a heatmap of its patch labels (one cell per patch, dB)."""
    rows, cols = cells.y // cells.h.iloc[0], cells.x // cells.w.iloc[0]
    grid = np.full((rows.max() + 1, cols.max() + 1), np.nan)
    grid[rows, cols] = cells.label
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.4))
    axes[0].imshow(frame_img)
    axes[0].axis("off")
    im = axes[1].imshow(grid, cmap="magma", aspect=cells.h.iloc[0] / cells.w.iloc[0])  # cells keep their shape
    axes[1].set_xticks([])
    axes[1].set_yticks([])
    fig.colorbar(im, ax=axes[1], label="patch PSNR (dB), low = hard")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def patch_overlay(frame_img: np.ndarray, manifest: pd.DataFrame, scale: int, path_names: dict, title: str = ""):
    """The frame with every patch's outline, coloured by the path it is routed to."""
    from matplotlib.patches import Patch, Rectangle

    fig, ax = plt.subplots(figsize=(9, 9 * frame_img.shape[0] / frame_img.shape[1] + 0.6))
    ax.imshow(frame_img)
    H, W = frame_img.shape[:2]
    for y, x, h, w, p in manifest[["y", "x", "h", "w", "path"]].itertuples(index=False):
        hh, ww = min(h * scale, H - y * scale), min(w * scale, W - x * scale)
        ax.add_patch(Rectangle((x * scale - 0.5, y * scale - 0.5), ww, hh, fill=False,
                               edgecolor=PATH_COLORS[p % len(PATH_COLORS)], lw=1.0))
    ax.legend(handles=[Patch(edgecolor=PATH_COLORS[p % len(PATH_COLORS)], fill=False, label=n)
                       for p, n in sorted(path_names.items())], fontsize=8, loc="lower right")
    ax.axis("off")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def method_crops(frames: FrameSet, patches: pd.DataFrame, sr_by_method: dict, scale: int, margin: int = 8,
                 title: str = ""):
    """One row per patch (``frame, y, x, h, w`` in LR px): each method's SR crop, then HR, with PSNR.

    ``sr_by_method`` maps a method name to ``{frame id: stitched SR frame}``.
    """
    names = list(sr_by_method)
    fig, axes = plt.subplots(len(patches), len(names) + 1, figsize=(2.6 * (len(names) + 1), 2.7 * len(patches)),
                             squeeze=False)
    for r, (f, y, x, h, w) in enumerate(patches[["frame", "y", "x", "h", "w"]].itertuples(index=False)):
        hr = frames.hr(int(f))
        y0, x0 = max(0, y * scale - margin), max(0, x * scale - margin)
        y1, x1 = min(hr.shape[0], (y + h) * scale + margin), min(hr.shape[1], (x + w) * scale + margin)
        ref = hr[y0:y1, x0:x1]
        for c, name in enumerate(names):
            sr = sr_by_method[name][int(f)]
            crop = sr[y0:min(y1, sr.shape[0]), x0:min(x1, sr.shape[1])]
            axes[r, c].imshow(crop, interpolation="nearest")
            axes[r, c].set_title(f"{name}: {psnr(ref[:crop.shape[0], :crop.shape[1]], crop):.2f} dB", fontsize=8)
        axes[r, -1].imshow(ref, interpolation="nearest")
        axes[r, -1].set_title(f"HR, frame {f}", fontsize=8)
        for ax in axes[r]:
            ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


EQUAL_SIZE = " (= size)"  # label suffix of notebook 04's equal-size variants (methods.method_suite)


def method_colors(methods) -> dict:
    """A distinct colour per method: Dy-DCA red, every other method its own hue, and an
    equal-size variant the light shade of its method's hue (tab20 pairs), so variants read as kin."""
    base = list(dict.fromkeys(m.replace(EQUAL_SIZE, "") for m in methods))
    hues = [3] + [h for h in range(10) if h not in (3, 7)] + [7]  # red first, grey (the reference) last
    hue = {b: hues[0] if b == "Dy-DCA" else None for b in base}
    free = itertools.cycle(hues[1:])
    for b in base:
        if hue[b] is None:
            hue[b] = next(free)
    return {m: plt.cm.tab20(2 * hue[m.replace(EQUAL_SIZE, "")] + (EQUAL_SIZE in m)) for m in methods}


def _count_label(x, _pos=None) -> str:
    return f"{x / 1e6:g}M" if x >= 1e6 else f"{x / 1e3:g}k" if x >= 1e3 else f"{x:g}"


X_AXES = {  # psnr_vs_size's x axes: column -> (label, tick formatter)
    "parameters": ("total parameters of the method's models (log)", "count"),
    "gflop_per_frame": ("client GFLOP per frame, patch context included (log)", "plain"),
}


def psnr_vs_size(results: pd.DataFrame, metric: str, ylabel: str, x: str = "parameters"):
    """PSNR against total parameters (or ``x="gflop_per_frame"``, the client's compute), one panel
    per clip x scale; marker size = number of models; error bars = the seed std where
    ``results`` has ``<metric>_std`` (:func:`dydca_lib.comparison.over_seeds`).

    Methods with no cost on the x axis (bicubic) are horizontal reference lines, so the axis spans
    only the trained methods (log, ticks at 1-2-5); each method has its own colour
    (:func:`method_colors`), equal-size variants a square marker."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

    if x not in X_AXES:
        raise ValueError(f"x={x!r}: use one of {', '.join(X_AXES)}")
    xlabel, ticks = X_AXES[x]
    groups = list(results.groupby(["video", "scale"], sort=False))
    fig, axes = plt.subplots(1, len(groups), figsize=(5.6 * len(groups), 4.2), squeeze=False)
    colors = method_colors(list(dict.fromkeys(results.method)))
    handles = {}
    for ax, ((video, scale), g) in zip(axes[0], groups):
        g = g[np.isfinite(g[metric].astype(float))]
        trained, reference = g[g[x] > 0], g[g[x] <= 0]
        for r in reference.itertuples():
            handles[r.method] = ax.axhline(getattr(r, metric), color="0.45", ls="--", lw=1.2,
                                           label=f"{r.method} (no model)")
            ax.annotate(f"{r.method} {getattr(r, metric):.2f} dB", (0.01, getattr(r, metric)),
                        xycoords=("axes fraction", "data"), va="bottom", fontsize=7, color="0.35")
        for r in trained.itertuples():
            xv, yv = getattr(r, x), getattr(r, metric)
            std = getattr(r, f"{metric}_std", float("nan"))
            if np.isfinite(std):
                ax.errorbar(xv, yv, yerr=std, color=colors[r.method], lw=1, capsize=3, zorder=2)
            handles[r.method] = ax.scatter(xv, yv, s=40 + 30 * min(r.models, 10),
                                           color=colors[r.method], marker="s" if EQUAL_SIZE in r.method else "o",
                                           edgecolor="k", lw=0.5, zorder=3,
                                           label=f"{r.method} ({r.models} model{'s' * (r.models != 1)})")
        if len(trained):
            lo, hi = trained[x].min(), trained[x].max()
            ax.set_xscale("log")
            ax.set_xlim(lo / 1.35, hi * 1.35)  # the trained methods fill the axis, whatever their spread
            ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            ax.xaxis.set_major_formatter(FuncFormatter(_count_label if ticks == "count" else _plain_label))
            ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(f"{video} x{scale}", fontsize=10)
        ax.grid(alpha=0.3)
    order = [m for m in colors if m in handles]
    axes[0, -1].legend([handles[m] for m in order], [handles[m].get_label() for m in order], fontsize=7,
                       loc="center left", bbox_to_anchor=(1.02, 0.5), markerscale=0.7)
    fig.tight_layout()
    return fig


def _plain_label(value, _pos=None) -> str:
    return f"{value:g}"


def psnr_per_chunk(per_frame: pd.DataFrame):
    """Full-frame PSNR of held-out frames over time (chunk), one line per method, a panel per clip."""
    groups = list(per_frame.groupby(["video", "scale"], sort=False))
    fig, axes = plt.subplots(1, len(groups), figsize=(5.2 * len(groups), 3.6), squeeze=False)
    for ax, ((video, scale), g) in zip(axes[0], groups):
        for method, m in g.groupby("method", sort=False):
            per = m.groupby("chunk").psnr_rgb.mean()
            ax.plot(per.index, per.values, marker="o", label=method)
        ax.set_xlabel("chunk (time)")
        ax.set_ylabel("PSNR RGB (dB), held-out frames")
        ax.set_title(f"{video} x{scale}", fontsize=10)
        ax.grid(alpha=0.3)
    axes[0, -1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.tight_layout()
    return fig


def budget_curves(curve: pd.DataFrame, plateau: pd.DataFrame, title: str = "",
                  ylabel: str = "full-frame PSNR RGB (dB), held-out frames"):
    """The budget study (:mod:`dydca_lib.budget`): mean PSNR against the LR pixels each method's
    training processed (log), a band of ± one seed std, the budget in epochs beside each point
    and a star at each method's plateau (hollow where it was not reached: its largest budget)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

    fig, ax = plt.subplots(figsize=(7.4, 4.4))
    colors = method_colors(list(dict.fromkeys(curve.method)))
    for method, g in curve.groupby("method", sort=False):
        g = g.sort_values("epochs")
        x, y, sd = g.lr_megapixels * 1e6, g["mean"], g["std"].fillna(0.0)
        ax.plot(x, y, marker="o", ms=4, color=colors[method], label=f"{method} ({int(g.seeds.min())} seeds)")
        ax.fill_between(x, y - sd, y + sd, color=colors[method], alpha=0.2, lw=0)
        for xv, yv, e in zip(x, y, g.epochs):
            ax.annotate(f"{e:g}", (xv, yv), textcoords="offset points", xytext=(0, 5), ha="center",
                        fontsize=6, color=colors[method])
        p = plateau[plateau.method == method].iloc[0]
        ax.scatter([p.lr_megapixels * 1e6], [p.psnr], marker="*", s=160, zorder=4, edgecolor=colors[method],
                   facecolor=colors[method] if p.reached else "none", lw=1.2)
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(_count_label))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("training compute: LR pixels processed (log; numbers: epochs)")
    ax.set_ylabel(ylabel)
    ax.set_title(title or "PSNR vs training compute (band: ± seed std; star: plateau, hollow = not reached)",
                 fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def rate_quality(curves: pd.DataFrame, anchors: pd.DataFrame, video: str, dtype: str, quality: str = "psnr_y",
                 ylabel: str = "Y-PSNR (dB), held-out frames"):
    """Notebook 08: kbit/s (log) vs quality for one clip, one panel per delivery length (models sent
    with the clip, then amortised): HR anchors in black/grey, LR + each method in its colour; the
    YUV 4:2:0 round trip alone (every curve's ceiling) is in the title."""
    from matplotlib.ticker import FuncFormatter

    c = curves[(curves.video == video) & (curves.model_dtype == dtype)]
    a = anchors[anchors.video == video]
    lengths = list(dict.fromkeys(c.delivered_s))
    colors = method_colors(list(dict.fromkeys(c.method)))
    styles = {"x264": dict(color="0.45", ls="--"), "x265": dict(color="black", ls="-")}
    fig, axes = plt.subplots(1, len(lengths), figsize=(4.6 * len(lengths), 4.0), sharey=True, squeeze=False)
    clip_s = c.seconds.iloc[0]
    for ax, length in zip(axes[0], lengths):
        for codec, g in a[a.codec != "none"].groupby("codec"):
            g = g.sort_values("stream_kbps")
            ax.plot(g.stream_kbps, g[quality], marker="s", ms=3, lw=1.6, label=f"HR {codec}",
                    **styles.get(codec, dict(color="0.3", ls=":")))
        for (method, codec), g in c[c.delivered_s == length].groupby(["method", "codec"], sort=False):
            g = g.sort_values("kbps")
            ax.plot(g.kbps, g[quality], marker="o", ms=3, lw=1.2, color=colors[method],
                    label=f"LR {codec} + {method}")
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(_plain_label))
        ax.set_xlabel("kbit/s (video + models + routing map; log)")
        ax.set_title(f"models sent with the {clip_s:g} s clip" if abs(length - clip_s) < 1e-9
                     else f"models amortised over {length:g} s (extrapolation)", fontsize=9)
        ax.grid(alpha=0.3, which="both")
    axes[0][0].set_ylabel(ylabel)
    axes[0][-1].legend(fontsize=6, loc="lower right")
    ceiling = a[a.codec == "none"][quality]
    fig.suptitle(f"{video}: rate–quality, LR + SR models ({dtype} weights) vs the HR stream"
                 + (f" (YUV 4:2:0 round trip alone: {ceiling.iloc[0]:.2f})" if len(ceiling) else ""), fontsize=10)
    fig.tight_layout()
    return fig


def long_video(summ: pd.DataFrame, gap_table: pd.DataFrame, metric: str = "frame_psnr_rgb", title: str = ""):
    """Notebook 07: held-out PSNR vs window length per method and budget rule (mean over seeds and
    window starts, band: +-1 std over seeds — the seeds' own spread where the summary has it, as
    window starts differ by whole dB) and Dy-DCA minus each method vs length (band: +-2 spreads)."""
    from matplotlib.ticker import FuncFormatter, NullLocator

    fig, (a, b) = plt.subplots(1, 2, figsize=(13, 4.6))
    colors = method_colors(summ.method.unique())
    for (method, rule), g in summ.groupby(["method", "rule"], sort=False):
        g = g.sort_values("length_s")
        style = "-" if rule == "equal" else "--"
        a.plot(g.length_s, g[metric], style, marker="o", color=colors[method], label=f"{method} ({rule})")
        std = g[f"{metric}_seed_std" if f"{metric}_seed_std" in g else f"{metric}_std"].fillna(0)
        a.fill_between(g.length_s, g[metric] - std, g[metric] + std, color=colors[method], alpha=0.12)
    for (vs, rule), g in gap_table.groupby(["vs", "rule"], sort=False):
        g = g.sort_values("length_s")
        style = "-" if rule == "equal" else "--"
        b.plot(g.length_s, g.dydca_minus_other_db, style, marker="o", color=colors.get(vs), label=f"vs {vs} ({rule})")
        band = g.two_spreads_db.fillna(0)
        b.fill_between(g.length_s, g.dydca_minus_other_db - band, g.dydca_minus_other_db + band, color=colors.get(vs),
                       alpha=0.1)
    b.axhline(0, color="k", lw=0.8)
    for ax, ylabel in ((a, f"held-out {metric.replace('_', ' ')} (dB)"), (b, "Dy-DCA minus method (dB)")):
        ax.set_xscale("log")
        ax.set_xticks(sorted(summ.length_s.unique()))
        ax.xaxis.set_major_formatter(FuncFormatter(_plain_label))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xlabel("window length (s)")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    a.set_title("quality vs window length, mean over starts (solid: equal budget, dashed: paper's k x budget;"
                " band: seed std)", fontsize=9)
    b.set_title("Dy-DCA's gap (band: twice the spread)", fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def long_delivery(curve: pd.DataFrame, anchors: pd.DataFrame, title: str = ""):
    """Notebook 08b, one window: rate (kbit/s, log) vs Y-PSNR and vs VMAF, one curve per method x
    shipped dtype x LR codec (solid: fp16, dashed: int8) and per HR anchor codec (black)."""
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.6))
    colors = method_colors(curve.method.unique())
    for ax, q, label in ((axes[0], "psnr_y", "held-out Y-PSNR (dB)"), (axes[1], "vmaf", "VMAF (run of frames)")):
        for (method, dtype, codec), g in curve.groupby(["method", "model_dtype", "codec"], sort=False):
            if g.parameters.iloc[0] == 0 and dtype != curve.model_dtype.iloc[0]:
                continue  # bicubic / general: no model bytes, one curve
            g = g.sort_values("kbps")
            ax.plot(g.kbps, g[q], "--" if dtype == "int8" else "-", marker="o", ms=3, color=colors[method],
                    label=f"{method} ({codec}{'' if g.parameters.iloc[0] == 0 else ', ' + dtype})")
        for (codec, ls) in zip(sorted(anchors.codec.unique()), ["-", ":", "-."]):
            a = anchors[anchors.codec == codec].sort_values("stream_kbps")
            if codec != "none":
                ax.plot(a.stream_kbps, a[q], ls, marker="s", ms=3, color="k", label=f"HR {codec}")
        ax.set_xscale("log")
        ax.set_xlabel("rate over the window (kbit/s): stream + routing maps + models")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig

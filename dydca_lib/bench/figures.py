"""Figures of the client experiments: latency and roofline bars, memory, model switches, FPS vs
resolution (notebook 06); compiler variants and attempts (notebook 05)."""

from __future__ import annotations

import math

import numpy as np

from ..client.runtimes import RUNTIMES


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def latency_bars(table, resolution: str, title: str = ""):
    """Per-frame latency (median, p95 whisker; log scale) and achieved GFLOP/s per method x runtime
    at one resolution, with the sgemm peak as the roofline ceiling."""
    plt = _plt()
    t = table[table.resolution == resolution]
    methods = list(dict.fromkeys(t.method))
    runtimes = list(dict.fromkeys(t.runtime))
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    width = 0.8 / max(1, len(runtimes))
    for k, rt in enumerate(runtimes):
        g = t[t.runtime == rt].set_index("method").reindex(methods)
        xs = np.arange(len(methods)) + (k - (len(runtimes) - 1) / 2) * width
        med, p95 = g.median_ms.to_numpy(float), g.p95_ms.to_numpy(float)
        axes[0].bar(xs, med, width, yerr=[np.zeros_like(med), np.nan_to_num(p95 - med)], capsize=2, label=rt)
        axes[1].bar(xs, g.achieved_gflops.to_numpy(float), width, label=rt)
    if "sgemm_peak_gflops" in t and len(t):
        axes[1].axhline(float(t.sgemm_peak_gflops.iloc[0]), color="k", ls="--", lw=1, label="sgemm peak")
    axes[0].set_yscale("log")
    axes[0].set_ylabel("ms per frame (median, whisker p95; log)")
    axes[1].set_ylabel("achieved GFLOP/s (useful FLOPs / median compute)")
    for ax in axes:
        ax.set_xticks(np.arange(len(methods)), methods, fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    axes[1].legend(fontsize=7)
    fig.suptitle(title or f"full-frame pipeline, {resolution}", fontsize=10)
    fig.tight_layout()
    return fig


def memory_bars(mem, title: str = ""):
    """Peak RSS per method x runtime, split into interpreter, runtime import, loaded models and the
    rest of the peak (working memory while running)."""
    plt = _plt()
    labels = [f"{r.method}\n{r.runtime}\n{r.resolution.split()[0]}" for r in mem.itertuples()]
    parts = [("interpreter + NumPy", mem.rss_start_mib), ("runtime import", mem.rss_runtime_mib - mem.rss_start_mib),
             ("models loaded", mem.rss_loaded_mib - mem.rss_runtime_mib),
             ("running (to peak)", mem.peak_rss_mib - mem.rss_loaded_mib)]
    fig, ax = plt.subplots(figsize=(max(7, 0.7 * len(mem)), 4.5))
    bottom = np.zeros(len(mem))
    for name, v in parts:
        v = np.clip(v.to_numpy(float), 0, None)
        ax.bar(np.arange(len(mem)), v, bottom=bottom, label=name)
        bottom += v
    ax.set_xticks(np.arange(len(mem)), labels, fontsize=6, rotation=90)
    ax.set_ylabel("RSS (MiB), fresh process")
    ax.legend(fontsize=7)
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(title or "peak memory per configuration", fontsize=10)
    fig.tight_layout()
    return fig


def switch_timeline(per_frame, method: str, title: str = ""):
    """Per-frame latency over the frame sequence of a switching method, one line per runtime; the
    model-load share of each frame stacked in red, chunk boundaries dashed."""
    plt = _plt()
    d = per_frame[per_frame.method == method]
    runtimes = list(dict.fromkeys(d.runtime))
    fig, axes = plt.subplots(len(runtimes), 1, figsize=(9, 1.9 * len(runtimes) + 0.6), squeeze=False)
    for ax, rt in zip(axes[:, 0], runtimes):
        g = d[d.runtime == rt].sort_values(["resolution", "pass", "position"])
        g = g[g.resolution == g.resolution.iloc[0]]
        x = np.arange(len(g))
        ax.bar(x, g.compute_ms, color="tab:blue", label="compute")
        ax.bar(x, g.switch_ms, bottom=g.compute_ms, color="tab:red", label="model switch")
        ch = g.chunk.to_numpy()
        for b in np.flatnonzero(np.diff(ch)) + 0.5:
            ax.axvline(b, color="k", ls="--", lw=0.8)
        ax.set_ylabel(f"{rt}\nms", fontsize=8)
        ax.set_xticks(x, [f"f{f}" for f in g.frame], fontsize=7)
        ax.grid(axis="y", alpha=0.3)
    axes[0, 0].legend(fontsize=7, loc="upper right")
    axes[-1, 0].set_xlabel("frame in playback order (timed passes; dashed: chunk boundary)")
    fig.suptitle(title or f"{method}: model switches at chunk boundaries", fontsize=10)
    fig.tight_layout()
    return fig


def fps_vs_resolution(table, title: str = ""):
    """FPS (log) against LR megapixels: colour = runtime, marker and line style = method."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 4.8))
    colors = dict(zip(RUNTIMES, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    methods = list(dict.fromkeys(table.method))
    styles = dict(zip(methods, [("o", "-"), ("s", "--"), ("^", ":"), ("D", "-."), ("v", "-"), ("P", "--")] * 3))
    for (m, rt), g in table.groupby(["method", "runtime"], sort=False):
        g = g.sort_values("lr_megapixels")
        marker, ls = styles[m]
        ax.plot(g.lr_megapixels, g.fps, marker=marker, ls=ls, color=colors.get(rt, "k"), label=f"{m} / {rt}")
    ax.set_yscale("log")
    for res, g in table.groupby("resolution"):
        ax.annotate(res, (float(g.lr_megapixels.iloc[0]), 0.02), xycoords=("data", "axes fraction"), fontsize=7,
                    rotation=90, va="bottom", ha="right")
    ax.set_xlabel("LR frame (megapixels)")
    ax.set_ylabel("frames per second (log)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=6, ncol=2)
    ax.set_title(title or "FPS vs resolution", fontsize=10)
    fig.tight_layout()
    return fig



def variant_bars(table, title: str = ""):
    """Two bar panels, latency (median, std as error bar; log scale) and planned memory (MiB), one
    group per path/shape and one bar per variant; missing variants are left empty."""
    plt = _plt()
    groups = list(dict.fromkeys(f"path {r.path}\n{r.input_lr} x{r.batch}" for r in table.itertuples()))
    variants = list(dict.fromkeys(table.variant))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    width = 0.8 / max(1, len(variants))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, v in enumerate(variants):
        g = table[table.variant == v]
        xs = np.arange(len(groups)) + (k - (len(variants) - 1) / 2) * width
        axes[0].bar(xs, g.median_ms.to_numpy(float, na_value=np.nan), width,
                    yerr=g.std_ms.to_numpy(float, na_value=np.nan), label=v,
                    color=colors[k % len(colors)], capsize=2)
        axes[1].bar(xs, g.mem_planned_bytes.to_numpy(float, na_value=np.nan) / 2**20, width, label=v, color=colors[k % len(colors)])
        for x, ms in zip(xs, g.median_ms.to_numpy(float, na_value=np.nan)):
            if not math.isfinite(ms):
                axes[0].text(x, axes[0].get_ylim()[0], "missing", rotation=90, ha="center", va="bottom", fontsize=7)
    axes[0].set_yscale("log")
    axes[0].set_ylabel("latency per batch (ms, log)")
    axes[1].set_ylabel("planned memory (MiB)")
    for ax in axes:
        ax.set_xticks(np.arange(len(groups)), groups, fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    axes[1].legend(fontsize=7, loc="upper left")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def attempt_bars(table, title: str = ""):
    """TVM's speed relative to ONNX Runtime and to PyTorch eager per attempt (1 = as fast; right of
    the line = TVM faster); attempts that failed are labelled."""
    plt = _plt()
    names = list(table.attempt)
    ys = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(names) + 1.4))
    for k, (col, label) in enumerate((("tvm_vs_ort", "vs ONNX Runtime"), ("tvm_vs_eager", "vs PyTorch eager"))):
        vals = table[col].to_numpy(float, na_value=np.nan) if col in table else np.full(len(names), np.nan)
        ax.barh(ys + (k - 0.5) * 0.38, vals, 0.38, label=label)
    for y, row in zip(ys, table.itertuples()):
        if isinstance(getattr(row, "error", None), str):
            ax.text(0.02, y, "failed: " + row.error[:60], va="center", fontsize=7)
    ax.axvline(1.0, color="k", lw=0.8)
    ax.set_xscale("log")
    ax.set_yticks(ys, names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("TVM speed relative to the peer (log; > 1: TVM faster)")
    ax.legend(fontsize=7)
    ax.grid(axis="x", alpha=0.3)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig

"""Notebook 04's tables from its long results (one row per clip x scale x method x seed): the
mean and spread over seeds, the main table per protocol and Dy-DCA's difference to every
multi-model method, read as a tie when it is smaller than twice the seed-to-seed spread."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

MULTI_MODEL = ("STDO", "one model per chunk", "CaFM", "one model per video")  # method names Dy-DCA is held against
SIZE_COLUMNS = ["models", "parameters", "model_bytes", "routing_map_bytes", "gflop_per_frame"]
METRICS = ["patch_psnr_rgb", "patch_psnr_y", "frame_psnr_rgb", "frame_psnr_y", "frame_ssim_y"]
KEYS = ["video", "scale", "method"]


def over_seeds(results: pd.DataFrame) -> pd.DataFrame:
    """One row per clip x scale x method (first-seen order): every metric's mean over the seeds it
    was trained with, its sample standard deviation (``<metric>_std``, NaN for one seed) and
    ``seeds``, the number of runs. Results without a ``seed`` column count as one seed."""
    r = results if "seed" in results else results.assign(seed=0)
    metrics = [m for m in METRICS if m in r]
    g = r.groupby(KEYS, sort=False)
    out = g.first().drop(columns=[*metrics, "seed"])
    out[metrics] = g[metrics].mean()
    out[[f"{m}_std" for m in metrics]] = g[metrics].std(ddof=1).to_numpy()
    out["seeds"] = g.seed.nunique()
    return out.reset_index()


def _cell(mean: float, std: float) -> str | float:
    return round(float(mean), 2) if np.isnan(std) else f"{mean:.2f} ± {std:.2f}"


def main_table(results: pd.DataFrame, metric: str) -> pd.DataFrame:
    """One row per method (in the order of ``results``): its sizes and client GFLOP per frame at
    the first scale, then ``metric`` for every ``<video> x<scale>`` column — the mean over seeds,
    written ``mean ± std`` where the method ran with more than one seed."""
    agg = over_seeds(results)
    agg["cell"] = [_cell(m, s) for m, s in zip(agg[metric], agg[f"{metric}_std"])]
    t = agg.assign(col=agg.video + " x" + agg.scale.astype(str)).pivot(index="method", columns="col", values="cell")
    order = list(dict.fromkeys(agg.method))
    first_scale = agg.scale.iloc[0]
    sizes = agg[agg.scale == first_scale].groupby("method")[[c for c in SIZE_COLUMNS if c in agg]].first()
    if "gflop_per_frame" in sizes:
        sizes["gflop_per_frame"] = sizes.gflop_per_frame.round(2)
    return sizes.join(t).loc[order].reset_index()


def reading(gap: float, spread: float, ties_within: float = 2.0) -> str:
    """How to read Dy-DCA's difference ``gap`` (dB) given the seed-to-seed ``spread`` of that
    difference: a tie when ``|gap| < ties_within * spread``; without a spread (one seed), no call."""
    if math.isnan(spread):
        return "no spread (1 seed)"
    if abs(gap) < ties_within * spread:
        return "tie"
    return "Dy-DCA better" if gap > 0 else "Dy-DCA worse"


def verdicts(results: pd.DataFrame, tolerance_db: float = 0.1) -> pd.DataFrame:
    """Dy-DCA minus every multi-model method, per clip, scale and protocol (dB, means over seeds),
    the spread of that difference (sqrt of the two seed variances; a method trained once counts
    0), its reading (:func:`reading`) and whether Dy-DCA is within ``tolerance_db`` of it or better."""
    agg = over_seeds(results)
    rows = []
    for (video, scale), group in agg.groupby(["video", "scale"], sort=False):
        g = group.set_index("method")
        if "Dy-DCA" not in g.index:
            raise ValueError(f"{video} x{scale}: no Dy-DCA row among {list(g.index)}")
        dy = g.loc["Dy-DCA"]
        for other in [m for m in g.index if m.startswith(MULTI_MODEL)]:
            o = g.loc[other]
            for proto in ("frame_psnr_rgb", "patch_psnr_rgb"):
                gap = float(dy[proto] - o[proto])
                spread = (math.sqrt(dy[f"{proto}_std"] ** 2 + o[f"{proto}_std"] ** 2)
                          if min(dy.seeds, o.seeds) > 1 else float("nan"))
                rows.append({"video": video, "scale": int(scale), "vs": other, "protocol": proto,
                             "dydca_minus_other_db": round(gap, 3), "spread_db": round(spread, 3),
                             "seeds": int(min(dy.seeds, o.seeds)), "reading": reading(gap, spread),
                             f"within_{tolerance_db:g}_db_or_better": gap >= -tolerance_db,
                             "dydca_params": int(dy.parameters), "other_params": int(o.parameters),
                             "other_models": int(o.models),
                             "dydca_gflop_per_frame": round(float(dy.get("gflop_per_frame", float("nan"))), 2),
                             "other_gflop_per_frame": round(float(o.get("gflop_per_frame", float("nan"))), 2)})
    return pd.DataFrame(rows)

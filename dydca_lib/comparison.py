"""Notebook 04's tables from its long results (one row per clip x scale x method): the main
table per protocol and Dy-DCA's difference to every multi-model method."""

from __future__ import annotations

import pandas as pd

MULTI_MODEL = ("STDO", "one model per chunk", "one model per video")  # method names Dy-DCA is held against
SIZE_COLUMNS = ["models", "parameters", "model_bytes", "routing_map_bytes"]


def main_table(results: pd.DataFrame, metric: str) -> pd.DataFrame:
    """One row per method (in the order of ``results``): its sizes at the first scale, then
    ``metric`` for every ``<video> x<scale>`` column."""
    t = results.assign(col=results.video + " x" + results.scale.astype(str)).pivot(index="method", columns="col",
                                                                                   values=metric)
    order = list(dict.fromkeys(results.method))
    first_scale = results.scale.iloc[0]
    sizes = results[results.scale == first_scale].groupby("method")[SIZE_COLUMNS].first()
    return sizes.join(t).loc[order].reset_index()


def verdicts(results: pd.DataFrame, tolerance_db: float = 0.1) -> pd.DataFrame:
    """Dy-DCA minus every multi-model method, per clip, scale and protocol (dB), and whether
    Dy-DCA is within ``tolerance_db`` of it or better."""
    rows = []
    for (video, scale), group in results.groupby(["video", "scale"]):
        g = group.set_index("method")
        if "Dy-DCA" not in g.index:
            raise ValueError(f"{video} x{scale}: no Dy-DCA row among {list(g.index)}")
        dy = g.loc["Dy-DCA"]
        for other in [m for m in g.index if m.startswith(MULTI_MODEL)]:
            for proto in ("frame_psnr_rgb", "patch_psnr_rgb"):
                gap = float(dy[proto] - g.loc[other, proto])
                rows.append({"video": video, "scale": int(scale), "vs": other, "protocol": proto,
                             "dydca_minus_other_db": gap, f"within_{tolerance_db:g}_db_or_better": gap >= -tolerance_db,
                             "dydca_params": int(dy.parameters), "other_params": int(g.loc[other, "parameters"]),
                             "other_models": int(g.loc[other, "models"])})
    return pd.DataFrame(rows)

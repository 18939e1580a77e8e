"""Notebook 04: its cells (clip, scale, seed: train every method for that seed and score it under
both protocols; cached by :mod:`dydca_lib.cells`) and its tables from their long results (one row
per clip x scale x method x seed): the mean and spread over seeds, the main table per protocol and
Dy-DCA's difference to every multi-model method, read as a tie when it is smaller than twice the
seed-to-seed spread."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd

from .cells import run_cell
from .params import PatchParams

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


# ---------------------------------------------------------------- the cells: (clip, scale, seed)

def suite_kwargs(params: dict, per_run: bool = True) -> dict:
    """:func:`~dydca_lib.registry.method_suite`'s keywords from a notebook's parameters (notebooks 04,
    04b, 08). ``per_run=False`` leaves out what each run of the budget study or of a rate-quality
    point sets itself: STDO's k (from the method's name), the epochs and the equal-size switch."""
    kw = dict(kernel=params["lr_kernel"], joint_k=params["joint_k"], joint_shares=list(params["joint_shares"]),
              model_blocks=params["model_blocks"], path_blocks=list(params["path_blocks"]), n_feats=params["model_feats"],
              expansion=params["model_expansion"], batch_size=params["batch_size"], context=params["context"],
              lr=params["learning_rate"])
    if per_run:
        kw.update(stdo_ks=list(params["stdo_ks"]), epochs=params["epochs"], equal_size=params["equal_size"])
    return kw


def comparison_specs(params: dict, keep_hardest: int = 3) -> list[dict]:
    """Notebook 04's cells, in its table order (clip, scale, seed): the first seed of each clip and
    scale also scores bicubic and the general model (they do not depend on the seed), and the very
    first cell keeps the SR frames of the ``keep_hardest`` hardest held-out patches for the crops."""
    if not params["seeds"]:
        raise ValueError("seeds: give at least one training seed")
    base = PatchParams.pick(params)
    specs = []
    for i, video in enumerate(params["videos"]):
        for j, scale in enumerate(params["scales"]):
            for k, seed in enumerate(params["seeds"]):
                patch = dataclasses.replace(base, video=str(video), scale=int(scale)).asdict()
                specs.append({"patch": patch, "seed": int(seed), "suite": suite_kwargs(params),
                              "eval_train_every": int(params["eval_train_every"]), "untrained": k == 0,
                              "keep_hardest": keep_hardest if (i, j, k) == (0, 0, 0) else 0})
    return specs


def hardest_heldout_patches(data, n: int = 3) -> pd.DataFrame:
    """The ``n`` held-out patches the general model finds hardest (lowest label PSNR)."""
    return data.manifest[data.manifest.frame.isin(data.heldout_ids)].nsmallest(n, "label")


def compute_cell(spec: dict) -> dict:
    """Compute one cell of notebook 04 (what :func:`comparison_cell` caches)."""
    from .methods import evaluate_method
    from .registry import method_suite
    from .pipeline import patch_data

    data = patch_data(PatchParams.pick(spec["patch"]))
    scale, seed = data.frames.scale, spec["seed"]
    keep = hardest_heldout_patches(data, spec["keep_hardest"]).frame.unique() if spec["keep_hardest"] else ()
    rows, per_frame, kept = [], [], {}
    for m in method_suite(scale, len(data.chunks), seed=seed, **spec["suite"]):
        if not (m.trained or spec["untrained"]):
            continue
        m.prepare(data)
        res = evaluate_method(m, data, data.train_ids[::spec["eval_train_every"]], data.heldout_ids, keep_frames=keep)
        rows.append({"video": data.frames.name, "scale": scale, "seed": seed, **res["row"]})
        per_frame += (res["per_frame"].merge(data.frame_table[["frame", "chunk"]], on="frame")
                      .assign(video=data.frames.name, scale=scale, seed=seed).to_dict("records"))
        if len(keep):
            kept[m.name] = res["kept"]
    return {"rows": rows, "per_frame": per_frame, "kept": kept}


def comparison_cell(spec: dict) -> dict:
    """One cell of notebook 04: ``rows`` (one per method), ``per_frame`` (a DataFrame) and ``kept``
    ({method: {frame: SR frame}})."""
    out = run_cell("comparison", spec)
    out["per_frame"] = pd.DataFrame(out["per_frame"])
    return out

"""Notebook 07: the paper's regime — long, varied video, where one small model per video may run
out of room and many chunk models are needed — measured on windows of a long clip.

A *run* (:mod:`dydca_lib.window_runs`, apart so that edits to this module's loop and tables keep
the runs) trains one method on one window (``start_s``, ``length_s``; frames sampled at
``sample_fps``, chunks of ``chunk_seconds``, held-out frames interleaved and never trained on) at
one budget and one seed and scores it on the window's held-out frames (full-frame protocol). Each
run is a cached cell (:mod:`dydca_lib.cells`, kind ``longvideo``) keyed by its parameters and the
code that computes it, so hours of runs survive edits elsewhere and other machines reuse them.

Budgets. *equal* (notebook 04's rule): every method passes over its training patches ``epochs``
times, so all methods process the same LR pixels. *paper* (the paper's baselines): a method made
of separately trained models (one per chunk, STDO's k) trains each as long as the single model
would, ``epochs x models`` passes over its share, k times the compute.

Plateau. For each (window, method, rule) the budget doubles from ``epochs0`` until the last
doubling gains less than ``tol_db`` in held-out PSNR (the mean over seeds), or until ``cap``; the
last budget run is reported with ``reached`` (False: still gaining at the cap).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .cells import run_cell
from .comparison import reading, suite_kwargs
from .params import PatchParams
from .window_runs import compute_cell, window_data  # noqa: F401  (the cells' function; tests call window_data here)

RULES = ("equal", "paper")
METRICS = ["frame_psnr_rgb", "frame_psnr_y", "frame_ssim_y"]
SIZES = ["models", "parameters", "model_bytes", "routing_map_bytes", "gflop_per_frame"]


def base_specs(params: dict) -> list[dict]:
    """Every (window start, length, method, rule, seed) of notebook 07, without a budget: the paper
    rule only for methods of several separately trained models and windows up to
    ``paper_rule_max_s``."""
    from .registry import parse

    if not params["seeds"] or not params["lengths_s"] or not params["starts_s"]:
        raise ValueError("long video: give at least one seed, one window length and one window start")
    patch, suite = PatchParams.pick(params).asdict(), suite_kwargs(params, per_run=False)
    refs = [parse(m, {"stdo": params["stdo_k"], "stdo_joint": params["joint_k"]}) for m in params["methods"]]
    specs = []
    for length in params["lengths_s"]:
        for start in params["starts_s"]:
            window = {"start_s": float(start), "length_s": float(length), "sample_fps": float(params["sample_fps"])}
            for ref in refs:
                several = ref.separate_models(2) > 1  # per chunk, STDO: more than one model trained apart
                rules = ["equal"] + (["paper"] if several and length <= params["paper_rule_max_s"] else [])
                for rule in rules:
                    for seed in params["seeds"]:
                        specs.append({"patch": patch, "window": window, "method": ref.name, "rule": rule,
                                      "seed": int(seed), "suite": suite})
    return specs


def run(spec: dict, epochs: float, store=None) -> dict:
    """One run's row (cached)."""
    return run_cell("longvideo", {**spec, "epochs": float(epochs)}, store=store)["row"]


def to_plateau(specs: list[dict], epochs0: float, cap: float, tol_db: float, store=None, progress=None, *,
               run_fn=None, group_of=None, metric: str = "frame_psnr_rgb") -> pd.DataFrame:
    """Every budget run for ``specs`` (:func:`base_specs`): per (window, method, rule) all its seeds
    at ``epochs0``, ``2 x epochs0``, ... until the mean held-out PSNR (``metric``) of the last
    doubling gains less than ``tol_db`` or the budget would pass ``cap``. One row per run,
    ``budget_step`` counting the doublings. ``run_fn(spec, epochs, store)`` and ``group_of(spec)``
    (the specs whose seeds are averaged) default to notebook 07's runs and groups; the delivery
    study passes its own (:mod:`dydca_lib.longdelivery`)."""
    if not 0 < epochs0 <= cap:
        raise ValueError(f"need 0 < epochs0 <= cap, got {epochs0} and {cap}")
    run_fn = run_fn or (lambda s, e, st: run(s, e, st))  # looked up at call time (tests replace ``run``)
    group_of = group_of or (lambda s: (s["window"]["start_s"], s["window"]["length_s"], s["method"], s["rule"]))
    groups: dict[tuple, list[dict]] = {}
    for s in specs:
        groups.setdefault(group_of(s), []).append(s)
    rows = []
    for key in (progress(list(groups)) if progress else groups):
        epochs, step, last = float(epochs0), 0, None
        while True:
            got = [run_fn(s, epochs, store) for s in groups[key]]
            rows += [{**r, "budget_step": step} for r in got]
            mean = float(np.mean([r[metric] for r in got]))
            if (last is not None and mean - last < tol_db) or epochs * 2 > cap:
                break
            epochs, step, last = epochs * 2, step + 1, mean
    return pd.DataFrame(rows)


def plateaus(runs: pd.DataFrame, tol_db: float) -> pd.DataFrame:
    """Per (window, method, rule): the last budget, whether the plateau was reached there (the last
    doubling gained less than ``tol_db``) and that gain (NaN where only one budget ran)."""
    out = []
    keys = ["length_s", "start_s", "method", "rule"]
    for key, g in runs.groupby(keys, sort=False):
        per = g.groupby("epochs").frame_psnr_rgb.mean().sort_index()
        gain = float(per.iloc[-1] - per.iloc[-2]) if len(per) > 1 else float("nan")
        out.append({**dict(zip(keys, key)), "epochs": float(per.index[-1]), "budgets": len(per),
                    "last_doubling_gain_db": round(gain, 3), "reached": bool(gain < tol_db) if len(per) > 1 else False})
    return pd.DataFrame(out)


def final_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """Each (window, method, rule)'s runs at its last (plateau or cap) budget."""
    last = runs.groupby(["length_s", "start_s", "method", "rule"], sort=False).epochs.transform("max")
    return runs[runs.epochs == last].reset_index(drop=True)


def summary(final: pd.DataFrame) -> pd.DataFrame:
    """Per (window length, method, rule): mean and sample std over seeds and window starts of every
    metric, the seeds' spread alone (``*_seed_std``: per start, averaged), the runs behind it, and the sizes (mean over starts: per chunk grows with the length).
    The training cost is ``train_lr_megapixels`` (the LR pixels passed through training, the same
    on any machine) and the median ``train_seconds`` (wall time: a run that shared the CPU or was
    paused reads long, and one such run must not move the row)."""
    g = final.groupby(["length_s", "method", "rule"], sort=False)
    out = g[METRICS].mean()
    out[[f"{m}_std" for m in METRICS]] = g[METRICS].std(ddof=1).to_numpy()
    # the seeds' own spread (std over seeds per window start, averaged over starts): the std above
    # also holds how much harder one scene is than another
    per_start = final.groupby(["length_s", "method", "rule", "start_s"], sort=False)[METRICS].std(ddof=1)
    out[[f"{m}_seed_std" for m in METRICS]] = per_start.groupby(level=[0, 1, 2], sort=False).mean().reindex(out.index).to_numpy()
    out["runs"] = g.size()
    work = [c for c in ("train_lr_megapixels",) if c in final]
    out[SIZES + ["epochs", "model_epochs"] + work] = g[SIZES + ["epochs", "model_epochs"] + work].mean()
    out["train_seconds_median"] = g.train_seconds.median()
    return out.reset_index()


def _paired(a: pd.DataFrame, b: pd.DataFrame, metric: str) -> pd.Series:
    """``a`` minus ``b`` (runs of two methods) on the same window length, start and seed: a scene
    that is harder for every method cancels in the pair. Indexed by (length_s, start_s, seed)."""
    pair = ["length_s", "start_s", "seed"]
    return (a.set_index(pair)[metric] - b.set_index(pair)[metric]).dropna()


def gaps(summ: pd.DataFrame, final: pd.DataFrame, metric: str = "frame_psnr_rgb") -> pd.DataFrame:
    """Dy-DCA (equal budget) minus every other method and rule at each window length, paired: the
    difference on the same window start and seed, its mean over the pairs and the sample std of the
    differences (the spread: a scene that is harder for every method cancels in the pair, where
    each method's own std over starts would hold it), read as a tie within twice the spread.
    ``final``: the runs at each method's last budget (:func:`final_runs`); ``summ``
    (:func:`summary`): the bytes each method ships at that length."""
    rows = []
    others = final[final.method != "Dy-DCA"]
    size = summ.set_index(["length_s", "method", "rule"])
    for (length, method, rule), g in others.groupby(["length_s", "method", "rule"], sort=False):
        d = _paired(final[(final.method == "Dy-DCA") & (final.rule == "equal")], g, metric)
        if d.empty:
            continue
        gap, spread = float(d.mean()), float(d.std(ddof=1)) if len(d) > 1 else float("nan")
        mine, theirs = size.loc[(length, "Dy-DCA", "equal")], size.loc[(length, method, rule)]
        rows.append({"length_s": length, "vs": method, "rule": rule, "pairs": len(d), "dydca_minus_other_db": round(gap, 3),
                     "two_spreads_db": round(2 * spread, 3) if not math.isnan(spread) else float("nan"),
                     "reading": reading(gap, spread), "dydca_bytes": int(mine.model_bytes + mine.routing_map_bytes),
                     "other_bytes": int(theirs.model_bytes + theirs.routing_map_bytes)})
    out = pd.DataFrame(rows)
    return out.sort_values("length_s", kind="stable").reset_index(drop=True) if len(out) else out


def crossover(final: pd.DataFrame, metric: str = "frame_psnr_rgb") -> pd.DataFrame:
    """Per budget rule of one model per chunk: one model per video (equal budget) minus it at every
    length, paired as :func:`gaps` is (same window start and seed; mean, twice the spread of the
    differences), and two lengths: the shortest where one model per video is below in the mean
    (``per_video_below_in_mean_at_s``) and the shortest where it is below by more than twice the
    spread (``per_video_falls_below_at_s``; NaN: never up to ``longest_s``, or one pair, no spread)."""
    rows = []
    per_video = final[(final.method == "one model per video") & (final.rule == "equal")]
    for rule in RULES:
        d = _paired(per_video, final[(final.method == "one model per chunk") & (final.rule == rule)], metric)
        if d.empty:
            continue
        per = d.groupby(level="length_s").agg(["mean", "std", "size"]).sort_index()
        below_mean = per.index[per["mean"] < 0]
        below = per.index[(per["mean"] < 0) & (per["mean"].abs() >= 2 * per["std"])]  # NaN std (one pair): no call
        rows.append({"per_chunk_rule": rule, "lengths_s": list(per.index),
                     "per_video_minus_per_chunk_db": [round(v, 3) for v in per["mean"]],
                     "two_spreads_db": [round(2 * v, 3) for v in per["std"]], "pairs": [int(n) for n in per["size"]],
                     "per_video_below_in_mean_at_s": float(below_mean[0]) if len(below_mean) else float("nan"),
                     "per_video_falls_below_at_s": float(below[0]) if len(below) else float("nan"),
                     "longest_s": float(per.index[-1])})
    return pd.DataFrame(rows)


def verdict(summ: pd.DataFrame, gap_table: pd.DataFrame, cross: pd.DataFrame, plateau_table: pd.DataFrame) -> str:
    """The report's paragraph: where the paper's premise holds on this video and where it does not."""
    lines = []
    for _, c in cross.iterrows():
        at, mean_at, vs = c.per_video_falls_below_at_s, c.per_video_below_in_mean_at_s, f"one model per chunk ({c.per_chunk_rule} budget)"
        if not math.isnan(at):
            where = f"falls below {vs} from {at:g} s windows, by more than twice the spread"
        elif not math.isnan(mean_at):
            where = (f"is below {vs} in the mean from {mean_at:g} s windows, but within twice the spread (a tie), "
                     f"and not beyond it up to {c.longest_s:g} s")
        else:
            where = f"never falls below {vs} up to {c.longest_s:g} s windows"
        diffs = ", ".join(f"{l:g} s: {d:+.2f} dB" + (f" (twice the spread {t:.2f})" if not math.isnan(t) else "")
                          for l, d, t in zip(c.lengths_s, c.per_video_minus_per_chunk_db, c.two_spreads_db))
        lines.append(f"One model per video {where} (per video minus per chunk, paired: {diffs}).")
    for length, g in gap_table.groupby("length_s", sort=True):
        parts = [f"{r.vs} ({r.rule}) {r.dydca_minus_other_db:+.2f} dB, {r.reading}" for r in g.itertuples()]
        lines.append(f"At {length:g} s, Dy-DCA vs " + "; ".join(parts) + ".")
    missing = plateau_table[~plateau_table.reached]
    if len(missing):
        lines.append(f"{len(missing)} of {len(plateau_table)} (window, method, rule) runs had not reached the "
                     f"plateau at their last budget ({', '.join(sorted({f'{m} {r}' for m, r in zip(missing.method, missing.rule)}))}).")
    return " ".join(lines)

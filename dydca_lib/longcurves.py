"""Notebook 08b's tables from its cells: each point at its last budget, the rate–quality curves
(every byte a client receives over the window, per shipped dtype), BD-rate against the HR anchors
and the sentence the report ends with.

Kept apart from :mod:`dydca_lib.longdelivery`, which computes the cells: a cell's key is the code
of its module's imports, so a change here re-assembles the tables and recomputes nothing.
"""

from __future__ import annotations

import pandas as pd

SHIPPED = {"fp16": ("fp16_xz_bytes", ""), "int8": ("int8_xz_bytes", "int8_")}  # dtype: (bytes column, quality prefix)


def window_label(video, start_s: float, length_s: float) -> str:
    return f"{video} {start_s:g}+{length_s:g} s"


def final_points(runs: pd.DataFrame) -> pd.DataFrame:
    """Each point at its last (plateau or cap) budget, averaged over seeds."""
    keys = ["start_s", "length_s", "codec", "crf", "method"]
    last = runs.groupby(keys, sort=False).epochs.transform("max")
    final = runs[runs.epochs == last]
    num = final.select_dtypes("number").columns.difference(keys + ["seed"])
    out = final.groupby(keys, sort=False)[list(num)].mean()
    out["seeds"] = final.groupby(keys, sort=False).seed.nunique()
    for col in ("int8_runtime", "lr_size"):
        if col in final:
            out[col] = final.groupby(keys, sort=False)[col].first()
    out = out.reset_index()
    return out[[c for c in runs.columns if c in out.columns and c != "seed"] + ["seeds"]]  # the runs' column order


def curves(points: pd.DataFrame, video: str) -> pd.DataFrame:
    """One rate–quality point per (window, method, LR codec, CRF, shipped dtype): ``kbps`` = the LR
    stream + every native frame's routing map + the models as shipped (xz-coded), over the window —
    measured on it, no extrapolation; quality of the client that runs those bytes (``int8`` rows: the
    int8 client's). In :mod:`dydca_lib.delivery`'s layout (``video`` = the window), so its BD-rate
    and verdict apply."""
    from .delivery import kbps

    rows = []
    for r in points.to_dict("records"):
        for dtype, (col, q) in SHIPPED.items():
            if r["parameters"] and f"{q}psnr_y" not in r or (q and pd.isna(r.get(f"{q}psnr_y"))):
                continue  # no int8 client was run for this point
            model_bytes = int(r[col])
            rows.append({"video": window_label(video, r["start_s"], r["length_s"]), "start_s": r["start_s"],
                         "length_s": r["length_s"], "method": r["method"], "codec": r["codec"], "crf": r["crf"],
                         "model_dtype": dtype, "parameters": r["parameters"], "seconds": r["seconds"],
                         "delivered_s": r["seconds"], "stream_bytes": r["stream_bytes"], "model_bytes": model_bytes,
                         "routing_map_bytes": r["routing_map_bytes"],
                         "kbps": kbps(r["stream_bytes"] + model_bytes + r["routing_map_bytes"], r["seconds"]),
                         "model_kbps": kbps(model_bytes, r["seconds"]),
                         **{m: r[f"{q}{m}"] if r["parameters"] else r[m] for m in ("psnr_y", "psnr_rgb", "ssim_y", "vmaf")}})
    return pd.DataFrame(rows)


def anchor_table(anchors: pd.DataFrame, video: str) -> pd.DataFrame:
    """The anchors in :mod:`dydca_lib.delivery`'s layout (``video`` = the window)."""
    return anchors.assign(video=[window_label(video, s, n) for s, n in zip(anchors.start_s, anchors.length_s)])


def bd_tables(curve: pd.DataFrame, anchors: pd.DataFrame) -> pd.DataFrame:
    """BD-rate / BD-quality of every curve against each HR anchor, by Y-PSNR and by VMAF (the
    overlap ranges stated), from :func:`dydca_lib.delivery.bd_table`."""
    from .delivery import bd_table

    out = []
    for q in ("psnr_y", "vmaf"):
        t = bd_table(curve, anchors, quality=q).rename(columns={"bd_psnr_db": "bd_quality"})
        out.append(t.assign(quality=q))
    return pd.concat(out, ignore_index=True).drop(columns="delivered_s")


def wins(curve: pd.DataFrame, anchors: pd.DataFrame) -> pd.DataFrame:
    """Per window, method, LR codec and shipped dtype, against each HR anchor: the rates at which
    the curve lies above the anchor's by Y-PSNR, by VMAF and by both (within the rates both curves
    span; each curve interpolated linearly in log-rate), i.e. where LR video + those bytes beats
    streaming the window, for every method rather than the closing sentence's one."""
    from .delivery import _intersect, _ranges_text, anchor_curves, winning_rates

    anch, rows = anchor_curves(anchors), []
    keys = ["video", "method", "codec", "model_dtype"]
    for k, test in curve.groupby(keys, sort=False):
        for codec, a in anch[anch.video == k[0]].groupby("codec", sort=False):
            by = {q: winning_rates(a, test, q) for q in ("psnr_y", "vmaf")}
            rows.append({**dict(zip(keys, k)), "anchor": f"HR {codec}", "beats by Y-PSNR": _ranges_text(by["psnr_y"]),
                         "beats by VMAF": _ranges_text(by["vmaf"]), "beats by both": _ranges_text(_intersect(list(by.values())))})
    return pd.DataFrame(rows).rename(columns={"codec": "lr_codec"})


def cap_sensitivity(runs: pd.DataFrame, curve: pd.DataFrame, anchors: pd.DataFrame, epochs_cap: float,
                    plateau_db: float) -> pd.DataFrame:
    """How far the budget cap can move the BD-rates: per trained curve and HR anchor, the BD-rate by
    Y-PSNR as measured and as it would be if every point stopped by the cap (its last doubling
    still gained ``plateau_db`` or more, held-out RGB) gained its last doubling's Y-PSNR once more —
    a what-if from the measured ladder, not a measurement. The ladder is the fp16 client's (its gain
    is applied to the int8 rows too); VMAF has none (run at the last budget only)."""
    from .delivery import anchor_curves, bd_metrics

    keys = ["start_s", "length_s", "codec", "crf"]
    trained = runs[runs.parameters > 0].groupby(keys + ["method", "epochs"], sort=False)[["psnr_y", "psnr_rgb"]].mean()
    steps = []
    for k, g in trained.groupby(level=list(range(5)), sort=False):
        g = g.sort_index(level="epochs")
        gain = g.diff().iloc[-1] if len(g) > 1 else pd.Series({"psnr_y": 0.0, "psnr_rgb": 0.0})
        capped = g.index.get_level_values("epochs")[-1] >= epochs_cap and gain.psnr_rgb >= plateau_db
        steps.append({**dict(zip(keys + ["method"], k)), "capped": bool(capped), "gain_y": float(gain.psnr_y) if capped else 0.0})
    if not steps:
        return pd.DataFrame()
    test = curve.merge(pd.DataFrame(steps), on=keys + ["method"])
    anch, rows = anchor_curves(anchors), []
    for (video, method, codec, dtype), t in test.groupby(["video", "method", "codec", "model_dtype"], sort=False):
        for a_codec, a in anch[anch.video == video].groupby("codec", sort=False):
            rows.append({"video": video, "method": method, "lr_codec": codec, "model_dtype": dtype, "anchor": f"HR {a_codec}",
                         "points_at_cap": f"{int(t.capped.sum())} of {len(t)}", "largest_last_gain_y_db": t.gain_y.max(),
                         "bd_rate_pct": bd_metrics(a, t)["bd_rate_pct"],
                         "bd_rate_pct_if_one_more_doubling": bd_metrics(a, t.assign(psnr_y=t.psnr_y + t.gain_y))["bd_rate_pct"]})
    return pd.DataFrame(rows)


def final_sentence(curve: pd.DataFrame, anchors: pd.DataFrame, method: str = "Dy-DCA", dtype: str = "int8",
                   anchor: str = "x265") -> str:
    """Where ``method`` (its ``dtype`` model bytes counted) beats the ``anchor`` HR stream at equal
    VMAF and Y-PSNR: per window the rates at which its curve lies above the anchor's under both,
    and the numbers either way — BD-rate by Y-PSNR and by VMAF over their quality overlaps and the
    quality at equal rate over the rate overlap (undefined where the curves do not overlap)."""
    from .delivery import _intersect, _ranges_text, bd_metrics, winning_rates

    parts = []
    for video, g in curve[(curve.method == method) & (curve.model_dtype == dtype)].groupby("video", sort=False):
        a = anchors[(anchors.video == video) & (anchors.codec == anchor)].assign(kbps=lambda d: d.stream_kbps)
        if a.empty:
            continue
        per_codec = []
        for codec, test in g.groupby("codec", sort=False):
            both = _intersect([winning_rates(a, test, "psnr_y"), winning_rates(a, test, "vmaf")])
            where = f"at {_ranges_text(both)}" if both else "at no rate within the range both curves span"
            numbers = "; ".join(_bd_text(bd_metrics(a, test, quality=q), q) for q in ("psnr_y", "vmaf"))
            per_codec.append(f"with {codec} LR streams {where} ({numbers})")
        parts.append(f"{video}: " + "; ".join(per_codec))
    if not parts:
        return f"No {method} {dtype} curve and {anchor} anchor share a window."
    return (f"{method}, its {dtype} model bytes counted, beats HR {anchor} at equal VMAF and Y-PSNR — "
            + "; ".join(parts) + ".")


def _bd_text(m: dict, quality: str) -> str:
    """One quality's Bjøntegaard numbers for a sentence: BD-rate over the quality overlap, the
    quality difference at equal rate over the rate overlap."""
    name, unit = {"psnr_y": ("Y-PSNR", " dB"), "vmaf": ("VMAF", "")}[quality]
    rate = (f"BD-rate by {name} {m['bd_rate_pct']:+.0f} % over {m['quality_overlap']}" if not pd.isna(m["bd_rate_pct"])
            else f"BD-rate by {name} undefined (quality overlap: {m['quality_overlap']})")
    level = (f"{m['bd_psnr_db']:+.2f}{unit} {name} at equal rate over {m['rate_overlap']}" if not pd.isna(m["bd_psnr_db"])
             else f"{name} at equal rate undefined (rate overlap: {m['rate_overlap']})")
    return f"{rate}, {level}"

"""Rate–quality of "LR video + SR models" against streaming the HR video (notebook 08).

The question a delivery engineer asks first: for the bits I send, is the picture better than just
streaming the HR clip with H.264/H.265? Conventions follow SRVC (ICCV'21) and NAS (OSDI'18):

* **anchors**: the HR clip encoded with x264 and x265 on a CRF ladder (one preset, stated);
* **LR curves**: the LR clip encoded with the same encoder settings, decoded, upscaled by each
  method. Trained methods learn from the *decoded* LR frames of that point (the server has them);
* **rate** = (elementary-stream bytes — packet payloads, no container — plus every byte the client
  needs besides: all k models for STDO, the per-frame routing map) ÷ clip duration;
* **quality**: the project's full-frame protocol on held-out frames against the original RGB HR
  frames, Y-PSNR per frame averaged (SRVC) and RGB PSNR and SSIM beside it.

Every stream, anchors included, goes RGB → YUV 4:2:0 (BT.601, FFmpeg's default conversion) →
codec → RGB, so the lossy colour conversion is in every curve (:mod:`dydca_lib.codec` encodes and
decodes with the FFmpeg that ``imageio-ffmpeg`` bundles).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .codec import Encoding, check_frame_count, decode, encode, encoded_lr_frames, yuv420_roundtrip


# ---------------------------------------------------------------- scoring

def score_frames(decoded: dict, hr_of, shave: int) -> pd.DataFrame:
    """Full-frame metrics of ``decoded`` ({frame id: RGB frame}) against ``hr_of(id)``: the
    protocol of :func:`dydca_lib.evaluate.evaluate` (shave at the border, RGB and Y PSNR, SSIM on Y)."""
    from .evaluate import ssim_y
    from .metrics import psnr

    rows = []
    for i, img in decoded.items():
        hr = hr_of(i)
        rows.append({"frame": int(i), "psnr_rgb": psnr(hr, img, shave), "psnr_y": psnr(hr, img, shave, y_channel=True),
                     "ssim_y": ssim_y(hr, img, shave)})
    return pd.DataFrame(rows)


def kbps(n_bytes: float, seconds: float) -> float:
    return 8.0 * n_bytes / seconds / 1000.0


def delivery_kbps(video_bytes: int, model_bytes: int, side_bytes: int, seconds: float,
                  amortise_s: float | None = None) -> float:
    """Rate in kbit/s: the video stream and the per-frame side information (routing map) scale with
    the clip; the models are sent once — over the clip itself, or spread over ``amortise_s``
    seconds of similar content served by the same models (an extrapolation)."""
    over = seconds if amortise_s is None else max(float(amortise_s), seconds)
    return kbps(video_bytes + side_bytes, seconds) + kbps(model_bytes, over)


def model_payload_bytes(parameters: int, dtype: str) -> int:
    """Raw weight bytes of ``parameters`` numbers at ``dtype`` (fp32: 4 bytes, fp16/bf16: 2, int8: 1)."""
    width = {"fp32": 4, "fp16": 2, "bf16": 2, "int8": 1}
    if dtype not in width:
        raise ValueError(f"model dtype {dtype!r}: one of {', '.join(width)}")
    return int(parameters) * width[dtype]


SHIP_DTYPES = ("fp16", "int8")
COMPRESSORS = ("none", "lzma")


def _compressed(arrays, compressor: str) -> int:
    import io
    import lzma

    buf = io.BytesIO()
    np.savez(buf, *arrays)
    raw = buf.getvalue()
    if compressor == "none":
        return len(raw)
    if compressor == "lzma":  # xz, the strongest preset: what a server would spend once per video
        return len(lzma.compress(raw, preset=9 | lzma.PRESET_EXTREME))
    raise ValueError(f"compressor {compressor!r}: one of {', '.join(COMPRESSORS)}")


def shipped_model_bytes(method, dtype: str, compressor: str = "lzma", calibration: dict | None = None) -> int:
    """The bytes a client receives for a trained method's models, as files it can run.

    ``fp16``: every model the method trains (:meth:`~dydca_lib.methods.Method.models`: CaFM's
    backbone with every chunk's modulation, Dy-DCA's one dynamic model, ...), weight norm folded, in
    fp16. ``int8``: what the int8 client runs (:func:`dydca_lib.compiler.int8.quantize_unit`, the
    ``tvm_int8`` bundle): per unit (:meth:`~dydca_lib.methods.Method.units`) int8 per-channel weights,
    their scales, int32 compensation and fp32 biases and skip conv, quantized with ``calibration``
    ``{unit: [uint8 NHWC batches]}`` (:func:`dydca_lib.bench.precision.calibration_batches`); a CaFM
    client runs each chunk's folded network, so it receives each quantized. Each set of arrays
    as one ``.npz``, entropy-coded by ``compressor`` (``lzma``: xz; ``none``)."""
    from .models import unit_params

    if dtype not in SHIP_DTYPES:
        raise ValueError(f"shipped dtype {dtype!r}: one of {', '.join(SHIP_DTYPES)}")
    if compressor not in COMPRESSORS:
        raise ValueError(f"compressor {compressor!r}: one of {', '.join(COMPRESSORS)}")
    if dtype == "fp16":
        models = method.models()
        if not models:
            raise ValueError(f"{method.name}: no trained models to ship")
        return sum(_compressed([a.astype(np.float16) for a in unit_params(m)], compressor) for m in models.values())
    from .compiler.int8 import quantize_unit

    units = method.units()
    missing = sorted(set(units) - set(calibration or {}))
    if missing:
        raise ValueError(f"{method.name}: int8 needs calibration patches for units {missing}")
    return sum(_compressed(quantize_unit(unit, calibration[u]), compressor) for u, unit in sorted(units.items()))


def bd_metrics(anchor: pd.DataFrame, test: pd.DataFrame, rate: str = "kbps", quality: str = "psnr_y") -> dict:
    """Bjøntegaard deltas of ``test`` against ``anchor`` (each a curve: rows with ``rate`` and
    ``quality``), Akima interpolation (``bjontegaard``): BD-rate in % (negative: fewer bits for the
    same quality) over the quality overlap, BD-PSNR in dB over the log-rate overlap. NaN where the
    curves do not overlap or a curve has fewer than 2 points; the overlaps are returned with them."""
    import warnings

    import bjontegaard as bd

    out = {"bd_rate_pct": np.nan, "bd_psnr_db": np.nan, "quality_overlap": "none", "rate_overlap": "none"}
    a, t = anchor.sort_values(rate), test.sort_values(rate)
    if len(a) < 2 or len(t) < 2:
        return {**out, "quality_overlap": "too few points", "rate_overlap": "too few points"}
    q_lo, q_hi = max(a[quality].min(), t[quality].min()), min(a[quality].max(), t[quality].max())
    r_lo, r_hi = max(a[rate].min(), t[rate].min()), min(a[rate].max(), t[rate].max())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if q_hi > q_lo:
            out["bd_rate_pct"] = float(bd.bd_rate(a[rate], a[quality], t[rate], t[quality], method="akima",
                                                  require_matching_points=False, min_overlap=0))
            out["quality_overlap"] = f"{q_lo:.2f}–{q_hi:.2f}" + (" dB" if quality.startswith("psnr") else "")
        if r_hi > r_lo:
            out["bd_psnr_db"] = float(bd.bd_psnr(a[rate], a[quality], t[rate], t[quality], method="akima",
                                                 require_matching_points=False, min_overlap=0))
            out["rate_overlap"] = f"{r_lo:.0f}–{r_hi:.0f} kbit/s"
    return out


# ---------------------------------------------------------------- methods and points (cached cells)

def delivery_methods(names, scale: int, n_chunks: int, epochs: float, seed: int, **suite_kw) -> list:
    """Methods by name: bicubic and the general model (pre-installed on the client: no bytes
    streamed) and notebook 04's trained methods (``"STDO k=3"``: 3 bins) at ``epochs``."""
    from .registry import make, parse

    if not names:
        raise ValueError("rate-quality: give at least one method")
    try:
        refs = [parse(n) for n in names]
    except ValueError as e:
        raise ValueError(f"rate-quality: {e}") from None
    return [make(r, scale, n_chunks, epochs=epochs, seed=seed, **suite_kw) for r in refs]


def method_names(params: dict) -> list[str]:
    """Notebook 08's methods: ``methods`` with ``"STDO k=<k>"`` for each of ``stdo_ks`` before Dy-DCA."""
    stdo = [f"STDO k={int(k)}" for k in params.get("stdo_ks", [])]
    names = list(params["methods"])
    at = names.index("Dy-DCA") if "Dy-DCA" in names else len(names)
    return names[:at] + stdo + names[at:]


def point_specs(params: dict, videos, codecs) -> list[dict]:
    """Notebook 08's method points: one per (clip, LR codec, CRF), in that order."""
    from .comparison import suite_kwargs
    from .params import PatchParams

    base = PatchParams.pick(params)
    return [{"patch": {**base.asdict(), "video": str(v)}, "codec": c, "crf": int(q), "preset": params["preset"],
             "methods": method_names(params), "epochs": float(params["epochs"]), "seed": int(params["seed"]),
             "suite": suite_kwargs(params, per_run=False),
             "clean_check": int(q) == int(params["clean_check_crf"]) and c == codecs[0]}
            for v in videos for c in codecs for q in params["crfs"]]


def anchor_specs(params: dict, videos, codecs) -> list[dict]:
    """The HR anchors: one per (clip, codec, CRF), plus the YUV 4:2:0 round trip alone (codec None)."""
    from .params import PatchParams

    base = PatchParams.pick(params)
    specs = []
    for v in videos:
        patch = {**base.asdict(), "video": str(v)}
        specs.append({"patch": patch, "codec": None, "crf": None, "preset": params["preset"]})
        specs += [{"patch": patch, "codec": c, "crf": int(q), "preset": params["preset"]}
                  for c in codecs for q in params["crfs"]]
    return specs


def compute_anchor(spec: dict) -> dict:
    from .params import PatchParams
    from .video import plan_frames, prepare_frames

    p = PatchParams.pick(spec["patch"])
    fs = prepare_frames(p.video, p.scale, max_frames=p.max_frames or None, lr_kernel=p.lr_kernel, fps=p.fps or None)
    _, table = plan_frames(len(fs), fs.fps, p.chunk_seconds, p.heldout_every, p.heldout_policy)
    heldout = table.frame[table.split == "heldout"].astype(int).tolist()
    hr = np.stack([fs.hr(i) for i in range(len(fs))])
    if spec["codec"] is None:
        stream_bytes, decoded = 0, yuv420_roundtrip(hr, fs.fps)
    else:
        stream = encode(hr, fs.fps, Encoding(spec["codec"], spec["crf"], spec["preset"]))
        stream_bytes, decoded = len(stream), decode(stream, spec["codec"], hr.shape[1:3])
        check_frame_count(decoded, len(hr))
    per_frame = score_frames({i: decoded[i] for i in heldout}, lambda i: hr[i], fs.scale + 6)
    seconds = len(fs) / fs.fps
    return {"row": {"video": fs.name, "curve": f"HR {spec['codec']}" if spec["codec"] else "HR YUV 4:2:0 only",
                    "codec": spec["codec"] or "none", "crf": spec["crf"], "frames": len(fs), "seconds": seconds,
                    "hr_size": f"{hr.shape[2]}x{hr.shape[1]}", "stream_bytes": stream_bytes,
                    "stream_kbps": kbps(stream_bytes, seconds), **per_frame.drop(columns="frame").mean().to_dict()}}


def _scored(method, data, **extra) -> dict:
    from .evaluate import evaluate, frame_protocol

    _, per_frame, _ = evaluate(method.upscaler(), data.frames, method.frame_manifest(data.heldout_ids), data.heldout_ids,
                               method.context, desc=f"{method.name}: full-frame")
    f = frame_protocol(per_frame)
    d = method.describe()
    return {"method": method.name, "parameters": int(d["parameters"]) if method.trained else 0,
            "routing_map_bytes": int(d["routing_map_bytes"]), "psnr_rgb": f.psnr_rgb, "psnr_y": f.psnr_y,
            "ssim_y": f.ssim_y, "train_seconds": getattr(method, "train_info", {}).get("train_seconds", 0.0), **extra}


def compute_point(spec: dict) -> dict:
    from .params import PatchParams
    from .pipeline import patch_data

    p = PatchParams.pick(spec["patch"])
    clean = patch_data(p)
    enc = Encoding(spec["codec"], spec["crf"], spec["preset"])
    frames, stream_bytes = encoded_lr_frames(clean.frames, enc)
    data = patch_data(p, frames=frames)
    seconds = len(frames) / frames.fps
    base = {"video": frames.name, "scale": frames.scale, "codec": enc.codec, "crf": enc.crf, "frames": len(frames),
            "seconds": seconds, "lr_size": f"{frames.lr_hw[1]}x{frames.lr_hw[0]}", "stream_bytes": stream_bytes,
            "stream_kbps": kbps(stream_bytes, seconds)}
    rows = []
    for m in delivery_methods(spec["methods"], p.scale, len(data.chunks), spec["epochs"], spec["seed"], **spec["suite"]):
        m.prepare(data)
        rows.append({**base, **_scored(m, data, trained_on="decoded LR" if m.trained else "-")})
    clean_rows = []
    if spec["clean_check"]:  # the same methods trained on clean LR frames, run on this point's decoded frames
        for m in delivery_methods(spec["methods"], p.scale, len(data.chunks), spec["epochs"], spec["seed"], **spec["suite"]):
            if m.trained:
                m.prepare(clean)
                m.data = data  # routing and bins from the decoded frames, as the server would send them
                clean_rows.append({**base, **_scored(m, data, trained_on="clean LR")})
    return {"rows": rows, "clean_rows": clean_rows}


def point_cell(spec: dict) -> dict:
    from .cells import run_cell

    return run_cell("ratequality", spec)


def anchor_cell(spec: dict) -> dict:
    from .cells import run_cell

    return run_cell("anchor", spec)["row"]


# ---------------------------------------------------------------- curves, BD, verdict

def delivery_curves(points: pd.DataFrame, dtypes, amortise_s) -> pd.DataFrame:
    """One row per method point × model dtype × delivery length: ``kbps`` = LR stream + routing map
    + model bytes (sent once) over the clip (``delivered_s`` = the clip's length) or over each of
    ``amortise_s`` seconds (the same models serving a longer delivery of similar content:
    an extrapolation that assumes the clip's video rate and routing-map rate hold)."""
    rows = []
    for r in points.to_dict("records"):
        for dtype in dtypes:
            model_bytes = model_payload_bytes(r["parameters"], dtype)
            for over in [None, *amortise_s]:
                rows.append({**r, "model_dtype": dtype, "model_bytes": model_bytes,
                             "delivered_s": r["seconds"] if over is None else float(over),
                             "model_kbps": kbps(model_bytes, r["seconds"] if over is None else max(float(over), r["seconds"])),
                             "kbps": delivery_kbps(r["stream_bytes"], model_bytes, r["routing_map_bytes"], r["seconds"], over)})
    return pd.DataFrame(rows)


def distinct_curves(curves: pd.DataFrame) -> pd.DataFrame:
    """``curves`` without the copies of methods that send no model bytes (bicubic, the general
    model): their curve is the same for every weight width and delivery length, kept once."""
    no_model = curves.parameters == 0
    first = (curves.model_dtype == curves.model_dtype.iloc[0]) & ((curves.delivered_s - curves.seconds).abs() < 1e-9)
    return curves[~no_model | first]


def anchor_curves(anchors: pd.DataFrame) -> pd.DataFrame:
    return anchors[anchors.codec != "none"].assign(kbps=lambda d: d.stream_kbps)


def bd_table(curves: pd.DataFrame, anchors: pd.DataFrame, quality: str = "psnr_y") -> pd.DataFrame:
    """BD-rate / BD-PSNR of every (video, method, LR codec, model dtype, delivery length) curve
    against each HR anchor codec of its video."""
    anch = anchor_curves(anchors)
    rows = []
    keys = ["video", "method", "codec", "model_dtype", "delivered_s"]
    for k, test in distinct_curves(curves).groupby(keys, sort=False):
        for codec, a in anch[anch.video == k[0]].groupby("codec", sort=False):
            rows.append({**dict(zip(keys, k)), "anchor": f"HR {codec}", **bd_metrics(a, test, quality=quality)})
    return pd.DataFrame(rows).rename(columns={"codec": "lr_codec"})


def winning_rates(anchor: pd.DataFrame, test: pd.DataFrame, quality: str = "psnr_y", samples: int = 400) -> list:
    """Rate intervals (kbit/s) inside both curves' rate ranges where ``test`` gives the higher
    quality (each curve interpolated linearly in log-rate between its points)."""
    a, t = anchor.sort_values("kbps"), test.sort_values("kbps")
    lo, hi = max(a.kbps.min(), t.kbps.min()), min(a.kbps.max(), t.kbps.max())
    if not hi > lo:
        return []
    r = np.geomspace(lo, hi, samples)
    better = np.interp(np.log(r), np.log(t.kbps), t[quality]) > np.interp(np.log(r), np.log(a.kbps), a[quality])
    out, start = [], None
    for x, b in zip(r, better):
        if b and start is None:
            start = x
        if not b and start is not None:
            out.append((float(start), float(prev)))
            start = None
        prev = x
    if start is not None:
        out.append((float(start), float(r[-1])))
    return out


def _ranges_text(ranges) -> str:
    return ", ".join(f"{lo:.0f}–{hi:.0f}" for lo, hi in ranges) + " kbit/s" if ranges else "no rate"


def verdict(curves: pd.DataFrame, anchors: pd.DataFrame, dtype: str, quality: str = "psnr_y") -> tuple[pd.DataFrame, str]:
    """Per video and delivery length, the rates at which each method's curve (models at ``dtype``)
    lies above each HR anchor's and above all of them; returns that table and a one-paragraph verdict."""
    anch = anchor_curves(anchors)
    rows, sentences = [], []
    for (video, delivered), g in curves[curves.model_dtype == dtype].groupby(["video", "delivered_s"], sort=False):
        winners = []
        for (method, codec), test in g.groupby(["method", "codec"], sort=False):
            ranges = {c: winning_rates(a, test, quality) for c, a in anch[anch.video == video].groupby("codec")}
            both = _intersect(list(ranges.values()))
            rows.append({"video": video, "delivered_s": delivered, "method": method, "lr_codec": codec,
                         **{f"beats HR {c}": _ranges_text(r) for c, r in ranges.items()},
                         "beats every anchor": _ranges_text(both)})
            if both:
                winners.append(f"{method} ({_ranges_text(both)})")
        clip = g.seconds.iloc[0]
        how = "models sent with the clip" if abs(delivered - clip) < 1e-9 else f"models amortised over {delivered:g} s (extrapolation)"
        sentences.append(f"{video}, {how}: " + ("; ".join(winners) if winners else "no method beats the HR anchors at any rate they share"))
    text = (f"LR video + models ({dtype} weights) against streaming the HR clip, {quality.replace('_', '-').upper()} "
            "on held-out frames; a method wins where its rate–quality curve lies above every HR anchor's. "
            + ". ".join(sentences) + ".")
    return pd.DataFrame(rows), text


def _intersect(range_lists: list) -> list:
    """Intersection of several lists of (lo, hi) intervals."""
    if not range_lists:
        return []
    out = range_lists[0]
    for other in range_lists[1:]:
        out = [(max(a, c), min(b, d)) for a, b in out for c, d in other if min(b, d) > max(a, c)]
    return out


QUALITIES = ("psnr_y", "psnr_rgb", "ssim_y")


def check_choices(videos, clean_check_crf: int, crfs, model_dtypes, figure_dtype: str, quality: str) -> None:
    """Notebook 08's other parameters, checked together before any work."""
    problems = []
    if not videos:
        problems.append("give at least one video")
    if clean_check_crf not in crfs:
        problems.append(f"clean_check_crf {clean_check_crf} is not on the CRF ladder {list(crfs)}")
    for d in [*model_dtypes, figure_dtype]:
        try:
            model_payload_bytes(1, d)
        except ValueError as e:
            problems.append(str(e))
    if figure_dtype not in model_dtypes:
        problems.append(f"figure_dtype {figure_dtype!r} is not among model_dtypes {list(model_dtypes)}")
    if quality not in QUALITIES:
        problems.append(f"quality {quality!r}: one of {', '.join(QUALITIES)}")
    if problems:
        raise ValueError("rate-quality: " + "; ".join(problems))


def clean_vs_decoded(points: pd.DataFrame, clean_rows: pd.DataFrame, quality: str = "psnr_y") -> pd.DataFrame:
    """Per trained method at the clean-check point: quality when trained on decoded LR frames
    (the curves) and when trained on clean LR frames, both run on the decoded frames."""
    if clean_rows.empty:
        return pd.DataFrame()
    keys = ["video", "codec", "crf", "method"]
    both = clean_rows[keys + [quality]].merge(points[keys + [quality]], on=keys, suffixes=("_trained_clean", "_trained_decoded"))
    return both.assign(loss_db=both[f"{quality}_trained_decoded"] - both[f"{quality}_trained_clean"])


def summary(bd_key: pd.DataFrame, wins: pd.DataFrame, clean_vs: pd.DataFrame) -> dict:
    """metrics.json's summary: the best BD-rate per (video, anchor, delivery length) and the
    rates where each method beats every anchor."""
    out = {"best_bd_rate": [], "beats_every_anchor": wins.to_dict("records")}
    valid = bd_key.dropna(subset=["bd_rate_pct"])
    for (video, anchor, length), g in valid.groupby(["video", "anchor", "delivered_s"], sort=False):
        best = g.loc[g.bd_rate_pct.idxmin()]
        out["best_bd_rate"].append({"video": video, "anchor": anchor, "delivered_s": float(length),
                                    "method": best.method, "bd_rate_pct": float(best.bd_rate_pct)})
    if len(clean_vs):
        out["mean_loss_trained_clean_db"] = float(clean_vs.loss_db.mean())
    return out

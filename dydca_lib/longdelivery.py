"""Delivery on long content: the rate and quality of a window of a long clip as a client receives it.

Notebook 08 asks "LR video + models, or the HR stream?" on 1.6 s clips; this module asks it on
windows of a long video (``bbb_full``), where the models' bytes are spread over the window itself,
measured rather than extrapolated. A window is the one notebook 07 trains on (``start_s``,
``length_s``; frames sampled at ``sample_fps`` for training, held-out frames interleaved):

* the **stream** is every native frame of the window (e.g. 45 s x 24 fps), encoded once, frame by
  frame (:func:`dydca_lib.codec.encode_iter`): its bytes are the rate;
* **quality** is scored on the window's held-out sampled frames (the full-frame protocol: shave
  scale + 6 at the border, Y-PSNR, RGB PSNR, SSIM on Y) and VMAF on a run of consecutive native
  frames (``vmaf_run_s`` seconds from the window's middle), decoded from the stream
  (:func:`dydca_lib.codec.decode_some`) — the anchors (:func:`compute_anchor`: the HR window through
  x264/x265) here; the LR points with their models build on the same plan.
"""

from __future__ import annotations

import numpy as np

from .codec import Encoding, decode_some, encode_iter, vmaf


def window_plan(video, start_s: float, length_s: float, sample_fps: float, chunk_seconds: float,
                heldout_every: int, heldout_policy: str = "interleaved", vmaf_run_s: float = 2.0) -> dict:
    """Which native frames of ``video`` a delivery window streams and scores: ``first`` and ``n``
    (the window's native frames, all streamed), ``sampled`` (notebook 07's frames of the window,
    native ids), ``heldout`` (the sampled frames never trained on, native ids) and ``run`` (native
    ids of ``vmaf_run_s`` seconds of consecutive frames around the window's middle), ``fps``."""
    from .video import plan_frames, probe_video, resolve_video
    from .windows import window_frame_ids

    info = probe_video(resolve_video(video))
    sampled = window_frame_ids(info.fps, info.n_frames, start_s, length_s, sample_fps)
    first = int(round(start_s * info.fps))
    n = int(round(length_s * info.fps))
    if first + n > info.n_frames:
        raise ValueError(f"the window {start_s:g}+{length_s:g} s passes the video's end ({info.n_frames} frames)")
    _, table = plan_frames(len(sampled), sample_fps, chunk_seconds, heldout_every, heldout_policy)
    heldout = [sampled[int(i)] for i in table.frame[table.split == "heldout"]]
    n_run = max(1, int(round(vmaf_run_s * info.fps)))
    if n_run > n:
        raise ValueError(f"vmaf_run_s={vmaf_run_s:g} is longer than the window ({length_s:g} s)")
    run_first = first + (n - n_run) // 2
    return {"fps": float(info.fps), "first": first, "n": n, "sampled": sampled, "heldout": heldout,
            "run": list(range(run_first, run_first + n_run))}


def window_frames(video, first: int, n: int, crop_multiple: int = 12):
    """The native frames ``first .. first + n - 1`` of ``video`` (RGB, cropped as notebook 07's
    windows are), one at a time; the frames before the window are grabbed, not converted."""
    import cv2

    from .sources import DataError
    from .video import crop_to_multiple, resolve_video

    path = resolve_video(video)
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise DataError(f"{path} could not be opened as a video")
    try:
        for i in range(first):
            if not cap.grab():
                raise DataError(f"{path} ended at frame {i}, before the window's first frame {first}")
        for i in range(n):
            ok, bgr = cap.read()
            if not ok:
                raise DataError(f"{path} ended at frame {first + i}, inside the window ({first}..{first + n - 1})")
            yield crop_to_multiple(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), crop_multiple)
    finally:
        cap.release()


def compute_anchor(spec: dict) -> dict:
    """One HR anchor of a window: every native frame through ``codec`` at ``crf`` (``codec`` None:
    the YUV 4:2:0 conversion alone, lossless x264), the stream's bytes and rate, the held-out
    frames' full-frame scores and VMAF on the run. ``spec``: ``video``, ``start_s``, ``length_s``,
    ``sample_fps``, ``chunk_seconds``, ``heldout_every``, ``heldout_policy``, ``vmaf_run_s``,
    ``scale`` (the shave of the SR protocol), ``crop_multiple``, ``codec``, ``crf``, ``preset``."""
    from .delivery import kbps, score_frames

    plan = window_plan(spec["video"], spec["start_s"], spec["length_s"], spec["sample_fps"], spec["chunk_seconds"],
                       spec["heldout_every"], spec["heldout_policy"], spec["vmaf_run_s"])
    first, keep = plan["first"], set(plan["heldout"]) | set(plan["run"])
    hr_kept: dict[int, np.ndarray] = {}
    shape: list = []

    def frames():
        for k, f in enumerate(window_frames(spec["video"], first, plan["n"], spec["crop_multiple"])):
            shape[:] = f.shape[:2]
            if first + k in keep:
                hr_kept[first + k] = f
            yield f

    it = frames()
    head = next(it)
    hw = tuple(shape)
    rest = (f for g in ([head], it) for f in g)
    # codec None: x264 at CRF 0 is lossless, so only the RGB -> YUV 4:2:0 -> RGB conversion remains
    enc = Encoding(spec["codec"], int(spec["crf"]), spec["preset"]) if spec["codec"] else Encoding("x264", 0, "ultrafast")
    stream = encode_iter(rest, hw, plan["fps"], enc)
    stream_bytes = len(stream) if spec["codec"] else 0
    decoded = decode_some(stream, enc.codec, hw, [i - first for i in keep])
    scores = score_frames({i: decoded[i - first] for i in plan["heldout"]}, lambda i: hr_kept[i], int(spec["scale"]) + 6)
    run = vmaf(np.stack([hr_kept[i] for i in plan["run"]]), np.stack([decoded[i - first] for i in plan["run"]]),
               plan["fps"])
    seconds = plan["n"] / plan["fps"]
    return {"row": {"start_s": spec["start_s"], "length_s": spec["length_s"],
                    "curve": f"HR {spec['codec']}" if spec["codec"] else "HR YUV 4:2:0 only",
                    "codec": spec["codec"] or "none", "crf": spec["crf"], "frames": plan["n"], "seconds": seconds,
                    "hr_size": f"{hw[1]}x{hw[0]}", "stream_bytes": stream_bytes,
                    "stream_kbps": kbps(stream_bytes, seconds), "heldout_frames": len(plan["heldout"]),
                    **scores.drop(columns="frame").mean().to_dict(), "vmaf": run["vmaf"], "vmaf_min": run["vmaf_min"],
                    "vmaf_frames": len(run["vmaf_frames"])}}

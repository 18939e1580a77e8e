"""A run on the user's own video and ``-p name=value`` overrides (``python -m dydca_lib.reproduce
--video clip.mp4 -p scale=3``): parsing and type-checking the overrides against the notebooks'
parameters cells, the results name such a run writes to (``results/<profile>-<video name>/``),
each notebook's parameters with the overrides applied, and the checks of the video and of the
registry clips the run needs — all before any notebook starts.
"""

from __future__ import annotations

import difflib
import hashlib
import inspect
import itertools
import json
import os
import re
from pathlib import Path

import yaml

from .profiles import declared_types, notebook_defaults, parameter_types

# parameters -p may not set: they place results, which the results name decides for every notebook
RESERVED = {"profile": "the results folder is results/<profile>[-<video>...]/ (use --profile, --video or --name)",
            "output_dir": "every notebook writes results/<name>/<notebook>/ (use --name)"}


def parse_param(text: str, types: dict | None = None) -> tuple[str, object]:
    """``"name=value"`` -> ``(name, value)``, the value read as a YAML literal (``3``, ``0.5``,
    ``[2, 3]``, ``true``). A parameter every notebook declares as ``str`` takes the text as written
    when YAML would read something else (a file called ``2024.mp4`` stays a path)."""
    name, sep, raw = text.partition("=")
    name = name.strip()
    if not sep or not name:
        raise SystemExit(f"-p {text!r}: write -p name=value, e.g. -p scale=3 or -p split_thresholds=[0.4]")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as e:
        raise SystemExit(f"-p {text!r}: {raw!r} is not a YAML literal ({getattr(e, 'problem', e)})") from None
    if (types or {}).get(name) == {"str"} and not isinstance(value, str):
        value = raw
    return name, value


_TYPE_CHECKS = {"int": lambda v: isinstance(v, int) and not isinstance(v, bool),
                "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
                "bool": lambda v: isinstance(v, bool), "str": lambda v: isinstance(v, str),
                "list": lambda v: isinstance(v, (list, tuple))}
_EXAMPLES = {"int": "3", "float": "0.5", "bool": "true", "list": "[2, 3]", "str": "text"}


def coerce(name: str, value, type_name: str, notebook: str):
    """``value`` as notebook parameter ``name`` of type ``type_name`` (an int where a float is
    declared becomes a float), or a clear error naming the parameter, its type and the value."""
    check = _TYPE_CHECKS.get(type_name)
    if check and not check(value):
        raise SystemExit(f"parameter {name} is {type_name} in {notebook}, got {value!r} ({type(value).__name__}); "
                         f"write it as, e.g., -p {name}={_EXAMPLES.get(type_name, 'value')}")
    if type_name == "float":
        return float(value)
    return list(value) if type_name == "list" else value


def check_override_names(overrides: dict) -> None:
    """Every ``-p`` name must be declared by some notebook, and not be one that places results."""
    types = parameter_types()
    for name in overrides:
        if name in RESERVED:
            raise SystemExit(f"-p {name}: not a parameter to override here: {RESERVED[name]}")
        if name not in types:
            close = difflib.get_close_matches(name, list(types), n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise SystemExit(f"-p {name}: no notebook declares a parameter {name!r}{hint}; "
                             "`papermill --help-notebook notebooks/<notebook>.ipynb` lists each notebook's")


def _video_identity(video) -> str:
    """The name the general model excludes its evaluated video by (clip name or file stem)."""
    from .general import video_identity

    return video_identity(video)


def absolute_video(video) -> str:
    """A clip name as is; a path made absolute (the notebooks run with ``notebooks/`` as cwd)."""
    from .sources import CLIPS

    video = str(video)
    return video if video in CLIPS else str(Path(video).expanduser().absolute())


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_.-")


def results_name(profile: str, video=None, overrides: dict | None = None) -> str:
    """``<profile>[-<video name>][-<name>_<value>...]``: where a run with overrides writes, so it
    never mixes with the profile's own results (``results/<profile>/``)."""
    parts = [profile]
    if video is not None:
        parts.append(_slug(_video_identity(video)) or "video")
    for k, v in sorted((overrides or {}).items()):
        parts.append(_slug(f"{k}_{v if isinstance(v, str) else json.dumps(v)}") or _slug(k))
    name = "-".join(parts)
    if len(name) > 96:  # a file system's name limit is far, a reader's is near
        name = f"{name[:80]}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"
    return name


def apply_overrides(params: dict, notebook: Path, overrides: dict, video, name: str) -> dict:
    """A notebook's profile parameters with the run's overrides: ``-p`` values it declares, the
    video as ``video`` / ``videos: [video]``, ``general_clips`` without the video, and ``profile``
    set to the results name (the notebooks write ``results/<profile>/<notebook>/``)."""
    types = declared_types(notebook)
    out = dict(params)
    for k, v in overrides.items():
        if k in types:
            out[k] = coerce(k, v, types[k], notebook.stem)
    if video is not None:
        if "video" in types:
            out["video"] = video
        if "videos" in types:
            out["videos"] = [video]
        if "general_clips" in types:
            clips = out.get("general_clips", notebook_defaults(notebook)["general_clips"])
            kept = [c for c in clips if _video_identity(c) != _video_identity(video)]
            if kept != list(clips) or "general_clips" in out:
                out["general_clips"] = kept
    if "videos" in out and "videos" in overrides:
        out["videos"] = [absolute_video(v) for v in out["videos"]]
    if "profile" in types:
        out["profile"] = name
    return out


def check_video(video, fits: list[tuple[int, int]] = (), plans: list[tuple] = ()) -> dict:
    """Open ``video`` the way the notebooks will (:mod:`dydca_lib.video`) and check it before any
    work: a clip name, a video file OpenCV decodes (two frames at least), or a VSD4K-style frame
    folder. ``fits`` lists ``(scale, LR patch side)`` its frames must hold, ``plans`` the
    ``(max_frames, fps, chunk_seconds, heldout_every, heldout_policy)`` its length must allow
    (checked where the file states its frame count). Returns what it found; anything else is one
    ``SystemExit`` that says what is wrong and how to fix it."""
    from . import video as V
    from .sources import DataError

    quiet = "OPENCV_FFMPEG_LOGLEVEL" not in os.environ  # FFmpeg's own complaint would precede ours
    if quiet:
        os.environ["OPENCV_FFMPEG_LOGLEVEL"] = "-8"
    try:
        path = V.resolve_video(video)
        if path.is_dir():
            hr_dir = path / V.HR_DIR
            if not hr_dir.is_dir():
                raise DataError(f"{path} is a folder but not a VSD4K-style one: {V.HR_DIR}/ is missing. Fix: lay "
                                f"it out as {V.HR_DIR}/00001.png (and optionally {V.LR_DIR}/X2/00001x2.png), "
                                "or give a video file.")
            hr = sorted(hr_dir.glob("*.png"))
            if len(hr) < 2:
                raise DataError(f"{hr_dir} holds {len(hr)} .png frame(s); a video needs at least 2")
            h, w = V._read_rgb(hr[0]).shape[:2]
            kind, frames = "VSD4K-style frame folder", len(hr)
            native_fps = inspect.signature(V.open_frame_folder).parameters["fps"].default
        else:
            info = V.probe_video(path)  # opens it and decodes one frame, or says why it cannot
            if sum(1 for _ in itertools.islice(V.iter_video_frames(path, 2), 2)) < 2:
                raise DataError(f"{path} decodes to a single frame (an image?), not a video. Fix: give a video "
                                "file or a VSD4K-style frame folder.")
            h, w, kind, frames = info.height, info.width, "video file", max(info.n_frames, 0) or None
            native_fps = info.fps
        crop = inspect.signature(V.prepare_frames).parameters["crop_multiple"].default  # HR crop of the cache
        for scale, patch in sorted(set(fits)):
            V.check_patch_fits(((h - h % crop) // scale, (w - w % crop) // scale), patch)
        for max_frames, fps, chunk_seconds, heldout_every, policy in sorted(set(plans)) if frames else ():
            V.plan_frames(min(frames, max_frames or frames), fps or native_fps, chunk_seconds, heldout_every, policy)
    except DataError as e:
        raise SystemExit(f"video {str(video)!r} cannot be used: {e}") from None
    except ValueError as e:  # a parameter the profile or -p set (a chunk length, a held-out policy)
        raise SystemExit(f"parameters do not fit video {str(video)!r}: {e}") from None
    finally:
        if quiet:  # the notebooks' kernels inherit this process's environment
            del os.environ["OPENCV_FFMPEG_LOGLEVEL"]
    return {"video": str(video), "kind": kind, "size": f"{w}x{h}", "frames": frames}


def patch_fits(effective: list[dict]) -> list[tuple[int, int]]:
    """``(scale, LR patch side)`` of every notebook that sets a patch side (notebook 01's check)."""
    fits = []
    for p in effective:
        if p.get("patch_size", 0) and isinstance(p["patch_size"], int) and p["patch_size"] > 0:
            scales = [p["scale"]] if "scale" in p else list(p.get("scales", []))
            fits += [(s, p["patch_size"]) for s in scales if isinstance(s, int) and s > 0]
    return fits


def frame_plans(effective: list[dict]) -> list[tuple]:
    """``(max_frames, fps, chunk_seconds, heldout_every, heldout_policy)`` of every notebook that cuts
    the video into chunks."""
    keys = ("max_frames", "fps", "chunk_seconds", "heldout_every", "heldout_policy")
    return [tuple(p[k] for k in keys) for p in effective if all(k in p for k in keys)]


def needed_clips(effective: list[dict]) -> list[str]:
    """The registry clips the notebooks' parameters name (``video``, ``videos``, ``general_clips``)."""
    from .sources import CLIPS

    names = []
    for p in effective:
        unknown = [c for c in p.get("general_clips", []) if c not in CLIPS]
        if unknown:
            raise SystemExit(f"general_clips {unknown} are not registry clips; known: {', '.join(CLIPS)}")
        names += [v for v in [p.get("video"), *p.get("videos", [])] if isinstance(v, str) and v in CLIPS]
        names += list(p.get("general_clips", []))
    return list(dict.fromkeys(names))


def fetch_clips(names: list[str]) -> None:
    from .sources import DataError, fetch_clip

    try:
        for name in names:
            fetch_clip(name)
    except DataError as e:
        raise SystemExit(f"error: {e}") from None

"""Video in, frames out: decode as a stream, crop, make LR frames, cache them, cut chunks.

Conventions used everywhere in the project:

* frames are ``uint8`` RGB arrays of shape ``(H, W, 3)``; frame ids are 0-based;
* HR frames are cropped at the bottom/right to a multiple of ``crop_multiple`` (default 12, so
  x2, x3 and x4 come from the same HR pixels; DIV2K's "modcrop");
* LR frames are made by bicubic downscaling. ``lr_kernel="pil"`` (default) is PIL's antialiased
  bicubic (Keys a=-0.5, kernel widened by the scale): the closest pip-installable match to
  MATLAB ``imresize``, which made the DIV2K/VSD4K LR frames. ``lr_kernel="opencv"`` is
  ``cv2.INTER_CUBIC`` (a=-0.75, no antialiasing), what many video pipelines do;
* decoded frames are cached on disk in the VSD4K/DIV2K layout
  (``DIV2K_train_HR/00001.png``, ``DIV2K_train_LR_bicubic/X2/00001x2.png``), so a user's VSD4K
  folder and our cache are read by the same :class:`FrameSet`.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
import pandas as pd
from PIL import Image
from tqdm.auto import tqdm

from .io import atomic_write_text, staged_folder
from .paths import data_dir
from .sources import CLIPS, DataError, fetch_clip

SCALES = (2, 3, 4)
LR_KERNELS = ("pil", "opencv")
HELDOUT_POLICIES = ("interleaved", "tail")
HR_DIR = "DIV2K_train_HR"
LR_DIR = "DIV2K_train_LR_bicubic"
VIDEO_SUFFIXES = {".mp4", ".mpg", ".mpeg", ".mkv", ".avi", ".mov", ".webm", ".m4v", ".y4m"}


def check_scale(scale: int) -> int:
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES} (got {scale!r}); set scale=2, 3 or 4")
    return int(scale)


# ---------------------------------------------------------------- decoding (streamed)

@dataclass(frozen=True)
class VideoInfo:
    path: str
    width: int
    height: int
    fps: float
    n_frames: int  # as reported by the container; decoding may find fewer


def probe_video(path: str | Path) -> VideoInfo:
    """Open a video file and read its size, frame rate and frame count (no decoding)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"video {path} does not exist. Fix: give a path to a video file, a "
                        f"VSD4K-style frame folder, or one of the clip names {', '.join(CLIPS)}.")
    cap = cv2.VideoCapture(str(path))
    try:
        ok, frame = cap.read() if cap.isOpened() else (False, None)
        if not ok or frame is None:
            raise DataError(f"{path} could not be decoded by OpenCV (not a video, or an unsupported "
                            "codec). Fix: convert it, e.g. `ffmpeg -i in -c:v libx264 out.mp4`.")
        fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
        return VideoInfo(str(path), frame.shape[1], frame.shape[0],
                         float(fps) if fps > 0 else 30.0, int(cap.get(cv2.CAP_PROP_FRAME_COUNT)))
    finally:
        cap.release()


def iter_video_frames(path: str | Path, max_frames: int | None = None) -> Iterator[np.ndarray]:
    """Yield RGB frames one at a time (never the whole clip in memory)."""
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise DataError(f"{path} could not be opened as a video")
    try:
        n = 0
        while max_frames is None or n < max_frames:
            ok, bgr = cap.read()
            if not ok:
                break
            n += 1
            yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    finally:
        cap.release()


# ---------------------------------------------------------------- geometry and resampling

def crop_to_multiple(img: np.ndarray, multiple: int) -> np.ndarray:
    """Crop the bottom/right so height and width are multiples of ``multiple``."""
    h, w = img.shape[:2]
    hh, ww = h - h % multiple, w - w % multiple
    if hh == 0 or ww == 0:
        raise DataError(f"frame {w}x{h} is smaller than the crop multiple {multiple}")
    return img[:hh, :ww]


def bicubic_resize(img: np.ndarray, size_hw: tuple[int, int], kernel: str = "pil") -> np.ndarray:
    """Bicubic resize of a uint8 RGB image to ``(height, width)``; see the module doc for kernels."""
    h, w = size_hw
    if kernel == "pil":
        return np.asarray(Image.fromarray(img).resize((w, h), Image.Resampling.BICUBIC))
    if kernel == "opencv":
        return cv2.resize(img, (w, h), interpolation=cv2.INTER_CUBIC)
    raise ValueError(f"lr_kernel must be one of {LR_KERNELS}, got {kernel!r}")


def make_lr(hr: np.ndarray, scale: int, kernel: str = "pil") -> np.ndarray:
    """Bicubic-downscale an HR frame whose sides are multiples of ``scale``."""
    check_scale(scale)
    h, w = hr.shape[:2]
    if h % scale or w % scale:
        raise ValueError(f"HR frame {w}x{h} is not a multiple of scale {scale}; crop it first")
    return bicubic_resize(hr, (h // scale, w // scale), kernel)


def upscale_bicubic(lr: np.ndarray, scale: int, kernel: str = "pil") -> np.ndarray:
    """The bicubic baseline: LR frame upscaled by ``scale``."""
    h, w = lr.shape[:2]
    return bicubic_resize(lr, (h * scale, w * scale), kernel)


def check_patch_fits(lr_hw: tuple[int, int], patch_size: int) -> None:
    """Patches of ``patch_size`` LR pixels must fit in the LR frame at least once."""
    h, w = lr_hw
    if patch_size < 1 or h < patch_size or w < patch_size:
        raise DataError(f"the LR frame is {w}x{h} px, smaller than one {patch_size}x{patch_size} "
                        "patch. Fix: use a smaller patch_size, a smaller scale, or a larger video.")


# ---------------------------------------------------------------- frame cache (VSD4K layout)

def _read_rgb(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise DataError(f"could not read image {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _write_png(path: Path, rgb: np.ndarray) -> None:
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 1]):
        raise DataError(f"could not write {path}")


def _lr_path(lr_root: Path, stem: str, scale: int) -> Path | None:
    for name in (f"{stem}x{scale}.png", f"{stem}_x{scale}.png"):
        p = lr_root / f"X{scale}" / name
        if p.exists():
            return p
    return None


@dataclass
class FrameSet:
    """HR and LR frames of one clip at one scale, read from a VSD4K/DIV2K-style folder.

    ``hr(i)`` and ``lr(i)`` load frame ``i`` (0-based) from disk; nothing is kept in memory.
    """

    name: str
    hr_paths: list[Path]
    lr_paths: list[Path]
    scale: int
    fps: float
    lr_kernel: str
    source: str
    hr_hw: tuple[int, int] = field(init=False)
    lr_hw: tuple[int, int] = field(init=False)

    def __post_init__(self):
        if not self.hr_paths:
            raise DataError(f"{self.source} holds no frames")
        if len(self.hr_paths) != len(self.lr_paths):
            raise DataError(f"{self.source}: {len(self.hr_paths)} HR frames but {len(self.lr_paths)} LR frames")
        hr = self.hr(0)
        lr = _read_rgb(self.lr_paths[0])
        self.hr_hw, self.lr_hw = hr.shape[:2], lr.shape[:2]
        if (self.lr_hw[0] * self.scale, self.lr_hw[1] * self.scale) != self.hr_hw:
            raise DataError(f"{self.source}: LR {self.lr_hw} x{self.scale} != HR {self.hr_hw} "
                            "(after cropping HR to a multiple of the scale)")

    def __len__(self) -> int:
        return len(self.hr_paths)

    def hr(self, i: int) -> np.ndarray:
        return crop_to_multiple(_read_rgb(self.hr_paths[i]), self.scale)

    def lr(self, i: int) -> np.ndarray:
        return _read_rgb(self.lr_paths[i])

    def describe(self) -> dict:
        return {"name": self.name, "frames": len(self), "fps": self.fps, "scale": self.scale,
                "hr_size": f"{self.hr_hw[1]}x{self.hr_hw[0]}", "lr_size": f"{self.lr_hw[1]}x{self.lr_hw[0]}",
                "lr_kernel": self.lr_kernel, "source": self.source}

    def identity(self) -> dict:
        """:meth:`describe` for cache keys: paths inside the project's data folder are written
        relative to it, so caches survive moving the project (or running it on another machine)."""
        from .paths import data_dir

        def portable(path) -> str:
            try:
                return Path(path).resolve().relative_to(data_dir().resolve()).as_posix()
            except ValueError:
                return str(path)

        return {**self.describe(), "source": portable(self.source), "first_lr": portable(self.lr_paths[0])}


def open_frame_folder(folder: str | Path, scale: int, fps: float = 30.0, lr_kernel: str = "pil",
                      max_frames: int | None = None, cache_root: Path | None = None) -> FrameSet:
    """Open a VSD4K-style folder: ``DIV2K_train_HR/00001.png`` and
    ``DIV2K_train_LR_bicubic/X{s}/00001x{s}.png`` (or ``00001_x{s}.png``).

    LR frames missing for this scale are made with ``lr_kernel`` into the frame cache (the
    user's folder is never written to).
    """
    check_scale(scale)
    folder = Path(folder)
    hr_dir = folder / HR_DIR
    if not hr_dir.is_dir():
        raise DataError(f"{folder} is not a VSD4K-style folder: {HR_DIR}/ is missing. Fix: lay it "
                        f"out as {HR_DIR}/00001.png and {LR_DIR}/X{scale}/00001x{scale}.png.")
    hr_paths = sorted(hr_dir.glob("*.png"))[:max_frames]
    if not hr_paths:
        raise DataError(f"{hr_dir} holds no .png frames")
    lr_paths = [_lr_path(folder / LR_DIR, p.stem, scale) for p in hr_paths]
    kernel_used = "given"
    if any(p is None for p in lr_paths):
        key = hashlib.sha256(f"{folder.resolve()}|{lr_kernel}".encode()).hexdigest()[:10]
        gen_root = (cache_root or data_dir() / "frames") / f"{folder.name}-{key}"
        lr_paths = _make_lr_folder(gen_root, hr_paths, scale, lr_kernel)
        kernel_used = lr_kernel
    return FrameSet(folder.name, hr_paths, lr_paths, scale, fps, kernel_used, str(folder))


def _make_lr_folder(root: Path, hr_paths: list[Path], scale: int, kernel: str) -> list[Path]:
    """Write ``root/DIV2K_train_LR_bicubic/X{s}/`` for ``hr_paths`` atomically (temp folder + rename)."""
    lr_dir = root / LR_DIR / f"X{scale}"
    wanted = [lr_dir / f"{p.stem}x{scale}.png" for p in hr_paths]
    if all(p.exists() for p in wanted):
        return wanted
    with staged_folder(lr_dir) as tmp:
        for p in tqdm(hr_paths, desc=f"LR x{scale} ({kernel})", leave=False):
            hr = crop_to_multiple(_read_rgb(p), scale)
            _write_png(tmp / f"{p.stem}x{scale}.png", make_lr(hr, scale, kernel))
    return wanted


def _video_cache_key(path: Path, crop_multiple: int) -> str:
    st = path.stat()
    with open(path, "rb") as f:
        head = f.read(1 << 20)
    h = hashlib.sha256(head + f"|{st.st_size}|{crop_multiple}".encode()).hexdigest()
    return h[:10]


def decode_to_frame_folder(path: Path, root: Path, crop_multiple: int, max_frames: int | None) -> dict:
    """Decode ``path`` into ``root/DIV2K_train_HR/`` (cropped HR PNGs), atomically.

    Reuses an existing folder that already holds at least ``max_frames`` frames (or the whole
    clip). Returns the folder's ``frames.json`` record.
    """
    meta_path = root / "frames.json"
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if meta["complete"] or (max_frames is not None and meta["frames"] >= max_frames):
            return meta
    info = probe_video(path)
    n = 0
    with staged_folder(root / HR_DIR, stale=list(root.glob("lr-*"))) as tmp:  # LR frames depend on the HR set
        total = min(max_frames, info.n_frames) if max_frames and info.n_frames > 0 else (max_frames or info.n_frames or None)
        for n, rgb in enumerate(tqdm(iter_video_frames(path, max_frames), total=total,
                                     desc=f"decode {path.name}", leave=False), start=1):
            _write_png(tmp / f"{n:05d}.png", crop_to_multiple(rgb, crop_multiple))
        if n == 0:
            raise DataError(f"{path} decoded to zero frames")
    meta = {"source": str(path), "fps": info.fps, "frames": n, "crop_multiple": crop_multiple,
            "complete": max_frames is None or n < max_frames,
            "source_size": f"{info.width}x{info.height}"}
    atomic_write_text(meta_path, json.dumps(meta, indent=2))
    return meta


def resolve_video(video: str | Path) -> Path:
    """A clip name from :data:`dydca_lib.sources.CLIPS` (fetched if needed), or a local path."""
    if isinstance(video, str) and video in CLIPS:
        return fetch_clip(video)
    path = Path(video).expanduser()
    if not path.exists():
        raise DataError(f"{video!r} is neither a known clip ({', '.join(CLIPS)}) nor an existing "
                        "path. Fix: give a clip name, a video file, or a VSD4K-style frame folder.")
    return path


def prepare_frames(video: str | Path, scale: int, max_frames: int | None = None, lr_kernel: str = "pil",
                   crop_multiple: int = 12, fps: float | None = None,
                   cache_root: Path | None = None) -> FrameSet:
    """Get HR and LR frames of ``video`` at ``scale`` from the on-disk cache, making them if needed.

    ``video`` is a clip name, a video file or a VSD4K-style folder. ``max_frames`` limits decoding
    to the first N frames (None: the whole clip). ``fps`` overrides the container's frame rate
    (needed for frame folders, which have none; default 30 as in VSD4K).
    """
    check_scale(scale)
    if lr_kernel not in LR_KERNELS:
        raise ValueError(f"lr_kernel must be one of {LR_KERNELS}, got {lr_kernel!r}")
    if crop_multiple % scale:
        raise ValueError(f"crop_multiple {crop_multiple} must be a multiple of scale {scale}")
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames must be >= 1 or None, got {max_frames}")
    path = resolve_video(video)
    cache_root = cache_root or data_dir() / "frames"
    if path.is_dir():
        return open_frame_folder(path, scale, fps or 30.0, lr_kernel, max_frames, cache_root)
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        probe_video(path)  # raises a clear error if it is not a video at all
    root = cache_root / f"{path.stem}-{_video_cache_key(path, crop_multiple)}"
    meta = decode_to_frame_folder(path, root, crop_multiple, max_frames)
    hr_paths = sorted((root / HR_DIR).glob("*.png"))[:max_frames]
    lr_paths = _make_lr_folder(root / f"lr-{lr_kernel}", hr_paths, scale, lr_kernel)  # one LR tree per kernel
    return FrameSet(path.stem, hr_paths, lr_paths, scale, fps or meta["fps"], lr_kernel, str(path))


# ---------------------------------------------------------------- chunks and held-out frames

@dataclass(frozen=True)
class Chunk:
    index: int
    start: int  # first frame id
    stop: int  # one past the last frame id

    @property
    def n_frames(self) -> int:
        return self.stop - self.start


def split_chunks(n_frames: int, fps: float, chunk_seconds: float) -> list[Chunk]:
    """Cut frames ``[0, n_frames)`` into chunks of ``round(chunk_seconds * fps)`` frames.

    VSD4K uses 5 s chunks. No frame is dropped: a trailing remainder of at least half a chunk
    becomes a chunk of its own, a shorter one joins the last chunk. Raises if the video is
    shorter than one chunk.
    """
    if chunk_seconds <= 0 or fps <= 0:
        raise ValueError(f"chunk_seconds ({chunk_seconds}) and fps ({fps}) must be positive")
    per_chunk = max(1, round(chunk_seconds * fps))
    if n_frames < per_chunk:
        raise DataError(f"the video has {n_frames} frames ({n_frames / fps:.2f} s at {fps:g} fps), "
                        f"shorter than one {chunk_seconds:g} s chunk ({per_chunk} frames). Fix: lower "
                        "chunk_seconds, raise max_frames, or use a longer clip.")
    n_chunks, remainder = divmod(n_frames, per_chunk)
    chunks = [Chunk(i, i * per_chunk, (i + 1) * per_chunk) for i in range(n_chunks)]
    if remainder * 2 >= per_chunk:  # at least half a chunk: a chunk of its own
        chunks.append(Chunk(n_chunks, n_chunks * per_chunk, n_frames))
    else:
        chunks[-1] = Chunk(chunks[-1].index, chunks[-1].start, n_frames)
    return chunks


def plan_frames(n_frames: int, fps: float, chunk_seconds: float, heldout_every: int = 10,
                heldout_policy: str = "interleaved", tail_fraction: float = 0.2) -> tuple[list[Chunk], pd.DataFrame]:
    """Chunks plus a per-frame table ``frame, time_s, chunk, split`` (split: train/heldout/unused).

    * ``interleaved`` (default): in every chunk, 1 frame in ``heldout_every`` (the middle one of
      each run of ``heldout_every``) is held out from training and used for full-frame evaluation,
      so every chunk, and every per-chunk model, has unseen test frames.
    * ``tail`` (the CaFM reading: frames after the training range): the last ``tail_fraction`` of
      the frames is never trained on; 1 in ``heldout_every`` of them is evaluated, the rest are
      ``unused``. Chunks cover the training range; tail frames belong to the last chunk.
    """
    if heldout_policy not in HELDOUT_POLICIES:
        raise ValueError(f"heldout_policy must be one of {HELDOUT_POLICIES}, got {heldout_policy!r}")
    if heldout_every < 2:
        raise ValueError(f"heldout_every must be >= 2, got {heldout_every}")
    ids = np.arange(n_frames)
    if heldout_policy == "interleaved":
        chunks = split_chunks(n_frames, fps, chunk_seconds)
        chunk_of = np.concatenate([np.full(c.n_frames, c.index) for c in chunks])
        start_of = np.array([chunks[c].start for c in chunk_of])
        held = (ids - start_of) % heldout_every == heldout_every // 2
        split = np.where(held, "heldout", "train")
    else:
        if not 0 < tail_fraction < 1:
            raise ValueError(f"tail_fraction must be in (0, 1), got {tail_fraction}")
        n_train = n_frames - max(1, math.ceil(n_frames * tail_fraction))
        chunks = split_chunks(n_train, fps, chunk_seconds)
        chunk_of = np.concatenate([np.full(c.n_frames, c.index) for c in chunks]
                                  + [np.full(n_frames - n_train, chunks[-1].index)])
        tail_pos = ids - n_train
        split = np.where(tail_pos < 0, "train",
                         np.where(tail_pos % heldout_every == 0, "heldout", "unused"))
    table = pd.DataFrame({"frame": ids, "time_s": np.round(ids / fps, 4), "chunk": chunk_of, "split": split})
    return chunks, table


# ---------------------------------------------------------------- per-frame content statistics

def luminance(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luma in [0, 255] (float)."""
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    return 0.299 * r + 0.587 * g + 0.114 * b


def texture(rgb: np.ndarray) -> float:
    """Mean Sobel gradient magnitude of the luma: a simple, content-only texture measure."""
    y = luminance(rgb).astype(np.float32)
    gx = cv2.Sobel(y, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(y, cv2.CV_32F, 0, 1, ksize=3)
    return float(np.mean(np.sqrt(gx * gx + gy * gy)))


def frame_statistics(frames: FrameSet, frame_ids) -> pd.DataFrame:
    """Mean luminance and texture of the HR frames ``frame_ids``, one frame in memory at a time."""
    rows = []
    for i in tqdm(list(frame_ids), desc="frame statistics", leave=False):
        hr = frames.hr(int(i))
        rows.append({"frame": int(i), "mean_luminance": float(luminance(hr).mean()), "texture": texture(hr)})
    return pd.DataFrame(rows)


def summarize_chunks(frames: FrameSet, frame_table: pd.DataFrame, per_frame: pd.DataFrame) -> pd.DataFrame:
    """One row per chunk: frame counts, seconds, sizes, and the mean of every per-frame column."""
    df = frame_table.merge(per_frame, on="frame", how="left")
    value_cols = [c for c in per_frame.columns if c != "frame"]
    rows = []
    for chunk, g in df.groupby("chunk", sort=True):
        row = {"chunk": int(chunk), "frames": len(g), "train_frames": int((g.split == "train").sum()),
               "heldout_frames": int((g.split == "heldout").sum()),
               "seconds": round(len(g) / frames.fps, 3),
               "first_frame": int(g.frame.min()), "last_frame": int(g.frame.max()),
               "hr_size": f"{frames.hr_hw[1]}x{frames.hr_hw[0]}",
               "lr_size": f"{frames.lr_hw[1]}x{frames.lr_hw[0]}"}
        row.update({c: float(g[c].mean()) for c in value_cols})
        rows.append(row)
    return pd.DataFrame(rows)

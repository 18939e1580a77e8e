"""Streams of frames through a real encoder: the FFmpeg binary that ``imageio-ffmpeg`` bundles
(libx264, libx265), so nothing outside the package registry is needed.

Every stream goes RGB → YUV 4:2:0 (BT.601, FFmpeg's default conversion) → codec → RGB, so the
lossy colour conversion is in every curve of notebook 08; :func:`yuv420_roundtrip` measures it
alone (lossless x264). Bits are the elementary stream's (Annex B, no container).
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

CODECS = {"x264": ("libx264", "h264"), "x265": ("libx265", "hevc")}  # name: (FFmpeg encoder, raw stream format)
PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
CRF_RANGE = (0, 51)  # 8-bit x264 and x265
ENCODE_VERSION = 1  # bump when encoding or decoding changes what a point produces


def ffmpeg_exe() -> str:
    """The FFmpeg binary bundled by ``imageio-ffmpeg`` (libx264, libx265)."""
    try:
        import imageio_ffmpeg
    except ImportError as e:
        raise RuntimeError("rate-quality needs imageio-ffmpeg (pip install -r requirements.txt)") from e
    return imageio_ffmpeg.get_ffmpeg_exe()


@functools.lru_cache(maxsize=None)
def ffmpeg_version() -> str:
    out = subprocess.run([ffmpeg_exe(), "-hide_banner", "-version"], capture_output=True, text=True).stdout
    m = re.search(r"ffmpeg version (\S+)", out)
    return m.group(1) if m else "unknown"


@functools.lru_cache(maxsize=None)
def available_encoders() -> frozenset:
    out = subprocess.run([ffmpeg_exe(), "-hide_banner", "-encoders"], capture_output=True, text=True).stdout
    return frozenset(line.split()[1] for line in out.splitlines() if line.startswith(" V") and len(line.split()) > 1)


def check_ladder(codecs, crfs, preset: str, encoders=None) -> None:
    """One clear error, before any work, for a codec the encoder lacks, a CRF outside the codec's
    range or an unknown preset."""
    problems = []
    if not codecs:
        problems.append("give at least one codec")
    if not crfs:
        problems.append("give at least one CRF")
    for c in codecs:
        if c not in CODECS:
            problems.append(f"unknown codec {c!r} (known: {', '.join(CODECS)})")
        elif CODECS[c][0] not in (available_encoders() if encoders is None else encoders):
            problems.append(f"codec {c!r}: this FFmpeg ({ffmpeg_exe()}) has no {CODECS[c][0]} encoder")
    for q in crfs:
        if not (isinstance(q, (int, np.integer)) and CRF_RANGE[0] <= q <= CRF_RANGE[1]):
            problems.append(f"CRF {q!r} is outside {CRF_RANGE[0]}..{CRF_RANGE[1]} (integers)")
    if len(set(crfs)) != len(list(crfs)):
        problems.append(f"CRFs repeat: {list(crfs)}")
    if preset not in PRESETS:
        problems.append(f"unknown preset {preset!r} (one of {', '.join(PRESETS)})")
    if problems:
        raise ValueError("rate-quality ladder: " + "; ".join(problems))


@dataclass(frozen=True)
class Encoding:
    codec: str
    crf: int
    preset: str = "medium"

    def args(self) -> list[str]:
        lib, fmt = CODECS[self.codec]
        quiet = ["-x265-params", "log-level=error"] if lib == "libx265" else []
        return ["-c:v", lib, "-preset", self.preset, "-crf", str(int(self.crf)), *quiet, "-pix_fmt", "yuv420p", "-f", fmt]

    @property
    def label(self) -> str:
        return f"{self.codec} crf {self.crf}"


def _even(frames: np.ndarray) -> np.ndarray:
    """4:2:0 needs even sides: odd ones get one replicated row/column (cropped after decoding)."""
    h, w = frames.shape[1:3]
    return np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge") if h % 2 or w % 2 else frames


def _ffmpeg(args: list[str], data: bytes) -> bytes:
    proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", *args], input=data, capture_output=True)
    if proc.returncode:
        raise RuntimeError(f"ffmpeg {' '.join(args)} failed: {proc.stderr.decode(errors='replace')[-800:]}")
    return proc.stdout


def encode(frames: np.ndarray, fps: float, enc: Encoding | None) -> bytes:
    """The elementary stream (Annex B, no container) of ``frames`` (N, H, W, 3 uint8 RGB);
    ``enc=None`` is lossless x264 (qp 0), i.e. only the YUV 4:2:0 conversion."""
    frames = _even(np.ascontiguousarray(frames, dtype=np.uint8))
    n, h, w = frames.shape[:3]
    codec = enc.args() if enc else ["-c:v", "libx264", "-preset", "ultrafast", "-qp", "0", "-pix_fmt", "yuv420p", "-f", "h264"]
    return _ffmpeg(["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", f"{fps:g}", "-i", "-",
                    "-threads", "2", *codec, "-"], frames.tobytes())


def decode(stream: bytes, codec: str, hw: tuple[int, int]) -> np.ndarray:
    """Frames (N, H, W, 3 uint8 RGB) of an elementary stream, cropped to ``hw``."""
    h, w = hw
    he, we = h + h % 2, w + w % 2
    raw = _ffmpeg(["-f", CODECS[codec][1], "-i", "-", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"], stream)
    frames = np.frombuffer(raw, np.uint8)
    if frames.size % (he * we * 3):
        raise RuntimeError(f"decoded {frames.size} bytes, not a whole number of {we}x{he} RGB frames")
    return frames.reshape(-1, he, we, 3)[:, :h, :w]


def check_frame_count(frames: np.ndarray, expected: int) -> None:
    if len(frames) != expected:
        raise RuntimeError(f"the codec returned {len(frames)} frames for {expected}")


def yuv420_roundtrip(frames: np.ndarray, fps: float) -> np.ndarray:
    """``frames`` through RGB → YUV 4:2:0 → RGB only (lossless x264): every curve's ceiling."""
    out = decode(encode(frames, fps, None), "x264", frames.shape[1:3])
    check_frame_count(out, len(frames))
    return out


# ---------------------------------------------------------------- decoded LR frames as a FrameSet

def encoded_lr_frames(frames, enc: Encoding, root: Path | None = None):
    """``frames``' LR clip through ``enc``: a :class:`~dydca_lib.video.FrameSet` whose LR frames
    are the decoded ones (HR unchanged), cached as PNGs under ``data/frames/encoded/``, and the
    elementary stream's size. Keyed by the source frames, the encoding and the FFmpeg version."""
    import cv2

    from .io import atomic_write_text
    from .paths import data_dir
    from .video import FrameSet

    key_record = {"frames": frames.identity(), "n": len(frames), "enc": asdict(enc), "ffmpeg": ffmpeg_version(),
                  "v": ENCODE_VERSION}
    key = hashlib.sha256(json.dumps(key_record, sort_keys=True).encode()).hexdigest()[:12]
    folder = (root or data_dir() / "frames" / "encoded") / (f"{frames.name}-x{frames.scale}-{enc.codec}-crf{enc.crf}-"
                                                            f"{enc.preset}-{key}")
    info_path = folder / "stream.json"
    if not info_path.exists():
        lr = np.stack([frames.lr(i) for i in range(len(frames))])
        stream = encode(lr, frames.fps, enc)
        decoded = decode(stream, enc.codec, frames.lr_hw)
        check_frame_count(decoded, len(frames))
        folder.mkdir(parents=True, exist_ok=True)
        for i, img in enumerate(decoded):
            cv2.imwrite(str(folder / f"{i + 1:05d}.png"), img[..., ::-1])
        atomic_write_text(info_path, json.dumps({**key_record, "stream_bytes": len(stream)}, indent=1))  # last: complete
    info = json.loads(info_path.read_text())
    lr_paths = [folder / f"{i + 1:05d}.png" for i in range(len(frames))]
    fs = FrameSet(frames.name, frames.hr_paths, lr_paths, frames.scale, frames.fps, frames.lr_kernel, frames.source)
    return fs, int(info["stream_bytes"])


# ---------------------------------------------------------------- VMAF

VMAF_MODEL = "vmaf_v0.6.1"  # libvmaf's built-in default model (1080p viewing); FFmpeg's libvmaf filter


def has_vmaf() -> bool:
    """Whether the bundled FFmpeg has the libvmaf filter."""
    out = subprocess.run([ffmpeg_exe(), "-hide_banner", "-filters"], capture_output=True, text=True).stdout
    return bool(re.search(r"^\s*\S+\s+libvmaf\s", out, flags=re.M))


def vmaf(reference: np.ndarray, distorted: np.ndarray, fps: float, threads: int = 2) -> dict:
    """VMAF (libvmaf in the bundled FFmpeg, model :data:`VMAF_MODEL`) of ``distorted`` against
    ``reference``: runs of consecutive frames (N, H, W, 3 uint8 RGB, same shape), both converted to
    YUV 4:2:0 by FFmpeg as every stream here is. ``{"vmaf": mean, "vmaf_min", "vmaf_frames": [...]}``."""
    import tempfile

    reference, distorted = (np.ascontiguousarray(_even(np.asarray(a, dtype=np.uint8))) for a in (reference, distorted))
    if reference.shape != distorted.shape or reference.ndim != 4 or reference.shape[-1] != 3 or not len(reference):
        raise ValueError(f"VMAF needs two runs of RGB frames of one shape, got {reference.shape} and {distorted.shape}")
    if not has_vmaf():
        raise RuntimeError(f"this FFmpeg ({ffmpeg_version()}) has no libvmaf filter")
    n, h, w = reference.shape[:3]
    raw = ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", f"{fps:g}"]
    with tempfile.TemporaryDirectory() as tmp:
        paths = {name: Path(tmp) / f"{name}.rgb" for name in ("ref", "dist")}
        paths["ref"].write_bytes(reference.tobytes())
        paths["dist"].write_bytes(distorted.tobytes())
        log = Path(tmp) / "vmaf.json"
        graph = (f"[0:v]format=yuv420p[dist];[1:v]format=yuv420p[ref];"  # libvmaf: distorted first, then reference
                 f"[dist][ref]libvmaf=model=version={VMAF_MODEL}:log_fmt=json:log_path={log}:n_threads={int(threads)}")
        _ffmpeg([*raw, "-i", str(paths["dist"]), *raw, "-i", str(paths["ref"]), "-lavfi", graph, "-f", "null", "-"], b"")
        frames = [float(f["metrics"]["vmaf"]) for f in json.loads(log.read_text())["frames"]]
    if len(frames) != n:
        raise RuntimeError(f"libvmaf scored {len(frames)} frames of {n}")
    return {"vmaf": float(np.mean(frames)), "vmaf_min": float(np.min(frames)), "vmaf_frames": frames}


# ---------------------------------------------------------------- long streams, frame by frame

def encode_iter(frames, hw: tuple[int, int], fps: float, enc: Encoding) -> bytes:
    """:func:`encode` for a stream too long to hold as one array: ``frames`` is an iterable of
    (H, W, 3) uint8 RGB frames of size ``hw``, written to FFmpeg one at a time (the stream goes to
    a temporary file, so no pipe can fill while frames are still being written)."""
    import tempfile

    h, w = hw
    he, we = h + h % 2, w + w % 2
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "stream"
        proc = subprocess.Popen([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
                                 "-s", f"{we}x{he}", "-r", f"{fps:g}", "-i", "-", "-threads", "2", *enc.args(), "-y",
                                 str(out)], stdin=subprocess.PIPE, stderr=subprocess.PIPE)
        n = 0
        try:
            for f in frames:
                f = np.asarray(f, dtype=np.uint8)
                if f.shape != (h, w, 3):
                    raise ValueError(f"frame {n} is {f.shape}, the stream is {w}x{h} RGB")
                proc.stdin.write(np.ascontiguousarray(_even(f[None])[0]).tobytes())
                n += 1
            proc.stdin.close()
            err = proc.stderr.read()
            if proc.wait():
                raise RuntimeError(f"ffmpeg encode ({enc.label}) failed: {err.decode(errors='replace')[-800:]}")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if not n:
            raise ValueError("no frames to encode")
        return out.read_bytes()


def decode_some(stream: bytes, codec: str, hw: tuple[int, int], keep) -> dict:
    """The frames ``keep`` (indices into the stream) of an elementary stream, cropped to ``hw``,
    read one frame at a time (``{index: (H, W, 3) uint8 RGB}``; the rest are decoded and dropped).
    An index past the stream's end is an error."""
    import tempfile

    h, w = hw
    he, we = h + h % 2, w + w % 2
    keep, size, out = set(int(k) for k in keep), he * we * 3, {}
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "stream"
        src.write_bytes(stream)
        proc = subprocess.Popen([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-f", CODECS[codec][1], "-i", str(src),
                                 "-f", "rawvideo", "-pix_fmt", "rgb24", "-"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        try:
            i = 0
            while len(out) < len(keep):
                buf = proc.stdout.read(size)
                if len(buf) < size:
                    break
                if i in keep:
                    out[i] = np.frombuffer(buf, np.uint8).reshape(he, we, 3)[:h, :w].copy()
                i += 1
        finally:
            proc.stdout.close()
            proc.kill()
            proc.wait()
    missing = sorted(keep - set(out))
    if missing:
        raise RuntimeError(f"the {codec} stream ended before frame(s) {missing[:5]} (decoded {i})")
    return out

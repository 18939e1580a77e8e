"""Training SR models: L1 loss, Adam, cosine schedule, resumable checkpoints.

A *batch source* yields batch ``step`` as a pure function of ``(seed, step)``, so a run killed at
any point resumes from its last checkpoint and ends with the same weights as an uninterrupted
run. Two sources:

* :class:`RandomPatchSampler` — random aligned patches from whole images (the general model);
* :class:`BucketedPatchSource` — the patches of a manifest in epochs, batched by patch size
  (same-size patches in a batch, buckets interleaved and shuffled), each batch tagged with the
  path its patches are routed to (the dynamic model, STDO's per-bin models, ...). Batches of
  larger patches hold proportionally fewer patches, so every step sees the same pixel count.

**Speed.** :func:`fit` trains in channels-last layout and, where the hardware has native bf16
(AMX / AVX512-BF16 on a CPU, bf16 tensor cores on CUDA), under bf16 autocast with fp32 master
weights and an fp32 loss (``FitConfig.precision="auto"``); elsewhere in fp32. The precision a
model was trained with is part of its cache key and recorded in its history.

Checkpoints are plain dicts of tensors and numbers, loadable with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from .codeversion import code_version
from .io import atomic_write_bytes
from .models import build_model, model_record, to_tensor
from .paths import data_dir
from .runinfo import cpu_flags
from .tensors import hr_margin, padded_for_patches

PRECISIONS = ("auto", "fp32", "bf16")


@dataclass
class Batch:
    lr: torch.Tensor  # N,3,h+2c,w+2c
    hr: torch.Tensor  # N,3,h*s,w*s
    path: int | None = None  # None: a single-path model
    crop: int = 0  # HR pixels to drop on each side of the output (the context margin)


class RandomPatchSampler:
    """Random aligned (LR, HR) patches from a list of uint8 image pairs, with flips.

    ``patch`` is the LR patch size ``(h, w)``; images are sampled in proportion to their area.
    """

    steps_per_epoch = None

    def __init__(self, pairs: list[tuple[np.ndarray, np.ndarray]], scale: int, patch: tuple[int, int],
                 batch_size: int = 16, seed: int = 0, augment: bool = True):
        ph, pw = patch
        pairs = [(lr, hr) for lr, hr in pairs if lr.shape[0] >= ph and lr.shape[1] >= pw]
        if not pairs:
            raise ValueError(f"no training image is at least {pw}x{ph} LR pixels")
        for lr, hr in pairs:
            if hr.shape[:2] != (lr.shape[0] * scale, lr.shape[1] * scale):
                raise ValueError(f"HR {hr.shape[:2]} is not x{scale} of LR {lr.shape[:2]}")
        self.pairs, self.scale, self.patch, self.augment = pairs, scale, (ph, pw), augment
        self.batch_size, self.seed = batch_size, seed
        weights = np.array([lr.shape[0] * lr.shape[1] for lr, _ in pairs], dtype=np.float64)
        self.weights = weights / weights.sum()

    def batch(self, step: int) -> Batch:
        rng = np.random.default_rng((self.seed, step))
        (ph, pw), s = self.patch, self.scale
        lrs, hrs = [], []
        for k in rng.choice(len(self.pairs), size=self.batch_size, p=self.weights):
            lr, hr = self.pairs[k]
            y = int(rng.integers(0, lr.shape[0] - ph + 1))
            x = int(rng.integers(0, lr.shape[1] - pw + 1))
            a, b = lr[y:y + ph, x:x + pw], hr[y * s:(y + ph) * s, x * s:(x + pw) * s]
            if self.augment:
                if rng.random() < 0.5:
                    a, b = a[:, ::-1], b[:, ::-1]
                if rng.random() < 0.5:
                    a, b = a[::-1], b[::-1]
            lrs.append(np.ascontiguousarray(a))
            hrs.append(np.ascontiguousarray(b))
        return Batch(to_tensor(np.stack(lrs)), to_tensor(np.stack(hrs)))


class BucketedPatchSource:
    """The patches of ``manifest`` (rows ``frame, y, x, h, w, path``) in shuffled, size-bucketed batches.

    ``lr_frames``/``hr_frames`` map frame id -> uint8 frame. ``context`` extra LR pixels around
    every patch (edge-replicated at the frame border) are fed to the model and the matching
    ``context * scale`` HR margin is cropped from its output before the loss, exactly as
    full-frame inference with context does. Manifests without a ``path`` column train one path.
    """

    def __init__(self, manifest: pd.DataFrame, lr_frames: dict, hr_frames: dict, scale: int,
                 batch_size: int = 16, context: int = 0, seed: int = 0, augment: bool = True,
                 equal_pixels: bool = True):
        if manifest.empty:
            raise ValueError("the manifest holds no patches to train on")
        missing = set(manifest.frame) - set(lr_frames)
        if missing:
            raise ValueError(f"frames {sorted(missing)[:5]} of the manifest were not loaded")
        self.manifest = manifest.reset_index(drop=True)
        self.lr_frames, self.hr_frames = lr_frames, hr_frames
        self.scale, self.batch_size, self.context, self.seed, self.augment = scale, batch_size, context, seed, augment
        self.has_path = "path" in self.manifest
        # a batch holds one size and one path (Dy-DCA: the path follows the size; CaFM: the chunk)
        groups = [((h, w), g) for (h, w, *_), g in
                  self.manifest.groupby(["h", "w"] + ["path"] * self.has_path, sort=True)]
        self.buckets = [g.index.to_numpy() for _, g in groups]
        smallest = min(h * w for (h, w), _ in groups)
        # equal_pixels: a bucket of patches k times larger than the smallest gets batches k times
        # smaller, so every step sees the same number of pixels and a path of large patches is not
        # starved of optimizer steps (the Dy-DCA code used batch size 1 for the same reason)
        self.bucket_batch = [max(1, round(batch_size * smallest / (h * w))) if equal_pixels else batch_size
                             for (h, w), _ in groups]
        # every frame padded once (context and overhang, edge-replicated), so a batch is slices
        # of these arrays: cutting patches out of freshly padded frames at every step cost more
        # than the training step itself on small patches
        c, s, m = context, scale, self.manifest
        hmax, wmax = int((m.y + m.h).max()), int((m.x + m.w).max())
        used = sorted(set(m.frame))
        self._lr = {f: padded_for_patches(lr_frames[f], hmax, wmax, c) for f in used}
        self._hr = {f: padded_for_patches(hr_frames[f], hmax * s, wmax * s, 0) for f in used}
        self._cells = m[["frame", "y", "x", "h", "w"]].to_numpy(dtype=np.int64)
        self._paths = m.path.to_numpy(dtype=np.int64) if self.has_path else None
        self.steps_per_epoch = sum(math.ceil(len(b) / n) for b, n in zip(self.buckets, self.bucket_batch))
        self._plan_epoch, self._plan = None, None

    def plan(self, epoch: int) -> list[np.ndarray]:
        """The row indices of every batch of ``epoch``, in training order."""
        if self._plan_epoch != epoch:
            rng = np.random.default_rng((self.seed, epoch))
            batches = []
            for rows, n in zip(self.buckets, self.bucket_batch):
                rows = rng.permutation(rows)
                batches += [rows[i:i + n] for i in range(0, len(rows), n)]
            order = rng.permutation(len(batches))
            self._plan_epoch, self._plan = epoch, [batches[i] for i in order]
        return self._plan

    def batch(self, step: int) -> Batch:
        epoch, k = divmod(step, self.steps_per_epoch)
        rows = self.plan(epoch)[k]
        _, first, which = np.unique(self._cells[rows, 0], return_index=True, return_inverse=True)
        rows = rows[np.argsort(first[which], kind="stable")]  # patches of one frame together, frames as first met
        c2, s = 2 * self.context, self.scale
        lr = np.stack([self._lr[f][y:y + h + c2, x:x + w + c2] for f, y, x, h, w in self._cells[rows]])
        hr = np.stack([self._hr[f][y * s:(y + h) * s, x * s:(x + w) * s] for f, y, x, h, w in self._cells[rows]])
        if self.augment:
            rng = np.random.default_rng((self.seed, epoch, k))
            if rng.random() < 0.5:
                lr, hr = lr[:, :, ::-1], hr[:, :, ::-1]
            if rng.random() < 0.5:
                lr, hr = lr[:, ::-1], hr[:, ::-1]
        path = int(self._paths[rows[0]]) if self.has_path else None
        return Batch(to_tensor(np.ascontiguousarray(lr)), to_tensor(np.ascontiguousarray(hr)), path,
                     hr_margin(self.context, s))


@dataclass
class FitConfig:
    steps: int = 1000
    lr: float = 1e-3
    lr_min: float = 4e-8  # cosine annealing floor, as the Dy-DCA code
    checkpoint_every: int = 100
    seed: int = 0
    device: str = "auto"  # "auto": CUDA when present, else CPU
    precision: str = "auto"  # "auto": bf16 autocast where the hardware has native bf16, else fp32
    channels_last: bool = True  # NHWC activations (oneDNN's fast convolution layout on CPUs)


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 natively: AMX or AVX512-BF16 on a CPU (oneDNN uses them;
    elsewhere bf16 is emulated and slower than fp32), bf16 support on CUDA."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and bool({"amx_bf16", "avx512_bf16"} & cpu_flags())


def resolve_precision(precision: str, device: torch.device) -> str:
    """``"auto"`` -> ``"bf16"`` where :func:`native_bf16`, else ``"fp32"``; ``"bf16"`` where it is
    not native is an error (it would train slower than fp32, not faster)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    if precision == "bf16" and not native_bf16(device):
        raise ValueError(f"precision 'bf16': {device} has no native bf16 (CPU flags amx_bf16/avx512_bf16); use fp32")
    return precision


def save_checkpoint(path: Path, **state) -> None:
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def load_model(path: Path) -> nn.Module:
    """Load a model saved with :func:`save_checkpoint` (``model=`` weights, ``config=`` record)."""
    ckpt = load_checkpoint(path)
    model = build_model(ckpt["config"])
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as e:
        raise RuntimeError(f"{path} does not match the model shape {ckpt['config']}: {e}") from None
    return model.eval()


def run_model(model: nn.Module, batch: Batch) -> torch.Tensor:
    out = model(batch.lr) if batch.path is None else model(batch.lr, batch.path)
    c = batch.crop
    return out[..., c:out.shape[-2] - c, c:out.shape[-1] - c] if c else out


def _memory_format(channels_last: bool):
    return torch.channels_last if channels_last else torch.contiguous_format


def fit(model: nn.Module, source, cfg: FitConfig, checkpoint: Path | None = None, desc: str = "train") -> pd.DataFrame:
    """Train ``model`` on ``source`` for ``cfg.steps`` batches (L1, Adam, cosine schedule).

    With ``checkpoint``, state is saved every ``cfg.checkpoint_every`` steps (and at the end) and
    a rerun resumes from it. Returns the history: step, loss, lr, patches, lr_pixels, seconds,
    precision. The model comes back on the CPU in the default (NCHW) layout, in fp32.
    """
    device = resolve_device(cfg.device)
    precision = resolve_precision(cfg.precision, device)
    fmt = _memory_format(cfg.channels_last)
    model.to(device=device, memory_format=fmt)
    torch.manual_seed(cfg.seed)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, cfg.steps), eta_min=cfg.lr_min)
    history, start = [], 0
    record = model_record(model) if hasattr(model, "config") else None
    if checkpoint is not None and Path(checkpoint).exists():
        ckpt = load_checkpoint(checkpoint)
        if ckpt.get("config") != record:
            raise RuntimeError(f"checkpoint {checkpoint} is for model {ckpt.get('config')}, not {record}; "
                               "delete it to start over")
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        history, start = list(ckpt["history"]), int(ckpt["step"])
    loss_fn = nn.L1Loss()
    model.train()
    t0 = time.perf_counter() - (history[-1]["seconds"] if history else 0.0)
    bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, desc=desc, leave=False)
    for step in bar:
        batch = source.batch(step)
        lr_b = batch.lr.to(device).contiguous(memory_format=fmt)
        hr_b = batch.hr.to(device).contiguous(memory_format=fmt)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            out = run_model(model, Batch(lr_b, hr_b, batch.path, batch.crop))
        loss = loss_fn(out.float(), hr_b)  # the loss (and every weight update) in fp32
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        history.append({"step": step + 1, "loss": loss.item(), "lr": sched.get_last_lr()[0],
                        "patches": int(lr_b.shape[0]), "lr_pixels": int(lr_b.shape[0] * lr_b.shape[2] * lr_b.shape[3]),
                        "seconds": time.perf_counter() - t0, "precision": precision})
        if step % 10 == 0:
            bar.set_postfix(loss=f"{loss.item():.4f}")
        if checkpoint is not None and ((step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.steps):
            save_checkpoint(checkpoint, model=_plain_state(model), optimizer=opt.state_dict(),
                            scheduler=sched.state_dict(), torch_rng=torch.get_rng_state(),
                            history=history, step=step + 1, config=record)
    model.to(device="cpu", memory_format=torch.contiguous_format).eval()
    return pd.DataFrame(history, columns=["step", "loss", "lr", "patches", "lr_pixels", "seconds", "precision"])


def _plain_state(model: nn.Module) -> dict:
    """The state dict on the CPU in the default layout (checkpoints never depend on how we trained)."""
    return {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}


def throughput(history: pd.DataFrame) -> dict:
    """Patches/s and LR pixels/s over a training history (wall time of the steps recorded)."""
    secs = float(history.seconds.iloc[-1]) if len(history) else 0.0
    precision = history["precision"].iloc[-1] if len(history) and "precision" in history else "fp32"
    return {"steps": len(history), "seconds": round(secs, 2), "precision": precision,
            "patches_per_s": round(history.patches.sum() / secs, 2) if secs else None,
            "lr_pixels_per_s": round(history.lr_pixels.sum() / secs, 1) if secs else None}


TRAINING_SETTINGS = {  # (precision, channels_last): the trainer before and after the speed-up, and the step between
    "fp32 NCHW (before)": ("fp32", False),
    "fp32 channels-last": ("fp32", True),
    "bf16 channels-last (auto)": ("bf16", True),
}


def training_speed(make_model, source, steps: int = 20, warmup: int = 3, settings: dict | None = None,
                   device: str = "auto") -> pd.DataFrame:
    """LR pixels/s of :func:`fit`'s training step for each ``{label: (precision, channels_last)}``
    (default :data:`TRAINING_SETTINGS`), on the same batches of ``source`` and a fresh
    ``make_model()`` each; settings the hardware lacks are rows with ``supported=False``.
    Measured interleaved, one setting after another, so machine load hits all of them alike."""
    dev = resolve_device(device)
    rows = []
    for label, (precision, channels_last) in (settings or TRAINING_SETTINGS).items():
        row = {"setting": label, "precision": precision, "channels_last": channels_last,
               "supported": precision != "bf16" or native_bf16(dev)}
        if row["supported"]:
            torch.manual_seed(0)
            cfg = FitConfig(steps=warmup + steps, seed=0, device=device, precision=precision, channels_last=channels_last)
            hist = fit(make_model(), source, cfg, desc=label)
            timed = hist.iloc[warmup:]
            secs = float(timed.seconds.iloc[-1] - hist.seconds.iloc[warmup - 1]) if warmup else float(timed.seconds.iloc[-1])
            row.update(steps=steps, seconds=round(secs, 3), lr_pixels_per_s=round(timed.lr_pixels.sum() / secs, 1))
        rows.append(row)
    out = pd.DataFrame(rows)
    if "lr_pixels_per_s" in out:
        out["speedup_vs_before"] = (out.lr_pixels_per_s / out.lr_pixels_per_s.iloc[0]).round(2)
    return out


def train_or_load(model: nn.Module, source, cfg: FitConfig, key: dict, name: str,
                  cache_dir: Path | None = None, desc: str | None = None,
                  code: tuple[str, ...] = ("dydca_lib.train",)) -> tuple[nn.Module, pd.DataFrame, dict]:
    """Train ``model`` (resumably) or load it from ``data/models/<name>-<hash>.pt``.

    The hash covers ``key`` (whatever determines the training data), the model's record, the fit
    config and the code that trains it (``code``: the modules whose import closure does, e.g. the
    caller's, :func:`dydca_lib.codeversion.code_version`; this module always), so a changed parameter
    or trainer trains a new model and an unchanged one costs a file read, whatever else was edited.
    Returns ``(model, history, info)``.
    """
    device = resolve_device(cfg.device)
    # the precision actually used (bf16 and fp32 training give different weights); the device does not count
    record = {"key": key, "model": model_record(model), "code": code_version(__name__, *code),
              "fit": asdict(cfg) | {"device": "any", "precision": resolve_precision(cfg.precision, device)}}
    digest = hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()[:12]
    cache_dir = cache_dir or data_dir() / "models"
    final = cache_dir / f"{name}-{digest}.pt"
    if not final.exists():
        ckpt = final.with_suffix(".ckpt")
        history = fit(model, source, cfg, checkpoint=ckpt, desc=desc or name)
        save_checkpoint(final, model=model.state_dict(), config=model_record(model),
                        history=history.to_dict("records"))
        ckpt.unlink(missing_ok=True)
    stored = load_checkpoint(final)
    model.load_state_dict(stored["model"])
    model.eval()
    history = pd.DataFrame(stored["history"])
    return model, history, {"cache_file": final.name, **throughput(history)}

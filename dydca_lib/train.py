"""Training SR models on (LR, HR) frame pairs: random aligned patches, L1, Adam, cosine schedule,
resumable checkpoints. Checkpoints are plain dicts of tensors and numbers, loadable with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from .io import atomic_write_bytes
from .models import WDSR, build_model, to_tensor


class RandomPatchSampler:
    """Random aligned (LR, HR) patch pairs from a list of uint8 frame pairs, with flips/rotations.

    ``patch`` is the LR patch size ``(h, w)``; the HR patch is ``scale`` times larger.
    """

    def __init__(self, pairs: list[tuple[np.ndarray, np.ndarray]], scale: int, patch: tuple[int, int],
                 seed: int = 0, augment: bool = True):
        ph, pw = patch
        pairs = [(lr, hr) for lr, hr in pairs if lr.shape[0] >= ph and lr.shape[1] >= pw]
        if not pairs:
            raise ValueError(f"no training image is at least {pw}x{ph} LR pixels")
        for lr, hr in pairs:
            if hr.shape[:2] != (lr.shape[0] * scale, lr.shape[1] * scale):
                raise ValueError(f"HR {hr.shape[:2]} is not x{scale} of LR {lr.shape[:2]}")
        self.pairs, self.scale, self.patch, self.augment = pairs, scale, (ph, pw), augment
        weights = np.array([lr.shape[0] * lr.shape[1] for lr, _ in pairs], dtype=np.float64)
        self.weights = weights / weights.sum()  # sample images by area
        self.rng = np.random.default_rng(seed)

    def batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        (ph, pw), s = self.patch, self.scale
        lrs, hrs = [], []
        for k in self.rng.choice(len(self.pairs), size=n, p=self.weights):
            lr, hr = self.pairs[k]
            y = int(self.rng.integers(0, lr.shape[0] - ph + 1))
            x = int(self.rng.integers(0, lr.shape[1] - pw + 1))
            a, b = lr[y:y + ph, x:x + pw], hr[y * s:(y + ph) * s, x * s:(x + pw) * s]
            if self.augment:
                if self.rng.random() < 0.5:
                    a, b = a[:, ::-1], b[:, ::-1]
                if self.rng.random() < 0.5:
                    a, b = a[::-1], b[::-1]
            lrs.append(np.ascontiguousarray(a))
            hrs.append(np.ascontiguousarray(b))
        return to_tensor(np.stack(lrs)), to_tensor(np.stack(hrs))

    def state(self) -> dict:
        return self.rng.bit_generator.state

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state


@dataclass
class FitConfig:
    steps: int = 1000
    batch_size: int = 16
    lr: float = 1e-3
    lr_min: float = 4e-8  # cosine annealing floor, as the Dy-DCA code
    checkpoint_every: int = 100
    seed: int = 0


def save_checkpoint(path: Path, **state) -> None:
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def load_model(path: Path) -> WDSR:
    """Load a model saved by :func:`fit` (its config is stored beside the weights)."""
    ckpt = load_checkpoint(path)
    model = build_model(ckpt["config"])
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as e:
        raise RuntimeError(f"{path} does not match the model shape {ckpt['config']}: {e}") from None
    return model.eval()


def fit(model: nn.Module, sampler: RandomPatchSampler, cfg: FitConfig, checkpoint: Path | None = None,
        desc: str = "train") -> pd.DataFrame:
    """Train ``model`` with L1 loss, Adam and a cosine schedule for ``cfg.steps`` steps.

    With ``checkpoint``, state is saved every ``cfg.checkpoint_every`` steps and training resumes
    from it after a kill (same batches, same result as an uninterrupted run). Returns the loss
    history (step, loss, lr, seconds).
    """
    torch.manual_seed(cfg.seed)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, cfg.steps), eta_min=cfg.lr_min)
    history, start = [], 0
    if checkpoint is not None and Path(checkpoint).exists():
        ckpt = load_checkpoint(checkpoint)
        if ckpt.get("config") != getattr(model, "config", None):
            raise RuntimeError(f"checkpoint {checkpoint} is for model {ckpt.get('config')}, "
                               f"not {getattr(model, 'config', None)}; delete it to start over")
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        sampler.set_state(ckpt["sampler"])
        torch.set_rng_state(ckpt["torch_rng"])
        history, start = list(ckpt["history"]), int(ckpt["step"])
    loss_fn = nn.L1Loss()
    model.train()
    t0 = time.perf_counter() - (history[-1]["seconds"] if history else 0.0)
    bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, desc=desc, leave=False)
    for step in bar:
        lr_b, hr_b = sampler.batch(cfg.batch_size)
        loss = loss_fn(model(lr_b), hr_b)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        history.append({"step": step + 1, "loss": loss.item(), "lr": sched.get_last_lr()[0],
                        "seconds": time.perf_counter() - t0})
        if step % 10 == 0:
            bar.set_postfix(loss=f"{loss.item():.4f}")
        if checkpoint is not None and ((step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.steps):
            save_checkpoint(checkpoint, model=model.state_dict(), optimizer=opt.state_dict(),
                            scheduler=sched.state_dict(), sampler=sampler.state(),
                            torch_rng=torch.get_rng_state(), history=history, step=step + 1,
                            config=getattr(model, "config", None))
    model.eval()
    return pd.DataFrame(history, columns=["step", "loss", "lr", "seconds"])

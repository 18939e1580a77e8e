"""The *general* SR model: trained on content that never includes the evaluated video.

It labels patch difficulty (its per-patch PSNR) and is the "no overfitting" reference. Training
content: scikit-image's natural colour images plus frames of the other registry clips
(leave-one-video-out). Training is cached under ``data/models/`` by a hash of everything that
determines the weights (spec, sources, the evaluated video it must not see), with a resumable
checkpoint while it runs (:func:`dydca_lib.train.train_or_load`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from .models import WDSR, count_parameters
from .sources import CLIPS
from .train import FitConfig, RandomPatchSampler, train_or_load
from .video import crop_to_multiple, make_lr, prepare_frames

NATURAL_IMAGES = ("astronaut", "coffee", "chelsea", "rocket", "retina", "hubble_deep_field",
                  "immunohistochemistry", "stereo_motorcycle")
CODE_VERSION = 3  # bump when training code changes what a spec produces


@dataclass
class GeneralSpec:
    """Everything that determines the general model's weights (part of its cache key)."""

    scale: int = 2
    n_blocks: int = 8
    n_feats: int = 32
    expansion: int = 4
    steps: int = 1500
    batch_size: int = 16
    patch: int = 48  # LR patch side
    lr: float = 1e-3
    seed: int = 0
    lr_kernel: str = "pil"
    natural_images: bool = True
    clips: tuple[str, ...] = ("bigbuckbunny", "bikes", "demo", "cityCC0")
    frames_per_clip: int = 6
    model_kwargs: dict = field(default_factory=dict)

    def model(self) -> WDSR:
        return WDSR(scale=self.scale, n_blocks=self.n_blocks, n_feats=self.n_feats,
                    expansion=self.expansion, **self.model_kwargs)


def natural_images() -> list[tuple[str, np.ndarray]]:
    """scikit-image's bundled colour photographs (no download needed)."""
    import skimage.data as skd

    out = []
    for name in NATURAL_IMAGES:
        img = getattr(skd, name)()
        if isinstance(img, tuple):  # stereo_motorcycle -> (left, right, disparity)
            img = img[0]
        out.append((name, np.ascontiguousarray(img[..., :3])))
    return out


def video_identity(video) -> str:
    """Name used to exclude the evaluated video: its clip name, else its file/folder stem."""
    return video if isinstance(video, str) and video in CLIPS else Path(str(video)).stem


def training_sources(spec: GeneralSpec, exclude_video) -> list[str]:
    """The clip names the general model trains on: ``spec.clips`` minus the evaluated video."""
    excluded = video_identity(exclude_video)
    return [c for c in spec.clips if c != excluded]


def training_pairs(spec: GeneralSpec, exclude_video) -> list[tuple[np.ndarray, np.ndarray]]:
    pairs = []
    crop = 12
    if spec.natural_images:
        for _, img in natural_images():
            hr = crop_to_multiple(img, crop)
            pairs.append((make_lr(hr, spec.scale, spec.lr_kernel), hr))
    for clip in training_sources(spec, exclude_video):
        fs = prepare_frames(clip, spec.scale, max_frames=None, lr_kernel=spec.lr_kernel)
        for i in np.linspace(0, len(fs) - 1, spec.frames_per_clip).round().astype(int):
            pairs.append((fs.lr(int(i)), fs.hr(int(i))))
    if not pairs:
        raise ValueError("the general model has no training content: enable natural_images or give clips")
    return pairs


class LazySampler:
    """Builds the real sampler on first use, so a cached model never loads its training images."""

    def __init__(self, make):
        self._make, self._sampler = make, None

    def batch(self, step: int):
        if self._sampler is None:
            self._sampler = self._make()
        return self._sampler.batch(step)


def general_model(spec: GeneralSpec, exclude_video, cache_dir: Path | None = None):
    """Train (or load from cache) the general model that never saw ``exclude_video``.

    Returns ``(model, history, info)``: ``history`` is the loss curve, ``info`` records the cache
    file, parameters, training content and wall time.
    """
    unknown = [c for c in spec.clips if c not in CLIPS]
    if unknown:
        raise ValueError(f"general model clips {unknown} are not registry clips ({', '.join(CLIPS)})")
    sources = training_sources(spec, exclude_video)
    # keyed by what it trains on (not by the excluded video): clips evaluated side by side share
    # one general model when none of them is among its training clips
    key = {"spec": asdict(spec), "sources": [CLIPS[c].sha256 for c in sources], "code": CODE_VERSION}
    sampler = LazySampler(lambda: RandomPatchSampler(training_pairs(spec, exclude_video), spec.scale,
                                                     (spec.patch, spec.patch), batch_size=spec.batch_size,
                                                     seed=spec.seed))
    cfg = FitConfig(steps=spec.steps, lr=spec.lr, seed=spec.seed)
    torch.manual_seed(spec.seed)  # initial weights follow the spec, not whatever the process drew before
    model, history, fit_info = train_or_load(spec.model(), sampler, cfg, key, f"general-x{spec.scale}",
                                             cache_dir, desc=f"general model x{spec.scale}", code=(__name__,))
    info = {"cache_file": fit_info["cache_file"], "parameters": count_parameters(model), "config": model.config,
            "trained_on_clips": sources, "natural_images": list(NATURAL_IMAGES) if spec.natural_images else [],
            "excluded_video": video_identity(exclude_video), "steps": spec.steps,
            "train_seconds": float(history.seconds.iloc[-1]) if len(history) else 0.0}
    return model, history, info

"""The parameters every notebook shares, defined once.

:class:`PatchParams` is what decides the frames and patches a notebook sees: the clip and its
chunks, the patch geometry, the Dy-DCA splits and the general model that labels the patches.
Notebooks 02–06 declare these names in their parameters cell with these defaults (the smoke
profile's values; ``tests/test_params.py`` checks every notebook against this class) and pass
them to :func:`dydca_lib.pipeline.patch_data`, which builds a :class:`PatchParams` from them:
a name it does not know is an error, a name it knows but a notebook does not pass takes the
default below.

Following one parameter from a notebook to its use takes at most three calls, e.g.
``grid_rows`` -> :func:`~dydca_lib.pipeline.patch_data` -> :meth:`~dydca_lib.patches.PatchGeometry.from_grid`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields


@dataclass(frozen=True)
class PatchParams:
    """Clip, chunks, patch geometry, Dy-DCA splits and the general model (see the notebooks'
    parameters cells for each one's help text)."""

    video: str = "cityCC0"
    scale: int = 2
    max_frames: int = 50
    chunk_seconds: float = 1.0
    fps: float = 0.0
    heldout_every: int = 10
    heldout_policy: str = "interleaved"
    lr_kernel: str = "pil"
    patch_size: int = 0
    grid_rows: int = 10
    grid_cols: int = 20
    patch_policy: str = "pad"
    levels: int = 2
    threshold_mode: str = "quantile"
    split_thresholds: tuple = (0.5,)
    general_blocks: int = 2
    general_feats: int = 16
    general_expansion: int = 2
    general_steps: int = 100
    general_batch: int = 16
    general_patch: int = 32
    general_clips: tuple = ()
    general_frames_per_clip: int = 6
    seed: int = 0

    def __post_init__(self):  # lists from a notebook or YAML become tuples: hashable, and equal either way
        for f in ("split_thresholds", "general_clips"):
            object.__setattr__(self, f, tuple(getattr(self, f)))

    @classmethod
    def pick(cls, values: dict) -> "PatchParams":
        """The shared parameters among ``values`` (e.g. a notebook's ``params``); others are ignored."""
        return cls(**{k: values[k] for k in PATCH_PARAMS if k in values})

    def asdict(self) -> dict:
        return asdict(self)


PATCH_PARAMS: tuple[str, ...] = tuple(f.name for f in fields(PatchParams))

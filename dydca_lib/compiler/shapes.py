"""The static shapes a manifest needs and how a batch is split over compiled batch sizes.

TVM-free (NumPy and pandas only): the client plans its calls with :func:`split_batch` without
importing the compiler.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING


from . import CompileError
from ..tensors import with_context

if TYPE_CHECKING:
    import pandas

DEFAULT_MAX_BATCH = 16


@dataclass(frozen=True, order=True)
class StaticShape:
    """One static function: a path run on ``batch`` patches of ``h x w`` LR pixels (context included)."""

    path: int
    h: int
    w: int
    batch: int

    @property
    def name(self) -> str:
        return function_name(self.path, self.h, self.w, self.batch)


def function_name(path: int, h: int, w: int, batch: int) -> str:
    """The Relax function name of one static shape, e.g. ``p0_h24_w27_b8``."""
    return f"p{int(path)}_h{int(h)}_w{int(w)}_b{int(batch)}"


def batch_buckets(max_batch: int = DEFAULT_MAX_BATCH) -> list[int]:
    """The batch sizes we compile: powers of two up to ``max_batch`` (which must be one).

    Our choice: a request of ``n`` patches runs as ``n // max_batch`` calls of ``max_batch``, and
    the rest as a few smaller calls (:func:`split_batch`: 13 = 8 + 4 + 1), so a static shape
    wastes little on padding and needs at most ``log2(max_batch) + 1`` functions (each one more
    set of kernels to compile and tune).
    """
    max_batch = int(max_batch)
    if max_batch < 1 or max_batch & (max_batch - 1):
        raise CompileError(f"max_batch must be a power of two >= 1, got {max_batch}")
    return [1 << i for i in range(max_batch.bit_length())]


CALL_COST_PATCHES = 0.5  # one call's fixed cost (the VM dispatching ~14 kernels) in patches of compute


def split_batch(n: int, buckets: Iterable[int], call_cost: float = CALL_COST_PATCHES) -> list[tuple[int, int]]:
    """How to run ``n`` patches on compiled batch sizes: ``[(patches, bucket), ...]``.

    Full calls of the largest bucket, then the rest split over the compiled buckets so that the
    patches computed (padding included) plus ``call_cost`` per call is least: with every power of
    two compiled, 13 runs as 8 + 4 + 1 (no padding), 7 as one padded call of 8 (one padded patch
    costs about as much as two more calls); with only ``[8]``, 3 runs padded to 8.
    """
    buckets = sorted(set(int(b) for b in buckets))
    if not buckets:
        raise CompileError("no compiled batch sizes")
    n, top = int(n), buckets[-1]
    plans: dict[int, list[tuple[int, int]]] = {0: []}

    def cost(plan):
        return sum(b for _, b in plan) + call_cost * len(plan), len(plan)

    for r in range(1, n % top + 1):  # the best plan for every rest up to this one
        options = [[(r, next(b for b in buckets if b >= r))]]
        below = [b for b in buckets if b <= r]
        if below:
            options.append([(below[-1], below[-1])] + plans[r - below[-1]])
        plans[r] = min(options, key=cost)
    return [(top, top)] * (n // top) + plans[n % top]


def run_split(x, plan: list[tuple[int, int]], call, out, convert=None):
    """Run the patches ``x`` (first axis: patches) as the calls of ``plan`` (:func:`split_batch`):
    each call gets its ``k`` patches padded with zero patches to its compiled batch ``b``
    (``call(chunk, b)`` returns the batch's outputs), and its first ``k`` outputs, through
    ``convert`` when given, go to ``out`` in order. Returns ``out``."""
    import numpy as np

    i = 0
    for k, b in plan:
        chunk = x[i:i + k]
        if b > k:
            chunk = np.concatenate([chunk, np.zeros((b - k,) + chunk.shape[1:], chunk.dtype)])
        y = call(chunk, b)[:k]
        out[i:i + k] = y if convert is None else convert(y)
        i += k
    return out


def batch_cap(h: int, w: int, max_batch: int = DEFAULT_MAX_BATCH, max_batch_pixels: int = 0) -> int:
    """The largest batch compiled for ``h x w`` patches (context included): ``max_batch``, or with
    ``max_batch_pixels`` > 0 the largest power of two whose batch holds at most that many LR pixels
    (at least 1). A call's activations grow with its pixels: past the caches, a layer-by-layer call
    over a big batch streams every intermediate tensor through memory (on AMX, 4 patches of
    112x100 ran at 0.84 ms a patch, 16 at 1.3)."""
    cap = int(max_batch)
    if max_batch_pixels and max_batch_pixels > 0:
        fit = max(1, int(max_batch_pixels) // (int(h) * int(w)))
        cap = min(cap, 1 << (fit.bit_length() - 1))
    return cap


def static_shapes(manifest: "pandas.DataFrame", context: int = 0, max_batch: int = DEFAULT_MAX_BATCH,
                  max_batch_pixels: int = 0) -> list[StaticShape]:
    """Every static function a manifest needs: one per (path, patch shape, batch bucket).

    ``manifest`` rows are patches (``frame, h, w`` and ``path``, LR pixels; no ``path`` column =
    path 0). Patches are batched per (frame, shape, path) as
    :func:`dydca_lib.evaluate.super_resolve_patches` does, and each group size is split with
    :func:`split_batch` over ``batch_buckets(max_batch)`` capped at the largest group, so only the
    buckets some frame uses are compiled; any other count still runs (padded where a bucket is missing).
    ``context`` adds ``2 * context`` to each side as the patches are cut with context;
    ``max_batch_pixels`` caps the batch per shape (:func:`batch_cap`).
    """
    if manifest.empty:
        raise CompileError("empty manifest: no patch shapes to compile")
    m = manifest if "path" in manifest else manifest.assign(path=0)
    keys = ["frame", "h", "w", "path"] if "frame" in m else ["h", "w", "path"]
    sizes = m.groupby(keys).size().reset_index(name="n")
    out = set()
    for (h, w, p), g in sizes.groupby(["h", "w", "path"]):
        cap = min(batch_cap(*with_context(h, w, context), max_batch, max_batch_pixels),
                  1 << (int(g.n.max()) - 1).bit_length())
        buckets = batch_buckets(cap)
        used = {cap}
        for n in g.n:
            used.update(b for _, b in split_batch(int(n), buckets))
        out.update(StaticShape(int(p), *with_context(h, w, context), b) for b in used)
    return sorted(out)


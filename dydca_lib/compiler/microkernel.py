"""The micro-kernel primitives the hand-written schedules share — the direct NHWC convolution
(:mod:`.schedules`), Winograd (:mod:`.winograd`) and int8 VNNI (:mod:`.int8`): how many vector
accumulators a tile may hold, the output-width tile, vectorising a loop, fusing an element-wise
epilogue into its producer, and the target's vector shape. :func:`.schedules.schedule_primfunc`
is the one dispatch over them."""

from __future__ import annotations

import tvm

from .target import target_features

ACCUMULATORS = 24  # zmm registers kept for accumulators (of 32): the rest hold the weights and a broadcast
PARALLEL_MIN = 4096  # loop nests with fewer points run on one thread (a thread-pool launch costs more)


def extent(sch, loop) -> int:
    return int(sch.get(loop).extent)


def width_tile(width: int, lanes_per_pixel: int, accumulators: int = ACCUMULATORS) -> int:
    """The output-width tile: the largest divisor of ``width`` whose tile (``tile x
    lanes_per_pixel`` vector accumulators) fits ``accumulators`` registers; a non-divisor (the
    last tile partly masked) only when every divisor that fits is below 4."""
    fit = max(1, accumulators // max(1, lanes_per_pixel))
    best = max(d for d in range(1, min(width, fit) + 1) if width % d == 0)
    return best if best >= 4 or fit < 4 else min(fit, width)


def inline_epilogue(sch, block) -> None:
    """Inline every element-wise consumer chain of ``block`` (bias, ReLU, scale, residual)."""
    while True:
        consumers = sch.get_consumers(block)
        if len(consumers) != 1:
            return
        try:
            sch.reverse_compute_inline(consumers[0])
        except tvm.s_tir.ScheduleError:
            return


def vector_loop(sch, loop, lanes: int = 16) -> None:
    """Vectorise ``loop``: whole when it has at most ``lanes`` iterations, else its inner ``lanes``
    when they divide it (otherwise it stays scalar)."""
    n = extent(sch, loop)
    if n <= lanes:
        sch.vectorize(loop)
    elif n % lanes == 0:
        sch.vectorize(sch.split(loop, [None, lanes])[1])


def vector_shape(target=None) -> tuple[int, int]:
    """(fp32 lanes, accumulator registers) of the target: AVX-512 (16, 24 of 32 zmm) or AVX2
    and older (8, 12 of 16 ymm)."""
    return (16, ACCUMULATORS) if "avx512f" in target_features(target) else (8, 12)

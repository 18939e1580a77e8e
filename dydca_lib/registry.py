"""One id per method: its display name, how to build it and how many separately trained models it
has, in one place (the idea of BasicSR's ``ARCH_REGISTRY``).

A method is referred to by a *ref*: its id, with its argument where it takes one (``stdo:k=2``,
``stdo_joint:k=4``), or its display name as the tables print it (``"STDO k=2"``,
``"one model per video"``; an ``"(= size)"`` name is the equal-parameter variant). :func:`make`
builds any ref with a notebook's shared keywords (:func:`dydca_lib.comparison.suite_kwargs`);
notebooks 04b, 06, 07 and 08 and the on-device bench go through it, and the main table
(:func:`method_suite`) is :func:`main_table`'s refs built by it.

Adding a method: its class in :mod:`dydca_lib.methods` and one :class:`Entry` here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

from . import methods as M


@dataclass(frozen=True)
class Entry:
    id: str
    display: str  # the table name; ``{k}`` where the method takes k
    build: Callable  # (kw: the shared keywords, k, blocks) -> Method
    trained: bool = True
    takes_k: bool = False
    separate_models: Callable = staticmethod(lambda n_chunks, k: 1)  # models trained apart, each on part of the data

    def name(self, k: int | None = None) -> str:
        return self.display.format(k=k)


def _trained(cls, **extra):
    def build(kw, k, blocks, label=None):
        return cls(n_blocks=blocks, **({"label": label} if label else {}), **extra, **kw)
    return build


METHODS: dict[str, Entry] = {e.id: e for e in [
    Entry("bicubic", "bicubic", lambda kw, k, blocks, label=None: M.Bicubic(kw["kernel"]), trained=False),
    Entry("general", "general", lambda kw, k, blocks, label=None: M.General(), trained=False),
    Entry("per_video", "one model per video", _trained(M.PerVideo)),
    Entry("per_chunk", "one model per chunk", _trained(M.PerChunk), separate_models=lambda n_chunks, k: n_chunks),
    Entry("cafm", "CaFM", _trained(M.CaFM)),
    Entry("stdo", "STDO k={k}", lambda kw, k, blocks, label=None: M.STDO(k=k, n_blocks=blocks, label=label, **kw),
          takes_k=True, separate_models=lambda n_chunks, k: k),
    Entry("stdo_joint", "STDO joint (k={k})",
          lambda kw, k, blocks, label=None: M.STDOJoint(k=k, shares=kw.pop("joint_shares", None) or None,
                                                        n_blocks=blocks, **kw), takes_k=True),
    Entry("dydca", "Dy-DCA", lambda kw, k, blocks, label=None: M.DyDCA(path_blocks=kw.pop("path_blocks"), n_blocks=blocks,
                                                                         **kw)),
]}
EQUAL_SIZE = ("per_video", "per_chunk", "stdo")  # the ids with an equal-parameter ("(= size)") variant


@dataclass(frozen=True)
class Ref:
    id: str
    k: int | None = None
    equal_size: bool = False

    @property
    def entry(self) -> Entry:
        return METHODS[self.id]

    @property
    def name(self) -> str:
        return self.entry.name(self.k) + (" (= size)" if self.equal_size else "")

    def separate_models(self, n_chunks: int) -> int:
        return self.entry.separate_models(n_chunks, self.k)


DEFAULT_K = {"stdo": 2, "stdo_joint": 4}


def parse(ref: str, default_k: dict | None = None) -> Ref:
    """A method ref (id, ``id:k=N`` or display name) -> :class:`Ref`; unknown refs are an error. An
    id that takes k without one gets ``default_k[id]`` (else :data:`DEFAULT_K`)."""
    text = str(ref).strip()
    equal = text.endswith("(= size)")
    text = text.removesuffix("(= size)").strip()
    m = re.fullmatch(r"([a-z_]+)(?::k=(\d+))?", text)
    if m and m.group(1) in METHODS:
        out = Ref(m.group(1), int(m.group(2)) if m.group(2) else None, equal)
    else:
        out = None
        for e in METHODS.values():
            pattern = re.escape(e.display).replace(re.escape("{k}"), r"(\d+)")
            hit = re.fullmatch(pattern, text)
            if hit:
                out = Ref(e.id, int(hit.group(1)) if e.takes_k else None, equal)
                break
            if e.takes_k and text == re.split(r" \(?k=", e.display)[0]:  # "STDO joint", "STDO": the default k
                out = Ref(e.id, None, equal)
                break
        if out is None:
            known = ", ".join(f"{e.id} ({e.display})" for e in METHODS.values())
            raise ValueError(f"unknown method {ref!r}; known: {known}")
    if out.entry.takes_k and out.k is None:
        out = Ref(out.id, int({**DEFAULT_K, **(default_k or {})}[out.id]), out.equal_size)
    if out.equal_size and out.id not in EQUAL_SIZE:
        raise ValueError(f"{out.id} has no equal-size variant (those: {', '.join(EQUAL_SIZE)})")
    return out


def make(ref, scale: int, n_chunks: int, *, epochs: float = 1.0, seed: int = 0, kernel: str = "pil",
         joint_shares=None, model_blocks: int = 4, path_blocks=(4, 2), n_feats: int = 32, expansion: int = 2,
         batch_size: int = 16, context: int = 2, lr: float = 1e-3, precision: str = "auto", stdo_k: int = 2,
         joint_k: int = 4) -> "M.Method":
    """Build the method ``ref`` (:func:`parse`; a ref without k takes ``stdo_k`` / ``joint_k``) with a
    notebook's shared keywords (:func:`dydca_lib.comparison.suite_kwargs` with ``per_run=False``)."""
    r = parse(ref, {"stdo": stdo_k, "stdo_joint": joint_k}) if not isinstance(ref, Ref) else ref
    kw = dict(n_feats=n_feats, expansion=expansion, epochs=epochs, batch_size=batch_size, context=context, lr=lr,
              seed=seed, precision=precision)
    if r.id in ("bicubic", "general"):
        m = r.entry.build({"kernel": kernel}, r.k, 0)
        m.context = context  # same patches as the trained methods under the patch-level protocol
        return m
    if r.id == "stdo_joint":
        kw["joint_shares"] = joint_shares
    if r.id == "dydca":
        kw["path_blocks"] = list(path_blocks)
    blocks = model_blocks
    if r.equal_size:
        total = M.dynamic_model_size(scale, list(path_blocks), n_feats, expansion)
        blocks = M.blocks_for_budget(total, r.separate_models(n_chunks), scale, n_feats, expansion)
    return r.entry.build(kw, r.k, blocks, r.name if r.equal_size else None)


def main_table(stdo_ks=(2,), joint_k: int = 4, cafm: bool = True, equal_size: bool = False) -> list[Ref]:
    """The paper's main-table methods in table order (:func:`method_suite`)."""
    refs = [Ref("bicubic"), Ref("general"), Ref("per_video"), Ref("per_chunk")]
    refs += [Ref("cafm")] if cafm else []
    refs += [Ref("stdo", int(k)) for k in stdo_ks]
    refs += [Ref("stdo_joint", int(joint_k)), Ref("dydca")]
    if equal_size:
        refs += [Ref("per_video", equal_size=True), Ref("per_chunk", equal_size=True)]
        refs += [Ref("stdo", int(k), True) for k in stdo_ks]
    return refs


def method_suite(scale: int, n_chunks: int, *, stdo_ks=(2,), joint_k: int = 4, equal_size: bool = False,
                 cafm: bool = True, **kw) -> list["M.Method"]:
    """The paper's main-table methods with one shared training budget (``kw``: :func:`make`'s).
    ``equal_size`` adds per-video, per-chunk and STDO variants whose models together have about
    Dy-DCA's parameter count."""
    return [make(r, scale, n_chunks, **kw) for r in main_table(stdo_ks, joint_k, cafm, equal_size)]


def seeded_suite(scale: int, n_chunks: int, seeds, **suite_kw):
    """``(seed, method)`` for :func:`method_suite` once per training seed: every method with the
    first seed, then only the trained ones (bicubic and the general model do not depend on it)."""
    for i, seed in enumerate(seeds):
        for m in method_suite(scale, n_chunks, seed=int(seed), **suite_kw):
            if i == 0 or m.trained:
                yield int(seed), m

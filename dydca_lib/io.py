"""Atomic result writing: a killed run never leaves a half-written table, figure or folder.

``ResultDir`` stages every file of a notebook in ``.<dir>.staging`` and swaps the whole folder
into place in :meth:`ResultDir.commit`; until then the previous results (if any) stay intact.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temp file in the same folder and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600 files; results are for everyone to read
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


@contextlib.contextmanager
def staged_folder(target: Path, stale=()):
    """Fill a hidden temporary folder beside ``target`` (yielded); when the block ends it replaces
    ``target`` in one rename (``stale`` paths are removed first), and when it fails it is removed:
    a folder of frames is complete or absent, never half-written."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-"))
    try:
        yield tmp
        for old in [target, *stale]:
            if Path(old).exists():
                shutil.rmtree(old)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_write_text(path: Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def _json_default(obj: Any):
    if hasattr(obj, "item"):  # numpy scalars
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (set, tuple)):
        return list(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def to_json(obj: Any) -> str:
    def clean(o):
        if isinstance(o, float) and not math.isfinite(o):
            return str(o)  # JSON has no inf/nan; keep them readable
        if isinstance(o, dict):
            return {str(k): clean(v) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return [clean(v) for v in o]
        return o

    return json.dumps(clean(obj), indent=2, sort_keys=True, default=_json_default) + "\n"


def markdown_table(df: pd.DataFrame, floatfmt: str = ".2f") -> str:
    """A GitHub-flavoured Markdown table (no optional ``tabulate`` dependency)."""

    def fmt(v):
        if isinstance(v, float):
            return format(v, floatfmt) if math.isfinite(v) else str(v)
        return str(v)

    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(fmt(v) for v in row) + " |")
    return "\n".join(lines) + "\n"


class ResultDir:
    """Stage a notebook's outputs and publish them all at once.

    >>> out = ResultDir(results_dir("smoke", "01_data_chunking"))
    >>> out.table(df, "chunks"); out.figure(fig, "montage"); out.metrics({...})
    >>> out.commit()   # results/smoke/01_data_chunking/ now holds exactly these files
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self.staging = self.path.with_name(f".{self.path.name}.staging")  # hidden until commit
        if self.staging.exists():  # left over by a killed run
            shutil.rmtree(self.staging)
        self.staging.mkdir(parents=True)
        self.files: list[str] = []

    def _target(self, name: str) -> Path:
        if self.staging is None:
            raise RuntimeError(f"{self.path} was already committed; make a new ResultDir")
        self.files.append(name)
        return self.staging / name

    def table(self, df: pd.DataFrame, name: str, floatfmt: str = ".2f", title: str | None = None) -> pd.DataFrame:
        """Write ``name.csv`` and ``name.md``; returns ``df`` so a cell can display it."""
        atomic_write_text(self._target(f"{name}.csv"), df.to_csv(index=False))
        md = (f"**{title}**\n\n" if title else "") + markdown_table(df, floatfmt)
        atomic_write_text(self._target(f"{name}.md"), md)
        return df

    def data(self, df: pd.DataFrame, name: str) -> Path:
        """A large table for later notebooks (``name.csv.gz``, no Markdown copy)."""
        import gzip

        raw = df.to_csv(index=False).encode("utf-8")
        return atomic_write_bytes(self._target(f"{name}.csv.gz"), gzip.compress(raw, mtime=0))

    def figure(self, fig, name: str, dpi: int = 110) -> Path:
        import io as _io

        buf = _io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
        return atomic_write_bytes(self._target(f"{name}.png"), buf.getvalue())

    def text(self, content: str, name: str) -> Path:
        """Write ``name`` (e.g. ``verdict.md``) as it is."""
        path = self._target(name)
        atomic_write_text(path, content)
        return path

    def json(self, obj: Any, name: str) -> Path:
        return atomic_write_text(self._target(f"{name}.json"), to_json(obj))

    def commit(self) -> Path:
        """Replace ``path`` by the staged folder (old results are removed only after the swap)."""
        old = self.path.with_name(f".{self.path.name}.old")
        if old.exists():
            shutil.rmtree(old)
        if self.path.exists():
            os.replace(self.path, old)
        os.replace(self.staging, self.path)
        shutil.rmtree(old, ignore_errors=True)
        self.staging = None
        return self.path

    def discard(self) -> None:
        if self.staging is not None:
            shutil.rmtree(self.staging, ignore_errors=True)
            self.staging = None

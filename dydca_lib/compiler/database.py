"""MetaSchedule tuning databases: where they live (``tuning/<target-name>/``, committed gzipped),
how they are read, applied, checked for coverage and pruned."""

from __future__ import annotations

import os
import statistics
import tempfile
import warnings
from pathlib import Path

import pandas as pd
import tvm
from tvm import relax

from . import CompileError, UntunedWarning
from ..paths import PACKAGE_DIR
from .target import as_target, target_name

TUNING_ROOT = PACKAGE_DIR.parent / "tuning"  # committed with the code (not under DYDCA_ROOT), one folder per target


def tuning_dir(target=None) -> Path:
    """``tuning/<target-name>/`` at the project root: the database for this target (committed)."""
    return TUNING_ROOT / target_name(target)


DB_FILES = ("database_workload.json", "database_tuning_record.json")


def readable_database(work_dir: str | Path) -> Path:
    """The folder MetaSchedule can read for ``work_dir``.

    The committed databases are gzipped (``*.json.gz``, ~10x smaller in git); they are unpacked
    once into ``data/tuning/<name>/`` (refreshed when the committed files are newer). A folder
    with plain JSON files (what :func:`tune` writes) is used as it is.
    """
    import gzip

    from ..io import atomic_write_bytes
    from ..paths import data_dir

    d = Path(work_dir)
    if all((d / f).is_file() for f in DB_FILES) or not all((d / f"{f}.gz").is_file() for f in DB_FILES):
        return d
    try:  # tuning/<target>/[attempts/<name>/] -> data/tuning/<same>/; elsewhere by folder name
        rel = d.resolve().relative_to(TUNING_ROOT.resolve())
    except ValueError:
        rel = Path(d.name)
    out = data_dir() / "tuning" / rel
    for f in DB_FILES:
        src, dst = d / f"{f}.gz", out / f
        if not dst.exists() or dst.stat().st_mtime < src.stat().st_mtime:
            atomic_write_bytes(dst, gzip.decompress(src.read_bytes()))
    return out


def compress_database(work_dir: str | Path) -> list[Path]:
    """Gzip a database folder's JSON files in place (``*.json`` -> ``*.json.gz``) for committing."""
    import gzip

    from ..io import atomic_write_bytes

    d, written = Path(work_dir), []
    for f in DB_FILES:
        written.append(atomic_write_bytes(d / f"{f}.gz", gzip.compress((d / f).read_bytes(), mtime=0)))
        (d / f).unlink()
    return written


def has_database(work_dir: str | Path) -> bool:
    """Whether ``work_dir`` holds a MetaSchedule JSON database (plain or gzipped) with a record."""
    d = readable_database(work_dir)
    wl, rec = d / DB_FILES[0], d / DB_FILES[1]
    return wl.is_file() and rec.is_file() and rec.stat().st_size > 0


def apply_database(mod: "tvm.IRModule", target=None, work_dir: str | Path | None = None) -> "tvm.IRModule":
    """Replace the kernels of a fused module by their tuned schedules from ``work_dir``.

    ``work_dir`` defaults to :func:`tuning_dir` of the target. Uses
    ``relax.transform.MetaScheduleApplyDatabase``; kernels missing from the database stay
    untuned. Without a database at all, warns (:class:`UntunedWarning`) and returns ``mod``.
    """
    target = as_target(target)
    work_dir = Path(work_dir) if work_dir is not None else tuning_dir(target)
    if not has_database(work_dir):
        warnings.warn(f"no tuning database for target {target_name(target)} in {work_dir}: running untuned "
                      "kernels (slow); run compile.tune(...) to make one", UntunedWarning, stacklevel=2)
        return mod
    with target, tvm.transform.PassContext(opt_level=3):
        return relax.transform.MetaScheduleApplyDatabase(str(readable_database(work_dir)))(mod)


def database_coverage(fused_mod: "tvm.IRModule", target=None, work_dir: str | Path | None = None) -> pd.DataFrame:
    """Which kernels of a fused module the tuning database in ``work_dir`` has a schedule for.

    One row per MetaSchedule task (:func:`extract_tasks`, identical kernels once): ``task``,
    ``weight`` (calls), ``tuned`` (a record matches the kernel's structural hash and the target)
    and ``best_ms`` (the record's measured run time, NaN when untuned). The workloads are matched
    exactly as :func:`apply_database` matches them, so ``tuned.all()`` means no kernel falls back.
    Without a database every row is untuned (no warning).
    """
    from tvm.s_tir import meta_schedule as ms

    target = as_target(target)
    work_dir = Path(work_dir) if work_dir is not None else tuning_dir(target)
    tasks = extract_tasks(fused_mod, target)
    db = (ms.database.JSONDatabase(work_dir=str(readable_database(work_dir)), allow_missing=False)
          if has_database(work_dir) else None)
    rows = []
    for t in tasks:
        rec = db.query_tuning_record(t.mod, target, t.task_name) if db is not None else None
        secs = [float(v) for v in rec.run_secs] if rec is not None and rec.run_secs else []
        rows.append({"task": t.task_name, "weight": int(t.weight), "tuned": rec is not None,
                     "best_ms": 1e3 * statistics.median(secs) if secs else float("nan")})
    return pd.DataFrame(rows, columns=["task", "weight", "tuned", "best_ms"])


def prune_database(work_dir: str | Path, dst: str | Path | None = None) -> dict:
    """Keep only the best record per workload (``JSONDatabase.dump_pruned``), by default in place.

    A tuning run stores every measured candidate (a few KB each); applying needs the best one.
    Returns the record counts before and after.
    """
    from tvm.s_tir import meta_schedule as ms

    src = Path(work_dir)
    if not has_database(src):
        raise CompileError(f"no tuning database in {src}")
    dst = Path(dst) if dst is not None else src
    before = sum(1 for line in (src / "database_tuning_record.json").open() if line.strip())
    with tempfile.TemporaryDirectory(prefix="dydca_prune_") as tmp:
        ms.database.JSONDatabase(work_dir=str(src), allow_missing=False).dump_pruned(
            ms.database.JSONDatabase(work_dir=tmp, allow_missing=True))
        dst.mkdir(parents=True, exist_ok=True)
        for name in ("database_workload.json", "database_tuning_record.json"):
            text = (Path(tmp) / name).read_text()
            fd, tmp_path = tempfile.mkstemp(dir=dst, prefix=f".{name}.")  # atomic replace
            with os.fdopen(fd, "w") as f:
                f.write(text)
            os.chmod(tmp_path, 0o644)
            os.replace(tmp_path, dst / name)
    after = sum(1 for line in (dst / "database_tuning_record.json").open() if line.strip())
    return {"records_before": before, "records_after": after, "work_dir": str(dst)}


def extract_tasks(fused_mod: "tvm.IRModule", target=None) -> list:
    """The distinct kernels (MetaSchedule tasks) of all functions of a fused module.

    Identical workloads (structurally equal PrimFuncs, e.g. the same conv in two functions of one
    path and shape) are one task whose ``weight`` counts its calls.
    """
    from tvm.s_tir.meta_schedule.relax_integration import extract_tasks as ms_extract

    return list(ms_extract(fused_mod, as_target(target), module_equality="structural"))


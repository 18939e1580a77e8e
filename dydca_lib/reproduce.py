"""Run every notebook headless with papermill: ``python -m dydca_lib.reproduce --profile smoke``.

Parameters come from ``params/<profile>.yaml``: ``common`` is passed to every notebook that
declares the parameter and ``notebooks.<name>`` sets (or overrides) one notebook's parameters;
only the notebooks listed there run. Unknown parameters are errors, not silently ignored.

Executed notebooks (the run's log) go to ``results/<profile>/runs/``. **Resume:** a notebook
whose results exist from a run with the same *run key* — a hash of the notebook, its
parameters and the ``dydca_lib`` sources — is skipped, so a re-run after a finished run does
nothing expensive and a killed run continues where it stopped (the notebooks' own caches of
models and labels make the interrupted notebook cheaper too). The report notebook re-runs
whenever another notebook ran. ``--force`` runs everything.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import pandas as pd

from .io import ResultDir, atomic_write_text
from .paths import PACKAGE_DIR, results_dir
from .profiles import load_profile, notebook_parameters, notebook_paths


def code_version() -> str:
    """A hash of the library sources, subpackages included (any change to dydca_lib re-runs every notebook)."""
    h = hashlib.sha256()
    for p in sorted(PACKAGE_DIR.rglob("*.py")):
        h.update(p.relative_to(PACKAGE_DIR).as_posix().encode() + p.read_bytes())
    return h.hexdigest()[:16]


def run_key(notebook: Path, params: dict, code: str) -> str:
    record = {"notebook": hashlib.sha256(notebook.read_bytes()).hexdigest(), "params": params, "code": code}
    return hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()[:16]


def run(profile: str, only: list[str] | None = None, force: bool = False, timeout_s: int = 3 * 3600) -> pd.DataFrame:
    import papermill as pm

    cfg = load_profile(profile)
    runs = results_dir(profile, "runs")
    runs.mkdir(parents=True, exist_ok=True)
    selected = [nb for nb in notebook_paths()
                if nb.stem in cfg.get("notebooks", {}) and (not only or any(nb.stem.startswith(o) for o in only))]
    if not selected:
        raise SystemExit(f"profile {profile!r} selects no notebook (only={only})")
    timings_file = runs / "timings.json"
    timings = json.loads(timings_file.read_text()) if timings_file.exists() else {}
    code, anything_ran = code_version(), False
    for nb in selected:
        params = notebook_parameters(cfg, nb)
        key = run_key(nb, params, code)
        done = runs / f"{nb.stem}.done.json"
        reads_results = nb.stem.endswith("_report")  # it gathers the others' files: redo if any changed
        up_to_date = (done.exists() and json.loads(done.read_text()).get("key") == key
                      and (results_dir(profile, nb.stem) / "metrics.json").exists())
        if up_to_date and not force and not (reads_results and anything_ran):
            print(f"== {nb.name}: up to date (run key {key}), skipped", flush=True)
            continue
        print(f"== {nb.name}  {params}", flush=True)
        anything_ran = True
        done.unlink(missing_ok=True)
        start = time.perf_counter()
        pm.execute_notebook(str(nb), str(runs / nb.name), parameters=params, kernel_name="python3",
                            cwd=str(nb.parent), log_output=True, progress_bar=False,
                            execution_timeout=timeout_s)
        wall = round(time.perf_counter() - start, 1)
        timings[nb.stem] = wall
        atomic_write_text(timings_file, json.dumps(timings, indent=2, sort_keys=True))
        atomic_write_text(done, json.dumps({"key": key, "wall_s": wall, "params": params}, indent=2, default=str))
    table = pd.DataFrame({"notebook": list(timings), "wall_s": list(timings.values())}).sort_values("notebook")
    out = ResultDir(results_dir(profile, "timings"))
    out.table(table, "timings", title=f"notebook wall time of its last run, profile {profile} (s)")
    out.commit()
    print(table.to_string(index=False))
    return table


# columns that measure time, speed or memory of this run (they differ between runs by nature)
MEASURED = ("_ms", "ms_", "fps", "seconds", "wall_s", "process_s", "build_s", "per_s", "gflop", "sgemm", "rss_",
            "_mib", "tvm_cached", "startup", "threads", "_vs_", "frames_timed")
# tables of measured ratios and times only (06's per_frame: the frames each configuration's time budget allowed)
MEASURED_TABLES = ("headline", "timings", "06_on_device/per_frame")


def compare_results(a: Path, b: Path) -> pd.DataFrame:
    """Every table (``*.csv``, ``*.csv.gz``) under results folder ``a`` against the same file under
    ``b``: ``identical`` (same columns, same values, NaN equal to NaN), the differing columns, and
    whether they all measure time, speed or memory (:data:`MEASURED`), which no two runs share."""
    rows = []
    files = sorted(f for f in Path(a).rglob("*.csv*") if "runs" not in f.relative_to(a).parts[:1]
                   and f.name.endswith((".csv", ".csv.gz")))
    for fa in files:
        rel = fa.relative_to(a)
        fb = Path(b) / rel
        if not fb.exists():
            rows.append({"table": str(rel), "identical": False, "differing_columns": "(missing in b)",
                         "only_measurements": False})
            continue
        da, db = pd.read_csv(fa), pd.read_csv(fb)
        if list(da.columns) != list(db.columns) or len(da) != len(db):
            cols = ["(shape or columns)"]
        else:
            cols = [c for c in da.columns if not da[c].equals(db[c])]
        rows.append({"table": str(rel), "identical": not cols, "differing_columns": " ".join(cols),
                     "only_measurements": bool(cols) and (rel.name.split(".")[0] in MEASURED_TABLES
                                                          or rel.as_posix().split(".")[0] in MEASURED_TABLES or all(
                         any(h in c.lower() for h in MEASURED) for c in cols))})
    return pd.DataFrame(rows, columns=["table", "identical", "differing_columns", "only_measurements"])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dydca_lib.reproduce", description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="smoke", help="smoke, default or full (params/<profile>.yaml)")
    ap.add_argument("--only", nargs="*", help="notebook name prefixes to run, e.g. 01 03")
    ap.add_argument("--force", action="store_true", help="run notebooks even if their results are up to date")
    ap.add_argument("--compare", metavar="DIR", help="compare the tables of results/<profile>/ with those under DIR "
                    "(e.g. a copy of an earlier run) instead of running; exit 1 if any non-measurement column differs")
    args = ap.parse_args(argv)
    if args.compare:
        table = compare_results(results_dir(args.profile), Path(args.compare))
        with pd.option_context("display.width", 200, "display.max_colwidth", 80, "display.max_rows", 500):
            print(table.to_string(index=False))
        same = int(table.identical.sum())
        print(f"{same}/{len(table)} tables identical; {int(table.only_measurements.sum())} differ only in "
              "measured time/speed/memory columns")
        return 0 if (table.identical | table.only_measurements).all() else 1
    run(args.profile, args.only, args.force)
    return 0


if __name__ == "__main__":
    sys.exit(main())

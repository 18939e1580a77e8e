"""Run every notebook headless with papermill: ``python -m dydca_lib.reproduce --profile smoke``.

Parameters come from ``params/<profile>.yaml``: ``common`` is passed to every notebook that
declares the parameter and ``notebooks.<name>`` sets (or overrides) one notebook's parameters;
only the notebooks listed there run. Unknown parameters are errors, not silently ignored.

**Your own video.** ``--video PATH`` (a video file, a VSD4K-style frame folder, or a clip name)
runs the whole pipeline on it with the profile's other settings, and ``-p name=value``
(repeatable; a YAML literal) sets a parameter in every notebook that declares it; such a run
writes ``results/<profile>-<video name>[-<name>_<value>...]/`` (``--name`` picks another), never
the profile's own folder. Video and parameters are checked before anything runs
(:mod:`dydca_lib.overrides`).

Executed notebooks (the run's log) go to ``results/<name>/runs/``. **Resume:** a notebook
whose results exist from a run with the same *run key* — a hash of the notebook, its
parameters (overrides included) and the ``dydca_lib`` sources — is skipped, so a re-run after a finished run does
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
from typing import NamedTuple

import pandas as pd

from .io import ResultDir, atomic_write_text
from .paths import PACKAGE_DIR, results_dir
from .overrides import (absolute_video, apply_overrides, check_override_names, check_video, fetch_clips,
                        frame_plans, needed_clips, parse_param, patch_fits, results_name)
from .runinfo import code_version
from .profiles import load_profile, notebook_defaults, notebook_parameters, notebook_paths, parameter_types


def run_key(notebook: Path, params: dict, code: str) -> str:
    record = {"notebook": hashlib.sha256(notebook.read_bytes()).hexdigest(), "params": params, "code": code}
    return hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()[:16]


class Plan(NamedTuple):
    name: str  # results/<name>/
    video: str | None  # absolute path or clip name
    overrides: dict  # the -p values, video aside
    params: dict  # {notebook path: its parameters}


def plan(profile: str, only: list[str] | None = None, video=None, overrides: dict | None = None,
         name: str | None = None) -> Plan:
    """Check everything a run needs before it starts: the profile, the ``-p`` names and types,
    the video (opened, sized) and the registry clips the parameters name (fetched)."""
    cfg = load_profile(profile)
    overrides = dict(overrides or {})
    if "video" in overrides:
        if video is not None and str(overrides["video"]) != str(video):
            raise SystemExit(f"two videos: --video {video!r} and -p video={overrides['video']!r}; give one")
        video = overrides.pop("video")
    if video is not None and "videos" in overrides:
        raise SystemExit("--video sets notebook 04's videos to [the video]; drop -p videos, or --video")
    check_override_names(overrides)
    if video is not None:
        video = absolute_video(video)
    name = name or (results_name(profile, video, overrides) if video is not None or overrides else profile)
    try:
        results_dir(name)
    except ValueError:
        raise SystemExit(f"--name {name!r} is not a plain folder name (no '/', not starting with '.')") from None
    selected = [nb for nb in notebook_paths()
                if nb.stem in cfg.get("notebooks", {}) and (not only or any(nb.stem.startswith(o) for o in only))]
    if not selected:
        raise SystemExit(f"profile {profile!r} selects no notebook (only={only})")
    params = {nb: apply_overrides(notebook_parameters(cfg, nb), nb, overrides, video, name) for nb in selected}
    effective = [{**notebook_defaults(nb), **p} for nb, p in params.items()]
    if video is not None:
        info = check_video(video, patch_fits(effective), frame_plans(effective))
        print(f"== video {info['video']}: {info['kind']}, {info['size']}, results in {results_dir(name)}", flush=True)
    fetch_clips(needed_clips(effective))
    return Plan(name, video, overrides, params)


def run(profile: str, only: list[str] | None = None, force: bool = False, timeout_s: int = 3 * 3600,
        video=None, overrides: dict | None = None, name: str | None = None) -> pd.DataFrame:
    """Run the profile's notebooks (see the module docstring); ``video``, ``overrides`` (``{name:
    value}``) and ``name`` as ``--video``, ``-p`` and ``--name``."""
    import papermill as pm

    p = plan(profile, only, video, overrides, name)
    name = p.name
    runs = results_dir(name, "runs")
    runs.mkdir(parents=True, exist_ok=True)
    # what this results folder holds, for the report's first line
    atomic_write_text(runs / "run.json", json.dumps({"profile": profile, "video": p.video, "overrides": p.overrides},
                                                    indent=2, default=str))
    timings_file = runs / "timings.json"
    timings = json.loads(timings_file.read_text()) if timings_file.exists() else {}
    code, anything_ran = code_version(), False
    for nb, params in p.params.items():
        key = run_key(nb, params, code)
        done = runs / f"{nb.stem}.done.json"
        reads_results = nb.stem.endswith("_report")  # it gathers the others' files: redo if any changed
        up_to_date = (done.exists() and json.loads(done.read_text()).get("key") == key
                      and (results_dir(name, nb.stem) / "metrics.json").exists())
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
    out = ResultDir(results_dir(name, "timings"))
    out.table(table, "timings", title=f"notebook wall time of its last run, profile {profile}"
              + ("" if name == profile else f" in results/{name}") + " (s)")
    out.commit()
    print(table.to_string(index=False))
    if (results_dir(name) / "REPORT.md").exists():
        print(f"report: {results_dir(name) / 'REPORT.md'}")
    return table


# columns that measure time, speed or memory of this run (they differ between runs by nature)
MEASURED = ("_ms", "ms_", "fps", "seconds", "wall_s", "process_s", "build_s", "per_s", "gflop", "sgemm", "rss_",
            "_mib", "tvm_cached", "startup", "threads", "_vs_", "frames_timed", "gops", "share_of", "model_share")
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


def stale_cells_command(folder: Path, delete: bool) -> int:
    """List (or delete) the cells in ``folder`` whose key no longer matches the current code."""
    from .cells import remove_cells, stale_cells

    if not folder.is_dir():
        raise SystemExit(f"no cells folder {folder}")
    stale = stale_cells(folder)
    for path in stale:
        print(path)
    total = len(list(folder.glob("*.json")))
    print(f"{len(stale)} of {total} cells in {folder} are stale" + ("; deleted" if delete and stale else ""))
    if delete:
        remove_cells(stale)
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dydca_lib.reproduce", description=__doc__.split("\n\n")[0],
                                 epilog="Your own video: python -m dydca_lib.reproduce --profile default "
                                        "--video clip.mp4 -p scale=3  (results/default-clip-scale_3/)")
    ap.add_argument("--profile", default="smoke", help="smoke, default or full (params/<profile>.yaml)")
    ap.add_argument("--video", help="run every notebook on this video file, VSD4K-style frame folder or clip name, "
                    "with the profile's other settings; results go to results/<profile>-<video name>/")
    ap.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                    help="set a parameter in every notebook that declares it, over the profile (repeatable; "
                    "VALUE is a YAML literal: -p scale=3 -p split_thresholds=[0.4])")
    ap.add_argument("--name", help="results folder name (default: the profile, plus -<video name> and "
                    "-<name>_<value> per -p when given)")
    ap.add_argument("--only", nargs="*", help="notebook name prefixes to run, e.g. 01 03")
    ap.add_argument("--force", action="store_true", help="run notebooks even if their results are up to date")
    ap.add_argument("--compare", metavar="DIR", help="compare the tables of results/<name>/ with those under DIR "
                    "(e.g. a copy of an earlier run) instead of running; exit 1 if any non-measurement column differs")
    ap.add_argument("--stale-cells", metavar="DIR", help="list the cached cells in DIR (e.g. results/paper/cells) "
                    "that the current code no longer reads (computed by code that has changed since) instead of running")
    ap.add_argument("--delete", action="store_true", help="with --stale-cells: delete them")
    args = ap.parse_args(argv)
    if args.stale_cells:
        return stale_cells_command(Path(args.stale_cells), args.delete)
    overrides = dict(parse_param(t, parameter_types()) for t in args.param)
    if args.compare:
        video = args.video or overrides.pop("video", None)
        name = args.name or (results_name(args.profile, absolute_video(video) if video else None, overrides)
                             if video or overrides else args.profile)
        table = compare_results(results_dir(name), Path(args.compare))
        with pd.option_context("display.width", 200, "display.max_colwidth", 80, "display.max_rows", 500):
            print(table.to_string(index=False))
        same = int(table.identical.sum())
        print(f"{same}/{len(table)} tables identical; {int(table.only_measurements.sum())} differ only in "
              "measured time/speed/memory columns")
        return 0 if (table.identical | table.only_measurements).all() else 1
    run(args.profile, args.only, args.force, video=args.video, overrides=overrides, name=args.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Run every notebook headless with papermill: ``python -m dydca_lib.reproduce --profile smoke``.

Parameters come from ``params/<profile>.yaml``: ``common`` is passed to every notebook that
declares the parameter and ``notebooks.<name>`` sets (or overrides) one notebook's parameters;
only the notebooks listed there run. Unknown parameters are errors, not silently ignored. Executed notebooks, the run's log,
go to ``results/<profile>/runs/``; each notebook writes its own tables and figures.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd
import yaml

from .io import ResultDir
from .paths import params_file, project_root, results_dir


def notebook_paths() -> list[Path]:
    return sorted((project_root() / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def load_profile(profile: str) -> dict:
    path = params_file(profile)
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in path.parent.glob("*.yaml")))
        raise SystemExit(f"no profile {profile!r} ({path} is missing); known profiles: {known}")
    return yaml.safe_load(path.read_text()) or {}


def notebook_parameters(cfg: dict, notebook: Path) -> dict:
    """The notebook's parameters: the ``common`` ones it declares, then its own section.

    A key in the notebook's own section that it does not declare is an error (a typo would
    otherwise be ignored silently); so is a ``common`` key that no notebook declares.
    """
    import papermill as pm

    declared = pm.inspect_notebook(str(notebook))
    own = cfg.get("notebooks", {}).get(notebook.stem) or {}
    unknown = sorted(set(own) - set(declared))
    if unknown:
        raise SystemExit(f"{notebook.name} has no parameter(s) {unknown}; it declares {sorted(declared)}")
    everywhere = set().union(*(pm.inspect_notebook(str(nb)) for nb in notebook_paths()))
    orphans = sorted(set(cfg.get("common", {})) - everywhere)
    if orphans:
        raise SystemExit(f"common parameter(s) {orphans} are declared by no notebook")
    common = {k: v for k, v in cfg.get("common", {}).items() if k in declared}
    return {**common, **own}


def run(profile: str, only: list[str] | None = None, timeout_s: int = 3 * 3600) -> pd.DataFrame:
    import papermill as pm

    cfg = load_profile(profile)
    runs = results_dir(profile, "runs")
    runs.mkdir(parents=True, exist_ok=True)
    selected = [nb for nb in notebook_paths()
                if nb.stem in cfg.get("notebooks", {}) and (not only or any(nb.stem.startswith(o) for o in only))]
    if not selected:
        raise SystemExit(f"profile {profile!r} selects no notebook (only={only})")
    rows = []
    for nb in selected:
        params = notebook_parameters(cfg, nb)
        print(f"== {nb.name}  {params}", flush=True)
        start = time.perf_counter()
        pm.execute_notebook(str(nb), str(runs / nb.name), parameters=params, kernel_name="python3",
                            cwd=str(nb.parent), log_output=True, progress_bar=False,
                            execution_timeout=timeout_s)
        rows.append({"notebook": nb.stem, "wall_s": round(time.perf_counter() - start, 1)})
    timings = pd.DataFrame(rows)
    out = ResultDir(runs.with_name("timings"))
    out.table(timings, "timings", title=f"notebook wall times, profile {profile}")
    out.commit()
    print(timings.to_string(index=False))
    return timings


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dydca_lib.reproduce", description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="smoke", help="smoke, default or full (params/<profile>.yaml)")
    ap.add_argument("--only", nargs="*", help="notebook name prefixes to run, e.g. 01 03")
    args = ap.parse_args(argv)
    run(args.profile, args.only)
    return 0


if __name__ == "__main__":
    sys.exit(main())

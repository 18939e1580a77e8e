"""Profiles (``params/<profile>.yaml``) and the notebooks' parameters cells: what each notebook
runs with. Read by the driver (:mod:`dydca_lib.reproduce`), the GPU companion and the tests;
the parameters cells are read as text (papermill's inspection, or ``ast``), never executed.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import yaml

from .paths import params_file, project_root


def notebook_paths() -> list[Path]:
    return sorted((project_root() / "notebooks").glob("[0-9][0-9]*_*.ipynb"))


def notebook_path(stem: str) -> Path:
    """``notebooks/<stem>.ipynb``, e.g. ``notebook_path("06_on_device")``."""
    path = project_root() / "notebooks" / f"{stem}.ipynb"
    if not path.exists():
        raise SystemExit(f"no notebook {path.name}; known: {[p.stem for p in notebook_paths()]}")
    return path


def notebook_defaults(notebook: Path) -> dict:
    """The defaults of a notebook's parameters cell (``name: type = literal  # help`` lines),
    read with ``ast`` (nothing in the cell is executed)."""
    import ast

    nb = json.loads(Path(notebook).read_text())
    cells = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise ValueError(f"{Path(notebook).name}: {len(cells)} cells tagged 'parameters' (want exactly 1)")
    out = {}
    for node in ast.parse("".join(cells[0]["source"])).body:
        if not isinstance(node, ast.AnnAssign) or not isinstance(node.target, ast.Name) or node.value is None:
            raise ValueError(f"{Path(notebook).name}: the parameters cell holds {ast.unparse(node)!r}, "
                             "not a `name: type = literal` line")
        out[node.target.id] = ast.literal_eval(node.value)
    return out


def load_profile(profile: str) -> dict:
    path = params_file(profile)
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in path.parent.glob("*.yaml")))
        raise SystemExit(f"no profile {profile!r} ({path} is missing); known profiles: {known}")
    return yaml.safe_load(path.read_text()) or {}


@functools.cache
def _inspect(path: str, mtime_ns: int) -> dict:
    import papermill as pm

    return {name: p["inferred_type_name"] for name, p in pm.inspect_notebook(path).items()}


def declared_types(notebook: Path) -> dict:
    """``{name: type name}`` of a notebook's parameters cell (read once per file version)."""
    return dict(_inspect(str(notebook), notebook.stat().st_mtime_ns))


def declared_parameters(notebook: Path) -> frozenset:
    """The parameter names of a notebook's parameters cell."""
    return frozenset(declared_types(notebook))


def parameter_types() -> dict[str, set]:
    """Every parameter any notebook declares, with the type name(s) the notebooks give it."""
    types: dict[str, set] = {}
    for nb in notebook_paths():
        for k, t in declared_types(nb).items():
            types.setdefault(k, set()).add(t)
    return types


def notebook_parameters(cfg: dict, notebook: Path) -> dict:
    """The notebook's parameters: the ``common`` ones it declares, then its own section.

    A key in the notebook's own section that it does not declare is an error (a typo would
    otherwise be ignored silently); so is a ``common`` key that no notebook declares.
    """
    declared = declared_parameters(notebook)
    own = cfg.get("notebooks", {}).get(notebook.stem) or {}
    unknown = sorted(set(own) - set(declared))
    if unknown:
        raise SystemExit(f"{notebook.name} has no parameter(s) {unknown}; it declares {sorted(declared)}")
    everywhere = set().union(*(declared_parameters(nb) for nb in notebook_paths()))
    orphans = sorted(set(cfg.get("common", {})) - everywhere)
    if orphans:
        raise SystemExit(f"common parameter(s) {orphans} are declared by no notebook")
    common = {k: v for k, v in cfg.get("common", {}).items() if k in declared}
    return {**common, **own}

"""Which library code a cached result depends on, and a hash of it.

A cached result (a notebook cell, a trained model, labels, a compiled library) must be recomputed
when the code that computes it changes, and only then: hours of training should survive an edit
to the compiler, a stale result never. :func:`code_version` hashes the *import closure* of the
modules that compute a result — every ``dydca_lib`` module they import, at the top or inside a
function, and the packages those live in, found statically (``ast``) — with each source reduced
to its tokens without comments, docstrings or layout (``tokenize``, stable across Python
versions), so a reworded comment keeps every cache and any change of code invalidates exactly the
results whose closure holds it. Without modules it hashes the whole package.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import io
import tokenize
from pathlib import Path

PACKAGE = "dydca_lib"
PACKAGE_DIR = Path(__file__).resolve().parent


def module_file(module: str, package_dir: Path = PACKAGE_DIR) -> Path | None:
    """The source file of ``module`` (``dydca_lib.x.y``) under ``package_dir``, or None if it is not one."""
    parts = module.split(".")
    if parts[0] != PACKAGE:
        return None
    p = Path(package_dir).joinpath(*parts[1:])
    for f in (p / "__init__.py", p.with_suffix(".py")):
        if f.is_file():
            return f
    return None


def imports_of(module: str, package_dir: Path = PACKAGE_DIR) -> set[str]:
    """The ``dydca_lib`` modules ``module`` imports anywhere in its source (lazy imports included)."""
    f = module_file(module, package_dir)
    if f is None:
        raise ValueError(f"{module} is not a module of {PACKAGE} under {package_dir}")
    st = f.stat()
    return set(_imports_of(module, str(f), str(Path(package_dir)), st.st_mtime_ns, st.st_size))


@functools.lru_cache(maxsize=1024)
def _imports_of(module: str, path: str, package_dir: str, mtime_ns: int, size: int) -> frozenset:
    f = Path(path)
    here = module if f.name == "__init__.py" else module.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(f.read_text(), str(f))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = here.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            out.add(base)
            out |= {f"{base}.{a.name}" for a in node.names}  # `from . import x` may name a module
    return frozenset(m for m in out if module_file(m, Path(package_dir)) is not None)


def closure(modules, package_dir: Path = PACKAGE_DIR) -> list[str]:
    """``modules``, every ``dydca_lib`` module they import transitively, and their parent packages
    (whose ``__init__`` runs on import), sorted."""
    seen: set[str] = set()
    todo = list(modules)
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        parts = m.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]
        todo += sorted(imports_of(m, package_dir))
    return sorted(seen)


@functools.lru_cache(maxsize=512)
def _tokens_digest(path: str, mtime_ns: int, size: int) -> str:
    source = Path(path).read_text()
    docstrings = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                docstrings.add((first.lineno, first.col_offset))
    skip = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENCODING}
    h = hashlib.sha256()
    depth = 0
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type in (tokenize.INDENT, tokenize.DEDENT):
            depth += 1 if tok.type == tokenize.INDENT else -1
        if tok.type in skip or (tok.type == tokenize.STRING and tok.start in docstrings):
            if tok.type in (tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT):
                h.update(f"\n{depth}".encode())  # statement boundaries and nesting still count
            continue
        h.update(tok.string.encode() + b"\x00")
    return h.hexdigest()


def source_digest(path: Path) -> str:
    """A hash of a Python file's tokens: comments, docstrings, blank lines and spacing do not count,
    statements and their nesting do."""
    st = Path(path).stat()
    return _tokens_digest(str(Path(path).resolve()), st.st_mtime_ns, st.st_size)


def code_version(*modules: str, package_dir: Path = PACKAGE_DIR) -> str:
    """A hash of the code that ``modules`` run (:func:`closure`; module names included, so a moved
    module counts as a change); with no modules, of every module of the package."""
    package_dir = Path(package_dir)
    if modules:
        names = closure(modules, package_dir)
    else:
        names = sorted(PACKAGE + "".join("." + p for p in f.relative_to(package_dir).with_suffix("").parts
                                         if p != "__init__") for f in package_dir.rglob("*.py"))
    h = hashlib.sha256()
    for m in names:
        h.update(m.encode() + b"\x00" + source_digest(module_file(m, package_dir)).encode())
    return h.hexdigest()[:16]

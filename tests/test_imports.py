"""The package's import graph, read from the source (every `import`, at a module's top or inside
a function): no circle anywhere, no arrow that points up the layers, and an engine and a maths
package that need no Ray, MLflow or Optuna.

The layers, bottom to top (a module may import its own layer and those below it):
  basics → measures (maths) → config → data, models, remedy hooks → catalog → engine → launch
  (who starts K workers) → stores (where a search's records live) → results (reads a finished
  search) → search (runs and closes one) → reproduce → cli.
A new module outside every layer fails here until it is given one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "remedies"
LAYERS: list[tuple[str, ...]] = [
    ("errors", "io", "registry", "stats", "factories", "batch_size"),
    ("measures",),
    ("config",),
    ("data", "models", "hooks"),
    ("catalog",),
    ("engine",),
    ("launch", "workers"),
    ("stores",),
    ("results",),
    ("search",),
    ("reproduce",),
    ("cli", "__main__", ""),  # "": the package's own __init__
]
FORBIDDEN = {  # packages that must run without these (a user's job, a test of the maths)
    "engine": ("ray", "mlflow", "optuna"),
    "measures": ("ray", "mlflow", "optuna"),
    "results": ("ray",),
}


def modules() -> dict[str, Path]:
    out = {}
    for p in PKG.rglob("*.py"):
        parts = p.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = p
    return out


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Every module `name` imports (remedies' own by module name, others by top-level name)."""
    pkg = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                base = ".".join(up + ([node.module] if node.module else []))
            out.add(base)
            out |= {f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in known}
    own = {m for m in out if m in known}
    return own | {m.split(".")[0] for m in out if not m.startswith("remedies")}


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    known = modules()
    return {n: imports(n, p, known) - {n} for n, p in known.items()}


def layer(module: str) -> int:
    rest = module.removeprefix("remedies").removeprefix(".")
    for i, names in enumerate(LAYERS):
        if rest.split(".")[0] in names:
            return i
    raise AssertionError(f"{module} is in no layer of tests/test_imports.py")


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import circles among remedies' modules (Tarjan's strongly connected components)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while (w := stack.pop()) != v:
                comp.append(w)
            if comp:
                found.append(sorted([v, *comp]))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_the_checker_sees_a_circle_and_an_upward_arrow():
    """The checks below would fail on the mistakes they guard against."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    assert layer("remedies.engine.trainer") < layer("remedies.search.driver")
    with pytest.raises(AssertionError, match="no layer"):
        layer("remedies.somewhere_new")


def test_no_import_circle(graph):
    assert cycles(graph) == []


def test_no_arrow_points_up(graph):
    up = [
        f"{m} → {t}"
        for m, targets in graph.items()
        for t in targets
        if t in graph and t != "remedies" and layer(t) > layer(m)
    ]
    assert up == [], "\n".join(sorted(up))


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_engine_and_maths_need_no_service(graph, package):
    """Nothing the package imports, directly or through remedies' own modules, is Ray, MLflow
    or Optuna (results may read the study and MLflow; it starts no Ray)."""
    bad = FORBIDDEN[package]
    start = [m for m in graph if m == f"remedies.{package}" or m.startswith(f"remedies.{package}.")]
    seen, todo, hits = set(start), list(start), []
    while todo:
        m = todo.pop()
        for t in graph[m]:
            if t in bad:
                hits.append(f"{m} imports {t}")
            elif t in graph and t not in seen and t != "remedies":
                seen.add(t)
                todo.append(t)
    assert hits == [], "\n".join(sorted(hits))


# what writes to MLflow or the study: remedies' own tracking writers and the libraries' methods
WRITES = {
    "start_run", "resume_run", "log_params", "log_metrics", "log_metric_rows", "set_tags",
    "log_yaml", "log_files", "close_run", "end_run", "delete_run", "prepare_store",
    "log_metric", "log_param", "log_artifact", "log_artifacts", "log_batch", "set_tag",
    "set_terminated", "create_run", "log_dict", "log_figure", "log_text", "create_experiment",
    "set_user_attr", "set_system_attr", "set_trial_user_attr", "set_study_user_attr", "tell",
    "enqueue_trial", "create_study", "delete_study", "add_trial", "create_new_trial",
}  # fmt: skip


def writes(source: str, where: str) -> list[str]:
    """The write calls (`x.log_metrics(...)`, `log_files(...)`) in one module's source."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
            if name in WRITES:
                out.append(f"{where}:{node.lineno} {name}")
    return out


def test_results_reads_and_writes_nothing_to_mlflow_or_the_study():
    """`results/` reads a finished search; logging its artifacts (closing the search) is
    `search/`'s. The check itself sees a write where there is one."""
    probe = "def f(c, s):\n    c.set_tags('r', {})\n    s.set_user_attr('k', 1)\n    c.get(1)\n"
    assert writes(probe, "probe") == ["probe:2 set_tags", "probe:3 set_user_attr"]
    found = [
        w
        for p in sorted((PKG / "results").glob("*.py"))
        for w in writes(p.read_text(), str(p.relative_to(ROOT)))
    ]
    assert found == [], "\n".join(found)

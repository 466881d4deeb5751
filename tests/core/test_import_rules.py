"""The layering in docs/DESIGN.md §2, checked on the source: who may import what."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

APP = Path(__file__).resolve().parents[2] / "app"
STDLIB = set(sys.stdlib_module_names)


def _imported(node: ast.AST, path: Path) -> set[str]:
    """The modules an import statement names: `from a.b import c` names a.b and a.b.c (c may be a
    module: `from app.runs import lifecycle`); a relative import is resolved against the file's package."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names}
    if not isinstance(node, ast.ImportFrom):
        return set()
    module = node.module or ""
    if node.level:
        package = list(path.relative_to(APP.parent).with_suffix("").parts)[:-node.level]
        module = ".".join([*package, *([module] if module else [])])
    return {module} | {f"{module}.{alias.name}" for alias in node.names if alias.name != "*"}


def _imports(path: Path) -> set[str]:
    return {name for node in ast.walk(ast.parse(path.read_text())) for name in _imported(node, path)}


def _top_level_imports(path: Path) -> set[str]:
    """Imports that run when the module is imported (not those inside functions)."""
    return {name for node in ast.parse(path.read_text()).body for name in _imported(node, path)}


def test_the_import_reader_sees_modules_imported_by_name():
    source = APP / "runs" / "probe.py"
    tree = ast.parse("from app.runs import lifecycle\nfrom . import events\nfrom ..web import pages\n")
    names = set().union(*(_imported(node, source) for node in tree.body))
    assert {"app.runs.lifecycle", "app.runs.events", "app.web.pages"} <= names


def test_engine_imports_only_torch_numpy_the_standard_library_and_the_layer_registry():
    # safetensors and onnx are the export formats' own libraries (no web, no database); captum computes
    # attributions (attribution.py, in the predictor process).
    allowed_roots = {"torch", "torchvision", "numpy", "safetensors", "onnx", "onnxscript", "captum"} | STDLIB
    paths = list((APP / "engine").glob("*.py"))
    assert paths
    for path in paths:
        for name in _imports(path):
            root = name.split(".")[0]
            if root == "app":
                assert name.startswith(("app.engine", "app.layers")), f"{path.name} imports {name}"
            else:
                assert root in allowed_roots, f"{path.name} imports {name}"


def test_the_layer_registry_is_pure_and_imports_torch_only_when_building():
    """app.layers is read by the web process: pydantic and the standard library at import; torch and
    torchvision only inside `build` (and in torch_modules.py, which only `build` imports)."""
    paths = [path for path in (APP / "layers").glob("*.py") if path.name != "torch_modules.py"]
    assert len(paths) > 3
    for path in paths:
        for name in _top_level_imports(path):
            root = name.split(".")[0]
            if root == "app":
                assert name.startswith("app.layers") and name != "app.layers.torch_modules", f"{path.name}: {name}"
            else:
                assert root in {"pydantic", "pydantic_core"} | STDLIB, f"{path.name} imports {name}"
        for name in _imports(path) - _top_level_imports(path):
            assert name.split(".")[0] in {"torch", "torchvision", "app"}, f"{path.name} imports {name}"
    for name in _imports(APP / "layers" / "torch_modules.py"):
        assert name.split(".")[0] in {"torch", "torchvision", "safetensors", "app"} | STDLIB, name
        assert not name.startswith("app.") or name.startswith("app.layers"), name


def test_workers_and_executors_never_import_api_or_web():
    paths = [APP / "worker.py", *(APP / "executors").glob("*.py")]
    for path in paths:
        for name in _imports(path):
            assert not name.startswith(("app.api", "app.web")), f"{path} imports {name}"


def test_services_do_not_know_http():
    for domain in ("architectures", "runs", "datasets", "compare"):
        paths = list((APP / domain).glob("*.py"))
        assert paths, domain
        for path in paths:
            for name in _imports(path):
                assert not name.startswith(("fastapi", "starlette", "app.api", "app.web")), f"{path} imports {name}"


def _lifecycle_writes(path: Path) -> list[str]:
    """Assignments of a run's lifecycle fields: `x.status = ...`, `Run(status=...)`, `.values(status=...)`."""
    from app.runs.lifecycle import LIFECYCLE_FIELDS

    found: list[str] = []

    def targets(node: ast.AST):
        if isinstance(node, (ast.Tuple, ast.List)):
            for element in node.elts:
                yield from targets(element)
        else:
            yield node

    for node in ast.walk(ast.parse(path.read_text())):
        assigned = []
        if isinstance(node, ast.Assign):
            assigned = [t for target in node.targets for t in targets(target)]
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            assigned = [node.target]
        for target in assigned:
            # `sweep.status`, `sweep.finished_at`: a sweep's own fields (app/sweeps), not a run's
            is_sweep = isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name) and target.value.id == "sweep"
            if isinstance(target, ast.Attribute) and target.attr in LIFECYCLE_FIELDS and not is_sweep:
                found.append(f"{path.name}:{node.lineno} assigns .{target.attr}")
        if isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
            if name in ("Run", "values"):
                found += [f"{path.name}:{node.lineno} {name}({kw.arg}=...)" for kw in node.keywords
                          if kw.arg in LIFECYCLE_FIELDS]
            if name == "setattr" and len(node.args) > 1 and isinstance(node.args[1], ast.Constant) \
                    and node.args[1].value in LIFECYCLE_FIELDS:
                found.append(f"{path.name}:{node.lineno} setattr(..., {node.args[1].value!r})")
    return found


def test_only_the_lifecycle_writes_a_runs_status():
    lifecycle = APP / "runs" / "lifecycle.py"
    assert _lifecycle_writes(lifecycle), "the check must see the lifecycle's own writes"
    offenders = [hit for path in sorted(APP.rglob("*.py")) if path != lifecycle for hit in _lifecycle_writes(path)]
    assert offenders == [], "only app/runs/lifecycle.py may change a run's status fields: " + ", ".join(offenders)


def test_launchers_know_nothing_of_runs_or_the_database():
    """A launcher starts processes; the scheduler owns every run state change."""
    for name in _imports(APP / "executors" / "local.py"):
        assert not name.startswith(("app.runs", "app.core.db", "sqlalchemy")), f"local.py imports {name}"


def test_the_trainer_reaches_the_server_state_only_through_its_run_store():
    names = _imports(APP / "worker.py")
    assert not any(n.startswith("app.runs.lifecycle") or n == "app.runs.events" for n in names), names

"""The design card: layout exists, core/ never imports dash, component IDs are unique."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_design_card_layout_exists():
    for name in ("app.py", "components", "callbacks", "core", "assets", "tests", "pyproject.toml", "README.md",
                 "Makefile", ".ci/run", "data/README.md"):
        assert (ROOT / name).exists(), name


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    mods = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            mods |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            mods.add(node.module.split(".")[0])
    return mods


def test_core_source_never_imports_dash_or_ui_packages():
    files = list((ROOT / "core").rglob("*.py"))
    assert len(files) > 10
    offenders = {str(f.relative_to(ROOT)): sorted(_imports(f) & {"dash", "dash_bootstrap_components", "components",
                                                                 "callbacks", "app"})
                 for f in files}
    # `featurelens serve` and `featurelens worker` start the app lazily (inside their run()): the allowed edges.
    allowed = {"core/cli/serve.py", "core/cli/worker.py"}
    offenders = {k: v for k, v in offenders.items() if v and k not in allowed}
    assert offenders == {}


def test_importing_all_of_core_does_not_load_dash():
    code = (
        "import importlib, pkgutil, sys, core, core.cli\n"
        "for m in pkgutil.walk_packages(core.__path__, 'core.'):\n"
        "    importlib.import_module(m.name)\n"
        "bad = [m for m in sys.modules if m == 'dash' or m.startswith('dash.')]\n"
        "print(len([m for m in sys.modules if m.startswith('core.')]), bad)\n"
        "assert not bad, bad\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    n_modules = int(out.stdout.split()[0])
    assert n_modules > 10


def test_component_ids_are_unique_and_found():
    from components import ids

    found = ids.all_ids()
    assert len(found) >= 10
    assert len(found) == len(set(found))
    assert all(i.count("-") >= 1 for i in found)


# ---------------------------------------------------------------------------- layers and import cycles
# core's packages in layer order: a module may import its own package and those of a lower rank only.
LAYERS = {"base": 0, "data": 1, "store": 2, "concepts": 3, "model": 3, "sae": 4, "annotate": 5, "steer": 6,
          "simulate": 7, "demo": 8, "runtime": 8, "views": 9, "cli": 10}


def _core_modules() -> dict[str, Path]:
    mods = {}
    for p in (ROOT / "core").rglob("*.py"):
        parts = p.relative_to(ROOT).with_suffix("").parts
        mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    return mods


def _core_imports(path: Path) -> list[tuple[int, str]]:
    """``(line, module)`` of every ``core`` import in ``path``, at any depth (inside functions too),
    except under ``if TYPE_CHECKING:`` (never executed)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                   and getattr(node.test, "id", getattr(node.test, "attr", None)) == "TYPE_CHECKING"
                   for n in ast.walk(node)}
    found = []
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module.startswith("core"):
            found += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level:
            found.append((node.lineno, "." * node.level + (node.module or "")))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("core")]
    return found


def _import_graph() -> dict[str, set[str]]:
    mods = _core_modules()

    def resolve(name: str) -> str:
        while name not in mods and "." in name:
            name = name.rsplit(".", 1)[0]
        return name if name in mods else ""

    return {m: {t for _, name in _core_imports(p) if (t := resolve(name)) and t != m} for m, p in mods.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter[0]; counter[0] += 1
        stack.append(root); on_stack.add(root)
        while work:
            v, children = work[-1]
            for w in children:
                if w not in index:
                    index[w] = low[w] = counter[0]; counter[0] += 1
                    stack.append(w); on_stack.add(w)
                    work.append((w, iter(sorted(graph.get(w, ())))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop(); on_stack.discard(w); comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        found.append(sorted(comp))
    return found


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_core_has_no_import_cycles():
    assert _cycles(_import_graph()) == []


def test_core_uses_absolute_imports():
    relative = {f"{p.relative_to(ROOT)}:{line}" for p in _core_modules().values()
                for line, name in _core_imports(p) if name.startswith(".")}
    assert relative == set()


def test_core_is_layered():
    assert all(p.parent != ROOT / "core" or p.name == "__init__.py" for p in _core_modules().values()), \
        "core/ holds packages only"
    packages = {p.name for p in (ROOT / "core").iterdir() if (p / "__init__.py").exists()}
    assert packages == set(LAYERS)
    upward = []
    for module, path in _core_modules().items():
        here = module.split(".")[1] if "." in module else None
        for line, name in _core_imports(path):
            there = name.split(".")[1] if name.count(".") >= 1 else None
            if here and there and here != there and LAYERS[there] >= LAYERS[here]:
                upward.append(f"{path.relative_to(ROOT)}:{line} imports {name} ({here} → {there})")
    assert upward == []


def test_each_core_package_lists_its_api():
    for name in LAYERS:
        tree = ast.parse((ROOT / "core" / name / "__init__.py").read_text())
        assert ast.get_docstring(tree), name
        assert any(isinstance(n, (ast.Assign, ast.AnnAssign)) and "__all__" in ast.unparse(n) for n in tree.body), name


def test_one_name_per_page():
    pages = {"data", "explorer", "steering", "compare", "simulation"}
    assert pages <= {p.stem.removesuffix("_page") for p in (ROOT / "components").glob("*_page.py")}
    assert pages <= {p.stem for p in (ROOT / "callbacks").glob("*.py")}
    assert pages <= {p.stem for p in (ROOT / "core" / "views").glob("*.py")}


def test_notebook_api():
    import core

    assert {"load_dataset", "Analysis", "train_into_analysis", "annotate_analysis", "steer_into_analysis",
            "explorer_data"} <= set(core.__all__)
    assert callable(core.load_dataset) and callable(core.annotate_analysis) and callable(core.steer.steer)


def test_no_private_names_imported_across_modules():
    """``from core.x import _name`` couples two modules through a name that promises nothing."""
    offenders = []
    for folder in ("core", "components", "callbacks", "tests", "benchmarks", "scripts"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in (
                        "core", "components", "callbacks", "app"):
                    offenders += [f"{path.relative_to(ROOT)}:{node.lineno} {node.module}.{a.name}"
                                  for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
    assert offenders == []


def test_core_functions_are_at_most_60_lines():
    """A function a newcomer can read in one screen: none in core/ is over 60 lines (``def`` to its last
    line), but those kept whole, each with its reason."""
    kept = {
        "core/base/training_loop.py::run_training":
            "the one training loop: 35 of its lines are the keyword-only signature and its docstring, the rest "
            "is the epoch/step loop whose break conditions belong together; a helper would add a call per step",
    }
    lengths = {}
    for path in (ROOT / "core").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                key = f"{path.relative_to(ROOT).as_posix()}::{node.name}"
                lengths[key] = max(lengths.get(key, 0), node.end_lineno - node.lineno + 1)
    assert len(lengths) > 200
    too_long = {k: n for k, n in lengths.items() if n > 60 and k not in kept}
    assert too_long == {}, "split these into named steps (or add them to `kept` with a reason)"
    assert {k: lengths.get(k) for k in kept if lengths.get(k, 0) <= 60} == {}, "stale entries in `kept`"


# ---------------------------------------------------------------------------- page layouts receive their data
# What components/ may import from core: types and constants (capitalised names) only, and only from core.views
# (its functions read: each <page>_page_data reads what its page shows, and the router passes the result in),
# core.base.errors and core.steer.request (MAX_FEATURES). Never the store, the data loaders or core.base.io, nor
# a core module or function; and no module that reads files, no open() and no read_*/load call.
COMPONENTS_MAY_IMPORT = ("core.views", "core.base.errors", "core.steer.request")
READING_MODULES = {"os", "io", "pathlib", "json", "pickle", "shutil", "glob", "tempfile", "sqlite3", "h5py",
                   "anndata", "scanpy", "pyarrow", "torch", "joblib", "diskcache"}


def _reads(source: str) -> list[str]:
    """``line: what`` for each core import outside :data:`COMPONENTS_MAY_IMPORT`, each core module or
    function (a lower-case name) imported, each import of a reading module, and each call of open(),
    ``.open``, ``.load*`` or ``read_*`` in ``source``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
            if name == "open" or name.startswith(("read_", "load")):
                found.append(f"{node.lineno}: calls {name}()")
            continue
        if isinstance(node, ast.Import):
            modules = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [f"core.{a.name}" for a in node.names] if node.module == "core" else [node.module]
            if node.module.startswith("core."):
                found += [f"{node.lineno}: imports {node.module}.{a.name}" for a in node.names if a.name[:1].islower()]
                if any(node.module == m or node.module.startswith(m + ".") for m in COMPONENTS_MAY_IMPORT):
                    continue
        else:
            continue
        for name in modules:  # a whole module: a reading one, or core's outside the list, or core.views (its functions)
            allowed = any(name == m or name.startswith(m + ".") for m in COMPONENTS_MAY_IMPORT)
            outside = name.startswith("core") and (not allowed or name.startswith("core.views"))
            if name.split(".")[0] in READING_MODULES or outside:
                found.append(f"{node.lineno}: imports {name}")
    return found


def test_the_layout_reader_check_finds_reads():
    bad = ("import os\nfrom core.store.analysis import Analysis\nfrom core import data\nimport core.base.io\n"
           "from core.views.steering import SteeringPageData, steering_page_data\n"
           "from core.base.errors import InputError\nimport core.views.compare\n"
           "def layout(source):\n    a = Analysis.open(source)\n    open('x')\n    pd.read_parquet('y')\n"
           "    np.load('z')\n    return a.read_json('run.json')\n"
           "from core.steer.request import MAX_FEATURES, steer_into_analysis\nfrom core.steer.targets import Target\n")
    assert sorted(_reads(bad)) == sorted([
        "1: imports os", "2: imports core.store.analysis", "3: imports core.data",
        "4: imports core.base.io", "5: imports core.views.steering.steering_page_data",
        "14: imports core.steer.request.steer_into_analysis", "15: imports core.steer.targets",
        "7: imports core.views.compare", "9: calls open()", "10: calls open()", "11: calls read_parquet()",
        "12: calls load()", "13: calls read_json()"])


def test_components_receive_data_rather_than_read_it():
    files = sorted((ROOT / "components").glob("*.py"))
    assert len(files) >= 10
    offenders = {str(p.relative_to(ROOT)): found for p in files if (found := _reads(p.read_text()))}
    assert offenders == {}
    pages = sorted((ROOT / "components").glob("*_page.py"))
    assert len(pages) == 5
    for p in pages:  # layout(data): one argument, the page's data from core.views.<page>.<page>_page_data
        fn = next(n for n in ast.parse(p.read_text()).body if isinstance(n, ast.FunctionDef) and n.name == "layout")
        assert [a.arg for a in fn.args.args] == ["data"] and not fn.args.kwonlyargs, p.name

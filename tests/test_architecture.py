"""The shape of the code: a stage is named only by the registry and its own module, the web
process loads neither TensorFlow nor the worker, and the project's imports have no circle."""
import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import ROOT
from workers import stages

PACKAGES = ("explorer", "workers")


def project_modules():
    """{dotted name: path} of every module of the project's packages (migrations aside:
    they record history, including the stage names of old rows)."""
    modules = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT).with_suffix("")
            if "migrations" in relative.parts:
                continue
            parts = relative.parts[:-1] if relative.name == "__init__" else relative.parts
            modules[".".join(parts)] = path
    return modules


# --- stage names -----------------------------------------------------------------------

STAGE_NAMES = {stage.name for stage in stages.STAGES}


def _mentions_stage(node):
    return ("stage" in node.id.lower() if isinstance(node, ast.Name)
            else isinstance(node, ast.Attribute) and "stage" in node.attr.lower())


def _literals(node):
    """The string constants of `node`, also inside a tuple, list or set."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return [value for element in node.elts for value in _literals(element)]
    return []


# Provenance written into the data folder's manifests ({"stage": "sample", ...} in
# `produced_by`): a storage contract that stays as it is whatever the stage is called now.
PROVENANCE = {"produced_by", "made_from"}


def stage_names_in(source):
    """(line, name) of each stage name the code uses as a stage: a keyword argument or a
    dict key about a stage (stage=, stage__in=, {"stage": ...}), a comparison with or an
    assignment to something called *stage*, or a call of something called *stage* (as
    stages.get("pca") or after("scan"))."""
    found = []
    tree = ast.parse(source)
    provenance = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Assign)
                  and any(isinstance(target, ast.Name) and target.id in PROVENANCE for target in node.targets)}
    for node in ast.walk(tree):
        values = []
        if isinstance(node, ast.keyword) and node.arg and "stage" in node.arg:
            values = _literals(node.value)
        elif isinstance(node, ast.Dict) and id(node) not in provenance:
            values = [value for key, item in zip(node.keys, node.values)
                      if isinstance(key, ast.Constant) and key.value == "stage" for value in _literals(item)]
        elif isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            if any(_mentions_stage(side) for side in sides):
                values = [value for side in sides for value in _literals(side)]
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if node.value is not None and any(_mentions_stage(target) for target in targets):
                values = _literals(node.value)
        elif isinstance(node, ast.Call) and (_mentions_stage(node.func) or (
                isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "stages")):
            values = [value for argument in node.args for value in _literals(argument)]
        found += [(node.lineno, value) for value in values if value in STAGE_NAMES]
    return found


def own_modules(name):
    """The modules that the registry points at for the stage `name`."""
    stage = stages.get(name)
    return {getattr(stage, field).partition(":")[0] for field in ("run", "pieces", "when", "report")
            if getattr(stage, field)}


def test_a_stage_is_named_only_by_the_registry_and_its_own_module():
    misplaced = [f"{path.relative_to(ROOT)}:{line} names stage {name!r}"
                 for module, path in project_modules().items() if module != "workers.stages"
                 for line, name in stage_names_in(path.read_text()) if module not in own_modules(name)]
    assert not misplaced, "\n".join(misplaced)


def test_the_stage_name_check_finds_what_it_looks_for():
    """The check above would see the ways a stage used to be named outside the registry."""
    spread_out = textwrap.dedent("""
        EMBEDDING_STAGES = ("pca", "train", "layout")
        Job.objects.filter(stage__in=("sample", "features"))
        if job.stage == "poster": pass
        state = {"stage": "pca"}
        made_from = {"stage": "pca"}  # provenance in a manifest, not a stage
        _create(collection, kind, stage="scan")
        stages.get("layout")
        open_array(folder, "layout")  # an array's name, not a stage
    """)
    assert sorted(stage_names_in(spread_out)) == [
        (2, "layout"), (2, "pca"), (2, "train"), (3, "features"), (3, "sample"), (4, "poster"), (5, "pca"),
        (7, "scan"), (8, "layout")]


def test_every_stage_of_the_registry_loads_and_every_job_kind_starts_somewhere():
    from explorer.models import Job

    for stage in stages.STAGES:
        for field in ("run", "pieces", "when", "report"):
            if getattr(stage, field):
                assert stage.load(field) is not None, f"{stage.name}.{field}"
        if stage.pieces:
            assert stage.load("pieces").stage is stage
    for kind in Job.Kind.values:
        assert stages.first_for(kind) in stages.BY_NAME


# --- what the web process loads ---------------------------------------------------------------

WORKER_ONLY = ("tensorflow", "keras", "openvino", "celery.worker.consumer", "celery.apps.worker", "workers.tasks",
               "workers.pieces", "workers.recovery", "workers.worker_side", "workers.stages.")


def test_the_web_process_loads_neither_tensorflow_nor_openvino_nor_the_worker(tmp_path):
    """The web process as gunicorn runs it: the WSGI application, every URL's view, and a
    request to each kind of page and API answered, then the modules it holds are listed."""
    script = textwrap.dedent("""
        import sys
        from explorer.wsgi import application
        from django.test import Client
        from django.urls import get_resolver
        for pattern in get_resolver().url_patterns:  # every view module imported
            getattr(pattern, "url_patterns", None)
        client = Client()
        for url in ("/", "/api/", "/api/collections/", "/api/jobs/", "/accounts/login/", "/api/schema/"):
            client.get(url)
        print("\\n".join(sorted(sys.modules)))
    """)
    environment = {"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "explorer.settings",
                   "DJANGO_SECRET_KEY": "a-test-key-" + "x" * 50, "DATA_DIR": str(tmp_path),
                   "PYTHONPATH": str(ROOT)}
    loaded = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=environment, capture_output=True,
                            text=True, timeout=120, check=True).stdout.split()
    assert "explorer.api" in loaded and "workers.celery" in loaded  # it did load the web side
    offending = [module for module in loaded if module.startswith(WORKER_ONLY) or module in
                 {prefix.rstrip(".") for prefix in WORKER_ONLY if prefix.endswith(".")} - {"workers.stages"}]
    assert not offending, f"the web process loaded {offending}"


# --- import graph ---------------------------------------------------------------------------


def imports_of(module, path, known):
    """The project modules that `module` imports anywhere in its code (inside functions too:
    an import deferred into a function is still an edge of the graph), with the packages
    each import loads on the way."""
    edges = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    # A module's own packages are loaded before it is (explorer.models before
    # explorer.models.job): passing them on the way to a sibling adds no edge; importing
    # from one of them itself does.
    own_packages = {".".join(module.split(".")[:n]) for n in range(1, module.count(".") + 1)}
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base else []))
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        for name in names:
            parts = name.split(".")
            loaded = [".".join(parts[:n]) for n in range(1, len(parts) + 1) if ".".join(parts[:n]) in known]
            edges.update(loaded[-1:] + [package for package in loaded[:-1] if package not in own_packages])
    edges.discard(module)
    return edges


def find_cycle(graph):
    """A list of modules forming a circle, or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for neighbour in sorted(graph[node]):
            if state.get(neighbour) == "open":
                return stack[stack.index(neighbour):] + [neighbour]
            if neighbour not in state and (cycle := visit(neighbour)):
                return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_projects_imports_have_no_circle():
    modules = project_modules()
    graph = {module: imports_of(module, path, modules) for module, path in modules.items()}
    assert graph["explorer.jobs"] >= {"workers.celery", "workers.lifecycle"}  # the graph is read
    cycle = find_cycle(graph)
    assert cycle is None, " -> ".join(cycle)


def test_the_circle_check_sees_a_circle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


@pytest.mark.parametrize("limit", [420])
def test_no_module_is_over_about_400_lines(limit):
    long = {str(path.relative_to(ROOT)): count for path in project_modules().values()
            if (count := len(path.read_text().splitlines())) > limit}
    assert not long, f"split these: {long}"

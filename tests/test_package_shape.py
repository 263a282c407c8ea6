"""The package's shape: the public names of ``import ttlesson``, and an import graph without cycles."""

from __future__ import annotations

import ast
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

import ttlesson

PACKAGE = Path(ttlesson.__file__).parent

PUBLIC_NAMES = [
    "__version__", "BackendUnavailableError", "FFmpegNotFoundError", "FolderBusyError", "Frame", "FrameCheckError",
    "FrameDone", "FrameOrigins", "FrameStarted", "FrameVerificationError", "FramesLostError",
    "GatedCheckpointWarning", "HardwareReport", "HardwareSourceError", "HubAuthError", "ModelLoaded",
    "ModelNotAvailableError", "NoTTDeviceError", "PromptTooLongWarning", "RenderFinished", "RenderResult",
    "RenderStarted", "SettingsChangedError", "StepDone", "Storyboard", "StoryboardError", "TTDeviceError",
    "TTLessonError", "TTMetalNotFoundError", "VideoError", "VideoInfo", "Waiting", "WarmedUp", "WorkerStarted",
    "detect", "load_storyboard", "probe", "render", "stitch", "verify_frames",
]


def test_the_public_names_are_pinned():
    # Adding or removing a public name is an API change: change this list with it, on purpose.
    assert ttlesson.__all__ == PUBLIC_NAMES


def test_every_public_name_is_the_object_its_module_defines():
    from ttlesson import errors, machine, manifest, progress, storyboard, video

    render = importlib.import_module("ttlesson.render")  # the module; a submodule import must not replace the function
    assert ttlesson.render is render.render and ttlesson.RenderResult is render.RenderResult
    assert ttlesson.stitch is video.stitch and ttlesson.probe is video.probe and ttlesson.VideoInfo is video.VideoInfo
    assert ttlesson.load_storyboard is storyboard.load and ttlesson.Storyboard is storyboard.Storyboard
    assert ttlesson.detect is machine.detect and ttlesson.verify_frames is manifest.verify_frames
    assert ttlesson.FrameDone is progress.FrameDone and ttlesson.TTLessonError is errors.TTLessonError
    for name in PUBLIC_NAMES:
        assert getattr(ttlesson, name) is not None
    assert set(PUBLIC_NAMES) <= set(dir(ttlesson))
    with pytest.raises(AttributeError, match="no attribute 'rendr'"):
        ttlesson.rendr  # noqa: B018 (the lookup is the test)


@pytest.mark.parametrize("package", ["ttlesson", "ttlesson.machine"])
def test_type_checkers_see_every_lazy_name_from_the_module_that_defines_it(package):
    # the names a type checker reads (imports under TYPE_CHECKING) are the export table's, module for module
    module = importlib.import_module(package)
    tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
    seen = {(node.module, alias.asname or alias.name) for block in tree.body if isinstance(block, ast.If)
            and "TYPE_CHECKING" in ast.unparse(block.test) for node in ast.walk(block)
            if isinstance(node, ast.ImportFrom) for alias in node.names}
    exported = {(where, name) for name, (where, _) in module._EXPORTS.items()}
    assert seen == exported


def test_errors_have_the_builtin_bases_callers_catch(tmp_path):
    assert issubclass(ttlesson.StoryboardError, ValueError) and issubclass(ttlesson.FFmpegNotFoundError,
                                                                          FileNotFoundError)
    assert issubclass(ttlesson.TTMetalNotFoundError, FileNotFoundError)
    assert issubclass(ttlesson.SettingsChangedError, FileExistsError)
    (tmp_path / "board.json").write_text("[{")
    with pytest.raises(ValueError, match="board.json"):
        ttlesson.load_storyboard(tmp_path / "board.json")


def test_the_package_is_typed():
    assert (PACKAGE / "py.typed").is_file()


def test_importing_ttlesson_loads_no_public_module_until_asked():
    code = ("import sys, ttlesson\nheavy = [m for m in ('ttlesson.video', 'ttlesson.setup', 'ttlesson.notebook', "
            "'torch', 'diffusers', 'ttnn') if m in sys.modules]\nttlesson.stitch\n"
            "print(heavy, 'ttlesson.video' in sys.modules, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[] True False"


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The ttlesson modules ``name`` imports, at the top or inside functions (not under ``if TYPE_CHECKING``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = {id(node) for block in ast.walk(tree) if isinstance(block, ast.If)
               and "TYPE_CHECKING" in ast.unparse(block.test) for node in ast.walk(block)}
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[:len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for alias in node.names:
                if f"{module}.{alias.name}" in modules:
                    targets.add(f"{module}.{alias.name}")
                elif module in modules:
                    targets.add(module)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                known = [".".join(parts[:n]) for n in range(len(parts), 0, -1) if ".".join(parts[:n]) in modules]
                targets.update(known[:1])
    targets.discard(name)
    return targets


def test_the_import_graph_has_no_cycles():
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    assert "ttlesson.backends.base" in graph["ttlesson.backends.torch"]  # the walk sees relative imports
    cycles, state, stack = [], {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                cycles.append(stack[stack.index(target):] + [target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name)
    assert cycles == [], "import cycles: " + "; ".join(" → ".join(cycle) for cycle in cycles)


# Run in one fresh interpreter: each module imported with every ttlesson module imported before it removed from
# sys.modules (third-party packages stay loaded, as they would be for any first import of that module), so a
# module that only works when another one was imported first still fails, naming itself.
IMPORT_EACH_ALONE = """
import importlib, json, sys
failed = {}
for name in json.loads(sys.argv[1]):
    for loaded in [m for m in sys.modules if m == "ttlesson" or m.startswith("ttlesson.")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except BaseException as err:
        failed[name] = f"{type(err).__name__}: {err}"
print(json.dumps(failed))
"""


@pytest.mark.slow
def test_each_module_imports_on_its_own():
    modules = sorted(_modules())
    proc = subprocess.run([sys.executable, "-c", IMPORT_EACH_ALONE, json.dumps(modules)], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {}
    for module in modules:
        importlib.import_module(module)


def test_literal_types_name_the_same_choices_the_code_checks():
    # the choices render's users pass are each written once, as a Literal the tuple the code checks comes from
    import inspect
    import typing

    from ttlesson import walk
    from ttlesson.backends import BackendName
    from ttlesson.backends.torch import precision as accel
    from ttlesson.machine import environment

    def uses(annotation, literal) -> bool:
        """Whether ``annotation`` is ``literal``, alone or as one member of a union."""
        return annotation == literal or literal in typing.get_args(annotation)

    render = importlib.import_module("ttlesson.render")  # the module: ttlesson.render is the function
    hints, walk_hints = typing.get_type_hints(render.render), typing.get_type_hints(render.WalkSettings)
    for name, literal in (("backend", BackendName), ("precision", accel.Precision), ("easing", walk.Easing),
                          ("seed_mode", walk.SeedMode), ("colour", walk.ColourMatch)):
        assert uses(hints[name], literal), name
        assert inspect.signature(render.render).parameters[name].default in (None, *typing.get_args(literal)), name
    for name, literal in (("easing", walk.Easing), ("seed_mode", walk.SeedMode), ("colour", walk.ColourMatch)):
        assert uses(walk_hints[name], literal), name
    kinds = {environment.SOURCE_BUILD, environment.INSTALLER, environment.CLOUD, environment.OTHER}
    assert set(typing.get_args(typing.get_type_hints(environment.PythonEnvironment)["kind"])) == kinds


def test_results_present_themselves_one_way(tmp_path):
    from ttlesson.presenting import Presentable

    for result in (ttlesson.RenderResult, ttlesson.VideoInfo, ttlesson.FrameOrigins, ttlesson.HardwareReport):
        assert issubclass(result, Presentable), result
    origins = ttlesson.FrameOrigins(tmp_path, {0: ("torch", "cpu")}, frame_count=2)
    assert str(origins).startswith(f"{tmp_path}") and "1 not made yet" in str(origins)
    assert json.loads(origins.to_json()) == {"out_dir": str(tmp_path), "frames": {"0": ["torch", "cpu"]},
                                             "frame_count": 2, "damaged": [], "problem": None}
    assert "<li>" in origins._repr_html_()


# Methods named like a second way to present a result, and why each is not one: (module, class, method).
NOT_A_SECOND_WAY = {
    ("ttlesson.offline.scenes", "_Pen", "line"): "draws a line on a scene",
    ("ttlesson.serve.actor", "FrameMaker", "describe"): "the actor's info dict for the service: Ray calls methods only",
}
SECOND_WAYS = {"describe", "describe_text", "summary", "line", "lines"}


def _methods(name: str) -> set[tuple[str, str, str, str]]:
    """(module, class, method, return annotation) for each method called ``name`` in the package's classes."""
    return {(module, node.name, method.name, ast.unparse(method.returns) if method.returns else "")
            for module, path in _modules().items() for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
            if isinstance(node, ast.ClassDef)
            for method in node.body if isinstance(method, ast.FunctionDef | ast.AsyncFunctionDef)
            and method.name == name}


def test_results_have_no_second_way_to_present_themselves():
    second_ways = set().union(*(_methods(name) for name in SECOND_WAYS))
    assert {method[:3] for method in second_ways} == NOT_A_SECOND_WAY.keys()
    assert {(module, cls, returns) for module, cls, _, returns in _methods("to_json") if returns != "str"} == set()
    assert {(module, cls, returns) for module, cls, _, returns in _methods("to_dict") if returns != "dict"} == set()

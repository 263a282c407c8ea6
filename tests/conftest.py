"""Shared fixtures. Tests run the real components: the diffusers pipeline on the offline tiny model, and ffmpeg."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

BROWSER_TESTS = Path(__file__).parent / "browser"

# A run started in the background (nohup, "&" in a script) inherits Ctrl-C ignored, and so would every ttlesson
# process the tests start: the tests of what Ctrl-C does need it as a terminal delivers it.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def _runs_notebooks(path: Path) -> bool:
    return path.suffix == ".ipynb" or BROWSER_TESTS in path.parents


# Files that take minutes of wall time but little CPU (clusters and services starting, processes waited for):
# handed out right after the notebooks, so the waiting overlaps the other workers' work instead of ending the run.
LONG_WAITS = ("test_serve.py", "test_tt_topologies.py", "test_room.py")


def pytest_collection_modifyitems(config, items):
    """The notebooks first: nbval's executions, then the browser tests' runs of the same notebooks in JupyterLab,
    which reuse what nbval saved in the shared cache (``TTLESSON_CACHE``: the tiny model, step 8's scaling
    measurement); then the files that mostly wait (``LONG_WAITS``); then the rest."""
    def rank(item) -> int:
        if item.path.suffix == ".ipynb":
            return 0
        if _runs_notebooks(item.path):
            return 1
        return 2 if item.path.name in LONG_WAITS else 3

    items.sort(key=rank)


try:
    from xdist.scheduler import LoadFileScheduling
except ImportError:  # pytest-xdist is optional: without it the suite runs in one process, in the same order
    pass
else:
    class _ByFileNotebooksTogether(LoadFileScheduling):
        """``--dist loadfile``, except that every notebook and the browser tests are one unit: one worker runs
        them in collection order (nbval's, then the browser's). Each other test file is one unit, so a module's
        fixtures are made once; the units share the workers as they free up."""

        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return "notebooks" if path.endswith(".ipynb") or path.startswith("tests/browser/") else path

    def pytest_xdist_make_scheduler(config, log):
        if config.getvalue("dist") == "loadfile":
            return _ByFileNotebooksTogether(config, log)
        return None


@pytest.fixture(autouse=True)
def count_interpreters(request, monkeypatch):
    """Count the Python interpreters (``ttlesson``, ``python``) each test starts, for the durations report
    (``tools/test_durations.py``): a fresh interpreter that imports torch costs seconds."""
    started = []
    real_init = subprocess.Popen.__init__

    def counting_init(self, args, *more, **kwargs):
        program = args if isinstance(args, (str, bytes, os.PathLike)) else (args[0] if args else "")
        if Path(os.fsdecode(program).split()[0] if program else "").name.startswith(("python", "ttlesson")):
            started.append(program)
        real_init(self, args, *more, **kwargs)

    monkeypatch.setattr(subprocess.Popen, "__init__", counting_init)
    yield
    request.node.user_properties.append(("interpreters", len(started)))


@pytest.fixture(scope="session", autouse=True)
def isolated_caches(tmp_path_factory):
    """One tiny model for the whole session, kept away from the user's own caches (TTLESSON_CACHE, unless the
    caller set one to reuse); a Hugging Face home of its own, so no test sees the user's token or models."""
    # huggingface_hub reads HF_HOME once, when imported: it must not have been imported while collecting tests.
    assert "huggingface_hub.constants" not in sys.modules, "a test module imports huggingface_hub at import time"
    patch = pytest.MonkeyPatch()
    if not os.environ.get("TTLESSON_CACHE"):
        patch.setenv("TTLESSON_CACHE", str(tmp_path_factory.mktemp("ttlesson-cache")))
    patch.setenv("HF_HOME", str(tmp_path_factory.mktemp("ttlesson-hf")))
    patch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    yield
    patch.undo()


@pytest.fixture(scope="session")
def tiny_folder() -> Path:
    from ttlesson.models import tiny

    return tiny.tiny_model_folder()


@pytest.fixture(scope="session")
def tiny_random_folder() -> Path:
    from ttlesson.models import tiny

    return tiny.tiny_model_folder("tiny-random")


@pytest.fixture(scope="session")
def tiny_backend(tiny_folder):
    """One loaded torch backend on the tiny model, shared by the tests that only need frames made."""
    from ttlesson import models
    from ttlesson.backends.torch import TorchBackend

    backend = TorchBackend(models.resolve("tiny"), device="cpu")
    backend.load()
    yield backend
    backend.close()


@pytest.fixture(scope="session")
def rendered(tmp_path_factory, tiny_backend):
    """The World's Fair storyboard rendered once with the tiny model (4 steps), with its progress events."""
    from ttlesson.render import render

    events = []
    out = tmp_path_factory.mktemp("rendered")
    result = render("worlds-fair", out, model="tiny", backend=tiny_backend, steps=4, on_event=events.append)
    return result, events

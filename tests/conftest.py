"""Shared fixtures. Tests run the real components: the diffusers pipeline on the offline tiny model, and ffmpeg."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

# One tiny model for the whole session, kept away from the user's own caches; no Hugging Face network calls.
os.environ.setdefault("TTLESSON_CACHE", tempfile.mkdtemp(prefix="ttlesson-cache-"))
os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="ttlesson-hf-")
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"

TTLESSON = str(Path(sys.executable).with_name("ttlesson"))


def run_cli(*args: str, env: dict | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run the installed ``ttlesson`` console script, as a user would."""
    return subprocess.run([TTLESSON, *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="session")
def tiny_folder() -> Path:
    from ttlesson.models import tiny

    return tiny.tiny_model_folder()


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


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    """Assert the CLI failed the way bad input must fail, and return its message."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    return lines[0]

"""Shared fixtures. Tests run the real components: the diffusers pipeline on the offline tiny model, and ffmpeg."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest


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

"""Every environment variable ttlesson reads or sets, named once, each with the one function that parses it.

The values are read when asked (not at import), so a test or a notebook that sets a variable sees it take effect.
Hugging Face's own variables are read as huggingface_hub reads them (``huggingface_hub.constants``).

``__version__``: ttlesson's version as installed, recorded in every manifest and benchmark.
"""

from __future__ import annotations

import os
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

# --- ttlesson's own ------------------------------------------------------------------------------------------
MODEL = "TTLESSON_MODEL"  # the model the notebooks use (ttlesson.notebook.settings)
BACKEND = "TTLESSON_BACKEND"
WORKDIR = "TTLESSON_WORKDIR"
STEPS = "TTLESSON_STEPS"
SIZE = "TTLESSON_SIZE"
CACHE = "TTLESSON_CACHE"  # where ttlesson keeps what it builds (the tiny model, OpenVINO IRs, tt-metal logs)
TT_PARALLEL = "TTLESSON_TT_PARALLEL"  # submesh or processes (ttlesson.backends.tt)
DEBUG = "TTLESSON_DEBUG"  # 1: print the cause (ttnn's, the Hub's own error) under each one-sentence error
SERVER = "TTLESSON_SERVER"  # a render service's URL (ttlesson serve): render and video make frames there
SERVER_TOKEN = "TTLESSON_SERVER_TOKEN"  # its token (the client's, and the service's own when it starts)
SERVER_TOKEN_FILE = "TTLESSON_SERVER_TOKEN_FILE"  # a file holding the token, for the client
ROOM = "TTLESSON_ROOM"  # a workshop's room file: the instructor's settings for every kernel (notebook/room.py)
SERVER_WAIT = "TTLESSON_SERVER_WAIT"  # seconds a client waits for a service that stopped answering (default 600)

DEFAULT_WORKDIR = "~/tt-scratchpad/worldsfair-video"  # the lesson's own folder
STORYBOARD_FILE = "prompts.json"  # the lesson's names for its files in the work folder
VIDEO_FILE = "tenstorrent_worldsfair_1964.mp4"

# --- tt-metal's and ttnn's ----------------------------------------------------------------------------------
TT_METAL_HOME = "TT_METAL_HOME"  # the tt-metal checkout (its models/ package)
TT_METAL_RUNTIME_ROOT = "TT_METAL_RUNTIME_ROOT"  # newer tt-metal: its runtime files (tt_metal/, kernels)
TT_METAL_ARCH_NAME = "TT_METAL_ARCH_NAME"
MOCK_CLUSTER = "TT_METAL_MOCK_CLUSTER_DESC_PATH"  # a cluster descriptor: ttnn answers without a device
VISIBLE_DEVICES = "TT_VISIBLE_DEVICES"  # the PCIe chips a process may open
LOG_FILE = "TT_LOGGER_FILE"  # where tt-metal's C++ logger writes
LOGGER_LEVEL = "TT_LOGGER_LEVEL"
LOGURU_LEVEL = "LOGURU_LEVEL"  # ttnn's Python logger
GRID_OVERRIDE = "TT_METAL_CORE_GRID_OVERRIDE_TODEPRECATE"  # a Galaxy's compute grid, as tt-metal's demo sets it
MM_THROTTLE = "TT_MM_THROTTLE_PERF"  # matmul throttling on Wormhole (di/dt limits), as tt-metal's demo sets it
OPERATION_TIMEOUT = "TT_METAL_OPERATION_TIMEOUT_SECONDS"
TT_METAL_CACHE = "TT_METAL_CACHE"  # tt-metal's kernel cache: one per process that opens a device


def text(name: str) -> str:
    """The variable's value with surrounding spaces removed; "" when unset."""
    return os.environ.get(name, "").strip()


def flag(name: str) -> bool:
    """A yes/no variable, read as huggingface_hub reads its own (1, ON, YES, TRUE, any case)."""
    from huggingface_hub import constants

    return text(name).upper() in constants.ENV_VARS_TRUE_VALUES


def path(name: str) -> Path | None:
    """A folder or file variable, ``~`` expanded; None when unset or blank."""
    value = text(name)
    return Path(value).expanduser() if value else None


def tt_metal_home() -> Path | None:
    return path(TT_METAL_HOME)


def runtime_root() -> Path | None:
    return path(TT_METAL_RUNTIME_ROOT)


def mock_cluster() -> str | None:
    """The mock cluster descriptor ttnn will use, or None for real hardware."""
    return text(MOCK_CLUSTER) or None


def hub_offline() -> bool:
    """``HF_HUB_OFFLINE`` as huggingface_hub read it at import, or as the environment says now."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE) or flag("HF_HUB_OFFLINE")


def debug() -> bool:
    return flag(DEBUG)


def workdir() -> Path:
    """The lesson's work folder: ``TTLESSON_WORKDIR``, else the lesson's own."""
    return Path(text(WORKDIR) or DEFAULT_WORKDIR).expanduser()


def cache_root() -> Path:
    """Where ttlesson keeps what it builds (``$TTLESSON_CACHE``, else ``$XDG_CACHE_HOME/ttlesson``)."""
    own = path(CACHE)
    if own is not None:
        return own
    return (path("XDG_CACHE_HOME") or Path.home() / ".cache") / "ttlesson"


try:
    __version__ = version("ttlesson")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"

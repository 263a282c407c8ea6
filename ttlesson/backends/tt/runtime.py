"""Where the tt backends get ttnn, tt-metal's model packages and the host models (the real ones, or a test's
stand-ins), and where tt-metal's log goes."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ... import env
from ...models import ModelSpec
from ...tenstorrent.checkout import import_sd14, import_sd35
from .chip import load_host_models
from .device import driver_sees_a_chip, import_ttnn

LOG_NAME = "tt-metal.log"


@dataclass(frozen=True)
class Runtime:
    """Where the tt backend gets ttnn, tt-metal's packages and the host models: the real ones, or test stand-ins."""

    ttnn_loader: Callable[[], object] = import_ttnn
    driver_check: Callable[[], bool] = driver_sees_a_chip
    sd14_loader: Callable[[str], object] = import_sd14  # arch → SD14Modules
    sd35_loader: Callable[[], type] = import_sd35
    host_loader: Callable[[ModelSpec], object] = load_host_models


def default_log_file() -> Path:
    """Where tt-metal's log goes when the backend is used outside a render folder."""
    return env.cache_root() / "logs" / f"tt-metal-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"

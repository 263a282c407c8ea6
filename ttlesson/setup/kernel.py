"""``ttlesson kernel install``: a Jupyter kernel for the Python environment this runs in.

The notebooks must run where ttnn lives (tt-metal's ``python_env``, ``~/.tenstorrent-venv``, ``/opt/venv-metal``),
but JupyterLab is often started from somewhere else. Registering this environment as a kernel (with ipykernel's
own ``kernelspec.install``) lets a notebook pick it from the kernel menu. The tt-metal variables set in the shell
that runs the command (``TT_METAL_HOME``, ``TT_METAL_RUNTIME_ROOT``, ``PYTHONPATH``, ``TT_METAL_ARCH_NAME``…) are
written into the kernel's spec, so the kernel has them whichever shell started Jupyter. Tokens (HF_TOKEN) are
never written there.
"""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from .. import env
from ..errors import TTLessonError
from ..presenting import Presentable

CARRIED_VARIABLES = (env.TT_METAL_HOME, env.TT_METAL_RUNTIME_ROOT, "PYTHONPATH", env.TT_METAL_ARCH_NAME, "ARCH_NAME",
                     env.VISIBLE_DEVICES, "HF_HOME", "HF_HUB_CACHE", "HF_HUB_OFFLINE", env.WORKDIR, env.CACHE,
                     env.ROOM, env.SERVER, env.SERVER_TOKEN_FILE)  # the token's file, never the token
SHORT_NAMES = {"tt-metal source build": "python-env", "tt-installer venv": "tenstorrent-venv",
               "cloud image venv": "venv-metal"}


@dataclass(frozen=True)
class InstalledKernel(Presentable):
    name: str
    display_name: str
    folder: Path
    python: str
    env: dict

    def __str__(self) -> str:
        carried = ", ".join(sorted(self.env)) or "none"
        return (f"Jupyter kernel {self.name!r} ({self.display_name}) installed in {self.folder}; it runs "
                f"{self.python} with {carried} from this shell. In JupyterLab: Kernel > Change Kernel > "
                f"{self.display_name}.")


def default_names(prefix: Path | None = None) -> tuple[str, str]:
    """(kernel name, display name) for this environment, e.g. ("ttlesson-python-env", "ttlesson (tt-metal source
    build)")."""
    from ..machine import recognise

    environment = recognise(prefix)
    short = SHORT_NAMES.get(environment.kind) or re.sub(r"[^a-z0-9]+", "-", environment.prefix.name.lower())
    short = short.strip("-")
    return f"ttlesson-{short or 'python'}", f"ttlesson ({environment.kind}: {environment.prefix})"


def install(name: str | None = None, display_name: str | None = None, *, user: bool = True,
            prefix: str | None = None) -> InstalledKernel:
    """Register this Python as a Jupyter kernel (for this user, or under ``prefix``, e.g. ``sys.prefix``)."""
    try:
        from ipykernel import kernelspec
    except ImportError as err:
        raise TTLessonError(f"Registering a Jupyter kernel needs ipykernel, which is not installed in {sys.prefix}; "
                            "pip install ipykernel (or pip install 'ttlesson[notebooks]') there, then run "
                            "ttlesson kernel install again.") from err
    default_name, default_display = default_names()
    name = name or default_name
    if not re.fullmatch(r"[A-Za-z0-9._-]+", name):
        raise TTLessonError(f"Kernel name {name!r} is not usable; use letters, digits, '.', '_' or '-' "
                            f"(e.g. {default_name}).")
    env = {key: os.environ[key] for key in CARRIED_VARIABLES if os.environ.get(key)}
    folder = kernelspec.install(user=user and prefix is None, kernel_name=name, prefix=prefix,
                                display_name=display_name or default_display, env=env)
    spec = json.loads((Path(folder) / "kernel.json").read_text())
    return InstalledKernel(name, spec["display_name"], Path(folder), spec["argv"][0], spec.get("env", {}))

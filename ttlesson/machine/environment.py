"""Which Python environment this is, among the ones the lesson offers on a Tenstorrent machine, and where its
tt-metal is.

* **tt-metal built from source**: the checkout's ``python_env`` (``./create_venv.sh``), ttnn built into it;
  ``TT_METAL_HOME`` names the checkout.
* **the tt-installer environment**: ``~/.tenstorrent-venv`` (tt-smi, tt-flash; the QuietBox 2 images put ttnn
  there too).
* **the cloud image**: ``/opt/venv-metal``.

Newer tt-metal also reads ``TT_METAL_RUNTIME_ROOT`` (where its runtime files are) next to ``TT_METAL_HOME``; a
checkout is found through either, or as the folder holding the active ``python_env``. The tt backend needs a
checkout for tt-metal's model code (``models/``) whichever environment runs it.
"""

from __future__ import annotations

import html
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from .. import env
from ..presenting import Presentable
from .host import HostPaths

SOURCE_BUILD: Final = "tt-metal source build"
INSTALLER: Final = "tt-installer venv"
CLOUD: Final = "cloud image venv"
OTHER: Final = "another Python environment"
IMPORT_SECONDS = 120.0


@dataclass(frozen=True)
class PythonEnvironment(Presentable):
    kind: Literal["tt-metal source build", "tt-installer venv", "cloud image venv", "another Python environment"]
    prefix: Path  # sys.prefix of the Python that runs ttlesson
    python: Path  # sys.executable
    tt_metal_home: Path | None  # TT_METAL_HOME, or the checkout holding the active python_env
    runtime_root: Path | None  # TT_METAL_RUNTIME_ROOT when set

    @property
    def recognised(self) -> bool:
        return self.kind != OTHER

    def __str__(self) -> str:
        runtime = f", TT_METAL_RUNTIME_ROOT={self.runtime_root}" if self.runtime_root else ""
        return f"{self.kind} ({self.prefix}){runtime}"


def recognise(prefix: Path | None = None, host: HostPaths | None = None) -> PythonEnvironment:
    """Which of the lesson's environments ``prefix`` (default: this Python's ``sys.prefix``) is."""
    host = host or HostPaths()
    prefix = Path(prefix or sys.prefix)
    home = _env_path("TT_METAL_HOME")
    runtime = _env_path("TT_METAL_RUNTIME_ROOT")
    python = Path(sys.executable) if prefix == Path(sys.prefix) else prefix / "bin" / "python"
    if prefix.name == "python_env" and ((home and _same(prefix.parent, home)) or (prefix.parent / "tt_metal").is_dir()):
        return PythonEnvironment(SOURCE_BUILD, prefix, python, home or prefix.parent, runtime)
    if _same(prefix, host.home / ".tenstorrent-venv"):
        return PythonEnvironment(INSTALLER, prefix, python, home, runtime)
    if _same(prefix, host.opt / "venv-metal"):
        return PythonEnvironment(CLOUD, prefix, python, home, runtime)
    return PythonEnvironment(OTHER, prefix, python, home, runtime)


def checkout_candidates(environment: PythonEnvironment) -> list[tuple[Path, str]]:
    """Where the tt-metal checkout may be, in the order it is looked for, with how each was found."""
    found = []
    if environment.tt_metal_home:
        found.append((environment.tt_metal_home, env.TT_METAL_HOME if env.tt_metal_home()
                      else "the active python_env's checkout"))
    if environment.runtime_root:
        found.append((environment.runtime_root, env.TT_METAL_RUNTIME_ROOT))
    return found


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name, "").strip()
    return Path(value).expanduser() if value else None


def _same(first: Path, second: Path) -> bool:
    try:
        return first.expanduser().resolve() == second.expanduser().resolve()
    except OSError:
        return False


# --- the notebook kernel ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class KernelReport(Presentable):
    """What a notebook's kernel is, and whether it can import ttnn (Step 1, in notebook 01)."""

    environment: PythonEnvironment
    ttnn_installed: bool
    ttnn_imports: bool | None  # None: not tried
    ttnn_problem: str | None

    @property
    def verdict(self) -> str:
        if self.ttnn_imports:
            return ("This kernel can import ttnn, so the tt backend can run from this notebook on a machine with a "
                    "Tenstorrent card.")
        why = self.ttnn_problem or "ttnn is not installed in this environment"
        return (f"This kernel cannot import ttnn ({why}): frames will be made with torch. To use the Tenstorrent "
                "card, run ttlesson kernel install in the environment that has ttnn (e.g. tt-metal's python_env), "
                "then pick that kernel (Kernel > Change Kernel).")

    def _rows(self) -> list[tuple[str, str]]:
        state = ("imports" if self.ttnn_imports else "installed but does not import" if self.ttnn_installed
                 else "not installed")
        return [("kernel Python", str(self.environment.python)), ("environment", str(self.environment)),
                ("ttnn", state)]

    def __str__(self) -> str:
        return "\n".join([f"{label}: {text}" for label, text in self._rows()] + [self.verdict])

    def _repr_html_(self) -> str:
        rows = "".join(f"<tr><th style='text-align:left'>{html.escape(label)}</th>"
                       f"<td style='text-align:left'>{html.escape(text)}</td></tr>" for label, text in self._rows())
        return f"<table>{rows}</table><p><b>{html.escape(self.verdict)}</b></p>"


def kernel_report(try_import: bool = True, timeout: float = IMPORT_SECONDS) -> KernelReport:
    """This kernel's environment and whether ``import ttnn`` works in it (tried in a child process: importing ttnn
    takes seconds and would stay in the kernel; nothing is opened)."""
    from .ttnn_info import ttnn_install_info

    info = ttnn_install_info()
    environment = recognise()
    if not info.installed or not try_import:
        return KernelReport(environment, info.installed, None if info.installed else False, info.problem)
    try:
        proc = subprocess.run([sys.executable, "-c", "import ttnn"], capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL,
                              env={**os.environ, env.LOGURU_LEVEL: "WARNING", env.LOGGER_LEVEL: "error"})
    except subprocess.TimeoutExpired:
        return KernelReport(environment, True, False, f"import ttnn did not finish within {timeout:g} s")
    if proc.returncode == 0:
        return KernelReport(environment, True, True, None)
    lines = [line.strip() for line in proc.stderr.splitlines() if line.strip()]
    return KernelReport(environment, True, False, lines[-1] if lines else f"exit status {proc.returncode}")

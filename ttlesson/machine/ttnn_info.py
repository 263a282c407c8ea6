"""ttnn as a source: whether it is installed (from its install record, without importing it) and, when asked,
what it sees, from a child process (``ttlesson.machine.ttnn_probe``).

Importing ttnn takes seconds because it imports torch, and on real chips ttnn's count starts UMD's cluster (and
waits for any process holding the chips). So ttnn is asked only for a mock cluster
(``TT_METAL_MOCK_CLUSTER_DESC_PATH``) or when the caller asks; otherwise the report gives its installed version.
The child runs in a scratch folder: looking at the system mesh makes tt-metal write a ``generated/`` folder into
the current one.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path

from .. import env
from ..presenting import Presentable
from ..tenstorrent.arch import Arch
from ..tenstorrent.boards import BOARD_KINDS, CLUSTER_TYPE_BOARDS, Card
from .host import SourceAnswer, chips_text, last_line

TTNN_TIMEOUT = 60.0


@dataclass(frozen=True)
class TtnnInfo(Presentable):
    installed: bool
    version: str | None = None
    location: str | None = None
    asked: bool = False  # the child process ran (import + chip count)
    imports: bool | None = None  # None: not tried
    devices: int | None = None  # chips ttnn sees; 0 for "No chips detected"
    pcie_devices: int | None = None
    cluster_type: str | None = None
    arch: str | None = None
    system_mesh: tuple[int, int] | None = None  # SystemMeshDescriptor().shape(), e.g. (2, 4) on a T3K
    problem: str | None = None
    seconds: float | None = None

    def __str__(self) -> str:
        if not self.installed:
            return "not installed" + (f" ({self.problem})" if self.problem else "")
        version = f"{self.version} " if self.version else ""
        where = f"installed at {self.location}" if self.location else "installed"
        if not self.asked:
            return f"{version}{where}; not asked for chips (ttlesson detect --ttnn asks; it takes seconds)"
        if self.imports is False:
            return f"{version}{where} but does not import: {self.problem}"
        took = f" in {self.seconds:.1f} s" if self.seconds is not None else ""
        if self.problem:
            return f"{version}imports; chip count failed{took}: {self.problem}"
        if not self.devices:
            return f"{version}imports; sees no Tenstorrent device{took}"
        cluster = f", cluster type {self.cluster_type}" if self.cluster_type else ""
        mesh = f", system mesh {self.system_mesh[0]}×{self.system_mesh[1]}" if self.system_mesh else ""
        return f"{version}imports; sees {chips_text(self.devices)} ({self.pcie_devices} on PCIe{cluster}{mesh}){took}"


def ttnn_install_info() -> TtnnInfo:
    """Whether ttnn is installed here, its version and folder, without importing it."""
    try:
        spec = importlib.util.find_spec("ttnn")
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        return TtnnInfo(installed=False)
    if spec.origin is None:  # a folder called ttnn on sys.path, e.g. tt-metal's source tree without its build
        folders = ", ".join(spec.submodule_search_locations or [])
        return TtnnInfo(installed=False, problem=f"{folders} is a ttnn source folder, not a built ttnn")
    try:
        version = metadata.version("ttnn")
    except metadata.PackageNotFoundError:
        version = None
    return TtnnInfo(installed=True, version=version, location=str(Path(spec.origin).parent))


def read_ttnn(ask: bool, mock: str | None, timeout: float = TTNN_TIMEOUT) -> tuple[TtnnInfo, list[Card], SourceAnswer]:
    info = ttnn_install_info()
    if not info.installed:
        return info, [], SourceAnswer("ttnn", False, "not installed" + (f": {info.problem}" if info.problem else ""))
    if not ask:
        return info, [], SourceAnswer("ttnn", False, "not asked (ttlesson detect --ttnn asks; it takes seconds)")
    if mock and not Path(mock).is_file():
        problem = f"{env.MOCK_CLUSTER} names {mock}, which is not a file"
        return replace(info, asked=True, problem=problem), [], SourceAnswer("ttnn", False, problem)
    answer, seconds, why_not = _run_ttnn_probe(timeout)
    if answer is None:
        return replace(info, asked=True, problem=why_not, seconds=seconds), [], SourceAnswer("ttnn", False, why_not)
    info = _ttnn_info_from(info, answer, seconds)
    cards = _cards_from_ttnn(info)
    return info, cards, SourceAnswer("ttnn", info.imports is True and info.problem is None,
                                     str(info) + (f" (mock cluster {mock})" if mock else ""))


def _run_ttnn_probe(timeout: float) -> tuple[dict | None, float, str]:
    """(the probe's answer or None, seconds it took, why there is no answer)."""
    from .ttnn_probe import MARKER

    # The child must import this same ttlesson, even one put on sys.path by hand (a notebook next to a checkout).
    package_parent = str(Path(__file__).resolve().parents[2])
    search_path = os.pathsep.join(filter(None, [package_parent, os.environ.get("PYTHONPATH")]))
    child_env = {**os.environ, "PYTHONPATH": search_path, env.LOGGER_LEVEL: "error", env.LOGURU_LEVEL: "WARNING"}
    if mock := env.mock_cluster():  # the child runs elsewhere: a relative path must still find the descriptor
        child_env[env.MOCK_CLUSTER] = str(Path(mock).resolve())
    started = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix="ttlesson-ttnn-") as scratch:  # tt-metal writes generated/ there
            proc = subprocess.run([sys.executable, "-m", "ttlesson.machine.ttnn_probe"], capture_output=True, text=True,
                                  timeout=timeout, env=child_env, stdin=subprocess.DEVNULL, cwd=scratch)
    except subprocess.TimeoutExpired:
        return None, time.perf_counter() - started, (f"ttnn did not answer within {timeout:g} s; a process may "
                                                     "hold the chips (it waits for them)")
    seconds = time.perf_counter() - started
    line = next((line for line in proc.stdout.splitlines() if line.startswith(MARKER)), None)
    if line is None:
        said = last_line(proc.stderr) or last_line(proc.stdout) or f"exit status {proc.returncode}"
        return None, seconds, f"the ttnn probe failed: {said}"
    try:  # tt-metal's logger writes to the same stdout from its own threads and can land after the answer
        answer, _ = json.JSONDecoder().raw_decode(line[len(MARKER):])
    except ValueError:
        return None, seconds, "the ttnn probe's answer could not be read"
    return answer, seconds, ""



def _ttnn_info_from(info: TtnnInfo, answer: dict, seconds: float) -> TtnnInfo:
    error = answer.get("error")
    if error and "No chips detected" in error:
        return replace(info, asked=True, imports=True, devices=0, pcie_devices=0, seconds=seconds)
    system_mesh = answer.get("system_mesh")
    return replace(info, asked=True, imports=answer["imports"], devices=answer.get("devices"),
                    pcie_devices=answer.get("pcie_devices"), cluster_type=answer.get("cluster_type"),
                    arch=answer.get("arch"), system_mesh=tuple(system_mesh) if system_mesh else None,
                    problem=_ttnn_error_line(error) if error else None, seconds=seconds)


def _ttnn_error_line(error: str) -> str:
    """The line of a TT_FATAL message that says what went wrong (the one after ``info:``), else its first."""
    lines = [line.strip() for line in error.splitlines() if line.strip()]
    if "info:" in lines and lines.index("info:") + 1 < len(lines):
        return lines[lines.index("info:") + 1]
    return lines[0] if lines else error


def _cards_from_ttnn(info: TtnnInfo) -> list[Card]:
    if not info.devices:
        return []
    board = CLUSTER_TYPE_BOARDS.get(info.cluster_type or "")
    kind = BOARD_KINDS.get(board or "")
    seen_as = f"ttnn cluster type {info.cluster_type}" if info.cluster_type else "ttnn"
    if kind is None:
        return [Card("unknown", Arch.parse(info.arch) or "unknown", info.devices, "ttnn", seen_as)]
    assert board is not None  # kind was looked up under it
    if kind.family == "galaxy":
        return [Card(board, kind.arch, info.devices, "ttnn", seen_as)]
    count = math.ceil(info.devices / kind.chips)
    return [Card(board, kind.arch, kind.chips, "ttnn", seen_as) for _ in range(count)]

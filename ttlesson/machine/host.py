"""Where detection reads the host from: ``/sys``, ``/dev``, ``/proc``, ``/opt`` and the home folder, as one value that
tests point at fake trees; and the small shared pieces every source uses."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class HostPaths:
    """The roots detection reads; ``HostPaths()`` is this machine, ``HostPaths.under(folder)`` a fake one."""

    sys: Path = Path("/sys")
    dev: Path = Path("/dev")
    proc: Path = Path("/proc")
    opt: Path = Path("/opt")
    home: Path = field(default_factory=Path.home)

    @classmethod
    def under(cls, root: Path) -> HostPaths:
        return cls(root / "sys", root / "dev", root / "proc", root / "opt", root / "home")

    @property
    def tenstorrent_class(self) -> Path:
        return self.sys / "class" / "tenstorrent"  # tenstorrent!N/tt_card_type, one entry per PCIe chip

    @property
    def device_nodes(self) -> Path:
        return self.dev / "tenstorrent"  # N: what a process (or a container given the devices) can open

    @property
    def driver_version_file(self) -> Path:
        return self.sys / "module" / "tenstorrent" / "version"

    @property
    def driver_proc(self) -> Path:
        return self.proc / "driver" / "tenstorrent"  # N/pids: the processes holding chip N


@dataclass(frozen=True)
class SourceAnswer:
    name: str  # kernel driver, tt-smi, ttnn
    answered: bool  # it was asked and said something, if only "no device"
    summary: str  # what it said, or why it was not asked or did not answer


def read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip() or None
    except OSError:  # missing, unreadable, or a telemetry attribute the driver cannot read right now
        return None


def entry_number(path: Path) -> tuple[int, str]:
    digits = re.sub(r"\D", "", path.name)
    return (int(digits) if digits else -1, path.name)


def first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def chips_text(count: int) -> str:
    return f"{count} chip{'s' if count != 1 else ''}"

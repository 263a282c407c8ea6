"""The kernel driver (tt-kmd): which Tenstorrent chips it lists, which of them this process can reach, its version,
and which processes hold a chip.

* ``/sys/class/tenstorrent/tenstorrent!N/tt_card_type`` (and ``tt_serial``): one entry per chip on PCIe. An n300's
  second chip sits behind the first and has no entry; a p300 has two.
* ``/dev/tenstorrent/N``: the node a process opens. In a container, sysfs shows every card of the host while only
  the devices passed in (``--device /dev/tenstorrent/N``) have a node: only those count.
* ``/sys/module/tenstorrent/version``: the driver's version.
* ``/proc/driver/tenstorrent/N/pids``: the processes that have chip N open (a chip in use cannot be opened again).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import HardwareSourceError
from ..presenting import Presentable
from ..tenstorrent.boards import BOARD_KINDS, Card, ListedChip, group_into_cards, normalise_board
from .host import HostPaths, SourceAnswer, entry_number, read_text

NAME = "kernel driver"


@dataclass(frozen=True)
class Holder(Presentable):
    """A process that has a Tenstorrent chip open."""

    chip: int  # the N of /dev/tenstorrent/N
    pid: int
    command: str  # what /proc/<pid>/cmdline (or comm) says, shortened
    user: str = ""  # the process's owner, where /proc says

    def __str__(self) -> str:
        owner = f"user {self.user}, " if self.user else ""
        return f"/dev/tenstorrent/{self.chip} is held by pid {self.pid} ({owner}{self.command})"


def read_kernel_driver(sysfs_root: str | os.PathLike | None, host: HostPaths | None = None) \
        -> tuple[list[Card], SourceAnswer]:
    """Cards the kernel driver lists. ``sysfs_root``: a saved copy of /sys to read instead (then nothing else of
    this host is looked at); else ``host``'s /sys, keeping only chips that have a node in its /dev."""
    host = host or HostPaths()
    class_dir = _tenstorrent_class_dir(sysfs_root, host)
    entries = sorted(class_dir.glob("tenstorrent!*"), key=entry_number)
    live = sysfs_root is None
    nodes = sorted(host.device_nodes.glob("*"), key=entry_number) if live else []
    unreachable: list[Path] = []
    if live and entries:
        reachable = {entry_number(node)[0] for node in nodes}
        unreachable = [entry for entry in entries if entry_number(entry)[0] not in reachable]
        entries = [entry for entry in entries if entry not in unreachable]
    if entries:
        chips = [ListedChip(normalise_board(read_text(entry / "tt_card_type") or "unknown"),
                            read_text(entry / "tt_serial"), entry.name) for entry in entries]
        cards = group_into_cards(chips, NAME, lambda kind: kind.pcie_chips)
        listed = ", ".join(f"{entry.name}: {chip.board}" for entry, chip in zip(entries, chips))
        return cards, SourceAnswer(NAME, True, f"{class_dir} lists {listed}{_unreachable_note(unreachable, host)}")
    if unreachable:
        return [], SourceAnswer(NAME, True, f"{class_dir} lists {len(unreachable)} chip(s) but {host.device_nodes} "
                                f"has no node for any of them: this container (or user) was not given the devices "
                                "(docker run --device /dev/tenstorrent/N)")
    if nodes:
        cards = [Card("unknown", "unknown", 1, NAME, str(node)) for node in nodes]
        return cards, SourceAnswer(NAME, True, f"{len(nodes)} device nodes in {host.device_nodes} but no "
                                   f"tt_card_type in {class_dir} (an old tt-kmd?)")
    where = f"{class_dir}" + ("" if not live else f" and {host.device_nodes}")
    return [], SourceAnswer(NAME, True, f"no Tenstorrent device in {where}")


def _unreachable_note(unreachable: list[Path], host: HostPaths) -> str:
    if not unreachable:
        return ""
    names = ", ".join(entry.name for entry in unreachable)
    return (f" ({names} also listed, but without a node in {host.device_nodes}: not usable here, as in a container "
            "given only some of the host's devices)")


def _tenstorrent_class_dir(sysfs_root: str | os.PathLike | None, host: HostPaths) -> Path:
    if sysfs_root is None:
        return host.tenstorrent_class
    root = Path(sysfs_root).expanduser()
    if not root.is_dir():
        raise HardwareSourceError(f"--sysfs-root {root} is not a folder; give a copy of /sys (holding "
                                  "class/tenstorrent) or of /sys/class/tenstorrent itself.")
    nested = root / "class" / "tenstorrent"
    return nested if nested.is_dir() else root


def pcie_devices(host: HostPaths | None = None) -> dict[int, int]:
    """{N: chips reached through it} for each /dev/tenstorrent/N of this host (what ``TT_VISIBLE_DEVICES``
    counts): an N300's node reaches its two chips, each of a P300's two nodes one."""
    host = host or HostPaths()
    found = {}
    for node in sorted(host.device_nodes.glob("*"), key=entry_number):
        number = entry_number(node)[0]
        if number < 0:
            continue
        board = normalise_board(read_text(host.tenstorrent_class / f"tenstorrent!{number}" / "tt_card_type") or "")
        kind = BOARD_KINDS.get(board)
        found[number] = kind.chips // kind.pcie_chips if kind else 1
    return found


def driver_version(host: HostPaths | None = None) -> str | None:
    """The loaded tt-kmd's version (``/sys/module/tenstorrent/version``), or None when it is not loaded."""
    return read_text((host or HostPaths()).driver_version_file)


def device_holders(host: HostPaths | None = None, ignore_pid: int | None = None) -> list[Holder]:
    """The processes that hold a Tenstorrent chip open, from ``/proc/driver/tenstorrent/<n>/pids``."""
    host = host or HostPaths()
    ignore_pid = os.getpid() if ignore_pid is None else ignore_pid
    holders = []
    for folder in sorted(host.driver_proc.glob("*"), key=entry_number):
        if not folder.name.isdigit():
            continue
        for pid in sorted({int(found) for found in re.findall(r"\d+", read_text(folder / "pids") or "")}):
            if pid != ignore_pid:
                holders.append(Holder(int(folder.name), pid, _command(host, pid), _owner(host, pid)))
    return holders


def _owner(host: HostPaths, pid: int) -> str:
    """The name of the user who runs ``pid`` (its real uid in /proc/<pid>/status), or "" if it cannot be read."""
    status = read_text(host.proc / str(pid) / "status") or ""
    found = re.search(r"^Uid:\s+(\d+)", status, re.MULTILINE)
    if not found:
        return ""
    import pwd

    try:
        return pwd.getpwuid(int(found.group(1))).pw_name
    except KeyError:
        return f"uid {found.group(1)}"


def _command(host: HostPaths, pid: int) -> str:
    raw = read_text(host.proc / str(pid) / "cmdline")
    command = " ".join(part for part in (raw or "").split("\0") if part) or read_text(host.proc / str(pid) / "comm")
    if not command:
        return "exited, or not visible from here"
    return command if len(command) <= 80 else command[:77] + "..."

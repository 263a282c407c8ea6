"""What this machine can make frames on: Tenstorrent cards, ttnn, NVIDIA GPUs and the CPU, found without opening
a device, and which backend ``auto`` picks because of it.

Tenstorrent cards come from three sources. Each is optional and fails soft; the report names which answered:

* the kernel driver (tt-kmd): ``/sys/class/tenstorrent/tenstorrent!N/tt_card_type`` and ``/dev/tenstorrent/N``,
  one entry per chip on PCIe. An n300's second chip sits behind the first and has no entry; a p300 has two.
* ``tt-smi -s``: JSON with one ``device_info`` entry per chip. Wormhole entries end in " L" (on PCIe) or " R"
  (reached over ethernet), so an n300 is two entries and one card.
* ttnn's own count, in a child process (``ttlesson._ttnn_probe``). Importing ttnn takes seconds because it
  imports torch, and on real chips ttnn's count starts UMD's cluster (and waits for any process holding the
  chips). So ttnn is asked only for a mock cluster (``TT_METAL_MOCK_CLUSTER_DESC_PATH``) or when the caller
  passes ``ttnn=True``; otherwise the report gives its installed version only.

NVIDIA GPUs come from torch only when torch is already imported; otherwise from the NVIDIA driver's
``/proc/driver/nvidia/gpus`` or ``nvidia-smi -L``, so detection stays fast where torch is slow to import.
"""

from __future__ import annotations

import html
import importlib.util
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from importlib import metadata
from pathlib import Path

from .errors import FrameVerificationError, HardwareSourceError

MOCK_CLUSTER_ENV = "TT_METAL_MOCK_CLUSTER_DESC_PATH"
TT_SMI_TIMEOUT = 20.0
TTNN_TIMEOUT = 60.0


# --- boards ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class BoardKind:
    family: str  # n150, n300, p100, p150, p300, galaxy
    arch: str  # wormhole or blackhole
    chips: int  # chips on one card
    pcie_chips: int  # of those, how many the kernel driver lists (the rest are reached over ethernet)


_WORMHOLE, _BLACKHOLE = "wormhole", "blackhole"
_N150 = BoardKind("n150", _WORMHOLE, 1, 1)
_N300 = BoardKind("n300", _WORMHOLE, 2, 1)
_P100 = BoardKind("p100", _BLACKHOLE, 1, 1)
_P150 = BoardKind("p150", _BLACKHOLE, 1, 1)
_P300 = BoardKind("p300", _BLACKHOLE, 2, 2)

# Keyed by the names the kernel driver writes to tt_card_type; mock descriptors and ttnn use the bare family.
BOARD_KINDS: dict[str, BoardKind] = {
    "n150": _N150, "n300": _N300,
    "galaxy-wormhole": BoardKind("galaxy", _WORMHOLE, 32, 32),
    "p100": _P100, "p100a": _P100,
    "p150": _P150, "p150a": _P150, "p150b": _P150, "p150c": _P150,
    "p300": _P300, "p300a": _P300, "p300b": _P300, "p300c": _P300,
    "galaxy-blackhole": BoardKind("galaxy", _BLACKHOLE, 32, 32),
}
# Other spellings of the same boards: tt-smi's names, and generic ones.
_BOARD_ALIASES = {
    "tt-galaxy-wh": "galaxy-wormhole", "wh_4u": "galaxy-wormhole", "galaxy": "galaxy-wormhole",
    "tt-galaxy-bh": "galaxy-blackhole", "bh-scrappy": "p100",
}

# MESH_DEVICE names that tt-metal's demos understand, by (family, number of cards).
_MESH_NAMES = {
    ("n150", 1): "N150", ("n150", 4): "N150x4", ("n300", 1): "N300", ("n300", 4): "T3K",
    ("p100", 1): "P100", ("p150", 1): "P150", ("p150", 4): "P150x4", ("p150", 8): "P150x8", ("p300", 1): "P300",
    ("p300", 2): "P300x2",
}
_GALAXY_MESH_NAMES = {_WORMHOLE: "TG", _BLACKHOLE: "BHGLX"}

# ttnn's ClusterType names → the board a cluster of that type is made of.
_CLUSTER_TYPE_BOARDS = {
    "N150": "n150", "N300": "n300", "N300_2x2": "n300", "T3K": "n300", "GALAXY": "galaxy-wormhole",
    "TG": "galaxy-wormhole", "P100": "p100", "P150": "p150", "P150_X2": "p150", "P150_X4": "p150",
    "P150_X8": "p150", "P300": "p300", "P300_X2": "p300", "BLACKHOLE_GALAXY": "galaxy-blackhole",
}


def normalise_board(text: str) -> str:
    """A board name as the kernel driver writes it: ``"n300 L"`` → ``n300``, ``tt-galaxy-wh`` → ``galaxy-wormhole``."""
    name = text.strip().lower()
    name = re.sub(r"\s+[lr]$", "", name)  # tt-smi's local/remote chip suffix on Wormhole
    return _BOARD_ALIASES.get(name, name)


@dataclass(frozen=True)
class Card:
    board: str  # normalised board name (n300, p150a, p300c, galaxy-wormhole…), or what the source said
    arch: str  # wormhole, blackhole or unknown
    chips: int
    source: str  # kernel driver, tt-smi or ttnn
    seen_as: str = ""  # device nodes, bus ids or board id, for telling cards apart

    @property
    def family(self) -> str:
        kind = BOARD_KINDS.get(self.board)
        return kind.family if kind else self.board

    def describe(self) -> str:
        chips = f"{self.chips} chip{'s' if self.chips != 1 else ''}"
        where = f", {self.seen_as}" if self.seen_as else ""
        return f"{self.board} ({chips}, {self.arch}{where})"


@dataclass(frozen=True)
class _Chip:
    """One chip as a source listed it, before chips are grouped into cards."""

    board: str
    board_id: str | None  # chips of one card share it, when the source gives it
    seen_as: str


def group_into_cards(chips: list[_Chip], source: str, per_card: Callable[[BoardKind], int]) -> list[Card]:
    """Cards from chips: by shared board id where every chip has one, else in runs of ``per_card(kind)`` chips.

    A galaxy's chips make one card. Boards this table does not know become one card per chip.
    """
    cards: list[Card] = []
    for board in dict.fromkeys(chip.board for chip in chips):
        mine = [chip for chip in chips if chip.board == board]
        kind = BOARD_KINDS.get(board)
        if kind is None:
            cards += [Card(board, "unknown", 1, source, chip.seen_as) for chip in mine]
        elif kind.family == "galaxy":
            cards.append(Card(board, kind.arch, len(mine), source, f"{len(mine)} chips listed"))
        else:
            cards += [Card(board, kind.arch, kind.chips, source, _seen_as(group))
                      for group in _card_groups(mine, per_card(kind))]
    return cards


def _card_groups(chips: list[_Chip], size: int) -> list[list[_Chip]]:
    if all(chip.board_id for chip in chips):
        by_id: dict[str, list[_Chip]] = {}
        for chip in chips:
            by_id.setdefault(chip.board_id, []).append(chip)
        return list(by_id.values())
    return [chips[start:start + size] for start in range(0, len(chips), size)]


def _seen_as(group: list[_Chip]) -> str:
    return ", ".join(chip.seen_as for chip in group if chip.seen_as)


# --- the report --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SourceAnswer:
    name: str  # kernel driver, tt-smi, ttnn
    answered: bool  # it was asked and said something, if only "no device"
    summary: str  # what it said, or why it was not asked or did not answer


@dataclass(frozen=True)
class TtnnInfo:
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

    def describe(self) -> str:
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
        return f"{version}imports; sees {_chips(self.devices)} ({self.pcie_devices} on PCIe{cluster}{mesh}){took}"


@dataclass(frozen=True)
class TorchInfo:
    installed: bool
    version: str | None = None
    cuda: str | None = None  # the CUDA version the build targets; None for a CPU-only build


@dataclass(frozen=True)
class CpuInfo:
    model: str
    cores: int
    usable_cores: int
    bf16_flags: tuple[str, ...]

    @property
    def bf16(self) -> bool:
        return bool(self.bf16_flags)

    def describe(self) -> str:
        usable = f" ({self.usable_cores} usable)" if self.usable_cores != self.cores else ""
        bf16 = f"yes ({', '.join(self.bf16_flags)})" if self.bf16 else "no"
        return f"{self.model}, {self.cores} cores{usable}, bf16: {bf16}"


@dataclass(frozen=True)
class AutoChoice:
    backend: str  # tt or torch
    device: str  # Tenstorrent, cuda (NVIDIA …) or cpu
    why: str  # one sentence a learner reads


@dataclass
class HardwareReport:
    cards: list[Card]
    sources: list[SourceAnswer]
    ttnn: TtnnInfo
    gpus: list[str]
    gpu_source: str
    torch: TorchInfo
    cpu: CpuInfo
    mock_cluster: str | None = None
    disagreement: str | None = None  # sources that counted different chips
    seconds: float = 0.0
    tt_metal: object = None  # tt_versions.CheckoutInfo: the checkout the tt backend imports model code from
    auto: AutoChoice = field(init=False)

    def __post_init__(self):
        self.auto = choose_backend(self)

    @property
    def tt_device(self) -> bool:
        """A real Tenstorrent chip is here (a mock cluster does not count: it cannot run anything)."""
        return any(card.source != "ttnn" or not self.mock_cluster for card in self.cards)

    @property
    def total_chips(self) -> int:
        return sum(card.chips for card in self.cards)

    @property
    def arch(self) -> str | None:
        arches = {card.arch for card in self.cards}
        return arches.pop() if len(arches) == 1 else ("mixed" if arches else None)

    @property
    def needs_blackhole_env(self) -> bool:
        """tt-metal needs ``TT_METAL_ARCH_NAME=blackhole`` on Blackhole."""
        return any(card.arch == _BLACKHOLE for card in self.cards)

    @property
    def mesh_device(self) -> str | None:
        return mesh_device_for(self.cards)[0]

    @property
    def mesh_device_note(self) -> str:
        return mesh_device_for(self.cards)[1]

    @property
    def versions_note(self) -> str | None:
        """A sentence when the ttnn that imports and the tt-metal checkout come from different releases."""
        from .tt_versions import mismatch

        return mismatch(self.ttnn.version, self.ttnn.location, self.tt_metal) if self.ttnn.installed else None

    @property
    def tt_system(self):
        """The Tenstorrent system as the tt backend plans for it (``backends.tt_plan.TTSystem``), or None."""
        return tt_system_for(self.cards, self.ttnn)

    @property
    def tt_models(self) -> list:
        """For each model the tt backend runs: supported here or not, the mesh it would open, and why."""
        from .backends.tt_plan import verdicts

        return verdicts(self.tt_system)

    def to_dict(self) -> dict:
        return {
            "tenstorrent": {
                "device": self.tt_device,
                "cards": [asdict(card) | {"family": card.family} for card in self.cards],
                "total_chips": self.total_chips,
                "arch": self.arch,
                "mesh_device": self.mesh_device,
                "mesh_device_note": self.mesh_device_note,
                "needs_tt_metal_arch_name_blackhole": self.needs_blackhole_env,
                "mock_cluster": self.mock_cluster,
                "disagreement": self.disagreement,
            },
            "tt_backend": self._tt_backend_dict(),
            "ttnn": asdict(self.ttnn),
            "tt_metal": self.tt_metal.to_dict() if self.tt_metal else None,
            "versions_note": self.versions_note,
            "gpus": {"names": self.gpus, "source": self.gpu_source},
            "torch": asdict(self.torch),
            "cpu": asdict(self.cpu) | {"bf16": self.cpu.bf16},
            "sources": [asdict(source) for source in self.sources],
            "auto": asdict(self.auto),
            "seconds": round(self.seconds, 3),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def rows(self) -> list[tuple[str, str]]:
        """(label, text) pairs: the report as the text and HTML forms show it."""
        return [
            ("Tenstorrent", self._tenstorrent_summary()),
            *[("  card", card.describe()) for card in self.cards],
            ("MESH_DEVICE", self.mesh_device or f"none ({self.mesh_device_note})"),
            ("TT_METAL_ARCH_NAME", self._arch_env_text()),
            *[(f"tt backend, {verdict.model}", verdict.describe()) for verdict in self.tt_models if self.cards],
            ("ttnn", self.ttnn.describe()),
            ("tt-metal", self.tt_metal.describe_text() if self.tt_metal else "no checkout (TT_METAL_HOME unset)"),
            ("NVIDIA GPUs", ", ".join(self.gpus) + f" (from {self.gpu_source})" if self.gpus
             else f"none ({self.gpu_source})"),
            ("torch", _torch_text(self.torch)),
            ("CPU", self.cpu.describe()),
            *[(f"source: {source.name}", source.summary) for source in self.sources],
            ("auto backend", f"{self.auto.backend} on {self.auto.device}"),
        ]

    def __str__(self) -> str:
        width = max(len(label) for label, _ in self.rows()) + 2
        lines = [f"{label + ':':<{width}}{text}" for label, text in self.rows()]
        lines += [f"Note: {note}" for note in (self.disagreement, self.versions_note) if note]
        return "\n".join(lines + [self.auto.why])

    def _repr_html_(self) -> str:
        body = "".join(f"<tr><th style='text-align:left'>{html.escape(label)}</th>"
                       f"<td style='text-align:left'>{html.escape(text)}</td></tr>" for label, text in self.rows())
        note = "".join(f"<p>Note: {html.escape(text)}</p>" for text in (self.disagreement, self.versions_note) if text)
        return f"<table>{body}</table>{note}<p><b>{html.escape(self.auto.why)}</b></p>"

    def _tt_backend_dict(self) -> dict:
        system = self.tt_system
        return {
            "system": None if system is None else {"name": system.name, "arch": system.arch, "chips": system.chips,
                                                   "shape": list(system.shape)},
            "models": [verdict.to_dict() for verdict in self.tt_models],
        }

    def _tenstorrent_summary(self) -> str:
        if not self.cards:
            return "no Tenstorrent device"
        mock = f" (mock cluster {self.mock_cluster}: nothing can run on it)" if not self.tt_device else ""
        count = len(self.cards)
        return f"{count} card{'s' if count != 1 else ''}, {_chips(self.total_chips)}, {self.arch}{mock}"

    def _arch_env_text(self) -> str:
        current = os.environ.get("TT_METAL_ARCH_NAME")
        now = f" (now {current!r})" if current else " (now unset)"
        if self.needs_blackhole_env:
            return f"needed: export TT_METAL_ARCH_NAME=blackhole{now}"
        return f"not needed{now}"


def _chips(count: int) -> str:
    return f"{count} chip{'s' if count != 1 else ''}"


def _torch_text(torch: TorchInfo) -> str:
    if not torch.installed:
        return "not installed (pip install torch)"
    return f"{torch.version} ({f'CUDA {torch.cuda} build' if torch.cuda else 'CPU-only build'})"


def mesh_device_for(cards: list[Card]) -> tuple[str | None, str]:
    """(MESH_DEVICE name tt-metal's demos use for these cards, or None; a few words on why)."""
    if not cards:
        return None, "no Tenstorrent card"
    families = sorted({card.family for card in cards})
    if len(families) > 1:
        return None, f"mixed boards ({', '.join(families)}): choose the cards to use with TT_VISIBLE_DEVICES"
    family, count = families[0], len(cards)
    name = _GALAXY_MESH_NAMES.get(cards[0].arch) if family == "galaxy" else _MESH_NAMES.get((family, count))
    if name:
        return name, f"{count} {family} card{'s' if count != 1 else ''}"
    return None, (f"tt-metal's demos have no MESH_DEVICE preset for {count} {family} cards; "
                  f"use one card ({_MESH_NAMES.get((family, 1), family.upper())}) with TT_VISIBLE_DEVICES")


def tt_system_for(cards: list[Card], ttnn: TtnnInfo):
    """The system the tt backend would plan for: ttnn's own answer when it was asked, else what the cards imply."""
    from .backends.tt_plan import BLACKHOLE, SYSTEM_SHAPES, WORMHOLE, TTSystem

    if not cards:
        return None
    total = sum(card.chips for card in cards)
    mesh, _ = mesh_device_for(cards)
    if ttnn.system_mesh and ttnn.devices:
        arch = BLACKHOLE if "blackhole" in (ttnn.arch or "").lower() else WORMHOLE
        return TTSystem(arch, ttnn.devices, tuple(ttnn.system_mesh), mesh or "")
    if mesh in SYSTEM_SHAPES:
        arch, shape = SYSTEM_SHAPES[mesh]
        return TTSystem(arch, total, shape, mesh)
    arches = {card.arch for card in cards}
    if len(arches) != 1 or arches.pop() not in (_WORMHOLE, _BLACKHOLE):
        return None
    arch = BLACKHOLE if cards[0].arch == _BLACKHOLE else WORMHOLE
    return TTSystem(arch, total, (1, total))  # no preset name: ttnn decides the real shape when it opens


def choose_backend(report: HardwareReport) -> AutoChoice:
    """The backend ``auto`` picks, and one honest sentence saying where frames will be made."""
    if report.tt_device and report.ttnn.installed and report.ttnn.imports is not False:
        mesh = f", MESH_DEVICE={report.mesh_device}" if report.mesh_device else ""
        return AutoChoice("tt", "Tenstorrent", f"Frames will be made on Tenstorrent hardware ({len(report.cards)} "
                          f"card{'s' if len(report.cards) != 1 else ''}, {_chips(report.total_chips)}{mesh}) "
                          "through ttnn.")
    where, device = _torch_target(report)
    if report.tt_device:
        missing = "does not import" if report.ttnn.imports is False else "is not installed"
        lead = f"A Tenstorrent card is here but ttnn {missing} (see ttlesson doctor)"
    elif report.mock_cluster:
        lead = "No Tenstorrent device, only a mock cluster that runs nothing"
    else:
        lead = "No Tenstorrent device"
    return AutoChoice("torch", device, f"{lead}: frames will be made on {where}, not TT hardware.")


def _torch_target(report: HardwareReport) -> tuple[str, str]:
    """(where frames go, in words; the device name) for the torch backend."""
    if not report.torch.installed:
        return "the CPU once torch is installed (pip install torch)", "cpu"
    if report.gpus and report.torch.cuda:
        return f"the {report.gpus[0]} GPU (CUDA)", f"cuda ({report.gpus[0]})"
    if report.gpus:
        return f"the CPU (this torch build has no CUDA, so the {report.gpus[0]} is unused)", "cpu"
    return "the CPU", "cpu"


def device_notice(device: str | None) -> str | None:
    """The sentence a render shows when its frames are not being made on Tenstorrent hardware, else None.

    ``device`` is a backend's ``device`` text (``cpu``, ``cuda:0 (NVIDIA H100)``).
    """
    if not device or _is_tt_device(device):
        return None
    where = "the CPU" if device.startswith("cpu") else device
    return f"Frames are being made on {where}, not Tenstorrent hardware."


def _is_tt_device(device: str) -> bool:
    return device.lower().startswith(("tt", "tenstorrent"))


# --- detection ---------------------------------------------------------------------------------------------

def detect(sysfs_root: str | os.PathLike | None = None, tt_smi_snapshot: str | os.PathLike | None = None, *,
           ttnn: bool | None = None, tt_smi_timeout: float = TT_SMI_TIMEOUT,
           ttnn_timeout: float = TTNN_TIMEOUT) -> HardwareReport:
    """Look at this machine (or at saved sources) and say what frames can be made on; never opens a device.

    ``sysfs_root``: a folder standing for ``/sys`` (holding ``class/tenstorrent``), or the ``tenstorrent`` class
    folder itself. ``tt_smi_snapshot``: a saved ``tt-smi -s`` output. When either is given, the live sources
    (``/dev/tenstorrent``, running tt-smi) are left out, so the report describes only what was given.
    ``ttnn``: ``True`` asks ttnn how many chips it sees (seconds; on real chips it starts UMD's cluster),
    ``False`` never does, ``None`` asks only when ``TT_METAL_MOCK_CLUSTER_DESC_PATH`` names a mock cluster.
    """
    started = time.perf_counter()
    saved = sysfs_root is not None or tt_smi_snapshot is not None
    mock = os.environ.get(MOCK_CLUSTER_ENV) or None

    driver_cards, driver_answer = read_kernel_driver(sysfs_root)
    smi_cards, smi_answer = read_tt_smi(tt_smi_snapshot, live=not saved, timeout=tt_smi_timeout)
    ask_ttnn = ttnn if ttnn is not None else (mock is not None and not saved)
    ttnn_info, ttnn_cards, ttnn_answer = read_ttnn(ask_ttnn, mock, ttnn_timeout)

    by_source = [("tt-smi", smi_cards), ("kernel driver", driver_cards), ("ttnn", ttnn_cards)]
    cards = next((found for _, found in by_source if found), [])
    gpus, gpu_source = find_nvidia_gpus()
    from .tt_versions import checkout_info

    return HardwareReport(cards=cards, sources=[driver_answer, smi_answer, ttnn_answer], ttnn=ttnn_info,
                          gpus=gpus, gpu_source=gpu_source, torch=torch_info(), cpu=cpu_info(),
                          mock_cluster=mock if ttnn_cards else None, disagreement=_disagreement(by_source, ttnn_info),
                          seconds=time.perf_counter() - started, tt_metal=checkout_info())


def _disagreement(by_source: list[tuple[str, list[Card]]], ttnn: TtnnInfo) -> str | None:
    counts = {name: sum(card.chips for card in found) for name, found in by_source if found}
    if ttnn.asked and ttnn.devices is not None and "ttnn" not in counts:
        counts["ttnn"] = ttnn.devices
    if len(set(counts.values())) <= 1:
        return None
    said = ", ".join(f"{name} {_chips(count)}" for name, count in counts.items())
    return f"the sources count different chips ({said}); a chip may be in a bad state: try tt-smi -r."


def auto_backend() -> str:
    """The backend ``auto`` stands for, from the kernel driver and ttnn's install alone (milliseconds).

    ``tt`` when the kernel driver lists a Tenstorrent chip and ttnn is installed, else ``torch``.
    """
    cards, _ = read_kernel_driver(None)
    return "tt" if cards and ttnn_install_info().installed else "torch"


# kernel driver

def read_kernel_driver(sysfs_root: str | os.PathLike | None) -> tuple[list[Card], SourceAnswer]:
    name = "kernel driver"
    class_dir = _tenstorrent_class_dir(sysfs_root)
    entries = sorted(class_dir.glob("tenstorrent!*"), key=_entry_number)
    nodes = sorted(Path("/dev/tenstorrent").glob("*"), key=_entry_number) if sysfs_root is None else []
    if entries:
        chips = [_Chip(normalise_board(_read_text(entry / "tt_card_type") or "unknown"),
                       _read_text(entry / "tt_serial"), entry.name) for entry in entries]
        cards = group_into_cards(chips, name, lambda kind: kind.pcie_chips)
        listed = ", ".join(f"{entry.name}: {chip.board}" for entry, chip in zip(entries, chips, strict=True))
        return cards, SourceAnswer(name, True, f"{class_dir} lists {listed}")
    if nodes:
        cards = [Card("unknown", "unknown", 1, name, str(node)) for node in nodes]
        return cards, SourceAnswer(name, True, f"{len(nodes)} device nodes in /dev/tenstorrent but no "
                                   f"tt_card_type in {class_dir} (an old tt-kmd?)")
    where = f"{class_dir}" + ("" if sysfs_root is not None else " and /dev/tenstorrent")
    return [], SourceAnswer(name, True, f"no Tenstorrent device in {where}")


def _tenstorrent_class_dir(sysfs_root: str | os.PathLike | None) -> Path:
    if sysfs_root is None:
        return Path("/sys/class/tenstorrent")
    root = Path(sysfs_root).expanduser()
    if not root.is_dir():
        raise HardwareSourceError(f"--sysfs-root {root} is not a folder; give a copy of /sys (holding "
                                  "class/tenstorrent) or of /sys/class/tenstorrent itself.")
    nested = root / "class" / "tenstorrent"
    return nested if nested.is_dir() else root


def _entry_number(path: Path) -> tuple[int, str]:
    digits = re.sub(r"\D", "", path.name)
    return (int(digits) if digits else -1, path.name)


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip() or None
    except OSError:  # missing, unreadable, or a telemetry attribute the driver cannot read right now
        return None


# tt-smi

def read_tt_smi(snapshot: str | os.PathLike | None, *, live: bool,
                timeout: float = TT_SMI_TIMEOUT) -> tuple[list[Card], SourceAnswer]:
    """Cards from a saved snapshot (errors are the caller's to fix) or from running ``tt-smi -s`` (errors soft)."""
    if snapshot is not None:
        path = Path(snapshot).expanduser()
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError as err:
            raise HardwareSourceError(f"--tt-smi-snapshot {path} cannot be read ({err.strerror or err}); give "
                                      "a file saved with: tt-smi -s > snapshot.json") from None
        chips, about = parse_tt_smi_snapshot(text, str(path))
        return _tt_smi_cards(chips, f"snapshot {path}{about}")
    if not live:
        return [], SourceAnswer("tt-smi", False, "not run: detection was pointed at saved sources")
    text, why_not = _run_tt_smi(timeout)
    if text is None:
        return [], SourceAnswer("tt-smi", False, why_not)
    try:
        chips, about = parse_tt_smi_snapshot(text, "tt-smi -s output")
    except HardwareSourceError as err:
        return [], SourceAnswer("tt-smi", False, str(err))
    return _tt_smi_cards(chips, f"tt-smi -s{about}")


def _tt_smi_cards(chips: list[_Chip], origin: str) -> tuple[list[Card], SourceAnswer]:
    cards = group_into_cards(chips, "tt-smi", lambda kind: kind.chips)
    if not chips:
        return cards, SourceAnswer("tt-smi", True, f"{origin} lists no chips")
    listed = ", ".join(chip.seen_as for chip in chips)
    return cards, SourceAnswer("tt-smi", True, f"{origin} lists {_chips(len(chips))}: {listed}")


def parse_tt_smi_snapshot(text: str, origin: str) -> tuple[list[_Chip], str]:
    """The chips a ``tt-smi -s`` JSON lists, and a few words on the tt-smi that wrote it."""
    fix = "save a snapshot with: tt-smi -s > snapshot.json"
    data = _first_json_object(text)
    if data is None:
        raise HardwareSourceError(f"{origin} is not a tt-smi snapshot (no JSON object in it); {fix}")
    infos = data.get("device_info")
    if not isinstance(infos, list):
        raise HardwareSourceError(f"{origin} has no device_info list, so it is not a tt-smi -s snapshot; {fix}")
    chips = []
    for number, entry in enumerate(infos):
        board_info = entry.get("board_info") if isinstance(entry, dict) else None
        board_type = board_info.get("board_type") if isinstance(board_info, dict) else None
        if not isinstance(board_type, str):
            raise HardwareSourceError(f"{origin}: device_info[{number}] has no board_info.board_type, so its "
                                      f"chip cannot be named; {fix}")
        board_id = _known(board_info.get("board_id"))
        bus = _known(board_info.get("bus_id"))
        chips.append(_Chip(normalise_board(board_type) if _known(board_type) else "unknown", board_id,
                           f"{board_type.strip()}" + (f" at {bus}" if bus else "")))
    versions = data.get("host_sw_vers")
    version = versions.get("tt_smi") if isinstance(versions, dict) else None
    return chips, (f" (tt-smi {version})" if isinstance(version, str) else "")


def _known(value) -> str | None:
    text = str(value).strip() if value is not None else ""
    return text if text and text.upper() != "N/A" else None


def _first_json_object(text: str) -> dict | None:
    """The first JSON object in ``text``: tt-smi may print log lines before it."""
    decoder = json.JSONDecoder()
    for start in (match.start() for match in re.finditer(r"\{", text)):
        try:
            value, _ = decoder.raw_decode(text, start)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _run_tt_smi(timeout: float) -> tuple[str | None, str]:
    """(``tt-smi -s`` stdout, or None; why there is none)."""
    exe = shutil.which("tt-smi")
    if exe is None:
        return None, "not on PATH (pip install tt-smi, or activate the environment that has it)"
    try:
        proc = subprocess.run([exe, "-s"], capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return None, f"tt-smi -s did not answer within {timeout:g} s; a process may hold the device"
    except OSError as err:
        return None, f"{exe} could not be run ({err.strerror or err})"
    if proc.returncode != 0:
        said = _first_line(_ANSI.sub("", proc.stdout + "\n" + proc.stderr)) or "no message"
        return None, f"tt-smi -s exited {proc.returncode}: {said}"
    return proc.stdout, ""


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


# ttnn

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
        problem = f"{MOCK_CLUSTER_ENV} names {mock}, which is not a file"
        return replace(info, asked=True, problem=problem), [], SourceAnswer("ttnn", False, problem)
    answer, seconds, why_not = _run_ttnn_probe(timeout)
    if answer is None:
        return replace(info, asked=True, problem=why_not, seconds=seconds), [], SourceAnswer("ttnn", False, why_not)
    info = _ttnn_info_from(info, answer, seconds)
    cards = _cards_from_ttnn(info)
    return info, cards, SourceAnswer("ttnn", info.imports is True and info.problem is None,
                                     info.describe() + (f" (mock cluster {mock})" if mock else ""))


def _run_ttnn_probe(timeout: float) -> tuple[dict | None, float, str]:
    """(the probe's answer or None, seconds it took, why there is no answer)."""
    from ._ttnn_probe import MARKER

    # The child must import this same ttlesson, even one put on sys.path by hand (a notebook next to a checkout).
    package_parent = str(Path(__file__).resolve().parent.parent)
    search_path = os.pathsep.join(filter(None, [package_parent, os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": search_path, "TT_LOGGER_LEVEL": "error", "LOGURU_LEVEL": "WARNING"}
    started = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-m", "ttlesson._ttnn_probe"], capture_output=True, text=True,
                              timeout=timeout, env=env, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return None, time.perf_counter() - started, (f"ttnn did not answer within {timeout:g} s; a process may "
                                                     "hold the chips (it waits for them)")
    seconds = time.perf_counter() - started
    line = next((line for line in proc.stdout.splitlines() if line.startswith(MARKER)), None)
    if line is None:
        said = _last_line(proc.stderr) or _last_line(proc.stdout) or f"exit status {proc.returncode}"
        return None, seconds, f"the ttnn probe failed: {said}"
    return json.loads(line[len(MARKER):]), seconds, ""


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


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
    board = _CLUSTER_TYPE_BOARDS.get(info.cluster_type or "")
    kind = BOARD_KINDS.get(board or "")
    seen_as = f"ttnn cluster type {info.cluster_type}" if info.cluster_type else "ttnn"
    if kind is None:
        arch = _arch_from_ttnn(info.arch)
        return [Card("unknown", arch, info.devices, "ttnn", seen_as)]
    if kind.family == "galaxy":
        return [Card(board, kind.arch, info.devices, "ttnn", seen_as)]
    count = math.ceil(info.devices / kind.chips)
    return [Card(board, kind.arch, kind.chips, "ttnn", seen_as) for _ in range(count)]


def _arch_from_ttnn(arch: str | None) -> str:
    text = (arch or "").lower()
    return _WORMHOLE if "wormhole" in text else _BLACKHOLE if "blackhole" in text else "unknown"


# NVIDIA, torch, CPU

def find_nvidia_gpus() -> tuple[list[str], str]:
    """(GPU names, where they were read from), without importing torch unless it is imported already."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())], "torch"
    names = [model for path in sorted(Path("/proc/driver/nvidia/gpus").glob("*/information"))
             if (model := _field(_read_text(path) or "", "Model"))]
    if names:
        return names, "the NVIDIA driver (/proc/driver/nvidia)"
    return _nvidia_smi_names()


def _nvidia_smi_names() -> tuple[list[str], str]:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return [], "no NVIDIA driver, no nvidia-smi"
    try:
        proc = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=10, stdin=subprocess.DEVNULL)
    except (subprocess.TimeoutExpired, OSError):
        return [], "nvidia-smi -L did not answer"
    names = re.findall(r"^GPU \d+: (.+?)(?: \(UUID:.*)?$", proc.stdout, flags=re.MULTILINE)
    return names, "nvidia-smi -L" if names else "nvidia-smi -L lists no GPU"


def torch_info() -> TorchInfo:
    """torch's version and CUDA build, read from its files without importing it."""
    try:
        version = metadata.version("torch")
    except metadata.PackageNotFoundError:
        return TorchInfo(installed=False)
    spec = importlib.util.find_spec("torch")
    folders = spec.submodule_search_locations if spec else None
    text = _read_text(Path(folders[0]) / "version.py") if folders else None
    cuda = re.search(r"^cuda\b[^=]*=\s*['\"]([^'\"]+)['\"]", text or "", flags=re.MULTILINE)
    return TorchInfo(installed=True, version=version, cuda=cuda.group(1) if cuda else None)


def cpu_info() -> CpuInfo:
    text = _read_text(Path("/proc/cpuinfo")) or ""
    model = (_field(text, "model name") or _field(text, "Model") or _field(text, "Hardware")
             or platform.processor() or platform.machine() or "unknown CPU")
    flags = set((_field(text, "flags") or _field(text, "Features") or "").split())
    cores = os.cpu_count() or 1
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    return CpuInfo(model=model, cores=cores, usable_cores=usable,
                   bf16_flags=tuple(sorted(flags & {"avx512_bf16", "amx_bf16", "bf16"})))


def _field(text: str, key: str) -> str | None:
    """The value of the first ``key : value`` line in ``text``."""
    match = re.search(rf"^{re.escape(key)}\s*:\s*(.+)$", text, flags=re.MULTILINE)
    return match.group(1).strip() if match else None


# --- which device made the frames --------------------------------------------------------------------------

@dataclass(frozen=True)
class FrameOrigins:
    out_dir: Path
    frames: dict[int, tuple[str, str]]  # index → (backend, device)
    frame_count: int

    @property
    def by_maker(self) -> dict[tuple[str, str], list[int]]:
        makers: dict[tuple[str, str], list[int]] = {}
        for index, maker in sorted(self.frames.items()):
            makers.setdefault(maker, []).append(index)
        return makers

    @property
    def not_on_tt(self) -> list[int]:
        return [index for index, (backend, device) in sorted(self.frames.items())
                if backend != "tt" and not _is_tt_device(device)]

    @property
    def all_on_tt(self) -> bool:
        return bool(self.frames) and not self.not_on_tt

    def lines(self) -> list[str]:
        made = [f"{len(indices)} by {backend} on {device or 'an unrecorded device'} (frames {_ranges(indices)})"
                for (backend, device), indices in self.by_maker.items()]
        missing = self.frame_count - len(self.frames)
        return made + ([f"{missing} not made yet"] if missing > 0 else [])

    def verdict(self) -> str:
        if not self.frames:
            return "No frame has been made yet."
        if self.all_on_tt:
            return "Every frame was made on Tenstorrent hardware."
        if len(self.not_on_tt) == len(self.frames):
            return "No frame was made on Tenstorrent hardware."
        return f"{len(self.not_on_tt)} of {len(self.frames)} frames were not made on Tenstorrent hardware."

    def __str__(self) -> str:
        return "\n".join([f"{self.out_dir}: {len(self.frames)} of {self.frame_count} frames"]
                         + [f"  {line}" for line in self.lines()] + [self.verdict()])

    def _repr_html_(self) -> str:
        items = "".join(f"<li>{html.escape(line)}</li>" for line in self.lines())
        return (f"<p>{html.escape(str(self.out_dir))}: {len(self.frames)} of {self.frame_count} frames</p>"
                f"<ul>{items}</ul><p><b>{html.escape(self.verdict())}</b></p>")


def verify_frames(out_dir: str | os.PathLike, expect: str | None = None) -> FrameOrigins:
    """Which backend and device made each frame of a render folder, from its manifest (the lesson's Step 5).

    With ``expect="tt"``, raises ``FrameVerificationError`` unless every frame was made on Tenstorrent hardware.
    """
    from . import manifest

    if expect not in (None, "tt"):
        raise FrameVerificationError(f"expect={expect!r} is not understood; use expect='tt' (or leave it out).")
    folder = Path(out_dir).expanduser()
    book = manifest.load(folder)
    if book is None:
        raise FrameVerificationError(f"{folder} has no {manifest.MANIFEST_NAME}, so nothing records who made its "
                                     "frames; give the folder you rendered into (ttlesson render --out).")
    origins = FrameOrigins(folder, {i: (record.backend, record.device) for i, record in book.frames.items()},
                           book.frame_count)
    if expect == "tt" and not origins.all_on_tt:
        raise FrameVerificationError(_not_on_tt_message(origins))
    return origins


def _not_on_tt_message(origins: FrameOrigins) -> str:
    if not origins.frames:
        return f"{origins.out_dir} has no frames yet; render them with --backend tt first."
    (backend, device), indices = next((maker, indices) for maker, indices in origins.by_maker.items()
                                      if indices[0] in origins.not_on_tt)
    return (f"{len(origins.not_on_tt)} of {len(origins.frames)} frames in {origins.out_dir} were not made on "
            f"Tenstorrent hardware (frames {_ranges(origins.not_on_tt)}; e.g. {backend} on {device or 'unknown'}); "
            "render them again with --backend tt --overwrite on a machine with a Tenstorrent device.")


def _ranges(indices: list[int]) -> str:
    """``[0, 1, 2, 5]`` → ``"0–2, 5"``."""
    runs: list[list[int]] = []
    for index in indices:
        if runs and index == runs[-1][-1] + 1:
            runs[-1].append(index)
        else:
            runs.append([index])
    return ", ".join(f"{run[0]}–{run[-1]}" if len(run) > 1 else str(run[0]) for run in runs)

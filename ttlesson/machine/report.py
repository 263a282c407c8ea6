"""The hardware report: what this machine can make frames on, which backend ``auto`` picks and why, and for the
tt backend which model runs on which mesh; ``detect`` gathers it from every source without opening a device."""

from __future__ import annotations

import html
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING

from .. import env
from ..presenting import Presentable
from ..tenstorrent.arch import Arch
from ..tenstorrent.boards import Card, mesh_device_for
from .compute import CpuInfo, TorchInfo, cpu_info, find_nvidia_gpus, torch_info
from .driver import Holder, device_holders, driver_version, read_kernel_driver
from .environment import PythonEnvironment, recognise
from .host import HostPaths, SourceAnswer, chips_text
from .tt_smi import TT_SMI_TIMEOUT, read_tt_smi
from .ttnn_info import TTNN_TIMEOUT, TtnnInfo, read_ttnn, ttnn_install_info

if TYPE_CHECKING:
    from ..tenstorrent.versions import CheckoutInfo


@dataclass(frozen=True)
class AutoChoice:
    backend: str  # tt or torch
    device: str  # Tenstorrent, cuda (NVIDIA …) or cpu
    why: str  # one sentence a learner reads


@dataclass
class HardwareReport(Presentable):
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
    tt_metal: CheckoutInfo | None = None  # the checkout the tt backend imports model code from
    driver_version: str | None = None  # tt-kmd's, from /sys/module/tenstorrent/version
    holders: list[Holder] = field(default_factory=list)  # processes that hold a chip open
    environment: PythonEnvironment | None = None  # which of the lesson's environments this Python is
    described: str | None = None  # the saved sources this report reads instead of this machine's cards
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
        return any(card.arch == Arch.BLACKHOLE for card in self.cards)

    @property
    def mesh_device(self) -> str | None:
        return mesh_device_for(self.cards)[0]

    @property
    def mesh_device_note(self) -> str:
        return mesh_device_for(self.cards)[1]

    @property
    def notes(self) -> list[str]:
        """Sentences for what needs attention: sources that disagree, a busy chip, versions that do not match."""
        busy = [f"{holder}; it must exit before another process can open that chip (or run tt-smi -r "
                "if the chip stays busy after it is gone)." for holder in self.holders]
        return [note for note in (self.disagreement, *busy, self.versions_note) if note]

    @property
    def versions_note(self) -> str | None:
        """A sentence when the ttnn that imports and the tt-metal checkout come from different releases."""
        from ..tenstorrent.versions import mismatch

        return mismatch(self.ttnn.version, self.ttnn.location, self.tt_metal) if self.ttnn.installed else None

    @property
    def tt_system(self):
        """The Tenstorrent system as the tt backend plans for it (``tenstorrent.presets.TTSystem``), or None."""
        return tt_system_for(self.cards, self.ttnn)

    @property
    def tt_models(self) -> list:
        """For each model the tt backend runs: supported here or not, the mesh it would open, and why."""
        from ..tenstorrent.presets import verdicts

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
            "kernel_driver": {"version": self.driver_version,
                              "holders": [asdict(holder) for holder in self.holders]},
            "environment": self.environment.to_dict() if self.environment else None,
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
        """(label, text) pairs: the report as the text and HTML forms show it.

        Without a Tenstorrent card, the rows that describe one (its cards, MESH_DEVICE, TT_METAL_ARCH_NAME, the tt
        backend, the sources that found none) fold into the first row, and the kernel driver, ttnn and tt-metal
        rows stay only when there is something to name.
        """
        if not self.cards:
            return [("Tenstorrent", self._no_card_text()), *self._software_rows(only_present=True),
                    *self._compute_rows(), self._auto_row()]
        return [
            ("Tenstorrent", self._tenstorrent_summary()),
            *[("  card", str(card)) for card in self.cards],
            ("MESH_DEVICE", self.mesh_device or f"none ({self.mesh_device_note})"),
            ("TT_METAL_ARCH_NAME", self._arch_env_text()),
            *[(f"tt backend, {verdict.model}", str(verdict)) for verdict in self.tt_models],
            *self._software_rows(only_present=False),
            *self._compute_rows(),
            # the ttnn row already says what ttnn answered
            *[(f"source: {source.name}", source.summary) for source in self.sources if source.name != "ttnn"],
            self._auto_row(),
        ]

    def _software_rows(self, only_present: bool) -> list[tuple[str, str]]:
        """The kernel driver, Python, ttnn and tt-metal rows; ``only_present`` leaves out those with nothing there."""
        rows = [
            ("kernel driver", f"tt-kmd {self.driver_version}" if self.driver_version
             else "not loaded (/sys/module/tenstorrent/version is missing)", self.driver_version is not None),
            ("Python", str(self.environment) if self.environment else sys.prefix, True),
            ("ttnn", str(self.ttnn), self.ttnn.installed),
            ("tt-metal", str(self.tt_metal) if self.tt_metal else "no checkout (TT_METAL_HOME unset)",
             self.tt_metal is not None),
        ]
        return [(label, text) for label, text, present in rows if present or not only_present]

    def _compute_rows(self) -> list[tuple[str, str]]:
        return [
            ("NVIDIA GPUs", ", ".join(self.gpus) + f" (from {self.gpu_source})" if self.gpus
             else f"none ({self.gpu_source})"),
            ("torch", _torch_text(self.torch)),
            ("CPU", str(self.cpu)),
        ]

    def _auto_row(self) -> tuple[str, str]:
        return "auto backend", f"{self.auto.backend} on {self.auto.device}"

    def __str__(self) -> str:
        width = max(len(label) for label, _ in self.rows()) + 2
        lines = [f"{label + ':':<{width}}{text}" for label, text in self.rows()]
        lines += [f"Note: {note}" for note in self.notes]
        return "\n".join(lines + [self.auto.why])

    def _repr_html_(self) -> str:
        body = "".join(f"<tr><th style='text-align:left'>{html.escape(label)}</th>"
                       f"<td style='text-align:left'>{html.escape(text)}</td></tr>" for label, text in self.rows())
        note = "".join(f"<p>Note: {html.escape(text)}</p>" for text in self.notes)
        return f"<table>{body}</table>{note}<p><b>{html.escape(self.auto.why)}</b></p>"

    def _tt_backend_dict(self) -> dict:
        system = self.tt_system
        return {
            "system": None if system is None else {"name": system.name, "arch": system.arch.metal_name,
                                                   "chips": system.chips, "shape": list(system.shape)},
            "models": [verdict.to_dict() for verdict in self.tt_models],
        }

    def _tenstorrent_summary(self) -> str:
        mock = f" (mock cluster {self.mock_cluster}: nothing can run on it)" if not self.tt_device else ""
        count = len(self.cards)
        return f"{count} card{'s' if count != 1 else ''}, {chips_text(self.total_chips)}, {self.arch}{mock}"

    def _no_card_text(self) -> str:
        said = "; ".join(f"{source.name}: {source.summary}" for source in self.sources if source.answered)
        found = f"none ({said})" if said else "none"
        return f"{found}, so MESH_DEVICE, TT_METAL_ARCH_NAME and the tt backend do not apply here"

    def _arch_env_text(self) -> str:
        current = env.text(env.TT_METAL_ARCH_NAME)
        blackhole = Arch.BLACKHOLE.metal_name
        if self.needs_blackhole_env:
            if current == blackhole:
                return f"{blackhole}, as Blackhole cards need"
            return f"needed: export TT_METAL_ARCH_NAME={blackhole} (it is {repr(current) if current else 'unset'} now)"
        if current == blackhole:
            return f"{blackhole}, but there is no Blackhole card here: unset TT_METAL_ARCH_NAME"
        return f"{current or 'unset'} (not needed: no Blackhole card)"


def _torch_text(torch: TorchInfo) -> str:
    if not torch.installed:
        return "not installed (pip install torch)"
    return f"{torch.version} ({f'CUDA {torch.cuda} build' if torch.cuda else 'CPU-only build'})"


def tt_system_for(cards: list[Card], ttnn: TtnnInfo):
    """The system the tt backend would plan for: ttnn's own answer when it was asked, else what the cards imply."""
    from ..tenstorrent.presets import SYSTEM_SHAPES, TTSystem

    if not cards:
        return None
    total = sum(card.chips for card in cards)
    mesh, _ = mesh_device_for(cards)
    if ttnn.system_mesh and ttnn.devices:
        arch = Arch.parse(ttnn.arch) or Arch.WORMHOLE  # the probe names none where ttnn has no get_arch_name
        return TTSystem(arch, ttnn.devices, ttnn.system_mesh, mesh or "")
    if mesh in SYSTEM_SHAPES:
        arch, shape = SYSTEM_SHAPES[mesh]
        return TTSystem(arch, total, shape, mesh)
    arches = {Arch.parse(card.arch) for card in cards}
    cards_arch = arches.pop() if len(arches) == 1 else None
    if cards_arch is None:
        return None
    return TTSystem(cards_arch, total, (1, total))  # no preset name: ttnn decides the real shape when it opens


def choose_backend(report: HardwareReport) -> AutoChoice:
    """The backend ``auto`` picks, and one honest sentence saying where frames will be made.

    For a report read from saved sources (a tt-smi snapshot, a copy of /sys) the sentence describes the machine
    those sources came from, in the conditional: this machine's own cards were not looked at.
    """
    choice = _choose_backend(report)
    if report.described:
        would = choice.why[1:-1].replace(" will be made", " would be made")
        return replace(choice, why=f"{report.described} describes a machine where {choice.why[0].lower()}{would} "
                                   "(this machine's own cards were not examined).")
    return choice


def _choose_backend(report: HardwareReport) -> AutoChoice:
    if report.tt_device and report.ttnn.installed and report.ttnn.imports is not False:
        mesh = f", MESH_DEVICE={report.mesh_device}" if report.mesh_device else ""
        return AutoChoice("tt", "Tenstorrent", f"Frames will be made on Tenstorrent hardware ({len(report.cards)} "
                          f"card{'s' if len(report.cards) != 1 else ''}, {chips_text(report.total_chips)}{mesh}) "
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


def detect(sysfs_root: str | os.PathLike | None = None, tt_smi_snapshot: str | os.PathLike | None = None, *,
           ttnn: bool | None = None, tt_smi_timeout: float = TT_SMI_TIMEOUT, ttnn_timeout: float = TTNN_TIMEOUT,
           host: HostPaths | None = None) -> HardwareReport:
    """Look at this machine (or at saved sources) and say what frames can be made on; never opens a device.

    ``sysfs_root``: a folder standing for ``/sys`` (holding ``class/tenstorrent``), or the ``tenstorrent`` class
    folder itself. ``tt_smi_snapshot``: a saved ``tt-smi -s`` output. When either is given, the live sources
    (``/dev/tenstorrent``, running tt-smi) are left out, so the report describes only what was given.
    ``ttnn``: ``True`` asks ttnn how many chips it sees (seconds; on real chips it starts UMD's cluster),
    ``False`` never does, ``None`` asks only when ``TT_METAL_MOCK_CLUSTER_DESC_PATH`` names a mock cluster.
    ``host``: the roots of /sys, /dev, /proc, /opt and the home folder (tests point it at fake trees).
    """
    from ..tenstorrent.versions import checkout_info

    host = host or HostPaths()
    started = time.perf_counter()
    saved = sysfs_root is not None or tt_smi_snapshot is not None
    mock = env.mock_cluster()

    driver_cards, driver_answer = read_kernel_driver(sysfs_root, host)
    smi_cards, smi_answer = read_tt_smi(tt_smi_snapshot, live=not saved, timeout=tt_smi_timeout, host=host)
    ask_ttnn = ttnn if ttnn is not None else (mock is not None and not saved)
    ttnn_info, ttnn_cards, ttnn_answer = read_ttnn(ask_ttnn, mock, ttnn_timeout)

    by_source = [("tt-smi", smi_cards), ("kernel driver", driver_cards), ("ttnn", ttnn_cards)]
    cards = next((found for _, found in by_source if found), [])
    gpus, gpu_source = find_nvidia_gpus()
    described = " and ".join(filter(None, [f"The tt-smi snapshot {tt_smi_snapshot}" if tt_smi_snapshot else None,
                                           f"the sysfs copy {sysfs_root}" if sysfs_root is not None else None])) or None
    return HardwareReport(cards=cards, sources=[driver_answer, smi_answer, ttnn_answer], ttnn=ttnn_info,
                          described=described[:1].upper() + described[1:] if described else None,
                          gpus=gpus, gpu_source=gpu_source, torch=torch_info(), cpu=cpu_info(),
                          mock_cluster=mock if ttnn_cards else None, disagreement=_disagreement(by_source, ttnn_info),
                          seconds=time.perf_counter() - started, tt_metal=checkout_info(),
                          driver_version=None if saved else driver_version(host),
                          holders=[] if saved else device_holders(host), environment=recognise(host=host))


def _disagreement(by_source: list[tuple[str, list[Card]]], ttnn: TtnnInfo) -> str | None:
    counts = {name: sum(card.chips for card in found) for name, found in by_source if found}
    if ttnn.asked and ttnn.devices is not None and "ttnn" not in counts:
        counts["ttnn"] = ttnn.devices
    if len(set(counts.values())) <= 1:
        return None
    said = ", ".join(f"{name} {chips_text(count)}" for name, count in counts.items())
    return f"the sources count different chips ({said}); a chip may be in a bad state: try tt-smi -r."


def auto_backend(host: HostPaths | None = None) -> str:
    """The backend ``auto`` stands for, from the kernel driver and ttnn's install alone (milliseconds).

    ``tt`` when the kernel driver lists a Tenstorrent chip this process can reach and ttnn is installed, else
    ``torch``.
    """
    cards, _ = read_kernel_driver(None, host)
    return "tt" if cards and ttnn_install_info().installed else "torch"

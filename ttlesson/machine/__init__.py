"""What this machine can make frames on: Tenstorrent cards, ttnn, NVIDIA GPUs and the CPU, found without opening
a device, and which backend ``auto`` picks because of it.

One concern per module:

* ``host``: the roots read (``/sys``, ``/dev``, ``/proc``, ``/opt``, home), injectable as ``HostPaths``;
* the detection sources, each optional and failing soft: ``driver`` (the kernel driver: cards reachable through
  ``/dev``, its version, the processes holding a chip), ``tt_smi``, ``ttnn_info`` (ttnn's install record and,
  when asked, a child process), ``compute`` (NVIDIA GPUs, torch, the CPU), ``environment`` (which of the
  lesson's Python environments this is; the notebook kernel's report);
* ``report``: ``detect`` and the ``HardwareReport`` (text, HTML, JSON), the ``auto`` choice;

``from ttlesson.machine import X`` works for every name below; each module loads on first use.
"""

from typing import TYPE_CHECKING

from ..lazy import exports

# each module and the public names it defines, loaded on first use: a render that only asks for the auto choice
# does not import every detection source
_MODULES = {
    "compute": ("CpuInfo", "TorchInfo", "cpu_info", "find_nvidia_gpus", "torch_info"),
    "driver": ("Holder", "device_holders", "driver_version", "read_kernel_driver"),
    "environment": ("CLOUD", "INSTALLER", "OTHER", "SOURCE_BUILD", "KernelReport", "PythonEnvironment",
                    "kernel_report", "recognise"),
    "host": ("HostPaths", "SourceAnswer"),
    "report": ("AutoChoice", "HardwareReport", "auto_backend", "choose_backend", "detect", "tt_system_for"),
    "tt_smi": ("TT_SMI_TIMEOUT", "find_tt_smi", "parse_tt_smi_snapshot", "read_tt_smi"),
    "ttnn_info": ("TTNN_TIMEOUT", "TtnnInfo", "read_ttnn", "ttnn_install_info"),
}
_EXPORTS = {name: (module, name) for module, names in _MODULES.items() for name in names}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = exports(__name__, _EXPORTS, globals())


if TYPE_CHECKING:  # what type checkers and editors see; at run time __getattr__ loads these on first use
    from .compute import CpuInfo as CpuInfo
    from .compute import TorchInfo as TorchInfo
    from .compute import cpu_info as cpu_info
    from .compute import find_nvidia_gpus as find_nvidia_gpus
    from .compute import torch_info as torch_info
    from .driver import Holder as Holder
    from .driver import device_holders as device_holders
    from .driver import driver_version as driver_version
    from .driver import read_kernel_driver as read_kernel_driver
    from .environment import CLOUD as CLOUD
    from .environment import INSTALLER as INSTALLER
    from .environment import OTHER as OTHER
    from .environment import SOURCE_BUILD as SOURCE_BUILD
    from .environment import KernelReport as KernelReport
    from .environment import PythonEnvironment as PythonEnvironment
    from .environment import kernel_report as kernel_report
    from .environment import recognise as recognise
    from .host import HostPaths as HostPaths
    from .host import SourceAnswer as SourceAnswer
    from .report import AutoChoice as AutoChoice
    from .report import HardwareReport as HardwareReport
    from .report import auto_backend as auto_backend
    from .report import choose_backend as choose_backend
    from .report import detect as detect
    from .report import tt_system_for as tt_system_for
    from .tt_smi import TT_SMI_TIMEOUT as TT_SMI_TIMEOUT
    from .tt_smi import find_tt_smi as find_tt_smi
    from .tt_smi import parse_tt_smi_snapshot as parse_tt_smi_snapshot
    from .tt_smi import read_tt_smi as read_tt_smi
    from .ttnn_info import TTNN_TIMEOUT as TTNN_TIMEOUT
    from .ttnn_info import TtnnInfo as TtnnInfo
    from .ttnn_info import read_ttnn as read_ttnn
    from .ttnn_info import ttnn_install_info as ttnn_install_info

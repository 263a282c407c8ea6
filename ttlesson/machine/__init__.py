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

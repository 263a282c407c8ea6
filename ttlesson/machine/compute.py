"""What frames can be made on besides Tenstorrent chips: NVIDIA GPUs, the torch build, the CPU.

GPUs come from torch only when torch is already imported; otherwise from the NVIDIA driver's
``/proc/driver/nvidia/gpus`` or ``nvidia-smi -L``, so detection stays fast where torch is slow to import.
torch's CUDA build is read from its ``version.py`` without importing it.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from ..presenting import Presentable
from .host import read_text


@dataclass(frozen=True)
class TorchInfo:
    installed: bool
    version: str | None = None
    cuda: str | None = None  # the CUDA version the build targets; None for a CPU-only build


@dataclass(frozen=True)
class CpuInfo(Presentable):
    model: str
    cores: int
    usable_cores: int
    bf16_flags: tuple[str, ...]

    @property
    def bf16(self) -> bool:
        return bool(self.bf16_flags)

    def __str__(self) -> str:
        usable = f" ({self.usable_cores} usable)" if self.usable_cores != self.cores else ""
        bf16 = f"yes ({', '.join(self.bf16_flags)})" if self.bf16 else "no"
        return f"{self.model}, {self.cores} cores{usable}, bf16: {bf16}"


def find_nvidia_gpus() -> tuple[list[str], str]:
    """(GPU names, where they were read from), without importing torch unless it is imported already."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())], "torch"
    names = [model for path in sorted(Path("/proc/driver/nvidia/gpus").glob("*/information"))
             if (model := _field(read_text(path) or "", "Model"))]
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
    text = read_text(Path(folders[0]) / "version.py") if folders else None
    cuda = re.search(r"^cuda\b[^=]*=\s*['\"]([^'\"]+)['\"]", text or "", flags=re.MULTILINE)
    return TorchInfo(installed=True, version=version, cuda=cuda.group(1) if cuda else None)


def cpu_info() -> CpuInfo:
    text = read_text(Path("/proc/cpuinfo")) or ""
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


def physical_cores() -> int:
    """Physical cores this process may run on (hyper-threads share a core's matrix units, so they do not count)."""
    usable = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set(range(os.cpu_count() or 1))
    cores = set()
    for cpu in usable:
        topology = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            cores.add(((topology / "physical_package_id").read_text().strip(),
                       (topology / "core_id").read_text().strip()))
        except OSError:
            cores.add(("", str(cpu)))
    return max(1, len(cores))

"""Will a frame of this size fit in this machine's memory? An estimate made before the model loads.

Making one Stable Diffusion frame on the CPU holds the model's weights plus, at the end, the VAE decoder's
activations at full resolution: its last upsampling stage runs ``block_out_channels[1]`` channels over every
pixel (256 for SD 1.x and 3.x, 16 for the tiny model), a few such tensors at once. So the peak grows with
width × height, and ``--size 4096`` asks 64 times what 512 does. ``check_fits`` compares the estimate with the
memory available now (RAM and swap) and refuses a size that cannot fit, naming the largest that can.

The estimate is for frames made on the CPU in float32 (the torch backend's CPU path); a GPU's memory is not
checked here (torch reports its own out-of-memory error), nor is the tt backend's (it makes 512×512 only).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ...errors import TTLessonError
from ...models import TINY_MODELS, ModelSpec
from ...presenting import lever

RUNTIME_BYTES = 1000 * 1024 ** 2  # Python, torch, diffusers and the pipeline objects (tiny at 64x64: 983 MiB)
ACTIVATION_TENSORS = 7  # full-resolution float32 tensors of the decoder alive at the peak (tiny measured: 6.4)
KNOWN_DECODER_CHANNELS = {"sd14": 256, "sd35-large": 256}
GIB = 1024 ** 3


@dataclass(frozen=True)
class Estimate:
    weights: int  # bytes
    per_pixel: int  # bytes of activations per output pixel

    def bytes_for(self, width: int, height: int, copies: int = 1) -> int:
        return copies * (RUNTIME_BYTES + self.weights + self.per_pixel * width * height)


def estimate(spec: ModelSpec) -> Estimate:
    """Weights and per-pixel activation bytes of ``spec`` on the CPU, from its files where they are on disk."""
    folder = _folder(spec)
    weights = _weight_bytes(folder) if folder else 0
    weights = weights or (spec.weights.float32_bytes if spec.weights else 0)  # a Hub model not on disk yet
    channels = _decoder_channels(folder) if folder else None
    channels = channels or KNOWN_DECODER_CHANNELS.get(spec.name, 256)
    return Estimate(weights=weights, per_pixel=ACTIVATION_TENSORS * channels * 4)


def meminfo() -> dict[str, int]:
    """The kernel's memory counters in bytes (``MemTotal``, ``MemAvailable``, ``SwapFree``…); empty if unknown."""
    try:
        text = Path("/proc/meminfo").read_text(encoding="ascii")
    except (OSError, ValueError):
        return {}
    return {key: int(kib) * 1024 for key, kib in re.findall(r"^(\w+):\s+(\d+) kB", text, re.M)}


def available_bytes() -> int | None:
    """Memory this machine can give now: available RAM plus free swap (Linux), else physical RAM; None if unknown."""
    counters = meminfo()
    if "MemAvailable" in counters:
        return counters["MemAvailable"] + counters.get("SwapFree", 0)
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def check_fits(spec: ModelSpec, width: int, height: int, device: str | None = None, copies: int = 1,
               loaded: bool = False) -> None:
    """Refuse a frame size whose CPU memory estimate exceeds what is available now: before anything loads, or
    (``loaded``) with the model already in memory, when only the frame's own activations must still fit.

    ``device``: the torch device asked for (None: CUDA if present, which is not checked here). ``copies``: CPU
    worker processes, each holding its own pipeline.
    """
    if copies < 1 or (device is not None and not str(device).startswith("cpu")) or \
            (device is None and _cuda_visible()):
        return
    have = available_bytes()
    if have is None:
        return
    guess = estimate(spec)
    if loaded:  # the weights and the runtime are already in use, so not in ``have``
        have += copies * (RUNTIME_BYTES + guess.weights)
    need = guess.bytes_for(width, height, copies)
    if need <= have:
        return
    workers = f" in each of {copies} worker processes" if copies > 1 else ""
    fix = _largest_fitting(guess, width, height, copies, have)
    raise TTLessonError(f"Size {width}x{height} needs about {need / GIB:.1f} GiB of memory for {spec.name} on the "
                        f"CPU{workers}, and this machine has {have / GIB:.1f} GiB available; {fix}.")


def _largest_fitting(guess: Estimate, width: int, height: int, copies: int, have: int) -> str:
    spare = have / copies - RUNTIME_BYTES - guess.weights
    if spare <= guess.per_pixel * 64 * 64:
        more = " or fewer --devices" if copies > 1 else ""
        return f"even 64x64 does not fit: free some memory{more}, or use a smaller model ({lever('model', 'tiny')})"
    scale = min(1.0, (spare / (guess.per_pixel * width * height)) ** 0.5)
    fit_w, fit_h = (max(64, int(side * scale) // 8 * 8) for side in (width, height))
    size = f"{fit_w}" if fit_w == fit_h else f"{fit_w}x{fit_h}"
    more = ", or fewer --devices" if copies > 1 else ""
    return f"give {lever('size', size)} or smaller{more}"


def _cuda_visible() -> bool:
    """Whether frames would go to a GPU by default; from torch if it is loaded, else from the NVIDIA driver."""
    import sys

    torch = sys.modules.get("torch")
    if torch is not None:
        return bool(torch.cuda.is_available())
    from ...machine import find_nvidia_gpus

    return bool(find_nvidia_gpus()[0])


def _folder(spec: ModelSpec) -> Path | None:
    if spec.name in TINY_MODELS:
        from ...models.tiny import tiny_model_folder

        return tiny_model_folder(spec.name)
    source = Path(spec.source)
    return source if source.is_dir() else None


def _weight_bytes(folder: Path) -> int:
    """float32 bytes of the pipeline's weights: safetensors and .bin files, half-precision files counted twice."""
    total = 0
    for path in folder.rglob("*"):
        if path.suffix in (".safetensors", ".bin") and path.is_file():
            half = ".fp16." in path.name or ".bf16." in path.name
            total += path.stat().st_size * (2 if half else 1)
    return total


def _decoder_channels(folder: Path) -> int | None:
    try:
        config = json.loads((folder / "vae" / "config.json").read_text())
        channels = config["block_out_channels"]
        return int(channels[1] if len(channels) > 1 else channels[0])
    except (OSError, ValueError, KeyError, TypeError, IndexError, RecursionError):
        return None

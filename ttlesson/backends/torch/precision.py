"""How a pipeline is made fast where it runs, and the name of the numerics that choice gives its frames.

A faster path is not free: bfloat16, float16 and OpenVINO each round differently from diffusers' float32, so a
frame's pixels depend on the path. The path is therefore part of a frame's identity, recorded in the manifest
as its ``precision``:

* ``float32``: torch float32, diffusers' default (and the ``tiny`` models' everywhere, so its frames stay
  byte-identical from machine to machine).
* ``bfloat16``: torch with bfloat16 weights and channels-last activations; on CPUs with native bfloat16
  (AVX512-BF16 or AMX) and for SD 3.5 on CUDA.
* ``float16``: torch float16, for SD 1.x on CUDA.
* ``openvino-bf16`` / ``openvino-f32``: OpenVINO runs the UNet and the VAE decoder (the ``openvino`` extra),
  in bfloat16 where the CPU has it natively; the converted model is cached once per model.
* ``tt-metal``: the tt backend, whose numerics are tt-metal's own.

``, compiled`` is appended when ``torch.compile`` compiled the UNet (``compile=True``).

``auto`` picks, in this order: the tt backend's own; on CUDA float16 (bfloat16 for SD 3.5); on a CPU OpenVINO
for SD 1.x when it is installed (in bfloat16 where the CPU has it natively, else float32: both measured
faster than torch), else torch bfloat16 where the CPU has native bfloat16, else float32. The ``tiny`` models
stay float32. Measured effects are in docs/performance.md.
"""

from __future__ import annotations

import importlib.util
from typing import Literal, get_args

from ...errors import BackendUnavailableError
from ...models import TINY_MODELS, ModelSpec

Precision = Literal["auto", "float32", "bfloat16", "float16", "openvino"]
PRECISION_CHOICES = get_args(Precision)
COMPILED = ", compiled"
TORCH_DTYPES = {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}


def resolve_precision(requested: str, spec: ModelSpec, device_type: str, *, compile: bool = False,
                      native_bf16: bool | None = None, openvino: bool | None = None) -> str:
    """The precision ``requested`` (one of PRECISION_CHOICES) stands for with this model on this device type.

    ``native_bf16`` and ``openvino`` default to what this machine has (tests pass them to reach every branch).
    """
    if requested not in PRECISION_CHOICES:
        raise BackendUnavailableError(f"Precision {requested!r} is not one ttlesson knows; use one of "
                                      f"{', '.join(PRECISION_CHOICES)}.")
    if device_type == "tt":
        if requested not in ("auto",) or compile:
            raise BackendUnavailableError("The tt backend runs tt-metal's own numerics; leave --precision and "
                                          "--compile out with --backend tt.")
        return "tt-metal"
    if native_bf16 is None:
        native_bf16 = device_type == "cpu" and cpu_has_native_bf16()
    if openvino is None:
        openvino = openvino_installed()
    chosen = _auto(spec, device_type, native_bf16, openvino) if requested == "auto" else requested
    if chosen == "openvino":
        _check_openvino(spec, device_type, openvino)
        chosen = "openvino-bf16" if native_bf16 else "openvino-f32"
    if chosen == "float16" and device_type == "cpu":
        raise BackendUnavailableError("Precision float16 runs on CUDA GPUs only (CPUs have no fast float16); use "
                                      "--precision bfloat16 or float32 on a CPU.")
    if compile and chosen.startswith("openvino"):
        raise BackendUnavailableError("--compile compiles torch's UNet, but OpenVINO runs it with --precision "
                                      "openvino; leave one of them out.")
    return chosen + (COMPILED if compile else "")


def _auto(spec: ModelSpec, device_type: str, native_bf16: bool, openvino: bool) -> str:
    if spec.name in TINY_MODELS:
        return "float32"  # the tests' and notebooks' models: one set of bytes everywhere
    if device_type == "cuda":
        return "bfloat16" if spec.family == "sd3" else "float16"
    if openvino and spec.family == "sd1":
        return "openvino"
    return "bfloat16" if native_bf16 else "float32"  # emulated bfloat16 is far slower than float32


def _check_openvino(spec: ModelSpec, device_type: str, installed: bool) -> None:
    if device_type != "cpu":
        raise BackendUnavailableError(f"--precision openvino runs on the CPU, not on {device_type}; give "
                                      "--device cpu, or another --precision.")
    if spec.family != "sd1":
        raise BackendUnavailableError(f"--precision openvino runs SD 1.x-shaped models, not {spec.name}; use "
                                      "--precision bfloat16 or float32.")
    if not installed:
        raise BackendUnavailableError("--precision openvino needs the openvino package: "
                                      "pip install 'ttlesson[openvino]', or choose another --precision.")


def torch_dtype_name(precision: str) -> str:
    """The torch dtype name the pipeline's weights are held in for ``precision``."""
    base = precision.removesuffix(COMPILED)
    return TORCH_DTYPES.get(base, "float32")


def device_type(backend_name: str, device: str | None) -> str:
    """``tt``, ``cuda`` or ``cpu``: where frames will be made, without importing torch on a machine with no GPU."""
    if backend_name == "tt":
        return "tt"
    if device:
        return "cuda" if device.startswith("cuda") else "cpu"
    from ...machine import find_nvidia_gpus

    if not find_nvidia_gpus()[0]:
        return "cpu"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 natively (AVX512-BF16, AMX or Arm's BF16), read from /proc/cpuinfo."""
    from ...machine import cpu_info

    return cpu_info().bf16


def openvino_installed() -> bool:
    return importlib.util.find_spec("openvino") is not None


# --- applying a precision to a loaded diffusers pipeline -----------------------------------------------------

def prepare_pipeline(pipe, precision: str, device, cache_key: str | None, spec: ModelSpec,
                     label: str | None = None):
    """Move ``pipe`` to ``device`` in the numerics ``precision`` names; returns the pipeline to call.

    OpenVINO replaces the UNet and the VAE decoder with compiled OpenVINO models behind the same interface,
    so the diffusers pipeline itself (scheduler, guidance, image post-processing) is unchanged.
    """
    import torch

    base = precision.removesuffix(COMPILED)
    from ...machine.compute import physical_cores

    if device.type == "cpu" and torch.get_num_threads() > physical_cores():
        torch.set_num_threads(physical_cores())  # hyper-threads only contend for the same matrix units
    if base.startswith("openvino"):
        from .openvino import use_openvino

        pipe = pipe.to(device="cpu", dtype=torch.float32)
        return use_openvino(pipe, bf16=base == "openvino-bf16", cache_key=cache_key, label=label or spec.name)
    pipe = pipe.to(device=device, dtype=getattr(torch, torch_dtype_name(base)))
    if base in ("bfloat16", "float16"):  # oneDNN's and cuDNN's fast convolutions want channels-last
        for name in ("unet", "vae"):
            if getattr(pipe, name, None) is not None:
                getattr(pipe, name).to(memory_format=torch.channels_last)
    if device.type == "cuda":
        _gpu_memory_savers(pipe, spec)
    if precision.endswith(COMPILED):
        denoiser = "unet" if getattr(pipe, "unet", None) is not None else "transformer"
        setattr(pipe, denoiser, torch.compile(getattr(pipe, denoiser)))
    return pipe


def _gpu_memory_savers(pipe, spec: ModelSpec) -> None:
    """VAE tiling for frames larger than twice the model's native side; attention is diffusers' default SDPA."""
    pipe._ttlesson_tile_above = 2 * max(spec.width, spec.height)


def vae_tiling_for(pipe, width: int, height: int) -> None:
    """Turn VAE tiling on for large frames on a GPU (set by ``prepare_pipeline``), off otherwise."""
    limit = getattr(pipe, "_ttlesson_tile_above", None)
    if limit is None or not hasattr(pipe, "vae"):
        return
    if max(width, height) > limit:
        pipe.vae.enable_tiling()
    else:
        pipe.vae.disable_tiling()

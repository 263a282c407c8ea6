"""Backends turn one frame request into one image. All of them share one small interface (``base``).

* ``torch``: the diffusers pipeline on CUDA when present, else the CPU.
* ``tt``: tt-metal's Stable Diffusion through TT-NN on Tenstorrent hardware.
"""

from __future__ import annotations

from typing import Literal, get_args

from ..errors import BackendUnavailableError
from ..models import ModelSpec
from .base import Backend, FrameRequest, LostFrame, MadeImage, StepCallback

BackendName = Literal["auto", "torch", "tt"]
BACKEND_NAMES = get_args(BackendName)

__all__ = ["BACKEND_NAMES", "Backend", "FrameRequest", "LostFrame", "MadeImage", "StepCallback", "create",
           "resolve_name"]


def create(name: str, spec: ModelSpec, device: str | None = None, devices: int | str = 1,
           precision: str = "auto") -> Backend:
    """The backend called ``name`` (``auto``, ``torch`` or ``tt``) for the model ``spec``, not yet loaded.

    ``devices`` (a number or ``"all"``) is how many Tenstorrent chips the tt backend uses in this process;
    the torch backend always makes frames on one ``device`` (``ttlesson.backends.workers`` spreads it over several).
    ``precision`` is a choice of ``backends.torch.precision.PRECISION_CHOICES`` (torch) or a precision it resolved to.
    """
    if resolve_name(name) == "tt":
        if device is not None:
            raise BackendUnavailableError(f"--device {device} picks a torch device; the tt backend uses Tenstorrent "
                                          "chips (choose how many with --devices), so leave --device out.")
        from .tt import create_tt

        return create_tt(spec, devices=devices)
    from .torch import TorchBackend

    return TorchBackend(spec, device=device, precision=precision)


def resolve_name(name: str) -> str:
    """The backend that ``name`` stands for on this machine.

    ``auto`` is ``tt`` when the kernel driver lists a Tenstorrent chip and ttnn is installed, else ``torch``
    (see ``ttlesson.machine.auto_backend``: milliseconds, nothing heavy is imported).
    """
    if name not in BACKEND_NAMES:
        raise BackendUnavailableError(f"Unknown backend {name!r}; use one of {', '.join(BACKEND_NAMES)}.")
    if name != "auto":
        return name
    from ..machine import auto_backend

    return auto_backend()

"""The ``tt`` backend: tt-metal's Stable Diffusion through TT-NN on Tenstorrent chips, from Python.

One concern per module: ``plan`` (what to open for which model on which system: tt-metal's presets, as data),
``device`` (tt-metal's environment, opening and closing the mesh, SIGTERM), ``metal`` (tt-metal's checkout and its
model packages), ``versions`` (which ttnn and which checkout belong together), ``runtime`` (where ttnn, the model
packages and the host models come from: the real ones or a test's stand-ins), ``chip`` (SD 1.4's traced pipeline
on one chip), ``sd14`` and ``sd35`` (the two backends), ``processes`` (one worker process per PCIe chip) and
``check`` (the on-silicon self-test).

Two ways to use several chips (``parallel``, or ``--tt-parallel``, or ``TTLESSON_TT_PARALLEL``):

* ``submesh`` (default): this process opens the whole mesh and splits it into 1×1 submeshes, one pipeline and
  trace per chip, remote (ethernet-only) chips of an N300 or T3K included;
* ``processes``: one worker process per PCIe chip (``TT_VISIBLE_DEVICES``), each opening a 1×1 mesh on its own
  chip, as tt's serving code runs its workers; remote chips stay idle (``processes``).
"""

from __future__ import annotations

from ... import env
from ...errors import BackendUnavailableError
from ...models import ModelSpec
from ..base import Backend
from .runtime import Runtime

PARALLEL_MODES = ("submesh", "processes")


def create_tt(spec: ModelSpec, devices: int | str = 1, runtime: Runtime | None = None,
              parallel: str | None = None) -> Backend:
    """The tt backend for ``spec``: SD 1.4 per chip (in this process or one process per chip), or SD 3.5 Large
    over the whole mesh."""
    if spec.family == "sd3":
        from .sd35 import TTSD35Backend

        return TTSD35Backend(spec, devices=devices, runtime=runtime or Runtime())
    if parallel_mode(parallel) == "processes":
        from .processes import TTProcessesBackend

        return TTProcessesBackend(spec, devices=devices)
    from .sd14 import TTSD14Backend

    return TTSD14Backend(spec, devices=devices, runtime=runtime or Runtime())


def parallel_mode(parallel: str | None = None) -> str:
    """``submesh`` or ``processes``: the argument, else ``TTLESSON_TT_PARALLEL``, else ``submesh``."""
    mode = (parallel or env.text(env.TT_PARALLEL) or "submesh").strip().lower()
    if mode not in PARALLEL_MODES:
        source = "tt_parallel" if parallel else env.TT_PARALLEL
        raise BackendUnavailableError(f"{source}={mode!r} is not understood; use submesh (one process, one "
                                      "pipeline per chip) or processes (one process per PCIe chip).")
    return mode

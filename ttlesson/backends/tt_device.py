"""Tenstorrent chips through ttnn: is there one, open the mesh, split it into chips, close it on every exit path.

Whether a chip exists is answered first without ttnn (the kernel driver's ``/dev/tenstorrent/*`` nodes, or a
mock cluster named by ``TT_METAL_MOCK_CLUSTER_DESC_PATH``), then by ttnn itself; so a machine without a card
is refused before ttnn, the model or the tt-metal checkout is touched.

Every function takes the ``ttnn`` module as an argument: the real one in use, a stand-in in unit tests.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..errors import BackendUnavailableError, NoTTDeviceError, TTDeviceError, TTLessonError

DEVICE_NODES = Path("/dev/tenstorrent")
MOCK_CLUSTER_VARIABLE = "TT_METAL_MOCK_CLUSTER_DESC_PATH"

NO_DEVICE = ("No Tenstorrent device found (the kernel driver lists no /dev/tenstorrent/* and ttnn sees no chip): "
             "run on a machine with a Tenstorrent card and its driver (tt-smi -s lists it), "
             "or use --backend torch to render on this machine's CPU or GPU.")
RESET_ADVICE = "run tt-smi -r to reset it, wait until tt-smi -s lists it again, then retry"
# Words in ttnn's errors when a chip did not come up: typically the state a killed process leaves behind.
BAD_STATE_SIGNS = ("timeout", "timed out", "0xffffffff", "failed to initialize", "try resetting", "bad state",
                   "not responding", "hang")


@dataclass(frozen=True)
class Chip:
    """One chip of an opened mesh, as a 1×1 submesh that holds its own model and trace."""

    mesh: object  # ttnn.MeshDevice (1×1)
    number: int  # 0-based among the chips this process uses

    @property
    def name(self) -> str:
        return f"tt:{self.number}"


def driver_sees_a_chip() -> bool:
    """True when the kernel driver lists a device node, or a mock cluster is configured."""
    if os.environ.get(MOCK_CLUSTER_VARIABLE, "").strip():
        return True
    return DEVICE_NODES.is_dir() and any(DEVICE_NODES.iterdir())


def import_ttnn():
    """Import ttnn with tt-metal's own logging quiet (set TT_LOGGER_LEVEL/LOGURU_LEVEL yourself to see it)."""
    os.environ.setdefault("TT_LOGGER_LEVEL", "off")
    os.environ.setdefault("LOGURU_LEVEL", "WARNING")
    try:
        import ttnn
        import ttnn.model_preprocessing  # noqa: F401 (a submodule: not an attribute of ttnn until imported)
    except ImportError as err:
        raise BackendUnavailableError(f"The tt backend needs the ttnn package, which does not import here ({err}); "
                                      "activate tt-metal's python_env, or pip install ttnn.") from None
    return ttnn


def count_chips(ttnn) -> int:
    """Chips ttnn sees; 0 when it reports an empty cluster."""
    try:
        return int(ttnn.get_num_devices())
    except RuntimeError as err:
        if "no chips detected" in str(err).lower() or "num_chips > 0" in str(err):
            return 0
        raise open_error(err) from None


def refuse_unrunnable(problems: list[tuple[str, str]], driver_check=driver_sees_a_chip) -> None:
    """Refuse a run the tt backend cannot make, saying the blocking problem first and every other at once.

    ``problems`` are (sentence, fix) pairs for the request itself (model, size, steps). No device blocks
    everything, so it leads; the others follow as what a machine with a device would also need.
    """
    fixes = " and ".join(fix for _, fix in problems)
    if not driver_check():
        also = f"; on a machine with one, this run would also need {fixes}." if problems else ""
        raise NoTTDeviceError(NO_DEVICE[:-1] + also if also else NO_DEVICE)
    if len(problems) == 1:
        raise BackendUnavailableError(problems[0][0])
    if problems:
        rest = " and ".join(fix for _, fix in problems[1:])
        raise BackendUnavailableError(f"{problems[0][0][:-1]}; this run would also need {rest}.")


def require_chips(ttnn_loader=import_ttnn, driver_check=driver_sees_a_chip) -> tuple[object, int]:
    """(ttnn, number of chips), or ``NoTTDeviceError`` before anything heavy is loaded."""
    if not driver_check():
        raise NoTTDeviceError(NO_DEVICE)
    ttnn = ttnn_loader()
    chips = count_chips(ttnn)
    if chips == 0:
        raise NoTTDeviceError(NO_DEVICE)
    return ttnn, chips


def system_mesh_shape(ttnn, chips: int) -> tuple[int, int]:
    """The host's mesh as ttnn describes it (e.g. (2, 4) on a T3K); (1, chips) where ttnn cannot say."""
    describe = getattr(getattr(getattr(ttnn, "_ttnn", None), "multi_device", None), "SystemMeshDescriptor", None)
    if describe is None:
        return (1, chips)
    try:
        shape = tuple(describe().shape())
    except RuntimeError:
        return (1, chips)
    return (int(shape[0]), int(shape[1])) if len(shape) == 2 else (1, chips)


def arch_name(ttnn) -> str:
    """``wormhole_b0`` or ``blackhole``."""
    return str(ttnn.get_arch_name()).lower()


@contextmanager
def open_mesh(ttnn, *, l1_small_size: int, trace_region_size: int, fabric: str | None = None) -> Iterator[object]:
    """The host's whole mesh, opened once; closed (submeshes first) when the block ends, however it ends."""
    if fabric is not None:
        ttnn.set_fabric_config(getattr(ttnn.FabricConfig, fabric))
    try:
        mesh = ttnn.open_mesh_device(l1_small_size=l1_small_size, trace_region_size=trace_region_size)
    except Exception as err:
        _reset_fabric(ttnn, fabric)
        raise open_error(err) from None
    try:
        yield mesh
    except BaseException:
        _close(ttnn, mesh, fabric, quietly=True)
        raise
    _close(ttnn, mesh, fabric, quietly=False)


def split_into_chips(ttnn, mesh, count: int) -> list[Chip]:
    """The first ``count`` chips of ``mesh``, each a 1×1 submesh (as tt-metal's multi-pipeline code splits it)."""
    submeshes = mesh.create_submeshes(ttnn.MeshShape(1, 1))
    return [Chip(submesh, number) for number, submesh in enumerate(submeshes[:count])]


def open_error(err: BaseException) -> TTLessonError:
    """One sentence for a ttnn failure to open or use a device."""
    text = str(err)
    detail = _detail(text)
    lowered = text.lower()
    if "sfpi" in lowered:
        return TTDeviceError(f"Opening the Tenstorrent device failed because tt-metal's kernel compiler is missing "
                             f"({detail}); install it with python -m ttnn.download_sfpi (pip wheel) or tt-metal's "
                             "install_dependencies.sh, or run inside tt-metal's python_env.")
    if any(sign in lowered for sign in BAD_STATE_SIGNS):
        return TTDeviceError(f"The Tenstorrent device did not respond ({detail}), probably left in a bad state by a "
                             f"killed run: {RESET_ADVICE}.")
    return TTDeviceError(f"The Tenstorrent device failed ({detail}); check it with tt-smi -s, and if a killed run "
                         f"left it in a bad state, {RESET_ADVICE}.")


def _detail(text: str) -> str:
    """The informative line of a ttnn error: the one after ``info:``, else the first."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if "info:" in lines:
        following = lines[lines.index("info:") + 1:]
        if following:
            return following[0]
    return lines[0] if lines else "no message"


def _close(ttnn, mesh, fabric: str | None, quietly: bool) -> None:
    try:
        for submesh in mesh.get_submeshes():
            ttnn.close_mesh_device(submesh)
        ttnn.close_mesh_device(mesh)
    except Exception as err:
        if not quietly:
            raise TTDeviceError(f"Closing the Tenstorrent device failed ({_detail(str(err))}); "
                                f"{RESET_ADVICE}.") from None
    finally:
        _reset_fabric(ttnn, fabric)


def _reset_fabric(ttnn, fabric: str | None) -> None:
    if fabric is not None:
        ttnn.set_fabric_config(ttnn.FabricConfig.DISABLED)

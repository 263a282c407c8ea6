"""Tenstorrent chips through ttnn: is there one, open the mesh, split it into chips, close it on every exit path.

Whether a chip exists is answered first without ttnn (the kernel driver's ``/dev/tenstorrent/*`` nodes, or a
mock cluster named by ``TT_METAL_MOCK_CLUSTER_DESC_PATH``), then by ttnn itself; so a machine without a card
is refused before ttnn, the model or the tt-metal checkout is touched.

tt-metal reads its environment once, when ttnn first looks at the cluster: ``prepare_environment`` sets what
ttlesson needs before that (where tt-metal's log goes, the Galaxy core-grid override), never replacing a value
the user set. tt-metal's own log goes to a file (``TT_LOGGER_FILE``) rather than being silenced, so that a
failure can name it.

Every function takes the ``ttnn`` module as an argument: the real one in use, a stand-in in unit tests.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ... import env
from ...errors import BackendUnavailableError, NoTTDeviceError, Terminated, TTDeviceError, TTLessonError
from ...presenting import lever
from ...tenstorrent.arch import Arch
from ...tenstorrent.presets import TTSystem

DEVICE_NODES = Path("/dev/tenstorrent")
SYSFS_CLASS = Path("/sys/class/tenstorrent")

RESET_ADVICE = "run tt-smi -r to reset it, wait until tt-smi -s lists it again, then retry"
SHARE_ADVICE = ("wait for it to finish (or ask whoever runs it), and never reset a card another process is using; "
                "to share the cards, run ttlesson serve on this host and render with --server")
# Words in ttnn's errors when a chip did not come up: typically the state a killed process leaves behind.
BAD_STATE_SIGNS = ("timeout", "timed out", "0xffffffff", "failed to initialize", "try resetting", "bad state",
                   "not responding", "hang")


def no_device() -> str:
    """The refusal where no chip is found, with the fix for where the learner is."""
    return ("No Tenstorrent device found (the kernel driver lists no /dev/tenstorrent/* and ttnn sees no chip): "
            "run on a machine with a Tenstorrent card and its driver (tt-smi -s lists it), "
            f"or use {lever('backend', 'torch')} to render on this machine's CPU or GPU.")


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
    if env.mock_cluster():
        return True
    return DEVICE_NODES.is_dir() and any(DEVICE_NODES.iterdir())


def prepare_environment(*, log_file: Path | None = None, grid_override: str | None = None) -> Path | None:
    """Set tt-metal's environment before ttnn first looks at the cluster; returns the log file in use (or None).

    The user's own values win: a ``TT_LOGGER_FILE`` already set is the log file, and a core-grid override already
    set stays. tt-metal reads these once per process, when ttnn first looks at the cluster, so after that they no
    longer change anything: when ttnn was imported before ttlesson could set the log file, no log file is claimed.
    """
    os.environ.setdefault(env.LOGURU_LEVEL, "WARNING")  # ttnn's Python logger prints its whole config at DEBUG
    if grid_override:
        os.environ.setdefault(env.GRID_OVERRIDE, grid_override)
    current = os.environ.get(env.LOG_FILE)
    if current:
        return Path(current)
    if log_file is None or "ttnn" in sys.modules:
        return None
    log_file.parent.mkdir(parents=True, exist_ok=True)
    os.environ[env.LOG_FILE] = str(log_file)
    return log_file


def import_ttnn():
    """Import ttnn (and its model_preprocessing submodule); one sentence when it does not import."""
    os.environ.setdefault(env.LOGURU_LEVEL, "WARNING")
    try:
        import ttnn
        import ttnn.model_preprocessing  # noqa: F401 (a submodule: not an attribute of ttnn until imported)
    except ImportError as err:
        raise BackendUnavailableError(f"The tt backend needs the ttnn package, which does not import here ({err}); "
                                      "activate tt-metal's python_env, or pip install ttnn.") from err
    return ttnn


def galaxy_arch_before_ttnn(sysfs_class: Path = SYSFS_CLASS) -> Arch | None:
    """The chips' architecture when this host is a Galaxy, told without ttnn (the kernel driver's card types,
    or the board types of a mock cluster descriptor); None otherwise. The core-grid override must be set before
    ttnn starts, so this cannot wait for ttnn's own answer."""
    mock = env.mock_cluster()
    if mock:
        try:
            text = Path(mock).read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None
        boards = set(re.findall(r"board_type:\s*([A-Za-z0-9_]+)", text))
    else:
        boards = set()
        for entry in sysfs_class.glob("tenstorrent!*"):
            try:
                boards.add((entry / "tt_card_type").read_text().strip().lower())
            except OSError:
                continue
    if boards & {"ubb_blackhole", "galaxy-blackhole", "tt-galaxy-bh"}:
        return Arch.BLACKHOLE
    if boards & {"ubb", "ubb_wormhole", "galaxy-wormhole", "tt-galaxy-wh"}:
        return Arch.WORMHOLE
    return None


def count_chips(ttnn) -> int:
    """Chips ttnn sees; 0 when it reports an empty cluster."""
    try:
        return int(ttnn.get_num_devices())
    except RuntimeError as err:
        if "no chips detected" in str(err).lower() or "num_chips > 0" in str(err):
            return 0
        raise open_error(err) from err


def refuse_unrunnable(problems: list[tuple[str, str]], driver_check=driver_sees_a_chip) -> None:
    """Refuse a run the tt backend cannot make, saying the blocking problem first and every other at once.

    ``problems`` are (sentence, fix) pairs for the request itself (model, size, steps). No device blocks
    everything, so it leads; the others follow as what a machine with a device would also need.
    """
    fixes = " and ".join(fix for _, fix in problems)
    if not driver_check():
        also = f"; on a machine with one, this run would also need {fixes}." if problems else ""
        raise NoTTDeviceError(no_device()[:-1] + also if also else no_device())
    if len(problems) == 1:
        raise BackendUnavailableError(problems[0][0])
    if problems:
        rest = " and ".join(fix for _, fix in problems[1:])
        raise BackendUnavailableError(f"{problems[0][0][:-1]}; this run would also need {rest}.")


def other_holders():
    """Other processes holding a Tenstorrent card open (the kernel driver's list; empty without a card)."""
    from ...machine import device_holders

    return device_holders()


def claim_cards(devices: int | str, chips_per_card: dict[int, int] | None = None) -> list[int] | None:
    """Before ttnn opens anything: refuse, naming the holder, a card another process has open; and when fewer
    devices are asked for than the host has, show ttnn only enough free cards for them (``TT_VISIBLE_DEVICES``),
    so ``--devices 1`` opens one card, not the whole system. Returns the cards shown (None: ttnn's own choice).

    ``chips_per_card``: each card's chip count (the kernel driver's board types; an N300 has two chips)."""
    cards = chips_per_card if chips_per_card is not None else _cards_here()
    if not cards:
        return None  # no kernel driver list (a stand-in, a mock cluster): nothing to claim
    visible = env.text(env.VISIBLE_DEVICES)
    chosen_already = [int(card) for card in re.findall(r"\d+", visible)] if visible else None
    held = {holder.chip: holder for holder in other_holders()}
    wanted = sorted(cards) if chosen_already is None else chosen_already
    if devices != "all" and chosen_already is None:
        free = [card for card in sorted(cards) if card not in held]
        picked, chips = [], 0
        for card in free:
            if chips >= int(devices):
                break
            picked.append(card)
            chips += cards[card]
        if chips >= int(devices) and len(picked) < len(cards):
            os.environ[env.VISIBLE_DEVICES] = ",".join(map(str, picked))
            return picked
    busy = [held[card] for card in wanted if card in held]
    if busy:
        raise TTDeviceError(f"The Tenstorrent card this render needs is in use: {busy[0]}; "
                            f"{SHARE_ADVICE}.")
    return chosen_already


def _cards_here() -> dict[int, int]:
    from ...machine.driver import pcie_devices

    return pcie_devices()


def require_chips(ttnn_loader=import_ttnn, driver_check=driver_sees_a_chip) -> tuple[object, int]:
    """(ttnn, number of chips), or ``NoTTDeviceError`` before anything heavy is loaded."""
    if not driver_check():
        raise NoTTDeviceError(no_device())
    ttnn = ttnn_loader()
    chips = count_chips(ttnn)
    if chips == 0:
        raise NoTTDeviceError(no_device())
    return ttnn, chips


def describe_system(ttnn, chips: int) -> TTSystem:
    """The host's chips as ttnn describes them: architecture, count and system mesh shape (e.g. 2×4 on a T3K)."""
    return TTSystem(arch_name(ttnn), chips, system_mesh_shape(ttnn, chips))


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


def arch_name(ttnn) -> Arch:
    """The chips' architecture, from ttnn's name for it (``wormhole_b0`` or ``blackhole``)."""
    said = str(ttnn.get_arch_name())
    arch = Arch.parse(said)
    if arch is None:
        raise BackendUnavailableError(f"ttnn reports chips of architecture {said!r}, which the tt backend has no "
                                      f"presets for; use {lever('backend', 'torch')}.")
    return arch


def compute_grid(mesh) -> tuple[int, int]:
    """A (sub)mesh's compute grid, e.g. (8, 8) for an N150 chip."""
    size = mesh.compute_with_storage_grid_size()
    return int(size.x), int(size.y)


@contextmanager
def open_mesh(ttnn, *, mesh_shape: tuple[int, int], l1_small_size: int, trace_region_size: int,
              fabric: str | None = None, log_file: Path | None = None) -> Iterator[object]:
    """A mesh of ``mesh_shape`` chips, opened once; closed (submeshes first) when the block ends, however it ends.

    The shape is always given: the system mesh ttnn would choose is not always the shape a model expects (a Galaxy
    is 8×4 to ttnn and 4×8 to tt_dit).
    """
    if fabric is not None:
        ttnn.set_fabric_config(getattr(ttnn.FabricConfig, fabric))
    try:
        mesh = ttnn.open_mesh_device(mesh_shape=ttnn.MeshShape(*mesh_shape), l1_small_size=l1_small_size,
                                     trace_region_size=trace_region_size)
    except Exception as err:
        _reset_fabric(ttnn, fabric)
        raise open_error(err, log_file) from err
    try:
        yield mesh
    except BaseException:
        close_mesh(ttnn, mesh, fabric, quietly=True)
        raise
    close_mesh(ttnn, mesh, fabric, quietly=False)


def split_into_chips(ttnn, mesh, count: int, first: int = 0) -> list[Chip]:
    """The first ``count`` chips of ``mesh``, each a 1×1 submesh (as tt-metal's multi-pipeline code splits it),
    numbered from ``first``."""
    submeshes = mesh.create_submeshes(ttnn.MeshShape(1, 1))
    return [Chip(submesh, first + number) for number, submesh in enumerate(submeshes[:count])]


def close_mesh(ttnn, mesh, fabric: str | None = None, quietly: bool = False) -> None:
    """Close every submesh, then the mesh, then reset the fabric: each step runs even when an earlier one raised.

    The first failure is raised afterwards as one sentence (unless ``quietly``: an exception is already on its way).
    """
    failures: list[BaseException] = []
    for submesh in _submeshes(mesh, failures):
        _attempt(failures, ttnn.close_mesh_device, submesh)
    _attempt(failures, ttnn.close_mesh_device, mesh)
    _attempt(failures, _reset_fabric, ttnn, fabric)
    if failures and not quietly:
        raise TTDeviceError(f"Closing the Tenstorrent device failed ({_detail(str(failures[0]))}); "
                            f"{RESET_ADVICE}.") from failures[0]


def _submeshes(mesh, failures: list[BaseException]) -> list:
    try:
        return list(mesh.get_submeshes())
    except Exception as err:
        failures.append(err)
        return []


def _attempt(failures: list[BaseException], action, *args) -> None:
    try:
        action(*args)
    except Exception as err:
        failures.append(err)


def open_error(err: BaseException, log_file: Path | None = None) -> TTLessonError:
    """One sentence for a ttnn failure to open or use a device (naming tt-metal's log file when there is one)."""
    text = str(err)
    detail = _detail(text)
    lowered = text.lower()
    log = f" (tt-metal's log: {log_file})" if log_file else ""
    if "sfpi" in lowered:
        return TTDeviceError(f"Opening the Tenstorrent device failed because tt-metal's kernel compiler is missing "
                             f"({detail}){log}; install it with python -m ttnn.download_sfpi (pip wheel) or "
                             "tt-metal's install_dependencies.sh, or run inside tt-metal's python_env.")
    holders = other_holders()
    if holders:
        return TTDeviceError(f"The Tenstorrent device failed ({detail}){log} while another process holds it: "
                             f"{holders[0]}; {SHARE_ADVICE}.")
    if any(sign in lowered for sign in BAD_STATE_SIGNS):
        return TTDeviceError(f"The Tenstorrent device did not respond ({detail}){log}, probably left in a bad state "
                             f"by a killed run: {RESET_ADVICE}.")
    return TTDeviceError(f"The Tenstorrent device failed ({detail}){log}; check it with tt-smi -s, and if a killed "
                         f"run left it in a bad state, {RESET_ADVICE}.")


def _detail(text: str) -> str:
    """The informative line of a ttnn error: the one after ``info:``, else the first."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if "info:" in lines:
        following = lines[lines.index("info:") + 1:]
        if following:
            return following[0]
    return lines[0] if lines else "no message"


def _reset_fabric(ttnn, fabric: str | None) -> None:
    if fabric is not None:
        ttnn.set_fabric_config(ttnn.FabricConfig.DISABLED)


# --- SIGTERM closes the device like Ctrl-C ---------------------------------------------------------------

class TerminationGuard:
    """While a tt backend holds the device (its ``session.DeviceSession`` is open), SIGTERM (a job scheduler,
    ``kill``, a notebook kernel being shut down) releases traces and closes the device instead of killing the
    process with the chips open.

    While the backend is working (``busy``), SIGTERM raises ``Terminated`` where the main thread is, so the same
    paths that handle Ctrl-C close everything, and only whole frames stay on disk. While it is idle (a notebook
    holding an open backend between cells), the handler closes the session itself and then lets SIGTERM do what
    it did before (by default: end the process). Only the main thread can install signal handlers; elsewhere
    this does nothing.
    """

    def __init__(self, close):
        self._close = close
        self._previous = None
        self._installed = False
        self.busy = 0

    def install(self) -> None:
        if self._installed or threading.current_thread() is not threading.main_thread():
            return
        self._previous = signal.signal(signal.SIGTERM, self._on_sigterm)
        self._installed = True

    def remove(self) -> None:
        if not self._installed:
            return
        self._installed = False
        if signal.getsignal(signal.SIGTERM) == self._on_sigterm:
            signal.signal(signal.SIGTERM, self._previous if self._previous is not None else signal.SIG_DFL)

    @contextmanager
    def working(self) -> Iterator[None]:
        self.busy += 1
        try:
            yield
        finally:
            self.busy -= 1

    def _on_sigterm(self, number, frame) -> None:
        if self.busy:
            raise Terminated("terminated (SIGTERM)")
        previous = self._previous
        self._close()  # removes this handler
        if callable(previous):
            previous(number, frame)
        elif previous != signal.SIG_IGN:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)

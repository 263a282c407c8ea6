"""``ttlesson doctor``: the lesson's Step 1 as a checklist, each line ok / warn / fail with the exact fix.

Needs nothing beyond the package's base dependencies and imports none of the heavy ones: versions come from
package metadata, Tenstorrent cards from the kernel driver, ttnn from its install record. ``ttnn=True`` also
imports ttnn in a child process and asks it for chips (seconds).

On a machine with no Tenstorrent card and nothing of a Tenstorrent set-up (a laptop, a GPU box), the checks in
``TENSTORRENT_ONLY`` would fail on every run without anything to fix: they stand down as one ``n/a`` line, and the
verdict is about the CPU/GPU fallback. ``tt=True`` (``ttlesson doctor --tt``) runs them anyway.
"""

from __future__ import annotations

import html
import json
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, replace
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from .. import env, machine
from ..machine.host import read_text
from ..presenting import lever
from ..tenstorrent import boards
from ..tenstorrent.arch import Arch
from ..tenstorrent.checkout import SD14_FOLDERS
from . import hf

OK, WARN, FAIL, NOT_APPLICABLE = "ok", "warn", "fail", "n/a"
TENSTORRENT_SETUP = "Tenstorrent set-up"  # the one line that stands for TENSTORRENT_ONLY on a machine without a card
TENSTORRENT_PCI_VENDOR = "0x1e52"  # in /sys/bus/pci/devices/*/vendor: a card shows there before tt-kmd is loaded
TT_METAL_CLONE = ("git clone --recurse-submodules https://github.com/tenstorrent/tt-metal.git ~/tt-metal && "
                  "cd ~/tt-metal && ./build_metal.sh && ./create_venv.sh")
GIB = 1024 ** 3
# Memory a model needs to make frames with the torch backend on a CPU (float32 weights and 512² activations):
# SD 1.4 holds 1.07 B parameters (4.3 GB); SD 3.5 Large about 13 B with its T5-XXL text encoder (52 GB).
MODEL_MEMORY_GIB = {"tiny": 1, "tiny-random": 1, "sd14": 6, "sd35-large": 60}

# Where each problem is explained, with what ttlesson checks and the commands to run by hand.
TROUBLESHOOTING = "notebooks/09_troubleshooting.ipynb"
SLOW, RESET, MODULES, HUGGING_FACE, DISPATCH, MEMORY = (
    "Slow generation", "Device in a bad state", "Module not found", "Hugging Face login", "Dispatch error on Blackhole",
    "Out of memory")


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # ok, warn, fail, or n/a (the Tenstorrent set-up on a machine without a card)
    detail: str
    fix: str = ""
    see: str = ""  # the section of the troubleshooting notebook that explains this line

    @property
    def see_link(self) -> str:
        """``notebooks/09_troubleshooting.ipynb#Slow-generation``: where ``see`` is, as a link."""
        return f"{TROUBLESHOOTING}#{self.see.replace(' ', '-')}" if self.see else ""


@dataclass
class DoctorReport:
    checks: list[Check]
    seconds: float = 0.0
    heading: str = ""  # set on a section (``section``): shown without the overall verdict
    tenstorrent: bool = True  # the Tenstorrent set-up was checked (False: no card here, one n/a line stands for it)

    def section(self, see: str) -> DoctorReport:
        """The lines that the troubleshooting notebook's section ``see`` is about; on a machine without a card, the
        n/a line stands for the section's Tenstorrent checks."""
        return DoctorReport([check for check in self.checks if _about(check, see)], heading=see,
                            tenstorrent=self.tenstorrent)

    @property
    def ok(self) -> bool:
        """No check failed (warnings allowed)."""
        return all(check.status != FAIL for check in self.checks)

    def counts(self) -> dict[str, int]:
        return {status: sum(check.status == status for check in self.checks) for status in (OK, WARN, FAIL)}

    def verdict(self) -> str:
        counts = self.counts()
        return f"{counts[OK]} ok, {counts[WARN]} warn, {counts[FAIL]} fail: {self._conclusion()}."

    def _conclusion(self) -> str:
        if not self.tenstorrent:
            fallback = ("no Tenstorrent card here, so the lesson runs on the CPU/GPU fallback "
                        f"({lever('backend', 'torch')})")
            return f"{fallback}, and it is ready" if self.ok else f"{fallback} once the failed lines are fixed"
        if self.ok:
            return "ready for the lesson on Tenstorrent hardware"
        return ("fix the failed lines to run the lesson on Tenstorrent hardware; the CPU fallback "
                f"({lever('backend', 'torch')}) works without them")

    def to_dict(self) -> dict:
        return {"ok": self.ok, "counts": self.counts(), "tenstorrent_checked": self.tenstorrent,
                "checks": [asdict(check) for check in self.checks], "summary": self.verdict(),
                "seconds": round(self.seconds, 3)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def __str__(self) -> str:
        lines = []
        for check in self.checks:
            lines.append(f"[{check.status:^4}] {check.name}: {check.detail}")
            if check.fix:
                lines.append(f"       fix: {check.fix}")
            if check.see and check.status != OK and not self.heading:
                lines.append(f"       see: {TROUBLESHOOTING}, \"{check.see}\"")
        return "\n".join(lines + ([] if self.heading else [self.verdict()]))

    def _repr_html_(self) -> str:
        colours = {OK: "#2e7d32", WARN: "#b26a00", FAIL: "#c62828", NOT_APPLICABLE: "#757575"}
        # A section is already where the links lead; elsewhere the column shows only when a line has a link.
        links = not self.heading and any(_see_html(check) for check in self.checks)
        rows = "".join(
            f"<tr><td style='color:{colours[check.status]};font-weight:bold'>{check.status}</td>"
            f"<td style='text-align:left'>{html.escape(check.name)}</td>"
            f"<td style='text-align:left'>{html.escape(check.detail)}</td>"
            f"<td style='text-align:left'>{f'<code>{html.escape(check.fix)}</code>' if check.fix else ''}</td>"
            + (f"<td style='text-align:left'>{_see_html(check)}</td>" if links else "") + "</tr>"
            for check in self.checks)
        help_column = "<th>help</th>" if links else ""
        table = f"<table><tr><th></th><th>check</th><th>found</th><th>fix</th>{help_column}</tr>{rows}</table>"
        return table if self.heading else f"{table}<p><b>{html.escape(self.verdict())}</b></p>"


def _see_html(check: Check) -> str:
    """The link to ``check``'s troubleshooting section, for a line that is not ok."""
    if not check.see or check.status == OK:
        return ""
    # Notebooks sit side by side, so the link is relative to this one's folder.
    target = check.see_link.split("/", 1)[1]
    return f"<a href='{html.escape(target)}'>{html.escape(check.see)}</a>"


def run(*, ttnn: bool = False, tt: bool = False, host: machine.HostPaths | None = None,
        prefix: Path | None = None) -> DoctorReport:
    """Run every check. ``ttnn=True`` also imports ttnn (in a child process) and asks it for chips.

    On a machine with no Tenstorrent card and no sign of a Tenstorrent set-up, the ``TENSTORRENT_ONLY`` checks are
    one n/a line; ``tt=True`` (or ``ttnn=True``, which asks a Tenstorrent question) shows them anyway.

    ``host`` (the roots of /sys, /dev, /proc, /opt, home) and ``prefix`` (the Python environment's) stand for
    this machine unless given: tests point them at fake trees.
    """
    started = time.perf_counter()
    host = host or machine.HostPaths()
    environment = machine.recognise(prefix, host)
    cards, driver = machine.read_kernel_driver(None, host)
    home, found_by = _tt_metal_home(environment)
    checks = [
        check_tenstorrent_device(cards, driver),
        check_kernel_driver(host),
        check_device_holders(host),
        check_frames_made_on(cards),
        check_tt_smi(host, environment.prefix),
        check_python(),
        check_environment(environment),
        check_tt_metal_home(home, found_by),
        check_runtime_root(environment),
        check_python_env(home, environment),
        check_pythonpath(home),
        check_tt_metal_models(home),
        check_arch_name(cards),
        check_ttnn(ttnn),
        check_tt_versions(),
        check_ffmpeg(),
        check_memory(),
        check_work_disk(),
        check_model_disk(),
        check_hugging_face(),
        *[check_package(name) for name in ("torch", "diffusers", "transformers")],
    ]
    checks = [replace(check, see=check.see or SEE.get(check.name, "")) for check in checks]
    tenstorrent = tt or ttnn or tenstorrent_machine(cards, host, environment, home)
    if not tenstorrent:
        checks = [tenstorrent_not_checked(host), *[check for check in checks if check.name not in TENSTORRENT_ONLY]]
    return DoctorReport(checks=checks, seconds=time.perf_counter() - started, tenstorrent=tenstorrent)


# Each line's section of the troubleshooting notebook.
SEE = {"Tenstorrent device": SLOW, "kernel driver": SLOW, "devices free": RESET, "frames made on": SLOW,
       "tt-smi": RESET, "Python": MODULES, "Python environment": MODULES, "TT_METAL_RUNTIME_ROOT": MODULES,
       "TT_METAL_HOME": MODULES, "tt-metal python_env": MODULES, "PYTHONPATH": MODULES,
       "tt-metal models package": MODULES, "ttnn": MODULES, "torch": MODULES, "diffusers": MODULES,
       "transformers": MODULES, "TT_METAL_ARCH_NAME": DISPATCH, "memory": MEMORY, "Hugging Face": HUGGING_FACE}

# The checks that matter only where frames are made on Tenstorrent hardware (the driver and the chips, tt-smi,
# tt-metal and its environment, ttnn), and the troubleshooting sections they belong to.
TENSTORRENT_ONLY = frozenset({
    "Tenstorrent device", "kernel driver", "devices free", "tt-smi", "Python environment", "TT_METAL_HOME",
    "TT_METAL_RUNTIME_ROOT", "tt-metal python_env", "PYTHONPATH", "tt-metal models package", "TT_METAL_ARCH_NAME",
    "ttnn", "ttnn and tt-metal"})
TENSTORRENT_SECTIONS = frozenset(SEE[name] for name in TENSTORRENT_ONLY if name in SEE)


def _about(check: Check, see: str) -> bool:
    """Whether ``check`` belongs to the troubleshooting section ``see`` (the n/a line to each of its sections)."""
    return see in TENSTORRENT_SECTIONS if check.name == TENSTORRENT_SETUP else check.see == see


def tenstorrent_machine(cards: list[boards.Card], host: machine.HostPaths, environment: machine.PythonEnvironment,
                        home: Path | None) -> bool:
    """Whether this machine has, or is being set up for, Tenstorrent hardware: a card the kernel driver lists (even
    one this container was not given), a Tenstorrent device on the PCI bus, tt-kmd loaded, a tt-metal checkout or
    one of the lesson's Tenstorrent environments, or TT_METAL_RUNTIME_ROOT / TT_METAL_ARCH_NAME set.

    Any of these keeps every Tenstorrent check, so that a card that does not show still fails "Tenstorrent device".
    """
    return bool(cards or any(host.tenstorrent_class.glob("tenstorrent!*")) or _tenstorrent_on_pci_bus(host)
                or machine.driver_version(host) or home is not None or environment.recognised
                or environment.runtime_root is not None or env.text(env.TT_METAL_ARCH_NAME))


def _tenstorrent_on_pci_bus(host: machine.HostPaths) -> bool:
    vendors = (host.sys / "bus" / "pci" / "devices").glob("*/vendor")
    return any((read_text(vendor) or "").lower() == TENSTORRENT_PCI_VENDOR for vendor in vendors)


def tenstorrent_not_checked(host: machine.HostPaths) -> Check:
    """The one line that stands for the Tenstorrent checks on a machine without a card."""
    return Check(TENSTORRENT_SETUP, NOT_APPLICABLE,
                 f"not checked: no Tenstorrent card on this machine (none in {host.device_nodes} or on the PCI bus) "
                 f"and no tt-metal set-up. These {len(TENSTORRENT_ONLY)} checks (kernel driver, tt-smi, "
                 "TT_METAL_HOME, python_env, PYTHONPATH, TT_METAL_ARCH_NAME, ttnn…) matter only on a machine with a "
                 "card: ttlesson doctor --tt shows them")


def check_frames_made_on(cards: list[boards.Card]) -> Check:
    """Where frames will be made now, and where the work folder's last frames were made (slow means CPU)."""
    name = "frames made on"
    backend = machine.auto_backend()
    last = _last_render_devices()
    if backend == "tt":
        made = f"; the work folder's frames were made on {last}" if last else ""
        return Check(name, OK, f"Tenstorrent ({len(cards)} card{'s' if len(cards) != 1 else ''}){made}")
    gpus, _ = machine.find_nvidia_gpus()
    torch = machine.torch_info()
    where = f"the {gpus[0]} GPU" if gpus and torch.cuda else "the CPU"
    made = f"; the work folder's frames were made on {last}" if last else ""
    why = "no Tenstorrent device" if not cards else "ttnn is not installed in this Python"
    slow = " (real SD 1.4 takes minutes per frame there)" if where == "the CPU" else ""
    fix = ("run ttlesson from the environment that has ttnn (see the lines below)" if cards
           else "expected without a Tenstorrent card: TTLESSON_MODEL=tiny, TTLESSON_STEPS or TTLESSON_SIZE make it "
                "quicker")
    return Check(name, WARN, f"{where}, not Tenstorrent hardware: {why}{slow}{made}", fix)


def _last_render_devices() -> str:
    """The devices that made the work folder's frames, from its manifest ('' when there is none)."""
    from .. import manifest

    folder = env.workdir()
    try:
        book = manifest.load(folder)
    except Exception:  # a damaged manifest is the render's business, not the checklist's
        return ""
    if book is None or not book.frames:
        return ""
    return ", ".join(sorted({record.device or "an unrecorded device" for record in book.frames.values()}))


def check_python() -> Check:
    """Which Python runs ttlesson, and in which virtual environment: the lesson's "which python3"."""
    version = ".".join(map(str, sys.version_info[:3]))
    if sys.prefix != sys.base_prefix:
        where = f"virtual environment {sys.prefix}"
    elif os.environ.get("CONDA_PREFIX") and _same_path(Path(os.environ["CONDA_PREFIX"]), Path(sys.prefix)):
        where = f"conda environment {sys.prefix}"
    else:
        where = "no virtual environment"
    return Check("Python", OK, f"{version} at {sys.executable} ({where}); a notebook's kernel is the Python that "
                 "runs it, which may differ from the terminal's python3")


def check_tt_metal_models(home: Path | None) -> Check:
    """tt-metal's ``models`` package must come from the checkout: the lesson's "module not found"."""
    from importlib.machinery import PathFinder

    name = "tt-metal models package"
    if home is None:
        return Check(name, WARN, "not checked: TT_METAL_HOME is not set", "set TT_METAL_HOME first (see above)")
    # What a Python started from this shell would search: PYTHONPATH as it is now, then this interpreter's path.
    search = [entry for entry in os.environ.get("PYTHONPATH", "").split(os.pathsep) if entry] + sys.path
    try:
        spec = PathFinder.find_spec("models", [entry or os.getcwd() for entry in search])
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        # ttlesson's tt backend imports the checkout's models itself; the lesson's pytest demo and a by-hand
        # "import models" need PYTHONPATH.
        return Check(name, WARN, "import models would fail (ModuleNotFoundError) in a Python started here: no "
                     "PYTHONPATH or sys.path entry holds it (ttlesson finds the checkout itself; the lesson's "
                     "pytest demo needs it)",
                     "export PYTHONPATH=$TT_METAL_HOME:$PYTHONPATH, then restart Python (or the notebook's kernel)")
    folders = [Path(folder) for folder in (spec.submodule_search_locations or [])]
    if folders and not any(_same_path(folder, home / "models") for folder in folders):
        return Check(name, FAIL, f"models is found at {folders[0]}, not in {home}: another package of that name "
                     "comes first", "put $TT_METAL_HOME first: export PYTHONPATH=$TT_METAL_HOME:$PYTHONPATH")
    return Check(name, OK, f"{home / 'models'}")


def check_memory(model: str | None = None) -> Check:
    """Memory against what the model in use needs on a CPU: a render that runs out is killed mid-frame."""
    name = "memory"
    model = model or env.text(env.MODEL) or "sd14"
    need = MODEL_MEMORY_GIB.get(model)
    total, available = _memory_gib()
    if total is None:
        return Check(name, OK, "not known on this system (no /proc/meminfo)")
    detail = f"{available:.1f} of {total:.1f} GiB available"
    if need is None:
        return Check(name, OK, f"{detail}; the need of model {model} is not known")
    need_text = f"{model} needs about {need} GiB to make frames on a CPU"
    if total < need:
        return Check(name, FAIL, f"{detail}; {need_text}",
                     "use a machine with more memory, a smaller model (TTLESSON_MODEL=sd14 or tiny), or a GPU / "
                     "Tenstorrent device")
    if available < need:
        return Check(name, WARN, f"{detail}; {need_text}",
                     "close other programs, or shut down other notebooks' kernels (each holds its own model): "
                     "Kernel > Shut Down All Kernels")
    return Check(name, OK, f"{detail}; {need_text}")


def _memory_gib() -> tuple[float | None, float]:
    from ..backends.torch.memory import meminfo

    counters = {key: value / 1024 ** 3 for key, value in meminfo().items()}
    if not counters:
        return None, 0.0
    return counters.get("MemTotal"), counters.get("MemAvailable", counters.get("MemFree", 0.0))


def check_tenstorrent_device(cards: list[boards.Card], driver: machine.SourceAnswer) -> Check:
    name = "Tenstorrent device"
    if cards:
        listed = ", ".join(map(str, cards))
        mesh, _ = boards.mesh_device_for(cards)
        return Check(name, OK, f"{listed}" + (f"; MESH_DEVICE={mesh}" if mesh else ""))
    return Check(name, FAIL, f"none: {driver.summary}",
                 "install the card and its kernel driver (https://github.com/tenstorrent/tt-kmd), then check "
                 f"with tt-smi; without one, frames are made on the CPU ({lever('backend', 'torch')})")


def check_kernel_driver(host: machine.HostPaths | None = None) -> Check:
    """The loaded tt-kmd's version (``/sys/module/tenstorrent/version``)."""
    version = machine.driver_version(host)
    if version:
        return Check("kernel driver", OK, f"tt-kmd {version}")
    return Check("kernel driver", FAIL, "not loaded (/sys/module/tenstorrent/version is missing)",
                 "install tt-kmd (https://github.com/tenstorrent/tt-kmd, or tt-installer), then sudo modprobe "
                 f"tenstorrent; without it, frames are made on the CPU ({lever('backend', 'torch')})")


def check_device_holders(host: machine.HostPaths | None = None) -> Check:
    """Processes that hold a chip open (``/proc/driver/tenstorrent/<n>/pids``): such a chip cannot be opened."""
    holders = machine.device_holders(host)
    if not holders:
        return Check("devices free", OK, "no other process holds a Tenstorrent chip")
    pids = " ".join(str(pid) for pid in sorted({holder.pid for holder in holders}))
    return Check("devices free", FAIL, "; ".join(map(str, holders)),
                 f"let that run finish or stop it (kill {pids}); if the chip stays busy once it is gone, tt-smi -r")


def check_tt_smi(host: machine.HostPaths | None = None, prefix: Path | None = None) -> Check:
    found, on_path = machine.find_tt_smi(host, prefix)
    if found and on_path:
        return Check("tt-smi", OK, str(found))
    if found:
        return Check("tt-smi", OK, f"{found} (in {found.parent.parent}, not on PATH: to run it by hand, "
                     f"export PATH={found.parent}:$PATH)")
    return Check("tt-smi", WARN, "not on PATH nor in tt-metal's python_env, ~/.tenstorrent-venv or /opt/venv-metal "
                 "(the lesson reads it, and tt-smi -r resets a stuck device)", "pip install tt-smi")


def check_environment(environment: machine.PythonEnvironment) -> Check:
    """Which of the lesson's Python environments this is: tt-metal's python_env, the tt-installer venv, the cloud
    image's venv, or another."""
    name = "Python environment"
    if environment.recognised:
        return Check(name, OK, str(environment))
    return Check(name, WARN, f"{environment.prefix} is not one of the environments the lesson sets up (tt-metal's "
                 "python_env, ~/.tenstorrent-venv, /opt/venv-metal); fine if ttnn imports here",
                 "source $TT_METAL_HOME/python_env/bin/activate (or ~/.tenstorrent-venv/bin/activate), then run "
                 "ttlesson from there; for notebooks: ttlesson kernel install")


def _tt_metal_home(environment: machine.PythonEnvironment) -> tuple[Path | None, str]:
    """The checkout the tt backend would import model code from, and how it was found."""
    from ..tenstorrent.checkout import checkout_candidates

    candidates = checkout_candidates(environment.prefix)
    return candidates[0] if candidates else (None, "TT_METAL_HOME")


def check_runtime_root(environment: machine.PythonEnvironment) -> Check:
    """Newer tt-metal reads TT_METAL_RUNTIME_ROOT (its runtime files: tt_metal/ and kernels) next to TT_METAL_HOME."""
    name = "TT_METAL_RUNTIME_ROOT"
    root = environment.runtime_root
    if root is None:
        return Check(name, OK, "not set (only newer tt-metal reads it; TT_METAL_HOME or the ttnn package is used)")
    if not (root / "tt_metal").is_dir():
        return Check(name, FAIL, f"{root} has no tt_metal/ folder, so tt-metal will not find its runtime files",
                     "export TT_METAL_RUNTIME_ROOT=<your tt-metal checkout or install>, or unset it")
    return Check(name, OK, str(root))


def check_tt_metal_home(home: Path | None, found_by: str = "TT_METAL_HOME") -> Check:
    name = "TT_METAL_HOME"
    if home is None:
        return Check(name, FAIL, "not set, and no tt-metal checkout found (TT_METAL_RUNTIME_ROOT, the active "
                     "python_env, PYTHONPATH)", f"{TT_METAL_CLONE} && export TT_METAL_HOME=~/tt-metal")
    if not (home / "tt_metal").is_dir() or not (home / "ttnn").is_dir():
        return Check(name, FAIL, f"{home} is not a tt-metal checkout (no tt_metal/ and ttnn/ folders in it)",
                     f"export TT_METAL_HOME=<your tt-metal checkout>, or: {TT_METAL_CLONE}")
    found = next((location for location in SD14_FOLDERS.values() if (home / location / "demo" / "demo.py").is_file()),
                 None)
    if found is None:
        return Check(name, FAIL, f"{home} has no Stable Diffusion 1.4 demo at {' or '.join(SD14_FOLDERS.values())}",
                     f"update the checkout: git -C {home} pull && git -C {home} submodule update --recursive, "
                     "then rebuild (./build_metal.sh)")
    via = "" if found_by == "TT_METAL_HOME" else f" (found through {found_by})"
    return Check(name, OK, f"{home}{via}, SD 1.4 demo in {found}")


def check_python_env(home: Path | None, environment: machine.PythonEnvironment | None = None) -> Check:
    name = "tt-metal python_env"
    environment = environment or machine.recognise()
    if environment.kind in (machine.INSTALLER, machine.CLOUD):
        return Check(name, OK, f"not needed: this is the {environment}")
    if environment.kind == machine.SOURCE_BUILD:
        return Check(name, OK, f"active ({environment.prefix})")
    if home is None:
        return Check(name, WARN, "not checked: TT_METAL_HOME is not set", "set TT_METAL_HOME first (see above)")
    env = home / "python_env"
    if not (env / "bin" / "python").exists():
        return Check(name, FAIL, f"{env} does not exist", f"cd {home} && ./create_venv.sh")
    if _same_path(Path(sys.prefix), env):
        return Check(name, OK, f"active ({sys.prefix})")
    return Check(name, FAIL, f"not active: this Python is {sys.prefix}",
                 f"source {env}/bin/activate && pip install ttlesson there, then run ttlesson from it")


def check_pythonpath(home: Path | None) -> Check:
    name = "PYTHONPATH"
    if home is None:
        return Check(name, WARN, "not checked: TT_METAL_HOME is not set", "set TT_METAL_HOME first (see above)")
    entries = [entry for entry in os.environ.get("PYTHONPATH", "").split(os.pathsep) if entry]
    if any(_same_path(Path(entry), home) for entry in entries):
        return Check(name, OK, f"includes {home}")
    return Check(name, WARN, f"does not include {home}: ttlesson finds tt-metal's models there itself, but the "
                 "lesson's own pytest demo needs it", "export PYTHONPATH=$TT_METAL_HOME:$PYTHONPATH")


def _same_path(first: Path, second: Path) -> bool:
    try:
        return first.expanduser().resolve() == second.expanduser().resolve()
    except OSError:
        return False


def check_arch_name(cards: list[boards.Card]) -> Check:
    name = "TT_METAL_ARCH_NAME"
    value = env.text(env.TT_METAL_ARCH_NAME)
    arches = {card.arch for card in cards}
    if Arch.BLACKHOLE in arches:
        if value == Arch.BLACKHOLE.metal_name:
            return Check(name, OK, "blackhole, as Blackhole cards need")
        return Check(name, FAIL, f"{value or 'unset'}, but this machine has Blackhole cards",
                     "export TT_METAL_ARCH_NAME=blackhole")
    if value == Arch.BLACKHOLE.metal_name and Arch.WORMHOLE in arches:
        return Check(name, FAIL, "blackhole, but this machine has Wormhole cards", "unset TT_METAL_ARCH_NAME")
    return Check(name, OK, f"{value or 'unset'} (not needed: no Blackhole card)")


def check_ttnn(ask: bool) -> Check:
    name = "ttnn"
    info = machine.ttnn_install_info()
    fix = ("activate tt-metal's python_env (it holds the ttnn built with tt-metal), or pip install ttnn "
           "(Linux x86_64, Python 3.10 or 3.12)")
    if not info.installed:
        return Check(name, FAIL, "not importable" + (f": {info.problem}" if info.problem else ""), fix)
    if not ask:
        version = info.version or "version unknown"
        return Check(name, OK, f"{version} at {info.location}; import not tried (ttlesson doctor --ttnn tries it)")
    info, _, _ = machine.read_ttnn(True, env.mock_cluster())
    if info.imports is not True:
        return Check(name, FAIL, str(info), fix)
    return Check(name, OK if info.problem is None else WARN, str(info))


def check_tt_versions() -> Check:
    """Which ttnn and which tt-metal checkout the tt backend will use, and whether they belong together."""
    from ..tenstorrent.versions import checkout_info, mismatch

    name = "ttnn and tt-metal"
    info = machine.ttnn_install_info()
    checkout = checkout_info()
    ttnn_text = f"ttnn {info.version or '(version unknown)'} at {info.location}" if info.installed else "no ttnn"
    checkout_text = str(checkout) if checkout else "no tt-metal checkout (TT_METAL_HOME unset)"
    problem = mismatch(info.version, info.location, checkout) if info.installed else None
    if problem:
        return Check(name, WARN, f"{ttnn_text}; {checkout_text}", problem)
    return Check(name, OK, f"{ttnn_text}; {checkout_text}")


def check_ffmpeg() -> Check:
    from ..errors import FFmpegNotFoundError
    from ..video import find_ffmpeg

    try:
        found = find_ffmpeg()
    except FFmpegNotFoundError as err:
        return Check("ffmpeg", FAIL, "not found on PATH or in imageio-ffmpeg", str(err))
    where = "on PATH" if shutil.which("ffmpeg") == found else "bundled with imageio-ffmpeg"
    return Check("ffmpeg", OK, f"{found} ({where})")


def check_work_disk() -> Check:
    folder = env.workdir()
    free = shutil.disk_usage(_existing_ancestor(folder)).free
    name = "disk (work folder)"
    detail = f"{free / GIB:.1f} GiB free for {folder}"
    if free < 200 * 1024 ** 2:
        return Check(name, FAIL, detail, "free some space, or set TTLESSON_WORKDIR to a folder on a larger disk")
    if free < 2 * GIB:
        return Check(name, WARN, detail + " (a long storyboard's frames and videos may not fit)",
                     "free some space, or set TTLESSON_WORKDIR to a folder on a larger disk")
    return Check(name, OK, detail)


def check_model_disk() -> Check:
    from huggingface_hub import constants

    from ..models import REGISTRY

    sd14 = REGISTRY["sd14"]
    name = "disk (Hugging Face cache)"
    cache = Path(constants.HF_HUB_CACHE)
    blocker = next((path for path in [cache, *cache.parents] if path.exists() and not path.is_dir()), None)
    if blocker is not None:
        return Check(name, FAIL, f"{blocker} is a file, so the cache {cache} cannot be made",
                     "point HF_HOME at a folder (or unset it)")
    if hf.cache_state(sd14.source) == "complete":
        return Check(name, OK, f"SD 1.4 is already in {cache}")
    free = shutil.disk_usage(_existing_ancestor(cache)).free
    detail = f"{free / 1e9:.1f} GB free for {cache}; SD 1.4's download is {sd14.download_size}"  # the Hub's units
    if free < sd14.download_bytes:
        return Check(name, WARN, detail, "free some space, or set HF_HOME to a folder on a larger disk")
    return Check(name, OK, detail)


def _existing_ancestor(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_hugging_face() -> Check:
    name = "Hugging Face"
    state = hf.status()
    if state.problem:
        return Check(name, FAIL, str(state), "point HF_HOME at a folder (or unset it), and remove a 'token' "
                     "folder there; then ttlesson auth login")
    sd14 = hf.model_access("sd14")
    if state.offline and sd14.cached != "complete":
        return Check(name, WARN, f"{state} {sd14}",
                     f"unset HF_HUB_OFFLINE to download SD 1.4, or use {lever('model', 'tiny')}")
    if state.token:
        return Check(name, OK, f"{state} sd14 needs no login; sd35-large also needs its licence accepted.")
    return Check(name, WARN, str(state), "optional for sd14; for sd35-large: ttlesson auth login")


def check_package(package: str) -> Check:
    wanted = _requirement(package)
    try:
        version = metadata.version(package)
    except metadata.PackageNotFoundError:
        return Check(package, FAIL, "not installed", f"pip install '{wanted}'")
    build = ""
    if package == "torch":
        cuda = machine.torch_info().cuda
        build = f" ({f'CUDA {cuda}' if cuda else 'CPU-only'} build)"
    if not satisfies(version, wanted):
        return Check(package, FAIL, f"{version}{build}, but ttlesson needs {wanted}", f"pip install '{wanted}'")
    return Check(package, OK, f"{version}{build}")


def _requirement(package: str) -> str:
    """ttlesson's own requirement for ``package`` (``torch>=2.1``), from its install record."""
    try:
        requirements = metadata.requires("ttlesson") or []
    except metadata.PackageNotFoundError:
        return package
    for text in requirements:
        requirement = Requirement(text)
        if requirement.marker is None and canonicalize_name(requirement.name) == canonicalize_name(package):
            return f"{requirement.name}{requirement.specifier}"  # an extra's requirements have a marker
    return package


def satisfies(version: str, requirement: str) -> bool:
    """Whether ``version`` is in ``requirement``'s range (``"diffusers<1,>=0.30"``), as pip judges it, development
    and pre-releases included; a version pip cannot read is not judged."""
    try:
        have = Version(version)
    except InvalidVersion:
        return True
    return Requirement(requirement).specifier.contains(have, prereleases=True)

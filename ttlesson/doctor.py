"""``ttlesson doctor``: the lesson's Step 1 as a checklist, each line ok / warn / fail with the exact fix.

Needs nothing beyond the package's base dependencies and imports none of the heavy ones: versions come from
package metadata, Tenstorrent cards from the kernel driver, ttnn from its install record. ``ttnn=True`` also
imports ttnn in a child process and asks it for chips (seconds).
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

from . import hardware, hf

OK, WARN, FAIL = "ok", "warn", "fail"
DEFAULT_WORKDIR = "~/tt-scratchpad/worldsfair-video"
# Where tt-metal keeps the Stable Diffusion 1.4 demo: older releases, then newer ones.
SD14_LOCATIONS = ("models/demos/wormhole/stable_diffusion",
                  "models/demos/vision/generative/stable_diffusion/wormhole")
TT_METAL_CLONE = ("git clone --recurse-submodules https://github.com/tenstorrent/tt-metal.git ~/tt-metal && "
                  "cd ~/tt-metal && ./build_metal.sh && ./create_venv.sh")
GIB = 1024 ** 3
SD14_DOWNLOAD_GIB = 6  # CompVis/stable-diffusion-v1-4 as diffusers downloads it, safety checker included


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # ok, warn or fail
    detail: str
    fix: str = ""


@dataclass
class DoctorReport:
    checks: list[Check]
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """No check failed (warnings allowed)."""
        return all(check.status != FAIL for check in self.checks)

    def counts(self) -> dict[str, int]:
        return {status: sum(check.status == status for check in self.checks) for status in (OK, WARN, FAIL)}

    def summary(self) -> str:
        counts = self.counts()
        verdict = ("ready for the lesson on Tenstorrent hardware" if self.ok
                   else "fix the failed lines to run the lesson on Tenstorrent hardware; the CPU fallback "
                        "(--backend torch) works without them")
        return f"{counts[OK]} ok, {counts[WARN]} warn, {counts[FAIL]} fail: {verdict}."

    def to_dict(self) -> dict:
        return {"ok": self.ok, "counts": self.counts(), "checks": [asdict(check) for check in self.checks],
                "summary": self.summary(), "seconds": round(self.seconds, 3)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def __str__(self) -> str:
        lines = []
        for check in self.checks:
            lines.append(f"[{check.status:^4}] {check.name}: {check.detail}")
            if check.fix:
                lines.append(f"       fix: {check.fix}")
        return "\n".join(lines + [self.summary()])

    def _repr_html_(self) -> str:
        colours = {OK: "#2e7d32", WARN: "#b26a00", FAIL: "#c62828"}
        rows = "".join(
            f"<tr><td style='color:{colours[check.status]};font-weight:bold'>{check.status}</td>"
            f"<td style='text-align:left'>{html.escape(check.name)}</td>"
            f"<td style='text-align:left'>{html.escape(check.detail)}</td>"
            f"<td style='text-align:left'><code>{html.escape(check.fix)}</code></td></tr>" for check in self.checks)
        return (f"<table><tr><th></th><th>check</th><th>found</th><th>fix</th></tr>{rows}</table>"
                f"<p><b>{html.escape(self.summary())}</b></p>")


def run(*, ttnn: bool = False, host: hardware.HostPaths | None = None, prefix: Path | None = None) -> DoctorReport:
    """Run every check. ``ttnn=True`` also imports ttnn (in a child process) and asks it for chips.

    ``host`` (the roots of /sys, /dev, /proc, /opt, home) and ``prefix`` (the Python environment's) stand for
    this machine unless given: tests point them at fake trees.
    """
    started = time.perf_counter()
    host = host or hardware.HostPaths()
    environment = hardware.recognise(prefix, host)
    cards, driver = hardware.read_kernel_driver(None, host)
    home, found_by = _tt_metal_home(environment)
    checks = [
        check_tenstorrent_device(cards, driver),
        check_kernel_driver(host),
        check_device_holders(host),
        check_tt_smi(host, environment.prefix),
        check_environment(environment),
        check_tt_metal_home(home, found_by),
        check_runtime_root(environment),
        check_python_env(home, environment),
        check_pythonpath(home),
        check_arch_name(cards),
        check_ttnn(ttnn),
        check_tt_versions(),
        check_ffmpeg(),
        check_work_disk(),
        check_model_disk(),
        check_hugging_face(),
        *[check_package(name) for name in ("torch", "diffusers", "transformers")],
    ]
    return DoctorReport(checks=checks, seconds=time.perf_counter() - started)


def check_tenstorrent_device(cards: list[hardware.Card], driver: hardware.SourceAnswer) -> Check:
    name = "Tenstorrent device"
    if cards:
        listed = ", ".join(card.describe() for card in cards)
        mesh, _ = hardware.mesh_device_for(cards)
        return Check(name, OK, f"{listed}" + (f"; MESH_DEVICE={mesh}" if mesh else ""))
    return Check(name, FAIL, f"none: {driver.summary}",
                 "install the card and its kernel driver (https://github.com/tenstorrent/tt-kmd), then check "
                 "with tt-smi; without one, frames are made on the CPU (--backend torch)")


def check_kernel_driver(host: hardware.HostPaths | None = None) -> Check:
    """The loaded tt-kmd's version (``/sys/module/tenstorrent/version``)."""
    version = hardware.driver_version(host)
    if version:
        return Check("kernel driver", OK, f"tt-kmd {version}")
    return Check("kernel driver", FAIL, "not loaded (/sys/module/tenstorrent/version is missing)",
                 "install tt-kmd (https://github.com/tenstorrent/tt-kmd, or tt-installer), then sudo modprobe "
                 "tenstorrent; without it, frames are made on the CPU (--backend torch)")


def check_device_holders(host: hardware.HostPaths | None = None) -> Check:
    """Processes that hold a chip open (``/proc/driver/tenstorrent/<n>/pids``): such a chip cannot be opened."""
    holders = hardware.device_holders(host)
    if not holders:
        return Check("devices free", OK, "no other process holds a Tenstorrent chip")
    pids = " ".join(str(pid) for pid in sorted({holder.pid for holder in holders}))
    return Check("devices free", FAIL, "; ".join(holder.describe() for holder in holders),
                 f"let that run finish or stop it (kill {pids}); if the chip stays busy once it is gone, tt-smi -r")


def check_tt_smi(host: hardware.HostPaths | None = None, prefix: Path | None = None) -> Check:
    found, on_path = hardware.find_tt_smi(host, prefix)
    if found and on_path:
        return Check("tt-smi", OK, str(found))
    if found:
        return Check("tt-smi", OK, f"{found} (in {found.parent.parent}, not on PATH: to run it by hand, "
                     f"export PATH={found.parent}:$PATH)")
    return Check("tt-smi", WARN, "not on PATH nor in tt-metal's python_env, ~/.tenstorrent-venv or /opt/venv-metal "
                 "(the lesson reads it, and tt-smi -r resets a stuck device)", "pip install tt-smi")


def check_environment(environment: hardware.PythonEnvironment) -> Check:
    """Which of the lesson's Python environments this is: tt-metal's python_env, the tt-installer venv, the cloud
    image's venv, or another."""
    name = "Python environment"
    if environment.recognised:
        return Check(name, OK, environment.describe())
    return Check(name, WARN, f"{environment.prefix} is not one of the environments the lesson sets up (tt-metal's "
                 "python_env, ~/.tenstorrent-venv, /opt/venv-metal); fine if ttnn imports here",
                 "source $TT_METAL_HOME/python_env/bin/activate (or ~/.tenstorrent-venv/bin/activate), then run "
                 "ttlesson from there; for notebooks: ttlesson kernel install")


def _tt_metal_home(environment: hardware.PythonEnvironment) -> tuple[Path | None, str]:
    """The checkout the tt backend would import model code from, and how it was found."""
    from .tt_metal import checkout_candidates

    candidates = checkout_candidates(environment.prefix)
    return candidates[0] if candidates else (None, "TT_METAL_HOME")


def check_runtime_root(environment: hardware.PythonEnvironment) -> Check:
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
    found = next((location for location in SD14_LOCATIONS if (home / location / "demo" / "demo.py").is_file()), None)
    if found is None:
        return Check(name, FAIL, f"{home} has no Stable Diffusion 1.4 demo at {' or '.join(SD14_LOCATIONS)}",
                     f"update the checkout: git -C {home} pull && git -C {home} submodule update --recursive, "
                     "then rebuild (./build_metal.sh)")
    via = "" if found_by == "TT_METAL_HOME" else f" (found through {found_by})"
    return Check(name, OK, f"{home}{via}, SD 1.4 demo in {found}")


def check_python_env(home: Path | None, environment: hardware.PythonEnvironment | None = None) -> Check:
    name = "tt-metal python_env"
    environment = environment or hardware.recognise()
    if environment.kind in (hardware.INSTALLER, hardware.CLOUD):
        return Check(name, OK, f"not needed: this is the {environment.describe()}")
    if environment.kind == hardware.SOURCE_BUILD:
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


def check_arch_name(cards: list[hardware.Card]) -> Check:
    name = "TT_METAL_ARCH_NAME"
    value = os.environ.get("TT_METAL_ARCH_NAME", "").strip()
    arches = {card.arch for card in cards}
    if "blackhole" in arches:
        if value == "blackhole":
            return Check(name, OK, "blackhole, as Blackhole cards need")
        return Check(name, FAIL, f"{value or 'unset'}, but this machine has Blackhole cards",
                     "export TT_METAL_ARCH_NAME=blackhole")
    if value == "blackhole" and "wormhole" in arches:
        return Check(name, FAIL, "blackhole, but this machine has Wormhole cards", "unset TT_METAL_ARCH_NAME")
    return Check(name, OK, f"{value or 'unset'}; only Blackhole cards need it (export TT_METAL_ARCH_NAME=blackhole)")


def check_ttnn(ask: bool) -> Check:
    name = "ttnn"
    info = hardware.ttnn_install_info()
    fix = ("activate tt-metal's python_env (it holds the ttnn built with tt-metal), or pip install ttnn "
           "(Linux x86_64, Python 3.10 or 3.12)")
    if not info.installed:
        return Check(name, FAIL, "not importable" + (f": {info.problem}" if info.problem else ""), fix)
    if not ask:
        version = info.version or "version unknown"
        return Check(name, OK, f"{version} at {info.location}; import not tried (ttlesson doctor --ttnn tries it)")
    info, _, _ = hardware.read_ttnn(True, os.environ.get(hardware.MOCK_CLUSTER_ENV) or None)
    if info.imports is not True:
        return Check(name, FAIL, info.describe(), fix)
    return Check(name, OK if info.problem is None else WARN, info.describe())


def check_tt_versions() -> Check:
    """Which ttnn and which tt-metal checkout the tt backend will use, and whether they belong together."""
    from .tt_versions import checkout_info, mismatch

    name = "ttnn and tt-metal"
    info = hardware.ttnn_install_info()
    checkout = checkout_info()
    ttnn_text = f"ttnn {info.version or '(version unknown)'} at {info.location}" if info.installed else "no ttnn"
    checkout_text = checkout.describe_text() if checkout else "no tt-metal checkout (TT_METAL_HOME unset)"
    problem = mismatch(info.version, info.location, checkout) if info.installed else None
    if problem:
        return Check(name, WARN, f"{ttnn_text}; {checkout_text}", problem)
    return Check(name, OK, f"{ttnn_text}; {checkout_text}")


def check_ffmpeg() -> Check:
    from .errors import FFmpegNotFoundError
    from .video import find_ffmpeg

    try:
        found = find_ffmpeg()
    except FFmpegNotFoundError as err:
        return Check("ffmpeg", FAIL, "not found on PATH or in imageio-ffmpeg", str(err))
    where = "on PATH" if shutil.which("ffmpeg") == found else "bundled with imageio-ffmpeg"
    return Check("ffmpeg", OK, f"{found} ({where})")


def check_work_disk() -> Check:
    folder = Path(os.environ.get("TTLESSON_WORKDIR") or DEFAULT_WORKDIR).expanduser()
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

    name = "disk (Hugging Face cache)"
    cache = Path(constants.HF_HUB_CACHE)
    blocker = next((path for path in [cache, *cache.parents] if path.exists() and not path.is_dir()), None)
    if blocker is not None:
        return Check(name, FAIL, f"{blocker} is a file, so the cache {cache} cannot be made",
                     "point HF_HOME at a folder (or unset it)")
    if hf.cache_state("CompVis/stable-diffusion-v1-4") == "complete":
        return Check(name, OK, f"SD 1.4 is already in {cache}")
    free = shutil.disk_usage(_existing_ancestor(cache)).free
    detail = f"{free / GIB:.1f} GiB free for {cache}; SD 1.4 needs about {SD14_DOWNLOAD_GIB} GiB"
    if free < SD14_DOWNLOAD_GIB * GIB:
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
        return Check(name, FAIL, state.describe(), "point HF_HOME at a folder (or unset it), and remove a 'token' "
                     "folder there; then ttlesson auth login")
    sd14 = hf.model_access("sd14")
    if state.offline and sd14.cached != "complete":
        return Check(name, WARN, f"{state.describe()} {sd14.describe()}",
                     "unset HF_HUB_OFFLINE to download SD 1.4, or use --model tiny")
    if state.token:
        return Check(name, OK, f"{state.describe()} sd14 needs no login; sd35-large also needs its licence accepted.")
    return Check(name, WARN, state.describe(), "optional for sd14; for sd35-large: ttlesson auth login")


def check_package(package: str) -> Check:
    wanted = _requirement(package)
    try:
        version = metadata.version(package)
    except metadata.PackageNotFoundError:
        return Check(package, FAIL, "not installed", f"pip install '{wanted}'")
    build = ""
    if package == "torch":
        cuda = hardware.torch_info().cuda
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
    for requirement in requirements:
        if ";" in requirement:
            continue  # an extra's requirement
        bare = requirement.split("[")[0]
        for separator in "<>=!~ ":
            bare = bare.split(separator)[0]
        if bare.lower().replace("_", "-") == package.lower():
            return requirement.replace(" ", "")
    return package


def satisfies(version: str, requirement: str) -> bool:
    """Whether ``version`` meets the ``>=``, ``<``, ``<=``, ``>``, ``==`` and ``!=`` clauses of ``requirement``.

    Compares release numbers only (``2.15.0+cu132`` is 2.15.0), which is all ttlesson's ranges need; a version
    without release numbers is not judged.
    """
    have = _release(version)
    clauses = re.findall(r"(>=|<=|==|!=|<|>)\s*([0-9][0-9.]*)", requirement)
    return not have or all(_holds(have, operator, _release(bound)) for operator, bound in clauses)


def _holds(have: tuple[int, ...], operator: str, bound: tuple[int, ...]) -> bool:
    width = max(len(have), len(bound))
    have, bound = have + (0,) * (width - len(have)), bound + (0,) * (width - len(bound))
    return {">=": have >= bound, "<=": have <= bound, "==": have == bound, "!=": have != bound,
            "<": have < bound, ">": have > bound}[operator]


def _release(version: str) -> tuple[int, ...]:
    """``"2.15.0rc1+cu132"`` → ``(2, 15, 0)``."""
    found = re.match(r"[0-9]+(?:\.[0-9]+)*", version.strip())
    return tuple(int(part) for part in found.group().split(".")) if found else ()

"""Finding tt-metal's model code: the checkout, and its Stable Diffusion packages in either layout.

The tt backend does not copy tt-metal's models; it imports them (``backends/tt/runtime.py``) from the user's
tt-metal checkout (``$TT_METAL_HOME``, or a ``PYTHONPATH`` entry that holds one); this module only finds them, and
imports nothing of tt-metal's. tt-metal has moved its packages between
releases, so each is looked for under every name it has had:

* SD 1.4: ``models/demos/vision/generative/stable_diffusion/wormhole`` (newer releases) or
  ``models/demos/wormhole/stable_diffusion`` (older ones), same file names in both;
* its helpers: ``models.common.utility_functions`` (newer) or ``models.utility_functions`` (older);
* SD 3.5 Large: ``models/tt_dit/...`` (newer) or ``models/experimental/tt_dit/...`` (older).

Everything that can go wrong in finding them ends in a ``TTMetalNotFoundError`` whose sentence names
``TT_METAL_HOME``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .. import env
from ..errors import TTMetalNotFoundError
from ..presenting import Presentable
from .arch import Arch

PackageLayout = Literal["current", "older"]  # which of tt-metal's folder layouts a package is in

SD14_PACKAGES: dict[str, PackageLayout] = {
    "models.demos.vision.generative.stable_diffusion.wormhole": "current",
    "models.demos.wormhole.stable_diffusion": "older",
}
SD14_FOLDERS = {age: module.replace(".", "/") for module, age in SD14_PACKAGES.items()}  # inside the checkout
UNET_MODULE = "tt.ttnn_functional_unet_2d_condition_model_new_conv"
SD14_FILES = ("sd_helper_funcs.py", "sd_pndm_scheduler.py", "custom_preprocessing.py",
              UNET_MODULE.replace(".", "/") + ".py", "tt/vae/ttnn_vae.py")
UTILITY_MODULES = ("models.common.utility_functions", "models.utility_functions")
SD35_PIPELINES: dict[str, PackageLayout] = {
    "models.tt_dit.pipelines.stable_diffusion_35_large.pipeline_stable_diffusion_35_large": "current",
    "models.experimental.tt_dit.pipelines.stable_diffusion_35_large.pipeline_stable_diffusion_35_large": "older",
}

@dataclass(frozen=True)
class DeviceSizes:
    l1_small_size: int
    trace_region_size: int  # sized for the demo's 50-step traced loop


# Device-opening sizes from the SD 1.4 package's common.py, used when a release has no common.py.
SD14_DEVICE_SIZES = {Arch.WORMHOLE: DeviceSizes(20928, 789835776), Arch.BLACKHOLE: DeviceSizes(21760, 920000000)}


@dataclass(frozen=True)
class Checkout(Presentable):
    root: Path
    found_by: str  # "TT_METAL_HOME", "TT_METAL_RUNTIME_ROOT", "python_env" or "PYTHONPATH"

    def __str__(self) -> str:
        if self.found_by in ("TT_METAL_HOME", "TT_METAL_RUNTIME_ROOT"):
            return f"{self.found_by}={self.root}"
        return f"{self.root} (from {self.found_by})"


@dataclass(frozen=True)
class Package:
    module: str  # dotted name, e.g. models.demos.wormhole.stable_diffusion
    layout: PackageLayout
    checkout: Checkout

    @property
    def folder(self) -> Path:
        return self.checkout.root.joinpath(*self.module.split("."))


def checkout_candidates(prefix: Path | None = None) -> list[tuple[Path, str]]:
    """Where a tt-metal checkout may be, in order, with how each was found: ``TT_METAL_HOME``; newer tt-metal's
    ``TT_METAL_RUNTIME_ROOT`` when it is a checkout (it has ``models/``); the checkout holding the active
    ``python_env`` (``prefix``, default this Python's); ``sys.path`` entries that are one."""
    found: list[tuple[Path, str]] = []
    home = env.tt_metal_home()
    if home:
        found.append((home, env.TT_METAL_HOME))
    runtime = env.runtime_root()
    if runtime and (runtime / "models").is_dir():
        found.append((runtime, env.TT_METAL_RUNTIME_ROOT))
    prefix = Path(prefix or sys.prefix)
    if prefix.name == "python_env" and (prefix.parent / "models").is_dir():
        found.append((prefix.parent, "python_env"))
    for entry in sys.path:
        root = Path(entry or ".")
        if (root / "models").is_dir() and (root / "tt_metal").is_dir():
            found.append((root.resolve(), "PYTHONPATH"))
    return found


def find_checkout() -> Checkout:
    """The tt-metal checkout to import model code from (the first of ``checkout_candidates``)."""
    candidates = checkout_candidates()
    if not candidates:
        raise TTMetalNotFoundError("No tt-metal checkout found: set TT_METAL_HOME to the folder you cloned tt-metal "
                                   "into and add it to PYTHONPATH (tt-metal's install guide does both).")
    root, found_by = candidates[0]
    if not (root / "models").is_dir():
        raise TTMetalNotFoundError(f"{found_by}={root} is not a tt-metal checkout (it has no models/ folder); "
                                   "point TT_METAL_HOME at the folder you cloned tt-metal into.")
    return Checkout(root.resolve(), found_by)


def find_sd14(checkout: Checkout | None = None) -> Package:
    """tt-metal's SD 1.4 package in the checkout, newer layout first."""
    checkout = checkout or find_checkout()
    for module, layout in SD14_PACKAGES.items():
        package = Package(module, layout, checkout)
        if all((package.folder / name).is_file() for name in SD14_FILES):
            return package
    looked = " and ".join(module.replace(".", "/") for module in SD14_PACKAGES)
    raise TTMetalNotFoundError(f"{checkout} holds no Stable Diffusion 1.4 package (looked for {looked}); "
                               "update that tt-metal checkout, or point TT_METAL_HOME at a complete one.")


def find_sd35(checkout: Checkout | None = None) -> Package:
    """tt-metal's SD 3.5 Large pipeline module (tt_dit) in the checkout, newer layout first."""
    checkout = checkout or find_checkout()
    for module, layout in SD35_PIPELINES.items():
        package = Package(module, layout, checkout)
        if package.folder.with_suffix(".py").is_file():
            return package
    looked = " and ".join(module.replace(".", "/") + ".py" for module in SD35_PIPELINES)
    raise TTMetalNotFoundError(f"{checkout} holds no SD 3.5 Large pipeline (looked for {looked}); "
                               "update that tt-metal checkout, or use --model sd14.")

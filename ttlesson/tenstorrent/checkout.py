"""Finding tt-metal's model code: the checkout, and its Stable Diffusion packages in either layout.

The tt backend does not copy tt-metal's models; it imports them from the user's tt-metal checkout
(``$TT_METAL_HOME``, or a ``PYTHONPATH`` entry that holds one). tt-metal has moved its packages between
releases, so each is looked for under every name it has had:

* SD 1.4: ``models/demos/vision/generative/stable_diffusion/wormhole`` (newer releases) or
  ``models/demos/wormhole/stable_diffusion`` (older ones), same file names in both;
* its helpers: ``models.common.utility_functions`` (newer) or ``models.utility_functions`` (older);
* SD 3.5 Large: ``models/tt_dit/...`` (newer) or ``models/experimental/tt_dit/...`` (older).

Everything that can go wrong here ends in a ``TTMetalNotFoundError`` whose sentence names ``TT_METAL_HOME``.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .. import env
from ..errors import TTMetalNotFoundError

SD14_PACKAGES = {
    "models.demos.vision.generative.stable_diffusion.wormhole": "current",
    "models.demos.wormhole.stable_diffusion": "older",
}
SD14_FOLDERS = {age: module.replace(".", "/") for module, age in SD14_PACKAGES.items()}  # inside the checkout
UNET_MODULE = "tt.ttnn_functional_unet_2d_condition_model_new_conv"
SD14_FILES = ("sd_helper_funcs.py", "sd_pndm_scheduler.py", "custom_preprocessing.py",
              UNET_MODULE.replace(".", "/") + ".py", "tt/vae/ttnn_vae.py")
UTILITY_MODULES = ("models.common.utility_functions", "models.utility_functions")
SD35_PIPELINES = {
    "models.tt_dit.pipelines.stable_diffusion_35_large.pipeline_stable_diffusion_35_large": "current",
    "models.experimental.tt_dit.pipelines.stable_diffusion_35_large.pipeline_stable_diffusion_35_large": "older",
}

@dataclass(frozen=True)
class DeviceSizes:
    l1_small_size: int
    trace_region_size: int  # sized for the demo's 50-step traced loop


# Device-opening sizes from the SD 1.4 package's common.py, used when a release has no common.py.
SD14_DEVICE_SIZES = {"wormhole_b0": DeviceSizes(20928, 789835776), "blackhole": DeviceSizes(21760, 920000000)}


@dataclass(frozen=True)
class Checkout:
    root: Path
    found_by: str  # "TT_METAL_HOME", "TT_METAL_RUNTIME_ROOT", "python_env" or "PYTHONPATH"

    def describe(self) -> str:
        if self.found_by in ("TT_METAL_HOME", "TT_METAL_RUNTIME_ROOT"):
            return f"{self.found_by}={self.root}"
        return f"{self.root} (from {self.found_by})"


@dataclass(frozen=True)
class Package:
    module: str  # dotted name, e.g. models.demos.wormhole.stable_diffusion
    layout: Literal["current", "older"]
    checkout: Checkout

    @property
    def folder(self) -> Path:
        return self.checkout.root.joinpath(*self.module.split("."))


@dataclass(frozen=True)
class SD14Modules:
    """What the tt backend uses from tt-metal's SD 1.4 package, whichever layout it came from."""

    package: Package
    compile_trace_sd: Callable
    UNet2DConditionModel: type
    Vae: type
    TtPNDMScheduler: type
    custom_preprocessor: Callable
    utility_module: str
    l1_small_size: int
    trace_region_size: int


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
    raise TTMetalNotFoundError(f"{checkout.describe()} holds no Stable Diffusion 1.4 package (looked for {looked}); "
                               "update that tt-metal checkout, or point TT_METAL_HOME at a complete one.")


def import_sd14(arch: str, package: Package | None = None) -> SD14Modules:
    """Import the SD 1.4 package's pieces; ``arch`` (``wormhole_b0``/``blackhole``) picks fallback device sizes."""
    package = package or find_sd14()
    helpers = _import(package, "sd_helper_funcs")
    if not hasattr(helpers, "compile_trace_sd"):
        raise TTMetalNotFoundError(f"The SD 1.4 package in {package.checkout.describe()} is too old: its "
                                   "sd_helper_funcs has no compile_trace_sd (the traced loop); update the checkout.")
    utility = _first_importable(package, UTILITY_MODULES)
    l1_small_size, trace_region_size = _device_sizes(package, arch)
    return SD14Modules(
        package=package,
        compile_trace_sd=helpers.compile_trace_sd,
        UNet2DConditionModel=_import(package, UNET_MODULE).UNet2DConditionModel,
        Vae=_import(package, "tt.vae.ttnn_vae").Vae,
        TtPNDMScheduler=_import(package, "sd_pndm_scheduler").TtPNDMScheduler,
        custom_preprocessor=_import(package, "custom_preprocessing").custom_preprocessor,
        utility_module=utility,
        l1_small_size=l1_small_size,
        trace_region_size=trace_region_size,
    )


def find_sd35(checkout: Checkout | None = None) -> Package:
    """tt-metal's SD 3.5 Large pipeline module (tt_dit) in the checkout, newer layout first."""
    checkout = checkout or find_checkout()
    for module, layout in SD35_PIPELINES.items():
        package = Package(module, layout, checkout)
        if package.folder.with_suffix(".py").is_file():
            return package
    looked = " and ".join(module.replace(".", "/") + ".py" for module in SD35_PIPELINES)
    raise TTMetalNotFoundError(f"{checkout.describe()} holds no SD 3.5 Large pipeline (looked for {looked}); "
                               "update that tt-metal checkout, or use --model sd14.")


def import_sd35(package: Package | None = None) -> type:
    """tt_dit's ``StableDiffusion3Pipeline`` class."""
    package = package or find_sd35()
    return _import_module(package, package.module).StableDiffusion3Pipeline


def _device_sizes(package: Package, arch: str) -> tuple[int, int]:
    fallback = SD14_DEVICE_SIZES.get(arch, SD14_DEVICE_SIZES["wormhole_b0"])
    if not (package.folder / "common.py").is_file():
        return fallback.l1_small_size, fallback.trace_region_size
    common = _import(package, "common")
    return (int(getattr(common, "SD_L1_SMALL_SIZE", fallback.l1_small_size)),
            int(getattr(common, "SD_TRACE_REGION_SIZE", fallback.trace_region_size)))


def _first_importable(package: Package, modules: tuple[str, ...]) -> str:
    for module in modules:
        if package.checkout.root.joinpath(*module.split(".")).with_suffix(".py").is_file():
            _import_module(package, module)
            return module
    raise TTMetalNotFoundError(f"{package.checkout.describe()} has neither {' nor '.join(modules)}; "
                               "update that tt-metal checkout, or point TT_METAL_HOME at a complete one.")


def _import(package: Package, submodule: str):
    return _import_module(package, f"{package.module}.{submodule}")


def _import_module(package: Package, module: str):
    root = str(package.checkout.root)
    if root not in sys.path:
        sys.path.insert(0, root)
    try:
        return importlib.import_module(module)
    except Exception as err:  # tt-metal's modules import ttnn, torch and their own helpers: any of them can fail
        first_line = (str(err).strip().splitlines() or [""])[0]
        raise TTMetalNotFoundError(
            f"Importing {module} from {package.checkout.describe()} failed ({type(err).__name__}: {first_line}); "
            "run ttlesson inside tt-metal's python_env (source $TT_METAL_HOME/python_env/bin/activate) "
            "or check that the checkout is complete.") from err

"""Where the tt backends get ttnn, tt-metal's model packages and the host models (the real ones, or a test's
stand-ins), and where tt-metal's log goes.

tt-metal's SD packages are imported here, from the checkout and layout ``tenstorrent.checkout`` finds: their
modules import ttnn and torch, so nothing outside the tt backend imports them."""

from __future__ import annotations

import importlib
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ... import env
from ...errors import TTMetalNotFoundError
from ...models import ModelSpec
from ...tenstorrent.arch import Arch
from ...tenstorrent.checkout import SD14_DEVICE_SIZES, UNET_MODULE, UTILITY_MODULES, Package, find_sd14, find_sd35
from .chip import HostModels, load_host_models
from .device import driver_sees_a_chip, import_ttnn

LOG_NAME = "tt-metal.log"


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


def import_sd14(arch: Arch, package: Package | None = None) -> SD14Modules:
    """Import the SD 1.4 package's pieces; ``arch`` picks the device sizes where the release has no common.py."""
    package = package or find_sd14()
    helpers = _import(package, "sd_helper_funcs")
    if not hasattr(helpers, "compile_trace_sd"):
        raise TTMetalNotFoundError(f"The SD 1.4 package in {package.checkout} is too old: its "
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


def import_sd35(package: Package | None = None) -> type:
    """tt_dit's ``StableDiffusion3Pipeline`` class."""
    package = package or find_sd35()
    return _import_module(package, package.module).StableDiffusion3Pipeline


def _device_sizes(package: Package, arch: Arch) -> tuple[int, int]:
    fallback = SD14_DEVICE_SIZES[arch]
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
    raise TTMetalNotFoundError(f"{package.checkout} has neither {' nor '.join(modules)}; "
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
            f"Importing {module} from {package.checkout} failed ({type(err).__name__}: {first_line}); "
            "run ttlesson inside tt-metal's python_env (source $TT_METAL_HOME/python_env/bin/activate) "
            "or check that the checkout is complete.") from err


@dataclass(frozen=True)
class Runtime:
    """Where the tt backend gets ttnn, tt-metal's packages and the host models: the real ones, or test stand-ins."""

    ttnn_loader: Callable[[], object] = import_ttnn
    driver_check: Callable[[], bool] = driver_sees_a_chip
    sd14_loader: Callable[[Arch], SD14Modules] = import_sd14
    sd35_loader: Callable[[], type] = import_sd35
    host_loader: Callable[[ModelSpec], HostModels] = load_host_models


def default_log_file() -> Path:
    """Where tt-metal's log goes when the backend is used outside a render folder."""
    return env.cache_root() / "logs" / f"tt-metal-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"

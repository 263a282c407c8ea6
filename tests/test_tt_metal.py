"""Finding and importing tt-metal's packages in both layouts, on STAND-IN checkout trees written to tmp dirs.

The trees have tt-metal's real module paths but stub modules; the tests check which layout, helper module and
device sizes ttlesson picks, and the one-sentence refusals naming TT_METAL_HOME. Finding is
``tenstorrent.checkout``'s, importing the tt backend's (``backends.tt.runtime``): the facts import nothing heavy.
"""

import os
import pkgutil
import subprocess
import sys

import pytest
from standin_tt import write_standin_checkout

import ttlesson.tenstorrent
from ttlesson.backends.tt.runtime import import_sd14, import_sd35
from ttlesson.errors import TTMetalNotFoundError
from ttlesson.tenstorrent import checkout as tt_metal
from ttlesson.tenstorrent.arch import Arch


def test_the_tenstorrent_facts_import_neither_ttnn_nor_torch():
    """Every module of ttlesson.tenstorrent imports without ttnn, torch or tt-metal's model code (``models``)."""
    names = [f"ttlesson.tenstorrent.{module.name}" for module in pkgutil.iter_modules(ttlesson.tenstorrent.__path__)]
    probe = (f"import importlib, sys; [importlib.import_module(name) for name in {names!r}]; "
             "print(sorted(name for name in sys.modules if name.split('.')[0] in ('ttnn', 'torch', 'models')))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert "ttlesson.tenstorrent.checkout" in names and out.strip() == "[]"


@pytest.fixture
def clean_imports(monkeypatch):
    """Each test imports its own stand-in ``models`` package: forget any other and restore sys.path after."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    saved = {name: module for name, module in sys.modules.items() if name == "models" or name.startswith("models.")}
    for name in saved:
        del sys.modules[name]
    monkeypatch.delenv("TT_METAL_HOME", raising=False)
    yield
    for name in [n for n in sys.modules if n == "models" or n.startswith("models.")]:
        del sys.modules[name]
    sys.modules.update(saved)


@pytest.mark.parametrize("layout,module,utility,sizes", [
    ("current", "models.demos.vision.generative.stable_diffusion.wormhole", "models.common.utility_functions",
     (20928, 789835776)),
    ("older", "models.demos.wormhole.stable_diffusion", "models.utility_functions", (20928, 814510080)),
])
def test_each_layout_is_found_and_imported(tmp_path, monkeypatch, clean_imports, layout, module, utility, sizes):
    monkeypatch.setenv("TT_METAL_HOME", str(write_standin_checkout(tmp_path, layout)))
    sd = import_sd14(Arch.WORMHOLE)
    assert (sd.package.module, sd.package.layout, sd.package.checkout.found_by) == (module, layout, "TT_METAL_HOME")
    assert sd.utility_module == utility
    assert (sd.l1_small_size, sd.trace_region_size) == sizes  # read from that release's common.py
    assert sys.modules[f"{module}.sd_helper_funcs"].LAYOUT == layout
    assert sd.compile_trace_sd.__module__ == f"{module}.sd_helper_funcs"
    assert sd.UNet2DConditionModel.__module__ == f"{module}.tt.ttnn_functional_unet_2d_condition_model_new_conv"
    assert sd.Vae.__module__ == f"{module}.tt.vae.ttnn_vae"


def test_newer_layout_wins_when_both_exist(tmp_path, monkeypatch, clean_imports):
    write_standin_checkout(tmp_path, "older")
    write_standin_checkout(tmp_path, "current")
    monkeypatch.setenv("TT_METAL_HOME", str(tmp_path))
    assert tt_metal.find_sd14().layout == "current"


def test_release_without_common_py_uses_the_reference_sizes(tmp_path, monkeypatch, clean_imports):
    write_standin_checkout(tmp_path, "older")
    (tmp_path / "models/demos/wormhole/stable_diffusion/common.py").unlink()
    monkeypatch.setenv("TT_METAL_HOME", str(tmp_path))
    assert (import_sd14(Arch.BLACKHOLE).l1_small_size, import_sd14(Arch.BLACKHOLE).trace_region_size) == (
        21760, 920000000)


def test_checkout_found_through_pythonpath(tmp_path, clean_imports):
    write_standin_checkout(tmp_path, "current")
    sys.path.insert(0, str(tmp_path))
    checkout = tt_metal.find_checkout()
    assert (checkout.root, checkout.found_by) == (tmp_path.resolve(), "PYTHONPATH")


def test_no_checkout_names_tt_metal_home(clean_imports, monkeypatch):
    monkeypatch.setattr(sys, "path", [p for p in sys.path if not os.path.isdir(os.path.join(p or ".", "tt_metal"))])
    with pytest.raises(TTMetalNotFoundError, match=r"^No tt-metal checkout found: set TT_METAL_HOME"):
        tt_metal.find_checkout()


def test_tt_metal_home_that_is_not_a_checkout(tmp_path, monkeypatch, clean_imports):
    monkeypatch.setenv("TT_METAL_HOME", str(tmp_path))
    with pytest.raises(TTMetalNotFoundError, match=r"TT_METAL_HOME=.* is not a tt-metal checkout"):
        import_sd14(Arch.WORMHOLE)


def test_checkout_without_the_sd_package(tmp_path, monkeypatch, clean_imports):
    (tmp_path / "models").mkdir()
    monkeypatch.setenv("TT_METAL_HOME", str(tmp_path))
    with pytest.raises(TTMetalNotFoundError) as err:
        tt_metal.find_sd14()
    message = str(err.value)
    assert message.startswith(f"TT_METAL_HOME={tmp_path.resolve()} holds no Stable Diffusion 1.4 package")
    assert "models/demos/vision/generative/stable_diffusion/wormhole" in message
    assert "models/demos/wormhole/stable_diffusion" in message and "\n" not in message


def test_release_without_the_traced_loop_is_too_old(tmp_path, monkeypatch, clean_imports):
    monkeypatch.setenv("TT_METAL_HOME", str(write_standin_checkout(tmp_path, "older", with_trace=False)))
    with pytest.raises(TTMetalNotFoundError, match="too old: its sd_helper_funcs has no compile_trace_sd"):
        import_sd14(Arch.WORMHOLE)


def test_failing_import_inside_the_package_is_one_sentence(tmp_path, monkeypatch, clean_imports):
    checkout = write_standin_checkout(tmp_path, "current", broken_import="missing_dependency_of_tt_metal")
    monkeypatch.setenv("TT_METAL_HOME", str(checkout))
    with pytest.raises(TTMetalNotFoundError) as err:
        import_sd14(Arch.WORMHOLE)
    assert str(err.value).startswith("Importing models.demos.vision.generative.stable_diffusion.wormhole."
                                     "sd_pndm_scheduler from TT_METAL_HOME=")
    assert "ModuleNotFoundError: No module named 'missing_dependency_of_tt_metal'" in str(err.value)
    assert "python_env" in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("layout", ["current", "older"])
def test_sd35_pipeline_in_each_layout(tmp_path, monkeypatch, clean_imports, layout):
    monkeypatch.setenv("TT_METAL_HOME", str(write_standin_checkout(tmp_path, layout, sd35=True)))
    package = tt_metal.find_sd35()
    assert package.layout == layout
    pipeline = import_sd35(package)
    assert pipeline.__name__ == "StableDiffusion3Pipeline" and sys.modules[package.module].LAYOUT == layout


def test_sd35_missing_suggests_sd14(tmp_path, monkeypatch, clean_imports):
    monkeypatch.setenv("TT_METAL_HOME", str(write_standin_checkout(tmp_path, "current")))
    with pytest.raises(TTMetalNotFoundError, match="holds no SD 3.5 Large pipeline.*use --model sd14"):
        tt_metal.find_sd35()


def test_where_the_checkout_is_looked_for(tmp_path, monkeypatch, clean_imports):
    """TT_METAL_HOME, then newer tt-metal's TT_METAL_RUNTIME_ROOT when it is a checkout, then the checkout that
    holds the active python_env, then PYTHONPATH."""
    runtime = write_standin_checkout(tmp_path / "runtime", "current")
    built = write_standin_checkout(tmp_path / "built", "current")
    (built / "python_env").mkdir()
    monkeypatch.setattr(sys, "prefix", str(built / "python_env"))
    monkeypatch.setattr(sys, "path", [p for p in sys.path if not os.path.isdir(os.path.join(p or ".", "tt_metal"))])
    assert str(tt_metal.find_checkout()) == f"{built} (from python_env)"
    monkeypatch.setenv("TT_METAL_RUNTIME_ROOT", str(runtime))
    assert str(tt_metal.find_checkout()) == f"TT_METAL_RUNTIME_ROOT={runtime}"
    monkeypatch.setenv("TT_METAL_RUNTIME_ROOT", str(tmp_path / "runtime-files-only"))  # no models/: not a checkout
    assert tt_metal.find_checkout().found_by == "python_env"
    monkeypatch.setenv("TT_METAL_HOME", str(runtime))
    assert str(tt_metal.find_checkout()) == f"TT_METAL_HOME={runtime}"

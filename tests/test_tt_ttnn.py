"""The tt backend against the REAL ttnn wheel, on this machine without a Tenstorrent chip.

Each scenario runs in its own Python process: ttnn keeps one cluster per process, fixed when it first looks.
* no device: ttnn itself reports no chips → "No Tenstorrent device", before the package or any weights load;
* a mock N150 (TT_METAL_MOCK_CLUSTER_DESC_PATH, UMD's cluster descriptor format): ttnn sees one Wormhole chip,
  opening it fails because the kernel compiler (SFPI) is not installed here → one sentence; nothing stays open;
* the stand-in (tests/standin_tt.py) against the wheel: the same signatures, and the same refusals of the calls
  the backend makes (copies of another shape, dtype or layout; positional keyword-only arguments);
* closing: a capture that fails midway is ended and released before the mesh closes; a submesh whose close
  raises does not keep the parent mesh open.
The tt-metal checkout is a STAND-IN tree (tests/standin_tt.py) with the real module paths.
"""

import inspect
import os
import subprocess
import textwrap

import pytest
import torch
from helpers import MOCK_ENV, one_line_error, ttlesson_command
from machine_helpers import CLUSTERS, RESULT, run_python_json
from standin_tt import StandInMeshShape, StandInTTNN, write_standin_checkout

pytest.importorskip("ttnn")
pytestmark = pytest.mark.slow  # the real ttnn wheel in child processes

MOCK_N150 = {MOCK_ENV: str(CLUSTERS / "n150.yaml")}

PRELUDE = f"""
import json
from ttlesson import models
from ttlesson.backends.tt.runtime import Runtime
from ttlesson.backends.tt.sd14 import TTSD14Backend
from ttlesson.errors import TTLessonError

loaded = []
def must_not_load(*args):
    loaded.append(args)
    raise AssertionError("loaded before the device check")

def report(out):
    print({RESULT!r} + json.dumps(out), flush=True)
"""


def run_python(code: str, env: dict, cwd) -> dict:
    """PRELUDE + ``code`` in a fresh interpreter; ``code`` ends with ``report({...})``.

    ``cwd`` is a tmp dir: opening a (mock) mesh makes tt-metal write a generated/ folder into the current one.
    """
    return run_python_json(textwrap.dedent(PRELUDE) + textwrap.dedent(code), env=env, cwd=cwd, timeout=240)


def test_no_device_real_ttnn_refuses_before_loading_anything(tmp_path):
    result = run_python("""
        # Let ttnn itself answer (the driver check alone would already refuse on this machine).
        runtime = Runtime(driver_check=lambda: True, sd14_loader=must_not_load, host_loader=must_not_load)
        try:
            TTSD14Backend(models.resolve("sd14"), runtime=runtime).load()
        except TTLessonError as err:
            report({"kind": type(err).__name__, "error": str(err), "loaded": len(loaded)})
    """, env={}, cwd=tmp_path)
    assert result["kind"] == "NoTTDeviceError" and result["loaded"] == 0
    assert result["error"].startswith("No Tenstorrent device found")
    assert "tt-smi -s" in result["error"] and "--backend torch" in result["error"]


def test_mock_n150_open_fails_without_sfpi_as_one_sentence_and_releases_everything(tmp_path):
    checkout = write_standin_checkout(tmp_path / "tt-metal", "current")
    result = run_python(f"""
        import os
        from pathlib import Path
        from ttlesson.backends.tt.device import import_ttnn, prepare_environment
        from ttlesson.backends.tt.sd35 import TTSD35Backend
        render_folder = Path({str(tmp_path / "render")!r})
        # As the backend does before ttnn first looks at the cluster (tt-metal reads TT_LOGGER_FILE only then).
        prepare_environment(log_file=render_folder / "tt-metal.log")
        ttnn = import_ttnn()
        out = {{"chips": ttnn.get_num_devices(), "arch": ttnn.get_arch_name(), "opened": 0, "closed": []}}
        def has(path):
            value = ttnn
            for part in path.split("."):
                if not hasattr(value, part):
                    return False
                value = getattr(value, part)
            return True
        out["missing"] = [name for name in {StandInTTNN.ttnn_names()!r} if not has(name)]

        real_open, real_close = ttnn.open_mesh_device, ttnn.close_mesh_device
        def spy_open(**sizes):  # records, then lets the real ttnn do the work
            mesh = real_open(**sizes)
            out["opened"] += 1
            return mesh
        def spy_close(mesh):
            real_close(mesh)
            out["closed"].append(str(mesh.shape))
        ttnn.open_mesh_device, ttnn.close_mesh_device = spy_open, spy_close

        runtime = Runtime(host_loader=must_not_load)
        try:
            TTSD14Backend(models.resolve("sd14"), runtime=runtime).load()
        except TTLessonError as err:
            out["no_checkout"] = str(err)
        os.environ["TT_METAL_HOME"] = {str(checkout)!r}
        backend = TTSD14Backend(models.resolve("sd14"), runtime=runtime)
        try:
            backend.load()
        except TTLessonError as err:
            out["open"] = [type(err).__name__, str(err)]
        out["backend_holds"] = [backend._session.is_open, len(backend._pipelines)]
        out["loaded"] = len(loaded)
        out["log_file"] = str(backend.log_file)

        # ttnn 0.81's mock lets the next open in a process succeed; if it does, Ctrl-C while the weights load
        # must still close what was opened.
        def interrupted(spec):
            raise KeyboardInterrupt
        backend = TTSD14Backend(models.resolve("sd14"), runtime=Runtime(host_loader=interrupted))
        try:
            backend.load()
        except KeyboardInterrupt:
            out["second"] = "KeyboardInterrupt"
        except TTLessonError as err:
            out["second"] = type(err).__name__
        out["backend_holds_after_interrupt"] = [backend._session.is_open, len(backend._pipelines)]
        try:
            TTSD35Backend(models.resolve("sd35-large"), runtime=runtime).load()
        except TTLessonError as err:
            out["sd35"] = str(err)
        report(out)
    """, env=MOCK_N150, cwd=tmp_path)
    assert (result["chips"], result["arch"], result["loaded"]) == (1, "wormhole_b0", 0)
    assert result["missing"] == []  # every name the stand-in plays exists in the real ttnn
    assert result["no_checkout"].startswith("No tt-metal checkout found: set TT_METAL_HOME")
    kind, message = result["open"]
    log_file = str(tmp_path / "render" / "tt-metal.log")
    assert kind == "TTDeviceError" and "\n" not in message and result["log_file"] == log_file
    assert message.startswith("Opening the Tenstorrent device failed because tt-metal's kernel compiler is missing "
                              "(sfpi not found at ")
    assert f"(tt-metal's log: {log_file})" in message and "python -m ttnn.download_sfpi" in message
    assert "sfpi not found" in open(log_file).read()  # tt-metal's own words went to the log file, not the screen
    assert result["backend_holds"] == [False, 0] == result["backend_holds_after_interrupt"]
    if result["second"] == "KeyboardInterrupt":  # the mesh opened and was split (grid checked): both were closed
        assert result["opened"] == 1 and result["closed"] == ["MeshShape([1, 1])"] * 2
    else:
        assert result["second"] == "TTDeviceError" and result["opened"] == 0 == len(result["closed"])
    assert result["sd35"].startswith("SD 3.5 Large runs on a T3K (2×4), a Wormhole Galaxy (opened 4×8)")
    assert "not on this N150: 1 wormhole_b0 chip, system mesh 1×1; use --model sd14" in result["sd35"]


def test_cli_render_on_a_mock_n150_is_one_line_and_writes_nothing(tmp_path):
    checkout = write_standin_checkout(tmp_path / "tt-metal", "older")
    out = tmp_path / "out"
    proc = subprocess.run([*ttlesson_command(), "render", "worlds-fair", "--backend", "tt", "--out", str(out)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=240,
                          env={**os.environ, **MOCK_N150, "TT_METAL_HOME": str(checkout)})
    line = one_line_error(proc)
    assert line.startswith("ttlesson render: error: Opening the Tenstorrent device failed because tt-metal's kernel "
                           "compiler is missing")
    assert proc.stdout == "" and not (out / "frames").exists()


# --- the stand-in says what the wheel says --------------------------------------------------------------------

SIGNATURES = r"""
import ast, inspect, json, re, ttnn, ttnn.model_preprocessing

def from_doc(doc):
    # nanobind functions have no inspectable signature, only "name(a: T, \*, b: T = x) -> R" lines in __doc__
    overloads = []
    for line in (doc or "").splitlines():
        found = re.match(r"^\s*(?:\d+\.\s*)?(\w+)\((.*)\)(\s*->.*)?$", line)
        if not found:
            continue
        params = re.sub(r"<[^<>]*>", "None", found.group(2)).replace("\\*", "*")
        try:
            args = ast.parse(f"def f({params}): pass").body[0].args
        except SyntaxError:
            continue
        positional = args.posonlyargs + args.args
        defaults = [False] * (len(positional) - len(args.defaults)) + [True] * len(args.defaults)
        overloads.append([[p.arg, "POSITIONAL_OR_KEYWORD", d] for p, d in zip(positional, defaults)]
                         + [[p.arg, "KEYWORD_ONLY", d is not None] for p, d in zip(args.kwonlyargs, args.kw_defaults)])
    return overloads

def signature(obj):
    target = getattr(obj, "function", obj)  # ttnn's FastOperation wraps the function it runs
    try:
        parameters = inspect.signature(target).parameters.values()
    except (TypeError, ValueError):
        return from_doc(target.__doc__)
    return [[[p.name, p.kind.name, p.default is not p.empty] for p in parameters]]

def lookup(path):
    value = ttnn
    for part in path.split("."):
        value = getattr(value, part)
    return value

print("RESULT " + json.dumps({name: signature(lookup(name)) for name in NAMES}), flush=True)
"""

CALLABLES = [*StandInTTNN.FUNCTIONS, "model_preprocessing.preprocess_model_parameters",
             "MeshDevice.create_submeshes", "MeshDevice.get_submeshes", "MeshDevice.compute_with_storage_grid_size",
             "Tensor.cpu"]


def standin_signature(name: str) -> list:
    target = StandInTTNN().signature_of(name)
    kinds = {"POSITIONAL_ONLY": "POSITIONAL_OR_KEYWORD"}  # the wheel's docs do not mark positional-only arguments
    return [[p.name, kinds.get(p.kind.name, p.kind.name), p.default is not p.empty]
            for p in inspect.signature(target).parameters.values()]


def test_the_standin_has_the_real_wheels_signatures(tmp_path):
    real = run_python_json(SIGNATURES.replace("RESULT ", RESULT).replace("NAMES", repr(CALLABLES)), cwd=tmp_path)
    for name in CALLABLES:
        assert real[name], f"no signature read for ttnn.{name}"
        assert standin_signature(name) in real[name], (name, standin_signature(name), real[name])


REFUSALS = """
import json, torch
from ttlesson.backends.tt.device import import_ttnn
ttnn = import_ttnn()
out = {}
def outcome(action):
    try:
        action()
        return "ok"
    except Exception as err:
        info = [line.strip() for line in str(err).splitlines() if line.strip()]
        return [type(err).__name__, info[info.index("info:") + 1] if "info:" in info else info[0][:60]]

for attempt in range(2):  # the mock's first open fails for want of SFPI
    try:
        mesh = ttnn.open_mesh_device(mesh_shape=ttnn.MeshShape(1, 1), l1_small_size=20928,
                                     trace_region_size=789835776)
        break
    except RuntimeError:
        pass
CHECKS
ttnn.close_mesh_device(mesh)
print("RESULT " + json.dumps(out), flush=True)
"""

CHECKS = """
buffer = ttnn.allocate_tensor_on_device(ttnn.Shape([1, 4, 64, 64]), ttnn.bfloat16, ttnn.TILE_LAYOUT, mesh,
                                        ttnn.DRAM_MEMORY_CONFIG)
def host(shape, dtype=ttnn.bfloat16, layout=ttnn.TILE_LAYOUT):
    return ttnn.from_torch(torch.randn(shape), dtype=dtype, layout=layout)
out["same spec"] = outcome(lambda: ttnn.copy_host_to_device_tensor(host((1, 4, 64, 64)), buffer, cq_id=0))
out["other shape"] = outcome(lambda: ttnn.copy_host_to_device_tensor(host((2, 96, 768)), buffer, cq_id=0))
out["other dtype"] = outcome(lambda: ttnn.copy_host_to_device_tensor(host((1, 4, 64, 64), ttnn.float32), buffer))
out["other layout"] = outcome(lambda: ttnn.copy_host_to_device_tensor(
    host((1, 4, 64, 64), layout=ttnn.ROW_MAJOR_LAYOUT), buffer))
out["to_torch dtype"] = str(ttnn.to_torch(buffer.cpu(blocking=True)).dtype)
out["preprocess positional"] = outcome(lambda: ttnn.model_preprocessing.preprocess_model_parameters(
    lambda: None, None, mesh))
out["execute positional"] = outcome(lambda: ttnn.execute_trace(mesh, None, 0, False))
out["mesh shape rows"] = outcome(lambda: ttnn.MeshShape(1, 1).rows)
out["submesh shape"] = list(mesh.create_submeshes(ttnn.MeshShape(1, 1))[0].shape)
"""


def test_the_standin_refuses_what_the_real_wheel_refuses(tmp_path):
    real = run_python_json(REFUSALS.replace("RESULT ", RESULT).replace("CHECKS", CHECKS), env=MOCK_N150,
                           cwd=tmp_path)
    stub = StandInTTNN()
    standin = {}
    namespace = {"ttnn": stub, "torch": torch, "out": standin, "mesh": stub.open_mesh_device(
        mesh_shape=StandInMeshShape(1, 1)), "outcome": _outcome}
    exec(CHECKS, namespace)
    assert real["same spec"] == standin["same spec"] == "ok"
    assert real["other shape"] == ["RuntimeError", "Host tensor has different shape"] == standin["other shape"]
    assert real["other dtype"] == ["RuntimeError", "Host tensor has different dtype"] == standin["other dtype"]
    assert real["other layout"] == ["RuntimeError", "Host tensor has different page config"] == standin["other layout"]
    assert real["to_torch dtype"] == "torch.bfloat16" == standin["to_torch dtype"]
    for call in ("preprocess positional", "execute positional"):  # keyword-only arguments
        assert real[call][0] == "TypeError" == standin[call][0], call
    assert real["mesh shape rows"][0] == "AttributeError" == standin["mesh shape rows"][0]
    assert real["submesh shape"] == [1, 1] == list(standin["submesh shape"])


def _outcome(action):
    try:
        action()
        return "ok"
    except Exception as err:
        info = [line.strip() for line in str(err).splitlines() if line.strip()]
        return [type(err).__name__, info[info.index("info:") + 1] if "info:" in info else info[0][:60]]


# --- closing on every path, with the real wheel ---------------------------------------------------------------

CLOSING = """
import json
from ttlesson.backends.tt import chip as tt_sd14
from ttlesson.backends.tt import device as tt_device
from ttlesson.errors import TTLessonError
ttnn = tt_device.import_ttnn()
calls = []
def spy(name):
    real = getattr(ttnn, name)
    def recorded(*args, **kwargs):
        calls.append(name)
        return real(*args, **kwargs)
    setattr(ttnn, name, recorded)
for name in ("begin_trace_capture", "end_trace_capture", "release_trace", "close_mesh_device"):
    spy(name)
out = {}
for attempt in range(2):  # the mock's first open fails for want of SFPI
    try:
        with tt_device.open_mesh(ttnn, mesh_shape=(2, 1), l1_small_size=20928, trace_region_size=789835776) as mesh:
            chips = tt_device.split_into_chips(ttnn, mesh, 2)
            del calls[:]
            # 1. a capture that fails midway (as compile_trace_sd would, between begin and end) is ended first
            try:
                with tt_sd14.captures_ended_on_failure(ttnn, chips[0].mesh):
                    ttnn.begin_trace_capture(chips[0].mesh, cq_id=0)
                    raise RuntimeError("TT_FATAL @ op.cpp:1\\ninfo:\\nan op failed during capture\\nbacktrace:")
            except RuntimeError as err:
                out["capture"] = [str(err).splitlines()[2], list(calls)]
            del calls[:]
            # 2. the first submesh's close raises: the other submesh and the mesh are still closed
            real_close = ttnn.close_mesh_device
            def close_failing_once(device):
                real_close(device)
                if device is chips[0].mesh:
                    raise RuntimeError("TT_FATAL @ mesh_device.cpp:1\\ninfo:\\nclose failed\\nbacktrace:")
            ttnn.close_mesh_device = close_failing_once
            closing = [str(chip.mesh.shape) for chip in chips] + [str(mesh.shape)]
        break
    except TTLessonError as err:
        out.setdefault("errors", []).append(str(err))
out["closed"] = calls
out["expected"] = ["close_mesh_device"] * 3
print("RESULT " + json.dumps(out), flush=True)
"""


def test_closing_with_the_real_wheel_ends_captures_and_closes_the_parent(tmp_path):
    result = run_python_json(CLOSING.replace("RESULT ", RESULT), env={MOCK_ENV: str(CLUSTERS / "n300.yaml")},
                             cwd=tmp_path)
    message, calls = result["capture"]
    assert message == "an op failed during capture"
    assert calls == ["begin_trace_capture", "end_trace_capture", "release_trace"]  # ended, released, then re-raised
    first_open, closing = result["errors"]
    assert "kernel compiler is missing" in first_open
    assert closing.startswith("Closing the Tenstorrent device failed (close failed); run tt-smi -r")
    assert result["closed"] == result["expected"]  # both submeshes and the mesh, although the first raised



SIGTERM_REAL = """
import json, os, signal, time
from contextlib import ExitStack
from ttlesson.backends.tt import device as tt_device
from ttlesson.errors import TTLessonError
ttnn = tt_device.import_ttnn()
calls = []
for name in ("release_trace", "close_mesh_device"):
    real = getattr(ttnn, name)
    setattr(ttnn, name, lambda *args, _real=real, _name=name: (calls.append(_name), _real(*args))[1])
guard = tt_device.TerminationGuard(close=lambda: calls.append("idle close"))
guard.install()
out = {}
for attempt in range(2):  # the mock's first open fails for want of SFPI
    try:
        with guard.working(), ExitStack() as stack:
            mesh = stack.enter_context(tt_device.open_mesh(ttnn, mesh_shape=(2, 1), l1_small_size=20928,
                                                           trace_region_size=789835776))
            chip = tt_device.split_into_chips(ttnn, mesh, 1)[0].mesh
            trace_id = ttnn.begin_trace_capture(chip, cq_id=0)
            ttnn.end_trace_capture(chip, trace_id, cq_id=0)
            stack.callback(ttnn.release_trace, chip, trace_id)  # as each chip pipeline registers its release
            os.kill(os.getpid(), signal.SIGTERM)  # a job scheduler stops us mid-work
            time.sleep(30)
            out["not interrupted"] = True
        break
    except tt_device.Terminated as stop:
        out["terminated"] = [str(stop), stop.exit_status]
        break
    except TTLessonError:
        continue
guard.remove()
out["calls"] = calls
print("RESULT " + json.dumps(out), flush=True)
"""


def test_sigterm_with_the_real_wheel_releases_the_trace_and_closes_every_mesh(tmp_path):
    result = run_python_json(SIGTERM_REAL.replace("RESULT ", RESULT), env={MOCK_ENV: str(CLUSTERS / "n300.yaml")},
                             cwd=tmp_path)
    assert result["terminated"] == ["terminated (SIGTERM)", 143] and "not interrupted" not in result
    assert result["calls"] == ["release_trace", "close_mesh_device", "close_mesh_device", "close_mesh_device"]

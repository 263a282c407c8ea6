"""The tt backend against the REAL ttnn wheel, on this machine without a Tenstorrent chip.

Each scenario runs in its own Python process: ttnn keeps one cluster per process, fixed when it first looks.
* no device: ttnn itself reports no chips → "No Tenstorrent device", before the package or any weights load;
* a mock N150 (TT_METAL_MOCK_CLUSTER_DESC_PATH, UMD's cluster descriptor format): ttnn sees one Wormhole chip,
  opening it fails because the kernel compiler (SFPI) is not installed here → one sentence; nothing stays open.
The tt-metal checkout is a STAND-IN tree (tests/standin_tt.py) with the real module paths.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from conftest import TTLESSON, one_line_error
from standin_tt import StandInTTNN, write_standin_checkout

pytest.importorskip("ttnn")

N150 = textwrap.dedent("""\
    arch: {0: wormhole_b0}
    chips: {0: [0, 0, 0, 0]}
    ethernet_connections: []
    chips_with_mmio: [{0: 0}]
    harvesting: {0: {noc_translation: true, harvest_mask: 64, dram_harvesting_mask: 0, eth_harvesting_mask: 0, pcie_harvesting_mask: 0}}
    chip_to_boardtype: {0: n150}
    boards: [[{board_id: 72059269368820857}, {board_type: n150}, {chips: [0]}]]
    """)


@pytest.fixture
def mock_n150(tmp_path):
    path = tmp_path / "n150.yaml"
    path.write_text(N150)
    return {"TT_METAL_MOCK_CLUSTER_DESC_PATH": str(path)}


PRELUDE = """
    import json
    from ttlesson import models
    from ttlesson.backends.tt import Runtime, TTBackend
    from ttlesson.errors import TTLessonError

    loaded = []
    def must_not_load(*args):
        loaded.append(args)
        raise AssertionError("loaded before the device check")
"""


def run_python(code: str, env: dict, cwd) -> dict:
    """Run PRELUDE + ``code`` in a fresh interpreter; ``code`` prints one JSON object as its last line.

    ``cwd`` is a tmp dir: opening a (mock) mesh makes tt-metal write a generated/ folder into the current one.
    """
    base = {k: v for k, v in os.environ.items() if k not in ("TT_METAL_MOCK_CLUSTER_DESC_PATH", "TT_METAL_HOME")}
    program = textwrap.dedent(PRELUDE) + textwrap.dedent(code)
    proc = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=240,
                          env={**base, **env}, cwd=cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])




def test_no_device_real_ttnn_refuses_before_loading_anything(tmp_path):
    result = run_python("""
        # Let ttnn itself answer (the driver check alone would already refuse on this machine).
        runtime = Runtime(driver_check=lambda: True, sd14_loader=must_not_load, host_loader=must_not_load)
        try:
            TTBackend(models.resolve("sd14"), runtime=runtime).load()
        except TTLessonError as err:
            print(json.dumps({"kind": type(err).__name__, "error": str(err), "loaded": len(loaded)}))
    """, env={}, cwd=tmp_path)
    assert result["kind"] == "NoTTDeviceError" and result["loaded"] == 0
    assert result["error"].startswith("No Tenstorrent device found")
    assert "tt-smi -s" in result["error"] and "--backend torch" in result["error"]


def test_mock_n150_open_fails_without_sfpi_as_one_sentence_and_releases_everything(tmp_path, mock_n150):
    checkout = write_standin_checkout(tmp_path / "tt-metal", "current")
    result = run_python(f"""
        import os
        from ttlesson.backends.tt_device import import_ttnn
        from ttlesson.backends.tt_sd35 import TTSD35Backend
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

        # The host tensors the backend copies into the trace's buffers, converted by the real ttnn.
        import torch
        from ttlesson.backends.tt_sd14 import initial_latents
        for name, values in [("latents", initial_latents(5)), ("embeddings", torch.randn(2, 96, 768))]:
            host = ttnn.from_torch(values, dtype=ttnn.bfloat16, layout=ttnn.TILE_LAYOUT)
            back = ttnn.to_torch(host)
            out[name] = [list(host.shape), str(host.layout), float((back - values).abs().max())]
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
            TTBackend(models.resolve("sd14"), runtime=runtime).load()
        except TTLessonError as err:
            out["no_checkout"] = str(err)
        os.environ["TT_METAL_HOME"] = {str(checkout)!r}
        backend = TTBackend(models.resolve("sd14"), runtime=runtime)
        try:
            backend.load()
        except TTLessonError as err:
            out["open"] = [type(err).__name__, str(err)]
        out["backend_holds"] = [backend._stack is not None, len(backend._pipelines)]
        out["loaded"] = len(loaded)

        # ttnn 0.81's mock lets the next open in a process succeed; if it does, Ctrl-C while the weights load
        # must still close what was opened.
        def interrupted(spec):
            raise KeyboardInterrupt
        backend = TTBackend(models.resolve("sd14"), runtime=Runtime(host_loader=interrupted))
        try:
            backend.load()
        except KeyboardInterrupt:
            out["second"] = "KeyboardInterrupt"
        except TTLessonError as err:
            out["second"] = type(err).__name__
        out["backend_holds_after_interrupt"] = [backend._stack is not None, len(backend._pipelines)]
        try:
            TTSD35Backend(models.resolve("sd35-large"), runtime=runtime).load()
        except TTLessonError as err:
            out["sd35"] = str(err)
        print(json.dumps(out))
    """, env=mock_n150, cwd=tmp_path)
    assert (result["chips"], result["arch"], result["loaded"]) == (1, "wormhole_b0", 0)
    assert result["missing"] == []  # every name the stand-in plays exists in the real ttnn
    assert result["latents"][:2] == [[1, 4, 64, 64], "Layout.TILE"] and result["latents"][2] < 0.05  # bf16 rounding
    assert result["embeddings"][:2] == [[2, 96, 768], "Layout.TILE"] and result["embeddings"][2] < 0.05
    assert result["no_checkout"].startswith("No tt-metal checkout found: set TT_METAL_HOME")
    kind, message = result["open"]
    assert kind == "TTDeviceError" and "\n" not in message
    assert message.startswith("Opening the Tenstorrent device failed because tt-metal's kernel compiler is missing "
                              "(sfpi not found at ")
    assert "python -m ttnn.download_sfpi" in message
    assert result["backend_holds"] == [False, 0] == result["backend_holds_after_interrupt"]
    if result["second"] == "KeyboardInterrupt":  # the mesh opened (no submeshes yet): it was closed
        assert result["opened"] == 1 and result["closed"] == ["MeshShape([1, 1])"]
    else:
        assert result["second"] == "TTDeviceError" and result["opened"] == 0 == len(result["closed"])
    assert result["sd35"].startswith("SD 3.5 Large on Tenstorrent needs one of: T3K / Wormhole QuietBox (2×4), "
                                     "Galaxy (4×8), Blackhole QuietBox (1×4)")
    assert "this machine's mesh is 1×1 (1 chip(s)" in result["sd35"] and "use --model sd14" in result["sd35"]


def test_cli_render_on_a_mock_n150_is_one_line_and_writes_nothing(tmp_path, mock_n150):
    checkout = write_standin_checkout(tmp_path / "tt-metal", "older")
    out = tmp_path / "out"
    proc = subprocess.run([TTLESSON, "render", "worlds-fair", "--backend", "tt", "--out", str(out)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=240,
                          env={**os.environ, **mock_n150, "TT_METAL_HOME": str(checkout)})
    line = one_line_error(proc)
    assert line.startswith("ttlesson render: error: Opening the Tenstorrent device failed because tt-metal's kernel "
                           "compiler is missing")
    assert proc.stdout == "" and not out.exists()

"""Every Tenstorrent topology the lesson meets, with the REAL ttnn 0.81.1 wheel under its mock cluster.

The cluster descriptors in tests/data/clusters/ are this project's own (UMD's format; the multi-chip ones are
written by tools/make_mock_clusters.py), with the ethernet links that make ttnn report each system as it
reports the real one. Each scenario runs in its own process: ttnn keeps one cluster per process.

* ``ttlesson detect --json``: chips, MESH_DEVICE, the system mesh ttnn reports, and for the tt backend which
  models run and on which mesh (SD 3.5 Large per tt_dit's presets: a Galaxy opened 4×8, 4-chip Blackhole boxes
  as a 1×4 ring);
* the device layer ttlesson runs before any model code: prepare the environment (the Galaxy core-grid
  override), open the mesh in the planned shape, split it into chips, check each chip's compute grid, allocate
  the latents buffer, copy a frame's noise in (ttnn checks shape, dtype and layout; the mock keeps no data, so
  what is read back is only the right spec), capture an (empty) trace and release it, close; then, in the same
  process, SD 3.5 Large's mesh in the shape tt_dit expects where the system runs it. The mock opens a
  mesh only on the second try (the first fails for want of the SFPI kernel compiler), cannot execute a trace
  (ttnn 0.81.1 crashes in the mock dispatch) and cannot open a fabric (it crashes or asks for SFPI again), so
  those are left to silicon (docs/tt-backend.md).
"""

from __future__ import annotations

import textwrap

import pytest
from helpers import MOCK_ENV, run_json
from machine_helpers import CLUSTERS, RESULT, run_python_json

pytest.importorskip("ttnn")
pytestmark = pytest.mark.slow  # every test starts a process that opens ttnn's mock cluster

# descriptor: chips, PCIe chips, MESH_DEVICE, ttnn cluster type, system mesh, SD 1.4 chip grid, SD 3.5 mesh or None
TOPOLOGIES = {
    "n150.yaml": (1, 1, "N150", "N150", (1, 1), (8, 8), None),
    "n300.yaml": (2, 1, "N300", "N300", (2, 1), (8, 8), None),
    "t3k.yaml": (8, 4, "T3K", "T3K", (2, 4), (8, 8), (2, 4)),
    "galaxy_6u.yaml": (32, 32, "TG", "GALAXY", (8, 4), (8, 8), (4, 8)),
    "p150.yaml": (1, 1, "P150", "P150", (1, 1), (11, 10), None),
    "p300.yaml": (2, 2, "P300", "P300", (2, 1), (11, 10), None),
    "p150x4.yaml": (4, 4, "P150x4", "P150_X4", (2, 2), (11, 10), (1, 4)),
    "p300x2.yaml": (4, 4, "P300x2", "P300_X2", (2, 2), (11, 10), (1, 4)),
    "p150x8.yaml": (8, 8, "P150x8", "P150_X8", (2, 4), (11, 10), None),
    "galaxy_bh.yaml": (32, 32, "BHGLX", "BLACKHOLE_GALAXY", (8, 4), (11, 10), None),
}


@pytest.mark.parametrize("descriptor", TOPOLOGIES)
def test_detect_json_says_what_the_tt_backend_would_open(descriptor):
    chips, pcie, mesh_device, cluster_type, system, _, sd35 = TOPOLOGIES[descriptor]
    path = CLUSTERS / descriptor
    report = run_json("detect", env={MOCK_ENV: str(path)})
    tt, ttnn = report["tenstorrent"], report["ttnn"]
    arch = "blackhole" if TOPOLOGIES[descriptor][5] == (11, 10) else "wormhole"
    assert (tt["total_chips"], tt["mesh_device"], tt["arch"]) == (chips, mesh_device, arch)
    assert tt["needs_tt_metal_arch_name_blackhole"] == (arch == "blackhole")
    assert tt["mock_cluster"] == str(path) and tt["device"] is False  # a mock runs nothing
    assert (ttnn["imports"], ttnn["devices"], ttnn["pcie_devices"], ttnn["cluster_type"]) == (True, chips, pcie,
                                                                                             cluster_type)
    assert {source["name"]: source["answered"] for source in report["sources"]}["ttnn"] is True
    assert report["auto"]["backend"] == "torch" and "only a mock cluster" in report["auto"]["why"]
    assert ttnn["system_mesh"] == list(system)
    backend = report["tt_backend"]
    assert backend["system"]["shape"] == list(system) and backend["system"]["chips"] == chips
    verdicts = {verdict["model"]: verdict for verdict in backend["models"]}
    assert verdicts["sd14"]["supported"] is True and verdicts["sd14"]["mesh_shape"] == list(system)
    assert verdicts["sd35-large"]["supported"] is (sd35 is not None)
    assert verdicts["sd35-large"]["mesh_shape"] == (list(sd35) if sd35 else None)
    assert all(verdict["why"].endswith(".") and "\n" not in verdict["why"] for verdict in verdicts.values())


DEVICE_LAYER = """
import json, os
from ttlesson.backends.tt import chip as tt_sd14
from ttlesson.tenstorrent import presets as tt_plan
from ttlesson.backends.tt import device as tt_device
from ttlesson.errors import TTDeviceError

out = {}
galaxy = tt_device.galaxy_arch_before_ttnn()
tt_device.prepare_environment(grid_override=tt_plan.GRID_OVERRIDES.get((galaxy, (8, 4))) if galaxy else None)
out["override"] = os.environ.get("TT_METAL_CORE_GRID_OVERRIDE_TODEPRECATE")
ttnn, chips = tt_device.require_chips()
system = tt_device.describe_system(ttnn, chips)
plan = tt_plan.plan_sd14(system)
out["system"] = [system.arch.metal_name, system.chips, list(system.shape)]
out["plan"] = list(plan.mesh_shape)

# ttnn 0.81.1's mock: the first open fails for want of SFPI (as on any machine without it), the next one opens.
try:
    with tt_device.open_mesh(ttnn, mesh_shape=plan.mesh_shape, l1_small_size=20928, trace_region_size=789835776):
        pass
except TTDeviceError as err:
    out["first_open"] = str(err)
with tt_device.open_mesh(ttnn, mesh_shape=plan.mesh_shape, l1_small_size=20928,
                         trace_region_size=789835776) as mesh:
    out["opened"] = list(mesh.shape)
    chips = tt_device.split_into_chips(ttnn, mesh, plan.chips)
    out["chips"] = [chip.name for chip in chips]
    out["grids"] = sorted({tt_device.compute_grid(chip.mesh) for chip in chips})
    out["grid_problems"] = [p for p in (tt_plan.grid_problem(system.arch, tt_device.compute_grid(c.mesh), c.name)
                                        for c in chips) if p]
    first = chips[0].mesh
    latents = tt_sd14.allocate_latents(ttnn, first)
    tt_sd14.copy_in(ttnn, tt_sd14.initial_latents(174), latents, "starting latents")
    back = ttnn.to_torch(latents.cpu(blocking=True))
    out["latents_back"] = [list(back.shape), str(back.dtype)]  # the mock keeps no DRAM: only the spec is real
    trace_id = ttnn.begin_trace_capture(first, cq_id=0)
    ttnn.end_trace_capture(first, trace_id, cq_id=0)
    ttnn.release_trace(first, trace_id)
    out["captured"] = True
out["closed"] = True

# SD 3.5 Large's mesh, in the same process (ttnn keeps one cluster per process): the shape tt_dit expects, opened
# explicitly (without the fabric: the mock cannot open one); a new shape fails for want of SFPI once more.
layout = tt_plan.sd35_layout(system)
for attempt in range(2 if layout else 0):
    try:
        with tt_device.open_mesh(ttnn, mesh_shape=layout.mesh_shape, l1_small_size=layout.l1_small_size,
                                 trace_region_size=layout.trace_region_size) as mesh:
            out["sd35_opened"] = list(mesh.shape)
            out["sd35_chips"] = len(mesh.create_submeshes(ttnn.MeshShape(1, 1)))
        break
    except TTDeviceError as err:
        out["sd35_error"] = str(err)
print("RESULT " + json.dumps(out), flush=True)
""".replace("RESULT ", RESULT)


@pytest.mark.parametrize("descriptor", TOPOLOGIES)
def test_the_real_device_layer_on_each_topology(descriptor, tmp_path):
    chips, _, _, _, system, grid, sd35 = TOPOLOGIES[descriptor]
    result = run_python_json(textwrap.dedent(DEVICE_LAYER), env={MOCK_ENV: str(CLUSTERS / descriptor)}, cwd=tmp_path)
    arch = "blackhole" if grid == (11, 10) else "wormhole_b0"
    assert result["system"] == [arch, chips, list(system)] and result["plan"] == list(system)
    galaxy = descriptor.startswith("galaxy")
    assert result["override"] == ({"wormhole_b0": "7,7", "blackhole": "10,9"}[arch] if galaxy else None)
    assert "kernel compiler is missing" in result["first_open"]
    assert result["opened"] == list(system)
    assert result["chips"] == [f"tt:{n}" for n in range(chips)]
    assert result["grids"] == [list(grid)] and result["grid_problems"] == []  # every chip: the demo's grid
    assert result["latents_back"] == [[1, 4, 64, 64], "torch.bfloat16"]
    assert result["captured"] and result["closed"]
    # SD 3.5 Large's mesh where it runs: a Galaxy as 4×8, a T3K as 2×4, a 4-chip Blackhole box as a 1×4 ring
    assert result.get("sd35_opened") == (list(sd35) if sd35 else None), result
    assert result.get("sd35_chips") == (chips if sd35 else None)


def test_a_galaxy_chip_without_the_override_is_refused_with_the_fix(tmp_path):
    """tt's serving code narrows a Galaxy chip's 8×9 grid to 8×8 for diffusion; without it SD 1.4 is refused."""
    program = textwrap.dedent("""
        import json
        from ttlesson.tenstorrent import presets as tt_plan
        from ttlesson.tenstorrent.arch import Arch
        from ttlesson.backends.tt import device as tt_device
        ttnn, chips = tt_device.require_chips()
        out = {}
        for attempt in range(2):
            try:
                with tt_device.open_mesh(ttnn, mesh_shape=(1, 1), l1_small_size=20928,
                                         trace_region_size=789835776) as mesh:
                    grid = tt_device.compute_grid(mesh)
                    out["grid"] = list(grid)
                    out["problem"] = tt_plan.grid_problem(Arch.WORMHOLE, grid, "tt:0")
                break
            except Exception:
                pass
        print("RESULT " + json.dumps(out), flush=True)
    """).replace("RESULT ", RESULT)
    result = run_python_json(program, env={MOCK_ENV: str(CLUSTERS / "galaxy_6u.yaml")}, cwd=tmp_path)
    assert result["grid"] == [8, 9]
    assert result["problem"] == ("Chip tt:0 has a 8×9 compute grid but tt-metal's SD 1.4 is built for 8×8 on "
                                 "wormhole_b0; set TT_METAL_CORE_GRID_OVERRIDE_TODEPRECATE=7,7 before starting "
                                 "Python (tt's own serving code does this on a Galaxy).")


def test_tt_visible_devices_gives_each_worker_process_one_card(tmp_path):
    """What ``--tt-parallel processes`` relies on: TT_VISIBLE_DEVICES=i on a T3K shows one n300 card (its PCIe
    chip and the remote one behind it), and the parent finds the four PCIe chips without ttnn."""
    program = textwrap.dedent("""
        import json, ttnn
        from ttlesson.backends.tt.device import describe_system
        chips = ttnn.get_num_devices()
        system = describe_system(ttnn, chips)
        print("RESULT " + json.dumps([chips, ttnn.get_num_pcie_devices(), list(system.shape)]), flush=True)
    """).replace("RESULT ", RESULT)
    t3k = {MOCK_ENV: str(CLUSTERS / "t3k.yaml")}
    assert run_python_json(program, env={**t3k, "TT_VISIBLE_DEVICES": "2"}, cwd=tmp_path) == [2, 1, [2, 1]]
    ids = run_python_json("import json\nfrom ttlesson.backends.tt.processes import pcie_device_ids\n"
                          f"print({RESULT!r} + json.dumps(pcie_device_ids()))", env=t3k)
    assert ids == [0, 1, 2, 3]
